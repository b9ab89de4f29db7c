package plan

import (
	"sort"

	"berth.dev/berth/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// syncBarePods keeps one live pod per bare Pod manifest. Pods are
// immutable, so a changed manifest (a different spec-hash annotation) means
// delete now and create once the old pod has left LivePods. A Failed or
// Succeeded bare pod stays as it is, as in Kubernetes.
func (p *planner) syncBarePods() {
	desired := make(map[string]bool, len(p.in.Pods))
	manifests := append([]*corev1.Pod(nil), p.in.Pods...)
	sortPods(manifests)
	for _, m := range manifests {
		k := key(m.Namespace, m.Name)
		desired[k] = true
		want := barePodSpecHash(m)
		var current *corev1.Pod
		leaving := false
		for _, live := range p.idx.barePods[k] {
			switch {
			case isTerminating(live):
				leaving = true
			case current == nil && live.Annotations[api.LabelSpecHash] == want:
				current = live
			default: // stale manifest, or a duplicate
				p.plan.DeletePods = append(p.plan.DeletePods, live)
				leaving = true
			}
		}
		if current == nil && !leaving {
			p.plan.CreatePods = append(p.plan.CreatePods, p.podFromManifest(m, want))
		}
	}
	keys := make([]string, 0, len(p.idx.barePods))
	for k := range p.idx.barePods {
		if !desired[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.deleteAll(p.idx.barePods[k])
	}
}

// podFromManifest is a bare Pod as the API server would store it, with
// berth's owner label and the manifest's spec-hash.
func (p *planner) podFromManifest(m *corev1.Pod, specHash string) *corev1.Pod {
	pod := m.DeepCopy()
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	pod.UID = types.UID(p.names.UID())
	pod.CreationTimestamp = metav1.NewTime(p.in.Now)
	pod.Labels = withLabel(pod.Labels, api.LabelOwner, "")
	pod.Annotations = withLabel(pod.Annotations, api.LabelSpecHash, specHash)
	pod.Status = corev1.PodStatus{}
	return pod
}
