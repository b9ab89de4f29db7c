package proxy

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests program iptables for real, but never in the machine's own
// network namespace: each test builds a small host of its own out of
// network namespaces, shaped like a Podman node:
//
//	node   (the host berth programs)
//	  br0   10.88.0.1/16   the pod bridge, like Podman's podman0
//	  ext0  10.99.0.2/24   the node's own address, default route via outside
//	  netavark-like rules: nat POSTROUTING -s 10.88.0.0/16 -j NETAVARK-TEST
//	  (ACCEPT pod-to-pod, MASQUERADE the rest) and a FORWARD accept chain
//	e1..eN  pods with endpoint servers, 10.88.0.11..  via veth on br0
//	client  a pod without a server, 10.88.0.50
//	outside another machine on the node's network, 10.99.0.1
//
// Each endpoint runs a TCP server on 8080 and a UDP server on 8081 that
// answer with the endpoint's name, so a test can tell who answered.
const (
	nodeAddr    = "10.99.0.2"
	outsideAddr = "10.99.0.1"
	clientAddr  = "10.88.0.50"
	tcpPort     = 8080
	udpPort     = 8081
)

// requirePrivileges fails the test unless it can create network namespaces
// and run iptables, or skips it when BERTH_TEST_NO_PODMAN=1 says that this
// machine is not meant to.
func requirePrivileges(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "iptables tests need " + strings.Join(missing, ", ")
	if os.Getenv("BERTH_TEST_NO_PODMAN") == "1" {
		t.Skip(msg + " (BERTH_TEST_NO_PODMAN=1)")
	}
	t.Fatal(msg + "; set BERTH_TEST_NO_PODMAN=1 to skip")
}

type testHost struct {
	t         *testing.T
	node      string // network namespace name
	nodePath  string
	client    string // path
	outside   string // path
	endpoints []testEndpoint
}

type testEndpoint struct {
	name, ip, path string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newTestHost builds the namespaces above with n endpoint pods and removes
// them when the test ends.
func newTestHost(t *testing.T, n int) *testHost {
	t.Helper()
	requirePrivileges(t)
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	prefix := "berth-pt-" + hex.EncodeToString(b)
	h := &testHost{t: t, node: prefix + "-n", nodePath: "/run/netns/" + prefix + "-n"}
	addNS := func(name string) string {
		ipCmd(t, "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		ipCmd(t, "-n", name, "link", "set", "lo", "up")
		return "/run/netns/" + name
	}
	addNS(h.node)
	ipCmd(t, "-n", h.node, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", h.node, "addr", "add", "10.88.0.1/16", "dev", "br0")
	ipCmd(t, "-n", h.node, "link", "set", "br0", "up")
	h.outside = addNS(prefix + "-o")
	ipCmd(t, "-n", h.node, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", prefix+"-o")
	ipCmd(t, "-n", h.node, "addr", "add", nodeAddr+"/24", "dev", "ext0")
	ipCmd(t, "-n", h.node, "link", "set", "ext0", "up")
	ipCmd(t, "-n", h.node, "route", "add", "default", "via", outsideAddr)
	ipCmd(t, "-n", prefix+"-o", "addr", "add", outsideAddr+"/24", "dev", "eth0")
	ipCmd(t, "-n", prefix+"-o", "link", "set", "eth0", "up")
	h.writeSysctl("/proc/sys/net/ipv4/ip_forward", "1")

	pod := func(name, ip string) string {
		path := addNS(name)
		veth := "v" + name[len(name)-2:]
		ipCmd(t, "-n", h.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
		ipCmd(t, "-n", h.node, "link", "set", veth, "master", "br0", "up")
		ipCmd(t, "-n", name, "addr", "add", ip+"/16", "dev", "eth0")
		ipCmd(t, "-n", name, "link", "set", "eth0", "up")
		ipCmd(t, "-n", name, "route", "add", "default", "via", "10.88.0.1")
		return path
	}
	h.client = pod(prefix+"-c0", clientAddr)
	for i := range n {
		ep := testEndpoint{name: fmt.Sprintf("e%d", i+1), ip: fmt.Sprintf("10.88.0.%d", 11+i)}
		ep.path = pod(fmt.Sprintf("%s-e%d", prefix, i+1), ep.ip)
		serve(t, ep)
		h.endpoints = append(h.endpoints, ep)
	}

	// What netavark installs for Podman's default network on this machine
	// (see docs/services.md), so the tests prove that berth coexists.
	for _, rule := range [][]string{
		{"-t", "nat", "-N", "NETAVARK-TEST"},
		{"-t", "nat", "-A", "NETAVARK-TEST", "-d", "10.88.0.0/16", "-j", "ACCEPT"},
		{"-t", "nat", "-A", "NETAVARK-TEST", "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"},
		{"-t", "nat", "-A", "POSTROUTING", "-s", "10.88.0.0/16", "-j", "NETAVARK-TEST"},
		{"-N", "NETAVARK_FORWARD"},
		{"-A", "NETAVARK_FORWARD", "-d", "10.88.0.0/16", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "NETAVARK_FORWARD", "-s", "10.88.0.0/16", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-m", "comment", "--comment", "netavark firewall plugin rules", "-j", "NETAVARK_FORWARD"},
	} {
		h.iptables(rule...)
	}
	return h
}

func (h *testHost) writeSysctl(path, value string) {
	h.t.Helper()
	if err := inNetNS(h.nodePath, func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		h.t.Fatal(err)
	}
}

// run runs a command in the node's namespace.
func (h *testHost) run(name string, args ...string) string {
	h.t.Helper()
	var out []byte
	err := inNetNS(h.nodePath, func() (err error) {
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		h.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (h *testHost) iptables(args ...string) { h.t.Helper(); h.run("iptables", args...) }

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// save returns iptables-save of the node without comments and counters.
func (h *testHost) save() string {
	h.t.Helper()
	var b strings.Builder
	for line := range strings.Lines(h.run("iptables-save")) {
		if !strings.HasPrefix(line, "#") {
			b.WriteString(counters.ReplaceAllString(line, "[0:0]"))
		}
	}
	return b.String()
}

func (h *testHost) newProxy(cfg Config) *Proxy {
	h.t.Helper()
	cfg.NetNS = h.nodePath
	p, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// serve starts the endpoint's TCP and UDP servers inside its namespace.
func serve(t *testing.T, ep testEndpoint) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := inNetNS(ep.path, func() (err error) {
		// Sockets stay in the namespace they were made in.
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", tcpPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", udpPort))
		return err
	})
	if err != nil {
		t.Fatalf("endpoint %s: %v", ep.name, err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, ep.name+"\n")
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(ep.name+"\n"), addr)
		}
	}()
}

// ask connects from the namespace at nsPath to addr and returns who
// answered. Failures come back as errors so tests can expect refusals.
func ask(nsPath, network, addr string) (string, error) {
	var c net.Conn
	err := inNetNS(nsPath, func() (err error) {
		c, err = net.DialTimeout(network, addr, 3*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", err
	}
	if network == "udp4" {
		if _, err := c.Write([]byte("who\n")); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// askN asks n times and counts the answers; any failure fails the test.
func askN(t *testing.T, nsPath, network, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		who, err := ask(nsPath, network, addr)
		if err != nil {
			t.Fatalf("%s %s: %v (answers so far %v)", network, addr, err, got)
		}
		got[who]++
	}
	return got
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
