package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

// copyExample puts examples/hello/deploy into the repo's deploy/ folder, so
// the example users run is the one the tests prove.
func copyExample(t testing.TB, r *gitRepo) {
	t.Helper()
	src := filepath.Join(podmantest.ModuleRoot(t), "examples", "hello", "deploy")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		r.write("deploy/"+e.Name(), string(data))
	}
}

func (r *gitRepo) edit(rel, old, new string) {
	r.t.Helper()
	p := filepath.Join(r.work, rel)
	data, err := os.ReadFile(p)
	if err != nil {
		r.t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		r.t.Fatalf("%s does not contain %q", rel, old)
	}
	r.write(rel, strings.Replace(string(data), old, new, 1))
}

func signBody(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func postWebhook(t *testing.T, server, signature string) int {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, err := http.NewRequest(http.MethodPost, server+"/hooks/git", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	if signature != "" {
		req.Header.Set("X-Hub-Signature-256", signature)
	} else {
		req.Header.Set("X-Hub-Signature-256", signBody("not-the-secret", body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rolloutWatcher samples the pods while a rollout runs and records every
// moment that breaks the Deployment's budget.
type rolloutWatcher struct {
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	samples    int
	violations []string
	minReady   int
	maxTotal   int
}

func watchRollout(p *berthProc, namespace string, minReady, maxTotal int) *rolloutWatcher {
	w := &rolloutWatcher{stop: make(chan struct{}), minReady: 1 << 30, maxTotal: 0}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var pods []corev1.Pod
			if err := p.client.List(p.t.Context(), "pods", namespace, &pods); err != nil {
				continue
			}
			live := livePods(pods)
			ready := 0
			for _, pod := range live {
				if api.PodReady(&pod) {
					ready++
				}
			}
			w.mu.Lock()
			w.samples++
			w.minReady = min(w.minReady, ready)
			w.maxTotal = max(w.maxTotal, len(live))
			if ready < minReady || len(live) > maxTotal {
				w.violations = append(w.violations, fmt.Sprintf("%d ready of %d pods", ready, len(live)))
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *rolloutWatcher) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	if w.samples < 10 {
		t.Fatalf("only %d samples of the rollout: the watcher saw too little to judge", w.samples)
	}
	if len(w.violations) > 0 {
		t.Fatalf("rollout broke its budget in %d of %d samples, e.g. %v", len(w.violations), w.samples, w.violations[0])
	}
	t.Logf("rollout: %d samples, never fewer than %d ready, never more than %d pods", w.samples, w.minReady, w.maxTotal)
}

func podSet(pods []corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, p := range livePods(pods) {
		out[p.Name] = string(p.UID)
	}
	return out
}

// TestGitToPodsOnOneHost is the heart of berth: a commit to a Git repository
// becomes running pods, image and ConfigMap changes roll out within budget,
// and a broken commit changes nothing.
func TestGitToPodsOnOneHost(t *testing.T) {
	podmantest.Require(t)
	podmantest.HelloImage(t, "v1")
	podmantest.HelloImage(t, "v2")
	repo := newGitRepo(t)
	copyExample(t, repo)
	c1 := repo.commit("Deploy hello v1")
	const secret = "e2e-webhook-secret"
	b := startBerth(t, "--repo", repo.URL(), "--path", "deploy", "--interval", "1h", "--webhook-secret", secret)

	b.waitRolledOut("hello", "hello", c1, 3, 2*time.Minute)
	t.Run("replicas serve env and files from the ConfigMap and Secret", func(t *testing.T) {
		for _, p := range livePods(b.pods("hello")) {
			if p.Status.PodIP == "" {
				t.Fatalf("pod %s has no IP", p.Name)
			}
			base := "http://" + p.Status.PodIP + ":8080"
			for path, want := range map[string]string{
				"/":                                      "v1",
				"/env?name=GREETING":                     "Hello from berth",
				"/env?name=API_TOKEN":                    "s3cr3t-demo-token",
				"/env?name=POD_NAME":                     p.Name,
				"/file?path=/etc/hello/app.properties":   "color=blue",
				"/file?path=/etc/hello-secret/API_TOKEN": "s3cr3t-demo-token",
			} {
				code, body, err := httpGet(base + path)
				if err != nil || code != 200 || !strings.Contains(body, want) {
					t.Errorf("pod %s GET %s = %d %q, %v; want 200 containing %q", p.Name, path, code, body, err, want)
				}
			}
		}
	})

	t.Run("a webhook with a bad signature is refused", func(t *testing.T) {
		if code := postWebhook(t, b.server, ""); code != http.StatusUnauthorized {
			t.Fatalf("bad signature: status %d, want 401", code)
		}
	})

	t.Run("an image change rolls out within maxUnavailable", func(t *testing.T) {
		before := podSet(b.pods("hello"))
		repo.edit("deploy/deployment.yaml", "berth-hello:v1", "berth-hello:v2")
		c2 := repo.commit("hello v2")
		// replicas 3, maxUnavailable 1, maxSurge 1: at least 2 ready, at most 4 pods.
		w := watchRollout(b, "hello", 2, 4)
		if code := postWebhook(t, b.server, signBody(secret, []byte(`{"ref":"refs/heads/main"}`))); code != http.StatusAccepted {
			t.Fatalf("signed webhook: status %d, want 202", code)
		}
		b.waitRolledOut("hello", "hello", c2, 3, 2*time.Minute)
		w.finish(t)
		for name := range podSet(b.pods("hello")) {
			if _, ok := before[name]; ok {
				t.Errorf("pod %s survived an image change", name)
			}
		}
		for _, p := range livePods(b.pods("hello")) {
			if code, body, err := httpGet("http://" + p.Status.PodIP + ":8080/"); err != nil || code != 200 || !strings.Contains(body, "v2") {
				t.Errorf("pod %s: %d %q %v, want v2", p.Name, code, body, err)
			}
		}
		if d, _ := b.deployment("hello", "hello"); d.Revision != 2 {
			t.Errorf("revision %d after one rollout, want 2", d.Revision)
		}
	})

	t.Run("a ConfigMap change rolls the pods", func(t *testing.T) {
		before := podSet(b.pods("hello"))
		repo.edit("deploy/config.yaml", `GREETING: "Hello from berth"`, `GREETING: "Hello again"`)
		c3 := repo.commit("new greeting")
		if out, err := b.cli("sync"); err != nil {
			t.Fatalf("berth sync: %v\n%s", err, out)
		}
		b.waitRolledOut("hello", "hello", c3, 3, 2*time.Minute)
		for _, p := range livePods(b.pods("hello")) {
			if _, ok := before[p.Name]; ok {
				t.Errorf("pod %s survived a ConfigMap change", p.Name)
			}
			if _, body, err := httpGet("http://" + p.Status.PodIP + ":8080/env?name=GREETING"); err != nil || !strings.Contains(body, "Hello again") {
				t.Errorf("pod %s GREETING = %q, %v", p.Name, body, err)
			}
		}
	})

	t.Run("an invalid revision is refused whole and nothing changes", func(t *testing.T) {
		s := b.status()
		applied := s.Applied.ID
		before := podSet(b.pods("hello"))
		repo.edit("deploy/deployment.yaml", "image: localhost/berth-hello:v2", "imagee: localhost/berth-hello:v1")
		repo.write("deploy/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Name\n  namespace: hello\n")
		bad := repo.commit("typo")
		out, err := b.cli("sync")
		if err == nil {
			t.Fatalf("berth sync of an invalid revision succeeded:\n%s", out)
		}
		for _, want := range []string{"deploy/deployment.yaml", "imagee", "Deployment hello/hello", "deploy/extra.yaml", "Not_A_Name"} {
			if !strings.Contains(out, want) {
				t.Errorf("berth sync output does not name %q:\n%s", want, out)
			}
		}
		time.Sleep(3 * time.Second) // give a wrong controller the time to act
		s = b.status()
		if s.Applied.ID != applied || s.Head == nil || s.Head.ID != bad || s.Sync != api.SyncOutOfSync {
			t.Errorf("status after a refused revision: applied %v head %v sync %s", s.Applied, s.Head, s.Sync)
		}
		if !strings.Contains(s.LastError, "imagee") {
			t.Errorf("status error %q does not name the field", s.LastError)
		}
		after := podSet(b.pods("hello"))
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("pods changed after a refused revision:\nbefore %v\nafter  %v", before, after)
		}
		hist, err := b.cli("history")
		if err != nil || !strings.Contains(hist, api.OutcomeRefused) || !strings.Contains(hist, "typo") {
			t.Errorf("berth history does not show the refusal: %v\n%s", err, hist)
		}
	})

	t.Run("the CLI shows status and objects", func(t *testing.T) {
		out, err := b.cli("status")
		if err != nil || !strings.Contains(out, "hello/hello") || !strings.Contains(out, "Healthy") {
			t.Errorf("berth status: %v\n%s", err, out)
		}
		out, err = b.cli("get", "pods", "-n", "hello", "-o", "wide")
		if err != nil || strings.Count(out, "Running") != 3 || !strings.Contains(out, b.node) {
			t.Errorf("berth get pods -o wide: %v\n%s", err, out)
		}
		out, err = b.cli("get", "secrets", "-A", "-o", "json")
		if err != nil || strings.Contains(out, "s3cr3t") || !strings.Contains(out, "API_TOKEN") {
			t.Errorf("berth get secrets must list keys without values: %v\n%s", err, out)
		}
	})
}

// TestFolderSourceAppliesEdits: a plain folder is watched and applied on save.
func TestFolderSourceAppliesEdits(t *testing.T) {
	podmantest.Require(t)
	podmantest.HelloImage(t, "v1")
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pod.yaml", folderPod("one"))
	b := startBerth(t, "--repo", dir, "--interval", "1h")
	waitPodServes := func(want string) {
		eventually(t, time.Minute, "the folder's pod to serve "+want, func() error {
			pods := livePods(b.pods("default"))
			if len(pods) != 1 {
				return fmt.Errorf("%d pods, want 1", len(pods))
			}
			for _, p := range pods {
				if !api.PodReady(&p) {
					return fmt.Errorf("pod %s not ready", p.Name)
				}
				_, body, err := httpGet("http://" + p.Status.PodIP + ":8080/env?name=MESSAGE")
				if err != nil {
					return err
				}
				if strings.TrimSpace(body) != want {
					return fmt.Errorf("MESSAGE=%q", body)
				}
			}
			return nil
		})
	}
	waitPodServes("one")
	first := b.status().Applied.ID
	write("pod.yaml", folderPod("two"))
	waitPodServes("two")
	if s := b.status(); s.Applied.ID == first || !strings.HasPrefix(s.Applied.ID, "dir:") {
		t.Errorf("applied revision %q after an edit (was %q)", s.Applied.ID, first)
	}
}

func folderPod(message string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: folder-demo
  labels:
    app: folder-demo
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: web
      image: localhost/berth-hello:v1
      env:
        - name: MESSAGE
          value: "` + message + `"
      readinessProbe:
        httpGet:
          path: /readyz
          port: 8080
        periodSeconds: 1
`
}
