package nodeagent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/netroute"
	"berth.dev/berth/nodeagent/runtime/fake"
)

// recordingRoutes records every node list it is given and fails the first
// failFirst calls.
type recordingRoutes struct {
	mu        sync.Mutex
	failFirst int
	calls     chan routesCall
}

type routesCall struct {
	self  string
	nodes []api.NodeRoute
}

func (r *recordingRoutes) Sync(_ context.Context, self string, nodes []api.NodeRoute) error {
	r.mu.Lock()
	fail := r.failFirst > 0
	r.failFirst--
	r.mu.Unlock()
	r.calls <- routesCall{self: self, nodes: slices.Clone(nodes)}
	if fail {
		return errors.New("ip route add: exit status 2")
	}
	return nil
}

// subnetRuntime is the fake runtime plus a pod network whose subnet the
// test sets, failing the first failFirst questions.
type subnetRuntime struct {
	*fake.Runtime
	mu        sync.Mutex
	subnet    string
	failFirst int
	answers   int
}

func (r *subnetRuntime) PodSubnet(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failFirst > 0 {
		r.failFirst--
		return "", errors.New("podman: connection refused")
	}
	r.answers++
	return r.subnet, nil
}

func (r *subnetRuntime) answered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers > 0
}

// publishNodes sets a new assignment generation with the given pods and
// node list on the in-memory control plane.
func publishNodes(m *memControlPlane, pods []corev1.Pod, nodes []api.NodeRoute) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asg = api.Assignment{Node: m.asg.Node, Generation: m.asg.Generation + 1, Pods: pods, Nodes: nodes}
	close(m.changed)
	m.changed = make(chan struct{})
}

func nodeList(addrs ...string) []api.NodeRoute {
	out := []api.NodeRoute{{Name: "node-1", Address: "192.168.1.11", PodSubnet: "10.244.1.0/24"}}
	for i, a := range addrs {
		out = append(out, api.NodeRoute{Name: "node-" + string(rune('2'+i)), Address: a, PodSubnet: "10.244." + string(rune('2'+i)) + ".0/24"})
	}
	return out
}

// runAgent starts a built agent and stops it when the test ends.
func runAgent(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRoutesProgrammedOnChangeWithRetry(t *testing.T) {
	h := newHarness(t, newProgram())
	h.clock.real = true
	routes := &recordingRoutes{failFirst: 2, calls: make(chan routesCall, 16)}
	a, err := New(Config{
		NodeName: "node-1", DataDir: h.dir, Runtime: h.rt, ControlPlane: h.cp, Logger: discardLogger(),
		SyncInterval: 50 * time.Millisecond, Routes: routes, Addresses: []string{"192.168.1.11"},
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)

	next := func(what string) routesCall {
		t.Helper()
		select {
		case c := <-routes.calls:
			if c.self != "node-1" {
				t.Fatalf("%s: Sync for self %q, want node-1", what, c.self)
			}
			return c
		case <-time.After(30 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
			return routesCall{}
		}
	}
	first := nodeList("192.168.1.12", "192.168.1.13")
	publishNodes(h.cp, nil, first)
	// The first two Syncs fail. At most two wake-ups (start, new
	// assignment) come for free, so the third call proves a retry.
	for _, what := range []string{"the first sync", "the second", "the retry"} {
		if got := next(what); !slices.Equal(got.nodes, first) {
			t.Fatalf("%s: got %+v", what, got.nodes)
		}
	}
	// A new generation with the same nodes (only pods changed) must not
	// reach the programmer; the next call is for the changed list.
	publishNodes(h.cp, []corev1.Pod{appPod("web-1", "u1")}, nodeList("192.168.1.12", "192.168.1.13"))
	second := nodeList("192.168.1.12", "192.168.1.23")
	publishNodes(h.cp, []corev1.Pod{appPod("web-1", "u1")}, second)
	if got := next("the changed list"); !slices.Equal(got.nodes, second) {
		t.Fatalf("after a node moved: got %+v, want %+v", got.nodes, second)
	}
}

func TestRoutesIncludeOwnSubnetBeforeTheControllerListsThisNode(t *testing.T) {
	h := newHarness(t, newProgram())
	h.clock.real = true
	routes := &recordingRoutes{calls: make(chan routesCall, 16)}
	a, err := New(Config{
		NodeName: "node-1", DataDir: h.dir, Runtime: h.rt, ControlPlane: h.cp, Logger: discardLogger(),
		Routes: routes, Addresses: []string{"192.168.1.11"}, PodSubnet: "10.244.1.0/24",
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	others := nodeList("192.168.1.12")[1:] // this node is not Ready yet
	publishNodes(h.cp, nil, others)
	want := append(slices.Clone(others), api.NodeRoute{Name: "node-1", Address: "192.168.1.11", PodSubnet: "10.244.1.0/24"})
	deadline := time.After(30 * time.Second)
	for {
		select {
		case c := <-routes.calls:
			if slices.Equal(c.nodes, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no Sync with this node's own entry added, want %+v", want)
		}
	}
}

func TestReportCarriesPodSubnetAndAddress(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured string
		network    string
		failFirst  int
		want       string
	}{
		{name: "learnt from the runtime after it failed once", network: "10.244.7.0/24", failFirst: 1, want: "10.244.7.0/24"},
		{name: "configured wins over the runtime", configured: "10.244.9.0/24", network: "10.88.0.0/16", want: "10.244.9.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newProgram())
			h.clock.real = true
			rt := &subnetRuntime{Runtime: h.rt, subnet: tc.network, failFirst: tc.failFirst}
			a, err := New(Config{
				NodeName: "node-1", DataDir: h.dir, Runtime: rt, ControlPlane: h.cp, Logger: discardLogger(),
				PodSubnet: tc.configured, ReportInterval: 100 * time.Millisecond,
				Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
			})
			if err != nil {
				t.Fatal(err)
			}
			runAgent(t, a)
			// Once the runtime has answered, a report sent two reports later
			// shows what the agent made of the answer.
			deadline := time.Now().Add(30 * time.Second)
			waitFor := func(what string, cond func() bool) {
				t.Helper()
				for !cond() {
					if time.Now().After(deadline) {
						t.Fatalf("timed out waiting for %s", what)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			waitFor("the runtime's answer", func() bool { return rt.answered() })
			_, n := h.cp.lastReport()
			waitFor("two more reports", func() bool { _, m := h.cp.lastReport(); return m >= n+2 })
			rep, _ := h.cp.lastReport()
			if rep.PodSubnet != tc.want {
				t.Fatalf("reported pod subnet %q, want %q", rep.PodSubnet, tc.want)
			}
			// Without configured addresses the agent reports the host's
			// own choice, never loopback.
			var exclude netip.Prefix
			if tc.configured != "" {
				exclude = netip.MustParsePrefix(tc.configured)
			}
			host, err := netroute.HostAddress(exclude)
			if err != nil {
				t.Skipf("this machine has no usable address to compare with: %v", err)
			}
			if !slices.Equal(rep.Addresses, []string{host.String()}) {
				t.Fatalf("addresses = %q, want [%s]", rep.Addresses, host)
			}
		})
	}
}

func TestRoutesChanged(t *testing.T) {
	base := &api.Assignment{Nodes: nodeList("192.168.1.12")}
	for _, tc := range []struct {
		name string
		prev *api.Assignment
		next *api.Assignment
		want bool
	}{
		{"first assignment", nil, base, true},
		{"same nodes, other pods and services", base, &api.Assignment{Generation: 2, Nodes: nodeList("192.168.1.12"),
			Services: svcTable("10.88.0.5"), Pods: []corev1.Pod{appPod("web-1", "u1")}}, false},
		{"address changed", base, &api.Assignment{Nodes: nodeList("192.168.1.99")}, true},
		{"node joined", base, &api.Assignment{Nodes: nodeList("192.168.1.12", "192.168.1.13")}, true},
		{"node left", base, &api.Assignment{Nodes: nodeList()}, true},
		{"subnet changed", base, &api.Assignment{Nodes: func() []api.NodeRoute {
			n := nodeList("192.168.1.12")
			n[1].PodSubnet = "10.244.42.0/24"
			return n
		}()}, true},
		{"no nodes before and after", &api.Assignment{}, &api.Assignment{Generation: 3}, false},
	} {
		if got := routesChanged(tc.prev, tc.next); got != tc.want {
			t.Errorf("%s: routesChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}
