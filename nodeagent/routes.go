package nodeagent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"berth.dev/berth/api"
)

// RouteProgrammer keeps the host's routes to the other nodes' pod subnets,
// so pods reach each other across hosts without an overlay
// (nodeagent/netroute). Sync is called with the assignment's whole node
// list each time; self names this node, whose own entry gets no route. An
// implementation removes the routes of nodes no longer listed.
type RouteProgrammer interface {
	Sync(ctx context.Context, self string, nodes []api.NodeRoute) error
}

// podNetwork is a runtime that can tell its pod network's subnet (the
// Podman runtime).
type podNetwork interface {
	PodSubnet(ctx context.Context) (string, error)
}

// routesRecheck is how often the node list is handed over again when
// nothing changed, so routes deleted behind the agent's back come back.
const routesRecheck = time.Minute

// podSubnetRecheck is how often the runtime is asked for its pod subnet
// once it has answered, in case the network was recreated.
const podSubnetRecheck = time.Minute

// routesChanged reports whether a new assignment carries a different node
// list from the one before it.
func routesChanged(prev, next *api.Assignment) bool {
	return prev == nil || !slices.Equal(prev.Nodes, next.Nodes)
}

// programRoutes hands the current assignment's node list to the
// RouteProgrammer. While this node is missing from the list (not Ready yet
// at the controller), its own entry is added, so the programmer still knows
// which subnet is local and refuses routes that would overlap it.
func (a *Agent) programRoutes(ctx context.Context) error {
	a.mu.Lock()
	asg, own := a.assignment, a.podSubnet
	a.mu.Unlock()
	if asg == nil {
		return nil // nothing known yet: keep whatever the host has
	}
	nodes := asg.Nodes
	self := a.cfg.NodeName
	if own != "" && !slices.ContainsFunc(nodes, func(n api.NodeRoute) bool { return n.Name == self }) {
		entry := api.NodeRoute{Name: self, PodSubnet: own}
		if len(a.cfg.Addresses) > 0 {
			entry.Address = a.cfg.Addresses[0]
		}
		nodes = append(slices.Clone(nodes), entry)
	}
	return a.cfg.Routes.Sync(ctx, self, nodes)
}

// refreshPodSubnet asks the runtime for its pod subnet. A configured
// PodSubnet is kept as is, but one that differs from the runtime's is
// logged, since other nodes would then route this node's pods wrongly.
func (a *Agent) refreshPodSubnet(ctx context.Context, pn podNetwork, mismatchLogged *string) error {
	got, err := pn.PodSubnet(ctx)
	if err != nil {
		return fmt.Errorf("pod network subnet: %w", err)
	}
	if a.cfg.PodSubnet != "" {
		if got != a.cfg.PodSubnet && got != *mismatchLogged {
			a.log.Warn("configured pod subnet differs from the pod network's; reporting the configured one",
				"configured", a.cfg.PodSubnet, "network", got)
			*mismatchLogged = got
		}
		return nil
	}
	a.mu.Lock()
	changed := a.podSubnet != got
	a.podSubnet = got
	a.mu.Unlock()
	if changed {
		a.log.Info("pod subnet", "subnet", got)
		a.wake(a.changed)
		a.wake(a.routesKick)
	}
	return nil
}

// podSubnetLoop learns the pod subnet from the runtime, retrying until
// the runtime answers and checking again every podSubnetRecheck.
func (a *Agent) podSubnetLoop(ctx context.Context, pn podNetwork) {
	start := make(chan struct{}, 1)
	start <- struct{}{}
	var mismatchLogged string
	a.programLoop(ctx, "reading the pod subnet", start, podSubnetRecheck, func(ctx context.Context) error {
		return a.refreshPodSubnet(ctx, pn, &mismatchLogged)
	})
}

// programLoop runs program on every nudge from kick and every recheck, and
// retries a failure with back-off until it succeeds or the next nudge.
func (a *Agent) programLoop(ctx context.Context, what string, kick <-chan struct{}, recheck time.Duration, program func(context.Context) error) {
	ticker := time.NewTicker(recheck)
	defer ticker.Stop()
	retry := newBackoff(time.Second, 30*time.Second)
	var retryC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-ticker.C:
		case <-retryC:
		}
		if err := program(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := retry.next()
			a.log.Warn(what+" failed", "err", err, "retry_in", d)
			retryC = time.After(d)
			continue
		}
		retry.reset()
		retryC = nil
	}
}
