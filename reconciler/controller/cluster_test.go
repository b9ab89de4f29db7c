package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/store"
)

// clock is a settable time source, so node grace periods pass instantly.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// cluster drives a controller with several simulated nodes.
type cluster struct {
	t     *testing.T
	c     *Controller
	clock *clock
	src   *memSource
}

func newCluster(t *testing.T, files map[string]string) *cluster {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	src := &memSource{}
	src.set("c1", "app", files)
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	c, err := New(context.Background(), Config{Source: src, Store: db, Names: &seqNames{}, Now: clk.Now, PollInterval: time.Hour, NodeGrace: 40 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &cluster{t: t, c: c, clock: clk, src: src}
}

// report plays node n: its assigned pods are all Running and Ready.
func (k *cluster) report(node string) api.Assignment {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := api.NodeReport{Node: node, Time: k.clock.Now(), Addresses: []string{"192.0.2." + node[len(node)-1:]},
		PodSubnet: "10.244." + node[len(node)-1:] + ".0/24",
		Capacity:  corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")}}
	if err := k.c.Report(ctx, r); err != nil {
		k.t.Fatal(err)
	}
	a, err := k.c.Assignment(ctx, node, -1)
	if err != nil {
		k.t.Fatal(err)
	}
	r.Pods = nil
	for _, p := range a.Pods {
		r.Pods = append(r.Pods, api.PodReport{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Status: *readyStatus(p)})
	}
	if err := k.c.Report(ctx, r); err != nil {
		k.t.Fatal(err)
	}
	return a
}

// settle lets the given nodes report until pass after pass changes nothing.
func (k *cluster) settle(nodes ...string) map[string]int {
	k.t.Helper()
	var last string
	for range 100 {
		per := map[string]int{}
		for _, n := range nodes {
			per[n] = len(k.report(n).Pods)
		}
		k.c.Kick()
		time.Sleep(20 * time.Millisecond)
		s := fmt.Sprint(per)
		if s == last {
			return per
		}
		last = s
	}
	k.t.Fatalf("no settling: %s", last)
	return nil
}

func replicas(n int, extra string) map[string]string {
	return map[string]string{"app.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: localhost/web:v1
          resources: {requests: {cpu: 100m, memory: 64Mi}}
%s`, n, extra)}
}

func TestSpreadNodeLossAndReturn(t *testing.T) {
	k := newCluster(t, replicas(6, ""))
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		k.report(n)
	}
	if res := k.c.Sync(context.Background()); res.Error != "" {
		t.Fatal(res.Error)
	}
	if per := k.settle("node-1", "node-2", "node-3"); per["node-1"] != 2 || per["node-2"] != 2 || per["node-3"] != 2 {
		t.Fatalf("6 replicas on 3 nodes landed %v, want 2/2/2", per)
	}
	a := k.report("node-1")
	if len(a.Nodes) != 3 || a.Nodes[1].PodSubnet != "10.244.2.0/24" {
		t.Fatalf("routes in the assignment: %+v", a.Nodes)
	}

	// node-3 goes silent past the grace period: its pods are replaced on
	// the two others, and its route leaves the assignments.
	k.clock.advance(41 * time.Second)
	per := k.settle("node-1", "node-2")
	if per["node-1"] != 3 || per["node-2"] != 3 {
		t.Fatalf("after losing node-3: %v, want 3/3", per)
	}
	if a := k.report("node-1"); len(a.Nodes) != 2 {
		t.Fatalf("routes still name the lost node: %+v", a.Nodes)
	}
	nodes := k.c.Nodes()
	if nodes[2].Name != "node-3" || nodes[2].Ready || nodes[0].Allocated.Cpu().MilliValue() != 300 {
		t.Fatalf("nodes %+v", nodes)
	}

	// node-3 returns: it is assigned nothing, so it stops its stale pods.
	if a := k.report("node-3"); len(a.Pods) != 0 {
		t.Fatalf("the returning node is still assigned %d pods", len(a.Pods))
	}
}

func TestDrainRespectsMaxUnavailable(t *testing.T) {
	k := newCluster(t, replicas(4, ""))
	k.report("node-1")
	k.report("node-2")
	k.c.Sync(context.Background())
	if per := k.settle("node-1", "node-2"); per["node-1"] != 2 {
		t.Fatalf("placement %v", per)
	}
	if err := k.c.Cordon(context.Background(), "node-2", false, true); err != nil {
		t.Fatal(err)
	}
	// One pass with node-1 not reporting its new pods as ready yet: only
	// maxUnavailable (25% of 4 = 1) pod may leave node-2.
	k.c.Kick()
	time.Sleep(50 * time.Millisecond)
	k.c.mu.Lock()
	leaving := len(k.c.terminating)
	k.c.mu.Unlock()
	if leaving != 1 {
		t.Fatalf("%d pods evicted at once, want 1 (maxUnavailable)", leaving)
	}
	if per := k.settle("node-1", "node-2"); per["node-2"] != 0 || per["node-1"] != 4 {
		t.Fatalf("after the drain: %v", per)
	}
	if err := k.c.Cordon(context.Background(), "nowhere", true, false); err == nil || !strings.Contains(err.Error(), "never reported") {
		t.Fatalf("cordon of an unknown node: %v", err)
	}
}

func TestUnschedulableReason(t *testing.T) {
	files := replicas(1, "")
	files["app.yaml"] = strings.Replace(files["app.yaml"], "memory: 64Mi", "memory: 64Gi", 1)
	k := newCluster(t, files)
	k.report("node-1")
	k.report("node-2")
	k.c.Sync(context.Background())
	k.settle("node-1", "node-2")
	pods := k.c.Pods("default")
	if len(pods) != 1 || pods[0].Spec.NodeName != "" {
		t.Fatalf("pods %+v", pods)
	}
	if c := pods[0].Status.Conditions[0]; c.Message != "0/2 nodes are available: 2 Insufficient memory." {
		t.Fatalf("condition %+v", c)
	}
}
