package manifest

import (
	"strings"
	"testing"
)

const (
	c0  = "spec.template.spec.containers[0]"
	pod = "spec.template.spec"
)

// TestRules checks each decoding and validation rule with a valid and an
// invalid case. Every case is one file, "test.yaml"; extra files come from
// `with`.
func TestRules(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		with  []string // more files: name, text, name, text...
		errs  []want
		warns []want
	}{
		// Decoding.
		{name: "valid deployment", doc: baseDeployment},
		{name: "misspelled field", doc: variant(t, baseDeployment, set(c0+".imagePullPolice", "Always")),
			errs: []want{{c0 + ".imagePullPolice", `unknown field (did you mean "imagePullPolicy"?)`}}},
		{name: "unknown nested field", doc: variant(t, baseDeployment, set("spec.strategy.blueGreen", "{}")),
			errs: []want{{"spec.strategy.blueGreen", "unknown field"}}},
		{name: "wrong type", doc: variant(t, baseDeployment, set(c0+".ports[0].containerPort", `"8080"`), set(c0+".imagePullPolicyy", "Always")),
			errs: []want{{c0 + ".ports[0].containerPort", "must be an integer, not a string"}, {c0 + ".imagePullPolicyy", "unknown field"}}},
		{name: "bad quantity", doc: variant(t, baseDeployment, set(c0+".resources.limits.cpu", "lots")),
			errs: []want{{c0 + ".resources.limits[cpu]", "quantities must match"}}},
		{name: "unsupported kind", doc: "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n",
			errs: []want{{"", "kind HorizontalPodAutoscaler (apiVersion autoscaling/v2) is not supported by berth"}}},
		{name: "wrong apiVersion", doc: strings.Replace(baseDeployment, "apps/v1", "extensions/v1beta1", 1),
			errs: []want{{"apiVersion", `Unsupported value: "extensions/v1beta1": supported values: "apps/v1"`}}},
		{name: "missing kind", doc: variant(t, baseConfigMap, set("kind", "<delete>")),
			errs: []want{{"kind", "Required value"}}},

		// Metadata.
		{name: "invalid name", doc: variant(t, baseDeployment, set("metadata.name", "Web_1")),
			errs: []want{{"metadata.name", `Invalid value: "Web_1": a lowercase RFC 1123 subdomain`}}},
		{name: "service name is a DNS-1035 label", doc: variant(t, baseService, set("metadata.name", "1web")),
			errs: []want{{"metadata.name", "a DNS-1035 label"}}},
		{name: "invalid label key", doc: variant(t, baseConfigMap, set("metadata.labels", "{'-bad': x}")),
			errs: []want{{"metadata.labels", `Invalid value: "-bad"`}}},
		{name: "annotations too long", doc: variant(t, baseConfigMap, set("metadata.annotations", "{a: '"+strings.Repeat("x", 300000)+"'}")),
			errs: []want{{"metadata.annotations", "Too long"}}},
		{name: "invalid namespace", doc: variant(t, baseConfigMap, set("metadata.namespace", "Prod")),
			errs: []want{{"metadata.namespace", `Invalid value: "Prod"`}}},
		{name: "undeclared namespace", doc: variant(t, baseConfigMap, set("metadata.namespace", "prod")),
			errs: []want{{"metadata.namespace", `Not found: "prod": the revision declares no Namespace "prod"`}}},
		{name: "declared namespace", doc: variant(t, baseConfigMap, set("metadata.namespace", "prod")),
			with: []string{"ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n"}},
		{name: "generateName", doc: variant(t, baseConfigMap, set("metadata.generateName", "cfg-")),
			errs: []want{{"metadata.generateName", "not supported by berth"}}},
		{name: "server-set metadata", doc: variant(t, baseConfigMap, set("metadata.uid", `"1234"`), set("metadata.creationTimestamp", "null")),
			warns: []want{{"metadata.uid", "set by the Kubernetes API server"}}},

		// Deployment spec.
		{name: "selector required", doc: variant(t, baseDeployment, set("spec.selector", "<delete>")),
			errs: []want{{"spec.selector", "Required value"}}},
		{name: "selector must match", doc: variant(t, baseDeployment, set("spec.selector.matchLabels.app", "api")),
			errs: []want{{"spec.template.metadata.labels", "`selector` does not match template `labels`"}}},
		{name: "selector expressions", doc: variant(t, baseDeployment, set("spec.selector.matchExpressions", "[{key: app, operator: Near}]")),
			errs: []want{{"spec.selector.matchExpressions[0].operator", "not a valid selector operator"}}},
		{name: "negative replicas", doc: variant(t, baseDeployment, set("spec.replicas", "-1")),
			errs: []want{{"spec.replicas", "must be greater than or equal to 0"}}},
		{name: "strategy type", doc: variant(t, baseDeployment, set("spec.strategy.type", "BlueGreen")),
			errs: []want{{"spec.strategy.type", `Unsupported value: "BlueGreen"`}}},
		{name: "maxSurge syntax", doc: variant(t, baseDeployment, set("spec.strategy.rollingUpdate.maxSurge", "lots")),
			errs: []want{{"spec.strategy.rollingUpdate.maxSurge", "must be an integer or percentage"}}},
		{name: "maxUnavailable over 100%", doc: variant(t, baseDeployment, set("spec.strategy.rollingUpdate.maxUnavailable", "150%")),
			errs: []want{{"spec.strategy.rollingUpdate.maxUnavailable", "must not be greater than 100%"}}},
		{name: "surge and unavailable both zero", doc: variant(t, baseDeployment, set("spec.strategy.rollingUpdate", "{maxSurge: 0, maxUnavailable: '0%'}")),
			errs: []want{{"spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"}}},
		{name: "surge zero, unavailable one", doc: variant(t, baseDeployment, set("spec.strategy.rollingUpdate", "{maxSurge: 0, maxUnavailable: 1}"))},
		{name: "recreate with rollingUpdate", doc: variant(t, baseDeployment, set("spec.strategy", "{type: Recreate, rollingUpdate: {maxSurge: 1}}")),
			errs: []want{{"spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"}}},
		{name: "progress deadline within minReady", doc: variant(t, baseDeployment, set("spec.minReadySeconds", "30"), set("spec.progressDeadlineSeconds", "30")),
			errs: []want{{"spec.progressDeadlineSeconds", "must be greater than minReadySeconds"}}},
		{name: "negative history limit", doc: variant(t, baseDeployment, set("spec.revisionHistoryLimit", "-1")),
			errs: []want{{"spec.revisionHistoryLimit", "must be greater than or equal to 0"}}},
		{name: "template restartPolicy", doc: variant(t, baseDeployment, set(pod+".restartPolicy", "OnFailure")),
			errs: []want{{pod + ".restartPolicy", `Unsupported value: "OnFailure": supported values: "Always"`}}},
		{name: "pod restartPolicy", doc: variant(t, basePod, set("spec.restartPolicy", "Sometimes")),
			errs: []want{{"spec.restartPolicy", `Unsupported value: "Sometimes"`}}},
		{name: "status ignored", doc: variant(t, baseDeployment, set("status.replicas", "3")),
			warns: []want{{"status", "status is observed state"}}},

		// Containers.
		{name: "no containers", doc: variant(t, baseDeployment, set(pod+".containers", "[]")),
			errs: []want{{pod + ".containers", "Required value"}}},
		{name: "duplicate container names", doc: variant(t, baseDeployment, set(pod+".containers[1]", "{name: web, image: x:1}")),
			errs: []want{{pod + ".containers[1].name", `Duplicate value: "web"`}}},
		{name: "image required", doc: variant(t, baseDeployment, set(c0+".image", "<delete>")),
			errs: []want{{c0 + ".image", "Required value"}}},
		{name: "pull policy", doc: variant(t, baseDeployment, set(c0+".imagePullPolicy", "Sometimes")),
			errs: []want{{c0 + ".imagePullPolicy", `Unsupported value: "Sometimes"`}}},
		{name: "port range", doc: variant(t, baseDeployment, set(c0+".ports[0].containerPort", "70000")),
			errs: []want{{c0 + ".ports[0].containerPort", "must be between 1 and 65535"}}},
		{name: "duplicate port names", doc: variant(t, baseDeployment, set(c0+".ports[1]", "{name: http, containerPort: 9090}")),
			errs: []want{{c0 + ".ports[1].name", `Duplicate value: "http"`}}},
		{name: "SCTP", doc: variant(t, baseDeployment, set(c0+".ports[0].protocol", "SCTP")),
			errs: []want{{c0 + ".ports[0].protocol", `Unsupported value: "SCTP": berth supports TCP and UDP only`}}},
		{name: "UDP and hostPort", doc: variant(t, baseDeployment, set(c0+".ports[1]", "{containerPort: 53, hostPort: 5353, protocol: UDP}"))},
		{name: "host port clash", doc: variant(t, baseDeployment, set(c0+".ports[0].hostPort", "80"), set(pod+".containers[1]", "{name: b, image: x:1, ports: [{containerPort: 81, hostPort: 80}]}")),
			errs: []want{{pod + ".containers[1].ports[0].hostPort", `Duplicate value: "80/TCP"`}}},
		{name: "env name", doc: variant(t, baseDeployment, set(c0+".env", "[{name: 'A=B', value: x}]")),
			errs: []want{{c0 + ".env[0].name", "other than '='"}}},
		{name: "env value and valueFrom", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]")),
			errs: []want{{c0 + ".env[0].valueFrom", "may not be specified when `value` is not empty"}}},
		{name: "env two sources", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}, resourceFieldRef: {resource: limits.cpu}}}]")),
			errs: []want{{c0 + ".env[0].valueFrom", "may not have more than one field specified at a time"}}},
		{name: "env fieldRef path", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {fieldRef: {fieldPath: spec.containers}}}, {name: B, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}]")),
			errs: []want{{c0 + ".env[0].valueFrom.fieldRef.fieldPath", `Unsupported value: "spec.containers"`}}},
		{name: "envFrom without source", doc: variant(t, baseDeployment, set(c0+".envFrom", "[{prefix: X_}]")),
			errs: []want{{c0 + ".envFrom[0]", "must specify one of: `configMapRef` or `secretRef`"}}},
		{name: "mount of undeclared volume", doc: variant(t, baseDeployment, set(c0+".volumeMounts", "[{name: data, mountPath: /data}]")),
			errs: []want{{c0 + ".volumeMounts[0].name", `Not found: "data"`}}},
		{name: "mount path relative", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: data, emptyDir: {}}]"), set(c0+".volumeMounts", "[{name: data, mountPath: data}]")),
			errs: []want{{c0 + ".volumeMounts[0].mountPath", "must be an absolute path"}}},
		{name: "volume without source is emptyDir", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: data}]"), set(c0+".volumeMounts", "[{name: data, mountPath: /data}]"))},
		{name: "duplicate volumes", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: data, emptyDir: {}}, {name: data, emptyDir: {}}]")),
			errs: []want{{pod + ".volumes[1].name", `Duplicate value: "data"`}}},
		{name: "two volume sources", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: data, emptyDir: {}, configMap: {name: cfg, optional: true}}]")),
			errs: []want{{pod + ".volumes[0]", "may not specify more than 1 volume type"}}},
		{name: "item path escapes", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: c, configMap: {name: cfg, items: [{key: a.conf, path: ../x}]}}]")),
			with: []string{"cm.yaml", baseConfigMap},
			errs: []want{{pod + ".volumes[0].configMap.items[0].path", "must not contain '..'"}}},
		{name: "file mode", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: c, configMap: {name: cfg, defaultMode: 01000}}]")),
			with: []string{"cm.yaml", baseConfigMap},
			errs: []want{{pod + ".volumes[0].configMap.defaultMode", "between 0 and 0777"}}},
		{name: "hostPath volume", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: h, hostPath: {path: /etc}}]")),
			errs: []want{{pod + ".volumes[0].hostPath", "not supported by berth"}}},
		{name: "PVC volume", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: h, persistentVolumeClaim: {claimName: data}}]")),
			errs: []want{{pod + ".volumes[0].persistentVolumeClaim", "no persistent volume provisioner"}}},
		{name: "emptyDir in memory", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: t, emptyDir: {medium: Memory}}]")),
			warns: []want{{pod + ".volumes[0].emptyDir.medium", "never tmpfs"}}},

		// Probes.
		{name: "valid probes", doc: variant(t, baseDeployment,
			set(c0+".livenessProbe", "{httpGet: {port: http}}"), set(c0+".readinessProbe", "{tcpSocket: {port: 8080}, successThreshold: 2}"),
			set(c0+".startupProbe", "{exec: {command: [/bin/true]}, failureThreshold: 30}"))},
		{name: "two handlers", doc: variant(t, baseDeployment, set(c0+".livenessProbe", "{httpGet: {port: http}, tcpSocket: {port: http}}")),
			errs: []want{{c0 + ".livenessProbe.tcpSocket", "may not specify more than 1 handler type"}}},
		{name: "no handler", doc: variant(t, baseDeployment, set(c0+".readinessProbe", "{periodSeconds: 5}")),
			errs: []want{{c0 + ".readinessProbe", "must specify a handler type"}}},
		{name: "liveness successThreshold", doc: variant(t, baseDeployment, set(c0+".livenessProbe", "{tcpSocket: {port: http}, successThreshold: 2}")),
			errs: []want{{c0 + ".livenessProbe.successThreshold", "must be 1"}}},
		{name: "startup successThreshold", doc: variant(t, baseDeployment, set(c0+".startupProbe", "{tcpSocket: {port: http}, successThreshold: 3}")),
			errs: []want{{c0 + ".startupProbe.successThreshold", "must be 1"}}},
		{name: "negative period", doc: variant(t, baseDeployment, set(c0+".readinessProbe", "{tcpSocket: {port: http}, periodSeconds: -1}")),
			errs: []want{{c0 + ".readinessProbe.periodSeconds", "must be greater than or equal to 0"}}},
		{name: "unresolvable named port", doc: variant(t, baseDeployment, set(c0+".readinessProbe", "{httpGet: {port: metrics}}")),
			errs: []want{{c0 + ".readinessProbe.httpGet.port", `Not found: "metrics": no port of this container has that name`}}},
		{name: "http scheme", doc: variant(t, baseDeployment, set(c0+".readinessProbe", "{httpGet: {port: http, scheme: FTP}}")),
			errs: []want{{c0 + ".readinessProbe.httpGet.scheme", `Unsupported value: "FTP"`}}},
		{name: "grpc probe", doc: variant(t, baseDeployment, set(c0+".livenessProbe", "{grpc: {port: 9090}}")),
			errs: []want{{c0 + ".livenessProbe.grpc", "berth does not run gRPC probes"}}},

		// Resources.
		{name: "requests above limits", doc: variant(t, baseDeployment, set(c0+".resources", "{limits: {cpu: 100m}, requests: {cpu: 200m, memory: 64Mi}}")),
			errs: []want{{c0 + ".resources.requests[cpu]", "must be less than or equal to cpu limit of 100m"}}},
		{name: "extended resource", doc: variant(t, baseDeployment, set(c0+".resources", "{limits: {nvidia.com/gpu: 1}}")),
			errs: []want{{c0 + ".resources.limits[nvidia.com/gpu]", "extended resources"}, {c0 + ".resources.requests[nvidia.com/gpu]", "extended resources"}}},
		{name: "ephemeral storage", doc: variant(t, baseDeployment, set(c0+".resources", "{requests: {ephemeral-storage: 1Gi}}")),
			warns: []want{{c0 + ".resources.requests[ephemeral-storage]", "ephemeral storage is not limited"}}},

		// Pod-level fields.
		{name: "init containers", doc: variant(t, baseDeployment, set(pod+".initContainers", "[{name: init, image: x:1}]")),
			errs: []want{{pod + ".initContainers", "init containers are not run"}}},
		{name: "host network", doc: variant(t, baseDeployment, set(pod+".hostNetwork", "true")),
			errs: []want{{pod + ".hostNetwork", "not supported by berth"}}},
		{name: "host network false is fine", doc: variant(t, baseDeployment, set(pod+".hostNetwork", "false"))},
		{name: "nodeName", doc: variant(t, baseDeployment, set(pod+".nodeName", "host-a")),
			errs: []want{{pod + ".nodeName", "use nodeSelector"}}},
		{name: "nodeSelector", doc: variant(t, baseDeployment, set(pod+".nodeSelector", "{'bad key!': x}")),
			errs: []want{{pod + ".nodeSelector", `Invalid value: "bad key!"`}}},
		{name: "required node affinity", doc: variant(t, baseDeployment, set(pod+".affinity", `{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [
			{matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a, b]}, {key: gpu, operator: Exists}, {key: spot, operator: DoesNotExist}]},
			{matchExpressions: [{key: gen, operator: Gt, values: ['3']}, {key: tier, operator: NotIn, values: [edge]}], matchFields: [{key: metadata.name, operator: NotIn, values: [host-a]}]}]}}}`))},
		{name: "node affinity without terms", doc: variant(t, baseDeployment, set(pod+".affinity", "{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}")),
			errs: []want{{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", "Required value: must have at least one node selector term"}}},
		{name: "node affinity value counts", doc: variant(t, baseDeployment, set(pod+".affinity", `{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [
			{matchExpressions: [{key: a, operator: In}, {key: b, operator: Exists, values: [x]}, {key: c, operator: Gt, values: ['1', '2']}, {key: d, operator: Lt}]}]}}}`)),
			errs: []want{
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", "Required value: must be specified when `operator` is 'In' or 'NotIn'"},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values", "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[2].values", "must be specified single value when `operator` is 'Lt' or 'Gt'"},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[3].values", "must be specified single value when `operator` is 'Lt' or 'Gt'"},
			}},
		{name: "node affinity operator, key and values", doc: variant(t, baseDeployment, set(pod+".affinity", `{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [
			{matchExpressions: [{key: zone, operator: Like, values: [a]}, {key: 'bad key!', operator: In, values: ['bad value!']}]}]}}}`)),
			errs: []want{
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator", `Unsupported value: "Like": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"`},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].key", `Invalid value: "bad key!"`},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values[0]", `Invalid value: "bad value!"`},
			}},
		{name: "node affinity fields", doc: variant(t, baseDeployment, set(pod+".affinity", `{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [
			{matchFields: [{key: metadata.uid, operator: In, values: [x]}, {key: metadata.name, operator: Exists}, {key: metadata.name, operator: In, values: [a, b]}, {key: metadata.name, operator: In, values: [Host_A]}]}]}}}`)),
			errs: []want{
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key", `Unsupported value: "metadata.uid": supported values: "metadata.name"`},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[1].operator", `Unsupported value: "Exists"`},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[2].values", "must be only one value"},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[3].values[0]", `Invalid value: "Host_A"`},
			}},
		{name: "affinity berth does not act on", doc: variant(t, baseDeployment, set(pod+".affinity", `{
			nodeAffinity: {
				requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{}, {matchExpressions: [{key: gen, operator: Gt, values: [four]}]}]},
				preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, preference: {matchExpressions: [{key: a, operator: Exists}]}}]},
			podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone, labelSelector: {matchLabels: {app: db}}}]},
			podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, podAffinityTerm: {topologyKey: kubernetes.io/hostname}}]}}`)),
			warns: []want{
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]", "an empty term matches no node"},
				{pod + ".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchExpressions[0].values[0]", `"four" is not an integer`},
				{pod + ".affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution", "only required node affinity is applied"},
				{pod + ".affinity.podAffinity", "spreads each Deployment's replicas across nodes by default"},
				{pod + ".affinity.podAntiAffinity", "spreads each Deployment's replicas across nodes by default"},
			}},
		{name: "ignored pod fields", doc: variant(t, baseDeployment,
			set(pod+".serviceAccountName", "web"), set(pod+".securityContext", "{runAsUser: 1000}"), set(pod+".tolerations", "[{key: x, operator: Exists}]"),
			set(pod+".dnsPolicy", "ClusterFirst"), set(pod+".schedulerName", "default-scheduler"), set(c0+".lifecycle", "{preStop: {exec: {command: [sleep, '5']}}}"),
			set(c0+".securityContext", "{}"), set(c0+".terminationMessagePath", "/dev/termination-log")),
			warns: []want{
				{pod + ".serviceAccountName", "service account tokens"},
				{pod + ".securityContext", "not applied"},
				{pod + ".tolerations", "taints and tolerations"},
				{c0 + ".lifecycle", "are not run by berth"},
			}},

		// Services.
		{name: "valid services", doc: baseService, with: []string{"np.yaml", variant(t, baseService, set("metadata.name", "np"), set("spec.type", "NodePort"),
			set("spec.ports", "[{name: a, port: 80, nodePort: 30080}, {name: b, port: 53, protocol: UDP}]"), set("spec.sessionAffinity", "ClientIP"))}},
		{name: "LoadBalancer", doc: variant(t, baseService, set("spec.type", "LoadBalancer")),
			errs: []want{{"spec.type", `Unsupported value: "LoadBalancer": berth has no load balancers`}}},
		{name: "ExternalName", doc: variant(t, baseService, set("spec.type", "ExternalName"), set("spec.externalName", "example.com")),
			errs: []want{{"spec.type", `Unsupported value: "ExternalName"`}, {"spec.externalName", "not supported by berth"}}},
		{name: "headless", doc: variant(t, baseService, set("spec.clusterIP", "None")),
			errs: []want{{"spec.clusterIP", `Unsupported value: "None"`}}},
		{name: "cluster IP syntax", doc: variant(t, baseService, set("spec.clusterIP", "10.0.0")),
			errs: []want{{"spec.clusterIP", `Invalid value: "10.0.0"`}}},
		{name: "node port range", doc: variant(t, baseService, set("spec.type", "NodePort"), set("spec.ports[0].nodePort", "8080")),
			errs: []want{{"spec.ports[0].nodePort", "The range of valid ports is 30000-32767"}}},
		{name: "node port on ClusterIP", doc: variant(t, baseService, set("spec.ports[0].nodePort", "30080")),
			errs: []want{{"spec.ports[0].nodePort", "may not be used when `type` is 'ClusterIP'"}}},
		{name: "target port name", doc: variant(t, baseService, set("spec.ports[0].targetPort", "Not_A_Name")),
			errs: []want{{"spec.ports[0].targetPort", `Invalid value: "Not_A_Name"`}}},
		{name: "unnamed ports", doc: variant(t, baseService, set("spec.ports[1]", "{port: 81}")),
			errs: []want{{"spec.ports[0].name", "Required value"}, {"spec.ports[1].name", "Required value"}}},
		{name: "no ports", doc: variant(t, baseService, set("spec.ports", "<delete>")),
			errs: []want{{"spec.ports", "Required value"}}},
		{name: "session affinity", doc: variant(t, baseService, set("spec.sessionAffinity", "Sticky")),
			errs: []want{{"spec.sessionAffinity", `Unsupported value: "Sticky"`}}},
		{name: "affinity timeout", doc: variant(t, baseService, set("spec.sessionAffinity", "ClientIP"), set("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "100000")),
			errs: []want{{"spec.sessionAffinityConfig.clientIP.timeoutSeconds", "less than or equal to 86400"}}},
		{name: "selector labels", doc: variant(t, baseService, set("spec.selector", "{app: 'no spaces'}")),
			errs: []want{{"spec.selector", `Invalid value: "no spaces"`}}},
		{name: "no selector", doc: variant(t, baseService, set("spec.selector", "<delete>")),
			warns: []want{{"spec.selector", "no endpoints"}}},
		{name: "service SCTP", doc: variant(t, baseService, set("spec.ports[0].protocol", "SCTP")),
			errs: []want{{"spec.ports[0].protocol", `Unsupported value: "SCTP"`}}},

		// ConfigMaps and Secrets.
		{name: "configmap key", doc: variant(t, baseConfigMap, set("data", "{'bad key': x}")),
			errs: []want{{"data[bad key]", "a valid config key"}}},
		{name: "configmap key in data and binaryData", doc: variant(t, baseConfigMap, set("binaryData", "{a.conf: eA==}")),
			errs: []want{{"binaryData[a.conf]", "duplicate of key present in data"}}},
		{name: "secret base64", doc: variant(t, baseSecret, set("data", "{token: 'not base64!'}")),
			errs: []want{{"data[token]", "must be base64-encoded"}}},
		{name: "tls secret keys", doc: variant(t, baseSecret, set("type", "kubernetes.io/tls"), set("stringData", "{tls.crt: x}")),
			errs: []want{{"data[tls.key]", "Required value"}}},
		{name: "token secret", doc: variant(t, baseSecret, set("type", "kubernetes.io/service-account-token")),
			errs: []want{{"type", "service account tokens"}}},

		// References between objects.
		{name: "configMapKeyRef present", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {configMapKeyRef: {name: cfg, key: a.conf}}}]")),
			with: []string{"cm.yaml", baseConfigMap}},
		{name: "configMapKeyRef absent", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {configMapKeyRef: {name: cfg, key: a.conf}}}]")),
			errs: []want{{c0 + ".env[0].valueFrom.configMapKeyRef.name", `Not found: "cfg": the revision declares no ConfigMap default/cfg`}}},
		{name: "configMapKeyRef optional", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {configMapKeyRef: {name: cfg, key: a.conf, optional: true}}}]"))},
		{name: "key absent", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {secretKeyRef: {name: creds, key: user}}}]")),
			with: []string{"secret.yaml", baseSecret},
			errs: []want{{c0 + ".env[0].valueFrom.secretKeyRef.key", `Not found: "user": Secret default/creds has no such key`}}},
		{name: "key from stringData", doc: variant(t, baseDeployment, set(c0+".env", "[{name: A, valueFrom: {secretKeyRef: {name: creds, key: password}}}]")),
			with: []string{"secret.yaml", baseSecret}},
		{name: "envFrom absent", doc: variant(t, baseDeployment, set(c0+".envFrom", "[{secretRef: {name: creds}}, {configMapRef: {name: cfg, optional: true}}]")),
			errs: []want{{c0 + ".envFrom[0].secretRef.name", `Not found: "creds"`}}},
		{name: "volume secret absent", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: s, secret: {secretName: tls}}]")),
			errs: []want{{pod + ".volumes[0].secret.secretName", `Not found: "tls"`}}},
		{name: "volume item key absent", doc: variant(t, baseDeployment, set(pod+".volumes", "[{name: c, configMap: {name: cfg, items: [{key: a.conf, path: a}, {key: b.conf, path: b}]}}]")),
			with: []string{"cm.yaml", baseConfigMap},
			errs: []want{{pod + ".volumes[0].configMap.items[1].key", `Not found: "b.conf": ConfigMap default/cfg has no such key`}}},
		{name: "reference in another namespace", doc: variant(t, baseDeployment, set(c0+".envFrom", "[{configMapRef: {name: cfg}}]")),
			with: []string{"cm.yaml", variant(t, baseConfigMap, set("metadata.namespace", "other")), "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n"},
			errs: []want{{c0 + ".envFrom[0].configMapRef.name", `Not found: "cfg"`}}},
		{name: "duplicate across files", doc: baseConfigMap, with: []string{"again.yaml", baseConfigMap},
			errs: []want{{"metadata.name", `Duplicate value: "cfg": ConfigMap default/cfg is also declared at`}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := append([]string{"test.yaml", tc.doc}, tc.with...)
			set, errs := load(t, files...)
			if len(tc.errs) == 0 && errs != nil {
				t.Fatalf("refused:\n%s", errs)
			}
			if len(tc.errs) > 0 {
				if set != nil {
					t.Fatal("accepted, want errors")
				}
				checkDiagnostics(t, errs, tc.errs, false)
				checkDiagnostics(t, errs, tc.warns, true)
				return
			}
			checkDiagnostics(t, Errors(set.Warnings), tc.warns, true)
		})
	}
}
