package schedule

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// BenchmarkSchedule places 1,000 pending pods (100 Deployments of 10) on
// 100 nodes that already run 10,000 pods (1,000 Deployments of 10), the
// scale berth is designed for. One op is one whole Schedule call.
func BenchmarkSchedule(b *testing.B) {
	const nodes, bound, pending, perDeployment = 100, 10_000, 1_000, 10
	in := Input{}
	for i := range nodes {
		n := node(fmt.Sprintf("node-%03d", i), "64", "256Gi")
		n.Allocatable[corev1.ResourcePods] = resource.MustParse("250")
		n.Labels["topology.kubernetes.io/zone"] = fmt.Sprintf("zone-%d", i%3)
		in.Nodes = append(in.Nodes, n)
	}
	for i := range bound {
		p := pod(fmt.Sprintf("bound-%d", i), ofDeployment(fmt.Sprintf("app-%d", i/perDeployment), "h1"), requests("100m", "256Mi"),
			onNode(fmt.Sprintf("node-%03d", i%nodes)))
		in.Bound = append(in.Bound, p)
	}
	for i := range pending {
		opts := []func(*corev1.Pod){ofDeployment(fmt.Sprintf("new-%d", i/perDeployment), "h1"), requests("250m", "512Mi")}
		switch i % 10 {
		case 0:
			opts = append(opts, nodeSelector("topology.kubernetes.io/zone", "zone-1"))
		case 1:
			opts = append(opts, required(term(expr("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "zone-0", "zone-2"))))
		case 2:
			opts = append(opts, hostPortOn("", corev1.ProtocolTCP, int32(9000+i/perDeployment)))
		}
		in.Pending = append(in.Pending, pod(fmt.Sprintf("pending-%d", i), opts...))
	}
	if r := Schedule(in); len(r.Bindings) != pending {
		b.Fatalf("placed %d of %d pods: %+v", len(r.Bindings), pending, r.Unschedulable[0])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Schedule(in)
	}
	b.ReportMetric(float64(pending*b.N)/b.Elapsed().Seconds(), "pods/s")
}
