package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

// controlPlane is an in-memory stand-in for the controller's API.
type controlPlane struct {
	mu      sync.Mutex
	asg     api.Assignment
	changed chan struct{}
	last    *api.NodeReport
}

func (c *controlPlane) Assignment(ctx context.Context, node string, after int64) (api.Assignment, error) {
	c.mu.Lock()
	asg, ch := c.asg, c.changed
	c.mu.Unlock()
	if asg.Generation > after {
		return asg, nil
	}
	select {
	case <-ctx.Done():
		return api.Assignment{}, ctx.Err()
	case <-ch:
	case <-time.After(5 * time.Second):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asg, nil
}

func (c *controlPlane) Report(ctx context.Context, r api.NodeReport) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = &r
	return nil
}

func (c *controlPlane) assign(pods []corev1.Pod, cms []corev1.ConfigMap, secrets []corev1.Secret) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asg = api.Assignment{Node: c.asg.Node, Generation: c.asg.Generation + 1, Pods: pods, ConfigMaps: cms, Secrets: secrets}
	close(c.changed)
	c.changed = make(chan struct{})
}

// pod returns the newest reported status of a pod still assigned.
func (c *controlPlane) pod(name string) (api.PodReport, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		return api.PodReport{}, false
	}
	for _, p := range c.last.Pods {
		if p.Namespace == "it" && p.Name == name && !p.Terminating {
			return p, true
		}
	}
	return api.PodReport{}, false
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last seen: %s", what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func condition(st corev1.PodStatus, typ corev1.PodConditionType) corev1.PodCondition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.PodCondition{}
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestAgentWithPodman(t *testing.T) {
	podmantest.Require(t)
	image := podmantest.HelloImage(t, "v1")
	uri := podmantest.Service(t)
	nodeName := "agent-it-" + randomSuffix(t)
	podmantest.Cleanup(t, nodeagent.LabelNode+"="+nodeName)

	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := podman.New(ctx, uri, logger, podman.Options{})
	if err != nil {
		t.Fatalf("podman.New: %v", err)
	}
	cp := &controlPlane{asg: api.Assignment{Node: nodeName}, changed: make(chan struct{})}
	dataDir := t.TempDir()
	agent, err := nodeagent.New(nodeagent.Config{
		NodeName: nodeName, DataDir: dataDir, Runtime: rt, ControlPlane: cp, Logger: logger,
		ReportInterval: time.Second, SyncInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	grace := int64(2)
	httpProbe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			PeriodSeconds: 1, FailureThreshold: 1,
		}
	}
	newPod := func(name string, c corev1.Container) corev1.Pod {
		c.Name, c.Image = "app", image
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "it", Name: name, UID: types.UID("uid-" + name + "-" + randomSuffix(t))},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: &grace},
		}
	}
	web := newPod("web", corev1.Container{
		Env: []corev1.EnvVar{
			{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}, Key: "greeting"}}},
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		EnvFrom:        []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}},
		VolumeMounts:   []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/conf"}, {Name: "creds", MountPath: "/run/creds"}},
		ReadinessProbe: httpProbe("/readyz"),
		LivenessProbe:  httpProbe("/healthz"),
	})
	web.Spec.Volumes = []corev1.Volume{
		{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}},
		{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds",
			Items: []corev1.KeyToPath{{Key: "password", Path: "password"}, {Key: "token", Path: "token", Mode: ptr(int32(0o444))}}}}},
	}
	notReady := newPod("notready", corev1.Container{
		Env:            []corev1.EnvVar{{Name: "READY_FAIL", Value: "1"}},
		ReadinessProbe: httpProbe("/readyz"),
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/hello", "check", "http://127.0.0.1:8080/healthz"}}},
			PeriodSeconds: 2, TimeoutSeconds: 5, FailureThreshold: 2,
		},
	})
	crasher := newPod("crasher", corev1.Container{Args: []string{"exit", "1"}})
	cms := []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Namespace: "it", Name: "conf"}, Data: map[string]string{"greeting": "hello from a configmap"}}}
	secrets := []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "it", Name: "creds"}, Data: map[string][]byte{"password": []byte("s3cret-pw"), "token": []byte("tok")}}}
	cp.assign([]corev1.Pod{web, notReady, crasher}, cms, secrets)

	var webIP string
	t.Run("web becomes ready and serves its config", func(t *testing.T) {
		eventually(t, "web to be Ready", func() (bool, string) {
			p, ok := cp.pod("web")
			webIP = p.Status.PodIP
			return ok && condition(p.Status, corev1.PodReady).Status == corev1.ConditionTrue, fmt.Sprintf("%+v", p.Status)
		})
		for query, want := range map[string]string{
			"env?name=GREETING":             "hello from a configmap",
			"env?name=CFG_greeting":         "hello from a configmap",
			"env?name=PASSWORD":             "s3cret-pw",
			"env?name=POD_NAME":             "web",
			"file?path=/etc/conf/greeting":  "hello from a configmap",
			"file?path=/run/creds/password": "s3cret-pw",
		} {
			got, err := httpGet("http://" + webIP + ":8080/" + query)
			if err != nil || got != want {
				t.Errorf("GET /%s = %q, %v; want %q", query, got, err, want)
			}
		}
	})

	t.Run("secret files are private", func(t *testing.T) {
		dir := filepath.Join(dataDir, "pods", string(web.UID), "volumes", "creds")
		want := map[string]os.FileMode{"": 0o700 | os.ModeDir, "password": 0o600, "token": 0o400}
		for rel, mode := range want {
			fi, err := os.Stat(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != mode || fi.Mode().Perm()&0o007 != 0 {
				t.Errorf("%s: mode %v, want %v", filepath.Join("creds", rel), fi.Mode(), mode)
			}
		}
	})

	t.Run("failing readiness shows the probe message", func(t *testing.T) {
		eventually(t, "notready to report its readiness failure", func() (bool, string) {
			p, _ := cp.pod("notready")
			c := condition(p.Status, corev1.PodReady)
			running := len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
			return running && c.Status == corev1.ConditionFalse &&
				strings.Contains(c.Message, "Readiness probe failed: HTTP probe failed with statuscode: 500"), fmt.Sprintf("%+v", c)
		})
		if p, _ := cp.pod("notready"); p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("the exec liveness probe should pass, but the container restarted: %+v", p.Status.ContainerStatuses[0])
		}
	})

	t.Run("a crashing container backs off", func(t *testing.T) {
		eventually(t, "crasher to be in CrashLoopBackOff", func() (bool, string) {
			p, _ := cp.pod("crasher")
			if len(p.Status.ContainerStatuses) != 1 {
				return false, "no status"
			}
			c := p.Status.ContainerStatuses[0]
			w, lt := c.State.Waiting, c.LastTerminationState.Terminated
			return c.RestartCount >= 1 && w != nil && w.Reason == "CrashLoopBackOff" && lt != nil && lt.ExitCode == 1 && lt.Reason == "Error",
				fmt.Sprintf("%+v", c)
		})
	})

	t.Run("a pod removed by hand comes back", func(t *testing.T) {
		cmd := exec.Command("podman", "pod", "rm", "-f", "-t", "0", "it_web")
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+podmantest.ContainersConf(t))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("podman pod rm: %v\n%s", err, out)
		}
		eventually(t, "web to serve again", func() (bool, string) {
			p, ok := cp.pod("web")
			if !ok || condition(p.Status, corev1.PodReady).Status != corev1.ConditionTrue {
				return false, fmt.Sprintf("%+v", p.Status)
			}
			got, err := httpGet("http://" + p.Status.PodIP + ":8080/env?name=GREETING")
			return err == nil && got == "hello from a configmap", fmt.Sprintf("%q %v", got, err)
		})
	})

	t.Run("an unassigned pod is stopped and its files removed", func(t *testing.T) {
		cp.assign([]corev1.Pod{notReady, crasher}, cms, secrets)
		eventually(t, "web to be gone", func() (bool, string) {
			_, err := rt.InspectPod(ctx, "it_web")
			return err != nil, fmt.Sprintf("inspect: %v", err)
		})
		eventually(t, "web's files to be gone", func() (bool, string) {
			_, err := os.Stat(filepath.Join(dataDir, "pods", string(web.UID)))
			return errors.Is(err, os.ErrNotExist), fmt.Sprintf("stat: %v", err)
		})
	})
}

func ptr[T any](v T) *T { return &v }
