package schedule

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// node builds a Ready node with the given cpu and memory (empty: absent)
// and the hostname label, then applies opts.
func node(name, cpu, memory string, opts ...func(*Node)) Node {
	n := Node{
		Name:        name,
		Labels:      map[string]string{corev1.LabelHostname: name},
		Allocatable: corev1.ResourceList{},
		Ready:       true,
	}
	if cpu != "" {
		n.Allocatable[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if memory != "" {
		n.Allocatable[corev1.ResourceMemory] = resource.MustParse(memory)
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func cordoned(n *Node) { n.Unschedulable = true }
func notReady(n *Node) { n.Ready = false }

func nodeLabel(k, v string) func(*Node) {
	return func(n *Node) { n.Labels[k] = v }
}

func allocatableOf(name corev1.ResourceName, q string) func(*Node) {
	return func(n *Node) { n.Allocatable[name] = resource.MustParse(q) }
}

// pod builds "default/<name>" with one container "main", then applies opts.
func pod(name string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "img"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func resourceList(cpu, memory string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if memory != "" {
		l[corev1.ResourceMemory] = resource.MustParse(memory)
	}
	return l
}

// requests sets the first container's requests (empty: absent).
func requests(cpu, memory string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Resources.Requests = resourceList(cpu, memory) }
}

// limits sets the first container's limits (empty: absent).
func limits(cpu, memory string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Resources.Limits = resourceList(cpu, memory) }
}

func requestOf(name corev1.ResourceName, q string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		c.Resources.Requests[name] = resource.MustParse(q)
	}
}

// container adds a container requesting cpu and memory.
func container(cpu, memory string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("c%d", len(p.Spec.Containers)), Image: "img",
			Resources: corev1.ResourceRequirements{Requests: resourceList(cpu, memory)},
		})
	}
}

// initContainer adds an init container requesting cpu and memory; sidecar
// makes it restartable (restartPolicy Always).
func initContainer(cpu, memory string, sidecar bool) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := corev1.Container{
			Name: fmt.Sprintf("init%d", len(p.Spec.InitContainers)), Image: "img",
			Resources: corev1.ResourceRequirements{Requests: resourceList(cpu, memory)},
		}
		if sidecar {
			always := corev1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

func onNode(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func phase(ph corev1.PodPhase) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}

func terminating(p *corev1.Pod) {
	t := metav1.Now()
	p.DeletionTimestamp = &t
}

// hostPortOn adds a container port with a host port to the first container.
func hostPortOn(ip string, protocol corev1.Protocol, port int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: 8080, HostPort: port, HostIP: ip, Protocol: protocol})
	}
}

// ofDeployment makes the pod one of Deployment d's, revision hash: owned by
// ReplicaSet d-hash, labelled with the hash, as the planner creates them.
func ofDeployment(d, hash string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		yes := true
		p.Labels = map[string]string{"app": d, "pod-template-hash": hash}
		p.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d + "-" + hash, UID: "uid-rs", Controller: &yes,
		}}
	}
}

func nodeSelector(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

// required sets requiredDuringSchedulingIgnoredDuringExecution node affinity.
func required(terms ...corev1.NodeSelectorTerm) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
}

func term(exprs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: exprs}
}

func expr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

// placement returns where Schedule put the single pending pod, or its
// message prefixed by "unschedulable: ".
func placement(in Input) string {
	r := Schedule(in)
	switch {
	case len(r.Bindings) == 1 && len(r.Unschedulable) == 0:
		return r.Bindings[0].Node
	case len(r.Unschedulable) == 1 && len(r.Bindings) == 0:
		return "unschedulable: " + r.Unschedulable[0].Message
	}
	return fmt.Sprintf("unexpected result %+v", r)
}
