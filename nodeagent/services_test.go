package nodeagent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"berth.dev/berth/api"
)

// recordingProgrammer records every service table it is given and fails
// the first failFirst calls.
type recordingProgrammer struct {
	mu        sync.Mutex
	failFirst int
	calls     chan []api.Service
}

func (r *recordingProgrammer) Sync(_ context.Context, svcs []api.Service) error {
	r.mu.Lock()
	fail := r.failFirst > 0
	r.failFirst--
	r.mu.Unlock()
	r.calls <- svcs
	if fail {
		return errors.New("iptables-restore: exit status 1")
	}
	return nil
}

func svcTable(ips ...string) []api.Service {
	var eps []api.Endpoint
	for _, ip := range ips {
		eps = append(eps, api.Endpoint{IP: ip, Port: 8080})
	}
	return []api.Service{{Namespace: "shop", Name: "web", Type: "ClusterIP", ClusterIP: "10.96.0.10",
		Ports: []api.ServicePort{{Protocol: "TCP", Port: 80, Endpoints: eps}}}}
}

// publish sets a new assignment generation with the given pods and
// services on the in-memory control plane.
func publish(m *memControlPlane, pods []corev1.Pod, svcs []api.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asg = api.Assignment{Node: m.asg.Node, Generation: m.asg.Generation + 1, Pods: pods, Services: svcs}
	close(m.changed)
	m.changed = make(chan struct{})
}

func TestServicesProgrammedOnChangeWithRetry(t *testing.T) {
	h := newHarness(t, newProgram())
	h.clock.real = true
	prog := &recordingProgrammer{failFirst: 2, calls: make(chan []api.Service, 16)}
	a, err := New(Config{
		NodeName: "node-1", DataDir: h.dir, Runtime: h.rt, ControlPlane: h.cp, Logger: discardLogger(),
		SyncInterval: 50 * time.Millisecond, Services: prog,
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	next := func(what string) []api.Service {
		t.Helper()
		select {
		case s := <-prog.calls:
			return s
		case <-time.After(30 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
			return nil
		}
	}
	first := svcTable("10.88.0.5")
	publish(h.cp, nil, first)
	// The first two Syncs fail. At most two wake-ups (start, new
	// assignment) come for free, so the third call proves a retry.
	for _, what := range []string{"the first sync", "the second", "the retry"} {
		if got := next(what); !sameServices(got, first) {
			t.Fatalf("%s: got %+v", what, got)
		}
	}
	// A new generation with the same Services (only pods changed) must not
	// reach the programmer; the next call is for the changed table.
	publish(h.cp, []corev1.Pod{appPod("web-1", "u1")}, svcTable("10.88.0.5"))
	second := svcTable("10.88.0.6")
	publish(h.cp, []corev1.Pod{appPod("web-1", "u1")}, second)
	if got := next("the changed table"); !sameServices(got, second) {
		t.Fatalf("after the endpoint changed: got %+v, want %+v", got, second)
	}
}

func sameServices(a, b []api.Service) bool {
	return !servicesChanged(&api.Assignment{Services: a}, &api.Assignment{Services: b})
}

func TestServicesChanged(t *testing.T) {
	base := &api.Assignment{Services: svcTable("10.88.0.5", "10.88.0.6")}
	for _, tc := range []struct {
		name string
		prev *api.Assignment
		next *api.Assignment
		want bool
	}{
		{"first assignment", nil, base, true},
		{"same table", base, &api.Assignment{Generation: 2, Services: svcTable("10.88.0.5", "10.88.0.6")}, false},
		{"endpoint gone", base, &api.Assignment{Services: svcTable("10.88.0.5")}, true},
		{"node port added", base, func() *api.Assignment {
			s := svcTable("10.88.0.5", "10.88.0.6")
			s[0].Ports[0].NodePort = 30080
			return &api.Assignment{Services: s}
		}(), true},
		{"service removed", base, &api.Assignment{}, true},
	} {
		if got := servicesChanged(tc.prev, tc.next); got != tc.want {
			t.Errorf("%s: servicesChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}
