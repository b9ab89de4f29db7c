package nodeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/runtime"
)

// Labels the agent adds to api's. LabelGracePeriod carries a pod's
// terminationGracePeriodSeconds, so the agent can stop the pod with the
// right grace period after it has left the assignment. LabelNode scopes
// ownership to one agent, so agents (or tests) sharing a Podman never
// remove each other's pods.
const (
	LabelGracePeriod = "berth.dev/grace-period"
	LabelNode        = "berth.dev/node"
)

// node is what translation needs to know about the node the pod runs on.
type node struct {
	Name string
	IP   string // answers status.hostIP references
}

// defaultGracePeriodSeconds is Kubernetes' terminationGracePeriodSeconds.
const defaultGracePeriodSeconds = 30

// podName is the Podman pod name of a Kubernetes pod. "_" cannot occur in
// Kubernetes names, so the mapping is one to one.
func podName(namespace, name string) string { return namespace + "_" + name }

// configIndex finds the ConfigMaps and Secrets of an assignment by name.
type configIndex struct {
	configMaps map[types.NamespacedName]*corev1.ConfigMap
	secrets    map[types.NamespacedName]*corev1.Secret
}

func newConfigIndex(a *api.Assignment) configIndex {
	idx := configIndex{configMaps: map[types.NamespacedName]*corev1.ConfigMap{}, secrets: map[types.NamespacedName]*corev1.Secret{}}
	if a == nil {
		return idx
	}
	for i := range a.ConfigMaps {
		cm := &a.ConfigMaps[i]
		idx.configMaps[types.NamespacedName{Namespace: cm.Namespace, Name: cm.Name}] = cm
	}
	for i := range a.Secrets {
		s := &a.Secrets[i]
		idx.secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	return idx
}

// configMapData returns a ConfigMap's keys, text and binary alike.
func configMapData(cm *corev1.ConfigMap) map[string][]byte {
	out := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	return out
}

// secretData returns a Secret's keys; stringData wins, as the API server
// would have merged it.
func secretData(s *corev1.Secret) map[string][]byte {
	out := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		out[k] = v
	}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

// volumeKind is what a pod volume is backed by on the host.
type volumeKind string

const (
	volumeEmptyDir  volumeKind = "emptyDir"
	volumeConfigMap volumeKind = "configMap"
	volumeSecret    volumeKind = "secret"
)

// volumePlan is the content of one pod volume, ready to be written under
// the pod's directory.
type volumePlan struct {
	Name  string
	Kind  volumeKind
	Files []volumeFile
	// SubDirs are subPaths of an emptyDir that mounts need to exist.
	SubDirs []string
}

// volumeFile is one file of a ConfigMap or Secret volume.
type volumeFile struct {
	Path string // relative to the volume, slash separated, clean
	Data []byte
	Mode os.FileMode
}

// translation is a Kubernetes pod in runtime terms.
type translation struct {
	Spec     runtime.PodSpec
	Volumes  []volumePlan
	Hash     string   // also in Spec.Labels[api.LabelSpecHash]
	Warnings []string // what the kubelet would report as warning events
}

// configError says why a pod cannot be created from its spec and the
// assignment; it is shown as the containers' CreateContainerConfigError.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// translate turns a Kubernetes pod into the runtime's pod spec and the
// files of its volumes. It is pure: podDir is where the pod's volumes will
// live on the host.
func translate(pod *corev1.Pod, cfg configIndex, podDir string, n node) (translation, error) {
	var tr translation
	spec := &pod.Spec
	if len(spec.InitContainers) > 0 {
		return tr, configErrorf("initContainers are not supported by berth")
	}
	if spec.HostNetwork {
		return tr, configErrorf("hostNetwork is not supported by berth")
	}

	vols := map[string]volumeKind{}
	for _, v := range spec.Volumes {
		plan, warn, err := planVolume(pod.Namespace, v, cfg)
		if err != nil {
			return tr, err
		}
		tr.Warnings = append(tr.Warnings, warn...)
		vols[v.Name] = plan.Kind
		tr.Volumes = append(tr.Volumes, plan)
	}

	grace := int64(defaultGracePeriodSeconds)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	tr.Spec = runtime.PodSpec{
		Name: podName(pod.Namespace, pod.Name),
		Labels: map[string]string{
			api.LabelManaged:   "true",
			api.LabelNamespace: pod.Namespace,
			api.LabelPod:       pod.Name,
			api.LabelOwner:     ownerOf(pod),
			api.LabelUID:       string(pod.UID),
			LabelGracePeriod:   strconv.FormatInt(grace, 10),
			LabelNode:          n.Name,
		},
		Hostname: hostnameOf(pod),
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		cs, warn, err := translateContainer(pod, c, cfg, podDir, n.IP, vols, &tr.Volumes)
		if err != nil {
			return tr, err
		}
		tr.Warnings = append(tr.Warnings, warn...)
		tr.Spec.Containers = append(tr.Spec.Containers, cs)
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			if proto != "tcp" && proto != "udp" {
				return tr, configErrorf("container %q: port protocol %s is not supported", c.Name, p.Protocol)
			}
			tr.Spec.PortMaps = append(tr.Spec.PortMaps, runtime.PortMapping{
				HostIP: p.HostIP, HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort), Protocol: proto,
			})
		}
	}
	tr.Hash = specHash(pod)
	tr.Spec.Labels[api.LabelSpecHash] = tr.Hash
	return tr, nil
}

// specHash digests the pod spec as written, so a change to anything that
// shapes the Podman pod (image, env, volumes, ports) replaces the pod. Like
// a Kubernetes pod, it does not follow the content of the ConfigMaps and
// Secrets it references: a Deployment rolls on such a change (the controller
// puts a digest of that content in the template), and rewriting a running
// pod behind the rollout's back would break its availability budget.
// Probes and the restart policy are the agent's business, not Podman's.
func specHash(pod *corev1.Pod) string {
	spec := pod.Spec.DeepCopy()
	spec.RestartPolicy = ""
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = nil, nil, nil
	}
	b, err := json.Marshal(spec)
	if err != nil {
		// A decoded PodSpec always marshals.
		panic(fmt.Sprintf("spec hash: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func ownerOf(pod *corev1.Pod) string {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && *ref.Controller || len(pod.OwnerReferences) == 1 {
			return ref.Kind + "/" + ref.Name
		}
	}
	return ""
}

// hostnameOf is the pod's hostname as the kubelet sets it: spec.hostname or
// the pod name, cut to 63 characters without a trailing dash or dot.
func hostnameOf(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// planVolume resolves one pod volume into its files.
func planVolume(namespace string, v corev1.Volume, cfg configIndex) (volumePlan, []string, error) {
	plan := volumePlan{Name: v.Name}
	var warnings []string
	switch {
	case v.EmptyDir != nil:
		plan.Kind = volumeEmptyDir
		if v.EmptyDir.Medium == corev1.StorageMediumMemory {
			warnings = append(warnings, fmt.Sprintf("volume %q: emptyDir medium Memory is backed by disk on berth", v.Name))
		}
	case v.ConfigMap != nil:
		plan.Kind = volumeConfigMap
		src := v.ConfigMap
		cm, ok := cfg.configMaps[types.NamespacedName{Namespace: namespace, Name: src.Name}]
		if !ok {
			if optional(src.Optional) {
				return plan, nil, nil
			}
			return plan, nil, configErrorf("configmap %q not found", src.Name)
		}
		files, err := volumeFiles(configMapData(cm), src.Items, src.DefaultMode, optional(src.Optional), configMapMode, "configmap", src.Name)
		if err != nil {
			return plan, nil, err
		}
		plan.Files = files
	case v.Secret != nil:
		plan.Kind = volumeSecret
		src := v.Secret
		s, ok := cfg.secrets[types.NamespacedName{Namespace: namespace, Name: src.SecretName}]
		if !ok {
			if optional(src.Optional) {
				return plan, nil, nil
			}
			return plan, nil, configErrorf("secret %q not found", src.SecretName)
		}
		files, err := volumeFiles(secretData(s), src.Items, src.DefaultMode, optional(src.Optional), secretMode, "secret", src.SecretName)
		if err != nil {
			return plan, nil, err
		}
		plan.Files = files
	default:
		return plan, nil, configErrorf("volume %q: only emptyDir, configMap and secret volumes are supported by berth", v.Name)
	}
	return plan, warnings, nil
}

func optional(b *bool) bool { return b != nil && *b }

// configMapMode honours the requested mode, as Kubernetes does.
func configMapMode(m os.FileMode) os.FileMode { return m & 0o777 }

// secretMode keeps a Secret's files private to their owner whatever the
// manifest asks: read-write (0600) when the owner could write, else 0400.
func secretMode(m os.FileMode) os.FileMode {
	if m&0o200 != 0 {
		return 0o600
	}
	return 0o400
}

// volumeFiles lays out the keys of a ConfigMap or Secret as files: every key
// under its own name, or only the listed items under their paths.
func volumeFiles(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, opt bool, mode func(os.FileMode) os.FileMode, kind, name string) ([]volumeFile, error) {
	def := os.FileMode(corev1.ConfigMapVolumeSourceDefaultMode)
	if defaultMode != nil {
		def = os.FileMode(*defaultMode)
	}
	var files []volumeFile
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			files = append(files, volumeFile{Path: k, Data: data[k], Mode: mode(def)})
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if opt {
				continue
			}
			return nil, configErrorf("%s %q has no key %q", kind, name, it.Key)
		}
		p, err := cleanRelative(it.Path)
		if err != nil {
			return nil, configErrorf("%s %q item %q: %v", kind, name, it.Key, err)
		}
		m := def
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files = append(files, volumeFile{Path: p, Data: v, Mode: mode(m)})
	}
	return files, nil
}

// cleanRelative checks that p stays inside the directory it is relative to.
func cleanRelative(p string) (string, error) {
	c := path.Clean(p)
	if p == "" || path.IsAbs(p) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q must be relative and may not contain '..'", p)
	}
	return c, nil
}

// translateContainer builds one container's runtime spec. It may add
// subPath directories to an emptyDir's plan.
func translateContainer(pod *corev1.Pod, c *corev1.Container, cfg configIndex, podDir, hostIP string, vols map[string]volumeKind, plans *[]volumePlan) (runtime.ContainerSpec, []string, error) {
	env, podIPEnv, warnings, err := containerEnv(pod, c, cfg, hostIP)
	if err != nil {
		return runtime.ContainerSpec{}, nil, err
	}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	cs := runtime.ContainerSpec{
		Name:       c.Name,
		Image:      c.Image,
		Command:    expandAll(c.Command, lookup),
		Args:       expandAll(c.Args, lookup),
		WorkingDir: c.WorkingDir,
		Env:        env,
		PodIPEnv:   podIPEnv,
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		cs.MemoryLimit = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		cs.CPULimitMilli = q.MilliValue()
	}
	for _, vm := range c.VolumeMounts {
		kind, ok := vols[vm.Name]
		if !ok {
			return cs, nil, configErrorf("container %q: volumeMount %q names no volume of the pod", c.Name, vm.Name)
		}
		if vm.SubPathExpr != "" {
			return cs, nil, configErrorf("container %q: volumeMount %q: subPathExpr is not supported by berth", c.Name, vm.Name)
		}
		src := filepath.Join(podDir, "volumes", vm.Name)
		if vm.SubPath != "" {
			sub, err := cleanRelative(vm.SubPath)
			if err != nil {
				return cs, nil, configErrorf("container %q: volumeMount %q: subPath: %v", c.Name, vm.Name, err)
			}
			src = filepath.Join(src, filepath.FromSlash(sub))
			if kind == volumeEmptyDir {
				for i := range *plans {
					if (*plans)[i].Name == vm.Name {
						(*plans)[i].SubDirs = append((*plans)[i].SubDirs, sub)
					}
				}
			}
		}
		cs.Mounts = append(cs.Mounts, runtime.Mount{
			Source:      src,
			Destination: vm.MountPath,
			// Kubernetes mounts ConfigMap and Secret volumes read-only.
			ReadOnly: vm.ReadOnly || kind == volumeConfigMap || kind == volumeSecret,
		})
	}
	return cs, warnings, nil
}

// containerEnv resolves a container's environment the way the kubelet does:
// envFrom first, then env, later entries winning, $(VAR) references to
// earlier variables expanded. Variables that refer to status.podIP are
// returned by name, for the runtime to fill in.
func containerEnv(pod *corev1.Pod, c *corev1.Container, cfg configIndex, hostIP string) (map[string]string, []string, []string, error) {
	env := map[string]string{}
	podIP := map[string]bool{}
	var warnings []string
	set := func(k, v string) { env[k] = v; delete(podIP, k) }

	for _, from := range c.EnvFrom {
		var data map[string][]byte
		var what, name string
		switch {
		case from.ConfigMapRef != nil:
			what, name = "configmap", from.ConfigMapRef.Name
			cm, ok := cfg.configMaps[types.NamespacedName{Namespace: pod.Namespace, Name: name}]
			if !ok {
				if optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("configmap %q not found", name)
			}
			data = configMapData(cm)
		case from.SecretRef != nil:
			what, name = "secret", from.SecretRef.Name
			s, ok := cfg.secrets[types.NamespacedName{Namespace: pod.Namespace, Name: name}]
			if !ok {
				if optional(from.SecretRef.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("secret %q not found", name)
			}
			data = secretData(s)
		default:
			continue
		}
		var invalid []string
		for k, v := range data {
			key := from.Prefix + k
			if errs := validation.IsRelaxedEnvVarName(key); len(errs) > 0 {
				invalid = append(invalid, key)
				continue
			}
			set(key, string(v))
		}
		if len(invalid) > 0 {
			sort.Strings(invalid)
			warnings = append(warnings, fmt.Sprintf("container %q: keys [%s] from the EnvFrom %s %s/%s were skipped since they are considered invalid environment variable names",
				c.Name, strings.Join(invalid, ", "), what, pod.Namespace, name))
		}
	}

	for _, e := range c.Env {
		lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, lookup))
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.FieldRef != nil:
			if vf.FieldRef.FieldPath == "status.podIP" || vf.FieldRef.FieldPath == "status.podIPs" {
				delete(env, e.Name)
				podIP[e.Name] = true
				continue
			}
			v, err := podField(pod, vf.FieldRef.FieldPath, hostIP)
			if err != nil {
				return nil, nil, nil, configErrorf("container %q: env %s: %v", c.Name, e.Name, err)
			}
			set(e.Name, v)
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			cm, ok := cfg.configMaps[types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("configmap %q not found", ref.Name)
			}
			v, ok := configMapData(cm)[ref.Key]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			set(e.Name, string(v))
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			s, ok := cfg.secrets[types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("secret %q not found", ref.Name)
			}
			v, ok := secretData(s)[ref.Key]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, nil, nil, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			set(e.Name, string(v))
		case vf.ResourceFieldRef != nil:
			v, err := resourceField(c, vf.ResourceFieldRef)
			if err != nil {
				return nil, nil, nil, configErrorf("container %q: env %s: %v", c.Name, e.Name, err)
			}
			set(e.Name, v)
		default:
			return nil, nil, nil, configErrorf("container %q: env %s: this valueFrom source is not supported by berth", c.Name, e.Name)
		}
	}
	var ipNames []string
	for k := range podIP {
		ipNames = append(ipNames, k)
	}
	sort.Strings(ipNames)
	return env, ipNames, warnings, nil
}

// podField answers a downward-API field reference other than status.podIP.
func podField(pod *corev1.Pod, fieldPath, hostIP string) (string, error) {
	if k, ok := subscript(fieldPath, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(fieldPath, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported by berth", fieldPath)
}

// subscript parses `prefix['key']`.
func subscript(fieldPath, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(fieldPath, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// resourceField answers a resourceFieldRef from the container's own
// limits or requests. Without a limit the kubelet would report the node's
// allocatable amount, which berth does not model, so that is an error.
func resourceField(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	var list corev1.ResourceList
	var res string
	switch {
	case strings.HasPrefix(ref.Resource, "limits."):
		list, res = c.Resources.Limits, strings.TrimPrefix(ref.Resource, "limits.")
	case strings.HasPrefix(ref.Resource, "requests."):
		list, res = c.Resources.Requests, strings.TrimPrefix(ref.Resource, "requests.")
	default:
		return "", fmt.Errorf("resourceFieldRef %q is not supported by berth", ref.Resource)
	}
	q, ok := list[corev1.ResourceName(res)]
	if !ok {
		return "", fmt.Errorf("resourceFieldRef %q: the container sets no such value", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor.Set(1)
	}
	if res == "cpu" {
		// Kubernetes rounds CPU up to whole divisor units.
		m, d := q.MilliValue(), divisor.MilliValue()
		return strconv.FormatInt((m+d-1)/d, 10), nil
	}
	v, d := q.Value(), divisor.Value()
	return strconv.FormatInt((v+d-1)/d, 10), nil
}

// expand replaces $(NAME) with the value of a defined variable and $$ with
// $, leaving other references as they are, like Kubernetes.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func expandAll(in []string, lookup func(string) (string, bool)) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, lookup)
	}
	return out
}
