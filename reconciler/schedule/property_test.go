package schedule

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// TestRandomClusters schedules many random clusters and checks every
// decision against an independent oracle: a slow model that scans every
// pod of a node with resource.Quantity arithmetic and apimachinery's label
// selectors. A bound pod must fit its node at the moment of its turn (so no
// node is ever over-committed on cpu, memory or pods, no host port is taken
// twice, no pod goes to a cordoned or NotReady node or against its
// selector); an unschedulable pod must fit no node, with the message the
// oracle's per-node reasons give; every pending pod is answered once, in
// order.
func TestRandomClusters(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	bindings, unschedulable := 0, 0
	for i := 0; i < 3000; i++ {
		in := randomCluster(rng)
		r := Schedule(in)
		checkAgainstOracle(t, fmt.Sprintf("cluster %d", i), in, r)
		bindings += len(r.Bindings)
		unschedulable += len(r.Unschedulable)
	}
	// Guard the generator: both outcomes must be common.
	t.Logf("%d bindings, %d unschedulable", bindings, unschedulable)
	if bindings < 5000 || unschedulable < 2000 {
		t.Errorf("generator too one-sided: %d bindings, %d unschedulable", bindings, unschedulable)
	}
}

// TestDeterministic: the order of nodes and of bound pods does not change
// the answer.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for i := 0; i < 500; i++ {
		in := randomCluster(rng)
		want := Schedule(in)
		for j := 0; j < 5; j++ {
			shuffled := Input{Nodes: append([]Node(nil), in.Nodes...), Bound: append([]*corev1.Pod(nil), in.Bound...), Pending: in.Pending}
			rng.Shuffle(len(shuffled.Nodes), func(a, b int) { shuffled.Nodes[a], shuffled.Nodes[b] = shuffled.Nodes[b], shuffled.Nodes[a] })
			rng.Shuffle(len(shuffled.Bound), func(a, b int) { shuffled.Bound[a], shuffled.Bound[b] = shuffled.Bound[b], shuffled.Bound[a] })
			if got := Schedule(shuffled); !reflect.DeepEqual(got, want) {
				t.Fatalf("cluster %d: shuffled input gave\n%+v\nwant\n%+v", i, got, want)
			}
		}
	}
}

// randomCluster makes up to 7 nodes of mixed sizes and states, bound pods
// that fit them, and up to 15 pending pods with random requests, host
// ports, selectors, affinity and pinning.
func randomCluster(rng *rand.Rand) Input {
	var in Input
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	for i := range rng.IntN(8) {
		n := node(fmt.Sprintf("n%d", i), pick("1", "2", "1500m", ""), pick("1Gi", "2Gi", "512Mi", ""))
		if z := pick("za", "zb", ""); z != "" {
			n.Labels["zone"] = z
		}
		if rng.IntN(3) == 0 {
			n.Labels["gen"] = fmt.Sprint(rng.IntN(8))
		}
		if p := pick("", "", "3", "5"); p != "" {
			n.Allocatable[corev1.ResourcePods] = resource.MustParse(p)
		}
		n.Ready = rng.IntN(8) != 0
		n.Unschedulable = rng.IntN(10) == 0
		in.Nodes = append(in.Nodes, n)
	}
	o := newOracle(in.Nodes)
	for i := range rng.IntN(25) {
		if len(in.Nodes) == 0 {
			break
		}
		p := randomPod(rng, fmt.Sprintf("b%d", i))
		n := &in.Nodes[rng.IntN(len(in.Nodes))]
		p.Spec.NodeName = n.Name
		switch rng.IntN(10) {
		case 0:
			p.Status.Phase = corev1.PodSucceeded
		case 1:
			terminating(p)
		}
		// Bound pods are wherever they are (cordoned, NotReady, any
		// labels), but they fit: the cluster starts consistent.
		if o.capacityReasons(n.Name, p) == nil {
			o.bind(n.Name, p)
			in.Bound = append(in.Bound, p)
		}
	}
	for i := range rng.IntN(16) {
		p := randomPod(rng, fmt.Sprintf("p%d", i))
		switch rng.IntN(12) {
		case 0:
			p.Spec.NodeSelector = map[string]string{"zone": pick("za", "zb")}
		case 1:
			p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: fmt.Sprintf("n%d", rng.IntN(8))}
		case 2, 3:
			var terms []corev1.NodeSelectorTerm
			for range 1 + rng.IntN(2) {
				terms = append(terms, randomTerm(rng))
			}
			required(terms...)(p)
		case 4:
			p.Spec.NodeName = fmt.Sprintf("n%d", rng.IntN(8))
		}
		in.Pending = append(in.Pending, p)
	}
	return in
}

func randomPod(rng *rand.Rand, name string) *corev1.Pod {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	p := pod(name)
	switch rng.IntN(4) {
	case 0:
		requests(pick("100m", "500m", "1", ""), pick("128Mi", "512Mi", "1Gi", ""))(p)
	case 1:
		limits(pick("250m", "1"), pick("256Mi", ""))(p)
	case 2:
		requests("0", "")(p)
	}
	if rng.IntN(4) == 0 {
		hostPortOn(pick("", "", "10.0.0.1", "10.0.0.2"), corev1.Protocol(pick("", "TCP", "UDP")), int32(80+rng.IntN(3)))(p)
	}
	if d := pick("web", "api", ""); d != "" {
		ofDeployment(d, pick("h1", "h2"))(p)
	}
	return p
}

func randomTerm(rng *rand.Rand) corev1.NodeSelectorTerm {
	exprs := []corev1.NodeSelectorRequirement{
		expr("zone", corev1.NodeSelectorOpIn, "za"),
		expr("zone", corev1.NodeSelectorOpNotIn, "za"),
		expr("zone", corev1.NodeSelectorOpExists),
		expr("gen", corev1.NodeSelectorOpDoesNotExist),
		expr("gen", corev1.NodeSelectorOpGt, "3"),
		expr("gen", corev1.NodeSelectorOpLt, "5"),
	}
	var t corev1.NodeSelectorTerm
	for range 1 + rng.IntN(2) {
		t.MatchExpressions = append(t.MatchExpressions, exprs[rng.IntN(len(exprs))])
	}
	if rng.IntN(5) == 0 {
		t.MatchFields = []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpNotIn, fmt.Sprintf("n%d", rng.IntN(8)))}
	}
	return t
}

func checkAgainstOracle(t *testing.T, name string, in Input, r Result) {
	t.Helper()
	o := newOracle(in.Nodes)
	for _, p := range in.Bound {
		o.bind(p.Spec.NodeName, p)
	}
	bi, ui := 0, 0
	for _, p := range in.Pending {
		switch {
		case bi < len(r.Bindings) && r.Bindings[bi].Name == p.Name:
			b := r.Bindings[bi]
			bi++
			if why := o.reasons(b.Node, p); why != nil {
				t.Fatalf("%s: %s bound to %s, where it does not fit: %v\ninput: %s", name, p.Name, b.Node, why, describe(in))
			}
			o.bind(b.Node, p)
		case ui < len(r.Unschedulable) && r.Unschedulable[ui].Name == p.Name:
			u := r.Unschedulable[ui]
			ui++
			if want := o.message(p); u.Message != want || u.Reason != ReasonUnschedulable {
				t.Fatalf("%s: %s unschedulable with %q %q, oracle says %q\ninput: %s", name, p.Name, u.Reason, u.Message, want, describe(in))
			}
		default:
			t.Fatalf("%s: pending pod %s is missing from the result, or out of order: %+v", name, p.Name, r)
		}
	}
	if bi != len(r.Bindings) || ui != len(r.Unschedulable) {
		t.Fatalf("%s: result has pods that were not pending: %+v", name, r)
	}
	o.checkTotals(t, name)
}

func describe(in Input) string {
	var b strings.Builder
	for _, n := range in.Nodes {
		fmt.Fprintf(&b, "\n  node %s ready=%v cordoned=%v %v %v", n.Name, n.Ready, n.Unschedulable, n.Labels, n.Allocatable)
	}
	for _, p := range in.Bound {
		fmt.Fprintf(&b, "\n  bound %s on %s %v", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Resources)
	}
	for _, p := range in.Pending {
		fmt.Fprintf(&b, "\n  pending %s %v sel=%v aff=%v", p.Name, p.Spec.Containers[0].Resources, p.Spec.NodeSelector, p.Spec.Affinity)
	}
	return b.String()
}

// oracle is the slow, obvious model of the filters: every check scans
// every pod of the node.
type oracle struct {
	nodes []Node
	pods  map[string][]*corev1.Pod
}

func newOracle(nodes []Node) *oracle {
	return &oracle{nodes: nodes, pods: map[string][]*corev1.Pod{}}
}

func (o *oracle) bind(node string, p *corev1.Pod) { o.pods[node] = append(o.pods[node], p) }

func (o *oracle) node(name string) *Node {
	for i := range o.nodes {
		if o.nodes[i].Name == name {
			return &o.nodes[i]
		}
	}
	return nil
}

// running lists the pods that hold resources on a node.
func (o *oracle) running(node string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range o.pods[node] {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

// reasons says why p does not fit the node, in filter order; nil if it fits.
func (o *oracle) reasons(name string, p *corev1.Pod) []string {
	n := o.node(name)
	switch {
	case n == nil:
		return []string{"no such node"}
	case n.Unschedulable:
		return []string{reasonUnschedulable}
	case p.Spec.NodeName != "" && p.Spec.NodeName != n.Name:
		return []string{reasonNodeName}
	case !n.Ready:
		return []string{reasonNotReady}
	case !oracleAffinity(p, n):
		return []string{reasonAffinity}
	}
	return o.capacityReasons(name, p)
}

// capacityReasons checks host ports, pod count and resources only.
func (o *oracle) capacityReasons(name string, p *corev1.Pod) []string {
	n := o.node(name)
	running := o.running(name)
	for _, want := range p.Spec.Containers[0].Ports {
		for _, q := range running {
			for _, have := range q.Spec.Containers[0].Ports {
				if portsClash(want, have) {
					return []string{reasonPorts}
				}
			}
		}
	}
	var why []string
	maxPods := int64(110)
	if q, ok := n.Allocatable[corev1.ResourcePods]; ok {
		maxPods = q.Value()
	}
	if int64(len(running))+1 > maxPods {
		why = append(why, reasonTooMany)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		want := oracleRequest(p, res)
		if want.IsZero() {
			continue
		}
		total := want.DeepCopy()
		for _, q := range running {
			total.Add(oracleRequest(q, res))
		}
		if total.Cmp(n.Allocatable[res]) > 0 {
			why = append(why, "Insufficient "+string(res))
		}
	}
	return why
}

// oracleRequest is the single container's request, or its limit.
func oracleRequest(p *corev1.Pod, res corev1.ResourceName) resource.Quantity {
	c := p.Spec.Containers[0]
	if q, ok := c.Resources.Requests[res]; ok {
		return q
	}
	return c.Resources.Limits[res]
}

func portsClash(a, b corev1.ContainerPort) bool {
	if a.HostPort == 0 || b.HostPort == 0 || a.HostPort != b.HostPort {
		return false
	}
	proto := func(p corev1.Protocol) corev1.Protocol {
		if p == "" {
			return corev1.ProtocolTCP
		}
		return p
	}
	if proto(a.Protocol) != proto(b.Protocol) {
		return false
	}
	wild := func(ip string) bool { return ip == "" || ip == "0.0.0.0" }
	return wild(a.HostIP) || wild(b.HostIP) || a.HostIP == b.HostIP
}

func oracleAffinity(p *corev1.Pod, n *Node) bool {
	if !labels.SelectorFromSet(p.Spec.NodeSelector).Matches(labels.Set(n.Labels)) {
		return false
	}
	if p.Spec.Affinity == nil {
		return true
	}
	for _, term := range p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		sel := labels.NewSelector()
		for _, e := range term.MatchExpressions {
			op := map[corev1.NodeSelectorOperator]selection.Operator{
				corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
				corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
				corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan,
			}[e.Operator]
			req, err := labels.NewRequirement(e.Key, op, e.Values)
			if err != nil {
				panic(err)
			}
			sel = sel.Add(*req)
		}
		ok := sel.Matches(labels.Set(n.Labels))
		for _, f := range term.MatchFields {
			ok = ok && (n.Name == f.Values[0]) == (f.Operator == corev1.NodeSelectorOpIn)
		}
		if ok {
			return true
		}
	}
	return false
}

// message is kube-scheduler's FitError text for the oracle's reasons.
func (o *oracle) message(p *corev1.Pod) string {
	if len(o.nodes) == 0 {
		return "0/0 nodes are available: no nodes available to schedule pods."
	}
	hist := map[string]int{}
	for _, n := range o.nodes {
		for _, r := range o.reasons(n.Name, p) {
			hist[r]++
		}
	}
	var parts []string
	for r, c := range hist {
		parts = append(parts, fmt.Sprintf("%d %s", c, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", len(o.nodes), strings.Join(parts, ", "))
}

// checkTotals re-checks the end state: no node over its cpu, memory or pod
// count, no host port taken twice on a node.
func (o *oracle) checkTotals(t *testing.T, name string) {
	t.Helper()
	for _, n := range o.nodes {
		running := o.running(n.Name)
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			var total resource.Quantity
			for _, p := range running {
				total.Add(oracleRequest(p, res))
			}
			if total.Cmp(n.Allocatable[res]) > 0 {
				t.Fatalf("%s: node %s over-committed on %s: %s of %s", name, n.Name, res, total.String(), ptrString(n.Allocatable, res))
			}
		}
		if q, ok := n.Allocatable[corev1.ResourcePods]; ok && int64(len(running)) > q.Value() {
			t.Fatalf("%s: node %s runs %d pods, max %s", name, n.Name, len(running), q.String())
		}
		for i, a := range running {
			for _, b := range running[i+1:] {
				for _, pa := range a.Spec.Containers[0].Ports {
					for _, pb := range b.Spec.Containers[0].Ports {
						if portsClash(pa, pb) {
							t.Fatalf("%s: node %s: %s and %s both hold host port %d", name, n.Name, a.Name, b.Name, pa.HostPort)
						}
					}
				}
			}
		}
	}
}

func ptrString(l corev1.ResourceList, res corev1.ResourceName) string {
	q := l[res]
	return q.String()
}
