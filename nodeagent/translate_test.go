package nodeagent

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/runtime"
)

func ptr[T any](v T) *T { return &v }

// testPod is a minimal valid pod; mutate it per case.
func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "localhost/berth-hello:v1"}},
		},
	}
}

func testConfig() configIndex {
	return newConfigIndex(&api.Assignment{
		ConfigMaps: []corev1.ConfigMap{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cfg"},
			Data:       map[string]string{"mode": "fast", "greeting": "hi", "bad=key": "x", "nested": "n"},
			BinaryData: map[string][]byte{"blob": {0, 1}},
		}},
		Secrets: []corev1.Secret{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "creds"},
			Data:       map[string][]byte{"password": []byte("s3cret")},
			StringData: map[string]string{"token": "t0k"},
		}},
	})
}

func TestTranslateSpec(t *testing.T) {
	pod := testPod()
	pod.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d9c", Controller: ptr(true)}}
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(5))
	pod.Spec.Containers[0] = corev1.Container{
		Name: "app", Image: "localhost/berth-hello:v1",
		Command: []string{"/hello"}, Args: []string{"--greet=$(GREETING)", "$$(GREETING)"}, WorkingDir: "/srv",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: 18080}, {ContainerPort: 9090}},
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("250m"),
		}},
		Env: []corev1.EnvVar{{Name: "GREETING", Value: "hello"}},
	}
	tr, err := translate(pod, testConfig(), "/data/pods/uid-1", node{Name: "n1", IP: "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.PodSpec{
		Name: "shop_web-1",
		Labels: map[string]string{
			api.LabelManaged: "true", api.LabelNamespace: "shop", api.LabelPod: "web-1",
			api.LabelOwner: "ReplicaSet/web-5d9c", api.LabelUID: "uid-1", LabelGracePeriod: "5",
			api.LabelSpecHash: tr.Hash, LabelNode: "n1",
		},
		Hostname: "web-1",
		PortMaps: []runtime.PortMapping{{HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"}},
		Containers: []runtime.ContainerSpec{{
			Name: "app", Image: "localhost/berth-hello:v1", Command: []string{"/hello"},
			Args: []string{"--greet=hello", "$(GREETING)"}, WorkingDir: "/srv",
			Env:         map[string]string{"GREETING": "hello"},
			MemoryLimit: 64 << 20, CPULimitMilli: 250,
		}},
	}
	if !reflect.DeepEqual(tr.Spec, want) {
		t.Errorf("spec:\n got %+v\nwant %+v", tr.Spec, want)
	}
	if tr.Hash == "" {
		t.Error("empty spec hash")
	}
}

func TestTranslateEnv(t *testing.T) {
	tests := []struct {
		name      string
		env       []corev1.EnvVar
		envFrom   []corev1.EnvFromSource
		wantEnv   map[string]string
		wantPodIP []string
		wantWarn  string
		wantErr   string
	}{
		{name: "literal and expansion of earlier variables",
			env:     []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "$(A)-$(C)"}, {Name: "C", Value: "3"}},
			wantEnv: map[string]string{"A": "1", "B": "1-$(C)", "C": "3"}},
		{name: "configMapKeyRef and secretKeyRef",
			env: []corev1.EnvVar{
				{Name: "MODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "mode"}}},
				{Name: "PASS", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
				{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}}},
			},
			wantEnv: map[string]string{"MODE": "fast", "PASS": "s3cret", "TOKEN": "t0k"}},
		{name: "optional references to missing objects and keys are skipped",
			env: []corev1.EnvVar{
				{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: ptr(true)}}},
				{Name: "Y", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "nokey", Optional: ptr(true)}}},
			},
			envFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: ptr(true)}}},
			wantEnv: map[string]string{}},
		{name: "missing configmap is an error",
			env:     []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}},
			wantErr: `configmap "nope" not found`},
		{name: "missing secret key is an error",
			env:     []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "nokey"}}}},
			wantErr: "couldn't find key nokey in Secret shop/creds"},
		{name: "field references; podIP left to the runtime",
			env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
				{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
				{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			},
			wantEnv:   map[string]string{"POD_NAME": "web-1", "POD_NS": "shop", "APP": "web", "HOST_IP": "192.0.2.10"},
			wantPodIP: []string{"POD_IP"}},
		{name: "a later literal overrides a podIP reference",
			env: []corev1.EnvVar{
				{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "IP", Value: "fixed"},
			},
			wantEnv: map[string]string{"IP": "fixed"}},
		{name: "unsupported field reference",
			env:     []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.schedulerName"}}}},
			wantErr: "not supported"},
		{name: "envFrom with prefix, invalid keys skipped with a warning, env wins",
			envFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}, Prefix: "CFG_"},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
			},
			env:      []corev1.EnvVar{{Name: "token", Value: "override"}},
			wantEnv:  map[string]string{"CFG_mode": "fast", "CFG_greeting": "hi", "CFG_nested": "n", "CFG_blob": "\x00\x01", "password": "s3cret", "token": "override"},
			wantWarn: "keys [CFG_bad=key] from the EnvFrom configmap shop/cfg were skipped"},
		{name: "resourceFieldRef from the container's limit",
			env:     []corev1.EnvVar{{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}}},
			wantEnv: map[string]string{"MEM": "64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			c := &pod.Spec.Containers[0]
			c.Env, c.EnvFrom = tc.env, tc.envFrom
			c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
			tr, err := translate(pod, testConfig(), "/data/pods/uid-1", node{Name: "n1", IP: "192.0.2.10"})
			if tc.wantErr != "" {
				var ce *configError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ce) {
					t.Fatalf("err = %v, want a config error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := tr.Spec.Containers[0]
			if !reflect.DeepEqual(got.Env, tc.wantEnv) {
				t.Errorf("env = %v, want %v", got.Env, tc.wantEnv)
			}
			if !reflect.DeepEqual(got.PodIPEnv, tc.wantPodIP) {
				t.Errorf("podIP env = %v, want %v", got.PodIPEnv, tc.wantPodIP)
			}
			warn := strings.Join(tr.Warnings, "\n")
			if (tc.wantWarn == "") != (warn == "") || !strings.Contains(warn, tc.wantWarn) {
				t.Errorf("warnings = %q, want %q", warn, tc.wantWarn)
			}
		})
	}
}

func TestTranslateVolumes(t *testing.T) {
	tests := []struct {
		name       string
		volumes    []corev1.Volume
		mounts     []corev1.VolumeMount
		wantPlans  []volumePlan
		wantMounts []runtime.Mount
		wantErr    string
	}{
		{name: "configMap with all keys and default mode, read-only",
			volumes: []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}},
			mounts:  []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/app"}},
			wantPlans: []volumePlan{{Name: "conf", Kind: volumeConfigMap, Files: []volumeFile{
				{Path: "bad=key", Data: []byte("x"), Mode: 0o644}, {Path: "blob", Data: []byte{0, 1}, Mode: 0o644},
				{Path: "greeting", Data: []byte("hi"), Mode: 0o644}, {Path: "mode", Data: []byte("fast"), Mode: 0o644},
				{Path: "nested", Data: []byte("n"), Mode: 0o644},
			}}},
			wantMounts: []runtime.Mount{{Source: "/data/pods/uid-1/volumes/conf", Destination: "/etc/app", ReadOnly: true}}},
		{name: "configMap items with modes and subPath",
			volumes: []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, DefaultMode: ptr(int32(0o640)),
				Items: []corev1.KeyToPath{{Key: "mode", Path: "app/mode.txt"}, {Key: "greeting", Path: "greeting", Mode: ptr(int32(0o755))}},
			}}}},
			mounts: []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/greeting", SubPath: "greeting"}},
			wantPlans: []volumePlan{{Name: "conf", Kind: volumeConfigMap, Files: []volumeFile{
				{Path: "app/mode.txt", Data: []byte("fast"), Mode: 0o640}, {Path: "greeting", Data: []byte("hi"), Mode: 0o755},
			}}},
			wantMounts: []runtime.Mount{{Source: "/data/pods/uid-1/volumes/conf/greeting", Destination: "/etc/greeting", ReadOnly: true}}},
		{name: "secret files are private to their owner whatever the mode asks",
			volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "creds", DefaultMode: ptr(int32(0o644)), Items: []corev1.KeyToPath{{Key: "password", Path: "pw"}, {Key: "token", Path: "tok", Mode: ptr(int32(0o444))}},
			}}}},
			mounts: []corev1.VolumeMount{{Name: "s", MountPath: "/run/secrets"}},
			wantPlans: []volumePlan{{Name: "s", Kind: volumeSecret, Files: []volumeFile{
				{Path: "pw", Data: []byte("s3cret"), Mode: 0o600}, {Path: "tok", Data: []byte("t0k"), Mode: 0o400},
			}}},
			wantMounts: []runtime.Mount{{Source: "/data/pods/uid-1/volumes/s", Destination: "/run/secrets", ReadOnly: true}}},
		{name: "emptyDir with subPath, writable unless readOnly",
			volumes:   []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			mounts:    []corev1.VolumeMount{{Name: "scratch", MountPath: "/tmp"}, {Name: "scratch", MountPath: "/cache", SubPath: "c/d", ReadOnly: true}},
			wantPlans: []volumePlan{{Name: "scratch", Kind: volumeEmptyDir, SubDirs: []string{"c/d"}}},
			wantMounts: []runtime.Mount{
				{Source: "/data/pods/uid-1/volumes/scratch", Destination: "/tmp"},
				{Source: "/data/pods/uid-1/volumes/scratch/c/d", Destination: "/cache", ReadOnly: true},
			}},
		{name: "optional missing configMap gives an empty volume",
			volumes:    []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptr(true)}}}},
			wantPlans:  []volumePlan{{Name: "conf", Kind: volumeConfigMap}},
			wantMounts: nil},
		{name: "missing secret", volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "nope"}}}},
			wantErr: `secret "nope" not found`},
		{name: "missing item key", volumes: []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "zzz", Path: "z"}}}}}},
			wantErr: `configmap "cfg" has no key "zzz"`},
		{name: "item path escaping the volume", volumes: []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "mode", Path: "../x"}}}}}},
			wantErr: "may not contain '..'"},
		{name: "subPath escaping the volume", volumes: []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			mounts: []corev1.VolumeMount{{Name: "e", MountPath: "/x", SubPath: "../../etc"}}, wantErr: "may not contain '..'"},
		{name: "hostPath is refused", volumes: []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
			wantErr: "only emptyDir, configMap and secret volumes"},
		{name: "mount of an unknown volume", mounts: []corev1.VolumeMount{{Name: "ghost", MountPath: "/x"}},
			wantErr: `volumeMount "ghost" names no volume`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			pod.Spec.Volumes = tc.volumes
			pod.Spec.Containers[0].VolumeMounts = tc.mounts
			tr, err := translate(pod, testConfig(), "/data/pods/uid-1", node{Name: "n1"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tr.Volumes, tc.wantPlans) {
				t.Errorf("volumes:\n got %+v\nwant %+v", tr.Volumes, tc.wantPlans)
			}
			if !reflect.DeepEqual(tr.Spec.Containers[0].Mounts, tc.wantMounts) {
				t.Errorf("mounts:\n got %+v\nwant %+v", tr.Spec.Containers[0].Mounts, tc.wantMounts)
			}
		})
	}
}

func TestSpecHash(t *testing.T) {
	base, err := translate(testPod(), testConfig(), "/d", node{Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := translate(testPod(), testConfig(), "/d", node{Name: "n1"})
	if base.Hash != again.Hash {
		t.Fatalf("hash not stable: %s vs %s", base.Hash, again.Hash)
	}
	changes := map[string]func(*corev1.Pod){
		"image":        func(p *corev1.Pod) { p.Spec.Containers[0].Image = "localhost/berth-hello:v2" },
		"env":          func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}} },
		"grace period": func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(1)) },
		"host port": func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
		},
		"configMap volume content": func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
		},
	}
	for name, change := range changes {
		pod := testPod()
		change(pod)
		tr, err := translate(pod, testConfig(), "/d", node{Name: "n1"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tr.Hash == base.Hash {
			t.Errorf("changing the %s does not change the spec hash", name)
		}
	}
	// ConfigMap content rolls Deployments through the controller; a running
	// pod must not be replaced behind the rollout's back.
	cfg := testConfig()
	for k, cm := range cfg.configMaps {
		changed := cm.DeepCopy()
		changed.Data = map[string]string{"changed": "yes"}
		cfg.configMaps[k] = changed
	}
	if tr, _ := translate(testPod(), cfg, "/d", node{Name: "n1"}); tr.Hash != base.Hash {
		t.Error("a ConfigMap content change must not replace a running pod")
	}
	// Probes and the restart policy are the agent's business, not Podman's.
	pod := testPod()
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 3}
	if tr, _ := translate(pod, testConfig(), "/d", node{Name: "n1"}); tr.Hash != base.Hash {
		t.Error("a probe or restart policy change must not replace the pod")
	}
}

func TestTranslateRefusesUnsupported(t *testing.T) {
	for name, change := range map[string]func(*corev1.Pod){
		"initContainers": func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x"}} },
		"hostNetwork":    func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"sctp": func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 1, HostPort: 1, Protocol: corev1.ProtocolSCTP}}
		},
	} {
		pod := testPod()
		change(pod)
		if _, err := translate(pod, testConfig(), "/d", node{Name: "n1"}); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestHostname(t *testing.T) {
	pod := testPod()
	pod.Name = strings.Repeat("a", 62) + "-bcd"
	if h := hostnameOf(pod); h != strings.Repeat("a", 62) {
		t.Errorf("hostname = %q", h)
	}
	pod.Spec.Hostname = "custom"
	if h := hostnameOf(pod); h != "custom" {
		t.Errorf("hostname = %q", h)
	}
}
