package plan

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRollingUpdateInvariants drives whole rollouts through Compute and the
// in-test executor over many (replicas, maxSurge, maxUnavailable)
// combinations, with pods that take a random number of passes to become
// ready. After every pass it checks the two promises of a rolling update:
// available pods >= replicas - maxUnavailable, and pods <= replicas +
// maxSurge; and that the rollout completes.
func TestRollingUpdateInvariants(t *testing.T) {
	surges := []string{"0", "1", "2", "25%", "50%", "100%"}
	unavails := []string{"0", "1", "3", "25%", "50%", "100%"}
	type variant struct {
		name       string
		minReady   int32
		graceful   bool
		retarget   bool // change the template again mid-rollout
		maxReadyIn int  // pods become ready 1..maxReadyIn passes after creation
	}
	variants := []variant{
		{name: "plain", maxReadyIn: 1},
		{name: "slow pods", maxReadyIn: 4},
		{name: "minReadySeconds", minReady: 2, maxReadyIn: 3},
		{name: "graceful deletion", graceful: true, maxReadyIn: 3},
		{name: "second change mid-rollout", retarget: true, maxReadyIn: 3},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range variants {
		for _, replicas := range []int32{0, 1, 2, 3, 4, 5, 7, 10, 13, 20} {
			for _, s := range surges {
				for _, u := range unavails {
					if s == "0" && u == "0" {
						continue // rejected by validation
					}
					name := fmt.Sprintf("%s/r%d/s%s/u%s", v.name, replicas, s, u)
					simulateRollout(t, name, rng, replicas, s, u, v.minReady, v.graceful, v.retarget, v.maxReadyIn)
				}
			}
		}
	}
}

func simulateRollout(t *testing.T, name string, rng *rand.Rand, replicas int32, surge, unavail string, minReadySec int32, graceful, retarget bool, maxReadyIn int) {
	t.Helper()
	d := deployment("web", replicas, "img:v1", rolling(surge, unavail), minReady(minReadySec))
	w := newWorld(t, d)
	w.autoReady = true
	for i := 0; i < 20; i++ { // converge, letting minReadySeconds pass
		w.step()
		w.now = w.now.Add(time.Duration(minReadySec+1) * time.Second)
	}
	w.autoReady = false
	w.graceful = graceful
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	final := "img:v2"
	maxS, maxU := maxSurge(d), maxUnavailable(d)

	readyAt := map[string]int{} // pod key -> pass at which it turns ready
	for pass := 0; pass < 300; pass++ {
		if retarget && pass == 3 {
			w.deployments = []*appsv1.Deployment{withImage(d, "img:v3")}
			final = "img:v3"
		}
		// The agents: pods turn ready when their time comes; terminating
		// pods finish after a pass.
		w.reap()
		for n, p := range w.pods {
			if at, ok := readyAt[n]; ok && at <= pass && !isReady(p) && p.DeletionTimestamp == nil {
				w.markReady(p)
			}
		}
		p := w.step()
		for _, pod := range p.CreatePods {
			readyAt[key(pod.Namespace, pod.Name)] = pass + 1 + rng.IntN(maxReadyIn)
		}
		if len(p.CreateReplicaSets) > 1 {
			t.Fatalf("%s pass %d: %d ReplicaSets created in one pass", name, pass, len(p.CreateReplicaSets))
		}

		var total, available, onFinal int32
		for _, pod := range w.pods {
			if !isActive(pod) {
				continue
			}
			total++
			if isAvailable(pod, minReadySec, w.now) {
				available++
			}
			if pod.Spec.Containers[0].Image == final {
				onFinal++
			}
		}
		if total > replicas+maxS {
			t.Fatalf("%s pass %d: %d pods > replicas %d + maxSurge %d", name, pass, total, replicas, maxS)
		}
		if available < replicas-maxU {
			t.Fatalf("%s pass %d: %d available < replicas %d - maxUnavailable %d", name, pass, available, replicas, maxU)
		}
		ds := statusOf(p, "web")
		if (!retarget || pass >= 3) && ds.Health == HealthHealthy && onFinal == replicas && total == replicas {
			if (retarget && ds.Revision != 3) || (!retarget && ds.Revision != 2) {
				t.Fatalf("%s: finished at revision %d", name, ds.Revision)
			}
			return
		}
		w.now = w.now.Add(time.Second)
	}
	t.Fatalf("%s: rollout did not complete in 300 passes", name)
}

// BenchmarkCompute plans 1,000 Deployments of 10 pods each: a steady state
// with nothing to do, and the same with one Deployment rolling out.
func BenchmarkCompute(b *testing.B) {
	steady := benchInput(1000, 10)
	rolling := benchInput(1000, 10)
	rolling.Deployments[500] = withImage(rolling.Deployments[500], "img:v2")

	for _, bc := range []struct {
		name string
		in   Input
	}{{"steady", steady}, {"one-rolling", rolling}} {
		b.Run(bc.name, func(b *testing.B) {
			names := &seqNames{}
			p := Compute(bc.in, names)
			if bc.name == "steady" && !empty(p) {
				b.Fatalf("steady state is not idle: %d creates %d deletes", len(p.CreatePods), len(p.DeletePods))
			}
			if bc.name == "one-rolling" && len(p.CreateReplicaSets) != 1 {
				b.Fatalf("rolling: %d ReplicaSets created", len(p.CreateReplicaSets))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				Compute(bc.in, names)
			}
		})
	}
}

// benchInput builds a converged world directly (faster than stepping):
// each Deployment has one ReplicaSet with all pods ready on 100 nodes.
func benchInput(deployments, podsEach int) Input {
	in := Input{Now: t0.Add(time.Hour), PreviousStatus: map[string]appsv1.DeploymentStatus{}}
	names := &seqNames{}
	for i := 0; i < deployments; i++ {
		d := deployment(fmt.Sprintf("app-%04d", i), int32(podsEach), "img:v1")
		in.Deployments = append(in.Deployments, d)
		w := newWorld(nil, d)
		w.names = names
		p := Compute(Input{Now: t0, Deployments: []*appsv1.Deployment{d}}, names)
		rs := p.CreateReplicaSets[0]
		in.ReplicaSets = append(in.ReplicaSets, rs)
		for j, pod := range p.CreatePods {
			pod.Spec.NodeName = fmt.Sprintf("node-%d", (i*podsEach+j)%100)
			pod.Status.Phase = corev1.PodRunning
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)}}
			in.LivePods = append(in.LivePods, pod)
		}
		// The status the previous pass would have recorded.
		pods := make(map[string]*corev1.Pod)
		for _, pod := range p.CreatePods {
			pods[key(pod.Namespace, pod.Name)] = pod
		}
		st := Compute(Input{Now: t0.Add(time.Hour), Deployments: []*appsv1.Deployment{d}, ReplicaSets: []*appsv1.ReplicaSet{rs}, LivePods: p.CreatePods}, names)
		in.PreviousStatus[key(d.Namespace, d.Name)] = st.Deployments[0].Status
	}
	return in
}
