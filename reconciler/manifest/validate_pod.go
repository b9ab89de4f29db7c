package manifest

import (
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podContext is what pod validation needs to know about where the pod spec is.
type podContext struct {
	// template is true for a Deployment's pod template, which must restart
	// its containers always and may not have a deadline.
	template bool
}

var restartPolicies = []string{string(corev1.RestartPolicyAlways), string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}

func validatePodSpec(spec *corev1.PodSpec, ctx podContext, p *field.Path, f *findings) {
	volumes := validateVolumes(spec.Volumes, p.Child("volumes"), f)

	cp := p.Child("containers")
	if len(spec.Containers) == 0 {
		f.add(field.Required(cp, "a pod needs at least one container"))
	}
	names := sets.New[string]()
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if c.Name != "" && names.Has(c.Name) {
			f.add(field.Duplicate(cp.Index(i).Child("name"), c.Name))
		}
		names.Insert(c.Name)
		validateContainer(c, spec, volumes, cp.Index(i), f)
	}
	validateHostPorts(spec.Containers, cp, f)

	rp := p.Child("restartPolicy")
	switch {
	case ctx.template && spec.RestartPolicy != corev1.RestartPolicyAlways:
		f.add(field.NotSupported(rp, spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	case !slices.Contains(restartPolicies, string(spec.RestartPolicy)):
		f.add(field.NotSupported(rp, spec.RestartPolicy, restartPolicies))
	}
	if spec.TerminationGracePeriodSeconds != nil {
		f.add(apivalidation.ValidateNonnegativeField(*spec.TerminationGracePeriodSeconds, p.Child("terminationGracePeriodSeconds"))...)
	}
	if spec.ActiveDeadlineSeconds != nil {
		if ctx.template {
			f.add(field.Forbidden(p.Child("activeDeadlineSeconds"), "activeDeadlineSeconds in a Deployment's pod template is not supported by Kubernetes"))
		} else if *spec.ActiveDeadlineSeconds <= 0 {
			f.add(field.Invalid(p.Child("activeDeadlineSeconds"), *spec.ActiveDeadlineSeconds, "must be greater than 0"))
		}
	}
	dnsPolicies := []string{string(corev1.DNSClusterFirst), string(corev1.DNSClusterFirstWithHostNet), string(corev1.DNSDefault), string(corev1.DNSNone)}
	if !slices.Contains(dnsPolicies, string(spec.DNSPolicy)) {
		f.add(field.NotSupported(p.Child("dnsPolicy"), spec.DNSPolicy, dnsPolicies))
	}
	f.add(metav1validation.ValidateLabels(spec.NodeSelector, p.Child("nodeSelector"))...)
	validateAffinity(spec.Affinity, p.Child("affinity"), f)
	if spec.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(spec.Hostname) {
			f.add(field.Invalid(p.Child("hostname"), spec.Hostname, msg))
		}
	}
}

// validateVolumes checks the pod's volumes and returns their names, for the
// volume mounts to refer to.
func validateVolumes(volumes []corev1.Volume, p *field.Path, f *findings) sets.Set[string] {
	names := sets.New[string]()
	for i := range volumes {
		v := &volumes[i]
		vp := p.Index(i)
		switch {
		case v.Name == "":
			f.add(field.Required(vp.Child("name"), ""))
		case names.Has(v.Name):
			f.add(field.Duplicate(vp.Child("name"), v.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				f.add(field.Invalid(vp.Child("name"), v.Name, msg))
			}
		}
		names.Insert(v.Name)
		if n := countVolumeSources(&v.VolumeSource); n > 1 {
			f.add(field.Forbidden(vp, "may not specify more than 1 volume type"))
		}
		if cm := v.ConfigMap; cm != nil {
			cmp := vp.Child("configMap")
			if cm.Name == "" {
				f.add(field.Required(cmp.Child("name"), ""))
			} else {
				validateObjectRefName(cm.Name, cmp.Child("name"), f)
			}
			validateKeyToPaths(cm.Items, cmp.Child("items"), f)
			validateFileMode(cm.DefaultMode, cmp.Child("defaultMode"), f)
		}
		if s := v.Secret; s != nil {
			sp := vp.Child("secret")
			if s.SecretName == "" {
				f.add(field.Required(sp.Child("secretName"), ""))
			} else {
				validateObjectRefName(s.SecretName, sp.Child("secretName"), f)
			}
			validateKeyToPaths(s.Items, sp.Child("items"), f)
			validateFileMode(s.DefaultMode, sp.Child("defaultMode"), f)
		}
	}
	return names
}

// hasVolumeSource reports whether any source of a volume is set.
func hasVolumeSource(vs *corev1.VolumeSource) bool { return countVolumeSources(vs) > 0 }

func countVolumeSources(vs *corev1.VolumeSource) int {
	v := reflect.ValueOf(vs).Elem()
	n := 0
	for i := 0; i < v.NumField(); i++ {
		if fv := v.Field(i); fv.Kind() == reflect.Pointer && !fv.IsNil() {
			n++
		}
	}
	return n
}

func validateKeyToPaths(items []corev1.KeyToPath, p *field.Path, f *findings) {
	for i, it := range items {
		ip := p.Index(i)
		if it.Key == "" {
			f.add(field.Required(ip.Child("key"), ""))
		} else {
			for _, msg := range validation.IsConfigMapKey(it.Key) {
				f.add(field.Invalid(ip.Child("key"), it.Key, msg))
			}
		}
		if it.Path == "" {
			f.add(field.Required(ip.Child("path"), ""))
		} else {
			validateRelativePath(it.Path, ip.Child("path"), f)
		}
		validateFileMode(it.Mode, ip.Child("mode"), f)
	}
}

func validateFileMode(mode *int32, p *field.Path, f *findings) {
	if mode != nil && (*mode < 0 || *mode > 0o777) {
		f.add(field.Invalid(p, *mode, "must be a number between 0 and 0777 (octal), both inclusive"))
	}
}

// validateRelativePath checks a path that must stay inside its volume.
func validateRelativePath(s string, p *field.Path, f *findings) {
	if path.IsAbs(s) {
		f.add(field.Invalid(p, s, "must be a relative path"))
	}
	if slices.Contains(strings.Split(s, "/"), "..") {
		f.add(field.Invalid(p, s, "must not contain '..'"))
	}
}

// validateObjectRefName checks the name of a referenced ConfigMap or Secret.
func validateObjectRefName(name string, p *field.Path, f *findings) {
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		f.add(field.Invalid(p, name, msg))
	}
}

var pullPolicies = []string{string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever)}

func validateContainer(c *corev1.Container, spec *corev1.PodSpec, volumes sets.Set[string], p *field.Path, f *findings) {
	if c.Name == "" {
		f.add(field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			f.add(field.Invalid(p.Child("name"), c.Name, msg))
		}
	}
	if c.Image == "" {
		f.add(field.Required(p.Child("image"), ""))
	} else if strings.TrimSpace(c.Image) != c.Image {
		f.add(field.Invalid(p.Child("image"), c.Image, "must not have leading or trailing whitespace"))
	}
	if !slices.Contains(pullPolicies, string(c.ImagePullPolicy)) {
		f.add(field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, pullPolicies))
	}
	tmp := []string{string(corev1.TerminationMessageReadFile), string(corev1.TerminationMessageFallbackToLogsOnError)}
	if !slices.Contains(tmp, string(c.TerminationMessagePolicy)) {
		f.add(field.NotSupported(p.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, tmp))
	}
	portNames := validateContainerPorts(c.Ports, p.Child("ports"), f)
	validateEnv(c.Env, spec, p.Child("env"), f)
	validateEnvFrom(c.EnvFrom, p.Child("envFrom"), f)
	validateVolumeMounts(c.VolumeMounts, volumes, p.Child("volumeMounts"), f)
	validateResources(&c.Resources, p.Child("resources"), f)
	validateProbe(c.LivenessProbe, true, portNames, p.Child("livenessProbe"), f)
	validateProbe(c.ReadinessProbe, false, portNames, p.Child("readinessProbe"), f)
	validateProbe(c.StartupProbe, true, portNames, p.Child("startupProbe"), f)
}

var portProtocols = []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)}

// validateProtocol accepts TCP and UDP. SCTP is valid Kubernetes but has no
// Podman port mapping or proxy support in berth.
func validateProtocol(proto corev1.Protocol, p *field.Path, f *findings) {
	switch proto {
	case corev1.ProtocolTCP, corev1.ProtocolUDP:
	case corev1.ProtocolSCTP:
		f.add(unsupported(p, proto, "berth supports TCP and UDP only"))
	default:
		f.add(field.NotSupported(p, proto, portProtocols))
	}
}

// validateContainerPorts checks a container's ports and returns their names,
// for named probe ports to resolve against.
func validateContainerPorts(ports []corev1.ContainerPort, p *field.Path, f *findings) sets.Set[string] {
	names := sets.New[string]()
	for i, port := range ports {
		pp := p.Index(i)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				f.add(field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if names.Has(port.Name) {
				f.add(field.Duplicate(pp.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		if port.ContainerPort == 0 {
			f.add(field.Required(pp.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
				f.add(field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
			}
		}
		if port.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(port.HostPort)) {
				f.add(field.Invalid(pp.Child("hostPort"), port.HostPort, msg))
			}
		}
		if port.HostIP != "" {
			f.add(validation.IsValidIP(pp.Child("hostIP"), port.HostIP)...)
		}
		validateProtocol(port.Protocol, pp.Child("protocol"), f)
	}
	return names
}

// validateHostPorts refuses two containers of one pod publishing the same
// host port and protocol.
func validateHostPorts(containers []corev1.Container, p *field.Path, f *findings) {
	seen := sets.New[string]()
	for ci, c := range containers {
		for pi, port := range c.Ports {
			if port.HostPort == 0 {
				continue
			}
			key := fmt.Sprintf("%d/%s", port.HostPort, port.Protocol)
			if seen.Has(key) {
				f.add(field.Duplicate(p.Index(ci).Child("ports").Index(pi).Child("hostPort"), key))
			}
			seen.Insert(key)
		}
	}
}

// fieldRefPaths are the pod fields an environment variable may take its value
// from (Kubernetes' list for env, without the volume-only ones).
var fieldRefPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.uid",
	"spec.nodeName", "spec.serviceAccountName",
	"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}

var resourceFieldRefs = []string{
	"limits.cpu", "limits.memory", "limits.ephemeral-storage",
	"requests.cpu", "requests.memory", "requests.ephemeral-storage",
}

func validateEnv(env []corev1.EnvVar, spec *corev1.PodSpec, p *field.Path, f *findings) {
	for i, ev := range env {
		ep := p.Index(i)
		if ev.Name == "" {
			f.add(field.Required(ep.Child("name"), ""))
		} else {
			for _, msg := range validation.IsRelaxedEnvVarName(ev.Name) {
				f.add(field.Invalid(ep.Child("name"), ev.Name, msg))
			}
		}
		vf := ev.ValueFrom
		if vf == nil {
			continue
		}
		vp := ep.Child("valueFrom")
		if ev.Value != "" {
			f.add(field.Invalid(vp, "", "may not be specified when `value` is not empty"))
		}
		n := 0
		if r := vf.FieldRef; r != nil {
			n++
			rp := vp.Child("fieldRef")
			if r.APIVersion != "v1" {
				f.add(field.NotSupported(rp.Child("apiVersion"), r.APIVersion, []string{"v1"}))
			}
			validateFieldRefPath(r.FieldPath, rp.Child("fieldPath"), f)
		}
		if r := vf.ResourceFieldRef; r != nil {
			n++
			rp := vp.Child("resourceFieldRef")
			if !slices.Contains(resourceFieldRefs, r.Resource) {
				f.add(field.NotSupported(rp.Child("resource"), r.Resource, resourceFieldRefs))
			}
			if r.ContainerName != "" && !slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == r.ContainerName }) {
				f.add(field.NotFound(rp.Child("containerName"), r.ContainerName))
			}
			if r.Divisor.Sign() < 0 {
				f.add(field.Invalid(rp.Child("divisor"), r.Divisor.String(), "must be positive"))
			}
		}
		if r := vf.ConfigMapKeyRef; r != nil {
			n++
			validateKeyRef(r.Name, r.Key, vp.Child("configMapKeyRef"), f)
		}
		if r := vf.SecretKeyRef; r != nil {
			n++
			validateKeyRef(r.Name, r.Key, vp.Child("secretKeyRef"), f)
		}
		if vf.FileKeyRef != nil {
			n++
		}
		switch {
		case n == 0:
			f.add(field.Invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
		case n > 1:
			f.add(field.Invalid(vp, "", "may not have more than one field specified at a time"))
		}
	}
}

func validateFieldRefPath(fp string, p *field.Path, f *findings) {
	if fp == "" {
		f.add(field.Required(p, ""))
		return
	}
	if slices.Contains(fieldRefPaths, fp) {
		return
	}
	for _, prefix := range []string{"metadata.labels", "metadata.annotations"} {
		rest, ok := strings.CutPrefix(fp, prefix)
		if !ok {
			continue
		}
		// A single label or annotation: metadata.labels['app'].
		if key, ok := strings.CutPrefix(rest, "['"); ok && strings.HasSuffix(key, "']") {
			key = strings.TrimSuffix(key, "']")
			for _, msg := range validation.IsQualifiedName(strings.ToLower(key)) {
				f.add(field.Invalid(p, fp, msg))
			}
			return
		}
	}
	f.add(field.NotSupported(p, fp, append(slices.Clone(fieldRefPaths), "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']")))
}

func validateKeyRef(name, key string, p *field.Path, f *findings) {
	if name == "" {
		f.add(field.Required(p.Child("name"), ""))
	} else {
		validateObjectRefName(name, p.Child("name"), f)
	}
	if key == "" {
		f.add(field.Required(p.Child("key"), ""))
	} else {
		for _, msg := range validation.IsConfigMapKey(key) {
			f.add(field.Invalid(p.Child("key"), key, msg))
		}
	}
}

func validateEnvFrom(envFrom []corev1.EnvFromSource, p *field.Path, f *findings) {
	for i, ef := range envFrom {
		ep := p.Index(i)
		if ef.Prefix != "" {
			for _, msg := range validation.IsRelaxedEnvVarName(ef.Prefix) {
				f.add(field.Invalid(ep.Child("prefix"), ef.Prefix, msg))
			}
		}
		n := 0
		if r := ef.ConfigMapRef; r != nil {
			n++
			if r.Name == "" {
				f.add(field.Required(ep.Child("configMapRef", "name"), ""))
			} else {
				validateObjectRefName(r.Name, ep.Child("configMapRef", "name"), f)
			}
		}
		if r := ef.SecretRef; r != nil {
			n++
			if r.Name == "" {
				f.add(field.Required(ep.Child("secretRef", "name"), ""))
			} else {
				validateObjectRefName(r.Name, ep.Child("secretRef", "name"), f)
			}
		}
		switch {
		case n == 0:
			f.add(field.Invalid(ep, "", "must specify one of: `configMapRef` or `secretRef`"))
		case n > 1:
			f.add(field.Invalid(ep, "", "may not have more than one field specified at a time"))
		}
	}
}

func validateVolumeMounts(mounts []corev1.VolumeMount, volumes sets.Set[string], p *field.Path, f *findings) {
	paths := sets.New[string]()
	for i, m := range mounts {
		mp := p.Index(i)
		switch {
		case m.Name == "":
			f.add(field.Required(mp.Child("name"), ""))
		case !volumes.Has(m.Name):
			f.add(&field.Error{Type: field.ErrorTypeNotFound, Field: mp.Child("name").String(), BadValue: m.Name,
				Detail: "no volume of this pod has that name"})
		}
		switch {
		case m.MountPath == "":
			f.add(field.Required(mp.Child("mountPath"), ""))
		case paths.Has(m.MountPath):
			f.add(field.Invalid(mp.Child("mountPath"), m.MountPath, "must be unique"))
		case !path.IsAbs(m.MountPath):
			// Kubernetes leaves this to the runtime; Podman refuses it when
			// the pod starts, which is too late for a GitOps controller.
			f.add(field.Invalid(mp.Child("mountPath"), m.MountPath, "must be an absolute path"))
		}
		paths.Insert(m.MountPath)
		if m.SubPath != "" {
			validateRelativePath(m.SubPath, mp.Child("subPath"), f)
		}
		if m.SubPath != "" && m.SubPathExpr != "" {
			f.add(field.Invalid(mp.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
		}
	}
}

// validateResources accepts cpu and memory, which berth enforces and
// schedules by; warns about ephemeral-storage, which it does not limit; and
// refuses hugepages and extended resources (GPUs...), which it cannot provide.
func validateResources(r *corev1.ResourceRequirements, p *field.Path, f *findings) {
	for _, list := range []struct {
		name string
		rl   corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		lp := p.Child(list.name)
		for _, name := range slices.Sorted(maps.Keys(list.rl)) {
			q := list.rl[name]
			rp := lp.Key(string(name))
			switch {
			case name == corev1.ResourceCPU || name == corev1.ResourceMemory:
			case name == corev1.ResourceEphemeralStorage:
				f.warn(rp, "ignored by berth: ephemeral storage is not limited or scheduled")
			case strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix):
				f.add(unsupported(rp, string(name), "hugepages are not available"))
			default:
				for _, msg := range validation.IsQualifiedName(string(name)) {
					f.add(field.Invalid(rp, string(name), msg))
				}
				if strings.Contains(string(name), "/") {
					f.add(unsupported(rp, string(name), "berth supports cpu and memory only; extended resources such as devices are not available"))
				} else {
					f.add(field.NotSupported(rp, string(name), []string{string(corev1.ResourceCPU), string(corev1.ResourceMemory)}))
				}
			}
			if q.Sign() < 0 {
				f.add(field.Invalid(rp, q.String(), "must be greater than or equal to 0"))
			}
		}
	}
	for name, req := range r.Requests {
		lim, ok := r.Limits[name]
		if ok && req.Cmp(lim) > 0 {
			f.add(field.Invalid(p.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
	}
}

var uriSchemes = []string{string(corev1.URISchemeHTTP), string(corev1.URISchemeHTTPS)}

// validateProbe checks a probe after defaulting. Named ports must be ports of
// the same container: that is where the kubelet resolves them.
func validateProbe(pr *corev1.Probe, needsSuccessOne bool, portNames sets.Set[string], p *field.Path, f *findings) {
	if pr == nil {
		return
	}
	handlers := 0
	for _, set := range []struct {
		name string
		set  bool
	}{{"exec", pr.Exec != nil}, {"httpGet", pr.HTTPGet != nil}, {"tcpSocket", pr.TCPSocket != nil}, {"grpc", pr.GRPC != nil}} {
		if !set.set {
			continue
		}
		handlers++
		if handlers > 1 {
			f.add(field.Forbidden(p.Child(set.name), "may not specify more than 1 handler type"))
		}
	}
	if handlers == 0 {
		f.add(field.Required(p, "must specify a handler type"))
	}
	for _, n := range []struct {
		name string
		v    int32
	}{{"initialDelaySeconds", pr.InitialDelaySeconds}, {"timeoutSeconds", pr.TimeoutSeconds}, {"periodSeconds", pr.PeriodSeconds},
		{"successThreshold", pr.SuccessThreshold}, {"failureThreshold", pr.FailureThreshold}} {
		f.add(apivalidation.ValidateNonnegativeField(int64(n.v), p.Child(n.name))...)
	}
	if needsSuccessOne && pr.SuccessThreshold != 1 {
		f.add(field.Invalid(p.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
	}
	if pr.TerminationGracePeriodSeconds != nil && *pr.TerminationGracePeriodSeconds <= 0 {
		f.add(field.Invalid(p.Child("terminationGracePeriodSeconds"), *pr.TerminationGracePeriodSeconds, "must be greater than 0"))
	}
	if e := pr.Exec; e != nil && len(e.Command) == 0 {
		f.add(field.Required(p.Child("exec", "command"), ""))
	}
	if h := pr.HTTPGet; h != nil {
		hp := p.Child("httpGet")
		validateProbePort(h.Port, portNames, hp.Child("port"), f)
		if !slices.Contains(uriSchemes, string(h.Scheme)) {
			f.add(field.NotSupported(hp.Child("scheme"), h.Scheme, uriSchemes))
		}
		for i, hdr := range h.HTTPHeaders {
			for _, msg := range validation.IsHTTPHeaderName(hdr.Name) {
				f.add(field.Invalid(hp.Child("httpHeaders").Index(i).Child("name"), hdr.Name, msg))
			}
		}
	}
	if t := pr.TCPSocket; t != nil {
		validateProbePort(t.Port, portNames, p.Child("tcpSocket", "port"), f)
	}
}

func validateProbePort(port intstr.IntOrString, portNames sets.Set[string], p *field.Path, f *findings) {
	if port.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			f.add(field.Invalid(p, port.IntVal, msg))
		}
		return
	}
	if msgs := validation.IsValidPortName(port.StrVal); len(msgs) > 0 {
		for _, msg := range msgs {
			f.add(field.Invalid(p, port.StrVal, msg))
		}
		return
	}
	if !portNames.Has(port.StrVal) {
		f.add(&field.Error{Type: field.ErrorTypeNotFound, Field: p.String(), BadValue: port.StrVal,
			Detail: "no port of this container has that name"})
	}
}
