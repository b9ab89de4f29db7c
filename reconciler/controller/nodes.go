package controller

import (
	"context"
	"reflect"
	"time"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/store"
)

// longPollTimeout bounds how long an assignment request is held open, so
// proxies and idle timeouts never cut it first.
const longPollTimeout = 30 * time.Second

// Report records a node's report (which is also its heartbeat) and wakes the
// planner when any pod's status changed.
func (c *Controller) Report(ctx context.Context, r api.NodeReport) error {
	c.mu.Lock()
	now := c.cfg.Now()
	n, known := c.nodes[r.Node]
	if !known {
		n = &nodeState{statuses: map[string]*api.PodReport{}}
		c.nodes[r.Node] = n
		c.log.Info("node registered", "node", r.Node, "addresses", r.Addresses)
	}
	wasReady := known && now.Sub(n.lastSeen) <= c.cfg.NodeGrace
	n.report = r
	n.report.Pods = nil // kept by UID below
	n.lastSeen = now

	changed := !wasReady
	seen := make(map[string]bool, len(r.Pods))
	for i := range r.Pods {
		p := &r.Pods[i]
		seen[p.UID] = true
		if prev, ok := n.statuses[p.UID]; !ok || !reflect.DeepEqual(prev.Status, p.Status) {
			changed = true
			n.statuses[p.UID] = p
		}
	}
	for uid := range n.statuses {
		if !seen[uid] {
			delete(n.statuses, uid)
			changed = true
		}
	}
	for uid, p := range c.terminating {
		if p.Spec.NodeName == r.Node && !seen[uid] {
			delete(c.terminating, uid) // the agent has finished with it
			changed = true
		}
	}
	c.recordRouteLocked(ctx, r)
	if !known {
		c.rebuildAssignmentsLocked(c.livePodsLocked())
	}
	c.mu.Unlock()
	if changed {
		c.Kick()
	}
	return nil
}

// Assignment returns the node's assignment once its generation is newer than
// after, waiting up to longPollTimeout (then it returns the current one).
func (c *Controller) Assignment(ctx context.Context, node string, after int64) (api.Assignment, error) {
	timeout := time.NewTimer(longPollTimeout)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		a := c.assignments[node]
		wake := c.changed
		restarted := after > c.generation // the agent saw an earlier life of this controller
		c.mu.Unlock()
		if a != nil && (a.Generation > after || restarted) {
			return *a, nil
		}
		select {
		case <-wake:
		case <-timeout.C:
			if a == nil {
				return api.Assignment{Node: node, Generation: after}, nil
			}
			return *a, nil
		case <-ctx.Done():
			return api.Assignment{}, ctx.Err()
		}
	}
}

// recordRouteLocked persists a node's address and pod subnet when they
// change (see nodeMeta).
func (c *Controller) recordRouteLocked(ctx context.Context, r api.NodeReport) {
	m := c.nodeMeta[r.Node]
	var addr string
	if len(r.Addresses) > 0 {
		addr = r.Addresses[0]
	}
	if m.Address == addr && m.PodSubnet == r.PodSubnet {
		return
	}
	m.Name, m.Address, m.PodSubnet = r.Node, addr, r.PodSubnet
	var b store.Batch
	b.Put(store.Nodes, r.Node, m)
	if err := c.cfg.Store.Write(ctx, &b); err != nil {
		c.log.Error("record node route", "node", r.Node, "err", err)
		return
	}
	c.nodeMeta[r.Node] = m
	c.Kick() // the other nodes need the new route
}
