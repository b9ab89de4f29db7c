package plan

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"

	"berth.dev/berth/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/rand"
)

// PodTemplateHash is the pod-template-hash of a template, computed the way
// controller.ComputeHash does: FNV-32a over the object, then collisionCount
// (when set) as 8 little-endian bytes, then the decimal sum through
// rand.SafeEncodeString. The object encoding is JSON (stable: struct fields
// in order, map keys sorted) where upstream uses dump.ForHash, so the values
// differ from a cluster's; only stability matters here.
func PodTemplateHash(t *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	b, err := json.Marshal(t)
	if err != nil {
		// A PodTemplateSpec always marshals; fail loudly if that changes.
		panic(fmt.Sprintf("plan: encode pod template: %v", err))
	}
	h.Write(b)
	if collisionCount != nil {
		buf := make([]byte, 8)
		binary.LittleEndian.PutUint32(buf, uint32(*collisionCount))
		h.Write(buf)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// TemplateHash identifies a pod template for automatic rollback: the
// PodTemplateHash of the template without its pod-template-hash label and
// without collisionCount, so a Deployment's template and the template of
// the ReplicaSet made from it hash alike.
func TemplateHash(t *corev1.PodTemplateSpec) string {
	if _, ok := t.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ok {
		c := *t
		c.Labels = withoutLabel(t.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
		t = &c
	}
	return PodTemplateHash(t, nil)
}

// withoutLabel returns m without key k, copying only when k is present.
func withoutLabel(m map[string]string, k string) map[string]string {
	if _, ok := m[k]; !ok {
		return m
	}
	out := make(map[string]string, len(m)-1)
	for mk, v := range m {
		if mk != k {
			out[mk] = v
		}
	}
	return out
}

// equalIgnoreHash is deploymentutil.EqualIgnoreHash: templates are
// semantically equal once the pod-template-hash label is dropped from both.
// A strict reflect.DeepEqual answers the common case (an unchanged
// template) several times faster; only a difference is confirmed with the
// semantic comparison, which also treats "1000m" and "1" CPU as equal.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	if !labelsEqualIgnoring(a.Labels, b.Labels, appsv1.DefaultDeploymentUniqueLabelKey) {
		return false
	}
	ac, bc := *a, *b // shallow copies: only Labels is replaced
	ac.Labels, bc.Labels = nil, nil
	return reflect.DeepEqual(ac, bc) || equality.Semantic.DeepEqual(ac, bc)
}

// labelsEqualIgnoring compares two label maps as if key skip were absent
// from both, without allocating.
func labelsEqualIgnoring(a, b map[string]string, skip string) bool {
	n := 0
	for k, v := range a {
		if k == skip {
			continue
		}
		n++
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	m := len(b)
	if _, ok := b[skip]; ok {
		m--
	}
	return n == m
}

// barePodSpecHash identifies a bare Pod manifest's content: labels,
// annotations (berth's own excluded) and spec. A live pod whose
// api.LabelSpecHash annotation differs was made from another manifest.
func barePodSpecHash(p *corev1.Pod) string {
	t := corev1.PodTemplateSpec{Spec: p.Spec}
	t.Labels = p.Labels
	if len(p.Annotations) > 0 {
		t.Annotations = make(map[string]string, len(p.Annotations))
		for k, v := range p.Annotations {
			if k != api.LabelSpecHash {
				t.Annotations[k] = v
			}
		}
	}
	return PodTemplateHash(&t, nil)
}
