package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

// trafficProbe hits a URL every 20 ms on fresh connections and counts what
// fails, so a test can assert that a rollout dropped nothing.
type trafficProbe struct {
	url      string
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	errs     []string
	bodies   map[string]int
}

func startTraffic(url string) *trafficProbe {
	p := &trafficProbe{url: url, stop: make(chan struct{}), bodies: map[string]int{}}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			resp, err := client.Get(p.url)
			var body []byte
			if err == nil {
				body = make([]byte, 64)
				n, _ := resp.Body.Read(body)
				body = body[:n]
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
			}
			p.mu.Lock()
			if err != nil {
				p.fail.Add(1)
				p.errs = append(p.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
			} else {
				p.ok.Add(1)
				version, _, _ := strings.Cut(string(body), " from")
				p.bodies[version]++
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// finish stops the probe and fails the test if any request failed.
func (p *trafficProbe) finish(t *testing.T, what string) {
	t.Helper()
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("%s: %d requests answered (%v), %d failed", what, p.ok.Load(), p.bodies, p.fail.Load())
	if p.ok.Load() < 20 {
		t.Errorf("%s: only %d requests answered: too few to judge", what, p.ok.Load())
	}
	if n := p.fail.Load(); n > 0 {
		t.Errorf("%s: %d requests failed, e.g. %v", what, n, p.errs[:min(5, len(p.errs))])
	}
}

// managedPodmanPods counts the Podman pods this berth's agent runs.
func managedPodmanPods(t *testing.T, node string) []string {
	t.Helper()
	out, err := exec.Command("podman", "pod", "ps", "--format", "{{.Name}}", "--filter", "label=berth.dev/node="+node).CombinedOutput()
	if err != nil {
		t.Fatalf("podman pod ps: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func iptablesSave(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	return string(out)
}

// hostAddressFor returns this host's address on the network that holds ip
// (Podman's bridge), which is one of "the host's addresses" a NodePort
// answers on.
func hostAddressFor(t *testing.T, ip string) string {
	t.Helper()
	target := net.ParseIP(ip)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.Contains(target) && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatalf("no host address on the network of %s", ip)
	return ""
}

// TestServicesRollbackPruneAndSelfHeal is issue #3 end to end: traffic keeps
// flowing through a rollout, a broken commit rolls back by itself, git
// revert restores Synced, removed objects are pruned, a pod removed by hand
// returns, and berth killed mid-rollout converges without duplicates.
func TestServicesRollbackPruneAndSelfHeal(t *testing.T) {
	podmantest.Require(t)
	podmantest.HelloImage(t, "v1")
	podmantest.HelloImage(t, "v2")
	repo := newGitRepo(t)
	copyExample(t, repo)
	// The example's deadline is a minute; a test need not wait that long.
	repo.edit("deploy/deployment.yaml", "progressDeadlineSeconds: 60", "progressDeadlineSeconds: 15")
	c1 := repo.commit("hello v1 behind a NodePort")
	b := startBerth(t, "--repo", repo.URL(), "--path", "deploy", "--interval", "1h")
	b.waitRolledOut("hello", "hello", c1, 3, 2*time.Minute)

	nodePort := "http://127.0.0.1:30080/"
	eventually(t, 30*time.Second, "the NodePort to answer on 127.0.0.1", func() error {
		_, _, err := httpGet(nodePort)
		return err
	})
	pods := livePods(b.pods("hello"))

	t.Run("NodePort answers on the host's addresses and spreads over the replicas", func(t *testing.T) {
		seen := map[string]bool{}
		for _, url := range []string{nodePort, "http://" + hostAddressFor(t, pods[0].Status.PodIP) + ":30080/"} {
			for range 30 {
				code, body, err := httpGet(url)
				if err != nil || code != 200 {
					t.Fatalf("GET %s: %d %v", url, code, err)
				}
				seen[body] = true
			}
		}
		if len(seen) < 2 {
			t.Errorf("60 requests reached only %v", seen)
		}
		out, err := b.cli("get", "services", "-n", "hello", "-o", "wide")
		if err != nil || !strings.Contains(out, "80:30080/TCP") || strings.Count(out, ":8080") != 3 {
			t.Errorf("berth get services -o wide:\n%s%v", out, err)
		}
	})

	t.Run("the ClusterIP answers from inside another pod", func(t *testing.T) {
		var clusterIP string
		out, err := b.cli("get", "services", "-n", "hello")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "hello" {
				clusterIP = f[2]
			}
		}
		// Ten tries: about a third land on the asking pod itself, which
		// only works with hairpin mode on its bridge port.
		container := "hello_" + pods[0].Name + "_web"
		for range 10 {
			check := exec.Command("podman", "exec", container, "/hello", "check", "http://"+clusterIP+":80/")
			if out, err := check.CombinedOutput(); err != nil {
				t.Fatalf("from pod %s, GET the ClusterIP %s: %v\n%s", pods[0].Name, clusterIP, err, out)
			}
		}
	})

	t.Run("a rolling update behind the Service drops no request", func(t *testing.T) {
		traffic := startTraffic(nodePort)
		repo.edit("deploy/deployment.yaml", "berth-hello:v1", "berth-hello:v2")
		c2 := repo.commit("hello v2")
		if out, err := b.cli("sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
		b.waitRolledOut("hello", "hello", c2, 3, 2*time.Minute)
		time.Sleep(500 * time.Millisecond)
		traffic.finish(t, "v1 to v2")
	})

	var bad string
	rolledBack := map[string]string{}
	t.Run("a commit whose readiness fails is rolled back automatically", func(t *testing.T) {
		traffic := startTraffic(nodePort)
		repo.edit("deploy/deployment.yaml", "          env:\n", "          env:\n            - name: READY_FAIL\n              value: \"1\"\n")
		bad = repo.commit("break readiness")
		if out, err := b.cli("sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
		eventually(t, 90*time.Second, "the automatic rollback", func() error {
			d, _ := b.deployment("hello", "hello")
			if d.RolledBackFrom == nil || d.Available != 3 || d.Updated != 3 {
				return fmt.Errorf("%+v", d)
			}
			return nil
		})
		traffic.finish(t, "failed rollout and rollback")
		d, _ := b.deployment("hello", "hello")
		if d.RolledBackFrom.ID != bad || d.Health != "Degraded" || !strings.Contains(d.Reason, "Readiness probe failed") {
			t.Errorf("status after the rollback does not name the commit and the cause: %+v", d)
		}
		if s := b.status(); s.Sync != api.SyncOutOfSync {
			t.Errorf("sync %s while Git asks for a refused template", s.Sync)
		}
		for _, p := range livePods(b.pods("hello")) {
			if p.Spec.Containers[0].Image != "localhost/berth-hello:v2" {
				t.Errorf("pod %s runs %s after the rollback", p.Name, p.Spec.Containers[0].Image)
			}
			rolledBack[p.Name] = string(p.UID)
		}
		hist, _ := b.cli("history")
		if !strings.Contains(hist, api.OutcomeRolledBack) {
			t.Errorf("history does not show the rollback:\n%s", hist)
		}
		status, _ := b.cli("status")
		if !strings.Contains(status, "rolled back automatically") || !strings.Contains(status, short(bad)) {
			t.Errorf("berth status does not explain the rollback:\n%s", status)
		}
	})

	t.Run("git revert restores Synced and Healthy without restarting pods", func(t *testing.T) {
		repo.git(repo.work, "revert", "--no-edit", bad)
		repo.git(repo.work, "push", "-q", "origin", "main")
		revert := repo.git(repo.work, "rev-parse", "HEAD")
		if out, err := b.cli("sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
		b.waitRolledOut("hello", "hello", revert, 3, time.Minute)
		if d, _ := b.deployment("hello", "hello"); d.RolledBackFrom != nil {
			t.Errorf("still rolled back after the revert: %+v", d)
		}
		if got := podSet(b.pods("hello")); fmt.Sprint(got) != fmt.Sprint(rolledBack) {
			t.Errorf("the revert restarted pods:\nbefore %v\nafter  %v", rolledBack, got)
		}
	})

	t.Run("a pod removed by hand comes back", func(t *testing.T) {
		victim := livePods(b.pods("hello"))[0]
		if out, err := exec.Command("podman", "pod", "rm", "-f", "-t", "0", "hello_"+victim.Name).CombinedOutput(); err != nil {
			t.Fatalf("podman pod rm: %v\n%s", err, out)
		}
		eventually(t, 20*time.Second, "the pod to be recreated", func() error {
			if n := len(managedPodmanPods(t, b.node)); n != 3 {
				return fmt.Errorf("%d podman pods", n)
			}
			d, _ := b.deployment("hello", "hello")
			if d.Available != 3 {
				return fmt.Errorf("%+v", d)
			}
			return nil
		})
	})

	t.Run("berth killed mid-rollout converges with no duplicate pods", func(t *testing.T) {
		repo.edit("deploy/deployment.yaml", "berth-hello:v2", "berth-hello:v1")
		c := repo.commit("back to v1")
		if out, err := b.cli("sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
		eventually(t, 30*time.Second, "the rollout to start", func() error {
			if d, _ := b.deployment("hello", "hello"); d.Updated == 0 {
				return fmt.Errorf("%+v", d)
			}
			return nil
		})
		b.stop(syscall.SIGKILL)
		b.start()
		b.waitRolledOut("hello", "hello", c, 3, 2*time.Minute)
		eventually(t, 30*time.Second, "leftover pods to go", func() error {
			if names := managedPodmanPods(t, b.node); len(names) != 3 {
				return fmt.Errorf("podman runs %v", names)
			}
			return nil
		})
	})

	t.Run("objects removed from Git are pruned, rules included", func(t *testing.T) {
		for _, f := range []string{"deployment.yaml", "service.yaml", "config.yaml"} {
			repo.git(repo.work, "rm", "-q", "deploy/"+f)
		}
		c := repo.commit("remove hello")
		if out, err := b.cli("sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
		eventually(t, 60*time.Second, "pods and rules to be pruned", func() error {
			if s := b.status(); s.Applied == nil || s.Applied.ID != c {
				return fmt.Errorf("applied %v", s.Applied)
			}
			if names := managedPodmanPods(t, b.node); len(names) != 0 {
				return fmt.Errorf("podman still runs %v", names)
			}
			if rules := iptablesSave(t); strings.Contains(rules, "hello/hello") {
				return fmt.Errorf("rules for hello/hello remain")
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:30080")
		if err == nil {
			conn.Close()
			t.Errorf("the pruned NodePort still accepts connections")
		}
	})

	t.Run("berth cleanup removes every rule berth wrote", func(t *testing.T) {
		b.stop(syscall.SIGTERM)
		if out, err := b.cli("cleanup"); err != nil {
			t.Fatalf("berth cleanup: %v\n%s", err, out)
		}
		if rules := iptablesSave(t); strings.Contains(rules, "BERTH") {
			t.Errorf("rules remain after cleanup:\n%s", rules)
		}
	})
}
