// Package runtimetest is the conformance suite every runtime.Runtime
// implementation must pass: the Podman runtime against a real service, and
// the in-memory fake with ImageProgram standing in for the image.
package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/nodeagent/runtime"
)

// SuiteLabel marks every pod the suite creates ("key=value"), so a runtime's
// test can clear leftovers of an interrupted run.
const (
	SuiteLabelKey   = "berth.dev/test"
	SuiteLabelValue = "runtimetest"
	SuiteLabel      = SuiteLabelKey + "=" + SuiteLabelValue
)

// waitTimeout bounds waits for a state change; it is a correctness
// deadline, not a speed assertion.
const waitTimeout = 30 * time.Second

var podSeq atomic.Int64

// Run runs the whole suite. newRuntime is called once per subtest; image
// must honour the contract described at Binary.
func Run(t *testing.T, newRuntime func(t *testing.T) runtime.Runtime, image string) {
	s := suite{newRuntime: newRuntime, image: image}
	t.Run("CreateInspectList", s.createInspectList)
	t.Run("ListBySelector", s.listBySelector)
	t.Run("ExecEnvMountsLimits", s.execEnvMountsLimits)
	t.Run("StopWithGrace", s.stopWithGrace)
	t.Run("ExitAndRestart", s.exitAndRestart)
	t.Run("Logs", s.logs)
	t.Run("RemoveAndNotFound", s.removeAndNotFound)
}

type suite struct {
	newRuntime func(t *testing.T) runtime.Runtime
	image      string
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// podName is unique per process and run, and a valid Podman pod name.
func podName(t *testing.T) string {
	base := strings.ToLower(t.Name()[strings.LastIndex(t.Name(), "/")+1:])
	return fmt.Sprintf("rtt-%d-%d-%s", os.Getpid(), podSeq.Add(1), base)
}

func (s suite) container(name string, args ...string) runtime.ContainerSpec {
	return runtime.ContainerSpec{Name: name, Image: s.image, Args: args}
}

// create creates the pod and removes it when the test ends.
func create(t *testing.T, rt runtime.Runtime, spec runtime.PodSpec) runtime.Pod {
	t.Helper()
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels[SuiteLabelKey] = SuiteLabelValue
	pod, err := rt.CreatePod(ctxFor(t), spec)
	if err != nil {
		t.Fatalf("CreatePod(%s): %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.RemovePod(ctx, spec.Name, 0); err != nil {
			t.Errorf("cleanup: RemovePod(%s): %v", spec.Name, err)
		}
	})
	return pod
}

// waitContainer polls until the pod's container at index reaches state.
func waitContainer(t *testing.T, rt runtime.Runtime, pod string, index int, state runtime.ContainerState) runtime.Container {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		p, err := rt.InspectPod(ctxFor(t), pod)
		if err != nil {
			t.Fatalf("InspectPod(%s): %v", pod, err)
		}
		c := p.Containers[index]
		if c.State == state {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s of pod %s is %s after %s, want %s", c.Name, pod, c.State, waitTimeout, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, rt runtime.Runtime, pod runtime.Pod, index int) runtime.Container {
	t.Helper()
	if err := rt.StartContainer(ctxFor(t), pod.Containers[index].ID); err != nil {
		t.Fatalf("StartContainer(%s): %v", pod.Containers[index].Name, err)
	}
	return waitContainer(t, rt, pod.Name, index, runtime.StateRunning)
}

func (s suite) createInspectList(t *testing.T) {
	rt := s.newRuntime(t)
	name := podName(t)
	labels := map[string]string{"app": "web", "berth.dev/pod": name}
	before := time.Now().Add(-time.Minute) // tolerate clock skew between us and the engine
	pod := create(t, rt, runtime.PodSpec{
		Name:     name,
		Labels:   labels,
		Hostname: "web-0",
		Containers: []runtime.ContainerSpec{
			s.container("web"),
			s.container("side", "hang"),
		},
	})

	if pod.Name != name || pod.ID == "" {
		t.Errorf("CreatePod returned name %q id %q, want name %q and an ID", pod.Name, pod.ID, name)
	}
	for k, v := range labels {
		if pod.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q", k, pod.Labels[k], v)
		}
	}
	if addr, err := netip.ParseAddr(pod.IP); err != nil || !addr.Is4() {
		t.Errorf("pod IP %q is not an IPv4 address (the infra container must be running)", pod.IP)
	}
	if pod.Created.Before(before) {
		t.Errorf("pod Created = %v, want about now", pod.Created)
	}
	if len(pod.Containers) != 2 {
		t.Fatalf("pod has %d containers, want 2 (app containers only): %+v", len(pod.Containers), pod.Containers)
	}
	for i, want := range []string{"web", "side"} {
		c := pod.Containers[i]
		if c.Name != want || c.ID == "" || c.Image == "" {
			t.Errorf("container %d = name %q id %q image %q, want spec name %q with an ID and image", i, c.Name, c.ID, c.Image, want)
		}
		if c.State != runtime.StateCreated {
			t.Errorf("container %s state %s, want created (app containers are not started by CreatePod)", c.Name, c.State)
		}
	}

	got, err := rt.InspectPod(ctxFor(t), name)
	if err != nil {
		t.Fatalf("InspectPod: %v", err)
	}
	if got.ID != pod.ID || got.IP != pod.IP || len(got.Containers) != 2 || got.Containers[1].ID != pod.Containers[1].ID {
		t.Errorf("InspectPod = %+v, want the created pod %+v", got, pod)
	}

	if _, err := rt.CreatePod(ctxFor(t), runtime.PodSpec{Name: name, Containers: []runtime.ContainerSpec{s.container("web")}}); err == nil {
		t.Errorf("CreatePod with an existing pod's name succeeded, want an error")
	}
}

func (s suite) listBySelector(t *testing.T) {
	rt := s.newRuntime(t)
	run := podName(t) // a label value no other test uses
	a := create(t, rt, runtime.PodSpec{Name: run + "-a", Labels: map[string]string{"run": run, "app": "a"},
		Containers: []runtime.ContainerSpec{s.container("main")}})
	b := create(t, rt, runtime.PodSpec{Name: run + "-b", Labels: map[string]string{"run": run, "app": "b"},
		Containers: []runtime.ContainerSpec{s.container("main")}})

	for _, tc := range []struct {
		selector map[string]string
		want     []string
	}{
		{map[string]string{"run": run}, []string{a.Name, b.Name}},
		{map[string]string{"run": run, "app": "a"}, []string{a.Name}},
		{map[string]string{"run": run, "app": "b"}, []string{b.Name}},
		{map[string]string{"run": run, "app": "c"}, nil},
		{map[string]string{"run": run + "-nope"}, nil},
	} {
		pods, err := rt.ListPods(ctxFor(t), tc.selector)
		if err != nil {
			t.Fatalf("ListPods(%v): %v", tc.selector, err)
		}
		var names []string
		for _, p := range pods {
			names = append(names, p.Name)
			if len(p.Containers) != 1 || p.Containers[0].Name != "main" {
				t.Errorf("ListPods(%v): pod %s containers %+v, want one named main", tc.selector, p.Name, p.Containers)
			}
		}
		if fmt.Sprint(names) != fmt.Sprint(tc.want) {
			t.Errorf("ListPods(%v) = %v, want %v", tc.selector, names, tc.want)
		}
	}
}

func (s suite) execEnvMountsLimits(t *testing.T) {
	rt := s.newRuntime(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "greeting"), []byte("hello from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	web := s.container("web")
	web.Env = map[string]string{"GREETING": "hi there", "EMPTY": ""}
	web.PodIPEnv = []string{"MY_POD_IP"}
	web.Mounts = []runtime.Mount{{Source: dir, Destination: "/etc/berth-test", ReadOnly: true}}
	web.MemoryLimit = 64 << 20
	web.CPULimitMilli = 500
	pod := create(t, rt, runtime.PodSpec{Name: podName(t), Containers: []runtime.ContainerSpec{web, s.container("idle", "hang")}})

	// Exec in a container that is not running fails, but not as "not found".
	if _, _, err := rt.Exec(ctxFor(t), pod.Containers[0].ID, []string{Binary, "exit", "0"}); err == nil || errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Exec in a created container: err = %v, want an error other than ErrNotFound", err)
	}
	start(t, rt, pod, 0)

	for _, tc := range []struct {
		cmd      []string
		wantCode int
		wantOut  string // exact, when wantCode is 0
	}{
		{[]string{Binary, "exit", "0"}, 0, ""},
		{[]string{Binary, "exit", "3"}, 3, ""},
		{[]string{Binary, "getenv", "GREETING"}, 0, "hi there"},
		{[]string{Binary, "getenv", "EMPTY"}, 0, ""},
		{[]string{Binary, "getenv", "UNSET_VARIABLE"}, 1, ""},
		{[]string{Binary, "cat", "/etc/berth-test/greeting"}, 0, "hello from the host"},
		{[]string{Binary, "cat", "/etc/berth-test/missing"}, 1, ""},
		{[]string{Binary, "memlimit"}, 0, fmt.Sprint(64 << 20)},
		{[]string{Binary, "getenv", "MY_POD_IP"}, 0, pod.IP},
	} {
		code, out, err := rt.Exec(ctxFor(t), pod.Containers[0].ID, tc.cmd)
		if err != nil {
			t.Errorf("Exec(%q): %v", tc.cmd, err)
			continue
		}
		if code != tc.wantCode {
			t.Errorf("Exec(%q) exit code %d (output %q), want %d", tc.cmd, code, out, tc.wantCode)
		}
		if tc.wantCode == 0 && string(out) != tc.wantOut {
			t.Errorf("Exec(%q) output %q, want %q", tc.cmd, out, tc.wantOut)
		}
		if tc.wantCode != 0 && len(out) == 0 && tc.wantCode != 3 {
			t.Errorf("Exec(%q) failed without output, want the error message (stderr must be captured)", tc.cmd)
		}
	}
}

func (s suite) stopWithGrace(t *testing.T) {
	rt := s.newRuntime(t)
	pod := create(t, rt, runtime.PodSpec{Name: podName(t), Containers: []runtime.ContainerSpec{
		s.container("graceful"),
		s.container("stubborn", "hang"),
	}})
	start(t, rt, pod, 0)
	start(t, rt, pod, 1)

	// The server handles SIGTERM and exits 0 well within its grace period.
	if err := rt.StopContainer(ctxFor(t), pod.Containers[0].ID, 20*time.Second); err != nil {
		t.Fatalf("StopContainer(graceful): %v", err)
	}
	c := waitContainer(t, rt, pod.Name, 0, runtime.StateExited)
	if c.ExitCode != 0 || c.FinishedAt.IsZero() {
		t.Errorf("graceful container after stop: exit code %d, finished %v; want 0 and a finish time", c.ExitCode, c.FinishedAt)
	}

	// A process ignoring SIGTERM is killed after the grace period.
	if err := rt.StopContainer(ctxFor(t), pod.Containers[1].ID, time.Second); err != nil {
		t.Fatalf("StopContainer(stubborn): %v", err)
	}
	c = waitContainer(t, rt, pod.Name, 1, runtime.StateExited)
	if c.ExitCode != 137 {
		t.Errorf("stubborn container after stop: exit code %d, want 137 (SIGKILL)", c.ExitCode)
	}

	// Stopping an exited container is not an error.
	if err := rt.StopContainer(ctxFor(t), pod.Containers[1].ID, time.Second); err != nil {
		t.Errorf("StopContainer on an exited container: %v", err)
	}
}

func (s suite) exitAndRestart(t *testing.T) {
	rt := s.newRuntime(t)
	pod := create(t, rt, runtime.PodSpec{Name: podName(t), Containers: []runtime.ContainerSpec{s.container("job", "exit", "3")}})
	id := pod.Containers[0].ID

	if err := rt.StartContainer(ctxFor(t), id); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	first := waitContainer(t, rt, pod.Name, 0, runtime.StateExited)
	if first.ExitCode != 3 || first.StartedAt.IsZero() || first.FinishedAt.Before(first.StartedAt) {
		t.Fatalf("after first run: exit code %d, started %v, finished %v; want 3 and finish after start", first.ExitCode, first.StartedAt, first.FinishedAt)
	}

	if err := rt.StartContainer(ctxFor(t), id); err != nil {
		t.Fatalf("StartContainer (restart): %v", err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		p, err := rt.InspectPod(ctxFor(t), pod.Name)
		if err != nil {
			t.Fatalf("InspectPod: %v", err)
		}
		c := p.Containers[0]
		if c.ID != id {
			t.Fatalf("restart changed the container ID from %s to %s", id, c.ID)
		}
		if c.State == runtime.StateExited && c.StartedAt.After(first.StartedAt) {
			if c.ExitCode != 3 {
				t.Errorf("after restart: exit code %d, want 3", c.ExitCode)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container did not run again: %+v (first run started %v)", c, first.StartedAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s suite) logs(t *testing.T) {
	rt := s.newRuntime(t)
	pod := create(t, rt, runtime.PodSpec{Name: podName(t), Containers: []runtime.ContainerSpec{s.container("web")}})
	start(t, rt, pod, 0)
	id := pod.Containers[0].ID

	deadline := time.Now().Add(waitTimeout)
	for {
		out, err := rt.Logs(ctxFor(t), id, -1)
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if strings.Contains(string(out), "serving") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Logs = %q, want a line containing \"serving\"", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := rt.Logs(ctxFor(t), id, 0)
	if err != nil {
		t.Fatalf("Logs(tail 0): %v", err)
	}
	if len(out) != 0 {
		t.Errorf("Logs(tail 0) = %q, want nothing", out)
	}
	out, err = rt.Logs(ctxFor(t), id, 1)
	if err != nil {
		t.Fatalf("Logs(tail 1): %v", err)
	}
	if n := strings.Count(strings.TrimSuffix(string(out), "\n"), "\n"); n != 0 || len(out) == 0 {
		t.Errorf("Logs(tail 1) = %q, want exactly one line", out)
	}
}

func (s suite) removeAndNotFound(t *testing.T) {
	rt := s.newRuntime(t)
	name := podName(t)
	pod := create(t, rt, runtime.PodSpec{Name: name, Labels: map[string]string{"run": name},
		Containers: []runtime.ContainerSpec{s.container("web"), s.container("stubborn", "hang")}})
	start(t, rt, pod, 0)
	start(t, rt, pod, 1)

	if err := rt.RemovePod(ctxFor(t), name, time.Second); err != nil {
		t.Fatalf("RemovePod: %v", err)
	}
	if err := rt.RemovePod(ctxFor(t), name, time.Second); err != nil {
		t.Errorf("RemovePod of a removed pod: %v, want nil", err)
	}
	pods, err := rt.ListPods(ctxFor(t), map[string]string{"run": name})
	if err != nil || len(pods) != 0 {
		t.Errorf("ListPods after remove = %v, %v; want none", pods, err)
	}

	id := pod.Containers[0].ID
	checks := map[string]error{}
	_, checks["InspectPod"] = rt.InspectPod(ctxFor(t), name)
	checks["StartContainer"] = rt.StartContainer(ctxFor(t), id)
	checks["StopContainer"] = rt.StopContainer(ctxFor(t), id, 0)
	_, _, checks["Exec"] = rt.Exec(ctxFor(t), id, []string{Binary, "exit", "0"})
	_, checks["Logs"] = rt.Logs(ctxFor(t), id, -1)
	for call, err := range checks {
		if !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("%s on a removed pod or container: err = %v, want runtime.ErrNotFound", call, err)
		}
	}
}
