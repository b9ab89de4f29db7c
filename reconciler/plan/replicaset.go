package plan

import (
	"math"
	"sort"
	"strconv"
	"time"

	"berth.dev/berth/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// syncReplicaSets is the ReplicaSet controller's share of the pass
// (replica_set.go manageReplicas): make each ReplicaSet's active pods match
// its planned spec.replicas, and delete the pods of ReplicaSets that go.
func (p *planner) syncReplicaSets() {
	related := map[string]map[string]int{} // Deployment key -> node -> active pods, built on demand
	for _, rv := range p.idx.allRS {
		if rv.deleted {
			p.deleteAll(rv.pods)
			continue
		}
		// Failed/Succeeded pods are not active, so they are replaced; berth
		// also deletes them rather than leaving them to a pod GC.
		for _, pod := range rv.pods {
			if isTerminal(pod) && !isTerminating(pod) {
				p.plan.DeletePods = append(p.plan.DeletePods, pod)
			}
		}
		diff := rv.active - rv.replicas()
		switch {
		case diff < 0:
			for range min(-diff, burstReplicas) {
				p.plan.CreatePods = append(p.plan.CreatePods, p.podFromReplicaSet(rv.rs))
			}
		case diff > 0:
			onNode, ok := related[rv.deploymentKey]
			if !ok {
				onNode = p.activePodsPerNode(rv.deploymentKey)
				related[rv.deploymentKey] = onNode
			}
			p.plan.DeletePods = append(p.plan.DeletePods, victims(rv.pods, onNode, int(min(diff, burstReplicas)), p.in.Now)...)
		}
	}
	p.deleteAll(p.idx.orphanPods)
}

// deleteAll plans the deletion of every pod not already terminating.
func (p *planner) deleteAll(pods []*corev1.Pod) {
	for _, pod := range pods {
		if !isTerminating(pod) {
			p.plan.DeletePods = append(p.plan.DeletePods, pod)
		}
	}
}

// activePodsPerNode counts the active pods of all of a Deployment's
// ReplicaSets per node: the "related pods" that rank co-located victims
// (replica_set.go getPodsRankedByRelatedPodsOnSameNode).
func (p *planner) activePodsPerNode(deploymentKey string) map[string]int {
	out := map[string]int{}
	for _, rv := range p.idx.rsByDeployment[deploymentKey] {
		for _, pod := range rv.pods {
			if isActive(pod) {
				out[pod.Spec.NodeName]++
			}
		}
	}
	return out
}

// victims picks n active pods to delete in Kubernetes' order
// (controller_utils.go ActivePodsWithRanks.Less).
func victims(pods []*corev1.Pod, onNode map[string]int, n int, now time.Time) []*corev1.Pod {
	active := make([]*corev1.Pod, 0, len(pods))
	for _, pod := range pods {
		if isActive(pod) {
			active = append(active, pod)
		}
	}
	if n >= len(active) {
		return active
	}
	// pods is sorted by name, so equal-ranked pods fall in a fixed order.
	sort.SliceStable(active, func(i, j int) bool { return deleteFirst(active[i], active[j], onNode, now) })
	return active[:n]
}

// podPhaseOrdinal orders phases for deletion: Pending, then Unknown, then
// Running. Any other phase ranks with Pending, as in the upstream map.
var podPhaseOrdinal = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

// deleteFirst reports whether a should be deleted before b. The first rule
// that tells them apart decides:
//  1. unassigned before assigned;
//  2. Pending before Unknown before Running;
//  3. not ready before ready;
//  4. lower controller.kubernetes.io/pod-deletion-cost first;
//  5. more active pods of the same Deployment on its node first;
//  6. ready for less time first (log2 buckets, UID tie-break:
//     LogarithmicScaleDown, on by default);
//  7. more container restarts first;
//  8. created more recently first (log2 buckets, UID tie-break).
func deleteFirst(a, b *corev1.Pod, onNode map[string]int, now time.Time) bool {
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if pa, pb := podPhaseOrdinal[a.Status.Phase], podPhaseOrdinal[b.Status.Phase]; pa != pb {
		return pa < pb
	}
	ra, rb := isReady(a), isReady(b)
	if ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if na, nb := onNode[a.Spec.NodeName], onNode[b.Spec.NodeName]; na != nb {
		return na > nb
	}
	if ra && rb {
		ta, tb := readyCondition(a).LastTransitionTime.Time, readyCondition(b).LastTransitionTime.Time
		if !ta.Equal(tb) {
			if ta.IsZero() || tb.IsZero() {
				return ta.IsZero()
			}
			if d := log2Rank(ta, now) - log2Rank(tb, now); d != 0 {
				return d < 0
			}
			return a.UID < b.UID
		}
	}
	if xa, xb := maxRestarts(a), maxRestarts(b); xa != xb {
		return xa > xb
	}
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		if ta.IsZero() || tb.IsZero() {
			return ta.IsZero()
		}
		if d := log2Rank(ta, now) - log2Rank(tb, now); d != 0 {
			return d < 0
		}
		return a.UID < b.UID
	}
	return false
}

// log2Rank buckets an age by powers of two (logarithmicRankDiff): pods
// of roughly the same age are treated as equal.
func log2Rank(t, now time.Time) int64 {
	d := now.Sub(t)
	if d <= 0 {
		return -1
	}
	return int64(math.Log2(float64(d)))
}

// deletionCost reads controller.kubernetes.io/pod-deletion-cost; absent or
// invalid means 0 (helper.GetDeletionCostFromPodAnnotations).
func deletionCost(p *corev1.Pod) int32 {
	v, ok := p.Annotations[corev1.PodDeletionCost]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

func maxRestarts(p *corev1.Pod) int32 {
	var m int32
	for _, cs := range p.Status.ContainerStatuses {
		m = max(m, cs.RestartCount)
	}
	return m
}

// podFromReplicaSet is controller.GetPodFromTemplate plus what the API
// server fills in on create: a name (generateName <rs>-), a UID and the
// creation time.
func (p *planner) podFromReplicaSet(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.freshPodName(rs.Namespace, rs.Name),
			Namespace:         rs.Namespace,
			UID:               types.UID(p.names.UID()),
			CreationTimestamp: metav1.NewTime(p.in.Now),
			Labels:            withLabel(t.Labels, api.LabelOwner, "ReplicaSet/"+rs.Name),
			Annotations:       t.Annotations,
			Finalizers:        t.Finalizers,
			OwnerReferences:   []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
		},
		Spec: t.Spec,
	}
	return pod
}

// freshPodName asks Names for a pod name until it is free in the namespace,
// as the API server retries generateName.
func (p *planner) freshPodName(namespace, rsName string) string {
	if p.podNames == nil {
		p.podNames = make(map[string]bool, len(p.in.LivePods))
		for _, pod := range p.in.LivePods {
			p.podNames[key(pod.Namespace, pod.Name)] = true
		}
		for _, pod := range p.in.Pods {
			p.podNames[key(pod.Namespace, pod.Name)] = true
		}
	}
	var name string
	for range 16 {
		name = p.names.PodName(rsName)
		if !p.podNames[key(namespace, name)] {
			break
		}
	}
	p.podNames[key(namespace, name)] = true
	return name
}
