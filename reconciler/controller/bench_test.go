package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/store"
)

// scaleWorld is DESIGN.md's scale target played without I/O beyond the
// embedded store: 100 nodes whose reports the benchmark writes directly
// (every assigned pod Running and Ready), 1,000 Deployments of 10 replicas.
type scaleWorld struct {
	c     *Controller
	nodes []string
}

func newScaleWorld(b *testing.B, deployments, replicas, nodes int) *scaleWorld {
	b.Helper()
	var docs []string
	for i := range deployments {
		docs = append(docs, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: app-%d}
spec:
  replicas: %d
  selector: {matchLabels: {app: app-%d}}
  template:
    metadata: {labels: {app: app-%d}}
    spec:
      containers:
        - name: web
          image: localhost/web:v1
          resources: {requests: {cpu: 10m, memory: 16Mi}}
`, i, replicas, i, i))
	}
	src := &memSource{}
	src.set("c1", "scale", map[string]string{"apps.yaml": strings.Join(docs, "---\n")})
	db, err := store.Open(filepath.Join(b.TempDir(), "berth.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	c, err := New(context.Background(), Config{Source: src, Store: db, Names: &seqNames{}, PollInterval: time.Hour, NodeGrace: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	w := &scaleWorld{c: c}
	for i := range nodes {
		w.nodes = append(w.nodes, fmt.Sprintf("node-%03d", i))
	}
	w.reportAll()
	if res := c.fetchAndApply(context.Background()); res.Error != "" {
		b.Fatal(res.Error)
	}
	return w
}

// reportAll has every node report its assigned pods as Running and Ready.
func (w *scaleWorld) reportAll() {
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metaHourAgo()}}
	for _, n := range w.nodes {
		w.c.mu.Lock()
		a := w.c.assignments[n]
		w.c.mu.Unlock()
		r := api.NodeReport{Node: n, Time: time.Now(), Capacity: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("500")}}
		if a != nil {
			for i, p := range a.Pods {
				r.Pods = append(r.Pods, api.PodReport{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Status: corev1.PodStatus{
					Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", len(n), i/250, i%250+1), Conditions: ready}})
			}
		}
		w.c.Report(context.Background(), r)
	}
}

// converge alternates planning passes and node reports until a pass plans
// nothing; it returns the number of passes.
func (w *scaleWorld) converge(b *testing.B) int {
	for pass := 1; pass <= 200; pass++ {
		w.c.mu.Lock()
		before := w.c.generation
		w.c.mu.Unlock()
		w.c.reconcile(context.Background())
		w.reportAll()
		w.c.mu.Lock()
		after := w.c.generation
		w.c.mu.Unlock()
		if after == before {
			return pass
		}
	}
	b.Fatal("no convergence in 200 passes")
	return 0
}

// BenchmarkConverge10kPods measures a cold start: from a revision of 1,000
// Deployments to 10,000 pods bound on 100 nodes, reported ready.
func BenchmarkConverge10kPods(b *testing.B) {
	for range b.N {
		b.StopTimer()
		w := newScaleWorld(b, 1000, 10, 100)
		b.StartTimer()
		passes := w.converge(b)
		b.ReportMetric(float64(passes), "passes")
	}
}

// BenchmarkSteadyPass measures a planning pass with nothing to do over
// 10,000 running pods: the cost paid every resync and on every report.
func BenchmarkSteadyPass(b *testing.B) {
	w := newScaleWorld(b, 1000, 10, 100)
	w.converge(b)
	w.c.mu.Lock()
	pods := len(w.c.pods)
	w.c.mu.Unlock()
	if pods != 10000 {
		b.Fatalf("%d pods after convergence, want 10000", pods)
	}
	b.ResetTimer()
	for range b.N {
		w.c.reconcile(context.Background())
	}
}

func metaHourAgo() metav1.Time { return metav1.NewTime(time.Now().Add(-time.Hour)) }
