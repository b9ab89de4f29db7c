// Package controller is berth's control loop. It follows a source, turns each
// revision into desired objects, asks the pure planner what to change, records
// the result in the store and hands every node its assignment. Node agents
// report back what runs; those reports are the observed state the next
// planning pass starts from.
//
// Three goroutines share the state under one mutex: the source loop (fetch and
// decode), the reconcile loop (plan and execute) and the API handlers (agent
// reports, long-polls, CLI reads). Every pass plans from the whole state, so
// a missed trigger or a crash costs one pass, nothing more.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/manifest"
	"berth.dev/berth/reconciler/plan"
	"berth.dev/berth/reconciler/services"
	"berth.dev/berth/reconciler/store"
	"berth.dev/berth/sources"
)

// Store is what the controller needs from persistence.
type Store interface {
	store.Iterator
	Write(ctx context.Context, b *store.Batch) error
	Get(ctx context.Context, kind store.Kind, key string, v any) error
}

// Config wires a Controller.
type Config struct {
	Source sources.Source
	Store  Store
	Logger *slog.Logger
	// PollInterval is how often the source is fetched without a trigger.
	PollInterval time.Duration
	// NodeGrace is how long a node may go without a report before it is
	// NotReady and receives no new pods.
	NodeGrace time.Duration
	// ServiceCIDR is where ClusterIPs come from (default 10.96.0.0/16).
	ServiceCIDR netip.Prefix
	// Now and Names are injected for tests; defaults are the wall clock and
	// random names.
	Now   func() time.Time
	Names plan.Names
}

// Controller owns desired and observed state for the whole cluster.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	decoder *manifest.Decoder
	started time.Time

	kick      chan struct{} // wakes the reconcile loop
	fetchReqs chan chan api.SyncResult
	fetchSoon chan struct{}

	mu            sync.Mutex
	desired       *manifest.Set
	applied       *appliedRevision
	head          *api.Revision
	lastFetch     time.Time
	fetchErr      string
	refused       string // why the head revision was refused, if it was
	headRefusedID string
	replicaSets   map[string]*appsv1.ReplicaSet
	pods          map[string]*corev1.Pod // key ns/name; Spec.NodeName is the binding
	terminating   map[string]*corev1.Pod // deleted by a plan, still reported by an agent
	deployments   map[string]plan.DeploymentStatus
	failed        map[string]failedTemplate // key ns/name/hash
	allocations   services.Allocations
	services      []*corev1.Service // applied Services with allocations filled in
	nodes         map[string]*nodeState
	nodeMeta      map[string]nodeMeta // cordoned or draining nodes
	unschedulable map[string]string   // pod key -> why no node fits
	generation    int64
	assignments   map[string]*api.Assignment
	// What the assignments were last built from, so that a pass that
	// changed nothing for a node skips rebuilding it.
	assignedPods map[string][]*corev1.Pod
	lastTable    []api.Service
	lastRoutes   []api.NodeRoute
	lastDesired  *manifest.Set
	// liveCache keeps each pod merged with its reported status between
	// passes, so a pass over unchanged pods copies none of them.
	liveCache map[*corev1.Pod]liveEntry
	// liveVersion counts changes to the merged pods; tableVersion is the
	// liveVersion the cached service table (lastTable) was built from.
	liveVersion, tableVersion uint64
	changed                   chan struct{} // closed and replaced whenever an assignment changes
}

// appliedRevision is persisted so a restarted controller knows its desired
// state before (or without) reaching the source again.
type appliedRevision struct {
	Revision api.Revision   `json:"revision"`
	Files    []sources.File `json:"files"`
	Applied  time.Time      `json:"applied"`
}

// failedTemplate records a pod template whose rollout failed and was rolled
// back, and the commit that brought it.
type failedTemplate struct {
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	Hash      string       `json:"hash"`
	Reason    string       `json:"reason"`
	Revision  api.Revision `json:"revision"`
	Time      time.Time    `json:"time"`
}

func (f failedTemplate) key() string { return f.Namespace + "/" + f.Name + "/" + f.Hash }

type nodeState struct {
	report   api.NodeReport
	lastSeen time.Time
	// statuses by pod UID; an entry is replaced only when its status
	// changes, so its pointer identifies the status (see livePodsLocked).
	statuses map[string]*api.PodReport
}

const metaApplied = "applied"

// New loads the persisted state. It does not start anything.
func New(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Source == nil || cfg.Store == nil {
		return nil, errors.New("controller: a source and a store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	if cfg.NodeGrace <= 0 {
		cfg.NodeGrace = 40 * time.Second
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Names == nil {
		cfg.Names = randomNames{}
	}
	c := &Controller{
		cfg:           cfg,
		log:           cfg.Logger,
		decoder:       manifest.NewDecoder(),
		started:       cfg.Now(),
		kick:          make(chan struct{}, 1),
		fetchReqs:     make(chan chan api.SyncResult),
		fetchSoon:     make(chan struct{}, 1),
		replicaSets:   map[string]*appsv1.ReplicaSet{},
		pods:          map[string]*corev1.Pod{},
		terminating:   map[string]*corev1.Pod{},
		deployments:   map[string]plan.DeploymentStatus{},
		failed:        map[string]failedTemplate{},
		allocations:   services.Allocations{},
		nodes:         map[string]*nodeState{},
		nodeMeta:      map[string]nodeMeta{},
		unschedulable: map[string]string{},
		assignments:   map[string]*api.Assignment{},
		assignedPods:  map[string][]*corev1.Pod{},
		changed:       make(chan struct{}),
	}
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Controller) load(ctx context.Context) error {
	rss, err := store.List[*appsv1.ReplicaSet](ctx, c.cfg.Store, store.ReplicaSets)
	if err != nil {
		return fmt.Errorf("load replicasets: %w", err)
	}
	for _, rs := range rss {
		c.replicaSets[objKey(rs.Namespace, rs.Name)] = rs
	}
	pods, err := store.List[*corev1.Pod](ctx, c.cfg.Store, store.Pods)
	if err != nil {
		return fmt.Errorf("load pods: %w", err)
	}
	for _, p := range pods {
		c.pods[objKey(p.Namespace, p.Name)] = p
	}
	statuses, err := store.List[plan.DeploymentStatus](ctx, c.cfg.Store, store.DeploymentStatus)
	if err != nil {
		return fmt.Errorf("load deployment status: %w", err)
	}
	for _, s := range statuses {
		c.deployments[objKey(s.Namespace, s.Name)] = s
	}
	metas, err := store.List[nodeMeta](ctx, c.cfg.Store, store.Nodes)
	if err != nil {
		return fmt.Errorf("load nodes: %w", err)
	}
	for _, m := range metas {
		c.nodeMeta[m.Name] = m
	}
	failed, err := store.List[failedTemplate](ctx, c.cfg.Store, store.FailedTemplates)
	if err != nil {
		return fmt.Errorf("load failed templates: %w", err)
	}
	for _, f := range failed {
		c.failed[f.key()] = f
	}
	err = c.cfg.Store.Each(ctx, store.Allocations, func(key string, value []byte) error {
		var v string
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("allocation %s: %w", key, err)
		}
		c.allocations[key] = v
		return nil
	})
	if err != nil {
		return fmt.Errorf("load allocations: %w", err)
	}
	var applied appliedRevision
	switch err := c.cfg.Store.Get(ctx, store.Meta, metaApplied, &applied); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("load applied revision: %w", err)
	default:
		set, err := c.decoder.Load(applied.Files)
		if err != nil {
			// The revision was valid when applied; a newer berth may be
			// stricter. Keep running what runs and wait for the source.
			c.log.Warn("stored revision no longer validates; waiting for the source", "revision", applied.Revision.ID, "err", err)
		} else {
			c.desired = set
			c.services = services.Apply(set.Services, c.allocations)
			c.applied = &applied
			head := applied.Revision
			c.head = &head
		}
	}
	c.log.Info("state loaded", "replicasets", len(c.replicaSets), "pods", len(c.pods), "applied", c.appliedID())
	return nil
}

// Run follows the source and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.sourceLoop(ctx) }()
	go func() { defer wg.Done(); c.reconcileLoop(ctx) }()
	if w, ok := c.cfg.Source.(sources.Watcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.Watch(ctx, func() { c.RequestFetch() })
			if err != nil && ctx.Err() == nil {
				c.log.Error("source watch stopped", "err", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

// Kick asks for a reconcile pass soon; triggers coalesce.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) appliedID() string {
	if c.applied == nil {
		return ""
	}
	return c.applied.Revision.ID
}

func objKey(namespace, name string) string { return namespace + "/" + name }
