package manifest

import (
	"fmt"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// level says what berth does with a field that is set.
type level int

const (
	// acted: berth acts on the field (it is validated and its children are
	// checked in turn).
	acted level = iota
	// inert: accepted without effect, and without a warning, because it has
	// no effect on a Kubernetes node either (informational fields).
	inert
	// warned: accepted, not acted on, and reported as a warning.
	warned
	// refused: the revision is refused, because ignoring the field would
	// change what the manifest means.
	refused
)

func (l level) String() string {
	switch l {
	case acted:
		return "supported"
	case inert:
		return "accepted (no effect, as on Kubernetes)"
	case warned:
		return "warning"
	case refused:
		return "error"
	}
	return "unknown"
}

// rule is berth's decision about one field.
type rule struct {
	level  level
	reason string
	// quiet is the rendering (fmt %v of the dereferenced value) of the one
	// value that needs no warning: the Kubernetes default, which a manifest
	// exported from a cluster spells out.
	quiet string
}

func act() rule                       { return rule{level: acted} }
func inertRule(why string) rule       { return rule{level: inert, reason: why} }
func warnRule(why string) rule        { return rule{level: warned, reason: why} }
func warnUnless(v, why string) rule   { return rule{level: warned, reason: why, quiet: v} }
func refuseRule(why string) rule      { return rule{level: refused, reason: why} }
func refuseUnless(v, why string) rule { return rule{level: refused, reason: why, quiet: v} }
func statusRule() rule                { return warnRule("status is observed state, never desired state") }
func serverSet(what string) rule {
	return warnRule(what + " is set by the Kubernetes API server; berth ignores it")
}
func notRun(what string) rule      { return warnRule(what + " are not run by berth") }
func noAPIServer(what string) rule { return warnRule("berth has no API server to " + what) }
func noSched(what string) rule     { return warnRule("the berth scheduler does not implement " + what) }
func onlyVolumes() rule {
	return refuseRule("berth supports configMap, secret and emptyDir volumes only")
}
func noSecurityContext(what string) rule {
	return warnRule(what + " is not applied; containers run with Podman's defaults")
}

// rules is berth's decision for every field of every type it recurses into.
// A test checks that every JSON field of these types has an entry, so a field
// added to k8s.io/api in an upgrade needs an explicit decision here. It is
// never modified.
var rules = map[reflect.Type]map[string]rule{
	reflect.TypeFor[metav1.TypeMeta](): {
		"apiVersion": act(),
		"kind":       act(),
	},
	reflect.TypeFor[metav1.ObjectMeta](): {
		"name":                       act(),
		"namespace":                  act(),
		"labels":                     act(),
		"annotations":                act(),
		"generateName":               refuseRule("GitOps needs stable names: set metadata.name"),
		"selfLink":                   serverSet("selfLink"),
		"uid":                        serverSet("uid"),
		"resourceVersion":            serverSet("resourceVersion"),
		"generation":                 serverSet("generation"),
		"creationTimestamp":          serverSet("creationTimestamp"),
		"deletionTimestamp":          serverSet("deletionTimestamp"),
		"deletionGracePeriodSeconds": serverSet("deletionGracePeriodSeconds"),
		"managedFields":              serverSet("managedFields"),
		"ownerReferences":            warnRule("berth prunes by its own inventory; ownerReferences are ignored"),
		"finalizers":                 warnRule("berth runs no finalizers; objects removed from Git are deleted"),
	},

	// Workloads.
	reflect.TypeFor[corev1.Pod](): {
		"metadata": act(),
		"spec":     act(),
		"status":   statusRule(),
	},
	reflect.TypeFor[appsv1.Deployment](): {
		"metadata": act(),
		"spec":     act(),
		"status":   statusRule(),
	},
	reflect.TypeFor[appsv1.DeploymentSpec](): {
		"replicas":                act(),
		"selector":                act(),
		"template":                act(),
		"strategy":                act(),
		"minReadySeconds":         act(),
		"revisionHistoryLimit":    act(),
		"paused":                  act(),
		"progressDeadlineSeconds": act(),
	},
	reflect.TypeFor[appsv1.DeploymentStrategy](): {
		"type":          act(),
		"rollingUpdate": act(),
	},
	reflect.TypeFor[appsv1.RollingUpdateDeployment](): {
		"maxUnavailable": act(),
		"maxSurge":       act(),
	},
	reflect.TypeFor[metav1.LabelSelector](): {
		"matchLabels":      act(),
		"matchExpressions": act(),
	},
	reflect.TypeFor[metav1.LabelSelectorRequirement](): {
		"key":      act(),
		"operator": act(),
		"values":   act(),
	},
	reflect.TypeFor[corev1.PodTemplateSpec](): {
		"metadata": act(),
		"spec":     act(),
	},
	reflect.TypeFor[corev1.PodSpec](): {
		"volumes":                       act(),
		"containers":                    act(),
		"restartPolicy":                 act(),
		"terminationGracePeriodSeconds": act(),
		"nodeSelector":                  act(),
		"hostname":                      act(),
		"initContainers":                refuseRule("init containers are not run, and the app containers may depend on them"),
		"ephemeralContainers":           refuseRule("ephemeral containers are added by the API, not declared"),
		"activeDeadlineSeconds":         warnRule("pods are not stopped after a deadline"),
		"dnsPolicy":                     warnUnless("ClusterFirst", "berth has no cluster DNS; containers use the host's resolver"),
		"dnsConfig":                     warnRule("berth has no cluster DNS; containers use the host's resolver"),
		"serviceAccountName":            noAPIServer("issue service account tokens"),
		"serviceAccount":                noAPIServer("issue service account tokens"),
		"automountServiceAccountToken":  noAPIServer("issue service account tokens"),
		"nodeName":                      refuseRule("pods are placed by the berth scheduler: use nodeSelector with kubernetes.io/hostname"),
		"hostNetwork":                   refuseRule("every pod gets its own network namespace"),
		"hostPID":                       refuseRule("every pod gets its own PID namespace"),
		"hostIPC":                       refuseRule("every pod gets its own IPC namespace"),
		"shareProcessNamespace":         warnUnless("false", "containers of a pod do not share a PID namespace"),
		"securityContext":               noSecurityContext("the pod securityContext"),
		"imagePullSecrets":              warnRule("images are pulled with the node's own Podman credentials"),
		"subdomain":                     warnRule("berth has no cluster DNS"),
		"affinity":                      act(),
		"schedulerName":                 warnUnless("default-scheduler", "berth has one scheduler"),
		"tolerations":                   noSched("taints and tolerations"),
		"hostAliases":                   warnRule("/etc/hosts entries are not added"),
		"priorityClassName":             noSched("priority and preemption"),
		"priority":                      noSched("priority and preemption"),
		"preemptionPolicy":              noSched("priority and preemption"),
		"readinessGates":                warnRule("readiness is decided by container probes only"),
		"runtimeClassName":              warnRule("every pod runs with the node's Podman runtime"),
		"enableServiceLinks":            warnUnless("false", "Service environment variables (FOO_SERVICE_HOST) are not injected"),
		"overhead":                      noSched("pod overhead"),
		"topologySpreadConstraints":     noSched("topology spread constraints"),
		"setHostnameAsFQDN":             warnRule("berth has no cluster DNS"),
		"os":                            warnRule("berth runs Linux containers only"),
		"hostUsers":                     warnRule("user namespaces follow the node's Podman configuration"),
		"schedulingGates":               refuseRule("nothing in berth would ever remove the gates, so the pods would never run"),
		"resourceClaims":                refuseRule("dynamic resource allocation is not available"),
		"resources":                     warnRule("pod-level resources are not enforced; set them per container"),
		"hostnameOverride":              warnRule("the pod hostname is metadata.name or spec.hostname"),
		"schedulingGroup":               noSched("scheduling groups"),
		"evictionResponders":            warnRule("berth does not evict pods"),
	},
	reflect.TypeFor[corev1.Affinity](): {
		"nodeAffinity":    act(),
		"podAffinity":     noSched("pod affinity; it spreads each Deployment's replicas across nodes by default"),
		"podAntiAffinity": noSched("pod anti-affinity; it spreads each Deployment's replicas across nodes by default"),
	},
	reflect.TypeFor[corev1.NodeAffinity](): {
		"requiredDuringSchedulingIgnoredDuringExecution":  act(),
		"preferredDuringSchedulingIgnoredDuringExecution": noSched("preferred node affinity; only required node affinity is applied"),
	},
	reflect.TypeFor[corev1.NodeSelector](): {
		"nodeSelectorTerms": act(),
	},
	reflect.TypeFor[corev1.NodeSelectorTerm](): {
		"matchExpressions": act(),
		"matchFields":      act(),
	},
	reflect.TypeFor[corev1.NodeSelectorRequirement](): {
		"key":      act(),
		"operator": act(),
		"values":   act(),
	},
	reflect.TypeFor[corev1.Container](): {
		"name":                     act(),
		"image":                    act(),
		"command":                  act(),
		"args":                     act(),
		"workingDir":               act(),
		"ports":                    act(),
		"envFrom":                  act(),
		"env":                      act(),
		"resources":                act(),
		"volumeMounts":             act(),
		"livenessProbe":            act(),
		"readinessProbe":           act(),
		"startupProbe":             act(),
		"imagePullPolicy":          act(),
		"resizePolicy":             warnRule("resources are changed by a new rollout, never in place"),
		"restartPolicy":            refuseRule("container restart policies (sidecars) are not supported"),
		"restartPolicyRules":       refuseRule("container restart rules are not supported"),
		"volumeDevices":            refuseRule("block devices are not supported"),
		"lifecycle":                notRun("postStart and preStop hooks"),
		"terminationMessagePath":   warnUnless("/dev/termination-log", "termination messages are not collected"),
		"terminationMessagePolicy": warnUnless("File", "termination messages are not collected"),
		"securityContext":          noSecurityContext("the container securityContext"),
		"stdin":                    warnRule("containers get no stdin"),
		"stdinOnce":                warnRule("containers get no stdin"),
		"tty":                      warnRule("containers get no terminal"),
	},
	reflect.TypeFor[corev1.ContainerPort](): {
		"name":          act(),
		"containerPort": act(),
		"hostPort":      act(),
		"hostIP":        act(),
		"protocol":      act(),
	},
	reflect.TypeFor[corev1.EnvVar](): {
		"name":      act(),
		"value":     act(),
		"valueFrom": act(),
	},
	reflect.TypeFor[corev1.EnvVarSource](): {
		"fieldRef":         act(),
		"resourceFieldRef": act(),
		"configMapKeyRef":  act(),
		"secretKeyRef":     act(),
		"fileKeyRef":       refuseRule("environment variables from files are not supported"),
	},
	reflect.TypeFor[corev1.ObjectFieldSelector](): {
		"apiVersion": act(),
		"fieldPath":  act(),
	},
	reflect.TypeFor[corev1.ResourceFieldSelector](): {
		"containerName": act(),
		"resource":      act(),
		"divisor":       act(),
	},
	reflect.TypeFor[corev1.ConfigMapKeySelector](): {
		"key":      act(),
		"optional": act(),
	},
	reflect.TypeFor[corev1.SecretKeySelector](): {
		"key":      act(),
		"optional": act(),
	},
	reflect.TypeFor[corev1.EnvFromSource](): {
		"prefix":       act(),
		"configMapRef": act(),
		"secretRef":    act(),
	},
	reflect.TypeFor[corev1.ConfigMapEnvSource](): {
		"optional": act(),
	},
	reflect.TypeFor[corev1.SecretEnvSource](): {
		"optional": act(),
	},
	reflect.TypeFor[corev1.LocalObjectReference](): {
		"name": act(),
	},
	reflect.TypeFor[corev1.ResourceRequirements](): {
		"limits":   act(),
		"requests": act(),
		"claims":   refuseRule("dynamic resource allocation is not available"),
	},
	reflect.TypeFor[corev1.VolumeMount](): {
		"name":              act(),
		"mountPath":         act(),
		"readOnly":          act(),
		"subPath":           act(),
		"subPathExpr":       refuseRule("subPathExpr is not expanded"),
		"mountPropagation":  warnUnless("None", "mounts are always private"),
		"recursiveReadOnly": warnUnless("Disabled", "read-only mounts are not made recursively read-only"),
		"bindMountOptions":  warnRule("bind mount options are not applied"),
	},
	reflect.TypeFor[corev1.Volume](): {
		"name": act(),
	},
	reflect.TypeFor[corev1.VolumeSource](): {
		"configMap":             act(),
		"secret":                act(),
		"emptyDir":              act(),
		"hostPath":              refuseRule("berth supports configMap, secret and emptyDir volumes only; hostPath would tie pods to one host's files"),
		"persistentVolumeClaim": refuseRule("berth supports configMap, secret and emptyDir volumes only; there is no persistent volume provisioner"),
		"gcePersistentDisk":     onlyVolumes(),
		"awsElasticBlockStore":  onlyVolumes(),
		"gitRepo":               onlyVolumes(),
		"nfs":                   onlyVolumes(),
		"iscsi":                 onlyVolumes(),
		"glusterfs":             onlyVolumes(),
		"rbd":                   onlyVolumes(),
		"flexVolume":            onlyVolumes(),
		"cinder":                onlyVolumes(),
		"cephfs":                onlyVolumes(),
		"flocker":               onlyVolumes(),
		"downwardAPI":           onlyVolumes(),
		"fc":                    onlyVolumes(),
		"azureFile":             onlyVolumes(),
		"vsphereVolume":         onlyVolumes(),
		"quobyte":               onlyVolumes(),
		"azureDisk":             onlyVolumes(),
		"photonPersistentDisk":  onlyVolumes(),
		"projected":             onlyVolumes(),
		"portworxVolume":        onlyVolumes(),
		"scaleIO":               onlyVolumes(),
		"storageos":             onlyVolumes(),
		"csi":                   onlyVolumes(),
		"ephemeral":             onlyVolumes(),
		"image":                 onlyVolumes(),
	},
	reflect.TypeFor[corev1.ConfigMapVolumeSource](): {
		"items":       act(),
		"defaultMode": act(),
		"optional":    act(),
		"defaultUser": warnRule("files are owned by the node's Podman user mapping"),
	},
	reflect.TypeFor[corev1.SecretVolumeSource](): {
		"secretName":  act(),
		"items":       act(),
		"defaultMode": act(),
		"optional":    act(),
		"defaultUser": warnRule("files are owned by the node's Podman user mapping"),
	},
	reflect.TypeFor[corev1.KeyToPath](): {
		"key":  act(),
		"path": act(),
		"mode": act(),
		"user": warnRule("files are owned by the node's Podman user mapping"),
	},
	reflect.TypeFor[corev1.EmptyDirVolumeSource](): {
		"medium":    warnRule("emptyDir is always a directory on the node's disk, never tmpfs"),
		"sizeLimit": warnRule("emptyDir size is not limited"),
		"mode":      warnRule("emptyDir permissions are not set"),
	},
	reflect.TypeFor[corev1.Probe](): {
		"initialDelaySeconds":           act(),
		"timeoutSeconds":                act(),
		"periodSeconds":                 act(),
		"successThreshold":              act(),
		"failureThreshold":              act(),
		"terminationGracePeriodSeconds": warnRule("a failed probe stops the container with the pod's terminationGracePeriodSeconds"),
	},
	reflect.TypeFor[corev1.ProbeHandler](): {
		"exec":      act(),
		"httpGet":   act(),
		"tcpSocket": act(),
		"grpc":      refuseRule("berth does not run gRPC probes; use exec, httpGet or tcpSocket"),
	},
	reflect.TypeFor[corev1.ExecAction](): {
		"command": act(),
	},
	reflect.TypeFor[corev1.HTTPGetAction](): {
		"path":        act(),
		"port":        act(),
		"host":        act(),
		"scheme":      act(),
		"httpHeaders": act(),
		"protocol":    warnRule("probes use HTTP/1.1"),
	},
	reflect.TypeFor[corev1.HTTPHeader](): {
		"name":  act(),
		"value": act(),
	},
	reflect.TypeFor[corev1.TCPSocketAction](): {
		"port": act(),
		"host": act(),
	},

	// Services.
	reflect.TypeFor[corev1.Service](): {
		"metadata": act(),
		"spec":     act(),
		"status":   statusRule(),
	},
	reflect.TypeFor[corev1.ServiceSpec](): {
		"ports":                         act(),
		"selector":                      act(),
		"clusterIP":                     act(),
		"clusterIPs":                    act(),
		"type":                          act(),
		"sessionAffinity":               act(),
		"sessionAffinityConfig":         act(),
		"externalIPs":                   warnRule("traffic to external IPs is not routed; use a NodePort"),
		"loadBalancerIP":                warnRule("berth has no load balancers"),
		"loadBalancerSourceRanges":      warnRule("berth has no load balancers"),
		"loadBalancerClass":             warnRule("berth has no load balancers"),
		"allocateLoadBalancerNodePorts": warnRule("berth has no load balancers"),
		"externalName":                  refuseRule("ExternalName Services need cluster DNS, which berth does not have"),
		"externalTrafficPolicy":         warnUnless("Cluster", "node ports always forward to every ready endpoint (policy Cluster)"),
		"healthCheckNodePort":           warnRule("berth has no load balancers"),
		"publishNotReadyAddresses":      warnRule("only ready pods become endpoints"),
		"ipFamilies":                    refuseUnless("[IPv4]", "Services are IPv4 only"),
		"ipFamilyPolicy":                refuseUnless("SingleStack", "Services are IPv4 only"),
		"internalTrafficPolicy":         warnUnless("Cluster", "Services always forward to every ready endpoint (policy Cluster)"),
		"trafficDistribution":           warnRule("endpoints are chosen at random, with no topology preference"),
	},
	reflect.TypeFor[corev1.ServicePort](): {
		"name":        act(),
		"protocol":    act(),
		"port":        act(),
		"targetPort":  act(),
		"nodePort":    act(),
		"appProtocol": inertRule("a hint for implementations; Kubernetes' own proxy ignores it too"),
	},
	reflect.TypeFor[corev1.SessionAffinityConfig](): {
		"clientIP": act(),
	},
	reflect.TypeFor[corev1.ClientIPConfig](): {
		"timeoutSeconds": act(),
	},

	// Configuration and namespaces.
	reflect.TypeFor[corev1.ConfigMap](): {
		"metadata":   act(),
		"data":       act(),
		"binaryData": act(),
		"immutable":  warnRule("immutability is not enforced: a commit that changes the data updates it"),
	},
	reflect.TypeFor[corev1.Secret](): {
		"metadata":   act(),
		"data":       act(),
		"stringData": act(),
		"type":       act(),
		"immutable":  warnRule("immutability is not enforced: a commit that changes the data updates it"),
	},
	reflect.TypeFor[corev1.Namespace](): {
		"metadata": act(),
		"spec":     act(),
		"status":   statusRule(),
	},
	reflect.TypeFor[corev1.NamespaceSpec](): {
		"finalizers": warnRule("berth runs no finalizers"),
	},
}

// leafTypes are struct types that hold one value (they decode from a JSON
// scalar), so the walk stops at them.
var leafTypes = map[reflect.Type]bool{
	reflect.TypeFor[metav1.Time](): true,
}

func isLeaf(t reflect.Type) bool {
	if leafTypes[t] {
		return true
	}
	// Quantity, IntOrString and friends decode themselves from scalars.
	return t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(jsonUnmarshalerType)
}

// checkFields walks a decoded object (before defaulting, so only what the
// author wrote is seen) and reports every set field berth refuses or ignores.
func checkFields(obj any, f *findings) {
	walkFields(reflect.ValueOf(obj), nil, f)
}

func walkFields(v reflect.Value, path *field.Path, f *findings) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		table, ok := rules[v.Type()]
		if !ok {
			return // a leaf value such as a Quantity
		}
		walkStruct(v, table, path, f)
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkFields(v.Index(i), path.Index(i), f)
		}
	case reflect.Map:
		if _, ok := rules[derefType(v.Type().Elem())]; !ok {
			return // maps of scalars: labels, data, resource lists
		}
		iter := v.MapRange()
		for iter.Next() {
			walkFields(iter.Value(), path.Key(fmt.Sprint(iter.Key().Interface())), f)
		}
	}
}

func walkStruct(v reflect.Value, table map[string]rule, path *field.Path, f *findings) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, inline := jsonName(sf)
		fv := v.Field(i)
		if inline {
			walkFields(fv, path, f)
			continue
		}
		if name == "" || isEmpty(fv) {
			continue
		}
		child := childPath(path, name)
		r, ok := table[name]
		if !ok {
			// Unreachable while the rules test passes; kept so that a new
			// upstream field is reported rather than silently dropped.
			f.warn(child, "ignored by berth: field not recognised")
			continue
		}
		if r.quiet != "" && render(fv) == r.quiet {
			continue
		}
		switch r.level {
		case acted:
			walkFields(fv, child, f)
		case inert:
		case warned:
			f.warn(child, "ignored by berth: "+r.reason)
		case refused:
			f.add(notSupportedByBerth(child, r.reason))
		}
	}
}

// childPath starts a path at the object root or extends one.
func childPath(path *field.Path, name string) *field.Path {
	if path == nil {
		return field.NewPath(name)
	}
	return path.Child(name)
}

// jsonName returns the JSON field name of a struct field, and whether the
// field is inlined into its parent (embedded, or tagged ",inline").
func jsonName(sf reflect.StructField) (name string, inline bool) {
	tag := sf.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false
	}
	if strings.Contains(opts, "inline") || (sf.Anonymous && name == "") {
		return "", true
	}
	if name == "" {
		name = sf.Name
	}
	return name, false
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// isEmpty reports whether a field carries nothing: zero, nil, an empty list
// or map, or a pointer to a zero struct such as `securityContext: {}`, which
// means nothing on Kubernetes either.
func isEmpty(v reflect.Value) bool {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return true
		}
		v = v.Elem()
		if v.Kind() != reflect.Struct {
			return false // an explicit scalar such as `hostNetwork: false` is kept
		}
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// render formats a field's value for comparison with rule.quiet.
func render(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	return fmt.Sprint(v.Interface())
}
