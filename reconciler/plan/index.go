package plan

import (
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// index lines the live state up by owner once per pass, so that every
// per-object step is a map lookup rather than a scan of everything.
type index struct {
	// allRS holds every ReplicaSet view, live ones sorted by key, created
	// ones appended as they are planned.
	allRS []*rsView
	// rsByKey finds any live ReplicaSet by namespace/name (collision checks).
	rsByKey map[string]*rsView
	// rsByDeployment groups ReplicaSets by their controlling Deployment's
	// namespace/name; ReplicaSets with no Deployment owner sit under a key
	// that no Deployment has, so they are pruned like orphans.
	rsByDeployment map[string][]*rsView
	// deploymentKeys lists the keys of rsByDeployment, sorted.
	deploymentKeys []string
	// orphanPods are live pods owned by a ReplicaSet absent from the store.
	orphanPods []*corev1.Pod
	// barePods groups live pods without a controller by namespace/name.
	barePods map[string][]*corev1.Pod
}

// orphanKey groups ReplicaSets that no Deployment controls.
const orphanKey = "\x00orphan"

// rsView is one ReplicaSet during a pass: the live object, the planned
// object (copied on first change), its pods and the status derived from them.
type rsView struct {
	orig          *appsv1.ReplicaSet // nil when created by this pass
	rs            *appsv1.ReplicaSet // current planned object; == orig until changed
	deploymentKey string

	created, modified, deleted bool

	pods []*corev1.Pod // every live pod it owns, terminating and terminal included
	// Status as the ReplicaSet controller would report it, from pods.
	active, ready, available, terminating int32
}

func buildIndex(in Input) *index {
	idx := &index{
		rsByKey:        make(map[string]*rsView, len(in.ReplicaSets)),
		rsByDeployment: make(map[string][]*rsView),
		barePods:       make(map[string][]*corev1.Pod),
	}
	for _, rs := range in.ReplicaSets {
		dk := orphanKey
		if ref := metav1.GetControllerOfNoCopy(rs); ref != nil && ref.Kind == "Deployment" {
			dk = key(rs.Namespace, ref.Name)
		}
		rv := &rsView{orig: rs, rs: rs, deploymentKey: dk}
		idx.rsByKey[key(rs.Namespace, rs.Name)] = rv
		idx.allRS = append(idx.allRS, rv)
	}
	sort.Slice(idx.allRS, func(i, j int) bool {
		a, b := idx.allRS[i].rs, idx.allRS[j].rs
		return byKey(a.Namespace, a.Name, b.Namespace, b.Name)
	})
	for _, rv := range idx.allRS {
		if _, seen := idx.rsByDeployment[rv.deploymentKey]; !seen {
			idx.deploymentKeys = append(idx.deploymentKeys, rv.deploymentKey)
		}
		idx.rsByDeployment[rv.deploymentKey] = append(idx.rsByDeployment[rv.deploymentKey], rv)
	}
	sort.Strings(idx.deploymentKeys)

	for _, pod := range in.LivePods {
		ref := metav1.GetControllerOfNoCopy(pod)
		if ref == nil {
			k := key(pod.Namespace, pod.Name)
			idx.barePods[k] = append(idx.barePods[k], pod)
			continue
		}
		rv := idx.rsByKey[key(pod.Namespace, ref.Name)]
		if ref.Kind != "ReplicaSet" || rv == nil {
			idx.orphanPods = append(idx.orphanPods, pod)
			continue
		}
		rv.pods = append(rv.pods, pod)
	}
	for _, rv := range idx.allRS {
		sortPods(rv.pods)
		rv.countPods(in.Now)
	}
	return idx
}

// countPods derives the ReplicaSet status from its pods, like the ReplicaSet
// controller's calculateStatus (replica_set_utils.go).
func (rv *rsView) countPods(now time.Time) {
	rv.active, rv.ready, rv.available, rv.terminating = 0, 0, 0, 0
	for _, pod := range rv.pods {
		if isTerminating(pod) && !isTerminal(pod) {
			rv.terminating++
		}
		if !isActive(pod) {
			continue
		}
		rv.active++
		if isReady(pod) {
			rv.ready++
		}
		if isAvailable(pod, rv.rs.Spec.MinReadySeconds, now) {
			rv.available++
		}
	}
}

// replicas is spec.replicas (nil means 1, as the API server defaults it).
func (rv *rsView) replicas() int32 {
	if rv.rs.Spec.Replicas == nil {
		return 1
	}
	return *rv.rs.Spec.Replicas
}

// mutable returns the planned object, copying the live one on first use so
// the input is never mutated.
func (rv *rsView) mutable() *appsv1.ReplicaSet {
	if !rv.created && !rv.modified {
		rv.rs = rv.orig.DeepCopy()
		rv.modified = true
	}
	return rv.rs
}

// setReplicas plans spec.replicas = n and reports whether it changed.
func (rv *rsView) setReplicas(n int32) bool {
	if rv.rs.Spec.Replicas != nil && *rv.rs.Spec.Replicas == n {
		return false
	}
	rv.mutable().Spec.Replicas = &n
	return true
}

// setAnnotation plans one annotation and reports whether it changed.
func (rv *rsView) setAnnotation(k, v string) bool {
	if cur, ok := rv.rs.Annotations[k]; ok && cur == v {
		return false
	}
	rs := rv.mutable()
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	rs.Annotations[k] = v
	return true
}

// isActive is controller.IsPodActive: not terminal and not being deleted.
func isActive(p *corev1.Pod) bool {
	return !isTerminal(p) && !isTerminating(p)
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

func isTerminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// isAvailable is podutil.IsPodAvailable: Ready, and Ready for strictly more
// than minReadySeconds.
func isAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	if !isReady(p) {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	c := readyCondition(p)
	min := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(min).Before(now)
}

// untilAvailable is how long until a Ready pod becomes available, or 0 if
// that is not pending.
func untilAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) time.Duration {
	if minReadySeconds == 0 || !isActive(p) || !isReady(p) || isAvailable(p, minReadySeconds, now) {
		return 0
	}
	c := readyCondition(p)
	if c.LastTransitionTime.IsZero() {
		return 0 // never becomes available; nothing to wait for
	}
	return c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Sub(now) + requeueSlack
}

// requeueSlack pushes requeues just past the instant a strict "Before"
// comparison flips.
const requeueSlack = time.Millisecond
