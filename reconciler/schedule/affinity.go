package schedule

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeAffinity is where a pod may run: every label of its nodeSelector, and
// one of the terms of its required node affinity. It is compiled once per
// pending pod and matched against every node.
type nodeAffinity struct {
	selector map[string]string
	// required is set when the pod has requiredDuringScheduling... node
	// affinity; then at least one of terms must match.
	required bool
	terms    []nodeSelectorTerm
}

// nodeSelectorTerm is one term: all its expressions and fields must match.
type nodeSelectorTerm struct {
	labels, fields []requirement
	// never is set for a term that can match no node: an empty term, or one
	// kube-scheduler fails to parse (unknown operator, a Gt/Lt value that is
	// not an integer, a field other than metadata.name). The other terms are
	// still tried, as upstream (nodeaffinity.LazyErrorNodeSelector).
	never bool
}

type requirement struct {
	key    string
	op     corev1.NodeSelectorOperator
	values []string
	// bound is the integer of a Gt or Lt requirement.
	bound int64
}

func compileAffinity(spec *corev1.PodSpec) nodeAffinity {
	a := nodeAffinity{selector: spec.NodeSelector}
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return a
	}
	a.required = true
	for _, t := range spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		a.terms = append(a.terms, compileTerm(t))
	}
	return a
}

func compileTerm(t corev1.NodeSelectorTerm) nodeSelectorTerm {
	out := nodeSelectorTerm{never: len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0}
	for _, e := range t.MatchExpressions {
		r, ok := compileRequirement(e)
		out.never = out.never || !ok
		out.labels = append(out.labels, r)
	}
	for _, e := range t.MatchFields {
		// Nodes have one selectable field, and a field requirement takes
		// exactly one value (nodeSelectorRequirementsAsFieldSelector).
		ok := e.Key == metav1.ObjectNameField && len(e.Values) == 1 &&
			(e.Operator == corev1.NodeSelectorOpIn || e.Operator == corev1.NodeSelectorOpNotIn)
		out.never = out.never || !ok
		out.fields = append(out.fields, requirement{key: e.Key, op: e.Operator, values: e.Values})
	}
	return out
}

// compileRequirement checks a label requirement as labels.NewRequirement
// does for the operators and value counts, and parses Gt/Lt bounds.
func compileRequirement(e corev1.NodeSelectorRequirement) (requirement, bool) {
	r := requirement{key: e.Key, op: e.Operator, values: e.Values}
	switch e.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		return r, len(e.Values) > 0
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		return r, len(e.Values) == 0
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if len(e.Values) != 1 {
			return r, false
		}
		b, err := strconv.ParseInt(e.Values[0], 10, 64)
		r.bound = b
		return r, err == nil
	}
	return r, false
}

// matches reports whether a node with these name and labels may run the pod.
func (a *nodeAffinity) matches(name string, labels map[string]string) bool {
	for k, v := range a.selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	if !a.required {
		return true
	}
	for i := range a.terms {
		if a.terms[i].matches(name, labels) {
			return true
		}
	}
	return false
}

func (t *nodeSelectorTerm) matches(name string, labels map[string]string) bool {
	if t.never {
		return false
	}
	for i := range t.labels {
		r := &t.labels[i]
		v, ok := labels[r.key]
		if !r.matches(v, ok) {
			return false
		}
	}
	for i := range t.fields {
		// compileTerm made sure the field is metadata.name.
		if !t.fields[i].matches(name, true) {
			return false
		}
	}
	return true
}

// matches applies the requirement to a value (present tells whether the
// key exists), with labels.Requirement.Matches semantics: NotIn and
// DoesNotExist match an absent key; Gt and Lt need an integer value.
func (r *requirement) matches(v string, present bool) bool {
	switch r.op {
	case corev1.NodeSelectorOpIn:
		return present && slices.Contains(r.values, v)
	case corev1.NodeSelectorOpNotIn:
		return !present || !slices.Contains(r.values, v)
	case corev1.NodeSelectorOpExists:
		return present
	case corev1.NodeSelectorOpDoesNotExist:
		return !present
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !present {
			return false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		if r.op == corev1.NodeSelectorOpGt {
			return n > r.bound
		}
		return n < r.bound
	}
	return false
}
