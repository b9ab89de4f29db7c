package netroute

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth.dev/berth/api"
)

// The tests below change real routing tables, but only in network
// namespaces they create; the machine's own table is never touched.

// requirePrivileges fails the test unless it can create network
// namespaces, or skips it when BERTH_TEST_NO_PODMAN=1 says that this
// machine is not meant to.
func requirePrivileges(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "routing tests need " + strings.Join(missing, ", ")
	if os.Getenv("BERTH_TEST_NO_PODMAN") == "1" {
		t.Skip(msg + " (BERTH_TEST_NO_PODMAN=1)")
	}
	t.Fatal(msg + "; set BERTH_TEST_NO_PODMAN=1 to skip")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// netnsPrefix returns a fresh prefix for this test's namespace names.
func netnsPrefix(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "berth-rt-" + hex.EncodeToString(b)
}

// addNetns creates a namespace with loopback up, removed when the test ends.
func addNetns(t *testing.T, name string) string {
	t.Helper()
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	return "/run/netns/" + name
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// link joins two namespaces with a veth pair, each end named eth0-like and
// given its address.
func link(t *testing.T, nsA, ifA, addrA, nsB, ifB, addrB string) {
	t.Helper()
	ipCmd(t, "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	ipCmd(t, "-n", nsA, "addr", "add", addrA, "dev", ifA)
	ipCmd(t, "-n", nsB, "addr", "add", addrB, "dev", ifB)
	ipCmd(t, "-n", nsA, "link", "set", ifA, "up")
	ipCmd(t, "-n", nsB, "link", "set", ifB, "up")
}

// tableOf returns the namespace's main IPv4 table, sorted.
func tableOf(t *testing.T, ns string) []route {
	t.Helper()
	rs, err := parseRoutes([]byte(ipCmd(t, "-n", ns, "-j", "-N", "-4", "route", "show", "table", "main")))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(rs, func(a, b route) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return rs
}

// countingProgrammer returns a Programmer for the namespace and a function
// listing the route-changing commands it has run so far.
func countingProgrammer(t *testing.T, nsPath string) (*Programmer, func() []string) {
	t.Helper()
	p, err := New(Config{NetNS: nsPath, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []string
	run := p.run
	p.run = func(ctx context.Context, args ...string) ([]byte, error) {
		if slices.Contains(args, "add") || slices.Contains(args, "replace") || slices.Contains(args, "del") {
			mu.Lock()
			changes = append(changes, strings.Join(args, " "))
			mu.Unlock()
		}
		return run(ctx, args...)
	}
	return p, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(changes)
	}
}

func TestSyncRealRoutes(t *testing.T) {
	requirePrivileges(t)
	ctx := t.Context()
	prefix := netnsPrefix(t)
	self, peer := prefix+"-a", prefix+"-b"
	selfPath := addNetns(t, self)
	addNetns(t, peer)
	link(t, self, "eth0", "10.201.0.1/24", peer, "eth0", "10.201.0.2/24")

	// Routes that are not berth's: one that a node's subnet will meet with
	// another gateway, one identical to what berth would add (hostsim's
	// kind), and one berth has no business with.
	ipCmd(t, "-n", self, "route", "add", "10.206.0.0/24", "via", "10.201.0.9", "proto", "static")
	ipCmd(t, "-n", self, "route", "add", "10.207.0.0/24", "via", "10.201.0.5")
	ipCmd(t, "-n", self, "route", "add", "10.209.0.0/24", "via", "10.201.0.2")
	foreign := []route{
		{Dst: pfx("10.206.0.0/24"), Via: addr("10.201.0.9"), Proto: 4},
		{Dst: pfx("10.207.0.0/24"), Via: addr("10.201.0.5"), Proto: 3},
		{Dst: pfx("10.209.0.0/24"), Via: addr("10.201.0.2"), Proto: 3},
	}
	connected := route{Dst: pfx("10.201.0.0/24"), Proto: 2}

	p, changes := countingProgrammer(t, selfPath)
	nodes := []api.NodeRoute{
		{Name: "a", Address: "10.201.0.1", PodSubnet: "10.203.0.0/24"},
		{Name: "b", Address: "10.201.0.2", PodSubnet: "10.202.0.0/24"},
		{Name: "c", Address: "10.201.0.3", PodSubnet: "10.204.0.0/24"},
		{Name: "d", Address: "10.201.0.4", PodSubnet: "10.206.0.0/24"},    // taken by the static route
		{Name: "e", Address: "10.201.0.5", PodSubnet: "10.207.0.0/24"},    // already routed the same way
		{Name: "f", Address: "10.201.0.6", PodSubnet: "10.203.0.0/16"},    // overlaps self's
		{Name: "g", Address: "", PodSubnet: "10.208.0.0/24"},              // no address
		{Name: "h", Address: "10.201.0.8", PodSubnet: "10.210.0.0/24"},    // fine
		{Name: "i", Address: "10.201.0.10", PodSubnet: "10.211.0.1/24"},   // host bits
		{Name: "j", Address: "10.201.0.11", PodSubnet: "not-a-subnet/24"}, // junk
	}
	if err := p.Sync(ctx, "a", nodes); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	want := func(extra ...route) []route {
		rs := append(slices.Clone(foreign), connected)
		rs = append(rs, extra...)
		slices.SortFunc(rs, func(a, b route) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		return rs
	}
	ours := func(dst, via string) route { return route{Dst: pfx(dst), Via: addr(via), Proto: Protocol} }
	check := func(step string, w []route) {
		t.Helper()
		if got := tableOf(t, self); !slices.Equal(got, w) {
			t.Fatalf("%s: table =\n%v\nwant\n%v", step, got, w)
		}
	}
	check("first sync", want(ours("10.202.0.0/24", "10.201.0.2"), ours("10.204.0.0/24", "10.201.0.3"), ours("10.210.0.0/24", "10.201.0.8")))
	if got := len(changes()); got != 3 {
		t.Fatalf("first sync ran %d changes, want 3: %q", got, changes())
	}

	// Same list again: the table is only read.
	if err := p.Sync(ctx, "a", nodes); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	if got := changes(); len(got) != 3 {
		t.Fatalf("a second sync of the same list changed routes: %q", got[3:])
	}
	check("second sync", want(ours("10.202.0.0/24", "10.201.0.2"), ours("10.204.0.0/24", "10.201.0.3"), ours("10.210.0.0/24", "10.201.0.8")))

	// c moves to another address, h leaves the cluster.
	moved := slices.Clone(nodes[:7])
	moved[2].Address = "10.201.0.33"
	if err := p.Sync(ctx, "a", moved); err != nil {
		t.Fatalf("sync after changes: %v", err)
	}
	check("c moved, h gone", want(ours("10.202.0.0/24", "10.201.0.2"), ours("10.204.0.0/24", "10.201.0.33")))

	// Alone: every route of berth's goes, nobody else's.
	if err := p.Sync(ctx, "a", nodes[:1]); err != nil {
		t.Fatalf("sync alone: %v", err)
	}
	check("alone", want())

	// A gateway that is not on a connected network cannot be used (hosts
	// must share a link); the error names the route, and the others still
	// go in.
	err := p.Sync(ctx, "a", []api.NodeRoute{nodes[0], nodes[1], {Name: "far", Address: "172.31.9.9", PodSubnet: "10.212.0.0/24"}})
	if err == nil || !strings.Contains(err.Error(), "10.212.0.0/24 via 172.31.9.9") {
		t.Fatalf("sync with an unreachable gateway: err = %v", err)
	}
	check("unreachable gateway", want(ours("10.202.0.0/24", "10.201.0.2")))
}

// TestPodTrafficFollowsRoutes builds two hosts on one link, with a pod
// behind the second, and shows that the first reaches the pod's address
// only once Sync has routed the second's pod subnet.
//
//	host-a  eth0 10.201.0.1/24 ── eth0 10.201.0.2/24  host-b
//	                                pod0 10.202.0.1/24 ── eth0 10.202.0.10/24  pod
func TestPodTrafficFollowsRoutes(t *testing.T) {
	requirePrivileges(t)
	prefix := netnsPrefix(t)
	a, b, pod := prefix+"-a", prefix+"-b", prefix+"-p"
	aPath := addNetns(t, a)
	bPath := addNetns(t, b)
	podPath := addNetns(t, pod)
	link(t, a, "eth0", "10.201.0.1/24", b, "eth0", "10.201.0.2/24")
	link(t, b, "pod0", "10.202.0.1/24", pod, "eth0", "10.202.0.10/24")
	ipCmd(t, "-n", pod, "route", "add", "default", "via", "10.202.0.1")
	// Host b forwards between its link and its pods, as Podman's netavark
	// makes a host do. sysctl through nsenter writes the namespace's own
	// /proc/sys/net.
	if out, err := exec.Command("nsenter", "--net="+bPath, "--", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward on host b: %v: %s", err, out)
	}

	serveHello(t, podPath, "10.202.0.10:8080", "hello from the pod")
	const target = "10.202.0.10:8080"
	if got, err := dialFrom(aPath, target); err == nil {
		t.Fatalf("host a reached the pod before any route existed (answer %q)", got)
	}

	p, err := New(Config{NetNS: aPath, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nodes := []api.NodeRoute{
		{Name: "a", Address: "10.201.0.1", PodSubnet: "10.203.0.0/24"},
		{Name: "b", Address: "10.201.0.2", PodSubnet: "10.202.0.0/24"},
	}
	if err := p.Sync(t.Context(), "a", nodes); err != nil {
		t.Fatal(err)
	}
	got, err := dialFrom(aPath, target)
	if err != nil {
		t.Fatalf("host a cannot reach the pod after the sync: %v", err)
	}
	if got != "hello from the pod" {
		t.Fatalf("answer = %q", got)
	}

	// b leaves the list: its route goes, and with it the path to the pod.
	if err := p.Sync(t.Context(), "a", nodes[:1]); err != nil {
		t.Fatal(err)
	}
	if got, err := dialFrom(aPath, target); err == nil {
		t.Fatalf("host a still reaches the pod after b left the list (answer %q)", got)
	}
}

func TestHostAddressInNamespace(t *testing.T) {
	requirePrivileges(t)
	prefix := netnsPrefix(t)
	host, peer := prefix+"-h", prefix+"-x"
	hostPath := addNetns(t, host)
	addNetns(t, peer)
	// A pod bridge that comes first in interface order, then the NIC.
	ipCmd(t, "-n", host, "link", "add", "podman0", "type", "bridge")
	ipCmd(t, "-n", host, "addr", "add", "10.88.0.1/16", "dev", "podman0")
	ipCmd(t, "-n", host, "link", "set", "podman0", "up")
	link(t, host, "eth0", "10.201.0.7/24", peer, "eth0", "10.201.0.1/24")

	hostAddress := func(exclude netip.Prefix) (got netip.Addr, err error) {
		t.Helper()
		if e := inNetNS(hostPath, func() error { got, err = HostAddress(exclude); return nil }); e != nil {
			t.Fatal(e)
		}
		return got, err
	}
	// No default route: interface order, minus the pod subnet.
	if got, err := hostAddress(pfx("10.88.0.0/16")); err != nil || got != addr("10.201.0.7") {
		t.Fatalf("without a default route: %v, %v; want 10.201.0.7", got, err)
	}
	// A second address on eth0 that the default route prefers.
	ipCmd(t, "-n", host, "addr", "add", "10.201.0.8/24", "dev", "eth0")
	ipCmd(t, "-n", host, "route", "add", "default", "via", "10.201.0.1", "src", "10.201.0.8")
	if got, err := hostAddress(netip.Prefix{}); err != nil || got != addr("10.201.0.8") {
		t.Fatalf("with a default route: %v, %v; want 10.201.0.8 (its source)", got, err)
	}
	ipCmd(t, "-n", host, "link", "set", "eth0", "down")
	if got, err := hostAddress(pfx("10.88.0.0/16")); err == nil {
		t.Fatalf("only the pod bridge is up, yet HostAddress chose %s", got)
	}
}

// serveHello answers every TCP connection to addr, inside the namespace at
// nsPath, with msg.
func serveHello(t *testing.T, nsPath, addr, msg string) {
	t.Helper()
	var ln net.Listener
	err := inNetNS(nsPath, func() (err error) {
		// A socket stays in the namespace it was made in.
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", nsPath, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, msg+"\n")
			c.Close()
		}
	}()
}

// dialFrom connects from the namespace at nsPath and returns the first line
// it is sent.
func dialFrom(nsPath, addr string) (string, error) {
	var c net.Conn
	err := inNetNS(nsPath, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// inNetNS runs f on an OS thread switched into the network namespace at
// path; sockets f opens belong to that namespace.
func inNetNS(path string, f func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", path, err)
	}
	defer func() {
		// A thread that cannot go back stays locked and dies with the
		// goroutine.
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	return f()
}
