package schedule

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSpreadScores checks PodTopologySpread's arithmetic on three feasible
// nodes: weight log(3+2), offset maxSkew-1 = 2, normalized to 0-100.
func TestSpreadScores(t *testing.T) {
	tests := []struct {
		counts []int // pods of the group on a, b, c
		want   []int64
	}{
		{[]int{0, 0, 0}, []int64{100, 100, 100}},
		// raw round(1*1.609+2)=4, 2, 2: 100*(4+2-4)/4 = 50.
		{[]int{1, 0, 0}, []int64{50, 100, 100}},
		// raw 5, 4, 2: 100*(7-5)/5 = 40, 100*(7-4)/5 = 60.
		{[]int{2, 1, 0}, []int64{40, 60, 100}},
		{[]int{3, 3, 3}, []int64{100, 100, 100}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.counts), func(t *testing.T) {
			var bound []*corev1.Pod
			for i, n := range tc.counts {
				for j := 0; j < n; j++ {
					bound = append(bound, pod(fmt.Sprintf("web-%d-%d", i, j), onNode(string(rune('a'+i))), ofDeployment("web", "h1")))
				}
			}
			s := newScheduler(Input{Nodes: []Node{node("a", "4", "8Gi"), node("b", "4", "8Gi"), node("c", "4", "8Gi")}, Bound: bound})
			s.feasible = s.nodes
			got := s.spreadScores(newPendingPod(pod("p", ofDeployment("web", "h1"))))
			if !slices.Equal(got, tc.want) {
				t.Errorf("spread scores %v, want %v", got, tc.want)
			}
		})
	}
	s := newScheduler(Input{Nodes: []Node{node("a", "4", "8Gi")}})
	s.feasible = s.nodes
	if got := s.spreadScores(newPendingPod(pod("bare"))); got != nil {
		t.Errorf("a bare pod got spread scores %v; it belongs to no group", got)
	}
}

func TestLeastAllocated(t *testing.T) {
	tests := []struct {
		name  string
		node  Node
		bound []*corev1.Pod
		pod   *corev1.Pod
		want  int64
	}{
		{"half used after placing", node("a", "4", "8Gi"), []*corev1.Pod{pod("x", onNode("a"), requests("1", "2Gi"))}, pod("p", requests("1", "2Gi")), 50},
		// cpu (1000-100)/1000 = 90, memory (1024-200)/1024 = 80: 85.
		{"defaults for no requests", node("a", "1", "1Gi"), nil, pod("p"), 85},
		{"bound pods without requests count at the defaults", node("a", "1", "1Gi"), []*corev1.Pod{pod("x", onNode("a"))}, pod("p", requests("0", "0")), 85},
		{"cpu only when the node has no memory", node("a", "1", ""), nil, pod("p", requests("250m", "1Gi")), 75},
		{"nothing to score", node("a", "", ""), nil, pod("p"), 0},
		{"over capacity scores 0", node("a", "1", "1Gi"), []*corev1.Pod{pod("x", onNode("a"), requests("2", "2Gi"))}, pod("p"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScheduler(Input{Nodes: []Node{tc.node}, Bound: tc.bound})
			if got := leastAllocated(newPendingPod(tc.pod), s.nodes[0]); got != tc.want {
				t.Errorf("leastAllocated = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestScoring checks choices between feasible nodes, on 4-cpu 8Gi nodes.
// Totals are 2 x spread + 1 x leastAllocated.
func TestScoring(t *testing.T) {
	a, b, c := node("a", "4", "8Gi"), node("b", "4", "8Gi"), node("c", "4", "8Gi")
	tests := []struct {
		name  string
		nodes []Node
		bound []*corev1.Pod
		pod   *corev1.Pod
		want  string
	}{
		{"emptier node", []Node{a, b}, []*corev1.Pod{pod("x", onNode("a"), requests("2", "")), pod("y", onNode("b"), requests("1", ""))}, pod("p"), "b"},
		{"ties go to the first name", []Node{c, b, a}, nil, pod("p"), "a"},
		// a: spread 66, least allocated 95: 227. b: 100 and 78: 278.
		{"spread beats a little load", []Node{a, b},
			[]*corev1.Pod{pod("w", onNode("a"), ofDeployment("web", "h1")), pod("x", onNode("b"), requests("1", "1Gi"))},
			pod("p", ofDeployment("web", "h1")), "b"},
		// a: 66 and 95: 227. b: 100 and 10: 210.
		{"heavy load beats spread", []Node{a, b},
			[]*corev1.Pod{pod("w", onNode("a"), ofDeployment("web", "h1")), pod("x", onNode("b"), requests("3500m", "7Gi"))},
			pod("p", ofDeployment("web", "h1")), "a"},
		{"revisions of one Deployment spread together", []Node{a, b},
			[]*corev1.Pod{pod("w", onNode("a"), ofDeployment("web", "old"))},
			pod("p", ofDeployment("web", "new")), "b"},
		// Counted as web's, the pod on b would send p to a (227 against 285).
		{"other Deployments do not count", []Node{a, b},
			[]*corev1.Pod{pod("w", onNode("b"), ofDeployment("api", "h1")), pod("x", onNode("a"), requests("500m", "1Gi"))},
			pod("p", ofDeployment("web", "h1")), "b"},
		{"other namespaces do not count", []Node{a, b},
			[]*corev1.Pod{pod("w", onNode("b"), ofDeployment("web", "h1"), inNamespace("other")), pod("x", onNode("a"), requests("500m", "1Gi"))},
			pod("p", ofDeployment("web", "h1")), "b"},
		// Counted, the terminating pod would send p to b (227 against 285).
		{"terminating pods do not count for spreading", []Node{a, b},
			[]*corev1.Pod{pod("w", onNode("a"), ofDeployment("web", "h1"), terminating), pod("x", onNode("b"), requests("500m", "1Gi"))},
			pod("p", ofDeployment("web", "h1")), "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := placement(Input{Nodes: tc.nodes, Bound: tc.bound, Pending: []*corev1.Pod{tc.pod}})
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func inNamespace(ns string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Namespace = ns } }

// TestPlacementsSeeEachOther: each binding takes resources, ports and a
// spreading slot before the next pending pod is placed.
func TestPlacementsSeeEachOther(t *testing.T) {
	nodes := []Node{node("a", "4", "8Gi"), node("b", "4", "8Gi")}
	t.Run("resources", func(t *testing.T) {
		r := Schedule(Input{Nodes: nodes, Pending: []*corev1.Pod{pod("p1", requests("3", "")), pod("p2", requests("3", "")), pod("p3", requests("3", ""))}})
		want := Result{
			Bindings:      []Binding{{"default", "p1", "a"}, {"default", "p2", "b"}},
			Unschedulable: []Unschedulable{{"default", "p3", "Unschedulable", "0/2 nodes are available: 2 Insufficient cpu."}},
		}
		if !equalResults(r, want) {
			t.Errorf("got %+v\nwant %+v", r, want)
		}
	})
	t.Run("ports", func(t *testing.T) {
		one := []Node{nodes[0]}
		r := Schedule(Input{Nodes: one, Pending: []*corev1.Pod{pod("p1", hostPortOn("", "", 80)), pod("p2", hostPortOn("10.1.1.1", corev1.ProtocolTCP, 80))}})
		want := Result{
			Bindings:      []Binding{{"default", "p1", "a"}},
			Unschedulable: []Unschedulable{{"default", "p2", "Unschedulable", "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."}},
		}
		if !equalResults(r, want) {
			t.Errorf("got %+v\nwant %+v", r, want)
		}
	})
	t.Run("pod count", func(t *testing.T) {
		one := []Node{node("a", "4", "8Gi", allocatableOf(corev1.ResourcePods, "2"))}
		r := Schedule(Input{Nodes: one, Pending: []*corev1.Pod{pod("p1"), pod("p2"), pod("p3")}})
		if len(r.Bindings) != 2 || len(r.Unschedulable) != 1 || r.Unschedulable[0].Message != "0/1 nodes are available: 1 Too many pods." {
			t.Errorf("got %+v", r)
		}
	})
}

func equalResults(a, b Result) bool {
	return slices.Equal(a.Bindings, b.Bindings) && slices.Equal(a.Unschedulable, b.Unschedulable)
}

// TestReplicasSpreadEvenly: n replicas of one Deployment on k equal, empty
// nodes land as evenly as possible (6 on 3 nodes: 2/2/2).
func TestReplicasSpreadEvenly(t *testing.T) {
	for k := 1; k <= 6; k++ {
		for n := 0; n <= 20; n++ {
			var nodes []Node
			for i := 0; i < k; i++ {
				nodes = append(nodes, node(fmt.Sprintf("n%d", i), "8", "16Gi"))
			}
			var pending []*corev1.Pod
			for i := 0; i < n; i++ {
				pending = append(pending, pod(fmt.Sprintf("web-%d", i), ofDeployment("web", "h1"), requests("100m", "64Mi")))
			}
			r := Schedule(Input{Nodes: nodes, Pending: pending})
			if len(r.Bindings) != n {
				t.Fatalf("%d replicas on %d nodes: %d bound", n, k, len(r.Bindings))
			}
			per := map[string]int{}
			for _, b := range r.Bindings {
				per[b.Node]++
			}
			for _, nd := range nodes {
				if c := per[nd.Name]; c < n/k || c > (n+k-1)/k {
					t.Errorf("%d replicas on %d nodes: %s got %d (%v)", n, k, nd.Name, c, per)
				}
			}
		}
	}
}
