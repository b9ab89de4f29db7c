package plan

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func crashLoop(p *corev1.Pod, restarts int32) {
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = nil
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "main", RestartCount: restarts,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
	}}
}

func TestAutomaticRollbackOnDeadline(t *testing.T) {
	v1 := deployment("web", 4, "img:v1", deadline(60))
	w := newWorld(t, v1)
	w.autoReady = true
	w.autoRollback = true
	w.converge()
	w.autoReady = false
	good := w.rsOf("web")[0].Name

	v2 := withImage(v1, "img:v2")
	w.deployments = []*appsv1.Deployment{v2}
	for i := 0; i < 5; i++ { // until stuck: new pods never become ready
		w.step()
	}
	w.now = w.now.Add(61 * time.Second)
	p := w.step()
	if len(p.FailedTemplates) != 1 {
		t.Fatalf("FailedTemplates = %v, want v2's template", p.FailedTemplates)
	}
	f := p.FailedTemplates[0]
	if f.Name != "web" || f.Hash != TemplateHash(&v2.Spec.Template) || !strings.HasPrefix(f.Reason, ReasonProgressDeadlineExceeded) {
		t.Fatalf("FailedTemplate %+v", f)
	}
	if p.RequeueAfter != requeueSlack {
		t.Fatalf("RequeueAfter %v, want an immediate pass", p.RequeueAfter)
	}

	// The next pass rolls back like `kubectl rollout undo`.
	p = w.step()
	if len(p.CreateReplicaSets) != 0 {
		t.Fatalf("rollback created a ReplicaSet")
	}
	u := findRS(p.UpdateReplicaSets, good)
	if u == nil || u.Annotations[AnnotationRevision] != "3" || u.Annotations[AnnotationRevisionHistory] != "1" {
		t.Fatalf("good ReplicaSet not reused with a revision bump: %+v", u)
	}
	ds := statusOf(p, "web")
	if ds.RolledBackFrom != f.Hash || ds.Health != HealthDegraded || !strings.HasPrefix(ds.Reason, "RolledBack: ") || ds.Revision != 3 {
		t.Fatalf("status after rollback: %s %q rev %d from %q", ds.Health, ds.Reason, ds.Revision, ds.RolledBackFrom)
	}
	if len(p.FailedTemplates) != 0 {
		t.Fatalf("rollback target condemned: %v", p.FailedTemplates)
	}

	w.converge()
	for _, pod := range w.pods {
		if img := pod.Spec.Containers[0].Image; img != "img:v1" {
			t.Fatalf("pod %s runs %s after the rollback", pod.Name, img)
		}
	}
	if ds := statusOf(w.compute(), "web"); ds.Health != HealthDegraded || ds.RolledBackFrom == "" {
		t.Fatalf("Git still asks for the failed template: want Degraded, got %s", ds.Health)
	}

	// A fix pushed to Git rolls out normally.
	w.deployments = []*appsv1.Deployment{withImage(v1, "img:v3")}
	p = w.converge()
	ds = statusOf(w.compute(), "web")
	if ds.Health != HealthHealthy || ds.RolledBackFrom != "" || ds.Revision != 4 {
		t.Fatalf("after a fix: %s %q revision %d", ds.Health, ds.Reason, ds.Revision)
	}
}

func TestCrashLoopRollbackThreshold(t *testing.T) {
	for _, tc := range []struct {
		restarts int32
		condemn  bool
	}{{1, false}, {2, false}, {3, true}, {8, true}} {
		v1 := deployment("web", 2, "img:v1")
		w := newWorld(t, v1)
		w.autoReady = true
		w.converge()
		w.autoReady = false
		w.deployments = []*appsv1.Deployment{withImage(v1, "img:v2")}
		w.step()
		crashLoop(w.podsOf(w.rsOf("web")[1].Name)[0], tc.restarts)
		p := w.compute()
		if ds := statusOf(p, "web"); ds.Health != HealthDegraded {
			t.Fatalf("%d restarts: health %s, want Degraded", tc.restarts, ds.Health)
		}
		if got := len(p.FailedTemplates) == 1; got != tc.condemn {
			t.Fatalf("%d restarts: FailedTemplates %v, want condemned=%v", tc.restarts, p.FailedTemplates, tc.condemn)
		}
	}
}

func TestNoRollbackWithoutTargetOrAfterCompletion(t *testing.T) {
	t.Run("first template has nothing to return to", func(t *testing.T) {
		w := newWorld(t, deployment("web", 2, "img:v1"))
		w.step()
		crashLoop(w.podsOf(w.rsOf("web")[0].Name)[0], 9)
		if p := w.compute(); len(p.FailedTemplates) != 0 {
			t.Fatalf("FailedTemplates = %v", p.FailedTemplates)
		}
	})
	t.Run("crash after a complete rollout", func(t *testing.T) {
		v1 := deployment("web", 2, "img:v1")
		w := newWorld(t, v1)
		w.autoReady = true
		w.converge()
		w.deployments = []*appsv1.Deployment{withImage(v1, "img:v2")}
		w.converge()
		if len(w.rsOf("web")) != 2 {
			t.Fatal("setup: want the old ReplicaSet kept")
		}
		crashLoop(w.podsOf(w.rsOf("web")[1].Name)[0], 9)
		p := w.compute()
		if statusOf(p, "web").Health != HealthDegraded || len(p.FailedTemplates) != 0 {
			t.Fatalf("health %s FailedTemplates %v", statusOf(p, "web").Health, p.FailedTemplates)
		}
	})
	t.Run("failed list without a good ReplicaSet keeps Git's template", func(t *testing.T) {
		v1 := deployment("web", 2, "img:v1")
		w := newWorld(t, v1)
		w.failed = map[string][]string{"default/web": {TemplateHash(&v1.Spec.Template)}}
		p := w.step()
		if len(p.CreateReplicaSets) != 1 || statusOf(p, "web").RolledBackFrom != "" {
			t.Fatalf("plan %+v", p)
		}
	})
}

func TestTemplateHashIgnoresPodTemplateHashLabel(t *testing.T) {
	d := deployment("web", 1, "img:v1")
	w := newWorld(t, d)
	p := w.compute()
	rs := p.CreateReplicaSets[0]
	if TemplateHash(&rs.Spec.Template) != TemplateHash(&d.Spec.Template) {
		t.Fatal("a ReplicaSet's template must hash like its Deployment's")
	}
}
