package manifest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateObject checks one defaulted object on its own. Rules that need
// other objects of the revision are in crossValidate.
func validateObject(obj any, f *findings) {
	meta := field.NewPath("metadata")
	switch o := obj.(type) {
	case *corev1.Namespace:
		f.add(apivalidation.ValidateObjectMeta(&o.ObjectMeta, false, apivalidation.ValidateNamespaceName, meta)...)
	case *corev1.Pod:
		f.add(apivalidation.ValidateObjectMeta(&o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, meta)...)
		validatePodSpec(&o.Spec, podContext{}, field.NewPath("spec"), f)
	case *appsv1.Deployment:
		f.add(apivalidation.ValidateObjectMeta(&o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, meta)...)
		validateDeploymentSpec(&o.Spec, field.NewPath("spec"), f)
	case *corev1.ConfigMap:
		f.add(apivalidation.ValidateObjectMeta(&o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, meta)...)
		validateConfigMap(o, f)
	case *corev1.Secret:
		f.add(apivalidation.ValidateObjectMeta(&o.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, meta)...)
		validateSecret(o, f)
		mergeStringData(o)
	case *corev1.Service:
		f.add(apivalidation.ValidateObjectMeta(&o.ObjectMeta, true, apivalidation.NameIsDNS1035Label, meta)...)
		validateServiceSpec(&o.Spec, field.NewPath("spec"), f)
	}
}

func validateDeploymentSpec(s *appsv1.DeploymentSpec, p *field.Path, f *findings) {
	f.add(apivalidation.ValidateNonnegativeField(int64(*s.Replicas), p.Child("replicas"))...)

	sp := p.Child("selector")
	if s.Selector == nil {
		f.add(field.Required(sp, ""))
	} else {
		selErrs := metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, sp)
		f.add(selErrs...)
		switch sel, err := metav1.LabelSelectorAsSelector(s.Selector); {
		case len(selErrs) > 0:
			// Already reported; matching an invalid selector would repeat it.
		case len(s.Selector.MatchLabels)+len(s.Selector.MatchExpressions) == 0:
			f.add(field.Invalid(sp, s.Selector, "empty selector is invalid for deployment"))
		case err != nil:
			f.add(field.Invalid(sp, s.Selector, err.Error()))
		case !sel.Matches(labels.Set(s.Template.Labels)):
			f.add(field.Invalid(p.Child("template", "metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
		}
	}

	tp := p.Child("template")
	f.add(metav1validation.ValidateLabels(s.Template.Labels, tp.Child("metadata", "labels"))...)
	f.add(apivalidation.ValidateAnnotations(s.Template.Annotations, tp.Child("metadata", "annotations"))...)
	validatePodSpec(&s.Template.Spec, podContext{template: true}, tp.Child("spec"), f)

	validateStrategy(&s.Strategy, p.Child("strategy"), f)
	f.add(apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), p.Child("minReadySeconds"))...)
	f.add(apivalidation.ValidateNonnegativeField(int64(*s.RevisionHistoryLimit), p.Child("revisionHistoryLimit"))...)
	pdp := p.Child("progressDeadlineSeconds")
	f.add(apivalidation.ValidateNonnegativeField(int64(*s.ProgressDeadlineSeconds), pdp)...)
	if *s.ProgressDeadlineSeconds <= s.MinReadySeconds {
		f.add(field.Invalid(pdp, *s.ProgressDeadlineSeconds, "must be greater than minReadySeconds"))
	}
}

var strategyTypes = []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}

func validateStrategy(s *appsv1.DeploymentStrategy, p *field.Path, f *findings) {
	switch s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			f.add(field.Forbidden(p.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		ru := s.RollingUpdate
		rp := p.Child("rollingUpdate")
		surge := validateIntOrPercent(ru.MaxSurge, rp.Child("maxSurge"), f)
		unavailable := validateIntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"), f)
		if ru.MaxUnavailable != nil && ru.MaxUnavailable.Type == intstr.String && unavailable > 100 {
			f.add(field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "must not be greater than 100%"))
		}
		if surge == 0 && unavailable == 0 {
			f.add(field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
	default:
		f.add(field.NotSupported(p.Child("type"), s.Type, strategyTypes))
	}
}

// validateIntOrPercent checks a count or a percentage ("25%") and returns its
// number, or -1 when it is invalid.
func validateIntOrPercent(v *intstr.IntOrString, p *field.Path, f *findings) int {
	if v == nil {
		return 0
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			f.add(field.Invalid(p, v.IntVal, "must be greater than or equal to 0"))
			return -1
		}
		return int(v.IntVal)
	}
	if len(validation.IsValidPercent(v.StrVal)) > 0 {
		f.add(field.Invalid(p, v.StrVal, "must be an integer or percentage (e.g '5%')"))
		return -1
	}
	var n int
	if _, err := fmt.Sscanf(strings.TrimSuffix(v.StrVal, "%"), "%d", &n); err != nil {
		return -1
	}
	return n
}

// Kubernetes' size limit for a ConfigMap's or Secret's data (etcd's value
// limit).
const maxDataSize = 1 << 20

func validateConfigMap(cm *corev1.ConfigMap, f *findings) {
	size := 0
	for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
		size += len(k) + len(cm.Data[k])
		validateDataKey(k, field.NewPath("data").Key(k), f)
	}
	for _, k := range slices.Sorted(maps.Keys(cm.BinaryData)) {
		size += len(k) + len(cm.BinaryData[k])
		kp := field.NewPath("binaryData").Key(k)
		validateDataKey(k, kp, f)
		if _, dup := cm.Data[k]; dup {
			f.add(field.Invalid(kp, k, "duplicate of key present in data"))
		}
	}
	if size > maxDataSize {
		f.add(field.TooLong(field.NewPath(""), "", maxDataSize))
	}
}

func validateDataKey(k string, p *field.Path, f *findings) {
	for _, msg := range validation.IsConfigMapKey(k) {
		f.add(field.Invalid(p, k, msg))
	}
}

// secretKeys lists the keys each well-known Secret type requires.
var secretKeys = map[corev1.SecretType][]string{
	corev1.SecretTypeDockercfg:        {corev1.DockerConfigKey},
	corev1.SecretTypeDockerConfigJson: {corev1.DockerConfigJsonKey},
	corev1.SecretTypeSSHAuth:          {corev1.SSHAuthPrivateKey},
	corev1.SecretTypeTLS:              {corev1.TLSCertKey, corev1.TLSPrivateKeyKey},
}

// validateSecret checks keys and sizes, never values: messages about a
// Secret must not quote its data.
func validateSecret(s *corev1.Secret, f *findings) {
	size := 0
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		size += len(k) + len(s.Data[k])
		validateDataKey(k, field.NewPath("data").Key(k), f)
	}
	for _, k := range slices.Sorted(maps.Keys(s.StringData)) {
		size += len(k) + len(s.StringData[k])
		validateDataKey(k, field.NewPath("stringData").Key(k), f)
	}
	if size > maxDataSize {
		f.add(field.TooLong(field.NewPath("data"), "", maxDataSize))
	}
	tp := field.NewPath("type")
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		f.add(unsupported(tp, s.Type, "berth has no API server to issue service account tokens"))
	case corev1.SecretTypeBootstrapToken:
		f.add(unsupported(tp, s.Type, "berth has no bootstrap tokens"))
	}
	for _, k := range secretKeys[s.Type] {
		_, inData := s.Data[k]
		_, inString := s.StringData[k]
		if !inData && !inString {
			f.add(field.Required(field.NewPath("data").Key(k), fmt.Sprintf("a Secret of type %s needs it", s.Type)))
		}
	}
}

// mergeStringData folds stringData into data, as the API server does on
// write: a key in both takes its stringData value.
func mergeStringData(s *corev1.Secret) {
	if len(s.StringData) == 0 {
		return
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}

// The node port range berth allocates from, the same as Kubernetes' default.
const (
	maxClientIPTimeout = 86400 // one day, Kubernetes' limit

	minNodePort = 30000
	maxNodePort = 32767
)

func validateServiceSpec(s *corev1.ServiceSpec, p *field.Path, f *findings) {
	tp := p.Child("type")
	switch s.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
	case corev1.ServiceTypeLoadBalancer:
		f.add(unsupported(tp, s.Type, "berth has no load balancers; use NodePort"))
	case corev1.ServiceTypeExternalName:
		f.add(unsupported(tp, s.Type, "ExternalName Services need cluster DNS, which berth does not have"))
	default:
		f.add(field.NotSupported(tp, s.Type, []string{string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeNodePort)}))
	}

	cp := p.Child("clusterIP")
	switch s.ClusterIP {
	case "":
	case corev1.ClusterIPNone:
		f.add(unsupported(cp, s.ClusterIP, "headless Services publish pod addresses through cluster DNS, which berth does not have"))
	default:
		f.add(validation.IsValidIP(cp, s.ClusterIP)...)
	}
	if len(s.ClusterIPs) > 0 {
		ips := p.Child("clusterIPs")
		if s.ClusterIP != "" && s.ClusterIPs[0] != s.ClusterIP {
			f.add(field.Invalid(ips.Index(0), s.ClusterIPs[0], "must match `clusterIP`"))
		}
		if len(s.ClusterIPs) > 1 {
			f.add(unsupported(ips, s.ClusterIPs, "Services are IPv4 only, with one cluster IP"))
		}
	}

	validateServicePorts(s, p.Child("ports"), f)

	ap := p.Child("sessionAffinity")
	switch s.SessionAffinity {
	case corev1.ServiceAffinityNone:
		if s.SessionAffinityConfig != nil {
			f.add(field.Forbidden(p.Child("sessionAffinityConfig"), "must not be set when session affinity is None"))
		}
	case corev1.ServiceAffinityClientIP:
		t := *s.SessionAffinityConfig.ClientIP.TimeoutSeconds
		if t <= 0 || t > maxClientIPTimeout {
			f.add(field.Invalid(p.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t,
				fmt.Sprintf("must be greater than 0 and less than or equal to %d", maxClientIPTimeout)))
		}
	default:
		f.add(field.NotSupported(ap, s.SessionAffinity, []string{string(corev1.ServiceAffinityNone), string(corev1.ServiceAffinityClientIP)}))
	}

	f.add(metav1validation.ValidateLabels(s.Selector, p.Child("selector"))...)
	if len(s.Selector) == 0 {
		f.warn(p.Child("selector"), "the Service has no selector: berth has no Endpoints objects, so it will have no endpoints")
	}
	if pol := s.ExternalTrafficPolicy; pol != "" && pol != corev1.ServiceExternalTrafficPolicyCluster && pol != corev1.ServiceExternalTrafficPolicyLocal {
		f.add(field.NotSupported(p.Child("externalTrafficPolicy"), pol, []string{"Cluster", "Local"}))
	}
	if pol := s.InternalTrafficPolicy; pol != nil && *pol != corev1.ServiceInternalTrafficPolicyCluster && *pol != corev1.ServiceInternalTrafficPolicyLocal {
		f.add(field.NotSupported(p.Child("internalTrafficPolicy"), *pol, []string{"Cluster", "Local"}))
	}
}

func validateServicePorts(s *corev1.ServiceSpec, p *field.Path, f *findings) {
	if len(s.Ports) == 0 && s.ClusterIP != corev1.ClusterIPNone && s.Type != corev1.ServiceTypeExternalName {
		f.add(field.Required(p, ""))
	}
	names := sets.New[string]()
	portProto := sets.New[string]()
	nodePorts := sets.New[string]()
	for i, port := range s.Ports {
		pp := p.Index(i)
		if len(s.Ports) > 1 && port.Name == "" {
			f.add(field.Required(pp.Child("name"), "a Service with more than one port must name each"))
		}
		if port.Name != "" {
			for _, msg := range validation.IsDNS1123Label(port.Name) {
				f.add(field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if names.Has(port.Name) {
				f.add(field.Duplicate(pp.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(port.Port)) {
			f.add(field.Invalid(pp.Child("port"), port.Port, msg))
		}
		validateProtocol(port.Protocol, pp.Child("protocol"), f)
		key := fmt.Sprintf("%d/%s", port.Port, port.Protocol)
		if portProto.Has(key) {
			f.add(field.Duplicate(pp, key))
		}
		portProto.Insert(key)

		tp := pp.Child("targetPort")
		if port.TargetPort.Type == intstr.Int {
			for _, msg := range validation.IsValidPortNum(port.TargetPort.IntValue()) {
				f.add(field.Invalid(tp, port.TargetPort.IntVal, msg))
			}
		} else {
			for _, msg := range validation.IsValidPortName(port.TargetPort.StrVal) {
				f.add(field.Invalid(tp, port.TargetPort.StrVal, msg))
			}
		}

		np := pp.Child("nodePort")
		switch {
		case port.NodePort == 0:
		case s.Type != corev1.ServiceTypeNodePort:
			f.add(field.Forbidden(np, fmt.Sprintf("may not be used when `type` is '%s'", s.Type)))
		case port.NodePort < minNodePort || port.NodePort > maxNodePort:
			f.add(field.Invalid(np, port.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", minNodePort, maxNodePort)))
		default:
			key := fmt.Sprintf("%d/%s", port.NodePort, port.Protocol)
			if nodePorts.Has(key) {
				f.add(field.Duplicate(np, key))
			}
			nodePorts.Insert(key)
		}
	}
}
