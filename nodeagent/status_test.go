package nodeagent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/nodeagent/probe"
	"berth.dev/berth/nodeagent/runtime"
)

func TestContainerStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pod := testPod()
	spec := &pod.Spec.Containers[0]
	last := &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: metav1.NewTime(now.Add(-5 * time.Second))}
	running := &runtime.Container{ID: "abc", Name: "app", State: runtime.StateRunning, StartedAt: now.Add(-time.Minute)}
	exited := &runtime.Container{ID: "abc", Name: "app", State: runtime.StateExited, ExitCode: 1, FinishedAt: now.Add(-5 * time.Second)}
	tests := []struct {
		name        string
		view        containerView
		policy      corev1.RestartPolicy
		wantWaiting string
		wantRunning bool
		wantTerm    bool
		wantReady   bool
		wantLast    bool
		wantCount   int32
	}{
		{name: "no pod yet", view: containerView{}, wantWaiting: "ContainerCreating"},
		{name: "config error", view: containerView{configErr: `secret "x" not found`}, wantWaiting: "CreateContainerConfigError"},
		{name: "create error", view: containerView{createErr: "image not known"}, wantWaiting: "CreateContainerError"},
		{name: "created, not started", view: containerView{observed: &runtime.Container{ID: "abc", State: runtime.StateCreated}}, wantWaiting: "ContainerCreating"},
		{name: "running and ready", view: containerView{observed: running, probes: probe.Status{Started: true, Ready: true}}, wantRunning: true, wantReady: true},
		{name: "running, readiness failing", view: containerView{observed: running, probes: probe.Status{Started: true}}, wantRunning: true},
		{name: "restarted after a crash keeps the last state", view: containerView{observed: running, probes: probe.Status{Started: true, Ready: true}, record: &containerRecord{RestartCount: 2, Last: last}},
			wantRunning: true, wantReady: true, wantLast: true, wantCount: 2},
		{name: "crash loop back-off", view: containerView{observed: exited, record: &containerRecord{RestartCount: 3, Last: last, NotBefore: now.Add(15 * time.Second), Wait: 20 * time.Second}},
			wantWaiting: "CrashLoopBackOff", wantLast: true, wantCount: 3},
		{name: "exited for good under Never", policy: corev1.RestartPolicyNever, view: containerView{observed: exited, record: &containerRecord{Last: last}}, wantTerm: true},
		{name: "failed start backing off", view: containerView{observed: &runtime.Container{ID: "abc", State: runtime.StateCreated}, record: &containerRecord{StartError: "no such file", NotBefore: now.Add(time.Second)}},
			wantWaiting: "CrashLoopBackOff"},
		{name: "failed start due for a retry", view: containerView{observed: &runtime.Container{ID: "abc", State: runtime.StateCreated}, record: &containerRecord{StartError: "no such file", NotBefore: now.Add(-time.Second)}},
			wantWaiting: "RunContainerError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pod.DeepCopy()
			p.Spec.RestartPolicy = tc.policy
			tc.view.spec = spec
			cs := containerStatus(tc.view, p, now)
			gotWaiting := ""
			if cs.State.Waiting != nil {
				gotWaiting = cs.State.Waiting.Reason
			}
			if gotWaiting != tc.wantWaiting || (cs.State.Running != nil) != tc.wantRunning || (cs.State.Terminated != nil) != tc.wantTerm {
				t.Fatalf("state = %+v", cs.State)
			}
			if cs.Ready != tc.wantReady || cs.RestartCount != tc.wantCount || (cs.LastTerminationState.Terminated != nil) != tc.wantLast {
				t.Fatalf("ready=%v restarts=%d last=%+v", cs.Ready, cs.RestartCount, cs.LastTerminationState)
			}
			if cs.Started == nil || *cs.Started != (tc.wantRunning && tc.view.probes.Started) {
				t.Fatalf("started = %v", cs.Started)
			}
			if cs.Name != "app" || cs.Image != spec.Image {
				t.Fatalf("name/image = %s %s", cs.Name, cs.Image)
			}
		})
	}
	t.Run("crash loop message", func(t *testing.T) {
		rec := &containerRecord{NotBefore: now.Add(time.Second), Wait: 40 * time.Second, Last: last}
		cs := containerStatus(containerView{spec: spec, observed: exited, record: rec}, pod, now)
		want := "back-off 40s restarting failed container=app pod=web-1_shop(uid-1)"
		if cs.State.Waiting.Message != want {
			t.Errorf("message = %q, want %q", cs.State.Waiting.Message, want)
		}
	})
}

func TestPodPhase(t *testing.T) {
	run := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	creating := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
	ok := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}
	bad := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	looping := corev1.ContainerStatus{
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}},
	}
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		cs     []corev1.ContainerStatus
		want   corev1.PodPhase
	}{
		{"creating", corev1.RestartPolicyAlways, []corev1.ContainerStatus{creating, run}, corev1.PodPending},
		{"running", corev1.RestartPolicyAlways, []corev1.ContainerStatus{run, run}, corev1.PodRunning},
		{"crash looping is still running", corev1.RestartPolicyAlways, []corev1.ContainerStatus{looping}, corev1.PodRunning},
		{"one done, one running", corev1.RestartPolicyNever, []corev1.ContainerStatus{ok, run}, corev1.PodRunning},
		{"all done under Never", corev1.RestartPolicyNever, []corev1.ContainerStatus{ok, ok}, corev1.PodSucceeded},
		{"one failed under Never", corev1.RestartPolicyNever, []corev1.ContainerStatus{ok, bad}, corev1.PodFailed},
		{"all succeeded under OnFailure", corev1.RestartPolicyOnFailure, []corev1.ContainerStatus{ok}, corev1.PodSucceeded},
		{"failed under OnFailure restarts", corev1.RestartPolicyOnFailure, []corev1.ContainerStatus{bad}, corev1.PodRunning},
	}
	for _, tc := range tests {
		if got := podPhase(tc.policy, tc.cs); got != tc.want {
			t.Errorf("%s: phase = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestConditionTransitionTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cc := conditionClock{}
	pod := testPod()
	notReady := []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	ready := []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	cond := func(st corev1.PodStatus, typ corev1.PodConditionType) corev1.PodCondition {
		for _, c := range st.Conditions {
			if c.Type == typ {
				return c
			}
		}
		t.Fatalf("no %s condition", typ)
		return corev1.PodCondition{}
	}

	s1 := podStatus(pod, nil, notReady, []string{"app: Readiness probe failed: HTTP probe failed with statuscode: 500"}, cc, t0)
	r1 := cond(s1, corev1.PodReady)
	if r1.Status != corev1.ConditionFalse || r1.Message != "containers with unready status: [app]; app: Readiness probe failed: HTTP probe failed with statuscode: 500" {
		t.Fatalf("ready condition %+v", r1)
	}
	s2 := podStatus(pod, nil, notReady, nil, cc, t0.Add(time.Minute))
	if r2 := cond(s2, corev1.PodReady); !r2.LastTransitionTime.Equal(&r1.LastTransitionTime) {
		t.Fatalf("unchanged condition moved its transition time: %v -> %v", r1.LastTransitionTime, r2.LastTransitionTime)
	}
	s3 := podStatus(pod, nil, ready, nil, cc, t0.Add(2*time.Minute))
	r3 := cond(s3, corev1.PodReady)
	if r3.Status != corev1.ConditionTrue || !r3.LastTransitionTime.Time.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("ready condition after the change %+v", r3)
	}
	if sc := cond(s3, corev1.PodScheduled); !sc.LastTransitionTime.Time.Equal(t0) {
		t.Fatalf("PodScheduled moved: %+v", sc)
	}
	if s3.Phase != corev1.PodRunning {
		t.Fatalf("phase %s", s3.Phase)
	}
}
