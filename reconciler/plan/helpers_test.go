package plan

import (
	"fmt"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seqNames hands out predictable names: <rs>-p<n> and uid-<n>.
type seqNames struct{ pods, uids int }

func (n *seqNames) PodName(rs string) string { n.pods++; return fmt.Sprintf("%s-p%d", rs, n.pods) }
func (n *seqNames) UID() string              { n.uids++; return fmt.Sprintf("uid-%d", n.uids) }

// deployment builds a Deployment "default/<name>" with one container
// running image, and applies opts.
func deployment(name string, replicas int32, image string, opts ...func(*appsv1.Deployment)) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyAlways,
					Containers:    []corev1.Container{{Name: "main", Image: image}},
				},
			},
		},
	}
	for _, o := range opts {
		o(d)
	}
	return withDefaults(d)
}

func rolling(surge, unavailable string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		s, u := intstr.Parse(surge), intstr.Parse(unavailable)
		d.Spec.Strategy = appsv1.DeploymentStrategy{
			Type:          appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u},
		}
	}
}

func recreate(d *appsv1.Deployment) {
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
}

func minReady(sec int32) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = sec }
}

func deadline(sec int32) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = ptr(sec) }
}

func historyLimit(n int32) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptr(n) }
}

// withImage returns a copy of d running another image (a template change).
func withImage(d *appsv1.Deployment, image string) *appsv1.Deployment {
	c := d.DeepCopy()
	c.Spec.Template.Spec.Containers[0].Image = image
	return c
}

func withReplicas(d *appsv1.Deployment, n int32) *appsv1.Deployment {
	c := d.DeepCopy()
	c.Spec.Replicas = ptr(n)
	return c
}

// world is a tiny in-memory executor: it feeds Compute, applies the plan
// the way the controller would (store writes, scheduling) and plays the
// node agents (pods start, become ready, terminate).
type world struct {
	t           testing.TB
	now         time.Time
	deployments []*appsv1.Deployment
	barePods    []*corev1.Pod
	rs          map[string]*appsv1.ReplicaSet
	pods        map[string]*corev1.Pod
	prev        map[string]appsv1.DeploymentStatus
	names       *seqNames

	// graceful keeps deleted pods in LivePods (DeletionTimestamp set) until
	// reap is called, like pods still shutting down on their node.
	graceful bool
	// autoReady makes every pod Running and Ready as soon as it is created.
	autoReady bool
	nodes     int
	created   int
	// failed persists Plan.FailedTemplates into Input.FailedTemplates,
	// as the controller does, when autoRollback is set.
	autoRollback bool
	failed       map[string][]string
}

func newWorld(t testing.TB, ds ...*appsv1.Deployment) *world {
	return &world{
		t: t, now: t0, deployments: ds,
		rs:    map[string]*appsv1.ReplicaSet{},
		pods:  map[string]*corev1.Pod{},
		prev:  map[string]appsv1.DeploymentStatus{},
		names: &seqNames{},
		nodes: 3,
	}
}

func (w *world) input() Input {
	in := Input{Now: w.now, Deployments: w.deployments, Pods: w.barePods, PreviousStatus: w.prev, FailedTemplates: w.failed}
	for _, k := range sortedKeys(w.rs) {
		in.ReplicaSets = append(in.ReplicaSets, w.rs[k])
	}
	for _, k := range sortedKeys(w.pods) {
		in.LivePods = append(in.LivePods, w.pods[k])
	}
	return in
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// compute runs the planner without applying anything.
func (w *world) compute() Plan { return Compute(w.input(), w.names) }

// step computes a plan and applies it.
func (w *world) step() Plan {
	p := w.compute()
	w.apply(p)
	return p
}

func (w *world) apply(p Plan) {
	for _, rs := range append(append([]*appsv1.ReplicaSet(nil), p.CreateReplicaSets...), p.UpdateReplicaSets...) {
		w.rs[key(rs.Namespace, rs.Name)] = rs.DeepCopy()
	}
	for _, rs := range p.DeleteReplicaSets {
		k := key(rs.Namespace, rs.Name)
		if _, ok := w.rs[k]; !ok {
			w.t.Fatalf("plan deletes unknown ReplicaSet %s", k)
		}
		delete(w.rs, k)
	}
	for _, pod := range p.DeletePods {
		k := key(pod.Namespace, pod.Name)
		live, ok := w.pods[k]
		if !ok {
			w.t.Fatalf("plan deletes unknown pod %s", k)
		}
		if live.DeletionTimestamp != nil {
			w.t.Fatalf("plan deletes pod %s twice", k)
		}
		if w.graceful {
			c := live.DeepCopy()
			ts := metav1.NewTime(w.now)
			c.DeletionTimestamp = &ts
			w.pods[k] = c
		} else {
			delete(w.pods, k)
		}
	}
	for _, pod := range p.CreatePods {
		k := key(pod.Namespace, pod.Name)
		if _, ok := w.pods[k]; ok {
			w.t.Fatalf("plan creates pod %s that exists", k)
		}
		c := pod.DeepCopy()
		c.Spec.NodeName = fmt.Sprintf("node-%d", w.created%w.nodes)
		w.created++
		c.Status.Phase = corev1.PodPending
		w.pods[k] = c
		if w.autoReady {
			w.markReady(c)
		}
	}
	for _, ds := range p.Deployments {
		w.prev[key(ds.Namespace, ds.Name)] = ds.Status
	}
	if w.autoRollback {
		for _, f := range p.FailedTemplates {
			if w.failed == nil {
				w.failed = map[string][]string{}
			}
			k := key(f.Namespace, f.Name)
			w.failed[k] = append(w.failed[k], f.Hash)
		}
	}
}

// markReady makes a pod Running and Ready as of now.
func (w *world) markReady(p *corev1.Pod) {
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(w.now)}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
}

// readyAll marks every pending pod ready now.
func (w *world) readyAll() {
	for _, p := range w.pods {
		if p.DeletionTimestamp == nil && !isReady(p) {
			w.markReady(p)
		}
	}
}

// reap removes pods that finished terminating.
func (w *world) reap() {
	for k, p := range w.pods {
		if p.DeletionTimestamp != nil {
			delete(w.pods, k)
		}
	}
}

// converge steps with every pod becoming ready at once until a plan has
// nothing to do, and returns the last plan.
func (w *world) converge() Plan {
	w.t.Helper()
	for i := 0; i < 100; i++ {
		w.reap()
		w.readyAll()
		p := w.step()
		if empty(p) {
			return p
		}
		w.now = w.now.Add(time.Second)
	}
	w.t.Fatal("did not converge in 100 steps")
	return Plan{}
}

func empty(p Plan) bool { return p.Empty() }

// rsOf returns the Deployment's live ReplicaSets, oldest revision first.
func (w *world) rsOf(d string) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range w.rs {
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.Name == d {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return revision(out[i].Annotations) < revision(out[j].Annotations) })
	return out
}

// podsOf returns the live pods of a ReplicaSet.
func (w *world) podsOf(rs string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, k := range sortedKeys(w.pods) {
		if ref := metav1.GetControllerOf(w.pods[k]); ref != nil && ref.Name == rs {
			out = append(out, w.pods[k])
		}
	}
	return out
}

func replicasOf(rs *appsv1.ReplicaSet) int32 { return *rs.Spec.Replicas }

func findRS(list []*appsv1.ReplicaSet, name string) *appsv1.ReplicaSet {
	for _, rs := range list {
		if rs.Name == name {
			return rs
		}
	}
	return nil
}

func statusOf(p Plan, name string) DeploymentStatus {
	for _, ds := range p.Deployments {
		if ds.Name == name {
			return ds
		}
	}
	return DeploymentStatus{}
}

func cond(ds DeploymentStatus, t appsv1.DeploymentConditionType) appsv1.DeploymentCondition {
	if c := condition(ds.Status, t); c != nil {
		return *c
	}
	return appsv1.DeploymentCondition{}
}

func barePod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image}}},
	}
}
