package plan

import (
	"testing"
	"time"

	"berth.dev/berth/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// livePod builds a pod for the victim-order table; opts adjust it.
func livePod(name string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func onNode(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func phase(ph corev1.PodPhase) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}
func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }
func readySince(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(-d)) }
}
func createdAgo(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(-d)) }
}
func restarts(n int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", RestartCount: n}}
	}
}
func cost(c string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.PodDeletionCost: c} }
}

// TestVictimOrder checks each rule of ActivePodsWithRanks in turn: pod
// "a" must go before pod "b" whatever order they come in, and an earlier
// rule must win over a later one.
func TestVictimOrder(t *testing.T) {
	nodes := map[string]int{"node-a": 1, "node-crowded": 3, "": 2}
	tests := []struct {
		name string
		a, b *corev1.Pod
	}{
		{"unassigned before assigned", livePod("a", onNode("")), livePod("b")},
		{"Pending before Running", livePod("a", phase(corev1.PodPending), notReady), livePod("b", notReady)},
		{"Pending before Unknown", livePod("a", phase(corev1.PodPending)), livePod("b", phase(corev1.PodUnknown))},
		{"Unknown before Running", livePod("a", phase(corev1.PodUnknown)), livePod("b")},
		{"not ready before ready", livePod("a", notReady), livePod("b")},
		{"lower deletion cost first", livePod("a", cost("-10")), livePod("b", cost("5"))},
		{"invalid deletion cost counts as 0", livePod("a", cost("bogus")), livePod("b", cost("1"))},
		{"more co-located pods first", livePod("a", onNode("node-crowded")), livePod("b")},
		{"ready for less time first", livePod("a", readySince(10*time.Second)), livePod("b", readySince(time.Hour))},
		{"more restarts first", livePod("a", restarts(5)), livePod("b", restarts(1))},
		{"newer first", livePod("a", createdAgo(10*time.Second)), livePod("b", createdAgo(time.Hour))},
		{"similar ages tie on UID", livePod("a", createdAgo(40*time.Minute)), livePod("b", createdAgo(50*time.Minute))},
		// Precedence between rules.
		{"unassigned beats phase", livePod("a", onNode("")), livePod("b", phase(corev1.PodPending))},
		{"phase beats readiness", livePod("a", phase(corev1.PodPending)), livePod("b", phase(corev1.PodRunning), notReady)},
		{"readiness beats deletion cost", livePod("a", notReady, cost("100")), livePod("b", cost("-100"))},
		{"deletion cost beats co-location", livePod("a", cost("-1")), livePod("b", onNode("node-crowded"))},
		{"co-location beats ready time", livePod("a", onNode("node-crowded"), readySince(time.Hour)), livePod("b", readySince(time.Second))},
		{"ready time beats restarts", livePod("a", readySince(time.Second)), livePod("b", restarts(9))},
		{"restarts beat age", livePod("a", restarts(1), createdAgo(time.Hour)), livePod("b", createdAgo(time.Second))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][]*corev1.Pod{{tc.a, tc.b}, {tc.b, tc.a}} {
				got := victims(order, nodes, 1, t0)
				if len(got) != 1 || got[0] != tc.a {
					t.Fatalf("victims(%s, %s) = %s, want a", order[0].Name, order[1].Name, got[0].Name)
				}
			}
		})
	}
}

func TestVictimsSkipInactiveAndCap(t *testing.T) {
	term := livePod("t", notReady, phase(corev1.PodPending))
	ts := metav1.NewTime(t0)
	term.DeletionTimestamp = &ts
	failed := livePod("f", phase(corev1.PodFailed))
	ok1, ok2 := livePod("o1"), livePod("o2")
	got := victims([]*corev1.Pod{failed, ok1, term, ok2}, nil, 5, t0)
	if len(got) != 2 {
		t.Fatalf("victims among inactive pods: %d, want only the 2 active", len(got))
	}
}

func TestScaleDownThroughCompute(t *testing.T) {
	d := deployment("web", 4, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	rs := w.rsOf("web")[0]
	pods := w.podsOf(rs.Name)
	// One pod is not ready, one is unscheduled: both go first.
	notReady(pods[2])
	pods[3].Spec.NodeName = ""
	w.deployments = []*appsv1.Deployment{withReplicas(d, 2)}
	p := w.compute()
	if len(p.DeletePods) != 2 {
		t.Fatalf("DeletePods = %d, want 2", len(p.DeletePods))
	}
	want := map[string]bool{pods[2].Name: true, pods[3].Name: true}
	for _, pod := range p.DeletePods {
		if !want[pod.Name] {
			t.Fatalf("deleted %s, want %v", pod.Name, want)
		}
	}
}

func TestFailedPodIsReplaced(t *testing.T) {
	d := deployment("web", 3, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	pod := w.podsOf(w.rsOf("web")[0].Name)[1]
	pod.Status.Phase = corev1.PodFailed
	p := w.compute()
	if len(p.DeletePods) != 1 || p.DeletePods[0].Name != pod.Name {
		t.Fatalf("DeletePods = %v, want the failed pod", p.DeletePods)
	}
	if len(p.CreatePods) != 1 {
		t.Fatalf("CreatePods = %d, want 1 replacement", len(p.CreatePods))
	}
}

func TestBurstLimit(t *testing.T) {
	d := deployment("big", 1200, "img:v1")
	w := newWorld(t, d)
	p := w.step()
	if len(p.CreatePods) != burstReplicas {
		t.Fatalf("CreatePods = %d, want %d per pass", len(p.CreatePods), burstReplicas)
	}
	seen := map[string]bool{}
	for _, pod := range p.CreatePods {
		if seen[pod.Name] {
			t.Fatalf("duplicate pod name %s", pod.Name)
		}
		seen[pod.Name] = true
	}
	if p = w.step(); len(p.CreatePods) != burstReplicas {
		t.Fatalf("second pass CreatePods = %d", len(p.CreatePods))
	}
	if p = w.step(); len(p.CreatePods) != 200 {
		t.Fatalf("third pass CreatePods = %d, want 200", len(p.CreatePods))
	}
}

// clashNames returns a taken name first, then fresh ones.
type clashNames struct {
	seqNames
	taken string
	asked int
}

func (c *clashNames) PodName(rs string) string {
	c.asked++
	if c.asked == 1 {
		return c.taken
	}
	return c.seqNames.PodName(rs)
}

func TestPodNameClashIsRetried(t *testing.T) {
	d := deployment("web", 2, "img:v1")
	w := newWorld(t, d)
	w.autoReady = true
	w.converge()
	taken := w.podsOf(w.rsOf("web")[0].Name)[0].Name
	w.deployments = []*appsv1.Deployment{withReplicas(d, 3)}
	p := Compute(w.input(), &clashNames{taken: taken})
	if len(p.CreatePods) != 1 || p.CreatePods[0].Name == taken {
		t.Fatalf("CreatePods = %v, must not reuse %s", p.CreatePods, taken)
	}
}

func TestPruneRemovedObjects(t *testing.T) {
	a, b := deployment("a", 2, "img:v1"), deployment("b", 2, "img:v1")
	w := newWorld(t, a, b)
	w.barePods = []*corev1.Pod{barePod("solo", "img:v1")}
	w.autoReady = true
	w.converge()
	bRS := w.rsOf("b")[0]
	bPods := w.podsOf(bRS.Name)

	// A pod whose ReplicaSet no longer exists, and one already terminating.
	orphan := livePod("orphan")
	orphan.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "gone-123", UID: "gone", Controller: ptr(true)}}
	w.pods[key("default", "orphan")] = orphan
	ts := metav1.NewTime(w.now)
	bPods[0].DeletionTimestamp = &ts

	w.deployments = []*appsv1.Deployment{a}
	w.barePods = nil
	p := w.compute()
	if len(p.DeleteReplicaSets) != 1 || p.DeleteReplicaSets[0].Name != bRS.Name {
		t.Fatalf("DeleteReplicaSets = %v, want %s", p.DeleteReplicaSets, bRS.Name)
	}
	want := map[string]bool{bPods[1].Name: true, "orphan": true, "solo": true}
	if len(p.DeletePods) != len(want) {
		t.Fatalf("DeletePods = %d, want %d (terminating pods are not deleted twice)", len(p.DeletePods), len(want))
	}
	for _, pod := range p.DeletePods {
		if !want[pod.Name] {
			t.Fatalf("unexpected delete of %s", pod.Name)
		}
	}
	if len(p.Deployments) != 1 || p.Deployments[0].Name != "a" {
		t.Fatalf("statuses for %v, want only a", p.Deployments)
	}
	if len(p.CreatePods)+len(p.CreateReplicaSets)+len(p.UpdateReplicaSets) != 0 {
		t.Fatalf("unexpected writes: %+v", p)
	}
}

func TestBarePodLifecycle(t *testing.T) {
	w := newWorld(t)
	w.graceful = true
	w.barePods = []*corev1.Pod{barePod("solo", "img:v1")}

	p := w.step()
	if len(p.CreatePods) != 1 {
		t.Fatalf("CreatePods = %d, want 1", len(p.CreatePods))
	}
	first := p.CreatePods[0]
	if first.Name != "solo" || first.UID == "" || first.Labels[api.LabelOwner] != "" || first.Annotations[api.LabelSpecHash] == "" {
		t.Fatalf("bare pod %+v", first.ObjectMeta)
	}
	if _, ok := first.Labels[api.LabelOwner]; !ok || metav1.GetControllerOf(first) != nil {
		t.Fatalf("bare pod must carry an empty owner label and no owner: %+v", first.ObjectMeta)
	}
	if p = w.step(); !empty(p) {
		t.Fatalf("unchanged manifest: %+v", p)
	}
	// A bare pod that ran to completion stays, as in Kubernetes.
	w.pods[key("default", "solo")].Status.Phase = corev1.PodSucceeded
	if p = w.step(); !empty(p) {
		t.Fatalf("completed bare pod: %+v", p)
	}

	w.barePods = []*corev1.Pod{barePod("solo", "img:v2")}
	p = w.step()
	if len(p.DeletePods) != 1 || len(p.CreatePods) != 0 {
		t.Fatalf("changed manifest: want delete first, got %+v", p)
	}
	if p = w.step(); !empty(p) {
		t.Fatalf("old pod still terminating: %+v", p)
	}
	w.reap()
	p = w.step()
	if len(p.CreatePods) != 1 || p.CreatePods[0].Spec.Containers[0].Image != "img:v2" {
		t.Fatalf("replacement: %+v", p.CreatePods)
	}
	if p.CreatePods[0].Annotations[api.LabelSpecHash] == first.Annotations[api.LabelSpecHash] {
		t.Fatal("spec hash did not change with the manifest")
	}
}

func TestPodTemplateHash(t *testing.T) {
	d := deployment("web", 1, "img:v1")
	a := &d.Spec.Template
	b := a.DeepCopy()
	b.Labels = map[string]string{}
	for k, v := range a.Labels {
		b.Labels[k] = v
	}
	h := PodTemplateHash(a, nil)
	if h != PodTemplateHash(b, nil) {
		t.Fatal("equal templates hash differently")
	}
	for _, c := range h {
		if !containsRune("bcdfghjklmnpqrstvwxz2456789", c) {
			t.Fatalf("hash %q has %q outside SafeEncodeString's alphabet", h, c)
		}
	}
	seen := map[string]bool{h: true}
	for i := int32(0); i < 5; i++ {
		hc := PodTemplateHash(a, ptr(i))
		if seen[hc] {
			t.Fatalf("collisionCount %d repeats hash %s", i, hc)
		}
		seen[hc] = true
	}
	if PodTemplateHash(withImage(d, "img:v2").Spec.Template.DeepCopy(), nil) == h {
		t.Fatal("different templates share a hash")
	}
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

func TestEqualIgnoreHash(t *testing.T) {
	d := deployment("web", 1, "img:v1")
	withHash := d.Spec.Template.DeepCopy()
	withHash.Labels["pod-template-hash"] = "abc"
	if !equalIgnoreHash(&d.Spec.Template, withHash) {
		t.Fatal("templates differing only in pod-template-hash must be equal")
	}
	other := withHash.DeepCopy()
	other.Labels["tier"] = "x"
	if equalIgnoreHash(&d.Spec.Template, other) {
		t.Fatal("templates with different labels must differ")
	}
	if !equalIgnoreHash(&corev1.PodTemplateSpec{}, &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"pod-template-hash": "x"}}}) {
		t.Fatal("empty label map vs hash-only labels must be equal")
	}
}

func TestBarePodSpecHash(t *testing.T) {
	base := barePod("solo", "img:v1")
	annotated := base.DeepCopy()
	annotated.Annotations = map[string]string{"note": "x"}
	withOwnHash := annotated.DeepCopy()
	withOwnHash.Annotations[api.LabelSpecHash] = "stale"
	relabelled := base.DeepCopy()
	relabelled.Labels["tier"] = "web"
	h := barePodSpecHash(base)
	if barePodSpecHash(annotated) == h || barePodSpecHash(relabelled) == h {
		t.Fatal("annotation and label changes must change the spec hash (pods are replaced, not patched)")
	}
	if barePodSpecHash(withOwnHash) != barePodSpecHash(annotated) {
		t.Fatal("berth's own spec-hash annotation must not feed the hash")
	}
	if barePodSpecHash(base.DeepCopy()) != h {
		t.Fatal("hash must be stable")
	}
}
