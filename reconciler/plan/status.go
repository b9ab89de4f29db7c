package plan

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Deployment condition reasons (deployment_util.go).
const (
	ReasonNewReplicaSetCreated     = "NewReplicaSetCreated"
	ReasonFoundNewReplicaSet       = "FoundNewReplicaSet"
	ReasonReplicaSetUpdated        = "ReplicaSetUpdated"
	ReasonNewReplicaSetAvailable   = "NewReplicaSetAvailable"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonReplicaSetCreateError    = "ReplicaSetCreateError"
	ReasonDeploymentPaused         = "DeploymentPaused"
	ReasonDeploymentResumed        = "DeploymentResumed"
	ReasonMinimumReplicasAvailable = "MinimumReplicasAvailable"
	ReasonMinimumReplicasUnavail   = "MinimumReplicasUnavailable"

	// ReasonCrashLoopBackOff is berth's Health reason for a new pod whose
	// container is in restart back-off; it is not a Deployment condition.
	ReasonCrashLoopBackOff = "CrashLoopBackOff"
)

func condition(st appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func removeCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	out := st.Conditions[:0:0]
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

func (s *deploymentSync) newCondition(t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string) appsv1.DeploymentCondition {
	now := metav1.NewTime(s.p.in.Now)
	return appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
}

// setCondition is deploymentutil.SetDeploymentCondition: a condition with
// the same status and reason is left untouched (times included); a new
// reason with the same status keeps lastTransitionTime.
func (s *deploymentSync) setCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string) {
	s.putCondition(st, s.newCondition(t, status, reason, msg))
}

func (s *deploymentSync) putCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := condition(*st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

// checkPausedConditions is sync.go checkPausedConditions: pausing and
// resuming set Progressing=Unknown, so the deadline clock restarts on
// resume; a timed-out condition is never overwritten.
func (s *deploymentSync) checkPausedConditions() {
	if !hasProgressDeadline(s.d) {
		return
	}
	cond := condition(s.status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == ReasonProgressDeadlineExceeded {
		return
	}
	pausedCond := cond != nil && cond.Reason == ReasonDeploymentPaused
	switch {
	case s.d.Spec.Paused && !pausedCond:
		s.setCondition(&s.status, appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonDeploymentPaused, "Deployment is paused")
	case !s.d.Spec.Paused && pausedCond:
		s.setCondition(&s.status, appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonDeploymentResumed, "Deployment is resumed")
	}
}

// calculateStatus is sync.go calculateStatus: counts from the pods, the
// conditions carried over, and Available recomputed.
func (s *deploymentSync) calculateStatus() appsv1.DeploymentStatus {
	all := s.allRSs()
	var ready, terminating int32
	for _, rv := range all {
		ready += rv.ready
		terminating += rv.terminating
	}
	available := availableSum(all)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  s.d.Generation,
		Replicas:            activeSum(all),
		ReadyReplicas:       ready,
		AvailableReplicas:   available,
		UnavailableReplicas: max(specSum(all)-available, 0),
		TerminatingReplicas: ptr(terminating),
		CollisionCount:      s.status.CollisionCount,
		Conditions:          append([]appsv1.DeploymentCondition(nil), s.status.Conditions...),
	}
	if s.newRS != nil {
		st.UpdatedReplicas = s.newRS.active
	}
	if available >= *s.d.Spec.Replicas-maxUnavailable(s.d) {
		s.setCondition(&st, appsv1.DeploymentAvailable, corev1.ConditionTrue, ReasonMinimumReplicasAvailable, "Deployment has minimum availability.")
	} else {
		s.setCondition(&st, appsv1.DeploymentAvailable, corev1.ConditionFalse, ReasonMinimumReplicasUnavail, "Deployment does not have minimum availability.")
	}
	return st
}

// observedStatus is the status as the live pods stand, for the
// "DeploymentComplete(d, &d.Status)" checks that upstream makes against
// the stored status.
func (s *deploymentSync) observedStatus() *appsv1.DeploymentStatus {
	st := s.calculateStatus()
	return &st
}

// deploymentComplete is deploymentutil.DeploymentComplete.
func deploymentComplete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	r := *d.Spec.Replicas
	return st.UpdatedReplicas == r && st.Replicas == r && st.AvailableReplicas == r && st.ObservedGeneration >= d.Generation
}

// deploymentProgressing is deploymentutil.DeploymentProgressing: more
// updated, fewer old, more ready or more available replicas than before.
func deploymentProgressing(old, cur *appsv1.DeploymentStatus) bool {
	oldOld := old.Replicas - old.UpdatedReplicas
	curOld := cur.Replicas - cur.UpdatedReplicas
	return cur.UpdatedReplicas > old.UpdatedReplicas || curOld < oldOld ||
		cur.ReadyReplicas > old.ReadyReplicas || cur.AvailableReplicas > old.AvailableReplicas
}

// deploymentTimedOut is deploymentutil.DeploymentTimedOut: no progress
// recorded for longer than progressDeadlineSeconds.
func (s *deploymentSync) deploymentTimedOut(st *appsv1.DeploymentStatus) bool {
	if !hasProgressDeadline(s.d) {
		return false
	}
	c := condition(*st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason == ReasonNewReplicaSetAvailable {
		return false
	}
	if c.Reason == ReasonProgressDeadlineExceeded {
		return true
	}
	return c.LastUpdateTime.Add(s.deadline()).Before(s.p.in.Now)
}

func (s *deploymentSync) deadline() time.Duration {
	return time.Duration(*s.d.Spec.ProgressDeadlineSeconds) * time.Second
}

// syncRolloutStatus is progress.go syncRolloutStatus.
func (s *deploymentSync) syncRolloutStatus() {
	st := s.calculateStatus()
	if !hasProgressDeadline(s.d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	name := fmt.Sprintf("Deployment %q", s.d.Name)
	if s.newRS != nil {
		name = fmt.Sprintf("ReplicaSet %q", s.newRS.rs.Name)
	}
	cur := condition(s.status, appsv1.DeploymentProgressing)
	// A completed rollout with nothing left over needs no estimate.
	complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewReplicaSetAvailable
	if hasProgressDeadline(s.d) && !complete {
		switch {
		case deploymentComplete(s.d, &st):
			s.setCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewReplicaSetAvailable, name+" has successfully progressed.")
		case deploymentProgressing(&s.status, &st):
			// Progress refreshes lastUpdateTime even with the same reason,
			// which SetDeploymentCondition alone would not do.
			c := s.newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonReplicaSetUpdated, name+" is progressing.")
			if cur != nil {
				if cur.Status == corev1.ConditionTrue {
					c.LastTransitionTime = cur.LastTransitionTime
				}
				removeCondition(&st, appsv1.DeploymentProgressing)
			}
			s.putCondition(&st, c)
		case s.deploymentTimedOut(&st):
			s.setCondition(&st, appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonProgressDeadlineExceeded, name+" has timed out progressing.")
		}
	}
	s.result = st
	s.requeueStuckDeployment()
}

// requeueStuckDeployment is progress.go requeueStuckDeployment: a rollout
// in progress is looked at again when its deadline would pass (+1 s, as
// upstream).
func (s *deploymentSync) requeueStuckDeployment() {
	c := condition(s.result, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(s.d) || c == nil || c.Status == corev1.ConditionUnknown {
		return
	}
	if deploymentComplete(s.d, &s.result) || c.Reason == ReasonProgressDeadlineExceeded {
		return
	}
	after := c.LastUpdateTime.Add(s.deadline()).Sub(s.p.in.Now)
	s.p.observeRequeue(max(after, 0) + time.Second)
}

// report assembles the DeploymentStatus and health, and requeues for pods
// still short of minReadySeconds.
func (s *deploymentSync) report() DeploymentStatus {
	ds := DeploymentStatus{Namespace: s.d.Namespace, Name: s.d.Name, Status: s.result}
	if s.newRS != nil {
		ds.Revision = revision(s.newRS.rs.Annotations)
	} else {
		for _, rv := range s.rsList {
			ds.Revision = max(ds.Revision, revision(rv.rs.Annotations))
		}
	}
	ds.Health, ds.Reason = s.health()
	if s.rolledBackFrom != "" {
		ds.RolledBackFrom = s.rolledBackFrom
		ds.Health = HealthDegraded
		ds.Reason = fmt.Sprintf("RolledBack: pod template %s from Git failed; running revision %d instead (%s)", s.rolledBackFrom, ds.Revision, ds.Reason)
	}
	s.reportFailure()
	for _, rv := range s.rsList {
		for _, pod := range rv.pods {
			s.p.observeRequeue(untilAvailable(pod, rv.rs.Spec.MinReadySeconds, s.p.in.Now))
		}
	}
	return ds
}

// health is berth's one-word summary, worst first: a timed-out rollout or a
// crash-looping new pod is Degraded; a complete, available rollout is
// Healthy; anything else is still Progressing.
func (s *deploymentSync) health() (Health, string) {
	st := &s.result
	if c := condition(*st, appsv1.DeploymentProgressing); c != nil && c.Reason == ReasonProgressDeadlineExceeded {
		return HealthDegraded, ReasonProgressDeadlineExceeded + ": " + c.Message
	}
	if s.newRS != nil {
		if pod, ctr, restarts := crashLooping(s.newRS.pods); pod != "" {
			return HealthDegraded, fmt.Sprintf("%s: container %q of pod %q is crash-looping (%d restarts)", ReasonCrashLoopBackOff, ctr, pod, restarts)
		}
	}
	avail := condition(*st, appsv1.DeploymentAvailable)
	if deploymentComplete(s.d, st) && avail != nil && avail.Status == corev1.ConditionTrue {
		msg := fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, *s.d.Spec.Replicas)
		if s.newRS != nil {
			msg = fmt.Sprintf("ReplicaSet %q: %s", s.newRS.rs.Name, msg)
		}
		return HealthHealthy, ReasonNewReplicaSetAvailable + ": " + msg
	}
	if s.d.Spec.Paused {
		return HealthProgressing, ReasonDeploymentPaused + ": rollout paused"
	}
	want := *s.d.Spec.Replicas
	var msg string
	switch {
	case st.UpdatedReplicas < want:
		msg = fmt.Sprintf("%d of %d new replicas created", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		msg = fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < st.UpdatedReplicas:
		msg = fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas)
	default:
		msg = fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return HealthProgressing, "Rolling out: " + msg
}

// crashLooping finds an active pod with a container waiting in
// CrashLoopBackOff.
func crashLooping(pods []*corev1.Pod) (pod, container string, restarts int32) {
	for _, p := range pods {
		if !isActive(p) {
			continue
		}
		for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for _, cs := range list {
				if cs.State.Waiting != nil && cs.State.Waiting.Reason == ReasonCrashLoopBackOff {
					return p.Name, cs.Name, cs.RestartCount
				}
			}
		}
	}
	return "", "", 0
}
