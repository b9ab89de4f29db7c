package schedule

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestFilters places one pod per case and checks the node it lands on, or
// the exact message when it lands nowhere.
func TestFilters(t *testing.T) {
	const none = "unschedulable: "
	a, b, c := node("a", "4", "8Gi"), node("b", "4", "8Gi"), node("c", "4", "8Gi")
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	in, notIn := corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn
	zone := "topology.kubernetes.io/zone"
	zoneA, zoneB := nodeLabel(zone, "za"), nodeLabel(zone, "zb")
	tests := []struct {
		name  string
		nodes []Node
		bound []*corev1.Pod
		pod   *corev1.Pod
		want  string
	}{
		{name: "no nodes", pod: pod("p"),
			want: none + "0/0 nodes are available: no nodes available to schedule pods."},

		// NodeUnschedulable.
		{name: "cordoned node skipped", nodes: []Node{node("a", "4", "8Gi", cordoned), b}, pod: pod("p"), want: "b"},
		{name: "all cordoned", nodes: []Node{node("a", "4", "8Gi", cordoned), node("b", "4", "8Gi", cordoned)}, pod: pod("p"),
			want: none + "0/2 nodes are available: 2 node(s) were unschedulable."},

		// Readiness.
		{name: "not ready node skipped", nodes: []Node{node("a", "4", "8Gi", notReady), b}, pod: pod("p"), want: "b"},
		{name: "none ready", nodes: []Node{node("a", "4", "8Gi", notReady)}, pod: pod("p"),
			want: none + "0/1 nodes are available: 1 node(s) were not ready."},

		// NodeName.
		{name: "pinned to its node", nodes: []Node{a, b}, pod: pod("p", onNode("b")), want: "b"},
		{name: "pinned to a missing node", nodes: []Node{a, b}, pod: pod("p", onNode("x")),
			want: none + "0/2 nodes are available: 2 node(s) didn't match the requested node name."},

		// NodeAffinity: nodeSelector.
		{name: "nodeSelector", nodes: []Node{a, node("b", "4", "8Gi", zoneB)}, pod: pod("p", nodeSelector(zone, "zb")), want: "b"},
		{name: "nodeSelector by hostname", nodes: []Node{a, b, c}, pod: pod("p", nodeSelector(corev1.LabelHostname, "c")), want: "c"},
		{name: "nodeSelector needs every label", nodes: []Node{node("a", "4", "8Gi", zoneA, nodeLabel("disk", "ssd")), node("b", "4", "8Gi", zoneB, nodeLabel("disk", "ssd"))},
			pod: pod("p", nodeSelector(zone, "zb", "disk", "ssd")), want: "b"},
		{name: "nodeSelector matches nothing", nodes: []Node{a, b}, pod: pod("p", nodeSelector(zone, "zc")),
			want: none + "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."},

		// NodeAffinity: required terms.
		{name: "terms are ORed", nodes: []Node{node("a", "4", "8Gi", zoneA), node("b", "4", "8Gi", zoneB), node("c", "4", "8Gi", nodeLabel(zone, "zc"))},
			pod: pod("p", required(term(expr(zone, in, "zx")), term(expr(zone, in, "zc")))), want: "c"},
		{name: "expressions are ANDed", nodes: []Node{node("a", "4", "8Gi", zoneA), node("b", "4", "8Gi", zoneA, nodeLabel("gpu", "1"))},
			pod: pod("p", required(term(expr(zone, in, "za"), expr("gpu", corev1.NodeSelectorOpExists)))), want: "b"},
		{name: "selector and affinity both apply", nodes: []Node{node("a", "4", "8Gi", zoneA), node("b", "4", "8Gi", zoneB)},
			pod:  pod("p", nodeSelector(zone, "za"), required(term(expr(zone, notIn, "za")))),
			want: none + "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."},
		{name: "matchFields metadata.name", nodes: []Node{a, b, c},
			pod: pod("p", required(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", in, "b")}})), want: "b"},
		{name: "empty term matches nothing", nodes: []Node{a}, pod: pod("p", required(corev1.NodeSelectorTerm{})),
			want: none + "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."},
		{name: "a broken term does not spoil the others", nodes: []Node{a, node("b", "4", "8Gi", nodeLabel("gen", "5"))},
			pod: pod("p", required(term(expr("gen", corev1.NodeSelectorOpGt, "four")), term(expr("gen", corev1.NodeSelectorOpGt, "4")))), want: "b"},

		// NodePorts.
		{name: "same port taken", nodes: []Node{a, b}, bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("", tcp, 80))},
			pod: pod("p", hostPortOn("", tcp, 80)), want: "b"},
		{name: "port taken everywhere", nodes: []Node{a, b},
			bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("", tcp, 80)), pod("y", onNode("b"), hostPortOn("", "", 80))},
			pod:   pod("p", hostPortOn("0.0.0.0", tcp, 80)),
			want:  none + "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."},
		{name: "other protocol is free", nodes: []Node{a}, bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("", tcp, 53))},
			pod: pod("p", hostPortOn("", udp, 53)), want: "a"},
		{name: "other specific IP is free", nodes: []Node{a}, bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("10.0.0.1", tcp, 80))},
			pod: pod("p", hostPortOn("10.0.0.2", tcp, 80)), want: "a"},
		{name: "wildcard wanted, specific IP taken", nodes: []Node{a, b}, bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("10.0.0.1", tcp, 80))},
			pod: pod("p", hostPortOn("", tcp, 80)), want: "b"},
		{name: "specific IP wanted, wildcard taken", nodes: []Node{a, b}, bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("", tcp, 80))},
			pod: pod("p", hostPortOn("10.0.0.1", tcp, 80)), want: "b"},
		{name: "container ports without host ports take nothing", nodes: []Node{a}, bound: []*corev1.Pod{pod("x", onNode("a"), hostPortOn("", tcp, 0))},
			pod: pod("p", hostPortOn("", tcp, 0)), want: "a"},

		// NodeResourcesFit.
		{name: "insufficient cpu", nodes: []Node{node("a", "1", "8Gi"), b}, pod: pod("p", requests("2", "")), want: "b"},
		{name: "cpu counts bound pods", nodes: []Node{node("a", "2", "8Gi")}, bound: []*corev1.Pod{pod("x", onNode("a"), requests("1500m", ""))},
			pod:  pod("p", requests("600m", "")),
			want: none + "0/1 nodes are available: 1 Insufficient cpu."},
		{name: "exactly full fits", nodes: []Node{node("a", "2", "8Gi")}, bound: []*corev1.Pod{pod("x", onNode("a"), requests("1500m", "7Gi"))},
			pod: pod("p", requests("500m", "1Gi")), want: "a"},
		{name: "every short resource of a node is reported", nodes: []Node{node("a", "1", "1Gi"), node("b", "1", "8Gi")},
			pod:  pod("p", requests("2", "2Gi")),
			want: none + "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."},
		{name: "limits stand in for requests", nodes: []Node{node("a", "1", "8Gi")}, pod: pod("p", limits("2", "")),
			want: none + "0/1 nodes are available: 1 Insufficient cpu."},
		{name: "requests win over limits", nodes: []Node{node("a", "1", "8Gi")}, pod: pod("p", requests("500m", ""), limits("2", "")), want: "a"},
		{name: "containers add up", nodes: []Node{node("a", "1", "8Gi")}, pod: pod("p", requests("600m", ""), container("600m", "")),
			want: none + "0/1 nodes are available: 1 Insufficient cpu."},
		{name: "an init container needs its own request", nodes: []Node{node("a", "1", "8Gi")}, pod: pod("p", requests("100m", ""), initContainer("2", "", false)),
			want: none + "0/1 nodes are available: 1 Insufficient cpu."},
		{name: "a node without memory fits no memory request", nodes: []Node{node("a", "4", "")}, pod: pod("p", requests("", "1Mi")),
			want: none + "0/1 nodes are available: 1 Insufficient memory."},
		{name: "no requests fit a full node", nodes: []Node{node("a", "1", "1Gi")}, bound: []*corev1.Pod{pod("x", onNode("a"), requests("1", "1Gi"))},
			pod: pod("p"), want: "a"},
		{name: "too many pods", nodes: []Node{node("a", "4", "8Gi", allocatableOf(corev1.ResourcePods, "1")), b},
			bound: []*corev1.Pod{pod("x", onNode("a"))}, pod: pod("p"), want: "b"},
		{name: "too many pods and insufficient cpu on one node", nodes: []Node{node("a", "1", "8Gi", allocatableOf(corev1.ResourcePods, "1"))},
			bound: []*corev1.Pod{pod("x", onNode("a"), requests("1", ""))}, pod: pod("p", requests("1", "")),
			want: none + "0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods."},
		{name: "110 pods by default", nodes: []Node{a}, bound: nPods(110, onNode("a")), pod: pod("p"),
			want: none + "0/1 nodes are available: 1 Too many pods."},
		{name: "ephemeral storage", nodes: []Node{node("a", "4", "8Gi", allocatableOf(corev1.ResourceEphemeralStorage, "1Gi"))},
			pod:  pod("p", requestOf(corev1.ResourceEphemeralStorage, "2Gi")),
			want: none + "0/1 nodes are available: 1 Insufficient ephemeral-storage."},
		{name: "extended resource", nodes: []Node{a, node("b", "4", "8Gi", allocatableOf("example.com/gpu", "1"))},
			pod: pod("p", requestOf("example.com/gpu", "1")), want: "b"},
		{name: "extended resource nowhere", nodes: []Node{a},
			pod:  pod("p", requestOf("example.com/gpu", "1")),
			want: none + "0/1 nodes are available: 1 Insufficient example.com/gpu."},

		// Which bound pods count.
		{name: "finished pods free their resources", nodes: []Node{node("a", "1", "8Gi")},
			bound: []*corev1.Pod{pod("x", onNode("a"), requests("1", ""), phase(corev1.PodSucceeded)), pod("y", onNode("a"), requests("1", ""), phase(corev1.PodFailed))},
			pod:   pod("p", requests("1", "")), want: "a"},
		{name: "terminating pods still hold theirs", nodes: []Node{node("a", "1", "8Gi")},
			bound: []*corev1.Pod{pod("x", onNode("a"), requests("1", ""), terminating)},
			pod:   pod("p", requests("1", "")),
			want:  none + "0/1 nodes are available: 1 Insufficient cpu."},
		{name: "pods of unknown nodes are ignored", nodes: []Node{node("a", "1", "8Gi")},
			bound: []*corev1.Pod{pod("x", onNode("gone"), requests("1", ""))}, pod: pod("p", requests("1", "")), want: "a"},

		// The chain.
		{name: "only the first failing filter of a node counts", nodes: []Node{node("a", "1", "8Gi", cordoned, notReady), node("b", "1", "8Gi", notReady), node("c", "1", "1Gi", zoneA)},
			pod:  pod("p", requests("2", "2Gi"), nodeSelector(zone, "za")),
			want: none + "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) were not ready, 1 node(s) were unschedulable."},
		{name: "reasons sort as text, count first", nodes: []Node{node("a", "4", "1Gi", zoneA), node("b", "4", "1Gi", zoneA), node("c", "4", "8Gi")},
			pod:  pod("p", requests("", "2Gi"), nodeSelector(zone, "za")),
			want: none + "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := placement(Input{Nodes: tc.nodes, Bound: tc.bound, Pending: []*corev1.Pod{tc.pod}})
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// nPods makes n bound pods named x0, x1, ...
func nPods(n int, opts ...func(*corev1.Pod)) []*corev1.Pod {
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = pod(fmt.Sprintf("x%d", i), opts...)
	}
	return out
}

func TestUnschedulableReason(t *testing.T) {
	r := Schedule(Input{Nodes: []Node{node("a", "1", "1Gi", cordoned)}, Pending: []*corev1.Pod{pod("p")}})
	if len(r.Unschedulable) != 1 {
		t.Fatalf("result %+v, want one unschedulable pod", r)
	}
	u := r.Unschedulable[0]
	if u.Reason != "Unschedulable" || u.Namespace != "default" || u.Name != "p" {
		t.Errorf("got %+v", u)
	}
}

// TestRequirementOperators checks each operator on a present, an absent and
// (for Gt/Lt) a non-numeric label.
func TestRequirementOperators(t *testing.T) {
	labels := map[string]string{"zone": "a", "gen": "5", "name": "web"}
	tests := []struct {
		req  corev1.NodeSelectorRequirement
		want bool
	}{
		{expr("zone", corev1.NodeSelectorOpIn, "a", "b"), true},
		{expr("zone", corev1.NodeSelectorOpIn, "b"), false},
		{expr("missing", corev1.NodeSelectorOpIn, "a"), false},
		{expr("zone", corev1.NodeSelectorOpNotIn, "b"), true},
		{expr("zone", corev1.NodeSelectorOpNotIn, "a"), false},
		{expr("missing", corev1.NodeSelectorOpNotIn, "a"), true},
		{expr("zone", corev1.NodeSelectorOpExists), true},
		{expr("missing", corev1.NodeSelectorOpExists), false},
		{expr("zone", corev1.NodeSelectorOpDoesNotExist), false},
		{expr("missing", corev1.NodeSelectorOpDoesNotExist), true},
		{expr("gen", corev1.NodeSelectorOpGt, "4"), true},
		{expr("gen", corev1.NodeSelectorOpGt, "5"), false},
		{expr("gen", corev1.NodeSelectorOpLt, "6"), true},
		{expr("gen", corev1.NodeSelectorOpLt, "5"), false},
		{expr("gen", corev1.NodeSelectorOpGt, "-1"), true},
		{expr("missing", corev1.NodeSelectorOpGt, "1"), false},
		{expr("name", corev1.NodeSelectorOpGt, "1"), false},
		// Malformed requirements match nothing.
		{expr("gen", corev1.NodeSelectorOpGt, "x"), false},
		{expr("gen", corev1.NodeSelectorOpGt, "1", "2"), false},
		{expr("zone", corev1.NodeSelectorOpIn), false},
		{expr("missing", corev1.NodeSelectorOpDoesNotExist, "x"), false},
		{expr("zone", "Like", "a"), false},
	}
	for _, tc := range tests {
		a := compileAffinity(&corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(tc.req)}},
		}}})
		if got := a.matches("n", labels); got != tc.want {
			t.Errorf("%s %s %v on %v: got %v, want %v", tc.req.Key, tc.req.Operator, tc.req.Values, labels, got, tc.want)
		}
	}
}

func TestMatchFields(t *testing.T) {
	in, notIn := corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn
	tests := []struct {
		req  corev1.NodeSelectorRequirement
		want bool
	}{
		{expr("metadata.name", in, "n1"), true},
		{expr("metadata.name", in, "n2"), false},
		{expr("metadata.name", notIn, "n2"), true},
		{expr("metadata.name", notIn, "n1"), false},
		{expr("metadata.name", in, "n1", "n2"), false}, // one value only
		{expr("metadata.uid", in, "n1"), false},        // the only node field
		{expr("metadata.name", corev1.NodeSelectorOpExists), false},
	}
	for _, tc := range tests {
		a := compileAffinity(&corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{tc.req}}}},
		}}})
		if got := a.matches("n1", nil); got != tc.want {
			t.Errorf("%s %s %v on n1: got %v, want %v", tc.req.Key, tc.req.Operator, tc.req.Values, got, tc.want)
		}
	}
}

func TestPodRequests(t *testing.T) {
	tests := []struct {
		name            string
		pod             *corev1.Pod
		cpu, memory     int64 // exact, in millicores and bytes
		scoreCPU, score int64 // scoring cpu and memory
	}{
		{"nothing requested", pod("p"), 0, 0, 100, 200 << 20},
		{"requests", pod("p", requests("250m", "64Mi")), 250, 64 << 20, 250, 64 << 20},
		{"explicit zero stays zero for scoring", pod("p", requests("0", "0")), 0, 0, 0, 0},
		{"limits as requests", pod("p", limits("1", "1Gi")), 1000, 1 << 30, 1000, 1 << 30},
		{"only cpu set", pod("p", requests("300m", "")), 300, 0, 300, 200 << 20},
		{"containers sum", pod("p", requests("100m", "10Mi"), container("200m", "20Mi")), 300, 30 << 20, 300, 30 << 20},
		{"init container max", pod("p", requests("100m", "10Mi"), initContainer("500m", "5Mi", false)), 500, 10 << 20, 500, 10 << 20},
		{"init containers run one at a time", pod("p", requests("100m", "10Mi"), initContainer("500m", "5Mi", false), initContainer("400m", "50Mi", false)),
			500, 50 << 20, 500, 50 << 20},
		// The sidecar runs beside the app container (100m+200m) and beside
		// the init container after it (200m+250m).
		{"sidecar adds up", pod("p", requests("100m", "10Mi"), initContainer("200m", "10Mi", true), initContainer("250m", "10Mi", false)),
			450, 20 << 20, 450, 20 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, score := podRequests(&tc.pod.Spec)
			if req.milliCPU != tc.cpu || req.memory != tc.memory {
				t.Errorf("requests cpu=%dm memory=%d, want %dm %d", req.milliCPU, req.memory, tc.cpu, tc.memory)
			}
			if score.milliCPU != tc.scoreCPU || score.memory != tc.score {
				t.Errorf("scoring cpu=%dm memory=%d, want %dm %d", score.milliCPU, score.memory, tc.scoreCPU, tc.score)
			}
		})
	}
}
