package schedule

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podInfo is what the scheduler needs of a pod, worked out once per pod.
type podInfo struct {
	pod *corev1.Pod
	// requests decide whether the pod fits; scoreRequests (with defaults
	// for containers that request nothing) decide where it fits best.
	requests, scoreRequests resources
	ports                   []hostPort
	// group is the pod's spreading group; "" for a pod in none.
	group string
	// terminating pods keep their resources but no longer count for
	// spreading.
	terminating bool
	// affinity is compiled for pending pods only.
	affinity nodeAffinity
}

func newBoundPod(pod *corev1.Pod) *podInfo {
	p := &podInfo{
		pod:         pod,
		ports:       hostPorts(&pod.Spec),
		group:       spreadGroup(pod),
		terminating: pod.DeletionTimestamp != nil,
	}
	p.requests, p.scoreRequests = podRequests(&pod.Spec)
	return p
}

func newPendingPod(pod *corev1.Pod) *podInfo {
	p := newBoundPod(pod)
	p.affinity = compileAffinity(&pod.Spec)
	return p
}

// wildcardIP is the host IP a port binds when none is given.
const wildcardIP = "0.0.0.0"

// hostPort is one (hostIP, protocol, hostPort) a pod takes on its node.
type hostPort struct {
	ip       string
	protocol corev1.Protocol
	port     int32
}

// protocolPort is a hostPort on any IP.
type protocolPort struct {
	protocol corev1.Protocol
	port     int32
}

// hostPorts lists the host ports a pod's containers take, with the API
// server's defaults (TCP) and kube-scheduler's (0.0.0.0) filled in.
func hostPorts(spec *corev1.PodSpec) []hostPort {
	var out []hostPort
	for i := range spec.Containers {
		for _, cp := range spec.Containers[i].Ports {
			if cp.HostPort <= 0 {
				continue
			}
			hp := hostPort{ip: cp.HostIP, protocol: cp.Protocol, port: cp.HostPort}
			if hp.ip == "" {
				hp.ip = wildcardIP
			}
			if hp.protocol == "" {
				hp.protocol = corev1.ProtocolTCP
			}
			out = append(out, hp)
		}
	}
	return out
}

// spreadGroup names the set of pods a pod is spread against: the pods of
// its owner. For a ReplicaSet created by a Deployment the owner's name ends
// in "-<pod-template-hash>"; stripping it makes every revision of one
// Deployment one group, so that a rolling update spreads the new pods away
// from the old ones too. (kube-scheduler's default spreading selects pods
// by their owning ReplicaSet's selector, which includes the hash: one group
// per revision.) Bare pods belong to no group.
func spreadGroup(pod *corev1.Pod) string {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		if len(pod.OwnerReferences) == 0 {
			return ""
		}
		ref = &pod.OwnerReferences[0]
	}
	name := ref.Name
	if hash := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ref.Kind == "ReplicaSet" && hash != "" {
		name = strings.TrimSuffix(name, "-"+hash)
	}
	return pod.Namespace + "/" + ref.Kind + "/" + name
}
