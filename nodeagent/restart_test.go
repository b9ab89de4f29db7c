package nodeagent

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/nodeagent/runtime"
)

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		policy corev1.RestartPolicy
		code   int
		want   bool
	}{
		{corev1.RestartPolicyAlways, 0, true},
		{corev1.RestartPolicyAlways, 1, true},
		{"", 0, true},
		{corev1.RestartPolicyOnFailure, 0, false},
		{corev1.RestartPolicyOnFailure, 137, true},
		{corev1.RestartPolicyNever, 1, false},
		{corev1.RestartPolicyNever, 0, false},
	}
	for _, tc := range tests {
		if got := shouldRestart(tc.policy, tc.code); got != tc.want {
			t.Errorf("shouldRestart(%q, %d) = %v, want %v", tc.policy, tc.code, got, tc.want)
		}
	}
}

// TestBackoffSequence walks a container through a crash loop: the first
// exit restarts at once, then 10 s doubling to the 300 s cap, and a run of
// ten minutes starts over.
func TestBackoffSequence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type exit struct {
		ran      time.Duration // how long the run lasted
		wantWait time.Duration
	}
	exits := []exit{
		{time.Second, 0},
		{time.Second, 10 * time.Second},
		{time.Second, 20 * time.Second},
		{time.Second, 40 * time.Second},
		{time.Second, 80 * time.Second},
		{time.Second, 160 * time.Second},
		{time.Second, 300 * time.Second},
		{time.Second, 300 * time.Second},
		{10 * time.Minute, 0},
		{time.Second, 10 * time.Second},
	}
	var rec containerRecord
	now := t0
	for i, e := range exits {
		started := now
		finished := started.Add(e.ran)
		c := runtime.Container{ID: "c", State: runtime.StateExited, ExitCode: 1, StartedAt: started, FinishedAt: finished}
		if !rec.observeExit(c) {
			t.Fatalf("exit %d not seen as new", i)
		}
		if rec.observeExit(c) {
			t.Fatalf("exit %d counted twice", i)
		}
		if got := rec.NotBefore.Sub(finished); got != e.wantWait || rec.Wait != e.wantWait {
			t.Fatalf("exit %d: waits %s (Wait %s), want %s", i, got, rec.Wait, e.wantWait)
		}
		if e.wantWait > 0 && !rec.backingOff(finished.Add(e.wantWait-time.Millisecond)) {
			t.Fatalf("exit %d: not backing off just before the delay ends", i)
		}
		if rec.backingOff(finished.Add(e.wantWait)) {
			t.Fatalf("exit %d: still backing off when the delay ended", i)
		}
		if rec.Last == nil || rec.Last.ExitCode != 1 || rec.Last.Reason != "Error" || !rec.Last.FinishedAt.Time.Equal(finished) {
			t.Fatalf("exit %d: last termination %+v", i, rec.Last)
		}
		now = rec.NotBefore
	}
}

func TestStartErrorBacksOff(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rec containerRecord
	rec.observeStartError(errors.New("executable not found"), t0)
	rec.observeStartError(errors.New("executable not found"), t0)
	if rec.Wait != backoffInitial || !rec.backingOff(t0.Add(9*time.Second)) || rec.StartError == "" {
		t.Fatalf("record after two failed starts: %+v", rec)
	}
}

func TestTerminatedReason(t *testing.T) {
	tests := []struct {
		c    runtime.Container
		want string
	}{
		{runtime.Container{ExitCode: 0}, "Completed"},
		{runtime.Container{ExitCode: 2}, "Error"},
		{runtime.Container{ExitCode: 137, OOMKilled: true}, "OOMKilled"},
	}
	for _, tc := range tests {
		if got := terminated(tc.c).Reason; got != tc.want {
			t.Errorf("reason for %+v = %s, want %s", tc.c, got, tc.want)
		}
	}
}
