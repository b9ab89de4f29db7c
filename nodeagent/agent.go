// Package nodeagent is berth's node agent: it follows its node's assignment
// from the control plane, runs the assigned pods through a container
// runtime (Podman), restarts their containers with Kubernetes' back-off,
// runs their probes, and reports their status back.
//
// The agent is level-triggered: every pass lines up the assigned pods with
// what the runtime reports and fixes the difference, so a missed event, a
// pod removed by hand or an agent restart costs one pass and nothing more.
package nodeagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/netroute"
	"berth.dev/berth/nodeagent/probe"
	"berth.dev/berth/nodeagent/runtime"
)

// ControlPlane is the agent's view of the controller.
type ControlPlane interface {
	// Assignment blocks until the node's assignment has a Generation > after
	// (or a server-side timeout / ctx end) and returns the newest one.
	Assignment(ctx context.Context, node string, after int64) (api.Assignment, error)
	// Report sends the node's observed state; it doubles as a heartbeat.
	Report(ctx context.Context, r api.NodeReport) error
}

// Config configures an Agent.
type Config struct {
	NodeName string
	// DataDir holds the agent's state file, its last assignment and the
	// pods' volume files under pods/<uid>/volumes/<name>/.
	DataDir      string
	Runtime      runtime.Runtime
	ControlPlane ControlPlane
	Logger       *slog.Logger
	// Clock defaults to time.Now. Restart back-off follows it.
	Clock func() time.Time
	// ReportInterval is the heartbeat period; default 10 s.
	ReportInterval time.Duration
	// SyncInterval is how often the agent compares the runtime with the
	// assignment when nothing else wakes it; default 2 s.
	SyncInterval time.Duration
	// ShutdownDelay is how long a pod that is being removed keeps running
	// after it has left this node's Services and before it gets SIGTERM,
	// so that the other nodes' proxies, which learn of it at the same time,
	// stop sending it new connections first (Nomad's shutdown_delay). Zero
	// suits a single host, where the local rules are the only ones.
	ShutdownDelay time.Duration
	Labels        map[string]string
	// Addresses are the node's addresses; the first is where other nodes
	// and the controller reach it, and what status.hostIP means. Empty:
	// the source address of the default route (netroute.HostAddress).
	Addresses []string
	// PodSubnet is the CIDR this node's pods get addresses from, reported
	// as is. Empty: asked from the runtime when it can tell (Podman: its
	// pod network's subnet).
	PodSubnet string
	// Capacity defaults to the host's CPUs and memory.
	Capacity corev1.ResourceList
	// Services programs the assignment's service table on the host
	// (nodeagent/proxy). Nil leaves Services unprogrammed.
	Services ServiceProgrammer
	// Routes keeps routes to the other nodes' pod subnets
	// (nodeagent/netroute). Nil leaves the routing table alone.
	Routes RouteProgrammer
}

// Agent runs one node's pods. Build it with New and call Run once.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	probes *probe.Manager

	kick         chan struct{} // wakes the reconcile loop
	changed      chan struct{} // wakes the report loop
	servicesKick chan struct{} // wakes the services loop
	routesKick   chan struct{} // wakes the routes loop
	svcMu        sync.Mutex    // serialises service programming
	bg           sync.WaitGroup

	mu             sync.Mutex
	assignment     *api.Assignment // nil until one is known
	podSubnet      string          // Config.PodSubnet, or the runtime's once known
	translated     map[string]translated
	observed       map[string]runtime.Pod // by Podman pod name, as of the last pass
	records        map[recordKey]*containerRecord
	terminating    map[string]terminatingPod // by Podman pod name
	stopping       map[string]bool           // container IDs being stopped after a failed probe
	createFailures map[string]createFailure  // by pod UID
	conditions     conditionClock
	stateDirty     bool
}

// translated caches a pod's translation for one assignment generation.
type translated struct {
	tr  translation
	err error
}

// recordKey names a container of a pod across restarts.
type recordKey struct {
	UID       string
	Container string
}

// terminatingPod is a pod being stopped and removed.
type terminatingPod struct {
	pod runtime.Pod
}

// New checks cfg and returns an agent.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.NodeName == "":
		return nil, errors.New("nodeagent: NodeName is required")
	case cfg.DataDir == "":
		return nil, errors.New("nodeagent: DataDir is required")
	case cfg.Runtime == nil:
		return nil, errors.New("nodeagent: Runtime is required")
	case cfg.ControlPlane == nil:
		return nil, errors.New("nodeagent: ControlPlane is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = 10 * time.Second
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 2 * time.Second
	}
	if cfg.Capacity == nil {
		c, err := hostCapacity()
		if err != nil {
			return nil, fmt.Errorf("nodeagent: %w", err)
		}
		cfg.Capacity = c
	}
	if len(cfg.Addresses) == 0 {
		// Detected once: the address also feeds status.hostIP, which must
		// not change under a running pod.
		own, _ := netip.ParsePrefix(cfg.PodSubnet)
		if addr, err := netroute.HostAddress(own); err != nil {
			cfg.Logger.Warn("no node address to report; other nodes cannot route to this one's pods", "err", err)
		} else {
			cfg.Addresses = []string{addr.String()}
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("nodeagent: data dir: %w", err)
	}
	a := &Agent{
		cfg:            cfg,
		log:            cfg.Logger.With("node", cfg.NodeName),
		now:            cfg.Clock,
		kick:           make(chan struct{}, 1),
		changed:        make(chan struct{}, 1),
		servicesKick:   make(chan struct{}, 1),
		routesKick:     make(chan struct{}, 1),
		podSubnet:      cfg.PodSubnet,
		translated:     map[string]translated{},
		observed:       map[string]runtime.Pod{},
		records:        map[recordKey]*containerRecord{},
		terminating:    map[string]terminatingPod{},
		stopping:       map[string]bool{},
		createFailures: map[string]createFailure{},
		conditions:     conditionClock{},
	}
	a.probes = probe.NewManager(probe.NewProber(cfg.Runtime), a.log, cfg.Clock, func() { a.wake(a.kick) })
	return a, nil
}

// Run runs the agent until ctx ends. The control plane may come and go: the
// pods keep running on the last assignment the agent knew (saved in
// DataDir), and the agent resyncs when it is back.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.loadState(); err != nil {
		// A lost state file costs restart counts, not pods.
		a.log.Warn("agent state not restored", "err", err)
	}
	a.bg.Add(2)
	go func() { defer a.bg.Done(); a.watchAssignments(ctx) }()
	go func() { defer a.bg.Done(); a.reportLoop(ctx) }()
	if a.cfg.Services != nil {
		// The saved assignment's Services first, so they work while the
		// control plane is away.
		a.wake(a.servicesKick)
		a.bg.Add(1)
		go func() { defer a.bg.Done(); a.servicesLoop(ctx) }()
	}
	if pn, ok := a.cfg.Runtime.(podNetwork); ok {
		a.bg.Add(1)
		go func() { defer a.bg.Done(); a.podSubnetLoop(ctx, pn) }()
	}
	if a.cfg.Routes != nil {
		// Like Services: the saved assignment's routes first.
		a.wake(a.routesKick)
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			a.programLoop(ctx, "programming pod routes", a.routesKick, routesRecheck, a.programRoutes)
		}()
	}
	a.reconcileLoop(ctx)
	a.bg.Wait()
	a.mu.Lock()
	err := a.saveStateLocked()
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("saving agent state", "err", err)
	}
	return nil
}

// wake nudges a loop without blocking; one pending nudge is enough.
func (a *Agent) wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// watchAssignments long-polls the control plane and hands every new
// assignment to the reconcile loop.
func (a *Agent) watchAssignments(ctx context.Context) {
	var after int64 // 0 first: fetch whatever is current, even after a controller reset
	live := false
	retry := newBackoff(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		began := time.Now()
		asg, err := a.cfg.ControlPlane.Assignment(ctx, a.cfg.NodeName, after)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := retry.next()
			a.log.Warn("assignment watch failed; keeping the pods as they are", "err", err, "retry_in", d)
			sleep(ctx, d)
			// The controller may come back restarted, its generations
			// counting from scratch: ask for whatever is current.
			after, live = 0, false
			continue
		}
		retry.reset()
		if live && asg.Generation == after {
			// A long-poll that timed out. One that returns at once is a
			// server not honouring after: do not spin on it.
			if time.Since(began) < time.Second {
				sleep(ctx, time.Second)
			}
			continue
		}
		live, after = true, asg.Generation
		a.setAssignment(&asg)
	}
}

func (a *Agent) setAssignment(asg *api.Assignment) {
	a.mu.Lock()
	svcChanged := servicesChanged(a.assignment, asg)
	nodesChanged := routesChanged(a.assignment, asg)
	a.assignment = asg
	a.translated = map[string]translated{}
	err := a.saveAssignmentLocked()
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("saving assignment", "err", err)
	}
	a.log.Info("new assignment", "generation", asg.Generation, "pods", len(asg.Pods), "services", len(asg.Services))
	a.wake(a.kick)
	if svcChanged {
		a.wake(a.servicesKick)
	}
	if nodesChanged {
		a.wake(a.routesKick)
	}
}

// reconcileLoop runs a pass on every nudge, every SyncInterval, and when a
// restart back-off expires.
func (a *Agent) reconcileLoop(ctx context.Context) {
	ticker := time.NewTicker(a.cfg.SyncInterval)
	defer ticker.Stop()
	backoff := time.NewTimer(time.Hour)
	defer backoff.Stop()
	for {
		next, err := a.reconcile(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile pass failed", "err", err)
		}
		a.wake(a.changed)
		if !next.IsZero() {
			backoff.Reset(max(next.Sub(a.now()), 10*time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-ticker.C:
		case <-backoff.C:
		}
	}
}

// reportLoop sends a report when something changed, at most every 200 ms,
// and every ReportInterval regardless.
func (a *Agent) reportLoop(ctx context.Context) {
	const coalesce = 200 * time.Millisecond
	heartbeat := time.NewTicker(a.cfg.ReportInterval)
	defer heartbeat.Stop()
	retry := newBackoff(time.Second, 30*time.Second)
	var retryC <-chan time.Time
	var lastSent string
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-a.changed:
		case <-heartbeat.C:
			force = true
		case <-retryC:
			force = true
		}
		rep := a.report()
		key := reportKey(rep)
		if !force && key == lastSent {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.cfg.ControlPlane.Report(rctx, rep)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := retry.next()
			a.log.Warn("report failed", "err", err, "retry_in", d)
			retryC = time.After(d)
			continue
		}
		retry.reset()
		retryC = nil
		lastSent = key
		sleep(ctx, coalesce)
	}
}

// backoff is a doubling delay for retries against the control plane.
type backoff struct{ cur, min, max time.Duration }

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// hostCapacity reads the host's CPU count and memory.
func hostCapacity() (corev1.ResourceList, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, fmt.Errorf("read host memory: %w", err)
	}
	defer f.Close()
	var memBytes int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse MemTotal: %w", err)
			}
			memBytes = kb * 1024
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read host memory: %w", err)
	}
	if memBytes == 0 {
		return nil, errors.New("no MemTotal in /proc/meminfo")
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memBytes, resource.BinarySI),
	}, nil
}
