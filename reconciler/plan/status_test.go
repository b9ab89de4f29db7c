package plan

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestHealthOrder(t *testing.T) {
	if !HealthHealthy.Less(HealthProgressing) || !HealthProgressing.Less(HealthDegraded) || HealthDegraded.Less(HealthHealthy) {
		t.Fatal("Health order must be Healthy < Progressing < Degraded")
	}
	if HealthDegraded.String() != "Degraded" {
		t.Fatal("String")
	}
}

func TestSteadyStateIsHealthyAndIdle(t *testing.T) {
	d := deployment("web", 3, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	p := w.compute()
	if !empty(p) || p.RequeueAfter != 0 {
		t.Fatalf("steady state: plan %+v requeue %v", p, p.RequeueAfter)
	}
	ds := statusOf(p, "web")
	if ds.Health != HealthHealthy || !strings.HasPrefix(ds.Reason, ReasonNewReplicaSetAvailable+": ") || ds.Revision != 1 {
		t.Fatalf("health %s %q revision %d", ds.Health, ds.Reason, ds.Revision)
	}
	st := ds.Status
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != 1 {
		t.Fatalf("status %+v", st)
	}
	if c := cond(ds, appsv1.DeploymentProgressing); c.Status != corev1.ConditionTrue || c.Reason != ReasonNewReplicaSetAvailable {
		t.Fatalf("Progressing %+v", c)
	}
	if c := cond(ds, appsv1.DeploymentAvailable); c.Status != corev1.ConditionTrue || c.Reason != ReasonMinimumReplicasAvailable {
		t.Fatalf("Available %+v", c)
	}
}

// TestProgressConditionsAndDeadline walks the Progressing condition through
// a rollout whose pods never become ready: created, updated, stuck, timed
// out, and back to progressing when a pod finally becomes ready.
func TestProgressConditionsAndDeadline(t *testing.T) {
	d := deployment("web", 2, "img:v1", deadline(60))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	initial := cond(statusOf(w.compute(), "web"), appsv1.DeploymentProgressing)
	w.autoReady = false
	w.now = w.now.Add(time.Hour)
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}

	type want struct {
		status     corev1.ConditionStatus
		reason     string
		lastUpdate time.Time
		health     Health
		requeue    time.Duration
	}
	tStart := w.now
	steps := []struct {
		name    string
		advance time.Duration
		before  func()
		want    want
	}{
		{"new ReplicaSet created", 0, nil,
			want{corev1.ConditionTrue, ReasonNewReplicaSetCreated, tStart, HealthProgressing, 61 * time.Second}},
		{"pods created: progress", 1 * time.Second, nil,
			want{corev1.ConditionTrue, ReasonReplicaSetUpdated, tStart.Add(time.Second), HealthProgressing, 61 * time.Second}},
		{"no progress: clock keeps running", 30 * time.Second, nil,
			want{corev1.ConditionTrue, ReasonReplicaSetUpdated, tStart.Add(time.Second), HealthProgressing, 31 * time.Second}},
		// Timed out: the template is reported failed, with an immediate
		// requeue for the rollback (not fed back here).
		{"deadline passed", 31 * time.Second, nil,
			want{corev1.ConditionFalse, ReasonProgressDeadlineExceeded, tStart.Add(62 * time.Second), HealthDegraded, requeueSlack}},
		{"stays timed out", 100 * time.Second, nil,
			want{corev1.ConditionFalse, ReasonProgressDeadlineExceeded, tStart.Add(62 * time.Second), HealthDegraded, requeueSlack}},
		{"a pod becomes ready: progressing again", 10 * time.Second, func() { w.readyAll() },
			want{corev1.ConditionTrue, ReasonReplicaSetUpdated, tStart.Add(172 * time.Second), HealthProgressing, 61 * time.Second}},
	}
	for _, s := range steps {
		w.now = w.now.Add(s.advance)
		if s.before != nil {
			s.before()
		}
		p := w.step()
		ds := statusOf(p, "web")
		c := cond(ds, appsv1.DeploymentProgressing)
		if c.Status != s.want.status || c.Reason != s.want.reason || !c.LastUpdateTime.Time.Equal(s.want.lastUpdate) {
			t.Fatalf("%s: Progressing = %s/%s updated %v, want %s/%s updated %v",
				s.name, c.Status, c.Reason, c.LastUpdateTime.Time.Sub(tStart), s.want.status, s.want.reason, s.want.lastUpdate.Sub(tStart))
		}
		// True since the first rollout until the timeout; True again after
		// it, from the moment it flipped back.
		wantTransition := initial.LastTransitionTime.Time
		if s.want.status == corev1.ConditionFalse {
			wantTransition = tStart.Add(62 * time.Second)
		} else if s.want.lastUpdate.After(tStart.Add(62 * time.Second)) {
			wantTransition = s.want.lastUpdate
		}
		if !c.LastTransitionTime.Time.Equal(wantTransition) {
			t.Fatalf("%s: lastTransitionTime %v, want %v", s.name, c.LastTransitionTime.Time, wantTransition)
		}
		if ds.Health != s.want.health {
			t.Fatalf("%s: health %s (%s), want %s", s.name, ds.Health, ds.Reason, s.want.health)
		}
		if p.RequeueAfter != s.want.requeue {
			t.Fatalf("%s: RequeueAfter %v, want %v", s.name, p.RequeueAfter, s.want.requeue)
		}
		if ds.Health == HealthDegraded && !strings.HasPrefix(ds.Reason, `ProgressDeadlineExceeded: ReplicaSet "web-`) {
			t.Fatalf("%s: reason %q", s.name, ds.Reason)
		}
		if failed := len(p.FailedTemplates) == 1; failed != (ds.Health == HealthDegraded) {
			t.Fatalf("%s: FailedTemplates %v with health %s", s.name, p.FailedTemplates, ds.Health)
		}
	}
}

func TestAvailableCondition(t *testing.T) {
	d := deployment("web", 4, "img:v1", rolling("1", "1"))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	pods := w.podsOf(w.rsOf("web")[0].Name)
	notReady(pods[0])
	p := w.compute()
	if c := cond(statusOf(p, "web"), appsv1.DeploymentAvailable); c.Status != corev1.ConditionTrue {
		t.Fatalf("3 of 4 available with maxUnavailable 1: %+v", c)
	}
	notReady(pods[1])
	ds := statusOf(w.compute(), "web")
	if c := cond(ds, appsv1.DeploymentAvailable); c.Status != corev1.ConditionFalse || c.Reason != ReasonMinimumReplicasUnavail {
		t.Fatalf("2 of 4 available: %+v", c)
	}
	if ds.Status.UnavailableReplicas != 2 || ds.Health != HealthProgressing {
		t.Fatalf("unavailable %d health %s", ds.Status.UnavailableReplicas, ds.Health)
	}
}

func TestCrashLoopIsDegraded(t *testing.T) {
	d := deployment("web", 2, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.autoReady = false
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	w.step()
	newRS := w.rsOf("web")[1]
	pod := w.podsOf(newRS.Name)[0]
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "main", RestartCount: 4,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
	}}
	ds := statusOf(w.compute(), "web")
	if ds.Health != HealthDegraded || !strings.HasPrefix(ds.Reason, `CrashLoopBackOff: container "main" of pod "`+pod.Name+`"`) {
		t.Fatalf("health %s %q", ds.Health, ds.Reason)
	}
}

func TestNoProgressDeadline(t *testing.T) {
	d := deployment("web", 1, "img:v1", deadline(2147483647))
	w := newWorld(t, d)
	w.autoReady = true
	p := w.converge()
	if c := condition(statusOf(p, "web").Status, appsv1.DeploymentProgressing); c != nil {
		t.Fatalf("no deadline: Progressing must be absent, got %+v", c)
	}
	if p.RequeueAfter != 0 {
		t.Fatalf("RequeueAfter %v", p.RequeueAfter)
	}
}

// TestFoundNewReplicaSet: a Deployment met with its ReplicaSet already in
// place and no Progressing condition recorded starts its progress clock
// with FoundNewReplicaSet.
func TestFoundNewReplicaSet(t *testing.T) {
	w := newWorld(t, deployment("web", 2, "img:v1"))
	w.step() // a ReplicaSet and 2 pods that never get ready
	// Same counts as now (no progress), but no conditions.
	w.prev = map[string]appsv1.DeploymentStatus{"default/web": {Replicas: 2, UpdatedReplicas: 2}}
	c := cond(statusOf(w.compute(), "web"), appsv1.DeploymentProgressing)
	if c.Status != corev1.ConditionTrue || c.Reason != ReasonFoundNewReplicaSet || !c.LastUpdateTime.Time.Equal(w.now) {
		t.Fatalf("Progressing %+v, want FoundNewReplicaSet now", c)
	}
}

// TestMinReadySecondsChangeUpdatesReplicaSet: minReadySeconds is not part
// of the template, so changing it updates the current ReplicaSet.
func TestMinReadySecondsChangeUpdatesReplicaSet(t *testing.T) {
	d := deployment("web", 2, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	changed := d.DeepCopy()
	changed.Spec.MinReadySeconds = 7
	w.deployments = []*appsv1.Deployment{changed}
	p := w.compute()
	if len(p.CreateReplicaSets) != 0 || len(p.UpdateReplicaSets) != 1 || p.UpdateReplicaSets[0].Spec.MinReadySeconds != 7 {
		t.Fatalf("minReadySeconds change: %+v", p)
	}
}
