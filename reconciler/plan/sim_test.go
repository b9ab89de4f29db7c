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
// maxSurge; and that the rollout completes (or, for a template that never
// gets ready, that it is rolled back automatically under the same limits).
func TestRollingUpdateInvariants(t *testing.T) {
	surges := []string{"0", "1", "2", "25%", "50%", "100%"}
	unavails := []string{"0", "1", "3", "25%", "50%", "100%"}
	variants := []simVariant{
		{name: "plain", maxReadyIn: 1},
		{name: "slow pods", maxReadyIn: 4},
		{name: "minReadySeconds", minReady: 2, maxReadyIn: 3},
		{name: "graceful deletion", graceful: true, maxReadyIn: 3},
		{name: "second change mid-rollout", retarget: true, maxReadyIn: 3},
		{name: "broken template rolled back", broken: true, maxReadyIn: 2},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range variants {
		for _, replicas := range []int32{0, 1, 2, 3, 4, 5, 7, 10, 13, 20} {
			if v.broken && replicas == 0 {
				continue // nothing can fail with no pods
			}
			for _, s := range surges {
				for _, u := range unavails {
					if s == "0" && u == "0" {
						continue // rejected by validation
					}
					name := fmt.Sprintf("%s/r%d/s%s/u%s", v.name, replicas, s, u)
					simulateRollout(t, name, rng, replicas, s, u, v)
				}
			}
		}
	}
}

// simVariant shapes one family of simulated rollouts.
type simVariant struct {
	name       string
	minReady   int32
	graceful   bool // deleted pods linger one pass
	retarget   bool // change the template again mid-rollout
	broken     bool // the new template never gets ready: expect an automatic rollback
	maxReadyIn int  // pods become ready 1..maxReadyIn passes after creation
}

func simulateRollout(t *testing.T, name string, rng *rand.Rand, replicas int32, surge, unavail string, v simVariant) {
	t.Helper()
	dl := int32(600)
	if v.broken {
		dl = 5 // fail fast: the broken template is condemned after 5 passes without progress
	}
	d := deployment("web", replicas, "img:v1", rolling(surge, unavail), minReady(v.minReady), deadline(dl))
	w := newWorld(t, d)
	w.autoReady = true
	w.autoRollback = true
	for i := 0; i < 20; i++ { // converge, letting minReadySeconds pass
		w.step()
		w.now = w.now.Add(time.Duration(v.minReady+1) * time.Second)
	}
	w.autoReady = false
	w.graceful = v.graceful
	w.deployments = []*appsv1.Deployment{withImage(d, "img:v2")}
	final, finalRevision := "img:v2", int64(2)
	switch {
	case v.broken:
		final, finalRevision = "img:v1", 3
	case v.retarget:
		finalRevision = 3
	}
	maxS, maxU := maxSurge(d), maxUnavailable(d)

	readyAt := map[string]int{} // pod key -> pass at which it turns ready
	for pass := 0; pass < 300; pass++ {
		if v.retarget && pass == 3 {
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
			if v.broken && pod.Spec.Containers[0].Image == "img:v2" {
				continue // never ready
			}
			readyAt[key(pod.Namespace, pod.Name)] = pass + 1 + rng.IntN(v.maxReadyIn)
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
			if isAvailable(pod, v.minReady, w.now) {
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
		done := onFinal == replicas && total == replicas && ds.Revision == finalRevision
		if v.broken {
			done = done && ds.RolledBackFrom != "" && ds.Status.AvailableReplicas == replicas
		} else {
			done = done && ds.Health == HealthHealthy
		}
		if done && (!v.retarget || pass >= 3) {
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
