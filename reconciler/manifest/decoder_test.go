package manifest

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefaults(t *testing.T) {
	got, errs := load(t,
		"d.yaml", variant(t, baseDeployment,
			set(c0+".livenessProbe", "{httpGet: {port: http}}"),
			set(c0+".resources", "{limits: {cpu: 500m, memory: 64Mi}, requests: {cpu: 100m}}"),
			set(c0+".env", "[{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]"),
			set(pod+".volumes", "[{name: c, configMap: {name: cfg, optional: true}}, {name: s, secret: {secretName: x, optional: true}}]")),
		"s.yaml", variant(t, baseService, set("spec.ports", "[{port: 80}]"), set("spec.sessionAffinity", "ClientIP")),
		"p.yaml", variant(t, basePod, set("spec.restartPolicy", "<delete>"), set("spec.containers[0].image", "localhost/job")),
		"secret.yaml", variant(t, baseSecret, set("data", "{password: b2xk, user: YWRt}")),
		"ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n",
	)
	if errs != nil {
		t.Fatal(errs)
	}
	d := got.Deployments[0]
	check := func(name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("namespace", d.Namespace, "default")
	check("replicas", *d.Spec.Replicas, 1)
	check("strategy", d.Spec.Strategy.Type, appsv1.RollingUpdateDeploymentStrategyType)
	check("maxSurge", *d.Spec.Strategy.RollingUpdate.MaxSurge, intstr.FromString("25%"))
	check("maxUnavailable", *d.Spec.Strategy.RollingUpdate.MaxUnavailable, intstr.FromString("25%"))
	check("revisionHistoryLimit", *d.Spec.RevisionHistoryLimit, 10)
	check("progressDeadlineSeconds", *d.Spec.ProgressDeadlineSeconds, 600)
	ps := d.Spec.Template.Spec
	check("restartPolicy", ps.RestartPolicy, corev1.RestartPolicyAlways)
	check("terminationGracePeriodSeconds", *ps.TerminationGracePeriodSeconds, 30)
	check("dnsPolicy", ps.DNSPolicy, corev1.DNSClusterFirst)
	check("schedulerName", ps.SchedulerName, "default-scheduler")
	check("configMap defaultMode", *ps.Volumes[0].ConfigMap.DefaultMode, 0o644)
	check("secret defaultMode", *ps.Volumes[1].Secret.DefaultMode, 0o644)
	c := ps.Containers[0]
	check("imagePullPolicy (tagged)", c.ImagePullPolicy, corev1.PullIfNotPresent)
	check("terminationMessagePath", c.TerminationMessagePath, "/dev/termination-log")
	check("terminationMessagePolicy", c.TerminationMessagePolicy, corev1.TerminationMessageReadFile)
	check("port protocol", c.Ports[0].Protocol, corev1.ProtocolTCP)
	check("fieldRef apiVersion", c.Env[0].ValueFrom.FieldRef.APIVersion, "v1")
	check("memory request from limit", c.Resources.Requests.Memory().String(), "64Mi")
	check("cpu request kept", c.Resources.Requests.Cpu().String(), "100m")
	lp := c.LivenessProbe
	check("probe", []any{lp.PeriodSeconds, lp.TimeoutSeconds, lp.SuccessThreshold, lp.FailureThreshold, lp.HTTPGet.Path, lp.HTTPGet.Scheme}, []any{10, 1, 1, 3, "/", "HTTP"})

	check("pod restartPolicy", got.Pods[0].Spec.RestartPolicy, corev1.RestartPolicyAlways)
	check("imagePullPolicy (untagged)", got.Pods[0].Spec.Containers[0].ImagePullPolicy, corev1.PullAlways)

	s := got.Services[0]
	check("service type", s.Spec.Type, corev1.ServiceTypeClusterIP)
	check("service protocol", s.Spec.Ports[0].Protocol, corev1.ProtocolTCP)
	check("targetPort", s.Spec.Ports[0].TargetPort, intstr.FromInt32(80))
	check("affinity timeout", *s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds, 10800)

	sec := got.Secrets[0]
	check("secret type", sec.Type, corev1.SecretTypeOpaque)
	check("stringData merged over data", string(sec.Data["password"]), "hunter2")
	check("data kept", string(sec.Data["user"]), "adm")
	check("stringData cleared", len(sec.StringData), 0)

	check("namespace label", got.Namespaces[0].Labels[corev1.LabelMetadataName], "prod")
	check("sources", got.Sources[Key("Deployment", "default", "web")], Object{File: "d.yaml", Line: 1, Kind: "Deployment", Namespace: "default", Name: "web"})
	check("cluster-scoped source", got.Sources[Key("Namespace", "", "prod")].File, "ns.yaml")
}

func TestImagePullPolicyDefault(t *testing.T) {
	for image, want := range map[string]corev1.PullPolicy{
		"nginx":                     corev1.PullAlways,
		"nginx:latest":              corev1.PullAlways,
		"nginx:1.27":                corev1.PullIfNotPresent,
		"localhost:5000/app":        corev1.PullAlways,
		"localhost:5000/app:v2":     corev1.PullIfNotPresent,
		"nginx@sha256:0123456789ab": corev1.PullIfNotPresent,
	} {
		c := corev1.Container{Image: image}
		defaultContainer(&c)
		if c.ImagePullPolicy != want {
			t.Errorf("%s: imagePullPolicy %s, want %s", image, c.ImagePullPolicy, want)
		}
	}
}

// TestLines checks that diagnostics name the line of the offending field,
// across documents, Lists and JSON files.
func TestLines(t *testing.T) {
	yamlFile := `# leading comment
apiVersion: v1
kind: ConfigMap
metadata:
  name: ok
---
# second document
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: localhost/web:1
        imagePullPolicy: Sometimes
---
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: b
    labels:
      "-bad": x
...
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80}]
  selector: {app: web}
  type: LoadBalancer
`
	jsonFile := "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"p\"},\n\t\"spec\": {\n\t\t\"containers\": [\n\t\t\t{\"name\": \"c\", \"image\": \"x:1\", \"tty\": true, \"workingdir\": \"/\"}\n\t\t]\n\t}\n}\n"
	_, errs := load(t, "all.yaml", yamlFile, "pod.json", jsonFile)
	want := []string{
		"all.yaml:22: Deployment default/web: spec.template.spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\"",
		"all.yaml:35: ConfigMap default/b: metadata.labels: Invalid value: \"-bad\"",
		"all.yaml:44: Service default/s: spec.type: Unsupported value: \"LoadBalancer\"",
		"pod.json:7: Pod default/p: spec.containers[0].workingdir: unknown field (did you mean \"workingDir\"?)",
		"pod.json:7: warning: Pod default/p: spec.containers[0].tty: ignored by berth",
	}
	got := errs.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestSyntaxErrors(t *testing.T) {
	_, errs := load(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n",
		"b.yaml", "apiVersion: v1\n---\nkind: [unclosed\n",
		"c.json", "{\"apiVersion\": \"v1\",\n\"kind\": }",
		"d.yaml", "just a string\n",
		"e.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: 1, b: [1]}\n",
	)
	got := errs.Error()
	for _, w := range []string{
		`a.yaml:5: invalid YAML: key "name" already set in map`,
		"b.yaml:1: kind: Required value",
		"b.yaml:3: invalid YAML:",
		"c.json:2: invalid JSON:",
		"d.yaml:1: not a Kubernetes object",
		"e.yaml:4: ConfigMap default/x: data[a]: Invalid value: must be a string, not a number",
		"e.yaml:4: ConfigMap default/x: data[b]: Invalid value: must be a string, not a list",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

// TestSecretValuesNeverPrinted: a refused revision's diagnostics must not
// quote Secret data, whatever is wrong with it.
func TestSecretValuesNeverPrinted(t *testing.T) {
	_, errs := load(t, "s.yaml", variant(t, baseSecret,
		set("metadata.name", "Bad_Name"),
		set("data", "{'bad key': aHVudGVyMg==, odd: 'hunter2!'}"),
		set("stringData", "{'also bad': hunter2, n: 'hunter2'}"),
		set("type", "kubernetes.io/tls")))
	if errs == nil {
		t.Fatal("accepted")
	}
	if s := errs.Error(); strings.Contains(s, "hunter2") || strings.Contains(s, "aHVudGVyMg") {
		t.Errorf("diagnostics quote secret data:\n%s", s)
	}
}

func TestWarningsDoNotRefuse(t *testing.T) {
	s, errs := load(t, "d.yaml", variant(t, baseDeployment, set(pod+".serviceAccountName", "web")))
	if errs != nil {
		t.Fatal(errs)
	}
	if len(s.Warnings) != 1 || !s.Warnings[0].Warning {
		t.Fatalf("warnings = %v", s.Warnings)
	}
	// Alongside an error, the warning is reported too.
	_, errs = load(t, "d.yaml", variant(t, baseDeployment, set(pod+".serviceAccountName", "web"), set("spec.replicas", "-1")))
	if errs.ErrorCount() != 1 || len(errs) != 2 {
		t.Fatalf("want one error and one warning, got:\n%s", errs)
	}
}

func TestIgnoresOtherFiles(t *testing.T) {
	s, errs := load(t, "README.md", "# not yaml: [", "d.yaml", baseDeployment, "Makefile", "all:")
	if errs != nil {
		t.Fatal(errs)
	}
	if len(s.Deployments) != 1 {
		t.Fatalf("got %d deployments", len(s.Deployments))
	}
}

// TestIncremental checks that a Decoder decodes only the files that changed,
// while rules spanning files still see the whole revision.
func TestIncremental(t *testing.T) {
	d := NewDecoder()
	var decoded []string
	d.onDecode = func(path string) { decoded = append(decoded, path) }
	app := variant(t, baseDeployment, set(c0+".envFrom", "[{configMapRef: {name: cfg}}]"))
	rev := func(cm string) []File {
		return []File{
			{Path: "app/deploy.yaml", Data: []byte(app)},
			{Path: "app/cm.yaml", Data: []byte(cm)},
			{Path: "app/svc.yaml", Data: []byte(baseService)},
		}
	}
	expectDecoded := func(step string, want ...string) {
		t.Helper()
		if fmt.Sprint(decoded) != fmt.Sprint(want) {
			t.Errorf("%s: decoded %v, want %v", step, decoded, want)
		}
		decoded = nil
	}

	set1, err := d.Load(rev(baseConfigMap))
	if err != nil {
		t.Fatal(err)
	}
	expectDecoded("first load", "app/cm.yaml", "app/deploy.yaml", "app/svc.yaml")

	// Nothing changed: nothing is decoded, and the Set is a fresh copy.
	set1.Deployments[0].Spec.Template.Labels["mutated"] = "yes"
	set2, err := d.Load(rev(baseConfigMap))
	if err != nil {
		t.Fatal(err)
	}
	expectDecoded("unchanged")
	if _, ok := set2.Deployments[0].Spec.Template.Labels["mutated"]; ok {
		t.Error("a caller's change to one Set leaked into the next")
	}

	// The ConfigMap is renamed: only its file is decoded, yet the (cached)
	// Deployment's reference to it is checked again and fails.
	_, err = d.Load(rev(variant(t, baseConfigMap, set("metadata.name", "other"))))
	expectDecoded("ConfigMap renamed", "app/cm.yaml")
	if err == nil || !strings.Contains(err.Error(), `app/deploy.yaml:`) || !strings.Contains(err.Error(), `envFrom[0].configMapRef.name: Not found: "cfg"`) {
		t.Errorf("cross-file reference not rechecked: %v", err)
	}

	// Back to the first content: that file's old result was dropped from the
	// cache (only the last revision's files are kept), so it is decoded again.
	if _, err := d.Load(rev(baseConfigMap)); err != nil {
		t.Fatal(err)
	}
	expectDecoded("ConfigMap restored", "app/cm.yaml")

	// A file that moves is decoded under its new path, since diagnostics name it.
	files := rev(baseConfigMap)
	files[2].Path = "app/service.yaml"
	if _, err := d.Load(files); err != nil {
		t.Fatal(err)
	}
	expectDecoded("file renamed", "app/service.yaml")
}

// TestListedTwice: a caller bug (the same path twice) is reported, not merged.
func TestListedTwice(t *testing.T) {
	_, errs := load(t, "a.yaml", baseConfigMap, "a.yaml", baseConfigMap)
	if errs == nil || !strings.Contains(errs.Error(), "a.yaml: the revision lists this file twice") {
		t.Fatalf("got %v", errs)
	}
}
