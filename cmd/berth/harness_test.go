package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/api/client"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
	"berth.dev/berth/reconciler/pki"
)

// The end-to-end tests run the real binary (`berth up`) against real Podman
// and real Git repositories, and look at it only the way a user can: the
// CLI, the HTTP API and the pods themselves.

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// berthBinary builds cmd/berth once per test process.
func berthBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-e2e-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "berth")
		cmd := exec.Command("go", "build", "-tags", "remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp", "-o", buildOnce.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// gitRepo is a bare repository berth follows plus a working clone the test
// commits to, both on local disk (file://).
type gitRepo struct {
	t          testing.TB
	bare, work string
}

func newGitRepo(t testing.TB) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{t: t, bare: filepath.Join(dir, "repo.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "-q", "--bare", "-b", "main", r.bare)
	r.git(dir, "clone", "-q", r.bare, r.work)
	r.git(r.work, "checkout", "-q", "-b", "main")
	return r
}

func (r *gitRepo) URL() string { return "file://" + r.bare }

func (r *gitRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=berth e2e", "-c", "user.email=e2e@berth.invalid"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// write puts content at rel (relative to the working clone).
func (r *gitRepo) write(rel, content string) {
	r.t.Helper()
	p := filepath.Join(r.work, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// commit commits everything in the working clone, pushes, and returns the sha.
func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "-m", msg)
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

// berthProc is one running `berth up`.
type berthProc struct {
	t       testing.TB
	bin     string
	server  string
	node    string
	dataDir string
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
	client  *client.Client
	args    []string
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBerth runs `berth up` with its own data dir and its own Podman service
// (the --podman socket given does not exist, so berth starts one), and a
// node name unique to the test so its pods can be told apart and cleaned up.
func startBerth(t testing.TB, args ...string) *berthProc {
	t.Helper()
	podmantest.Require(t)
	p := &berthProc{
		t:       t,
		bin:     berthBinary(t),
		node:    fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1_000_000_000),
		dataDir: t.TempDir(),
	}
	podmantest.Cleanup(t, "berth.dev/node="+p.node)
	addr := freeAddr(t)
	p.server = "http://" + addr
	p.client = client.New(p.server, nil)
	p.logs = &syncBuffer{}
	p.args = append([]string{"up", "--listen", addr, "--data-dir", p.dataDir, "--node-name", p.node,
		"--podman", "unix://" + filepath.Join(p.dataDir, "absent.sock"), "--log-level", "debug"}, args...)
	p.start()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		// Pods are removed by podmantest.Cleanup; the Service rules here.
		if out, err := exec.Command(p.bin, "cleanup").CombinedOutput(); err != nil {
			t.Errorf("berth cleanup: %v\n%s", err, out)
		}
		if t.Failed() {
			t.Logf("berth logs:\n%s", tail(p.logs.String(), 150))
		}
	})
	return p
}

// spawn runs the process and returns a check that fails the test if it
// has exited.
func (p *berthProc) spawn() func() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	return func() {
		select {
		case <-p.done:
			p.t.Fatalf("berth %s exited early:\n%s", p.args[0], p.logs.String())
		default:
		}
	}
}

// startTLS starts a `berth controller` (TLS): the client uses the admin
// certificate the controller writes into its data dir.
func (p *berthProc) startTLS() {
	p.t.Helper()
	alive := p.spawn()
	eventually(p.t, 30*time.Second, "the controller's admin credentials", func() error {
		alive()
		cfg, err := pki.LoadAdminCredentials(pki.Dir(p.dataDir))
		if err != nil {
			return err
		}
		p.client = client.NewTLS(p.server, cfg)
		_, err = p.client.Status(context.Background())
		return err
	})
}

func (p *berthProc) start() {
	p.t.Helper()
	alive := p.spawn()
	eventually(p.t, 30*time.Second, "the API answers", func() error {
		alive()
		resp, err := http.Get(p.server + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func (p *berthProc) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cli runs a berth client command against this berth and returns its output.
func (p *berthProc) cli(args ...string) (string, error) {
	cmd := exec.Command(p.bin, append(args, "--server", p.server, "--admin-dir", p.dataDir)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *berthProc) status() api.Status {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := p.client.Status(ctx)
	if err != nil {
		p.t.Fatalf("status: %v", err)
	}
	return s
}

func (p *berthProc) pods(namespace string) []corev1.Pod {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pods []corev1.Pod
	if err := p.client.List(ctx, "pods", namespace, &pods); err != nil {
		p.t.Fatalf("list pods: %v", err)
	}
	return pods
}

func (p *berthProc) deployment(namespace, name string) (api.DeploymentHealth, bool) {
	for _, d := range p.status().Deployments {
		if d.Namespace == namespace && d.Name == name {
			return d, true
		}
	}
	return api.DeploymentHealth{}, false
}

// waitRolledOut waits until the Deployment is Healthy with every replica
// updated and available, the applied revision is want, and sync is Synced.
func (p *berthProc) waitRolledOut(namespace, name, want string, replicas int32, timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, fmt.Sprintf("%s/%s rolled out at %s", namespace, name, short(want)), func() error {
		s := p.status()
		if s.Applied == nil || s.Applied.ID != want {
			return fmt.Errorf("applied %+v, last error %q", s.Applied, s.LastError)
		}
		d, ok := p.deployment(namespace, name)
		if !ok {
			return fmt.Errorf("deployment not in status")
		}
		if d.Health != "Healthy" || d.Updated != replicas || d.Available != replicas || d.Ready != replicas {
			return fmt.Errorf("deployment %+v", d)
		}
		if s.Sync != api.SyncSynced {
			return fmt.Errorf("sync %s", s.Sync)
		}
		if n := len(livePods(p.pods(namespace))); n != int(replicas) {
			return fmt.Errorf("%d pods, want %d", n, replicas)
		}
		return nil
	})
}

func livePods(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// httpGet fetches url on a fresh connection (so every call goes through
// the Service rules again) with a short timeout.
func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = f(); last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, last)
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
