// Package schedule is berth's pod scheduler: a pure function from the nodes,
// the pods already bound to them and the pods waiting for a node, to
// bindings, or to the reason a pod fits on no node.
//
// It follows kube-scheduler's default profile
// (kubernetes/kubernetes pkg/scheduler/framework/plugins) for the plugins
// that mean something on berth: a chain of filters decides where a pod may
// go (NodeUnschedulable, NodeName, node readiness, NodeAffinity, NodePorts,
// NodeResourcesFit), and weighted scores decide where it goes best
// (PodTopologySpread's default hostname spreading and NodeResourcesFit's
// LeastAllocated). Pods are placed one at a time, in the order given, and
// each placement is seen by the pods after it. Unlike kube-scheduler, ties
// are broken by node name rather than at random, so that one input always
// gives one answer. docs/scheduling.md lists every difference.
//
// The scheduler does no I/O and reads no clock and no randomness.
package schedule

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Node is one node as the scheduler needs to know it.
type Node struct {
	Name string
	// Labels are what nodeSelector and node affinity match. The caller
	// includes kubernetes.io/hostname=Name, as the kubelet does.
	Labels map[string]string
	// Allocatable is what the pods on the node may request in total. As in
	// Kubernetes, a resource missing from it is a resource the node does not
	// have: a pod requesting any cpu does not fit a node without cpu. The
	// "pods" entry caps the number of pods; when it is absent the cap is 110,
	// the kubelet's default maxPods.
	Allocatable corev1.ResourceList
	// Ready is false for a node that stopped reporting; it gets no pods.
	Ready bool
	// Unschedulable is true for a cordoned node; it gets no new pods.
	Unschedulable bool
}

// Input is everything one scheduling call looks at. It is never modified.
type Input struct {
	// Nodes are the cluster's nodes, in any order; names are unique (a
	// repeated name is ignored after its first appearance).
	Nodes []Node
	// Bound are the pods already on a node (Spec.NodeName set). They take
	// resources and host ports, and count for spreading. Pods whose node is
	// not in Nodes, and pods that have finished (phase Succeeded or Failed),
	// are ignored, as kube-scheduler's cache ignores them. A terminating
	// pod, if passed, still takes resources and ports but does not count for
	// spreading, as upstream.
	Bound []*corev1.Pod
	// Pending are the pods to place, in the order to place them (the caller
	// sorts them, oldest first, as kube-scheduler's PrioritySort does for
	// pods of equal priority). A pending pod with Spec.NodeName set may only
	// go to that node.
	Pending []*corev1.Pod
}

// Result is the outcome of one call: every pending pod appears exactly once,
// either in Bindings or in Unschedulable, each list in Pending order.
type Result struct {
	Bindings      []Binding
	Unschedulable []Unschedulable
}

// Binding places one pending pod on a node.
type Binding struct {
	Namespace, Name string
	Node            string
}

// Unschedulable is a pending pod that fits on no node, with the reason
// kube-scheduler would give in the pod's PodScheduled condition.
type Unschedulable struct {
	Namespace, Name string
	// Reason is always ReasonUnschedulable.
	Reason string
	// Message is in kube-scheduler's words, for example
	// "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
	Message string
}

// ReasonUnschedulable is the PodScheduled condition reason for a pod that
// fits on no node.
const ReasonUnschedulable = corev1.PodReasonUnschedulable

// Schedule places the pending pods, one by one, on the nodes.
func Schedule(in Input) Result {
	s := newScheduler(in)
	var out Result
	for _, pod := range in.Pending {
		p := newPendingPod(pod)
		if n := s.place(p); n != nil {
			out.Bindings = append(out.Bindings, Binding{Namespace: pod.Namespace, Name: pod.Name, Node: n.name})
			continue
		}
		out.Unschedulable = append(out.Unschedulable, Unschedulable{
			Namespace: pod.Namespace, Name: pod.Name,
			Reason:  ReasonUnschedulable,
			Message: s.diag.message(len(s.nodes)),
		})
	}
	return out
}

// scheduler carries the state of one Schedule call.
type scheduler struct {
	// nodes are sorted by name: feasible nodes are found in name order, and
	// the first of the best-scored wins.
	nodes []*nodeState

	// Scratch space reused from one pending pod to the next.
	diag     diagnosis
	feasible []*nodeState
	spread   []int64
}

func newScheduler(in Input) *scheduler {
	s := &scheduler{
		nodes: make([]*nodeState, 0, len(in.Nodes)),
		diag:  diagnosis{counts: map[string]int{}},
	}
	byName := make(map[string]*nodeState, len(in.Nodes))
	for i := range in.Nodes {
		n := &in.Nodes[i]
		if _, dup := byName[n.Name]; dup {
			continue
		}
		ns := newNodeState(n)
		byName[n.Name] = ns
		s.nodes = append(s.nodes, ns)
	}
	slices.SortFunc(s.nodes, func(a, b *nodeState) int { return strings.Compare(a.name, b.name) })
	// One pass over the bound pods builds every node's usage, so that no
	// pending pod ever looks at another pod.
	for _, pod := range in.Bound {
		n := byName[pod.Spec.NodeName]
		if n == nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		n.add(newBoundPod(pod))
	}
	return s
}

// place finds the best node for p and records p on it. It returns nil, with
// s.diag saying why, when no node fits.
func (s *scheduler) place(p *podInfo) *nodeState {
	s.diag.reset()
	s.feasible = s.feasible[:0]
	for _, n := range s.nodes {
		if feasible(p, n, &s.diag) {
			s.feasible = append(s.feasible, n)
		}
	}
	if len(s.feasible) == 0 {
		return nil
	}
	best := s.selectHost(p)
	best.add(p)
	return best
}
