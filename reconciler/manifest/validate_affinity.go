package manifest

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	nodeSelectorOperators = []string{
		string(corev1.NodeSelectorOpIn), string(corev1.NodeSelectorOpNotIn),
		string(corev1.NodeSelectorOpExists), string(corev1.NodeSelectorOpDoesNotExist),
		string(corev1.NodeSelectorOpGt), string(corev1.NodeSelectorOpLt),
	}
	nodeFieldOperators = []string{string(corev1.NodeSelectorOpIn), string(corev1.NodeSelectorOpNotIn)}
)

// validateAffinity checks the part of a pod's affinity berth acts on:
// required node affinity, the way the API server checks it
// (ValidateNodeSelector in pkg/apis/core/validation). It also warns about
// what Kubernetes accepts but can never match, since such a pod would
// never be scheduled.
func validateAffinity(a *corev1.Affinity, p *field.Path, f *findings) {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return
	}
	tp := p.Child("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		f.add(field.Required(tp, "must have at least one node selector term"))
		return
	}
	for i, t := range terms {
		ip := tp.Index(i)
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			f.warn(ip, "an empty term matches no node")
		}
		for j, r := range t.MatchExpressions {
			validateNodeSelectorRequirement(r, ip.Child("matchExpressions").Index(j), f)
		}
		for j, r := range t.MatchFields {
			validateNodeFieldRequirement(r, ip.Child("matchFields").Index(j), f)
		}
	}
}

// validateNodeSelectorRequirement checks one label requirement: the number
// of values its operator takes, the key, and every value.
func validateNodeSelectorRequirement(r corev1.NodeSelectorRequirement, p *field.Path, f *findings) {
	vp := p.Child("values")
	switch r.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		if len(r.Values) == 0 {
			f.add(field.Required(vp, "must be specified when `operator` is 'In' or 'NotIn'"))
		}
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		if len(r.Values) > 0 {
			f.add(field.Forbidden(vp, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
		}
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if len(r.Values) != 1 {
			f.add(field.Required(vp, "must be specified single value when `operator` is 'Lt' or 'Gt'"))
		} else if _, err := strconv.ParseInt(r.Values[0], 10, 64); err != nil {
			f.warn(vp.Index(0), fmt.Sprintf("%q is not an integer, so this term matches no node", r.Values[0]))
		}
	default:
		f.add(field.NotSupported(p.Child("operator"), r.Operator, nodeSelectorOperators))
	}
	f.add(metav1validation.ValidateLabelName(r.Key, p.Child("key"))...)
	for i, v := range r.Values {
		for _, msg := range validation.IsValidLabelValue(v) {
			f.add(field.Invalid(vp.Index(i), v, msg))
		}
	}
}

// validateNodeFieldRequirement checks one matchFields requirement: nodes
// have one selectable field, metadata.name, compared with exactly one name.
func validateNodeFieldRequirement(r corev1.NodeSelectorRequirement, p *field.Path, f *findings) {
	vp := p.Child("values")
	switch r.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		if len(r.Values) != 1 {
			f.add(field.Required(vp, "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
		}
	default:
		f.add(field.NotSupported(p.Child("operator"), r.Operator, nodeFieldOperators))
	}
	if r.Key != metav1.ObjectNameField {
		f.add(field.NotSupported(p.Child("key"), r.Key, []string{metav1.ObjectNameField}))
		return
	}
	for i, v := range r.Values {
		for _, msg := range apivalidation.NameIsDNSSubdomain(v, false) {
			f.add(field.Invalid(vp.Index(i), v, msg))
		}
	}
}
