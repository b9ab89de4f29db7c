package plan

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRollingFirstStep checks the first pass of a rolling update from a
// fully available steady state: the fenceposts decide how far the new
// ReplicaSet grows and how far the old one shrinks. As upstream, creating
// the new ReplicaSet is not a "scale-up" of an existing one, so the
// scale-down runs in the same pass when old pods are available to spare.
func TestRollingFirstStep(t *testing.T) {
	tests := []struct {
		name              string
		replicas          int32
		surge, unavail    string
		wantNew, wantOld  int32
		wantSurge, wantMU int32
	}{
		{"10 replicas 25%/25%", 10, "25%", "25%", 3, 8, 3, 2},
		{"3 replicas defaults: surge 1, unavailable 0", 3, "25%", "25%", 1, 3, 1, 0},
		{"maxUnavailable 1, maxSurge 0", 4, "0", "1", 0, 3, 0, 1},
		{"5 replicas 30%/30%: surge rounds up, unavailable down", 5, "30%", "30%", 2, 4, 2, 1},
		{"both resolve to zero: unavailable becomes 1", 3, "0", "25%", 0, 2, 0, 1},
		{"maxUnavailable capped at replicas", 4, "0", "100%", 0, 0, 0, 4},
		{"surge 100%", 10, "100%", "0", 10, 10, 10, 0},
		{"1 replica defaults", 1, "25%", "25%", 1, 1, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := deployment("web", tc.replicas, "img:v1", rolling(tc.surge, tc.unavail))
			if got := maxSurge(d); got != tc.wantSurge {
				t.Errorf("maxSurge = %d, want %d", got, tc.wantSurge)
			}
			if got := maxUnavailable(d); got != tc.wantMU {
				t.Errorf("maxUnavailable = %d, want %d", got, tc.wantMU)
			}
			w := newWorld(t, d)
			w.autoReady = true
			w.converge()
			old := w.rsOf("web")[0]

			w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
			p := w.compute()
			if len(p.CreateReplicaSets) != 1 {
				t.Fatalf("CreateReplicaSets = %d, want 1", len(p.CreateReplicaSets))
			}
			newRS := p.CreateReplicaSets[0]
			if got := replicasOf(newRS); got != tc.wantNew {
				t.Errorf("new ReplicaSet replicas = %d, want %d", got, tc.wantNew)
			}
			gotOld := replicasOf(old)
			if u := findRS(p.UpdateReplicaSets, old.Name); u != nil {
				gotOld = replicasOf(u)
			}
			if gotOld != tc.wantOld {
				t.Errorf("old ReplicaSet replicas = %d, want %d", gotOld, tc.wantOld)
			}
			if len(p.CreatePods) != int(tc.wantNew) {
				t.Errorf("CreatePods = %d, want %d", len(p.CreatePods), tc.wantNew)
			}
			if len(p.DeletePods) != int(tc.replicas-tc.wantOld) {
				t.Errorf("DeletePods = %d, want %d", len(p.DeletePods), tc.replicas-tc.wantOld)
			}
			if tot := tc.wantNew + tc.wantOld; tot > tc.replicas+tc.wantSurge {
				t.Errorf("total %d exceeds replicas+maxSurge", tot)
			}
		})
	}
}

// TestRolling10Steps follows the 10-replica 25%/25% rollout pass by pass.
func TestRolling10Steps(t *testing.T) {
	d := deployment("web", 10, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.autoReady = false
	oldName := w.rsOf("web")[0].Name
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}

	sizes := func() (newSize, oldSize int32, pods int) {
		for _, rs := range w.rsOf("web") {
			if rs.Name == oldName {
				oldSize = replicasOf(rs)
			} else {
				newSize = replicasOf(rs)
			}
		}
		return newSize, oldSize, len(w.pods)
	}
	type want struct{ newSize, oldSize int32 }
	steps := []struct {
		name  string
		ready bool // mark all pods ready before the pass
		want  want
	}{
		{"new ReplicaSet created at 3, old 10->8 within maxUnavailable", false, want{3, 8}},
		{"new grows to the surge limit: 13 in total", false, want{5, 8}},
		{"nothing to do while new pods are unavailable", false, want{5, 8}},
		{"new pods available: old 8->3", true, want{5, 3}},
		{"new grows to 10", false, want{10, 3}},
		{"waiting for new pods again", false, want{10, 3}},
		{"old scaled to 0", true, want{10, 0}},
	}
	for i, s := range steps {
		if s.ready {
			w.readyAll()
		}
		w.step()
		n, o, pods := sizes()
		if n != s.want.newSize || o != s.want.oldSize {
			t.Fatalf("step %d (%s): new=%d old=%d, want new=%d old=%d", i+1, s.name, n, o, s.want.newSize, s.want.oldSize)
		}
		if pods != int(n+o) {
			t.Fatalf("step %d: %d pods for ReplicaSet sizes %d+%d", i+1, pods, n, o)
		}
		if pods > 13 {
			t.Fatalf("step %d: %d pods exceed replicas+maxSurge 13", i+1, pods)
		}
		w.now = w.now.Add(time.Second)
	}
	w.readyAll()
	p := w.step()
	if ds := statusOf(p, "web"); ds.Health != HealthHealthy || ds.Revision != 2 {
		t.Fatalf("after rollout: health %s (%s) revision %d, want Healthy revision 2", ds.Health, ds.Reason, ds.Revision)
	}
}

func TestMinReadySecondsDelaysAvailability(t *testing.T) {
	d := deployment("web", 3, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.autoReady = false
	w.deployments = []*appsv1.Deployment{withImage(withDefaults(d), "img:v2")}
	w.deployments[0].Spec.MinReadySeconds = 10
	oldName := w.rsOf("web")[0].Name

	p := w.step() // new ReplicaSet at 1 (surge 1, unavailable 0)
	if len(p.CreateReplicaSets) != 1 || replicasOf(p.CreateReplicaSets[0]) != 1 || p.CreateReplicaSets[0].Spec.MinReadySeconds != 10 {
		t.Fatalf("first pass: %+v", p.CreateReplicaSets)
	}
	w.readyAll() // ready at t, available only after t+10s

	p = w.step()
	if !empty(p) {
		t.Fatalf("ready but not yet available: plan should be empty, got %+v", p)
	}
	if want := 10*time.Second + requeueSlack; p.RequeueAfter != want {
		t.Fatalf("RequeueAfter = %v, want %v", p.RequeueAfter, want)
	}
	if ds := statusOf(p, "web"); ds.Status.AvailableReplicas != 3 || ds.Status.ReadyReplicas != 4 {
		t.Fatalf("status available=%d ready=%d, want 3 and 4", ds.Status.AvailableReplicas, ds.Status.ReadyReplicas)
	}

	w.now = w.now.Add(10 * time.Second) // exactly minReadySeconds: not yet (strictly after)
	if p = w.step(); !empty(p) || p.RequeueAfter != requeueSlack {
		t.Fatalf("at exactly minReadySeconds: plan %+v requeue %v", p, p.RequeueAfter)
	}
	w.now = w.now.Add(time.Second)
	w.step()
	if got := replicasOf(w.rs[key("default", oldName)]); got != 2 {
		t.Fatalf("old ReplicaSet = %d after the new pod became available, want 2", got)
	}
}

func TestRecreateWaitsForOldPods(t *testing.T) {
	d := deployment("web", 3, "img:v1", recreate)
	w := newWorld(t, d)
	w.autoReady = true
	w.graceful = true
	w.converge()
	oldName := w.rsOf("web")[0].Name
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}

	p := w.step()
	if len(p.CreateReplicaSets) != 0 || len(p.CreatePods) != 0 {
		t.Fatalf("Recreate must not create anything before old pods are gone: %+v", p)
	}
	if u := findRS(p.UpdateReplicaSets, oldName); u == nil || replicasOf(u) != 0 {
		t.Fatalf("old ReplicaSet not scaled to 0: %+v", p.UpdateReplicaSets)
	}
	if len(p.DeletePods) != 3 {
		t.Fatalf("DeletePods = %d, want 3", len(p.DeletePods))
	}

	// Old pods are terminating but still running: keep waiting.
	if p = w.step(); !empty(p) {
		t.Fatalf("old pods still terminating: plan should be empty, got %+v", p)
	}
	if ds := statusOf(p, "web"); ds.Status.Replicas != 0 || ds.Status.TerminatingReplicas == nil || *ds.Status.TerminatingReplicas != 3 {
		t.Fatalf("status while terminating: %+v", ds.Status)
	}

	// A Failed old pod does not hold the rollout back.
	for _, pod := range w.pods {
		pod.Status.Phase = corev1.PodFailed
	}
	p = w.step()
	if len(p.CreateReplicaSets) != 1 || replicasOf(p.CreateReplicaSets[0]) != 3 || len(p.CreatePods) != 3 {
		t.Fatalf("after old pods ended: %+v", p)
	}
}

func TestRollbackReusesOldReplicaSet(t *testing.T) {
	d := deployment("web", 3, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	w.converge()
	rss := w.rsOf("web")
	v1, v2 := rss[0], rss[1]
	if revision(v1.Annotations) != 1 || revision(v2.Annotations) != 2 {
		t.Fatalf("revisions %v %v", v1.Annotations, v2.Annotations)
	}

	w.deployments = []*appsv1.Deployment{d} // git revert
	p := w.compute()
	if len(p.CreateReplicaSets) != 0 {
		t.Fatalf("rollback created a ReplicaSet: %v", p.CreateReplicaSets[0].Name)
	}
	u := findRS(p.UpdateReplicaSets, v1.Name)
	if u == nil {
		t.Fatalf("old ReplicaSet %s not updated", v1.Name)
	}
	if u.Annotations[AnnotationRevision] != "3" || u.Annotations[AnnotationRevisionHistory] != "1" {
		t.Fatalf("annotations %v, want revision 3 history 1", u.Annotations)
	}
	if replicasOf(u) != 1 {
		t.Fatalf("reused ReplicaSet scaled to %d, want 1 (surge)", replicasOf(u))
	}
	if ds := statusOf(p, "web"); ds.Revision != 3 {
		t.Fatalf("Revision = %d, want 3", ds.Revision)
	}
	w.apply(p)
	w.converge()
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	w.converge()
	if got := w.rs[key("default", v2.Name)].Annotations; got[AnnotationRevision] != "4" || got[AnnotationRevisionHistory] != "2" {
		t.Fatalf("second rollback annotations %v, want revision 4 history 2", got)
	}
	if len(w.rsOf("web")) != 2 {
		t.Fatalf("%d ReplicaSets, want 2", len(w.rsOf("web")))
	}
}

func TestAppendRevisionHistory(t *testing.T) {
	long := strings.Repeat("1234,", 399) + "1234" // 1999 chars
	tests := []struct{ history, rev, want string }{
		{"", "1", "1"},
		{"1", "3", "1,3"},
		{long, "5", strings.Repeat("1234,", 399) + "5"},
	}
	for _, tc := range tests {
		got := appendRevisionHistory(tc.history, tc.rev)
		if got != tc.want {
			t.Errorf("appendRevisionHistory(%.20q, %q) = %.40q..., want %.40q...", tc.history, tc.rev, got, tc.want)
		}
		if len(got) > maxRevisionHistoryChars {
			t.Errorf("history %d chars, over the limit", len(got))
		}
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	d := deployment("web", 2, "img:v1", historyLimit(2))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	for _, img := range []string{"img:v2", "img:v3", "img:v4", "img:v5"} {
		w.deployments = []*appsv1.Deployment{withImage(d, img)}
		w.converge()
	}
	var revs []int64
	for _, rs := range w.rsOf("web") {
		revs = append(revs, revision(rs.Annotations))
	}
	if !reflect.DeepEqual(revs, []int64{3, 4, 5}) {
		t.Fatalf("kept revisions %v, want [3 4 5]", revs)
	}
}

func TestRevisionHistoryKeepsReplicaSetsWithPods(t *testing.T) {
	d := deployment("web", 2, "img:v1", historyLimit(0))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	oldName := w.rsOf("web")[0].Name
	w.graceful = true
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	for i := 0; i < 10; i++ {
		w.step()
		w.readyAll()
	}
	if _, ok := w.rs[key("default", oldName)]; !ok {
		t.Fatalf("old ReplicaSet deleted while its pods still terminate")
	}
	w.reap()
	p := w.step()
	if len(p.DeleteReplicaSets) != 1 || p.DeleteReplicaSets[0].Name != oldName {
		t.Fatalf("DeleteReplicaSets = %v, want %s", p.DeleteReplicaSets, oldName)
	}
}

func TestScaleWithoutTemplateChange(t *testing.T) {
	d := deployment("web", 3, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	rsName := w.rsOf("web")[0].Name

	w.deployments = []*appsv1.Deployment{withReplicas(d, 5)}
	p := w.step()
	if len(p.CreateReplicaSets) != 0 || len(p.UpdateReplicaSets) != 1 {
		t.Fatalf("scale up: %+v", p)
	}
	u := p.UpdateReplicaSets[0]
	if u.Name != rsName || replicasOf(u) != 5 || u.Annotations[AnnotationDesiredReplicas] != "5" || u.Annotations[AnnotationMaxReplicas] != "7" {
		t.Fatalf("scale up: %s replicas=%d annotations=%v", u.Name, replicasOf(u), u.Annotations)
	}
	if len(p.CreatePods) != 2 {
		t.Fatalf("CreatePods = %d, want 2", len(p.CreatePods))
	}
	w.converge()

	// Scale down: the lone pod on node-2 outlives the doubled-up ones.
	// Pods went round-robin onto 3 nodes: node-0 and node-1 hold two each.
	var lone string
	for _, pod := range w.podsOf(rsName) {
		if pod.Spec.NodeName == "node-2" {
			lone = pod.Name
		}
	}
	w.deployments = []*appsv1.Deployment{withReplicas(d, 2)}
	p = w.step()
	if len(p.DeletePods) != 3 {
		t.Fatalf("DeletePods = %d, want 3", len(p.DeletePods))
	}
	for _, pod := range p.DeletePods {
		if pod.Name == lone {
			t.Fatalf("deleted %s, the only pod on its node, before doubled-up pods", lone)
		}
	}
}

// TestProportionalScalingMidRollout scales a stuck rollout (old 8, new 5,
// sized for a maximum of 13) and checks each ReplicaSet keeps its share
// (sync.go scale), as in the Kubernetes documentation's example.
func TestProportionalScalingMidRollout(t *testing.T) {
	tests := []struct {
		replicas         int32
		wantOld, wantNew int32
		wantMax          string
	}{
		{15, 11, 7, "18"}, // 5 more allowed (15+3-13): 3 to old, 2 to new
		{5, 5, 3, "8"},    // 5 fewer (5+3-13): 3 from old, 2 from new
		{0, 0, 0, "3"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.replicas), func(t *testing.T) {
			d := deployment("web", 10, "img:v1", rolling("3", "2"))
			w := newWorld(t, d)
			w.autoReady = true
			w.converge()
			w.autoReady = false
			oldName := w.rsOf("web")[0].Name
			v2 := withImage(d, "img:v2")
			w.deployments = []*appsv1.Deployment{v2}
			w.step()
			w.step() // old 8, new 5: stuck, new pods never ready
			newName := w.rsOf("web")[1].Name
			if replicasOf(w.rsOf("web")[0]) != 8 || replicasOf(w.rsOf("web")[1]) != 5 {
				t.Fatal("setup: want old 8, new 5")
			}

			w.deployments = []*appsv1.Deployment{withReplicas(v2, tc.replicas)}
			p := w.step()
			if len(p.CreateReplicaSets) != 0 {
				t.Fatal("a scaling event must not roll out in the same pass")
			}
			old, nw := w.rs[key("default", oldName)], w.rs[key("default", newName)]
			if replicasOf(old) != tc.wantOld || replicasOf(nw) != tc.wantNew {
				t.Fatalf("old %d new %d, want %d and %d", replicasOf(old), replicasOf(nw), tc.wantOld, tc.wantNew)
			}
			for _, rs := range []*appsv1.ReplicaSet{old, nw} {
				if rs.Annotations[AnnotationDesiredReplicas] != fmt.Sprint(tc.replicas) || rs.Annotations[AnnotationMaxReplicas] != tc.wantMax {
					t.Fatalf("%s annotations %v", rs.Name, rs.Annotations)
				}
			}
		})
	}
}

func TestConfigDigestChangeRollsOut(t *testing.T) {
	digest := func(v string) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{api.AnnotationConfigDigest: v}
		}
	}
	d := deployment("web", 2, "img:v1", digest("aaa"))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.deployments = []*appsv1.Deployment{deployment("web", 2, "img:v1", digest("bbb"))}
	p := w.compute()
	if len(p.CreateReplicaSets) != 1 {
		t.Fatalf("config digest change: want a new ReplicaSet, got %+v", p)
	}
	rs := p.CreateReplicaSets[0]
	if rs.Spec.Template.Annotations[api.AnnotationConfigDigest] != "bbb" || rs.Annotations[AnnotationRevision] != "2" {
		t.Fatalf("new ReplicaSet %s: template annotations %v, annotations %v", rs.Name, rs.Spec.Template.Annotations, rs.Annotations)
	}
}

func TestNewReplicaSetObject(t *testing.T) {
	d := deployment("web", 2, "img:v1", minReady(5))
	d.UID = "dep-uid"
	d.Annotations = map[string]string{"team": "a", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
	w := newWorld(t, d)
	p := w.compute()
	if len(p.CreateReplicaSets) != 1 {
		t.Fatalf("CreateReplicaSets = %d", len(p.CreateReplicaSets))
	}
	rs := p.CreateReplicaSets[0]
	hash := PodTemplateHash(&d.Spec.Template, nil)
	if rs.Name != "web-"+hash || rs.Namespace != "default" || rs.UID == "" || !rs.CreationTimestamp.Time.Equal(t0) {
		t.Fatalf("meta %+v", rs.ObjectMeta)
	}
	for what, m := range map[string]map[string]string{"labels": rs.Labels, "selector": rs.Spec.Selector.MatchLabels, "template": rs.Spec.Template.Labels} {
		if m[appsv1.DefaultDeploymentUniqueLabelKey] != hash || m["app"] != "web" {
			t.Errorf("%s = %v", what, m)
		}
	}
	if d.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != "" || d.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != "" {
		t.Error("input Deployment was mutated")
	}
	ref := metav1.GetControllerOf(rs)
	if ref == nil || ref.Kind != "Deployment" || ref.Name != "web" || ref.UID != "dep-uid" {
		t.Errorf("ownerReference %+v", ref)
	}
	wantAnn := map[string]string{"team": "a", AnnotationRevision: "1", AnnotationDesiredReplicas: "2", AnnotationMaxReplicas: "3"}
	if !reflect.DeepEqual(rs.Annotations, wantAnn) {
		t.Errorf("annotations %v, want %v", rs.Annotations, wantAnn)
	}
	if replicasOf(rs) != 2 || rs.Spec.MinReadySeconds != 5 {
		t.Errorf("spec replicas=%d minReadySeconds=%d", replicasOf(rs), rs.Spec.MinReadySeconds)
	}
	if len(p.CreatePods) != 2 {
		t.Fatalf("CreatePods = %d", len(p.CreatePods))
	}
	pod := p.CreatePods[0]
	pref := metav1.GetControllerOf(pod)
	if pref == nil || pref.Kind != "ReplicaSet" || pref.Name != rs.Name || pref.UID != rs.UID {
		t.Errorf("pod ownerReference %+v", pref)
	}
	if !strings.HasPrefix(pod.Name, rs.Name+"-") || pod.UID == "" || pod.Spec.NodeName != "" || !pod.CreationTimestamp.Time.Equal(t0) {
		t.Errorf("pod meta %+v node %q", pod.ObjectMeta, pod.Spec.NodeName)
	}
	if pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash || pod.Labels[api.LabelOwner] != "ReplicaSet/"+rs.Name {
		t.Errorf("pod labels %v", pod.Labels)
	}
}

func TestHashCollisionBumpsCollisionCount(t *testing.T) {
	d := deployment("web", 1, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	v2 := withImage(d, "img:v2")
	// Squat the name v2 would get with a ReplicaSet of another template.
	squat := w.rsOf("web")[0].DeepCopy()
	squat.Name = "web-" + PodTemplateHash(&v2.Spec.Template, nil)
	squat.Spec.Template.Spec.Containers[0].Image = "img:other"
	squat.Spec.Replicas = ptr(int32(0))
	w.rs[key("default", squat.Name)] = squat

	w.deployments = []*appsv1.Deployment{v2}
	p := w.compute()
	if len(p.CreateReplicaSets) != 1 {
		t.Fatalf("CreateReplicaSets = %d", len(p.CreateReplicaSets))
	}
	want := "web-" + PodTemplateHash(&v2.Spec.Template, ptr(int32(1)))
	if got := p.CreateReplicaSets[0].Name; got != want || got == squat.Name {
		t.Fatalf("new ReplicaSet %s, want %s", got, want)
	}
	if cc := statusOf(p, "web").Status.CollisionCount; cc == nil || *cc != 1 {
		t.Fatalf("collisionCount = %v, want 1", cc)
	}
}

func TestPausedDeploymentDoesNotRollOut(t *testing.T) {
	d := deployment("web", 2, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	paused := withImage(d, "img:v2")
	paused.Spec.Paused = true
	w.deployments = []*appsv1.Deployment{paused}
	p := w.step()
	if !empty(p) {
		t.Fatalf("paused Deployment rolled out: %+v", p)
	}
	if c := cond(statusOf(p, "web"), appsv1.DeploymentProgressing); c.Status != corev1.ConditionUnknown || c.Reason != ReasonDeploymentPaused {
		t.Fatalf("Progressing = %+v", c)
	}
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	p = w.step()
	if len(p.CreateReplicaSets) != 1 {
		t.Fatalf("resumed Deployment did not roll out: %+v", p)
	}
}

func TestComputeDoesNotMutateInput(t *testing.T) {
	d := deployment("web", 4, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	in := w.input()
	before := deepCopyInput(in)
	Compute(in, w.names)
	if !reflect.DeepEqual(in, before) {
		t.Fatal("Compute mutated its input")
	}
}

func deepCopyInput(in Input) Input {
	out := in
	out.Deployments, out.ReplicaSets, out.LivePods = nil, nil, nil
	for _, d := range in.Deployments {
		out.Deployments = append(out.Deployments, d.DeepCopy())
	}
	for _, rs := range in.ReplicaSets {
		out.ReplicaSets = append(out.ReplicaSets, rs.DeepCopy())
	}
	for _, p := range in.LivePods {
		out.LivePods = append(out.LivePods, p.DeepCopy())
	}
	out.PreviousStatus = map[string]appsv1.DeploymentStatus{}
	for k, v := range in.PreviousStatus {
		out.PreviousStatus[k] = *v.DeepCopy()
	}
	return out
}

// TestOneStepPerPass: when the new ReplicaSet scales up, the pass ends
// there even though old replicas could also go (rolling.go rolloutRolling).
func TestOneStepPerPass(t *testing.T) {
	d := deployment("web", 4, "img:v1", rolling("1", "2"))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.autoReady = false
	oldName := w.rsOf("web")[0].Name
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	w.step() // new created at 1; old 4->2 (creating is not scaling up)
	if got := replicasOf(w.rs[key("default", oldName)]); got != 2 {
		t.Fatalf("old = %d after the first pass, want 2", got)
	}
	w.readyAll()
	p := w.step()
	newRS := w.rsOf("web")[1]
	if replicasOf(newRS) != 3 {
		t.Fatalf("new = %d, want 3", replicasOf(newRS))
	}
	if findRS(p.UpdateReplicaSets, oldName) != nil || len(p.DeletePods) != 0 {
		t.Fatalf("old ReplicaSet scaled down in the same pass as the scale-up: %+v", p.UpdateReplicaSets)
	}
	p = w.step()
	if got := replicasOf(w.rs[key("default", oldName)]); got != 1 {
		t.Fatalf("old = %d in the next pass, want 1", got)
	}
}

// TestCleanupUnhealthyOldReplicas: unavailable old pods are removed first
// and do not count against maxUnavailable (kubernetes#16737).
func TestCleanupUnhealthyOldReplicas(t *testing.T) {
	d := deployment("web", 4, "img:v1", rolling("1", "1"))
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	w.autoReady = false
	old := w.rsOf("web")[0]
	pods := w.podsOf(old.Name)
	notReady(pods[0])
	notReady(pods[1])
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	p := w.compute()
	u := findRS(p.UpdateReplicaSets, old.Name)
	if u == nil || replicasOf(u) != 3 {
		t.Fatalf("old ReplicaSet: %+v, want scaled to 3", u)
	}
	if len(p.DeletePods) != 1 || (p.DeletePods[0].Name != pods[0].Name && p.DeletePods[0].Name != pods[1].Name) {
		t.Fatalf("DeletePods = %v, want one of the unready pods", p.DeletePods)
	}
}
