package controller

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/schedule"
	"berth.dev/berth/reconciler/store"
)

// nodeMeta is what an operator decided about a node (cordon, drain); it is
// persisted so a restart does not undo it.
type nodeMeta struct {
	Name          string `json:"name"`
	Unschedulable bool   `json:"unschedulable,omitempty"`
	Draining      bool   `json:"draining,omitempty"`
	// Address and PodSubnet are the node's last reported route, kept so a
	// restarted controller hands agents every route at once instead of
	// making them drop routes to nodes that have not reported yet.
	Address   string `json:"address,omitempty"`
	PodSubnet string `json:"podSubnet,omitempty"`
}

// nodeReadyLocked: a node is Ready while its reports keep coming within the
// grace period. A node that has not reported since this controller started
// gets the grace period from the start.
func (c *Controller) nodeReadyLocked(name string, now time.Time) bool {
	n, ok := c.nodes[name]
	if !ok {
		return now.Sub(c.started) <= c.cfg.NodeGrace
	}
	return now.Sub(n.lastSeen) <= c.cfg.NodeGrace
}

// Cordon marks a node unschedulable (or schedulable again); drain also
// evicts its pods, within each Deployment's maxUnavailable.
func (c *Controller) Cordon(ctx context.Context, node string, cordon, drain bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.nodes[node]; !ok {
		if _, ok := c.nodeMeta[node]; !ok {
			return fmt.Errorf("node %q has never reported: %w", node, api.ErrNotFound)
		}
	}
	m := c.nodeMeta[node]
	m.Name, m.Unschedulable, m.Draining = node, cordon || drain, drain
	var b store.Batch
	b.Put(store.Nodes, node, m)
	if err := c.cfg.Store.Write(ctx, &b); err != nil {
		return fmt.Errorf("record node %s: %w", node, err)
	}
	c.nodeMeta[node] = m
	c.log.Info("node updated", "node", node, "unschedulable", m.Unschedulable, "draining", m.Draining)
	c.Kick()
	return nil
}

// evictLocked deletes the pods that must leave their node: every pod on a
// NotReady node (its replacement is scheduled elsewhere; the node stops the
// stale pod if it comes back), and pods on a draining node as far as each
// Deployment's availability budget allows.
func (c *Controller) evictLocked(ctx context.Context, now time.Time) {
	if !c.anyNodeLeavingLocked(now) {
		return // the common case: a pass costs no scan of every pod here
	}
	var victims []*corev1.Pod
	budget := c.drainBudgetsLocked()
	keys := make([]string, 0, len(c.pods))
	for k := range c.pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := c.pods[k]
		node := p.Spec.NodeName
		switch {
		case node == "":
			continue
		case !c.nodeReadyLocked(node, now):
			victims = append(victims, p)
		case c.nodeMeta[node].Draining:
			owner := c.deploymentOfLocked(p)
			if owner == "" {
				victims = append(victims, p) // a bare pod is re-created elsewhere
				continue
			}
			if budget[owner] > 0 {
				budget[owner]--
				victims = append(victims, p)
			}
		}
	}
	if len(victims) == 0 {
		return
	}
	var b store.Batch
	for _, p := range victims {
		b.Delete(store.Pods, objKey(p.Namespace, p.Name))
	}
	if err := c.cfg.Store.Write(ctx, &b); err != nil {
		c.log.Error("persist evictions; will retry", "err", err)
		return
	}
	for _, p := range victims {
		gone := p.DeepCopy()
		ts := metav1.NewTime(now)
		gone.DeletionTimestamp = &ts
		c.terminating[string(gone.UID)] = gone
		delete(c.pods, objKey(p.Namespace, p.Name))
		why := "node draining"
		if !c.nodeReadyLocked(p.Spec.NodeName, now) {
			why = "node not ready"
		}
		c.log.Info("pod evicted", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName, "reason", why)
	}
}

// anyNodeLeavingLocked reports whether some node with pods is NotReady or
// draining.
func (c *Controller) anyNodeLeavingLocked(now time.Time) bool {
	for name, m := range c.nodeMeta {
		if m.Draining {
			return true
		}
		if !c.nodeReadyLocked(name, now) {
			return true
		}
	}
	for name := range c.nodes {
		if !c.nodeReadyLocked(name, now) {
			return true
		}
	}
	return false
}

// drainBudgetsLocked returns, per Deployment, how many of its pods may be
// evicted now: those available beyond replicas - maxUnavailable, minus pods
// already on their way out, as kubectl drain with a budget would allow.
func (c *Controller) drainBudgetsLocked() map[string]int {
	out := map[string]int{}
	if c.desired == nil {
		return out
	}
	available := map[string]int{}
	for _, p := range c.pods {
		if api.PodReady(c.withStatusLocked(p)) {
			available[c.deploymentOfLocked(p)]++
		}
	}
	for _, p := range c.terminating {
		if d := c.deploymentOfLocked(p); d != "" {
			available[d]-- // still leaving: its replacement is not counted yet
		}
	}
	for _, d := range c.desired.Deployments {
		k := objKey(d.Namespace, d.Name)
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		out[k] = available[k] - int(replicas-maxUnavailable(d, replicas))
	}
	return out
}

// maxUnavailable resolves a Deployment's maxUnavailable as the rollout does
// (percentages rounded down); at least 1, so a drain always progresses.
func maxUnavailable(d *appsv1.Deployment, replicas int32) int32 {
	mu := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		mu = *ru.MaxUnavailable
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return replicas
	}
	v, err := intstr.GetScaledValueFromIntOrPercent(&mu, int(replicas), false)
	if err != nil || v < 1 {
		v = 1
	}
	return int32(v)
}

// deploymentOfLocked names the Deployment ("ns/name") owning a pod through
// its ReplicaSet, or "" for a bare pod.
func (c *Controller) deploymentOfLocked(p *corev1.Pod) string {
	for _, ref := range p.OwnerReferences {
		if ref.Kind != "ReplicaSet" {
			continue
		}
		rs, ok := c.replicaSets[objKey(p.Namespace, ref.Name)]
		if !ok {
			return ""
		}
		for _, rref := range rs.OwnerReferences {
			if rref.Kind == "Deployment" {
				return objKey(p.Namespace, rref.Name)
			}
		}
	}
	return ""
}

// scheduleLocked binds pending pods to nodes with the scheduler and
// remembers why the others could not be placed.
func (c *Controller) scheduleLocked(now time.Time, pending []*corev1.Pod) map[string]string {
	if len(pending) == 0 {
		return nil
	}
	in := schedule.Input{Pending: pending}
	for name, n := range c.nodes {
		labels := map[string]string{}
		for k, v := range n.report.Labels {
			labels[k] = v
		}
		labels[corev1.LabelHostname] = name
		in.Nodes = append(in.Nodes, schedule.Node{
			Name:          name,
			Labels:        labels,
			Allocatable:   n.report.Capacity,
			Ready:         c.nodeReadyLocked(name, now),
			Unschedulable: c.nodeMeta[name].Unschedulable,
		})
	}
	sort.Slice(in.Nodes, func(i, j int) bool { return in.Nodes[i].Name < in.Nodes[j].Name })
	for _, p := range c.pods {
		if p.Spec.NodeName != "" {
			in.Bound = append(in.Bound, p)
		}
	}
	res := schedule.Schedule(in)
	bindings := make(map[string]string, len(res.Bindings))
	for _, b := range res.Bindings {
		bindings[objKey(b.Namespace, b.Name)] = b.Node
	}
	for _, u := range res.Unschedulable {
		k := objKey(u.Namespace, u.Name)
		if c.unschedulable[k] != u.Message {
			c.log.Info("pod unschedulable", "pod", k, "message", u.Message)
		}
		c.unschedulable[k] = u.Message
	}
	for k := range bindings {
		delete(c.unschedulable, k)
	}
	return bindings
}

// Nodes lists every node with its state, capacity and allocations.
func (c *Controller) Nodes() []api.NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodesLocked(c.cfg.Now())
}

func (c *Controller) nodesLocked(now time.Time) []api.NodeInfo {
	type alloc struct {
		cpu, mem int64
		pods     int
	}
	allocated := map[string]*alloc{}
	for _, p := range c.pods {
		if p.Spec.NodeName == "" {
			continue
		}
		a := allocated[p.Spec.NodeName]
		if a == nil {
			a = &alloc{}
			allocated[p.Spec.NodeName] = a
		}
		cpu, mem := schedule.Requests(&p.Spec)
		a.cpu += cpu
		a.mem += mem
		a.pods++
	}
	names := map[string]bool{}
	for n := range c.nodes {
		names[n] = true
	}
	for n := range c.nodeMeta {
		names[n] = true
	}
	out := []api.NodeInfo{}
	for name := range names {
		info := api.NodeInfo{Name: name, Ready: c.nodeReadyLocked(name, now)}
		if n, ok := c.nodes[name]; ok {
			info.LastHeartbeat = n.lastSeen
			info.Addresses = n.report.Addresses
			info.PodSubnet = n.report.PodSubnet
			info.Labels = n.report.Labels
			info.Capacity = n.report.Capacity
		} else {
			info.Ready = false
		}
		m := c.nodeMeta[name]
		info.Unschedulable, info.Draining = m.Unschedulable, m.Draining
		if a := allocated[name]; a != nil {
			info.Pods = a.pods
			info.Allocated = corev1.ResourceList{
				corev1.ResourceCPU:    *resource.NewMilliQuantity(a.cpu, resource.DecimalSI),
				corev1.ResourceMemory: *resource.NewQuantity(a.mem, resource.BinarySI),
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nodeRoutesLocked lists the Ready nodes' addresses and pod subnets, for
// the agents' host-gw routes.
func (c *Controller) nodeRoutesLocked(now time.Time) []api.NodeRoute {
	var out []api.NodeRoute
	for name, m := range c.nodeMeta {
		if !c.nodeReadyLocked(name, now) || m.PodSubnet == "" || m.Address == "" {
			continue
		}
		out = append(out, api.NodeRoute{Name: name, Address: m.Address, PodSubnet: m.PodSubnet})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
