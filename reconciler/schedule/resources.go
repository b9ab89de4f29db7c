package schedule

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Requests assumed for a container that sets none, when scoring only
// (pkg/scheduler/util/pod_resources.go): without them, pods that request
// nothing would all pile onto one node.
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 << 20 // 200 MiB
)

// defaultMaxPods is the kubelet's default --max-pods, used when a node's
// Allocatable has no "pods" entry.
const defaultMaxPods = 110

// resources is an amount of each schedulable resource: CPU in millicores,
// everything else in its base unit (bytes, devices).
type resources struct {
	milliCPU, memory, ephemeralStorage int64
	// scalar holds every other resource (extended resources, hugepages);
	// nil when there is none.
	scalar map[corev1.ResourceName]int64
}

func (r *resources) addQuantity(name corev1.ResourceName, v int64) {
	switch name {
	case corev1.ResourceCPU:
		r.milliCPU += v
	case corev1.ResourceMemory:
		r.memory += v
	case corev1.ResourceEphemeralStorage:
		r.ephemeralStorage += v
	case corev1.ResourcePods:
		// A count of pods, not something a container requests.
	default:
		if r.scalar == nil {
			r.scalar = map[corev1.ResourceName]int64{}
		}
		r.scalar[name] += v
	}
}

func (r *resources) add(o *resources) {
	r.milliCPU += o.milliCPU
	r.memory += o.memory
	r.ephemeralStorage += o.ephemeralStorage
	for name, v := range o.scalar {
		r.addQuantity(name, v)
	}
}

// setMax raises every amount of r to at least that of o.
func (r *resources) setMax(o *resources) {
	r.milliCPU = max(r.milliCPU, o.milliCPU)
	r.memory = max(r.memory, o.memory)
	r.ephemeralStorage = max(r.ephemeralStorage, o.ephemeralStorage)
	for name, v := range o.scalar {
		if v > r.scalar[name] {
			r.addQuantity(name, v-r.scalar[name])
		}
	}
}

// value converts a quantity to the unit resources keeps it in.
func value(name corev1.ResourceName, q *resource.Quantity) int64 {
	if name == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// allocatable reads a node's ResourceList, and its pod cap.
func allocatable(list corev1.ResourceList) (r resources, maxPods int64) {
	maxPods = defaultMaxPods
	for name, q := range list {
		if name == corev1.ResourcePods {
			maxPods = q.Value()
			continue
		}
		r.addQuantity(name, value(name, &q))
	}
	return r, maxPods
}

// containerRequests is what one container requests. The API server defaults
// a missing request to the limit, per resource, so a limit stands in for an
// absent request here too.
func containerRequests(c *corev1.Container) resources {
	var r resources
	for name, q := range c.Resources.Requests {
		r.addQuantity(name, value(name, &q))
	}
	for name, q := range c.Resources.Limits {
		if _, set := c.Resources.Requests[name]; !set {
			r.addQuantity(name, value(name, &q))
		}
	}
	return r
}

// nonZero is the CPU and memory a container counts for when scoring: its
// request, or the defaults when it sets none (an explicit zero stays zero).
func nonZero(c *corev1.Container, r *resources) resources {
	out := resources{milliCPU: r.milliCPU, memory: r.memory}
	if !hasRequest(c, corev1.ResourceCPU) {
		out.milliCPU = defaultMilliCPURequest
	}
	if !hasRequest(c, corev1.ResourceMemory) {
		out.memory = defaultMemoryRequest
	}
	return out
}

func hasRequest(c *corev1.Container, name corev1.ResourceName) bool {
	if _, ok := c.Resources.Requests[name]; ok {
		return true
	}
	_, ok := c.Resources.Limits[name]
	return ok
}

// podRequests is what a pod requests, as kube-scheduler computes it
// (k8s.io/component-helpers resource.PodRequests): the sum over its
// containers, raised to what any init container needs while it runs. A
// sidecar (an init container with restartPolicy Always) keeps running, so
// it adds to the containers and to every init container after it. The
// second result is the same with nonZero per container, for scoring.
//
// Pod overhead and pod-level resources are not counted: berth does not
// implement them (the manifest layer warns about both).
func podRequests(spec *corev1.PodSpec) (req, score resources) {
	for i := range spec.Containers {
		c := &spec.Containers[i]
		r := containerRequests(c)
		nz := nonZero(c, &r)
		req.add(&r)
		score.add(&nz)
	}
	var sidecars, sidecarsNZ, initMax, initMaxNZ resources
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		r := containerRequests(c)
		nz := nonZero(c, &r)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			req.add(&r)
			score.add(&nz)
			sidecars.add(&r)
			sidecarsNZ.add(&nz)
			r, nz = sidecars, sidecarsNZ
		} else {
			r.add(&sidecars)
			nz.add(&sidecarsNZ)
		}
		initMax.setMax(&r)
		initMaxNZ.setMax(&nz)
	}
	req.setMax(&initMax)
	score.setMax(&initMaxNZ)
	return req, score
}

// Requests is what a pod asks of its node in CPU (millicores) and memory
// (bytes), counted as the scheduler counts them, for showing a node's
// allocated resources.
func Requests(spec *corev1.PodSpec) (milliCPU, memory int64) {
	req, _ := podRequests(spec)
	return req.milliCPU, req.memory
}
