package nodeagent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/runtime"
	"berth.dev/berth/nodeagent/runtime/fake"
)

// fakeClock is a settable clock for back-off tests.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	real bool // follow the wall clock, for tests with real probe timers
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real {
		return time.Now()
	}
	return c.now
}
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// program makes fake containers behave like a given image.
type program struct {
	mu       sync.Mutex
	crash    map[string]int // container name -> exit code at start
	execCode map[string]int // container name -> exec exit code
}

func (p *program) Start(c runtime.ContainerSpec) (bool, int, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	code, ok := p.crash[c.Name]
	return ok, code, nil
}
func (p *program) Stop(runtime.ContainerSpec) int { return 143 }
func (p *program) Exec(c runtime.ContainerSpec, _ []string) (int, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if code := p.execCode[c.Name]; code != 0 {
		return code, []byte("unhealthy")
	}
	return 0, nil
}

func (p *program) setExec(name string, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.execCode[name] = code
}

func newProgram() *program { return &program{crash: map[string]int{}, execCode: map[string]int{}} }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type harness struct {
	t     *testing.T
	clock *fakeClock
	rt    *fake.Runtime
	cp    *memControlPlane
	dir   string
	agent *Agent
}

func newHarness(t *testing.T, prog *program) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}, cp: newMemControlPlane("node-1"), dir: t.TempDir()}
	h.rt = fake.New(fake.Options{Program: prog, Now: h.clock.Now})
	h.agent = h.newAgent()
	return h
}

func (h *harness) newAgent() *Agent {
	h.t.Helper()
	a, err := New(Config{
		NodeName: "node-1", DataDir: h.dir, Runtime: h.rt, ControlPlane: h.cp, Logger: discardLogger(),
		Clock: h.clock.Now, Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// pass runs one reconcile pass and waits for the removals it started.
func (h *harness) pass() time.Time {
	h.t.Helper()
	next, err := h.agent.reconcile(context.Background())
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	h.agent.bg.Wait()
	return next
}

func (h *harness) assign(pods ...corev1.Pod) {
	h.agent.setAssignment(&api.Assignment{Node: "node-1", Generation: time.Now().UnixNano(), Pods: pods,
		ConfigMaps: []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cfg"}, Data: map[string]string{"greeting": "hi"}}},
		Secrets:    []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "creds"}, Data: map[string][]byte{"password": []byte("s3cret")}}},
	})
}

func (h *harness) pods() map[string]runtime.Pod {
	h.t.Helper()
	pods, err := h.rt.ListPods(context.Background(), map[string]string{api.LabelManaged: "true"})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]runtime.Pod{}
	for _, p := range pods {
		out[p.Name] = p
	}
	return out
}

func (h *harness) status(namespace, name string) corev1.PodStatus {
	h.t.Helper()
	rep := h.agent.report()
	p, ok := podReport(&rep, namespace, name)
	if !ok {
		h.t.Fatalf("pod %s/%s not in report %+v", namespace, name, rep.Pods)
	}
	return p.Status
}

func appPod(name string, uid types.UID) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: uid},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: "localhost/berth-hello:v1",
				Env:          []corev1.EnvVar{{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "greeting"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "creds", MountPath: "/run/creds"}},
			}},
			Volumes: []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}},
		},
	}
}

func TestReconcileCreateReplaceRemove(t *testing.T) {
	h := newHarness(t, newProgram())
	h.assign(appPod("web-1", "u1"))
	h.pass()

	p, ok := h.pods()["shop_web-1"]
	if !ok || p.Labels[api.LabelUID] != "u1" || len(p.Containers) != 1 || p.Containers[0].State != runtime.StateRunning {
		t.Fatalf("pod after first pass: %+v (found %v)", p, ok)
	}
	secret := filepath.Join(h.dir, "pods", "u1", "volumes", "creds", "password")
	if b, err := os.ReadFile(secret); err != nil || string(b) != "s3cret" {
		t.Fatalf("secret file: %q %v", b, err)
	}
	st := h.status("shop", "web-1")
	if st.Phase != corev1.PodRunning || st.PodIP != p.IP || !st.ContainerStatuses[0].Ready {
		t.Fatalf("status %+v", st)
	}

	// A pass with nothing to do changes nothing.
	h.pass()
	if again := h.pods()["shop_web-1"]; again.ID != p.ID {
		t.Fatal("an idle pass recreated the pod")
	}

	// A new image replaces the pod under the same name.
	changed := appPod("web-1", "u1")
	changed.Spec.Containers[0].Image = "localhost/berth-hello:v2"
	h.assign(changed)
	h.pass() // stops the old pod
	h.pass() // creates the new one
	p2 := h.pods()["shop_web-1"]
	if p2.ID == p.ID || p2.Containers[0].Image != "localhost/berth-hello:v2" || p2.Containers[0].State != runtime.StateRunning {
		t.Fatalf("pod after the image change: %+v", p2)
	}

	// A pod with the same name but a new UID is a new pod.
	h.assign(appPod("web-1", "u2"))
	h.pass()
	h.pass()
	if p3 := h.pods()["shop_web-1"]; p3.Labels[api.LabelUID] != "u2" {
		t.Fatalf("pod after the UID change: %+v", p3)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "pods", "u1")); !os.IsNotExist(err) {
		t.Errorf("volumes of the old pod left behind: %v", err)
	}

	// Unassigned: removed, with its files.
	h.assign()
	h.pass()
	if n := len(h.pods()); n != 0 {
		t.Fatalf("%d pods left after unassigning", n)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "pods", "u2")); !os.IsNotExist(err) {
		t.Errorf("volumes left behind: %v", err)
	}
}

func TestReconcileLeavesForeignPodsAlone(t *testing.T) {
	h := newHarness(t, newProgram())
	foreign := map[string]map[string]string{
		"not-berths":        {"x": "y"},
		"other-nodes_web-1": {api.LabelManaged: "true", LabelNode: "node-2", api.LabelUID: "u9"},
	}
	for name, labels := range foreign {
		if _, err := h.rt.CreatePod(context.Background(), runtime.PodSpec{Name: name, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	h.assign()
	h.pass()
	for name := range foreign {
		if _, err := h.rt.InspectPod(context.Background(), name); err != nil {
			t.Errorf("pod %s, not this agent's, was touched: %v", name, err)
		}
	}
}

func TestRecreatesPodRemovedByHand(t *testing.T) {
	h := newHarness(t, newProgram())
	h.assign(appPod("web-1", "u1"))
	h.pass()
	if err := h.rt.RemovePod(context.Background(), "shop_web-1", 0); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if p, ok := h.pods()["shop_web-1"]; !ok || p.Containers[0].State != runtime.StateRunning {
		t.Fatalf("pod not recreated: %+v", p)
	}
}

func TestConfigErrorIsReported(t *testing.T) {
	h := newHarness(t, newProgram())
	pod := appPod("web-1", "u1")
	pod.Spec.Volumes[0].Secret.SecretName = "missing"
	h.assign(pod)
	h.pass()
	if len(h.pods()) != 0 {
		t.Fatal("a pod with a missing secret was created")
	}
	st := h.status("shop", "web-1")
	w := st.ContainerStatuses[0].State.Waiting
	if st.Phase != corev1.PodPending || w == nil || w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, `secret "missing" not found`) {
		t.Fatalf("status %+v", st)
	}
}

func TestCrashLoopBackOff(t *testing.T) {
	prog := newProgram()
	prog.crash["app"] = 1
	h := newHarness(t, prog)
	h.assign(appPod("web-1", "u1"))
	t0 := h.clock.Now()

	step := func(d time.Duration) time.Time {
		h.clock.Advance(d)
		return h.pass()
	}
	cs := func() corev1.ContainerStatus { return h.status("shop", "web-1").ContainerStatuses[0] }

	step(0) // create and start; the container exits at once (t0)
	step(time.Second)
	// The first exit restarts at once: restart 1, which exits at t0+1s.
	if c := cs(); c.RestartCount != 1 {
		t.Fatalf("after the first crash: %+v", c)
	}
	next := step(time.Second) // sees the exit at t0+1s: back-off 10 s
	if want := t0.Add(11 * time.Second); !next.Equal(want) {
		t.Fatalf("next wake-up %v, want %v", next, want)
	}
	c := cs()
	if c.State.Waiting == nil || c.State.Waiting.Reason != "CrashLoopBackOff" || c.RestartCount != 1 {
		t.Fatalf("during back-off: %+v", c)
	}
	if lt := c.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 1 || lt.Reason != "Error" {
		t.Fatalf("last termination: %+v", c.LastTerminationState)
	}
	if st := h.status("shop", "web-1"); st.Phase != corev1.PodRunning {
		t.Fatalf("a crash-looping pod under Always is Running, got %s", st.Phase)
	}

	step(8 * time.Second) // t0+10s: still waiting
	if c := cs(); c.RestartCount != 1 {
		t.Fatalf("restarted before the back-off ended: %+v", c)
	}
	step(time.Second) // t0+11s: restart 2, exits at t0+11s
	if c := cs(); c.RestartCount != 2 {
		t.Fatalf("not restarted when the back-off ended: %+v", c)
	}
	if next := step(time.Second); !next.Equal(t0.Add(31 * time.Second)) {
		t.Fatalf("second back-off ends %v, want t0+31s", next)
	}
	if m := cs().State.Waiting.Message; !strings.Contains(m, "back-off 20s") {
		t.Fatalf("message %q", m)
	}

	// The restart count survives an agent restart.
	h.agent = h.newAgent()
	if err := h.agent.loadState(); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if c := cs(); c.RestartCount != 2 || c.State.Waiting == nil || c.State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("after an agent restart: %+v", c)
	}
}

func TestRestartPolicyNever(t *testing.T) {
	prog := newProgram()
	prog.crash["app"] = 3
	h := newHarness(t, prog)
	pod := appPod("job-1", "u1")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.assign(pod)
	h.pass()
	h.clock.Advance(time.Hour)
	h.pass()
	st := h.status("shop", "job-1")
	c := st.ContainerStatuses[0]
	if st.Phase != corev1.PodFailed || c.RestartCount != 0 || c.State.Terminated == nil || c.State.Terminated.ExitCode != 3 {
		t.Fatalf("status %+v", st)
	}
}

func TestAdoptsRunningPodsAfterRestart(t *testing.T) {
	h := newHarness(t, newProgram())
	h.assign(appPod("web-1", "u1"))
	h.pass()
	before := h.pods()["shop_web-1"]

	// A new agent, with the control plane away, picks up the saved
	// assignment and leaves the running pod alone.
	h.cp.setDown(true)
	h.agent = h.newAgent()
	if err := h.agent.loadState(); err != nil {
		t.Fatal(err)
	}
	h.pass()
	after := h.pods()["shop_web-1"]
	if after.ID != before.ID || after.Containers[0].StartedAt != before.Containers[0].StartedAt {
		t.Fatalf("pod was recreated or restarted on adoption: %+v -> %+v", before, after)
	}
	if fi, err := os.Stat(filepath.Join(h.dir, assignmentFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("assignment file: %v %v", fi, err)
	}
}

func TestLivenessFailureRestartsContainer(t *testing.T) {
	prog := newProgram()
	h := newHarness(t, prog)
	h.clock.real = true // probes tick in real time here
	pod := appPod("web-1", "u1")
	pod.Spec.TerminationGracePeriodSeconds = new(int64)
	pod.Spec.Containers[0].LivenessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	h.assign(pod)
	h.pass()
	prog.setExec("app", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Real probes, so real passes: the liveness kill happens within a
		// few probe periods.
		if _, err := h.agent.reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		c := h.status("shop", "web-1").ContainerStatuses[0]
		if c.RestartCount >= 1 {
			if lt := c.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 143 {
				t.Fatalf("last termination after a liveness kill: %+v", c.LastTerminationState)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container not restarted after its liveness probe failed: %+v", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.agent.probes.RemovePod("u1")
	h.agent.bg.Wait()
}

// TestRunThroughControlPlaneOutage runs the whole agent loop: it follows the
// assignment, keeps pods running and repaired while the control plane is
// away, and catches up when it returns.
func TestRunThroughControlPlaneOutage(t *testing.T) {
	h := newHarness(t, newProgram())
	h.clock.real = true
	a, err := New(Config{
		NodeName: "node-1", DataDir: h.dir, Runtime: h.rt, ControlPlane: h.cp, Logger: discardLogger(),
		ReportInterval: 200 * time.Millisecond, SyncInterval: 50 * time.Millisecond,
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	running := func(name string) bool {
		p, ok := h.pods()[name]
		return ok && len(p.Containers) == 1 && p.Containers[0].State == runtime.StateRunning
	}

	h.cp.assign([]corev1.Pod{appPod("web-1", "u1")}, []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cfg"}, Data: map[string]string{"greeting": "hi"}}},
		[]corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "creds"}, Data: map[string][]byte{"password": []byte("pw")}}})
	eventually("the pod to run", func() bool { return running("shop_web-1") })
	eventually("a report with the pod running", func() bool {
		r, _ := h.cp.lastReport()
		p, ok := podReport(r, "shop", "web-1")
		return ok && p.Status.Phase == corev1.PodRunning && r.Generation == 1
	})

	h.cp.setDown(true)
	if err := h.rt.RemovePod(ctx, "shop_web-1", 0); err != nil {
		t.Fatal(err)
	}
	eventually("the pod to come back while the control plane is away", func() bool { return running("shop_web-1") })

	_, before := h.cp.lastReport()
	h.cp.assign(nil, nil, nil)
	h.cp.setDown(false)
	eventually("the unassigned pod to be removed", func() bool { return len(h.pods()) == 0 })
	eventually("reports to resume", func() bool {
		r, n := h.cp.lastReport()
		return n > before && r.Generation == 2 && len(r.Pods) == 0
	})
}
