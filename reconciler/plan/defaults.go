package plan

import (
	"math"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Annotations the Deployment controller keeps on ReplicaSets
// (pkg/controller/deployment/util/deployment_util.go).
const (
	AnnotationRevision        = "deployment.kubernetes.io/revision"
	AnnotationRevisionHistory = "deployment.kubernetes.io/revision-history"
	AnnotationDesiredReplicas = "deployment.kubernetes.io/desired-replicas"
	AnnotationMaxReplicas     = "deployment.kubernetes.io/max-replicas"

	// maxRevisionHistoryChars bounds revision-history, as upstream's
	// maxRevHistoryLengthInChars does.
	maxRevisionHistoryChars = 2000

	// burstReplicas caps creates and deletes per ReplicaSet per pass
	// (replica_set.go BurstReplicas).
	burstReplicas = 500
)

// skipCopyAnnotation lists the Deployment annotations never copied to
// ReplicaSets (deployment_util.go skipCopyAnnotation).
func skipCopyAnnotation(k string) bool {
	switch k {
	case "kubectl.kubernetes.io/last-applied-configuration",
		AnnotationRevision, AnnotationRevisionHistory,
		AnnotationDesiredReplicas, AnnotationMaxReplicas,
		"deprecated.deployment.rollback.to":
		return true
	}
	return false
}

// withDefaults returns d with the API server's defaults applied to any nil
// field the planner reads (k8s.io/api apps/v1 defaults). The manifest layer
// already defaults; this keeps the planner total. d itself is not modified.
func withDefaults(d *appsv1.Deployment) *appsv1.Deployment {
	s := d.Spec
	if s.Replicas != nil && s.RevisionHistoryLimit != nil && s.ProgressDeadlineSeconds != nil && s.Strategy.Type != "" &&
		(s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
			(s.Strategy.RollingUpdate != nil && s.Strategy.RollingUpdate.MaxSurge != nil && s.Strategy.RollingUpdate.MaxUnavailable != nil)) {
		return d
	}
	out := *d
	if s.Replicas == nil {
		out.Spec.Replicas = ptr(int32(1))
	}
	if s.RevisionHistoryLimit == nil {
		out.Spec.RevisionHistoryLimit = ptr(int32(10))
	}
	if s.ProgressDeadlineSeconds == nil {
		out.Spec.ProgressDeadlineSeconds = ptr(int32(600))
	}
	if s.Strategy.Type == "" {
		out.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if out.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		ru := appsv1.RollingUpdateDeployment{}
		if s.Strategy.RollingUpdate != nil {
			ru = *s.Strategy.RollingUpdate
		}
		quarter := intstr.FromString("25%")
		if ru.MaxSurge == nil {
			ru.MaxSurge = &quarter
		}
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = &quarter
		}
		out.Spec.Strategy.RollingUpdate = &ru
	}
	return &out
}

func ptr[T any](v T) *T { return &v }

func isRolling(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType
}

// resolveFenceposts is deploymentutil.ResolveFenceposts: surge rounds up,
// unavailable rounds down, and if both come to 0 unavailable becomes 1 so a
// rollout can always proceed.
func resolveFenceposts(maxSurge, maxUnavailable *intstr.IntOrString, desired int32) (surge, unavailable int32) {
	zero := intstr.FromInt32(0)
	s, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(maxSurge, zero), int(desired), true)
	if err != nil {
		s = 0 // validation rejects malformed values before they get here
	}
	u, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(maxUnavailable, zero), int(desired), false)
	if err != nil {
		u = 0
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

// maxSurge is deploymentutil.MaxSurge: 0 unless rolling.
func maxSurge(d *appsv1.Deployment) int32 {
	if !isRolling(d) {
		return 0
	}
	s, _ := resolveFenceposts(d.Spec.Strategy.RollingUpdate.MaxSurge, d.Spec.Strategy.RollingUpdate.MaxUnavailable, *d.Spec.Replicas)
	return s
}

// maxUnavailable is deploymentutil.MaxUnavailable: 0 unless rolling or when
// replicas is 0, and never more than replicas.
func maxUnavailable(d *appsv1.Deployment) int32 {
	if !isRolling(d) || *d.Spec.Replicas == 0 {
		return 0
	}
	_, u := resolveFenceposts(d.Spec.Strategy.RollingUpdate.MaxSurge, d.Spec.Strategy.RollingUpdate.MaxUnavailable, *d.Spec.Replicas)
	return min(u, *d.Spec.Replicas)
}

// hasProgressDeadline is deploymentutil.HasProgressDeadline: MaxInt32 means
// "no deadline".
func hasProgressDeadline(d *appsv1.Deployment) bool {
	return d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds != math.MaxInt32
}

// revision parses a ReplicaSet's revision annotation; 0 when absent or bad.
func revision(annotations map[string]string) int64 {
	v, err := strconv.ParseInt(annotations[AnnotationRevision], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// intAnnotation parses an int32 annotation.
func intAnnotation(annotations map[string]string, k string) (int32, bool) {
	v, ok := annotations[k]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}
