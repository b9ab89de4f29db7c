package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/manifest"
	"berth.dev/berth/reconciler/plan"
	"berth.dev/berth/reconciler/services"
	"berth.dev/berth/reconciler/store"
)

// resyncPeriod bounds how long the controller goes without a pass, so
// time-based conditions and anything missed are picked up.
const resyncPeriod = 5 * time.Second

func (c *Controller) reconcileLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
		next := c.reconcile(ctx)
		if next <= 0 || next > resyncPeriod {
			next = resyncPeriod
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// reconcile runs one planning pass and executes it. It returns when the next
// pass is due for time-based reasons.
func (c *Controller) reconcile(ctx context.Context) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.desired == nil {
		// Never plan from an empty desired state: that would delete
		// everything running while the source is still unreachable.
		return 0
	}
	now := c.cfg.Now()
	if waiting := c.unreportedNodesLocked(now); len(waiting) > 0 {
		// After a restart, pods look unready until their node reports;
		// planning before that would tear healthy pods down.
		c.log.Debug("waiting for nodes to report before planning", "nodes", waiting)
		return time.Second
	}

	c.evictLocked(ctx, now)
	deployments := withConfigDigest(c.desired)
	live := c.livePodsLocked()
	in := plan.Input{
		Now:            now,
		Deployments:    deployments,
		Pods:           c.desired.Pods,
		ReplicaSets:    mapValues(c.replicaSets),
		LivePods:       live,
		PreviousStatus: map[string]appsv1.DeploymentStatus{},
	}
	for k, s := range c.deployments {
		in.PreviousStatus[k] = s.Status
	}
	var b store.Batch
	in.FailedTemplates = c.failedTemplatesLocked(deployments, &b)
	p := plan.Compute(in, c.cfg.Names)

	for _, rs := range p.CreateReplicaSets {
		b.Put(store.ReplicaSets, objKey(rs.Namespace, rs.Name), rs)
	}
	for _, rs := range p.UpdateReplicaSets {
		b.Put(store.ReplicaSets, objKey(rs.Namespace, rs.Name), rs)
	}
	for _, rs := range p.DeleteReplicaSets {
		b.Delete(store.ReplicaSets, objKey(rs.Namespace, rs.Name))
	}
	for _, pod := range p.DeletePods {
		b.Delete(store.Pods, objKey(pod.Namespace, pod.Name))
	}
	bound := c.bindLocked(now, p.CreatePods, &b)
	statusChanged := map[string]plan.DeploymentStatus{}
	desiredDeployments := map[string]bool{}
	for _, ds := range p.Deployments {
		k := objKey(ds.Namespace, ds.Name)
		desiredDeployments[k] = true
		if prev, ok := c.deployments[k]; !ok || !reflect.DeepEqual(prev.Status, ds.Status) || prev.Health != ds.Health || prev.Reason != ds.Reason || prev.Revision != ds.Revision {
			statusChanged[k] = ds
			b.Put(store.DeploymentStatus, k, ds)
		}
	}
	for k := range c.deployments {
		if !desiredDeployments[k] {
			b.Delete(store.DeploymentStatus, k)
		}
	}
	var newlyFailed []failedTemplate
	for _, f := range p.FailedTemplates {
		rec := failedTemplate{Namespace: f.Namespace, Name: f.Name, Hash: f.Hash, Reason: f.Reason, Time: now}
		if c.applied != nil {
			rec.Revision = c.applied.Revision
		}
		if _, known := c.failed[rec.key()]; known {
			continue
		}
		newlyFailed = append(newlyFailed, rec)
		b.Put(store.FailedTemplates, rec.key(), rec)
		b.Append(store.History, api.HistoryEntry{
			Revision: rec.Revision, Time: now, Outcome: api.OutcomeRolledBack,
			Message: fmt.Sprintf("Deployment %s/%s rolled back: %s", rec.Namespace, rec.Name, rec.Reason),
		})
	}
	if err := c.cfg.Store.Write(ctx, &b); err != nil {
		// Nothing changed in memory either: the next pass plans again.
		c.log.Error("persist plan; will retry", "err", err)
		return time.Second
	}

	for _, rs := range append(p.CreateReplicaSets, p.UpdateReplicaSets...) {
		c.replicaSets[objKey(rs.Namespace, rs.Name)] = rs
	}
	for _, rs := range p.DeleteReplicaSets {
		delete(c.replicaSets, objKey(rs.Namespace, rs.Name))
	}
	for _, pod := range p.DeletePods {
		k := objKey(pod.Namespace, pod.Name)
		delete(c.unschedulable, k)
		if live, ok := c.pods[k]; ok && live.Spec.NodeName != "" {
			gone := live.DeepCopy()
			ts := metav1.NewTime(now)
			gone.DeletionTimestamp = &ts
			c.terminating[string(gone.UID)] = gone
		}
		delete(c.pods, k)
	}
	for _, pod := range p.CreatePods {
		c.pods[objKey(pod.Namespace, pod.Name)] = stripStatus(pod)
	}
	for _, pod := range bound {
		c.pods[objKey(pod.Namespace, pod.Name)] = pod
	}
	for k, ds := range statusChanged {
		c.deployments[k] = ds
	}
	for k := range c.deployments {
		if !desiredDeployments[k] {
			delete(c.deployments, k)
		}
	}
	for _, f := range newlyFailed {
		c.failed[f.key()] = f
		c.log.Error("rollout failed; rolling back", "deployment", f.Namespace+"/"+f.Name,
			"revision", short(f.Revision.ID), "subject", f.Revision.Subject, "reason", f.Reason)
	}
	if n := len(p.CreatePods) + len(p.DeletePods) + len(p.CreateReplicaSets) + len(p.UpdateReplicaSets) + len(p.DeleteReplicaSets); n > 0 {
		c.log.Info("plan executed",
			"createPods", len(p.CreatePods), "deletePods", len(p.DeletePods),
			"createReplicaSets", len(p.CreateReplicaSets), "updateReplicaSets", len(p.UpdateReplicaSets),
			"deleteReplicaSets", len(p.DeleteReplicaSets))
	}
	if !p.Empty() {
		live = c.livePodsLocked() // pods were created or deleted
	}
	c.rebuildAssignmentsLocked(live)
	if !p.Empty() || len(p.FailedTemplates) > 0 {
		// Some steps (a scaling event, then the rollout; Recreate's
		// scale-down, then its wait) need a further pass with no new event.
		c.Kick()
	}
	return p.RequeueAfter
}

// failedTemplatesLocked returns the failed templates to hold back, per
// Deployment, and forgets (in b and in memory) those whose Deployment Git
// has since moved to another template: a commit that changes the template
// is a new attempt.
func (c *Controller) failedTemplatesLocked(deployments []*appsv1.Deployment, b *store.Batch) map[string][]string {
	if len(c.failed) == 0 {
		// The common case: no template hashing on every pass. Not nil:
		// the planner takes nil to mean automatic rollback is off.
		return map[string][]string{}
	}
	current := map[string]string{}
	for _, d := range deployments {
		current[objKey(d.Namespace, d.Name)] = plan.TemplateHash(&d.Spec.Template)
	}
	out := map[string][]string{}
	for k, f := range c.failed {
		dk := objKey(f.Namespace, f.Name)
		if current[dk] != f.Hash {
			b.Delete(store.FailedTemplates, k)
			delete(c.failed, k)
			continue
		}
		out[dk] = append(out[dk], f.Hash)
	}
	return out
}

// bindLocked schedules the plan's new pods and the pods earlier passes left
// unbound (oldest first), recording the bindings in b. New pods are bound in
// place; it returns bound copies of the earlier ones.
func (c *Controller) bindLocked(now time.Time, created []*corev1.Pod, b *store.Batch) []*corev1.Pod {
	var unbound []string
	for k, p := range c.pods {
		if p.Spec.NodeName == "" {
			unbound = append(unbound, k)
		}
	}
	sort.Strings(unbound)
	pending := make([]*corev1.Pod, 0, len(unbound)+len(created))
	for _, k := range unbound {
		pending = append(pending, c.pods[k])
	}
	for _, pod := range created {
		if pod.Spec.NodeName == "" { // else pinned in the manifest
			pending = append(pending, pod)
		}
	}
	bindings := c.scheduleLocked(now, pending)
	for _, pod := range created {
		if n, ok := bindings[objKey(pod.Namespace, pod.Name)]; ok {
			pod.Spec.NodeName = n
		}
		b.Put(store.Pods, objKey(pod.Namespace, pod.Name), stripStatus(pod))
	}
	var bound []*corev1.Pod
	for _, k := range unbound {
		if n, ok := bindings[k]; ok {
			cp := c.pods[k].DeepCopy()
			cp.Spec.NodeName = n
			bound = append(bound, cp)
			b.Put(store.Pods, k, cp)
		}
	}
	return bound
}

// unreportedNodesLocked lists nodes that hold pods but have not reported
// since this controller started, while still within their grace period.
func (c *Controller) unreportedNodesLocked(now time.Time) []string {
	if now.Sub(c.started) > c.cfg.NodeGrace {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range c.pods {
		n := p.Spec.NodeName
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if _, ok := c.nodes[n]; !ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// livePodsLocked is the observed state the planner sees: every pod berth
// created, with the status its node last reported.
func (c *Controller) livePodsLocked() []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(c.pods)+len(c.terminating))
	next := make(map[*corev1.Pod]liveEntry, len(c.pods)+len(c.terminating))
	changed := false
	merge := func(p *corev1.Pod) {
		rep, msg := c.reportOfLocked(p), c.unschedulable[objKey(p.Namespace, p.Name)]
		e, ok := c.liveCache[p]
		if !ok || e.report != rep || e.unschedulable != msg {
			e = liveEntry{report: rep, unschedulable: msg, pod: mergeStatus(p, rep, msg)}
			changed = true
		}
		next[p] = e
		out = append(out, e.pod)
	}
	for _, p := range c.pods {
		merge(p)
	}
	for _, p := range c.terminating {
		merge(p)
	}
	if changed || len(next) != len(c.liveCache) {
		c.liveVersion++
	}
	c.liveCache = next
	return out
}

// liveEntry is a pod merged with what its node reported, and the inputs it
// was merged from.
type liveEntry struct {
	report        *api.PodReport
	unschedulable string
	pod           *corev1.Pod
}

// reportOfLocked is the node's latest report of p, or nil.
func (c *Controller) reportOfLocked(p *corev1.Pod) *api.PodReport {
	if n, ok := c.nodes[p.Spec.NodeName]; ok {
		return n.statuses[string(p.UID)]
	}
	return nil
}

func (c *Controller) withStatusLocked(p *corev1.Pod) *corev1.Pod {
	return mergeStatus(p, c.reportOfLocked(p), c.unschedulable[objKey(p.Namespace, p.Name)])
}

// mergeStatus returns a copy of p with the reported status, or Pending
// (with why it is not scheduled yet) when there is none.
func mergeStatus(p *corev1.Pod, rep *api.PodReport, unschedulable string) *corev1.Pod {
	cp := *p // shallow: the planner reads, never writes
	cp.Status = corev1.PodStatus{Phase: corev1.PodPending}
	if rep != nil {
		cp.Status = rep.Status
	}
	if p.Spec.NodeName == "" {
		msg := unschedulable
		if msg == "" {
			msg = "waiting for the scheduler"
		}
		cp.Status.Conditions = []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg,
		}}
	}
	return &cp
}

// rebuildAssignmentsLocked recomputes every node's assignment and wakes the
// long-polls of the nodes whose assignment changed. Pods are compared by
// pointer: the controller replaces a pod object whenever it changes and
// never edits one in place, so an unchanged node costs a slice compare, not
// an encoding of its pods (this runs on every pass and every report).
func (c *Controller) rebuildAssignmentsLocked(live []*corev1.Pod) {
	byNode := map[string][]*corev1.Pod{}
	for name := range c.nodes {
		byNode[name] = nil
	}
	for _, p := range c.pods {
		if p.Spec.NodeName != "" {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	// The table follows pods and their readiness (liveVersion) and the
	// applied Services; recomputing it for 10,000 unchanged pods on every
	// pass would dominate the pass.
	table := c.lastTable
	if c.tableVersion != c.liveVersion || c.desired != c.lastDesired || table == nil {
		table = services.Table(c.services, live)
		c.tableVersion = c.liveVersion
	}
	routes := c.nodeRoutesLocked(c.cfg.Now())
	tableChanged := !reflect.DeepEqual(table, c.lastTable) || !reflect.DeepEqual(routes, c.lastRoutes)
	configChanged := c.desired != c.lastDesired
	c.lastTable, c.lastRoutes, c.lastDesired = table, routes, c.desired
	changed := false
	for node, pods := range byNode {
		sort.Slice(pods, func(i, j int) bool {
			if pods[i].Namespace != pods[j].Namespace {
				return pods[i].Namespace < pods[j].Namespace
			}
			return pods[i].Name < pods[j].Name
		})
		prev := c.assignments[node]
		if prev != nil && !tableChanged && !configChanged && slices.Equal(pods, c.assignedPods[node]) {
			continue
		}
		a := &api.Assignment{Node: node, Pods: make([]corev1.Pod, len(pods)), Services: table, Nodes: routes}
		for i, p := range pods {
			a.Pods[i] = *p
		}
		a.ConfigMaps, a.Secrets = c.referencedConfigLocked(a.Pods)
		c.assignedPods[node] = pods
		if prev != nil && assignmentDigest(prev) == assignmentDigest(a) {
			continue // e.g. a ConfigMap no pod of this node uses changed
		}
		c.generation++
		a.Generation = c.generation
		c.assignments[node] = a
		changed = true
	}
	if changed {
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

func assignmentDigest(a *api.Assignment) string {
	cp := *a
	cp.Generation = 0
	data, _ := json.Marshal(cp)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// referencedConfigLocked returns the ConfigMaps and Secrets of the applied
// revision that the pods use, so a node receives only what it needs.
func (c *Controller) referencedConfigLocked(pods []corev1.Pod) ([]corev1.ConfigMap, []corev1.Secret) {
	if c.desired == nil || len(pods) == 0 {
		return nil, nil
	}
	cmNames, secretNames := map[string]bool{}, map[string]bool{}
	for i := range pods {
		cms, secrets := referencedConfig(&pods[i].Spec)
		for _, n := range cms {
			cmNames[objKey(pods[i].Namespace, n)] = true
		}
		for _, n := range secrets {
			secretNames[objKey(pods[i].Namespace, n)] = true
		}
	}
	var cms []corev1.ConfigMap
	for _, cm := range c.desired.ConfigMaps {
		if cmNames[objKey(cm.Namespace, cm.Name)] {
			cms = append(cms, *cm)
		}
	}
	var secrets []corev1.Secret
	for _, s := range c.desired.Secrets {
		if secretNames[objKey(s.Namespace, s.Name)] {
			secrets = append(secrets, *s)
		}
	}
	return cms, secrets
}

// referencedConfig lists the ConfigMap and Secret names a pod spec uses, in
// env, envFrom and volumes.
func referencedConfig(spec *corev1.PodSpec) (configMaps, secrets []string) {
	add := func(list *[]string, name string) {
		for _, n := range *list {
			if n == name {
				return
			}
		}
		*list = append(*list, name)
	}
	for _, ctr := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, e := range ctr.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(&configMaps, r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(&secrets, r.Name)
			}
		}
		for _, e := range ctr.EnvFrom {
			if e.ConfigMapRef != nil {
				add(&configMaps, e.ConfigMapRef.Name)
			}
			if e.SecretRef != nil {
				add(&secrets, e.SecretRef.Name)
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			add(&configMaps, v.ConfigMap.Name)
		}
		if v.Secret != nil {
			add(&secrets, v.Secret.SecretName)
		}
	}
	sort.Strings(configMaps)
	sort.Strings(secrets)
	return configMaps, secrets
}

// withConfigDigest returns the Deployments with a digest of the ConfigMaps
// and Secrets each template references added to the template's annotations,
// so a config change yields a new pod-template-hash and rolls the pods, the
// way the checksum-annotation idiom does on Kubernetes.
func withConfigDigest(set *manifest.Set) []*appsv1.Deployment {
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range set.ConfigMaps {
		cms[objKey(cm.Namespace, cm.Name)] = cm
	}
	secrets := map[string]*corev1.Secret{}
	for _, s := range set.Secrets {
		secrets[objKey(s.Namespace, s.Name)] = s
	}
	var out []*appsv1.Deployment
	for _, d := range set.Deployments {
		cmNames, secretNames := referencedConfig(&d.Spec.Template.Spec)
		if len(cmNames)+len(secretNames) == 0 {
			out = append(out, d)
			continue
		}
		h := sha256.New()
		for _, n := range cmNames {
			if cm := cms[objKey(d.Namespace, n)]; cm != nil {
				writeDigest(h, "configmap/"+n, cm.Data, cm.BinaryData)
			}
		}
		for _, n := range secretNames {
			if s := secrets[objKey(d.Namespace, n)]; s != nil {
				writeDigest(h, "secret/"+n, nil, s.Data)
			}
		}
		cp := d.DeepCopy()
		if cp.Spec.Template.Annotations == nil {
			cp.Spec.Template.Annotations = map[string]string{}
		}
		cp.Spec.Template.Annotations[api.AnnotationConfigDigest] = hex.EncodeToString(h.Sum(nil))[:16]
		out = append(out, cp)
	}
	return out
}

func writeDigest(h io.Writer, name string, text map[string]string, bin map[string][]byte) {
	h.Write([]byte(name + "\x00"))
	keys := make([]string, 0, len(text)+len(bin))
	for k := range text {
		keys = append(keys, k)
	}
	for k := range bin {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Write([]byte(k + "\x00"))
		if v, ok := text[k]; ok {
			h.Write([]byte(v))
		} else {
			h.Write(bin[k])
		}
		h.Write([]byte{0})
	}
}

func stripStatus(p *corev1.Pod) *corev1.Pod {
	cp := p.DeepCopy()
	cp.Status = corev1.PodStatus{}
	return cp
}

func mapValues[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
