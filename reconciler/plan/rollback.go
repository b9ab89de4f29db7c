package plan

import (
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Automatic rollback is berth's addition to the Kubernetes semantics (where
// a failed rollout only sets ProgressDeadlineExceeded). It works in two
// passes, both level-triggered:
//  1. A pass that finds the rollout of Git's template failed reports the
//     template in Plan.FailedTemplates; the controller persists it.
//  2. While Git's template is listed in Input.FailedTemplates, the planner
//     targets the newest ReplicaSet whose template is not listed instead,
//     exactly as if the user had run `kubectl rollout undo`: that
//     ReplicaSet is reused, gets the next revision, and the rolling update
//     (or Recreate) moves the pods back under the usual fenceposts.
// A new template in Git is a new hash, so the next push rolls out normally.

// crashLoopRollbackRestarts is how many restarts of a crash-looping new pod
// condemn a rollout. One back-off is often a dependency still starting;
// three (about 70 s of back-off) is a persistent failure.
const crashLoopRollbackRestarts = 3

// refuseFailedTemplate retargets the Deployment at its newest ReplicaSet
// with a template not known to have failed, when Git's template has.
func (s *deploymentSync) refuseFailedTemplate() {
	failed := s.p.in.FailedTemplates[s.key]
	if len(failed) == 0 {
		return
	}
	h := TemplateHash(&s.d.Spec.Template)
	if !slices.Contains(failed, h) {
		return
	}
	var good *rsView
	for _, rv := range s.rsList {
		if slices.Contains(failed, TemplateHash(&rv.rs.Spec.Template)) {
			continue
		}
		if good == nil || revision(rv.rs.Annotations) > revision(good.rs.Annotations) {
			good = rv
		}
	}
	if good == nil {
		return // nothing to return to: keep trying what Git asks for
	}
	d := *s.d
	d.Spec.Template = *good.rs.Spec.Template.DeepCopy()
	d.Spec.Template.Labels = withoutLabel(d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	s.d = &d
	s.rolledBackFrom = h
}

// rolloutFailure says why the rollout in progress has failed, or "" if it
// has not (or is complete: a later crash is not the rollout's fault).
func (s *deploymentSync) rolloutFailure() string {
	if s.newRS == nil {
		return ""
	}
	c := condition(s.result, appsv1.DeploymentProgressing)
	switch {
	case c != nil && c.Reason == ReasonProgressDeadlineExceeded:
		msg := ReasonProgressDeadlineExceeded + ": " + c.Message
		if why := unreadyReason(s.newRS.pods); why != "" {
			msg += " (" + why + ")"
		}
		return msg
	case c != nil && c.Reason == ReasonNewReplicaSetAvailable,
		c == nil && deploymentComplete(s.d, &s.result):
		return ""
	}
	if pod, ctr, restarts := crashLooping(s.newRS.pods); pod != "" && restarts >= crashLoopRollbackRestarts {
		return fmt.Sprintf("%s: container %q of pod %q is crash-looping (%d restarts)", ReasonCrashLoopBackOff, ctr, pod, restarts)
	}
	return ""
}

// reportFailure records a failed rollout when there is an older template
// to return to. A rollback target itself is never condemned, so a broken
// environment does not walk the Deployment back through its history.
func (s *deploymentSync) reportFailure() {
	if s.rolledBackFrom != "" {
		return
	}
	reason := s.rolloutFailure()
	if reason == "" {
		return
	}
	failed := s.p.in.FailedTemplates[s.key]
	hasTarget := false
	for _, rv := range s.rsList {
		if rv != s.newRS && !rv.created && !slices.Contains(failed, TemplateHash(&rv.rs.Spec.Template)) {
			hasTarget = true
			break
		}
	}
	if !hasTarget {
		return
	}
	s.p.plan.FailedTemplates = append(s.p.plan.FailedTemplates, FailedTemplate{
		Namespace: s.d.Namespace, Name: s.d.Name,
		Hash:   TemplateHash(&s.d.Spec.Template),
		Reason: reason,
	})
	s.p.observeRequeue(requeueSlack) // roll back without waiting for an event
}

// unreadyReason is the first message a node gave for a new pod not being
// ready (a failing readiness probe, say), so that a rollback names the
// cause and not only the deadline.
func unreadyReason(pods []*corev1.Pod) string {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue && c.Message != "" {
				return "pod " + p.Name + ": " + c.Message
			}
		}
	}
	return ""
}
