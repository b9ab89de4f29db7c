// Package plan is berth's pure planner for Deployments, ReplicaSets and bare
// Pods. Compute takes the desired state from Git and the live state from the
// store and returns the actions that move one toward the other, following the
// upstream Deployment and ReplicaSet controllers
// (kubernetes/kubernetes pkg/controller/deployment and .../replicaset).
//
// The planner does no I/O and reads no clock and no randomness: time comes in
// as Input.Now and names and UIDs come from an injected Names. Each call is a
// full, level-triggered pass; what Kubernetes keeps in object status between
// syncs (Deployment conditions, collisionCount) comes in as
// Input.PreviousStatus.
package plan

import (
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Input is everything one planning pass looks at.
type Input struct {
	// Now is the time of the pass; every time-based rule (minReadySeconds,
	// progressDeadlineSeconds, pod ready age) is measured against it.
	Now time.Time

	// Deployments are the desired Deployments from Git, already defaulted and
	// validated. Their pod template annotations include
	// api.AnnotationConfigDigest, so a ConfigMap or Secret change is a
	// template change. Nil defaultable fields are defaulted again defensively.
	Deployments []*appsv1.Deployment
	// Pods are the bare Pods from Git, identified by namespace/name.
	Pods []*corev1.Pod

	// ReplicaSets are the live ReplicaSets from the store. Those owned by a
	// Deployment carry a controller ownerReference to it (matched by
	// namespace and name) and the deployment.kubernetes.io annotations. Their
	// status is ignored: the planner derives it from LivePods.
	ReplicaSets []*appsv1.ReplicaSet
	// LivePods are all pods the controller created and has not forgotten:
	// ReplicaSet pods carry a controller ownerReference to their ReplicaSet,
	// bare pods carry none. Status is what the node agents reported. Pods
	// the controller deleted but that still run keep a DeletionTimestamp;
	// they are never active or available, but they still count as running
	// for the Recreate strategy, and they are never deleted again.
	LivePods []*corev1.Pod

	// PreviousStatus is the DeploymentStatus this planner returned for each
	// Deployment on the previous pass, keyed by "namespace/name". It carries
	// conditions (with their LastUpdateTime/LastTransitionTime) and
	// collisionCount across passes, as the Deployment's status subresource
	// does in Kubernetes. A missing entry means a Deployment seen for the
	// first time.
	PreviousStatus map[string]appsv1.DeploymentStatus

	// FailedTemplates lists, per Deployment key, the TemplateHash of pod
	// templates whose rollout failed (from Plan.FailedTemplates of earlier
	// passes, persisted by the controller). A Deployment whose Git template
	// is listed is rolled back to its newest ReplicaSet with an unlisted
	// template, as `kubectl rollout undo` would do, until Git changes the
	// template again. Nil means no automatic rollback.
	FailedTemplates map[string][]string
}

// Plan is the outcome of one pass: the writes the controller must perform
// and the status to record. Every slice is sorted by namespace/name so that
// equal inputs give equal plans.
type Plan struct {
	// CreateReplicaSets are new ReplicaSets, complete: name
	// <deployment>-<pod-template-hash>, labels, selector and template carrying
	// pod-template-hash, a controller ownerReference to the Deployment,
	// revision / desired-replicas / max-replicas annotations, spec.replicas
	// and minReadySeconds, creationTimestamp Now and a UID from Names.
	CreateReplicaSets []*appsv1.ReplicaSet
	// UpdateReplicaSets are copies of live ReplicaSets whose spec.replicas,
	// minReadySeconds or annotations (revision, revision-history,
	// desired-replicas, max-replicas, copied Deployment annotations) changed.
	UpdateReplicaSets []*appsv1.ReplicaSet
	// DeleteReplicaSets are ReplicaSets to remove: old revisions beyond
	// revisionHistoryLimit, and those whose Deployment is gone from Git.
	DeleteReplicaSets []*appsv1.ReplicaSet

	// CreatePods are complete new pods: from a ReplicaSet template (name from
	// Names.PodName, ownerReference to the ReplicaSet) or from a bare Pod
	// manifest (its own name, annotation berth.dev/spec-hash). Each has a UID
	// from Names, creationTimestamp Now, label berth.dev/owner, and an empty
	// NodeName: the controller schedules them.
	CreatePods []*corev1.Pod
	// DeletePods are live pods to terminate: scale-down victims in
	// Kubernetes' order, Failed/Succeeded pods of ReplicaSets (replaced),
	// pods whose ReplicaSet, Deployment or bare Pod is gone, and bare pods
	// whose manifest changed (their replacement is created once the old pod
	// has left LivePods, since a name is only ever held by one pod).
	DeletePods []*corev1.Pod

	// Deployments holds one status per desired Deployment, sorted by
	// namespace/name.
	Deployments []DeploymentStatus

	// RequeueAfter is > 0 when the outcome will change with time alone (a
	// pod reaching minReadySeconds, a progress deadline expiring): the
	// controller should run another pass after this long.
	RequeueAfter time.Duration

	// FailedTemplates are rollouts this pass found failed: progress
	// deadline exceeded, or a new pod crash-looping persistently, while an
	// older template is there to return to. The controller should persist
	// them and pass them back in Input.FailedTemplates; the next pass rolls
	// back (RequeueAfter is set so that it comes at once).
	FailedTemplates []FailedTemplate
}

// FailedTemplate names one failed pod template of one Deployment.
type FailedTemplate struct {
	Namespace, Name string
	// Hash is TemplateHash of the Deployment's pod template.
	Hash string
	// Reason is the Health reason that condemned it.
	Reason string
}

// Empty reports whether the plan writes nothing (statuses aside).
func (p Plan) Empty() bool {
	return len(p.CreateReplicaSets)+len(p.UpdateReplicaSets)+len(p.DeleteReplicaSets)+len(p.CreatePods)+len(p.DeletePods) == 0
}

// DeploymentStatus is what a pass concluded about one Deployment.
type DeploymentStatus struct {
	Namespace, Name string
	// Status is the Deployment status as the upstream controller would write
	// it: replica counts, observedGeneration, collisionCount and the
	// Progressing/Available conditions. Feed it back as Input.PreviousStatus.
	Status appsv1.DeploymentStatus
	// Revision is the revision of the newest ReplicaSet (the Deployment's
	// deployment.kubernetes.io/revision annotation); 0 when there is none.
	Revision int64
	// Health summarises Status for people; Reason says why.
	Health Health
	Reason string
	// RolledBackFrom is the TemplateHash of the Git template that is being
	// refused because it failed before; empty unless rolled back.
	RolledBackFrom string
}

// Health is an ordered summary of a Deployment's state: a greater value is
// worse, so the health of a group is its maximum.
type Health string

// The health values, best first.
const (
	HealthHealthy     Health = "Healthy"
	HealthProgressing Health = "Progressing"
	HealthDegraded    Health = "Degraded"
)

func (h Health) String() string { return string(h) }

func (h Health) rank() int {
	switch h {
	case HealthHealthy:
		return 0
	case HealthProgressing:
		return 1
	default:
		return 2
	}
}

// Less reports whether h is healthier than o.
func (h Health) Less(o Health) bool { return h.rank() < o.rank() }

// Names hands out pod names and UIDs. It is injected so that plans are
// deterministic under test; production uses random suffixes like the
// ReplicaSet controller's generateName.
type Names interface {
	// PodName returns a fresh pod name for a pod of the named ReplicaSet,
	// conventionally rsName + "-" + 5 random characters.
	PodName(rsName string) string
	// UID returns a fresh unique object UID.
	UID() string
}

// Compute plans one pass. It never mutates its input.
func Compute(in Input, names Names) Plan {
	p := &planner{in: in, names: names, idx: buildIndex(in)}
	p.run()
	return p.out()
}

// planner carries the state of one Compute call.
type planner struct {
	in    Input
	names Names
	idx   *index

	plan    Plan
	requeue time.Duration
	// podNames holds every pod name in use, built on the first pod create.
	podNames map[string]bool
}

func (p *planner) run() {
	desired := make(map[string]bool, len(p.in.Deployments))
	deployments := append([]*appsv1.Deployment(nil), p.in.Deployments...)
	sort.Slice(deployments, func(i, j int) bool {
		a, b := deployments[i], deployments[j]
		return byKey(a.Namespace, a.Name, b.Namespace, b.Name)
	})
	for _, d := range deployments {
		k := key(d.Namespace, d.Name)
		desired[k] = true
		ds := p.syncDeployment(withDefaults(d), p.idx.rsByDeployment[k])
		p.plan.Deployments = append(p.plan.Deployments, ds)
	}
	// ReplicaSets whose Deployment left Git go, with their pods (the garbage
	// collector's cascading delete in Kubernetes).
	for _, dk := range p.idx.deploymentKeys {
		if desired[dk] {
			continue
		}
		for _, rv := range p.idx.rsByDeployment[dk] {
			rv.deleted = true
		}
	}
	p.syncReplicaSets()
	p.syncBarePods()
}

// observeRequeue records that something changes after d.
func (p *planner) observeRequeue(d time.Duration) {
	if d <= 0 {
		return
	}
	if p.requeue == 0 || d < p.requeue {
		p.requeue = d
	}
}

func (p *planner) out() Plan {
	for _, rv := range p.idx.allRS {
		switch {
		case rv.created:
			p.plan.CreateReplicaSets = append(p.plan.CreateReplicaSets, rv.rs)
		case rv.deleted:
			p.plan.DeleteReplicaSets = append(p.plan.DeleteReplicaSets, rv.orig)
		case rv.modified:
			p.plan.UpdateReplicaSets = append(p.plan.UpdateReplicaSets, rv.rs)
		}
	}
	sortRS(p.plan.CreateReplicaSets)
	sortRS(p.plan.UpdateReplicaSets)
	sortRS(p.plan.DeleteReplicaSets)
	sortPods(p.plan.CreatePods)
	sortPods(p.plan.DeletePods)
	p.plan.RequeueAfter = p.requeue
	return p.plan
}

func key(namespace, name string) string { return namespace + "/" + name }

// byKey orders objects by namespace, then name, without building keys.
func byKey(ns1, n1, ns2, n2 string) bool {
	if ns1 != ns2 {
		return ns1 < ns2
	}
	return n1 < n2
}

func sortRS(s []*appsv1.ReplicaSet) {
	sort.Slice(s, func(i, j int) bool { return byKey(s[i].Namespace, s[i].Name, s[j].Namespace, s[j].Name) })
}

func sortPods(s []*corev1.Pod) {
	sort.Slice(s, func(i, j int) bool { return byKey(s[i].Namespace, s[i].Name, s[j].Namespace, s[j].Name) })
}
