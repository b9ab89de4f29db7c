package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/store"
	"berth.dev/berth/sources"
)

// These tests drive the controller through its public surface (Sync,
// Report, Assignment, Status) with an in-memory source and the real bbolt
// store; the node is played by the test. End-to-end behaviour with real
// Podman and Git is covered in cmd/berth.

type memSource struct {
	mu  sync.Mutex
	rev sources.Revision
	err error
}

func (s *memSource) set(id, subject string, files map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev := sources.Revision{ID: id, Subject: subject, Author: "test <t@example.invalid>", Time: time.Unix(1700000000, 0)}
	for p, d := range files {
		rev.Files = append(rev.Files, sources.File{Path: p, Data: []byte(d)})
	}
	s.rev, s.err = rev, nil
}

func (s *memSource) Fetch(context.Context) (sources.Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, s.err
}

func (s *memSource) String() string { return "mem" }

type seqNames struct {
	mu sync.Mutex
	n  int
}

func (s *seqNames) PodName(owner string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprintf("%s-%05d", owner, s.n)
}

func (s *seqNames) UID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprintf("uid-%d", s.n)
}

type fixture struct {
	t     *testing.T
	src   *memSource
	db    *store.DB
	c     *Controller
	stop  context.CancelFunc
	done  chan struct{}
	names *seqNames
}

func newFixture(t *testing.T, src *memSource, dbPath string) *fixture {
	t.Helper()
	db, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, src: src, db: db, names: &seqNames{}}
	f.c, err = New(context.Background(), Config{Source: src, Store: db, Names: f.names, PollInterval: time.Hour, NodeGrace: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop, f.done = cancel, make(chan struct{})
	go func() { f.c.Run(ctx); close(f.done) }()
	t.Cleanup(f.close)
	// The node registers with an empty report, as an agent does at start.
	if err := f.c.Report(ctx, api.NodeReport{Node: "n1", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) close() {
	if f.stop == nil {
		return
	}
	f.stop()
	<-f.done
	f.db.Close()
	f.stop = nil
}

func (f *fixture) sync() api.SyncResult {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.c.Sync(ctx)
}

// report plays node n1: every assigned pod is reported with the status
// given by state (nil means the pod is not reported at all).
func (f *fixture) report(state func(p corev1.Pod) *corev1.PodStatus) api.Assignment {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := f.c.Assignment(ctx, "n1", -1)
	if err != nil {
		f.t.Fatal(err)
	}
	r := api.NodeReport{Node: "n1", Generation: a.Generation, Time: time.Now()}
	for _, p := range a.Pods {
		if st := state(p); st != nil {
			r.Pods = append(r.Pods, api.PodReport{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Status: *st})
		}
	}
	if err := f.c.Report(ctx, r); err != nil {
		f.t.Fatal(err)
	}
	return a
}

func readyStatus(p corev1.Pod) *corev1.PodStatus {
	since := metav1.NewTime(time.Now().Add(-time.Hour))
	return &corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "10.88.0." + fmt.Sprint(len(p.Name)%200+2),
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: since}},
	}
}

// converge reports until the assignment stops changing and status says the
// Deployment is healthy, or fails.
func (f *fixture) converge(state func(p corev1.Pod) *corev1.PodStatus, until func(api.Status) bool) api.Assignment {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a := f.report(state)
		if until(f.c.Status()) {
			return a
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("no convergence; status %+v", f.c.Status())
	return api.Assignment{}
}

func deploymentHealthy(ns, name string, replicas int32) func(api.Status) bool {
	return func(s api.Status) bool {
		for _, d := range s.Deployments {
			if d.Namespace == ns && d.Name == name {
				return d.Health == "Healthy" && d.Available == replicas && d.Updated == replicas
			}
		}
		return false
	}
}

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  progressDeadlineSeconds: 600
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: localhost/web:IMAGE
          ports: [{name: http, containerPort: 8080}]
`

const webService = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
`

func web(image string) map[string]string {
	return map[string]string{"deploy/web.yaml": strings.Replace(webDeployment, "IMAGE", image, 1), "deploy/svc.yaml": webService}
}

func podNames(a api.Assignment) map[string]bool {
	out := map[string]bool{}
	for _, p := range a.Pods {
		out[p.Name] = true
	}
	return out
}

func TestDeployRefuseRestartAndServices(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "berth.db")
	src := &memSource{}
	src.set("c1", "v1", web("v1"))
	f := newFixture(t, src, dbPath)
	if res := f.sync(); res.Error != "" || res.Applied == nil || res.Applied.ID != "c1" {
		t.Fatalf("sync c1: %+v", res)
	}
	a := f.converge(readyStatus, deploymentHealthy("default", "web", 2))
	if len(a.Pods) != 2 {
		t.Fatalf("%d pods assigned, want 2", len(a.Pods))
	}
	if s := f.c.Status(); s.Sync != api.SyncSynced {
		t.Fatalf("sync state %s, want Synced", s.Sync)
	}

	t.Run("service table has the allocated addresses and the ready endpoints", func(t *testing.T) {
		if len(a.Services) != 1 {
			t.Fatalf("services %+v", a.Services)
		}
		s := a.Services[0]
		if s.ClusterIP != "10.96.0.1" || s.Ports[0].NodePort != 30000 || len(s.Ports[0].Endpoints) != 2 || s.Ports[0].Endpoints[0].Port != 8080 {
			t.Fatalf("service %+v", s)
		}
	})

	t.Run("an unready pod leaves the endpoints", func(t *testing.T) {
		var unready string
		for name := range podNames(a) {
			unready = name
			break
		}
		a := f.converge(func(p corev1.Pod) *corev1.PodStatus {
			st := readyStatus(p)
			if p.Name == unready {
				st.Conditions[0].Status = corev1.ConditionFalse
			}
			return st
		}, func(api.Status) bool { return true })
		deadline := time.Now().Add(5 * time.Second)
		for ; len(a.Services[0].Ports[0].Endpoints) != 1 && time.Now().Before(deadline); a = f.report(readyStatus) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			a, _ = f.c.Assignment(ctx, "n1", a.Generation)
			cancel()
		}
		if n := len(a.Services[0].Ports[0].Endpoints); n != 1 {
			t.Fatalf("%d endpoints with one pod unready, want 1", n)
		}
		f.converge(readyStatus, deploymentHealthy("default", "web", 2))
	})

	before := podNames(f.report(readyStatus))
	t.Run("an invalid revision is refused and changes nothing", func(t *testing.T) {
		bad := web("v2")
		bad["deploy/web.yaml"] = strings.Replace(bad["deploy/web.yaml"], "image:", "imagee:", 1)
		src.set("c2", "typo", bad)
		res := f.sync()
		if !strings.Contains(res.Error, "deploy/web.yaml") || !strings.Contains(res.Error, "imagee") || res.Applied.ID != "c1" {
			t.Fatalf("sync of a bad revision: %+v", res)
		}
		if after := podNames(f.report(readyStatus)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("pods changed: %v -> %v", before, after)
		}
		if s := f.c.Status(); s.Sync != api.SyncOutOfSync || s.Head.ID != "c2" {
			t.Fatalf("status after refusal: %s head %v", s.Sync, s.Head)
		}
	})

	t.Run("a fetch failure keeps the applied revision and shows in status", func(t *testing.T) {
		src.mu.Lock()
		src.err = fmt.Errorf("connection refused")
		src.mu.Unlock()
		res := f.sync()
		if !strings.Contains(res.Error, "connection refused") || res.Applied == nil || res.Applied.ID != "c1" {
			t.Fatalf("sync with the source away: %+v", res)
		}
		if s := f.c.Status(); !strings.Contains(s.LastError, "fetch mem: connection refused") || s.Applied.ID != "c1" {
			t.Fatalf("status with the source away: error %q, applied %v", s.LastError, s.Applied)
		}
		if after := podNames(f.report(readyStatus)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("pods changed while the source was away: %v -> %v", before, after)
		}
		src.mu.Lock()
		src.err = nil
		src.mu.Unlock()
	})

	t.Run("a Service asking for a taken NodePort refuses the revision", func(t *testing.T) {
		files := web("v1")
		files["deploy/other.yaml"] = strings.NewReplacer("name: web", "name: other", "targetPort: http", "targetPort: http, nodePort: 30000").Replace(webService)
		src.set("c3", "clash", files)
		res := f.sync()
		if !strings.Contains(res.Error, "deploy/other.yaml") || !strings.Contains(res.Error, "spec.ports[0].nodePort") || !strings.Contains(res.Error, "already allocated to default/web") {
			t.Fatalf("sync of a clashing Service: %+v", res)
		}
	})

	t.Run("a restarted controller adopts the pods without changing them", func(t *testing.T) {
		f.close()
		g := newFixture(t, src, dbPath)
		// Before the node reports, nothing may be planned from "unknown".
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// An agent still holding a generation of the previous life gets the
		// current assignment at once instead of waiting out a long-poll.
		start := time.Now()
		if _, err := g.c.Assignment(ctx, "n1", 1<<40); err != nil || time.Since(start) > time.Second {
			t.Fatalf("assignment after a restart with a stale generation: %v after %s", err, time.Since(start))
		}
		a, err := g.c.Assignment(ctx, "n1", -1)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(podNames(a)) != fmt.Sprint(before) {
			t.Fatalf("restart changed the assignment: %v -> %v", before, podNames(a))
		}
		g.converge(readyStatus, deploymentHealthy("default", "web", 2))
		if after := podNames(g.report(readyStatus)); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("pods changed across a restart: %v -> %v", before, after)
		}
		if s := g.c.Status(); s.Applied == nil || s.Applied.ID != "c1" {
			t.Fatalf("applied after restart: %+v", s.Applied)
		}
		svcs := g.c.Services("default")
		if len(svcs) != 1 || svcs[0].Spec.ClusterIP != "10.96.0.1" || svcs[0].Spec.Ports[0].NodePort != 30000 {
			t.Fatalf("allocations not kept across a restart: %+v", svcs)
		}
	})
}

func TestCrashLoopingRolloutIsRolledBack(t *testing.T) {
	src := &memSource{}
	src.set("c1", "v1", web("v1"))
	f := newFixture(t, src, filepath.Join(t.TempDir(), "berth.db"))
	f.sync()
	f.converge(readyStatus, deploymentHealthy("default", "web", 2))

	src.set("c2", "broken v2", web("v2"))
	if res := f.sync(); res.Error != "" {
		t.Fatal(res.Error)
	}
	// v2 pods crash-loop; v1 pods stay ready.
	crashing := func(p corev1.Pod) *corev1.PodStatus {
		if p.Spec.Containers[0].Image == "localhost/web:v1" {
			return readyStatus(p)
		}
		return &corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.88.1.1", ContainerStatuses: []corev1.ContainerStatus{{
			Name: "web", RestartCount: 5, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		}}}
	}
	f.converge(crashing, func(s api.Status) bool {
		d := s.Deployments[0]
		return d.RolledBackFrom != nil && d.Health == "Degraded"
	})
	a := f.converge(crashing, func(s api.Status) bool { return s.Deployments[0].Updated == 2 && s.Deployments[0].Available == 2 })
	for _, p := range a.Pods {
		if p.Spec.Containers[0].Image != "localhost/web:v1" {
			t.Fatalf("pod %s runs %s after the rollback", p.Name, p.Spec.Containers[0].Image)
		}
	}
	s := f.c.Status()
	d := s.Deployments[0]
	if d.RolledBackFrom.ID != "c2" || !strings.Contains(d.Reason, "CrashLoopBackOff") || s.Sync != api.SyncOutOfSync {
		t.Fatalf("status after rollback: %+v sync %s", d, s.Sync)
	}
	h, err := f.c.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.Outcome != api.OutcomeRolledBack || last.Revision.ID != "c2" {
		t.Fatalf("last history entry %+v", last)
	}

	// git revert: Git asks for v1 again; Synced and Healthy, no pod restarted.
	before := podNames(a)
	src.set("c3", "Revert broken v2", web("v1"))
	if res := f.sync(); res.Error != "" {
		t.Fatal(res.Error)
	}
	a = f.converge(crashing, func(s api.Status) bool {
		return s.Sync == api.SyncSynced && s.Deployments[0].Health == "Healthy" && s.Deployments[0].RolledBackFrom == nil
	})
	if after := podNames(a); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("revert restarted pods: %v -> %v", before, after)
	}
}
