package hostsim_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/nodeagent/hostsim"
	"berth.dev/berth/nodeagent/runtime"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

// probeEnv makes the test binary act as a one-shot HTTP client: the test
// re-executes itself inside a node's namespace with Node.Command, so the
// probe needs no tool (curl) from the host.
const probeEnv = "HOSTSIM_TEST_GET"

// echoEnv makes the test binary serve one HTTP request on the given address
// and print the client's IP: it shows the source address a node sees.
const echoEnv = "HOSTSIM_TEST_ECHO"

func TestMain(m *testing.M) {
	if url := os.Getenv(probeEnv); url != "" {
		os.Exit(probe(url))
	}
	if addr := os.Getenv(echoEnv); addr != "" {
		os.Exit(echoOnce(addr))
	}
	os.Exit(m.Run())
}

func echoOnce(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	seen := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		select {
		case seen <- host:
		default:
		}
	})}
	go srv.Serve(ln)
	select {
	case host := <-seen:
		fmt.Println(host)
		// Let the response go out before exiting.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		return 0
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "no request")
		return 1
	}
}

func probe(url string) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

func TestCluster(t *testing.T) {
	podmantest.Require(t)
	image := podmantest.HelloImage(t, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))

	const name = "hst1"
	dir := t.TempDir()
	c, err := hostsim.New(ctx, hostsim.Options{Name: name, Nodes: 3, Dir: dir, Images: []string{image}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})

	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	// One pod per node, created through that node's own Podman API.
	pods := make([]runtime.Pod, len(c.Nodes))
	for i, n := range c.Nodes {
		if !c.Network.Contains(netip.MustParseAddr(n.Addr)) || !c.Network.Contains(n.PodSubnet.Addr()) {
			t.Errorf("%s: address %s or pod subnet %s outside the cluster network %s", n.Name, n.Addr, n.PodSubnet, c.Network)
		}
		rt, err := podman.New(ctx, n.PodmanSocket, logger, podman.Options{})
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		pod, err := rt.CreatePod(ctx, runtime.PodSpec{
			Name:       "web-" + n.Name,
			Labels:     map[string]string{"test": "hostsim"},
			Containers: []runtime.ContainerSpec{{Name: "web", Image: image}},
		})
		if err != nil {
			t.Fatalf("%s: create pod: %v", n.Name, err)
		}
		if err := rt.StartContainer(ctx, pod.Containers[0].ID); err != nil {
			t.Fatalf("%s: start: %v", n.Name, err)
		}
		ip, err := netip.ParseAddr(pod.IP)
		if err != nil || !n.PodSubnet.Contains(ip) {
			t.Fatalf("%s: pod IP %q is not in the node's subnet %s", n.Name, pod.IP, n.PodSubnet)
		}
		pods[i] = pod
		for _, other := range c.Nodes {
			if other != n && other.PodSubnet.Overlaps(n.PodSubnet) {
				t.Errorf("pod subnets of %s and %s overlap", n.Name, other.Name)
			}
		}
	}

	// From node-1's namespace, node-2's pod answers on its pod IP (routed
	// through node-2, no overlay).
	url2 := "http://" + pods[1].IP + ":8080/"
	if out, err := eventually(ctx, func() (string, error) { return getFromNode(ctx, c.Nodes[0], url2) }); err != nil {
		t.Fatalf("GET %s from node-1: %v", url2, err)
	} else if !strings.Contains(out, "hostname=web-node-2") {
		t.Errorf("GET %s from node-1 = %q, want node-2's pod", url2, out)
	}
	// Pod to pod across nodes, and the address a node sees for a pod of
	// another node: the pod's own (no NAT inside the cluster network).
	rt1, err := podman.New(ctx, c.Nodes[0].PodmanSocket, logger, podman.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, err := rt1.Exec(ctx, pods[0].Containers[0].ID, []string{"/hello", "check", url2}); err != nil || code != 0 {
		t.Errorf("pod on node-1 -> %s: exit %d, %v: %s", url2, code, err, out)
	}
	if seen, err := sourceSeenBy(ctx, c.Nodes[1], rt1, pods[0]); err != nil {
		t.Errorf("pod on node-1 -> node-2: %v", err)
	} else if seen != pods[0].IP {
		t.Errorf("node-2 saw a connection from node-1's pod come from %s, want the pod's IP %s", seen, pods[0].IP)
	}

	// From the root namespace every pod answers.
	for i, pod := range pods {
		url := "http://" + pod.IP + ":8080/"
		want := "hostname=web-" + c.Nodes[i].Name
		if out, err := eventually(ctx, func() (string, error) { return getFromHost(ctx, url) }); err != nil {
			t.Errorf("GET %s from the host: %v", url, err)
		} else if !strings.Contains(out, want) {
			t.Errorf("GET %s from the host = %q, want %q", url, out, want)
		}
	}

	// Losing and regaining node-2's Podman.
	n2 := c.Nodes[1]
	if err := n2.StopPodman(); err != nil {
		t.Fatal(err)
	}
	if err := podman.Ping(ctx, n2.PodmanSocket); err == nil {
		t.Fatal("node-2's Podman still answers after StopPodman")
	}
	if _, err := getFromNode(ctx, c.Nodes[0], url2); err != nil {
		t.Errorf("node-2's pod stopped answering with its Podman: %v", err)
	}
	if err := n2.StartPodman(ctx); err != nil {
		t.Fatal(err)
	}
	rt2, err := podman.New(ctx, n2.PodmanSocket, logger, podman.Options{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := rt2.InspectPod(ctx, pods[1].Name)
	if err != nil {
		t.Fatalf("node-2's pod after StartPodman: %v", err)
	}
	if again.ID != pods[1].ID || again.IP != pods[1].IP || again.Containers[0].State != runtime.StateRunning {
		t.Errorf("node-2's pod after StartPodman = id %s ip %s state %s; want the same running pod (id %s ip %s)",
			again.ID, again.IP, again.Containers[0].State, pods[1].ID, pods[1].IP)
	}

	closed = true
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	assertGone(t, name, dir, c)
}

// assertGone checks that nothing the cluster created is left on the host.
func assertGone(t *testing.T, name, dir string, c *hostsim.Cluster) {
	t.Helper()
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			var exitErr *exec.ExitError
			// pgrep exits 1 when nothing matches.
			if !(errors.As(err, &exitErr) && name == "pgrep" && exitErr.ExitCode() == 1) {
				t.Fatalf("%s %v: %v: %s", name, args, err, b)
			}
		}
		return string(b)
	}
	for _, line := range strings.Split(out("ip", "netns", "list"), "\n") {
		if strings.HasPrefix(line, name+"-") {
			t.Errorf("namespace left: %s", line)
		}
	}
	for _, line := range strings.Split(out("ip", "-o", "link"), "\n") {
		if strings.Contains(line, ": "+name+"-") {
			t.Errorf("interface left: %s", line)
		}
	}
	prefix := strings.TrimSuffix(c.Network.Addr().String(), "0.0")
	for _, line := range strings.Split(out("ip", "route", "show", "table", "all"), "\n") {
		if strings.Contains(line, prefix) {
			t.Errorf("route left: %s", line)
		}
	}
	if rules := out("iptables", "-w", "-S", "FORWARD"); strings.Contains(rules, name+"-br") {
		t.Errorf("FORWARD rule left:\n%s", rules)
	}
	if procs := strings.TrimSpace(out("pgrep", "-a", "-f", dir)); procs != "" {
		t.Errorf("processes left:\n%s", procs)
	}
	if procs := strings.TrimSpace(out("pgrep", "-a", "-f", "hostsim-"+name+"-")); procs != "" {
		t.Errorf("processes left:\n%s", procs)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts left under %s", dir)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("%s not emptied: %v %v", dir, entries, err)
	}
	for _, n := range c.Nodes {
		if _, err := os.Stat(strings.TrimPrefix(n.PodmanSocket, "unix://")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s's socket left: %v", n.Name, err)
		}
	}
}

// sourceSeenBy runs a one-request server in n's namespace, has the pod
// (through rt) connect to it, and returns the client address n saw.
func sourceSeenBy(ctx context.Context, n *hostsim.Node, rt *podman.Runtime, pod runtime.Pod) (string, error) {
	const port = "18080"
	srv := n.Command(ctx, os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), echoEnv+"=:"+port)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		return "", err
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "listening" {
		return "", fmt.Errorf("echo server did not start: %s", stderr.String())
	}
	url := "http://" + n.Addr + ":" + port + "/"
	if code, out, err := rt.Exec(ctx, pod.Containers[0].ID, []string{"/hello", "check", url}); err != nil || code != 0 {
		return "", fmt.Errorf("GET %s: exit %d, %v: %s", url, code, err, out)
	}
	if !lines.Scan() {
		return "", fmt.Errorf("echo server printed no address: %s", stderr.String())
	}
	return lines.Text(), nil
}

func getFromNode(ctx context.Context, n *hostsim.Node, url string) (string, error) {
	cmd := n.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), probeEnv+"="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return string(out), nil
}

func getFromHost(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), err
}

// eventually retries f while the app in a just-started container may not
// listen yet.
func eventually(ctx context.Context, f func() (string, error)) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
