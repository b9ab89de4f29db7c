package probe

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// tracker folds single probe results into a verdict: the verdict flips only
// after successThreshold (or failureThreshold) identical results in a row.
// It is the kubelet worker's bookkeeping with the I/O taken out.
type tracker struct {
	successThreshold int32
	failureThreshold int32
	verdict          Result
	last             Result // last single result
	run              int32  // how many times in a row last was seen
	message          string // why the last failure failed
}

// initialVerdict is what a probe reports before it has run: readiness starts
// failed, liveness passing and startup unknown.
func initialVerdict(k Kind) Result {
	switch k {
	case Readiness:
		return Failure
	case Liveness:
		return Success
	default:
		return Unknown
	}
}

func newTracker(k Kind, p *corev1.Probe) *tracker {
	t := &tracker{successThreshold: p.SuccessThreshold, failureThreshold: p.FailureThreshold, verdict: initialVerdict(k)}
	if t.successThreshold < 1 || k != Readiness {
		// Liveness and startup must use 1; a manifest saying otherwise is
		// invalid in Kubernetes, so the value is not trusted here.
		t.successThreshold = 1
	}
	if t.failureThreshold < 1 {
		t.failureThreshold = 3
	}
	return t
}

// observe records one result and reports whether the verdict changed.
func (t *tracker) observe(r Result, msg string) bool {
	if r == t.last {
		t.run++
	} else {
		t.last, t.run = r, 1
	}
	if r == Failure {
		t.message = msg
	}
	if (r == Failure && t.run < t.failureThreshold) || (r == Success && t.run < t.successThreshold) {
		return false
	}
	if r == t.verdict {
		return false
	}
	t.verdict = r
	return true
}

// Key names one container of one pod.
type Key struct {
	PodUID    string
	Container string
}

// Instance is one run of a container. A restarted container keeps its ID in
// Podman, so the start time tells runs apart; each run gets fresh probes.
type Instance struct {
	ID        string
	StartedAt time.Time
	Target    Target
}

func (i Instance) same(o Instance) bool { return i.ID == o.ID && i.StartedAt.Equal(o.StartedAt) }

// Status is what the probes say about the current run of a container.
type Status struct {
	// Started: the startup probe succeeded, or there is none.
	Started bool
	// Ready: started and the readiness probe succeeded, or there is none.
	Ready bool
	// Failed is set when the liveness probe failed or the startup probe gave
	// up: the container must be killed and restarted per policy.
	Failed bool
	// Message explains the most relevant failing probe, in the kubelet's
	// words ("Readiness probe failed: ..."), or is empty.
	Message string
}

// Manager runs one worker goroutine per probe of every running container.
type Manager struct {
	prober   *Prober
	log      *slog.Logger
	now      func() time.Time
	onChange func()

	mu         sync.Mutex
	containers map[Key]*containerProbes
}

// containerProbes holds the probes of one container run.
type containerProbes struct {
	instance Instance
	probes   map[Kind]*probeState
	cancel   context.CancelFunc
}

type probeState struct {
	spec    *corev1.Probe
	tracker *tracker
	onHold  bool // a final liveness or startup result; wait for a new run
}

// NewManager returns a Manager. onChange is called (from a worker goroutine,
// without locks held) whenever a verdict changes; it must not block.
func NewManager(prober *Prober, logger *slog.Logger, now func() time.Time, onChange func()) *Manager {
	if now == nil {
		now = time.Now
	}
	if onChange == nil {
		onChange = func() {}
	}
	return &Manager{prober: prober, log: logger, now: now, onChange: onChange, containers: map[Key]*containerProbes{}}
}

// Sync makes sure the probes of c run against inst. Probes of an earlier run
// of the same container are stopped and their results dropped. A container
// without probes costs nothing.
func (m *Manager) Sync(ctx context.Context, key Key, c *corev1.Container, inst Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cp, ok := m.containers[key]; ok {
		if cp.instance.same(inst) {
			cp.instance.Target = inst.Target
			return
		}
		cp.cancel()
		delete(m.containers, key)
	}
	specs := map[Kind]*corev1.Probe{Liveness: c.LivenessProbe, Readiness: c.ReadinessProbe, Startup: c.StartupProbe}
	wctx, cancel := context.WithCancel(ctx)
	cp := &containerProbes{instance: inst, probes: map[Kind]*probeState{}, cancel: cancel}
	for k, spec := range specs {
		if spec != nil {
			cp.probes[k] = &probeState{spec: spec, tracker: newTracker(k, spec)}
		}
	}
	m.containers[key] = cp
	for k, ps := range cp.probes {
		go m.work(wctx, key, cp, k, ps)
	}
}

// Remove stops the probes of one container.
func (m *Manager) Remove(key Key) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cp, ok := m.containers[key]; ok {
		cp.cancel()
		delete(m.containers, key)
	}
}

// RemovePod stops the probes of every container of a pod.
func (m *Manager) RemovePod(uid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, cp := range m.containers {
		if k.PodUID == uid {
			cp.cancel()
			delete(m.containers, k)
		}
	}
}

// Status returns the probe verdicts for the run inst of a container. A run
// the manager does not know (not synced yet) gets the initial verdicts of
// c's probes.
func (m *Manager) Status(key Key, c *corev1.Container, inst Instance) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.containers[key]
	if !ok || !cp.instance.same(inst) {
		return statusOf(c, nil)
	}
	return statusOf(c, cp.probes)
}

// statusOf derives a container's probe status from its probes' verdicts; a
// missing probe state means the probe has its initial verdict.
func statusOf(c *corev1.Container, probes map[Kind]*probeState) Status {
	verdict := func(k Kind) (Result, string) {
		if ps, ok := probes[k]; ok {
			return ps.tracker.verdict, ps.tracker.message
		}
		return initialVerdict(k), ""
	}
	var s Status
	startup, startupMsg := verdict(Startup)
	s.Started = c.StartupProbe == nil || startup == Success
	if c.StartupProbe != nil && startup == Failure {
		s.Failed = true
		s.Message = "Startup probe failed: " + startupMsg
		return s
	}
	if s.Started && c.LivenessProbe != nil {
		if v, msg := verdict(Liveness); v == Failure {
			s.Failed = true
			s.Message = "Liveness probe failed: " + msg
		}
	}
	s.Ready = s.Started
	if c.ReadinessProbe != nil {
		v, msg := verdict(Readiness)
		s.Ready = s.Started && v == Success
		if s.Started && v == Failure && msg != "" && s.Message == "" {
			s.Message = "Readiness probe failed: " + msg
		}
	}
	return s
}

// work runs one probe of one container run until ctx ends.
func (m *Manager) work(ctx context.Context, key Key, cp *containerProbes, k Kind, ps *probeState) {
	period := 10 * time.Second // Kubernetes' default periodSeconds
	if ps.spec.PeriodSeconds > 0 {
		period = time.Duration(ps.spec.PeriodSeconds) * time.Second
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		if !m.tick(ctx, key, cp, k, ps) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// tick runs the probe once if it is due and reports whether the worker
// should keep going.
func (m *Manager) tick(ctx context.Context, key Key, cp *containerProbes, k Kind, ps *probeState) bool {
	m.mu.Lock()
	due, keep := m.due(cp, k, ps)
	target := cp.instance.Target
	target.ContainerID = cp.instance.ID
	m.mu.Unlock()
	if !keep || !due {
		return keep
	}
	r, msg, err := m.prober.Probe(ctx, ps.spec, target)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		// A prober error says nothing about the container: keep the verdict.
		m.log.Debug("probe could not run", "pod_uid", key.PodUID, "container", key.Container, "probe", string(k), "err", err)
		return true
	}
	m.mu.Lock()
	changed := ps.tracker.observe(r, msg)
	if changed && ps.tracker.verdict == Failure && (k == Liveness || k == Startup) {
		ps.onHold = true
	}
	if changed && k == Startup {
		ps.onHold = true
	}
	verdict := ps.tracker.verdict
	m.mu.Unlock()
	if changed {
		m.log.Info("probe verdict changed", "pod_uid", key.PodUID, "container", key.Container, "probe", string(k), "result", verdict.String(), "message", msg)
		m.onChange()
	}
	return true
}

// due decides, under m.mu, whether a probe runs now (due) and whether its
// worker has anything left to do (keep).
func (m *Manager) due(cp *containerProbes, k Kind, ps *probeState) (due, keep bool) {
	if ps.onHold {
		// Startup is finished for this run either way; liveness waits for
		// the container to be restarted, which brings a new run.
		return false, k != Startup
	}
	if k != Startup {
		if st, ok := cp.probes[Startup]; ok && st.tracker.verdict != Success {
			return false, true
		}
	}
	if m.now().Sub(cp.instance.StartedAt) < time.Duration(ps.spec.InitialDelaySeconds)*time.Second {
		return false, true
	}
	return true, true
}
