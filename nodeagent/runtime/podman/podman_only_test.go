package podman_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"

	"berth.dev/berth/nodeagent/runtime"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
	"berth.dev/berth/nodeagent/runtime/runtimetest"
)

// Tests of what the conformance suite cannot see through the interface:
// networking, cgroup and rlimit enforcement, and the stop timeouts the
// 4.3.1 workarounds exist for.

type env struct {
	uri   string
	image string
	rt    *podman.Runtime
}

func setup(t *testing.T) env {
	t.Helper()
	podmantest.Require(t)
	image := podmantest.HelloImage(t, "v1")
	uri := podmantest.Service(t)
	podmantest.Cleanup(t, runtimetest.SuiteLabel)
	return env{uri: uri, image: image, rt: newRuntime(t, uri)}
}

func (e env) create(t *testing.T, spec runtime.PodSpec) runtime.Pod {
	t.Helper()
	spec.Name = fmt.Sprintf("podman-%d-%s", os.Getpid(), strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"))
	spec.Labels = map[string]string{runtimetest.SuiteLabelKey: runtimetest.SuiteLabelValue}
	pod, err := e.rt.CreatePod(t.Context(), spec)
	if err != nil {
		t.Fatalf("CreatePod: %v", err)
	}
	t.Cleanup(func() {
		if err := e.rt.RemovePod(context.Background(), spec.Name, 0); err != nil {
			t.Errorf("RemovePod: %v", err)
		}
	})
	return pod
}

func (e env) startAndWait(t *testing.T, id string) {
	t.Helper()
	if err := e.rt.StartContainer(t.Context(), id); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
}

// get polls url until it answers, so a server still starting is not a failure.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestPodAddressHostnameAndHostPort(t *testing.T) {
	e := setup(t)
	port := freePort(t)
	web := runtime.ContainerSpec{Name: "web", Image: e.image, Env: map[string]string{"POD_NAME": "web-pod"}}
	pod := e.create(t, runtime.PodSpec{
		Hostname:   "web-0",
		PortMaps:   []runtime.PortMapping{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080, Protocol: "TCP"}},
		Containers: []runtime.ContainerSpec{web},
	})
	e.startAndWait(t, pod.Containers[0].ID)

	code, body := get(t, "http://"+net.JoinHostPort(pod.IP, "8080")+"/")
	if code != 200 || !strings.Contains(body, "hello v1 pod=web-pod hostname=web-0") {
		t.Errorf("GET pod IP: %d %q, want 200 with version, pod name and the pod's hostname", code, body)
	}
	code, body = get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if code != 200 {
		t.Errorf("GET host port: %d %q, want 200", code, body)
	}
}

func TestLimitsAndMountsEnforced(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	web := runtime.ContainerSpec{
		Name: "web", Image: e.image,
		MemoryLimit: 64 << 20, CPULimitMilli: 250, StopSignal: "SIGINT",
		Mounts: []runtime.Mount{{Source: dir, Destination: "/ro", ReadOnly: true}, {Source: dir, Destination: "/rw"}},
	}
	pod := e.create(t, runtime.PodSpec{Containers: []runtime.ContainerSpec{web}})
	id := pod.Containers[0].ID
	e.startAndWait(t, id)

	// What the process itself sees: cgroup v1 files on this hybrid host,
	// v2 files where the container has a unified hierarchy.
	cpu := catFirst(t, e.rt, id, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max")
	if cpu != "25000" && cpu != "25000 100000" {
		t.Errorf("CPU quota seen in the container = %q, want 25000µs per 100000µs", cpu)
	}
	limits := catFirst(t, e.rt, id, "/proc/self/limits")
	for _, want := range []string{`Max open files\s+1024\s+1024`, `Max processes\s+4096\s+4096`} {
		if !matchLine(limits, want) {
			t.Errorf("/proc/self/limits lacks %q:\n%s", want, limits)
		}
	}

	data, err := containers.Inspect(e.bindingsCtx(t), id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if data.HostConfig.Memory != 64<<20 {
		t.Errorf("inspect: memory limit %d, want %d", data.HostConfig.Memory, 64<<20)
	}
	if data.Config.StopSignal != "SIGINT" && data.Config.StopSignal != "2" {
		t.Errorf("inspect: stop signal %q, want SIGINT", data.Config.StopSignal)
	}
	rw := map[string]bool{}
	for _, m := range data.Mounts {
		rw[m.Destination] = m.RW
	}
	if ro, ok := rw["/ro"]; !ok || ro {
		t.Errorf("inspect: /ro mount present=%v rw=%v, want a read-only mount", ok, ro)
	}
	if w, ok := rw["/rw"]; !ok || !w {
		t.Errorf("inspect: /rw mount present=%v rw=%v, want a writable mount", ok, w)
	}

	// The server exits 0 on SIGINT too, so the stop signal took effect if
	// the container stops cleanly.
	if err := e.rt.StopContainer(t.Context(), id, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	p, err := e.rt.InspectPod(t.Context(), pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Containers[0]; c.State != runtime.StateExited || c.ExitCode != 0 {
		t.Errorf("after stop with SIGINT: %s exit %d, want exited 0", c.State, c.ExitCode)
	}
}

func (e env) bindingsCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, err := bindings.NewConnection(t.Context(), e.uri)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func catFirst(t *testing.T, rt runtime.Runtime, id string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		code, out, err := rt.Exec(t.Context(), id, []string{runtimetest.Binary, "cat", p})
		if err != nil {
			t.Fatalf("exec cat %s: %v", p, err)
		}
		if code == 0 {
			return strings.TrimSpace(string(out))
		}
	}
	t.Fatalf("none of %v exists in the container", paths)
	return ""
}

func matchLine(text, pattern string) bool {
	for line := range strings.Lines(text) {
		if ok, _ := regexp.MatchString(pattern, line); ok {
			return true
		}
	}
	return false
}

// TestStopTimeoutsHonored guards the 4.3.1 workaround in RemovePod (the
// binding's pod stop timeout never reaches the server) and the container
// stop timeout: a SIGTERM-ignoring process must be killed after the grace
// period, not after Podman's default 10 s.
func TestStopTimeoutsHonored(t *testing.T) {
	e := setup(t)
	const grace = 2 * time.Second
	pod := e.create(t, runtime.PodSpec{Containers: []runtime.ContainerSpec{
		{Name: "a", Image: e.image, Args: []string{"hang"}},
		{Name: "b", Image: e.image, Args: []string{"hang"}},
	}})
	for _, c := range pod.Containers {
		e.startAndWait(t, c.ID)
	}

	check := func(what string, stop func() error) {
		t.Helper()
		begin := time.Now()
		if err := stop(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(begin)
		if took < grace-200*time.Millisecond || took > 8*time.Second {
			t.Errorf("%s with grace %s took %s: the grace period was not applied", what, grace, took)
		}
	}
	check("StopContainer", func() error { return e.rt.StopContainer(t.Context(), pod.Containers[0].ID, grace) })
	check("RemovePod", func() error { return e.rt.RemovePod(t.Context(), pod.Name, grace) })
	if _, err := e.rt.InspectPod(t.Context(), pod.Name); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("InspectPod after RemovePod: %v, want ErrNotFound", err)
	}
}

func TestCreatePodFailureLeavesNothing(t *testing.T) {
	e := setup(t)
	name := fmt.Sprintf("podman-%d-broken", os.Getpid())
	_, err := e.rt.CreatePod(t.Context(), runtime.PodSpec{
		Name:   name,
		Labels: map[string]string{runtimetest.SuiteLabelKey: runtimetest.SuiteLabelValue},
		Containers: []runtime.ContainerSpec{
			{Name: "ok", Image: e.image},
			{Name: "missing", Image: "localhost/berth-no-such-image:v0"},
		},
	})
	if err == nil {
		t.Fatal("CreatePod with a missing image succeeded")
	}
	if !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %q does not name the failing container", err)
	}
	if _, err := e.rt.InspectPod(t.Context(), name); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("InspectPod after failed create: %v, want ErrNotFound (the half-made pod must be removed)", err)
	}
}

// BenchmarkCreatePodAndStart measures what a pod start costs the agent:
// CreatePod (pod, infra start, app container) plus StartContainer.
func BenchmarkCreatePodAndStart(b *testing.B) {
	podmantest.Require(b)
	image := podmantest.HelloImage(b, "v1")
	uri := podmantest.Service(b)
	podmantest.Cleanup(b, runtimetest.SuiteLabel)
	rt, err := podman.New(b.Context(), uri, slogDiscard(), podman.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	b.Cleanup(func() {
		for _, n := range names {
			rt.RemovePod(context.Background(), n, 0)
		}
	})
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("bench-%d-%d", os.Getpid(), i)
		names = append(names, name)
		pod, err := rt.CreatePod(b.Context(), runtime.PodSpec{
			Name:       name,
			Labels:     map[string]string{runtimetest.SuiteLabelKey: runtimetest.SuiteLabelValue},
			Containers: []runtime.ContainerSpec{{Name: "web", Image: image}},
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := rt.StartContainer(b.Context(), pod.Containers[0].ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListPods measures the agent's per-sync observation of ten pods
// with two app containers each.
func BenchmarkListPods(b *testing.B) {
	podmantest.Require(b)
	image := podmantest.HelloImage(b, "v1")
	uri := podmantest.Service(b)
	podmantest.Cleanup(b, runtimetest.SuiteLabel)
	rt, err := podman.New(b.Context(), uri, slogDiscard(), podman.Options{})
	if err != nil {
		b.Fatal(err)
	}
	selector := map[string]string{runtimetest.SuiteLabelKey: runtimetest.SuiteLabelValue}
	for i := range 10 {
		_, err := rt.CreatePod(b.Context(), runtime.PodSpec{
			Name:   fmt.Sprintf("bench-list-%d-%d", os.Getpid(), i),
			Labels: selector,
			Containers: []runtime.ContainerSpec{
				{Name: "a", Image: image}, {Name: "b", Image: image},
			},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		pods, err := rt.ListPods(b.Context(), selector)
		if err != nil || len(pods) != 10 {
			b.Fatalf("ListPods: %d pods, %v", len(pods), err)
		}
	}
}

// TestExecConcurrentAndCancelled guards the private connection Exec uses:
// concurrent execs and other calls must not disturb each other, and a hung
// exec must end when its context does.
func TestExecConcurrentAndCancelled(t *testing.T) {
	e := setup(t)
	pod := e.create(t, runtime.PodSpec{Containers: []runtime.ContainerSpec{{Name: "web", Image: e.image}}})
	id := pod.Containers[0].ID
	e.startAndWait(t, id)

	errs := make(chan error, 16)
	for i := range 8 {
		go func() {
			code, _, err := e.rt.Exec(t.Context(), id, []string{runtimetest.Binary, "exit", fmt.Sprint(i)})
			if err == nil && code != i {
				err = fmt.Errorf("exec exit %d returned code %d", i, code)
			}
			errs <- err
		}()
		go func() {
			_, err := e.rt.ListPods(t.Context(), map[string]string{runtimetest.SuiteLabelKey: runtimetest.SuiteLabelValue})
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	begin := time.Now()
	_, _, err := e.rt.Exec(ctx, id, []string{runtimetest.Binary, "hang"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec of a hung command with a 1 s deadline: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Exec of a hung command returned after %s, long after its 1 s deadline", took)
	}
}
