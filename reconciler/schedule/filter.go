package schedule

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The reasons a node is filtered out, in kube-scheduler's words.
const (
	reasonUnschedulable = "node(s) were unschedulable"
	// Kubernetes marks a NotReady node with the taint
	// node.kubernetes.io/not-ready and reports "node(s) had untolerated
	// taint". berth has no tolerations (the manifest layer ignores them), so
	// it reports the plain fact, in the words of kube-scheduler's former
	// CheckNodeCondition predicate.
	reasonNotReady = "node(s) were not ready"
	reasonNodeName = "node(s) didn't match the requested node name"
	reasonAffinity = "node(s) didn't match Pod's node affinity/selector"
	reasonPorts    = "node(s) didn't have free ports for the requested pod ports"
	reasonTooMany  = "Too many pods"
	// "Insufficient <resource>" for each resource that does not fit.
	reasonInsufficient = "Insufficient "
	reasonNoCPU        = reasonInsufficient + string(corev1.ResourceCPU)
	reasonNoMemory     = reasonInsufficient + string(corev1.ResourceMemory)
	reasonNoStorage    = reasonInsufficient + string(corev1.ResourceEphemeralStorage)
)

// filter is one link of the feasibility chain. It reports whether the pod
// may run on the node and, when it may not, records why in d.
type filter func(p *podInfo, n *nodeState, d *diagnosis) bool

// filters is the feasibility chain, in kube-scheduler's default plugin
// order, which is also cheapest first: flags, then names, then labels,
// then ports, then arithmetic over every resource. A node is dropped at the
// first link it fails, and only that link's reasons are reported for it, as
// kube-scheduler's framework does.
var filters = [...]filter{
	// NodeUnschedulable: a cordoned node takes no new pods.
	func(_ *podInfo, n *nodeState, d *diagnosis) bool {
		return d.check(!n.unschedulable, reasonUnschedulable)
	},
	// NodeName: a pod that names its node goes there or nowhere.
	func(p *podInfo, n *nodeState, d *diagnosis) bool {
		return d.check(p.pod.Spec.NodeName == "" || p.pod.Spec.NodeName == n.name, reasonNodeName)
	},
	// Node readiness (the not-ready taint in TaintToleration upstream): a
	// node that stopped reporting gets nothing.
	func(_ *podInfo, n *nodeState, d *diagnosis) bool {
		return d.check(n.ready, reasonNotReady)
	},
	// NodeAffinity: every nodeSelector label, and one required term.
	func(p *podInfo, n *nodeState, d *diagnosis) bool {
		return d.check(p.affinity.matches(n.name, n.labels), reasonAffinity)
	},
	// NodePorts: no (hostIP, protocol, hostPort) already taken.
	func(p *podInfo, n *nodeState, d *diagnosis) bool {
		for _, hp := range p.ports {
			if n.ports.conflicts(hp) {
				d.add(reasonPorts)
				return false
			}
		}
		return true
	},
	// NodeResourcesFit: room for one more pod, and for its requests.
	fitsResources,
}

// feasible runs the chain.
func feasible(p *podInfo, n *nodeState, d *diagnosis) bool {
	for _, f := range filters {
		if !f(p, n, d) {
			return false
		}
	}
	return true
}

// fitsResources is NodeResourcesFit's filter (noderesources.fitsRequest):
// the pod count, then each resource the pod requests; every shortfall is
// reported.
func fitsResources(p *podInfo, n *nodeState, d *diagnosis) bool {
	fits := d.check(n.pods < n.maxPods, reasonTooMany)
	short := func(want, alloc, used int64, reason string) {
		if want > 0 && want > alloc-used {
			d.add(reason)
			fits = false
		}
	}
	r, alloc, used := &p.requests, &n.allocatable, &n.requested
	short(r.milliCPU, alloc.milliCPU, used.milliCPU, reasonNoCPU)
	short(r.memory, alloc.memory, used.memory, reasonNoMemory)
	short(r.ephemeralStorage, alloc.ephemeralStorage, used.ephemeralStorage, reasonNoStorage)
	for name, v := range r.scalar {
		short(v, alloc.scalar[name], used.scalar[name], reasonInsufficient+string(name))
	}
	return fits
}

// diagnosis counts, over the nodes, the reasons a pending pod fits nowhere.
type diagnosis struct {
	counts map[string]int
}

func (d *diagnosis) reset() { clear(d.counts) }

func (d *diagnosis) add(reason string) { d.counts[reason]++ }

// check records reason unless ok, and returns ok.
func (d *diagnosis) check(ok bool, reason string) bool {
	if !ok {
		d.add(reason)
	}
	return ok
}

// message renders the diagnosis as kube-scheduler's FitError does: each
// reason prefixed by its node count, sorted as strings (so by count first,
// as text), joined by commas. kube-scheduler has no such message for an
// empty cluster ("no nodes available to schedule pods"); berth keeps the
// usual prefix and adds upstream's words.
func (d *diagnosis) message(nodes int) string {
	if nodes == 0 {
		return "0/0 nodes are available: no nodes available to schedule pods."
	}
	reasons := make([]string, 0, len(d.counts))
	for r, n := range d.counts {
		reasons = append(reasons, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("0/%d nodes are available: %s.", nodes, strings.Join(reasons, ", "))
}
