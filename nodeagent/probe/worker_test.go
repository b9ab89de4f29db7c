package probe

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestTrackerThresholds(t *testing.T) {
	S, F := Success, Failure
	tests := []struct {
		name     string
		kind     Kind
		success  int32
		failure  int32
		results  []Result
		verdicts []Result // verdict after each result
	}{
		{name: "readiness starts failed, one success flips", kind: Readiness, success: 1, failure: 3,
			results: []Result{S, F, F, F, S}, verdicts: []Result{S, S, S, F, S}},
		{name: "readiness needs successThreshold in a row", kind: Readiness, success: 2, failure: 1,
			results: []Result{S, F, S, S}, verdicts: []Result{F, F, F, S}},
		{name: "liveness starts passing and fails after failureThreshold", kind: Liveness, success: 1, failure: 2,
			results: []Result{F, S, F, F}, verdicts: []Result{S, S, S, F}},
		{name: "liveness ignores a successThreshold above 1", kind: Liveness, success: 5, failure: 1,
			results: []Result{F, S}, verdicts: []Result{F, S}},
		{name: "startup starts unknown", kind: Startup, success: 1, failure: 3,
			results: []Result{F, F, S}, verdicts: []Result{Unknown, Unknown, S}},
		{name: "zero thresholds take the defaults", kind: Readiness, success: 0, failure: 0,
			results: []Result{S, F, F, F}, verdicts: []Result{S, S, S, F}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(tc.kind, &corev1.Probe{SuccessThreshold: tc.success, FailureThreshold: tc.failure})
			for i, r := range tc.results {
				before := tr.verdict
				changed := tr.observe(r, "msg")
				if tr.verdict != tc.verdicts[i] {
					t.Fatalf("after result %d (%v): verdict %v, want %v", i, r, tr.verdict, tc.verdicts[i])
				}
				if changed != (before != tr.verdict) {
					t.Fatalf("after result %d: changed=%v but verdict went %v -> %v", i, changed, before, tr.verdict)
				}
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	probe := &corev1.Probe{}
	state := func(k Kind, v Result, msg string) *probeState {
		return &probeState{spec: probe, tracker: &tracker{verdict: v, message: msg}}
	}
	tests := []struct {
		name      string
		container corev1.Container
		probes    map[Kind]*probeState
		want      Status
	}{
		{name: "no probes: started and ready", want: Status{Started: true, Ready: true}},
		{name: "readiness initial: not ready", container: corev1.Container{ReadinessProbe: probe},
			want: Status{Started: true}},
		{name: "readiness failing carries the message", container: corev1.Container{ReadinessProbe: probe},
			probes: map[Kind]*probeState{Readiness: state(Readiness, Failure, "HTTP probe failed with statuscode: 500")},
			want:   Status{Started: true, Message: "Readiness probe failed: HTTP probe failed with statuscode: 500"}},
		{name: "readiness passing", container: corev1.Container{ReadinessProbe: probe},
			probes: map[Kind]*probeState{Readiness: state(Readiness, Success, "")},
			want:   Status{Started: true, Ready: true}},
		{name: "startup pending holds readiness and liveness", container: corev1.Container{StartupProbe: probe, ReadinessProbe: probe, LivenessProbe: probe},
			probes: map[Kind]*probeState{Readiness: state(Readiness, Success, ""), Liveness: state(Liveness, Failure, "x")},
			want:   Status{}},
		{name: "startup gave up", container: corev1.Container{StartupProbe: probe},
			probes: map[Kind]*probeState{Startup: state(Startup, Failure, "dial tcp: refused")},
			want:   Status{Failed: true, Message: "Startup probe failed: dial tcp: refused"}},
		{name: "liveness failed", container: corev1.Container{LivenessProbe: probe},
			probes: map[Kind]*probeState{Liveness: state(Liveness, Failure, "HTTP probe failed with statuscode: 503")},
			want:   Status{Started: true, Ready: true, Failed: true, Message: "Liveness probe failed: HTTP probe failed with statuscode: 503"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusOf(&tc.container, tc.probes); got != tc.want {
				t.Errorf("statusOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	m := NewManager(NewProber(nil), slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now }, nil)
	delayed := &corev1.Probe{InitialDelaySeconds: 5}
	mk := func(k Kind, v Result) *probeState { return &probeState{spec: delayed, tracker: &tracker{verdict: v}} }

	tests := []struct {
		name            string
		elapsed         time.Duration
		kind            Kind
		probes          map[Kind]*probeState
		onHold          bool
		wantDue, wantOn bool
	}{
		{name: "inside initial delay", elapsed: 4 * time.Second, kind: Readiness, wantDue: false, wantOn: true},
		{name: "after initial delay", elapsed: 5 * time.Second, kind: Readiness, wantDue: true, wantOn: true},
		{name: "waits for startup", elapsed: time.Minute, kind: Liveness, probes: map[Kind]*probeState{Startup: mk(Startup, Unknown)}, wantDue: false, wantOn: true},
		{name: "runs once started", elapsed: time.Minute, kind: Liveness, probes: map[Kind]*probeState{Startup: mk(Startup, Success)}, wantDue: true, wantOn: true},
		{name: "liveness on hold after failing", elapsed: time.Minute, kind: Liveness, onHold: true, wantDue: false, wantOn: true},
		{name: "startup done stops its worker", elapsed: time.Minute, kind: Startup, onHold: true, wantDue: false, wantOn: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = start.Add(tc.elapsed)
			ps := mk(tc.kind, initialVerdict(tc.kind))
			ps.onHold = tc.onHold
			probes := map[Kind]*probeState{tc.kind: ps}
			for k, v := range tc.probes {
				probes[k] = v
			}
			due, keep := m.due(&containerProbes{instance: Instance{StartedAt: start}, probes: probes}, tc.kind, ps)
			if due != tc.wantDue || keep != tc.wantOn {
				t.Errorf("due = %v keep = %v, want %v %v", due, keep, tc.wantDue, tc.wantOn)
			}
		})
	}
}

// TestManagerFollowsServer runs real workers against a loopback server whose
// readiness the test flips, and checks the verdicts follow it.
func TestManagerFollowsServer(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	ip, port := splitHostPort(t, srv.Listener.Addr().String())

	changes := make(chan struct{}, 16)
	m := NewManager(NewProber(nil), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	})
	c := &corev1.Container{Name: "web", ReadinessProbe: &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(port)}},
		PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1,
	}}
	key := Key{PodUID: "u1", Container: "web"}
	inst := Instance{ID: "c1", StartedAt: time.Now(), Target: Target{PodIP: ip}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Sync(ctx, key, c, inst)
	defer m.RemovePod("u1")

	waitFor := func(want func(Status) bool, what string) Status {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			s := m.Status(key, c, inst)
			if want(s) {
				return s
			}
			select {
			case <-changes:
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatalf("timed out waiting for %s; status %+v", what, s)
			}
		}
	}
	s := waitFor(func(s Status) bool { return s.Message != "" }, "a readiness failure message")
	if s.Ready || s.Message != "Readiness probe failed: HTTP probe failed with statuscode: 500" {
		t.Fatalf("status %+v", s)
	}
	ready.Store(true)
	waitFor(func(s Status) bool { return s.Ready }, "ready")

	// A new run of the container starts again from the initial verdicts.
	next := Instance{ID: "c1", StartedAt: inst.StartedAt.Add(time.Second), Target: inst.Target}
	m.Sync(ctx, key, c, next)
	if s := m.Status(key, c, inst); s.Ready {
		t.Fatalf("the old run's verdict must be gone, got %+v", s)
	}
}
