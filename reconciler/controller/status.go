package controller

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/plan"
	"berth.dev/berth/reconciler/services"
	"berth.dev/berth/reconciler/store"
)

// Status summarises sync state, rollouts and nodes.
func (c *Controller) Status() api.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	s := api.Status{
		Source:      c.cfg.Source.String(),
		Sync:        api.SyncSynced,
		LastFetch:   c.lastFetch,
		Deployments: []api.DeploymentHealth{},
		Nodes:       []api.NodeInfo{},
	}
	res := c.syncResultLocked()
	s.Applied, s.Head, s.LastError = res.Applied, res.Head, res.Error
	if s.Applied == nil || s.Head == nil || s.Applied.ID != s.Head.ID {
		s.Sync = api.SyncOutOfSync
	}
	if c.desired != nil {
		for _, w := range c.desired.Warnings {
			s.Warnings = append(s.Warnings, w.String())
		}
		for _, d := range c.desired.Deployments {
			k := objKey(d.Namespace, d.Name)
			h := api.DeploymentHealth{Namespace: d.Namespace, Name: d.Name, Health: string(plan.HealthProgressing)}
			if d.Spec.Replicas != nil {
				h.Desired = *d.Spec.Replicas
			}
			if ds, ok := c.deployments[k]; ok {
				h.Updated = ds.Status.UpdatedReplicas
				h.Ready = ds.Status.ReadyReplicas
				h.Available = ds.Status.AvailableReplicas
				h.Revision = ds.Revision
				h.Health = string(ds.Health)
				h.Reason = ds.Reason
				if ds.Status.UpdatedReplicas != h.Desired || ds.Status.Replicas != h.Desired {
					s.Sync = api.SyncOutOfSync
				}
				if ds.RolledBackFrom != "" {
					// Git asks for a template berth refuses to run again.
					s.Sync = api.SyncOutOfSync
					if f, ok := c.failed[k+"/"+ds.RolledBackFrom]; ok {
						rev := f.Revision
						h.RolledBackFrom = &rev
						h.Reason = fmt.Sprintf("RolledBack: commit %s %q failed: %s; running revision %d", short(rev.ID), rev.Subject, f.Reason, ds.Revision)
					}
				}
			} else {
				s.Sync = api.SyncOutOfSync
			}
			s.Deployments = append(s.Deployments, h)
		}
		for _, p := range c.desired.Pods {
			if _, ok := c.pods[objKey(p.Namespace, p.Name)]; !ok {
				s.Sync = api.SyncOutOfSync
			}
		}
	}
	s.Nodes = c.nodesLocked(now)
	return s
}

// History lists every revision the controller has seen, oldest first.
func (c *Controller) History(ctx context.Context) ([]api.HistoryEntry, error) {
	h, err := store.List[api.HistoryEntry](ctx, c.cfg.Store, store.History)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return h, nil
}

// Pods lists pods (all namespaces when namespace is "") with their status.
func (c *Controller) Pods(namespace string) []corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []corev1.Pod
	for _, p := range c.pods {
		if namespace == "" || p.Namespace == namespace {
			out = append(out, *c.withStatusLocked(p))
		}
	}
	for _, p := range c.terminating {
		if namespace == "" || p.Namespace == namespace {
			out = append(out, *c.withStatusLocked(p))
		}
	}
	sortObjects(out, func(p corev1.Pod) (string, string) { return p.Namespace, p.Name })
	return out
}

// ReplicaSets lists ReplicaSets with status counted from their pods.
func (c *Controller) ReplicaSets(namespace string) []appsv1.ReplicaSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := map[string]*appsv1.ReplicaSetStatus{}
	for _, p := range c.pods {
		for _, ref := range p.OwnerReferences {
			if ref.Kind != "ReplicaSet" {
				continue
			}
			k := objKey(p.Namespace, ref.Name)
			st := counts[k]
			if st == nil {
				st = &appsv1.ReplicaSetStatus{}
				counts[k] = st
			}
			st.Replicas++
			if api.PodReady(c.withStatusLocked(p)) {
				st.ReadyReplicas++
			}
		}
	}
	var out []appsv1.ReplicaSet
	for k, rs := range c.replicaSets {
		if namespace != "" && rs.Namespace != namespace {
			continue
		}
		cp := *rs
		if st := counts[k]; st != nil {
			cp.Status = *st
		}
		out = append(out, cp)
	}
	sortObjects(out, func(r appsv1.ReplicaSet) (string, string) { return r.Namespace, r.Name })
	return out
}

// Deployments lists the applied Deployments with their rollout status.
func (c *Controller) Deployments(namespace string) []appsv1.Deployment {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []appsv1.Deployment
	if c.desired == nil {
		return out
	}
	for _, d := range c.desired.Deployments {
		if namespace != "" && d.Namespace != namespace {
			continue
		}
		cp := *d
		if ds, ok := c.deployments[objKey(d.Namespace, d.Name)]; ok {
			cp.Status = ds.Status
		}
		out = append(out, cp)
	}
	sortObjects(out, func(d appsv1.Deployment) (string, string) { return d.Namespace, d.Name })
	return out
}

// Services lists the applied Services with their allocated ClusterIP and
// NodePorts.
func (c *Controller) Services(namespace string) []corev1.Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []corev1.Service
	for _, s := range c.services {
		if namespace == "" || s.Namespace == namespace {
			out = append(out, *s)
		}
	}
	sortObjects(out, func(o corev1.Service) (string, string) { return o.Namespace, o.Name })
	return out
}

// EndpointSlices lists every Service's ready endpoints.
func (c *Controller) EndpointSlices(namespace string) []discoveryv1.EndpointSlice {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []discoveryv1.EndpointSlice
	for _, e := range services.EndpointSlices(services.Table(c.services, c.livePodsLocked())) {
		if namespace == "" || e.Namespace == namespace {
			out = append(out, e)
		}
	}
	return out
}

// ConfigMaps lists the applied ConfigMaps.
func (c *Controller) ConfigMaps(namespace string) []corev1.ConfigMap {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []corev1.ConfigMap
	if c.desired == nil {
		return out
	}
	for _, cm := range c.desired.ConfigMaps {
		if namespace == "" || cm.Namespace == namespace {
			out = append(out, *cm)
		}
	}
	sortObjects(out, func(o corev1.ConfigMap) (string, string) { return o.Namespace, o.Name })
	return out
}

// Secrets lists the applied Secrets with their values removed: only key
// names leave the controller.
func (c *Controller) Secrets(namespace string) []corev1.Secret {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []corev1.Secret
	if c.desired == nil {
		return out
	}
	for _, s := range c.desired.Secrets {
		if namespace != "" && s.Namespace != namespace {
			continue
		}
		cp := *s
		cp.Data = make(map[string][]byte, len(s.Data))
		for k := range s.Data {
			cp.Data[k] = nil
		}
		cp.StringData = nil
		out = append(out, cp)
	}
	sortObjects(out, func(o corev1.Secret) (string, string) { return o.Namespace, o.Name })
	return out
}

func sortObjects[T any](items []T, key func(T) (string, string)) {
	sort.Slice(items, func(i, j int) bool {
		ni, ai := key(items[i])
		nj, aj := key(items[j])
		if ni != nj {
			return ni < nj
		}
		return ai < aj
	})
}
