package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/hostsim"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

const multiHostApp = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 6
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: localhost/berth-hello:v1
          ports: [{name: http, containerPort: 8080}]
          resources:
            requests: {cpu: 50m, memory: 32Mi}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: http, nodePort: 30090}]
---
apiVersion: v1
kind: Pod
metadata:
  name: too-big
spec:
  containers:
    - name: web
      image: localhost/berth-hello:v1
      resources:
        requests: {memory: 100Ti}
`

func mustCLI(t *testing.T, p *berthProc, args ...string) string {
	t.Helper()
	out, err := p.cli(args...)
	if err != nil {
		t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// agentProc is one simulated host's `berth agent`, run inside its network
// namespace.
type agentProc struct {
	node *hostsim.Node
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

func startAgent(t *testing.T, bin string, n *hostsim.Node, server, token string) *agentProc {
	t.Helper()
	a := &agentProc{node: n, logs: &syncBuffer{}, done: make(chan struct{})}
	a.cmd = n.Command(context.Background(), bin, "agent", "--server", server, "--token", token,
		"--node-name", n.Name, "--podman", n.PodmanSocket, "--data-dir", n.DataDir,
		"--address", n.Addr, "--pod-subnet", n.PodSubnet.String(), "--labels", "zone="+n.Name, "--log-level", "debug")
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("agent %s logs:\n%s", n.Name, tail(a.logs.String(), 60))
		}
	})
	return a
}

func (a *agentProc) stop(sig syscall.Signal) {
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

func podsByNode(pods []corev1.Pod, owner string) map[string]int {
	out := map[string]int{}
	for _, p := range livePods(pods) {
		if strings.HasPrefix(p.Name, owner+"-") && api.PodReady(&p) {
			out[p.Spec.NodeName]++
		}
	}
	return out
}

// TestSeveralHosts is issue #4 end to end on three simulated hosts (network
// namespaces joined by a bridge, each with its own Podman and agent): pods
// spread 2/2/2, the NodePort answers on every node, a lost node's pods come
// back elsewhere, its return leaves no duplicate, drain moves pods without a
// failed request, and a pod that fits nowhere says why.
func TestSeveralHosts(t *testing.T) {
	podmantest.Require(t)
	image := podmantest.HelloImage(t, "v1")
	ctx := context.Background()
	outer := t // agents started in a subtest must outlive it
	cl, err := hostsim.New(ctx, hostsim.Options{Name: fmt.Sprintf("bt%d", time.Now().UnixNano()%10000), Nodes: 3, Dir: t.TempDir(), Images: []string{image}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("close the simulated hosts: %v", err)
		}
	})

	// The app comes in a second commit, once every host has joined, as a
	// team would add hosts before deploying to them.
	repo := newGitRepo(t)
	repo.write("README.md", "deploy/\n")
	repo.commit("empty")

	// The controller runs in the root namespace, on the bridge all hosts share.
	bin := berthBinary(t)
	dataDir := t.TempDir()
	port := strings.Split(freeAddr(t), ":")[1]
	addr := cl.BridgeAddr + ":" + port
	ctrl := &berthProc{t: t, bin: bin, server: "https://" + addr, dataDir: dataDir, logs: &syncBuffer{},
		args: []string{"controller", "--repo", repo.URL(), "--listen", addr, "--data-dir", dataDir, "--interval", "1h", "--node-grace", "10s", "--log-level", "debug"}}
	ctrl.startTLS()
	t.Cleanup(func() {
		ctrl.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("controller logs:\n%s", tail(ctrl.logs.String(), 120))
		}
	})

	t.Run("every endpoint refuses a call without a certificate", func(t *testing.T) {
		insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		for _, path := range []string{"/api/v1/status", "/api/v1/pods", "/api/v1/nodes/node-1/assignment", "/api/v1/history"} {
			resp, err := insecure.Get(ctrl.server + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s without a certificate: %d, want 401", path, resp.StatusCode)
			}
		}
	})

	out, err := exec.Command(bin, "token", "create", "--data-dir", dataDir, "--description", "e2e").CombinedOutput()
	if err != nil {
		t.Fatalf("berth token create: %v\n%s", err, out)
	}
	token := strings.TrimSpace(string(out))

	t.Run("a wrong token is refused", func(t *testing.T) {
		n := cl.Nodes[0]
		parts := strings.Split(token, ".") // berth1.<id>.<secret>.<ca pin>
		parts[2] = strings.Repeat("0", len(parts[2]))
		bad := strings.Join(parts, ".")
		cmd := n.Command(ctx, bin, "agent", "--server", ctrl.server, "--token", bad, "--node-name", "intruder",
			"--podman", n.PodmanSocket, "--data-dir", filepath.Join(t.TempDir(), "intruder"))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "token") {
			t.Fatalf("an agent with a wrong token: %v\n%s", err, out)
		}
	})

	agents := map[string]*agentProc{}
	for _, n := range cl.Nodes {
		agents[n.Name] = startAgent(t, bin, n, ctrl.server, token)
	}

	eventually(t, time.Minute, "three Ready nodes", func() error {
		s := ctrl.status()
		ready := 0
		for _, n := range s.Nodes {
			if n.Ready {
				ready++
			}
		}
		if ready != 3 {
			return fmt.Errorf("nodes %+v", s.Nodes)
		}
		return nil
	})
	repo.write("app.yaml", multiHostApp)
	c1 := repo.commit("web on three hosts")
	if out, err := ctrl.cli("sync"); err != nil {
		t.Fatalf("berth sync: %v\n%s", err, out)
	}
	eventually(t, 2*time.Minute, "6 ready replicas spread 2/2/2", func() error {
		s := ctrl.status()
		if s.Applied == nil || s.Applied.ID != c1 {
			return fmt.Errorf("applied %v (%s)", s.Applied, s.LastError)
		}
		by := podsByNode(ctrl.pods("default"), "web")
		for _, n := range cl.Nodes {
			if by[n.Name] != 2 {
				return fmt.Errorf("ready pods per node %v", by)
			}
		}
		return nil
	})

	t.Run("the NodePort answers on every node", func(t *testing.T) {
		for _, n := range cl.Nodes {
			seen := map[string]bool{}
			for range 20 {
				code, body, err := httpGet("http://" + n.Addr + ":30090/")
				if err != nil || code != 200 {
					t.Fatalf("NodePort on %s: %d %v", n.Name, code, err)
				}
				seen[body] = true
			}
			if len(seen) < 3 {
				t.Errorf("20 requests to %s's NodePort reached only %d pods", n.Name, len(seen))
			}
		}
	})

	t.Run("the ClusterIP answers from inside a pod on every node", func(t *testing.T) {
		var clusterIP string
		for _, line := range strings.Split(mustCLI(t, ctrl, "get", "svc"), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "web" {
				clusterIP = f[2]
			}
		}
		for _, n := range cl.Nodes {
			var pod string
			for _, p := range livePods(ctrl.pods("default")) {
				if p.Spec.NodeName == n.Name && strings.HasPrefix(p.Name, "web-") {
					pod = p.Name
				}
			}
			// Ten tries spread over the six endpoints on the three nodes.
			for range 10 {
				out, err := n.Command(ctx, "podman", "--url", n.PodmanSocket, "exec", "default_"+pod+"_web",
					"/hello", "check", "http://"+clusterIP+"/").CombinedOutput()
				if err != nil {
					t.Fatalf("from %s on %s, GET %s: %v\n%s", pod, n.Name, clusterIP, err, out)
				}
			}
		}
	})

	t.Run("agents keep their pods running while the controller is away", func(t *testing.T) {
		before := podSet(ctrl.pods("default"))
		ctrl.stop(syscall.SIGTERM)
		traffic := startTraffic("http://" + cl.Nodes[2].Addr + ":30090/")
		time.Sleep(3 * time.Second)
		traffic.finish(t, "controller away")
		ctrl.startTLS()
		time.Sleep(3 * time.Second) // a pass or two after the nodes report again
		if after := podSet(ctrl.pods("default")); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("pods changed across a controller restart:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("a pod too big for any node is Pending with the reason", func(t *testing.T) {
		eventually(t, 20*time.Second, "the scheduler's message", func() error {
			for _, p := range ctrl.pods("default") {
				if p.Name != "too-big" {
					continue
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message == "0/3 nodes are available: 3 Insufficient memory." {
						return nil
					}
				}
				return fmt.Errorf("conditions %+v", p.Status.Conditions)
			}
			return fmt.Errorf("no too-big pod")
		})
		out, err := ctrl.cli("get", "nodes", "-o", "wide")
		if err != nil || strings.Count(out, "Ready") != 3 {
			t.Errorf("berth get nodes -o wide: %v\n%s", err, out)
		}
	})

	lost := cl.Nodes[1]
	t.Run("a lost node's pods come back on the others within grace + 15 s", func(t *testing.T) {
		traffic := startTraffic("http://" + cl.Nodes[0].Addr + ":30090/")
		start := time.Now()
		agents[lost.Name].stop(syscall.SIGKILL)
		if err := lost.StopPodman(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 25*time.Second, "6 ready replicas on the two other nodes", func() error {
			by := podsByNode(ctrl.pods("default"), "web")
			if by[lost.Name] != 0 || by[cl.Nodes[0].Name]+by[cl.Nodes[2].Name] != 6 {
				return fmt.Errorf("ready pods per node %v", by)
			}
			return nil
		})
		t.Logf("replaced after %s", time.Since(start).Round(100*time.Millisecond))
		close(traffic.stop)
		traffic.wg.Wait()
		if traffic.ok.Load() == 0 {
			t.Errorf("the Service did not answer at all while a node was lost")
		}
		t.Logf("during the loss: %d answered, %d failed (requests routed to the lost node before it was declared NotReady)", traffic.ok.Load(), traffic.fail.Load())
		after := startTraffic("http://" + cl.Nodes[0].Addr + ":30090/")
		time.Sleep(2 * time.Second)
		after.finish(t, "after the replacement")
	})

	t.Run("the node returns and no duplicate remains", func(t *testing.T) {
		if err := lost.StartPodman(ctx); err != nil {
			t.Fatal(err)
		}
		agents[lost.Name] = startAgent(outer, bin, lost, ctrl.server, "")
		eventually(t, 30*time.Second, "the returning node's stale pods to stop", func() error {
			out, err := lost.Command(ctx, "podman", "--url", lost.PodmanSocket, "pod", "ps", "-q").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if n := len(strings.Fields(string(out))); n != 0 {
				return fmt.Errorf("%d pods still on %s", n, lost.Name)
			}
			return nil
		})
		if by := podsByNode(ctrl.pods("default"), "web"); by[cl.Nodes[0].Name]+by[cl.Nodes[2].Name] != 6 {
			t.Errorf("ready pods per node %v", by)
		}
	})

	t.Run("drain moves pods off a node with no failed request", func(t *testing.T) {
		drained := cl.Nodes[2]
		traffic := startTraffic("http://" + cl.Nodes[0].Addr + ":30090/")
		out, err := ctrl.cli("drain", drained.Name, "--timeout", "2m")
		if err != nil {
			t.Fatalf("berth drain: %v\n%s", err, out)
		}
		eventually(t, time.Minute, "6 ready replicas off the drained node", func() error {
			by := podsByNode(ctrl.pods("default"), "web")
			if by[drained.Name] != 0 || by[cl.Nodes[0].Name]+by[lost.Name] != 6 {
				return fmt.Errorf("ready pods per node %v", by)
			}
			return nil
		})
		time.Sleep(time.Second)
		traffic.finish(t, "drain")
		if out, err := ctrl.cli("get", "nodes"); err != nil || !strings.Contains(out, "SchedulingDisabled") {
			t.Errorf("berth get nodes after drain: %v\n%s", err, out)
		}
	})
}
