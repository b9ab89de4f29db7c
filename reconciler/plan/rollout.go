package plan

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// deploymentSync is one Deployment's share of a pass, mirroring the upstream
// DeploymentController.syncDeployment (deployment_controller.go).
type deploymentSync struct {
	p   *planner
	d   *appsv1.Deployment // defaulted
	key string

	// status is the Deployment's stored status (d.Status upstream): the
	// previous pass's result plus whatever getNewReplicaSet records in it
	// (conditions, collisionCount). Progress is measured against it.
	status appsv1.DeploymentStatus
	// result is the status this pass computes.
	result appsv1.DeploymentStatus

	rsList []*rsView // every ReplicaSet the Deployment owns, oldest first
	found  bool      // newRS/oldRSs are resolved
	newRS  *rsView   // the ReplicaSet whose template matches; nil if none yet
	oldRSs []*rsView // all the others

	// rolledBackFrom is the TemplateHash of Git's template when it is
	// refused as failed and d targets an older template instead.
	rolledBackFrom string
}

func (p *planner) syncDeployment(d *appsv1.Deployment, rsList []*rsView) DeploymentStatus {
	s := &deploymentSync{p: p, d: d, key: key(d.Namespace, d.Name)}
	s.rsList = append([]*rsView(nil), rsList...)
	sortByCreation(s.rsList)
	prev := p.in.PreviousStatus[s.key]
	s.status = *prev.DeepCopy()
	s.refuseFailedTemplate()

	// syncDeployment: pause bookkeeping first, then a paused Deployment or a
	// pure replica-count change only scales; anything else rolls out.
	s.checkPausedConditions()
	switch {
	case s.d.Spec.Paused:
		s.sync()
	case s.isScalingEvent():
		s.sync()
	case s.d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType:
		s.rolloutRecreate()
	default:
		s.rolloutRolling()
	}
	return s.report()
}

// sortByCreation is controller.ReplicaSetsByCreationTimestamp: oldest
// first, name as the tie-break.
func sortByCreation(s []*rsView) {
	sort.SliceStable(s, func(i, j int) bool { return olderRS(s[i], s[j]) })
}

func olderRS(x, y *rsView) bool {
	a, b := x.rs, y.rs
	if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.Name < b.Name
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

func (s *deploymentSync) allRSs() []*rsView {
	if s.newRS == nil {
		return s.oldRSs
	}
	return append(append([]*rsView(nil), s.oldRSs...), s.newRS)
}

// getNewReplicaSet is sync.go getNewReplicaSet: find the ReplicaSet whose
// template equals the Deployment's ignoring pod-template-hash (the oldest
// wins) and bring its revision and annotations up to date; create one if
// there is none and create is set.
func (s *deploymentSync) getNewReplicaSet(create bool) *rsView {
	if !s.found {
		s.found = true
		for _, rv := range s.rsList {
			if s.newRS == nil && equalIgnoreHash(&rv.rs.Spec.Template, &s.d.Spec.Template) {
				s.newRS = rv
				continue
			}
			s.oldRSs = append(s.oldRSs, rv)
		}
		if s.newRS != nil {
			s.syncExistingNewRS()
		}
	}
	if s.newRS == nil && create {
		s.createNewRS()
	}
	return s.newRS
}

func (s *deploymentSync) newRevision() int64 {
	var max int64
	for _, rv := range s.oldRSs {
		if r := revision(rv.rs.Annotations); r > max {
			max = r
		}
	}
	return max + 1
}

func (s *deploymentSync) syncExistingNewRS() {
	rv := s.newRS
	// Reusing an old ReplicaSet (a rollback or a git revert) gives it the
	// next revision and records the old number in revision-history.
	s.setNewReplicaSetAnnotations(rv, s.newRevision(), true)
	if rv.rs.Spec.MinReadySeconds != s.d.Spec.MinReadySeconds {
		rv.mutable().Spec.MinReadySeconds = s.d.Spec.MinReadySeconds
	}
	// A Deployment first seen with its ReplicaSet already in place starts
	// its progress clock now.
	if hasProgressDeadline(s.d) && condition(s.status, appsv1.DeploymentProgressing) == nil {
		s.setCondition(&s.status, appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewReplicaSet,
			fmt.Sprintf("Found new replica set %q", rv.rs.Name))
	}
}

// maxCollisionAttempts bounds the search for a free ReplicaSet name. Each
// attempt is a fresh 32-bit hash, so a second attempt is already rare.
const maxCollisionAttempts = 100

func (s *deploymentSync) createNewRS() {
	d := s.d
	var name, hash string
	cc := s.status.CollisionCount
	for attempt := 0; ; attempt++ {
		hash = PodTemplateHash(&d.Spec.Template, cc)
		name = d.Name + "-" + hash
		if _, taken := s.p.idx.rsByKey[key(d.Namespace, name)]; !taken {
			break
		}
		if attempt == maxCollisionAttempts {
			s.setCondition(&s.status, appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonReplicaSetCreateError,
				fmt.Sprintf("Failed to create new replica set %q: name already taken", name))
			return
		}
		// The name belongs to a ReplicaSet with another template: bump
		// collisionCount for a different hash (sync.go). Upstream retries
		// on the next sync; the outcome is the same.
		next := int32(1)
		if cc != nil {
			next = *cc + 1
		}
		cc = &next
		s.status.CollisionCount = cc
	}

	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels = withLabel(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	sel := &metav1.LabelSelector{}
	if d.Spec.Selector != nil {
		sel = d.Spec.Selector.DeepCopy()
	}
	sel.MatchLabels = withLabel(sel.MatchLabels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	rs := &appsv1.ReplicaSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			Namespace:         d.Namespace,
			UID:               types.UID(s.p.names.UID()),
			CreationTimestamp: metav1.NewTime(s.p.in.Now),
			Labels:            withLabel(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash),
			OwnerReferences:   []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        ptr(int32(0)),
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        sel,
			Template:        tmpl,
		},
	}
	rv := &rsView{rs: rs, created: true, deploymentKey: s.key}
	newRevision := s.newRevision()
	s.newRS = rv
	rs.Spec.Replicas = ptr(s.newRSNewReplicas())
	s.setNewReplicaSetAnnotations(rv, newRevision, false)

	s.rsList = append(s.rsList, rv)
	idx := s.p.idx
	idx.allRS = append(idx.allRS, rv)
	idx.rsByKey[key(rs.Namespace, rs.Name)] = rv
	idx.rsByDeployment[s.key] = append(idx.rsByDeployment[s.key], rv)

	if hasProgressDeadline(d) {
		s.setCondition(&s.status, appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewReplicaSetCreated,
			fmt.Sprintf("Created new replica set %q", rs.Name))
	}
}

// withLabel returns a copy of m with k=v added.
func withLabel(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for mk, mv := range m {
		out[mk] = mv
	}
	out[k] = v
	return out
}

// setNewReplicaSetAnnotations is deploymentutil.SetNewReplicaSetAnnotations.
func (s *deploymentSync) setNewReplicaSetAnnotations(rv *rsView, newRevision int64, exists bool) {
	for k, v := range s.d.Annotations {
		if !skipCopyAnnotation(k) {
			rv.setAnnotation(k, v)
		}
	}
	oldRevision, had := rv.rs.Annotations[AnnotationRevision]
	oldRev, err := strconv.ParseInt(oldRevision, 10, 64)
	if err != nil {
		if oldRevision != "" {
			return // unparseable: leave it alone, as upstream does
		}
		oldRev = 0
	}
	// Only ever move a revision forward: old ReplicaSets may have been
	// deleted since this one got its number.
	if oldRev < newRevision {
		rv.setAnnotation(AnnotationRevision, strconv.FormatInt(newRevision, 10))
		if had {
			rv.setAnnotation(AnnotationRevisionHistory, appendRevisionHistory(rv.rs.Annotations[AnnotationRevisionHistory], oldRevision))
		}
	}
	if !exists {
		s.setReplicasAnnotations(rv)
	}
}

// appendRevisionHistory appends rev, dropping the oldest entries to stay
// within maxRevisionHistoryChars.
func appendRevisionHistory(history, rev string) string {
	if history == "" {
		return rev
	}
	old := strings.Split(history, ",")
	total := len(history) + len(rev) + 1
	start := 0
	for total > maxRevisionHistoryChars && start < len(old) {
		total -= len(old[start]) + 1
		start++
	}
	if total > maxRevisionHistoryChars {
		return history
	}
	return strings.Join(append(old[start:], rev), ",")
}

// setReplicasAnnotations records the Deployment size a ReplicaSet was scaled
// for; proportional scaling reads it back (max-replicas) and a mismatch
// marks a scaling event (desired-replicas).
func (s *deploymentSync) setReplicasAnnotations(rv *rsView) bool {
	r := *s.d.Spec.Replicas
	a := rv.setAnnotation(AnnotationDesiredReplicas, strconv.Itoa(int(r)))
	b := rv.setAnnotation(AnnotationMaxReplicas, strconv.Itoa(int(r+maxSurge(s.d))))
	return a || b
}

// scaleReplicaSet is sync.go scaleReplicaSet: size and replica annotations.
func (s *deploymentSync) scaleReplicaSet(rv *rsView, n int32) bool {
	a := rv.setReplicas(n)
	b := s.setReplicasAnnotations(rv)
	return a || b
}

// scaleAndRecord is scaleReplicaSetAndRecordEvent: a no-op when the size is
// already right; reports whether the size changed.
func (s *deploymentSync) scaleAndRecord(rv *rsView, n int32) bool {
	if rv.replicas() == n {
		return false
	}
	s.scaleReplicaSet(rv, n)
	return true
}

// rolloutRolling is rolling.go rolloutRolling: scale up first; if that did
// anything the pass ends there, else scale down; clean up once complete.
func (s *deploymentSync) rolloutRolling() {
	s.getNewReplicaSet(true)
	if s.newRS == nil { // the name could not be claimed
		s.syncRolloutStatus()
		return
	}
	if s.reconcileNewReplicaSet() {
		s.syncRolloutStatus()
		return
	}
	if s.reconcileOldReplicaSets() {
		s.syncRolloutStatus()
		return
	}
	if deploymentComplete(s.d, s.observedStatus()) {
		s.cleanupDeployment()
	}
	s.syncRolloutStatus()
}

func (s *deploymentSync) reconcileNewReplicaSet() bool {
	want := *s.d.Spec.Replicas
	switch cur := s.newRS.replicas(); {
	case cur == want:
		return false
	case cur > want:
		return s.scaleAndRecord(s.newRS, want)
	}
	return s.scaleAndRecord(s.newRS, s.newRSNewReplicas())
}

// newRSNewReplicas is deploymentutil.NewRSNewReplicas: grow the new
// ReplicaSet up to replicas+maxSurge pods in total (spec sizes), never past
// replicas; Recreate goes straight to replicas.
func (s *deploymentSync) newRSNewReplicas() int32 {
	want := *s.d.Spec.Replicas
	if !isRolling(s.d) {
		return want
	}
	maxTotal := want + maxSurge(s.d)
	current := specSum(s.allRSs())
	if current >= maxTotal {
		return s.newRS.replicas()
	}
	return s.newRS.replicas() + min(maxTotal-current, want-s.newRS.replicas())
}

// reconcileOldReplicaSets is rolling.go reconcileOldReplicaSets.
func (s *deploymentSync) reconcileOldReplicaSets() bool {
	old := filterActive(s.oldRSs)
	if specSum(old) == 0 {
		return false
	}
	minAvailable := *s.d.Spec.Replicas - maxUnavailable(s.d)
	newUnavailable := s.newRS.replicas() - s.newRS.available
	maxScaledDown := specSum(s.allRSs()) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false
	}
	// Unhealthy old pods go first, or they would block the rollout
	// (kubernetes#16737).
	cleaned := s.cleanupUnhealthyReplicas(old, maxScaledDown)
	scaled := s.scaleDownOldReplicaSetsForRollingUpdate(old, minAvailable)
	return cleaned+scaled > 0
}

// cleanupUnhealthyReplicas removes old replicas that are not available,
// oldest ReplicaSet first, within maxCleanup.
func (s *deploymentSync) cleanupUnhealthyReplicas(old []*rsView, maxCleanup int32) int32 {
	var total int32
	for _, rv := range old { // old is oldest first
		if total >= maxCleanup {
			break
		}
		spec := rv.replicas()
		if spec == 0 || spec == rv.available {
			continue
		}
		n := min(maxCleanup-total, spec-rv.available)
		s.scaleAndRecord(rv, spec-n)
		total += n
	}
	return total
}

// scaleDownOldReplicaSetsForRollingUpdate removes available old replicas
// down to minAvailable across all ReplicaSets, oldest ReplicaSet first.
func (s *deploymentSync) scaleDownOldReplicaSetsForRollingUpdate(old []*rsView, minAvailable int32) int32 {
	available := availableSum(s.allRSs())
	if available <= minAvailable {
		return 0
	}
	budget := available - minAvailable
	var total int32
	for _, rv := range old {
		if total >= budget {
			break
		}
		spec := rv.replicas()
		if spec == 0 {
			continue
		}
		n := min(spec, budget-total)
		s.scaleAndRecord(rv, spec-n)
		total += n
	}
	return total
}

// rolloutRecreate is recreate.go rolloutRecreate: old ReplicaSets to zero,
// wait until none of their pods runs, then the new one to full size. The
// new ReplicaSet is not even created before that, so nothing scales up
// early.
func (s *deploymentSync) rolloutRecreate() {
	s.getNewReplicaSet(false)
	scaledDown := false
	for _, rv := range filterActive(s.oldRSs) {
		if s.scaleAndRecord(rv, 0) {
			scaledDown = true
		}
	}
	if scaledDown || s.oldPodsRunning() {
		s.syncRolloutStatus()
		return
	}
	if s.getNewReplicaSet(true) == nil {
		s.syncRolloutStatus()
		return
	}
	s.scaleAndRecord(s.newRS, *s.d.Spec.Replicas)
	if deploymentComplete(s.d, s.observedStatus()) {
		s.cleanupDeployment()
	}
	s.syncRolloutStatus()
}

// oldPodsRunning: any pod of an old ReplicaSet that has not reached
// Failed/Succeeded, terminating ones included (Unknown counts too).
func (s *deploymentSync) oldPodsRunning() bool {
	if activeSum(s.oldRSs) > 0 {
		return true
	}
	for _, rv := range s.oldRSs {
		for _, pod := range rv.pods {
			if !isTerminal(pod) {
				return true
			}
		}
	}
	return false
}

// isScalingEvent: an active ReplicaSet was sized for another replica count
// (its desired-replicas annotation differs from spec.replicas).
func (s *deploymentSync) isScalingEvent() bool {
	s.getNewReplicaSet(false)
	for _, rv := range filterActive(s.allRSs()) {
		if desired, ok := intAnnotation(rv.rs.Annotations, AnnotationDesiredReplicas); ok && desired != *s.d.Spec.Replicas {
			return true
		}
	}
	return false
}

// sync is sync.go sync: scale without rolling out, for paused Deployments
// and replica-count changes; status without progress estimation.
func (s *deploymentSync) sync() {
	s.getNewReplicaSet(false)
	s.scale()
	if s.d.Spec.Paused {
		s.cleanupDeployment()
	}
	s.result = s.calculateStatus()
}

// scale is sync.go scale, including proportional scaling: when several
// ReplicaSets are active mid-rollout, a replica change is shared out by each
// one's share of the max-replicas it was sized for, and the leftover goes
// to the largest.
func (s *deploymentSync) scale() {
	want := *s.d.Spec.Replicas
	if rv := s.findActiveOrLatest(); rv != nil {
		if rv.replicas() != want {
			s.scaleReplicaSet(rv, want)
		}
		return
	}
	if s.isSaturated(s.newRS) {
		for _, rv := range filterActive(s.oldRSs) {
			s.scaleAndRecord(rv, 0)
		}
		return
	}
	if !isRolling(s.d) {
		return
	}
	active := filterActive(s.allRSs())
	var allowed int32
	if want > 0 {
		allowed = want + maxSurge(s.d)
	}
	toAdd := allowed - specSum(active)
	switch {
	case toAdd > 0: // ReplicaSetsBySizeNewer: larger first, newer among equals
		sort.SliceStable(active, func(i, j int) bool {
			a, b := active[i], active[j]
			if a.replicas() != b.replicas() {
				return a.replicas() > b.replicas()
			}
			return olderRS(b, a)
		})
	case toAdd < 0: // ReplicaSetsBySizeOlder: larger first, older among equals
		sort.SliceStable(active, func(i, j int) bool {
			a, b := active[i], active[j]
			if a.replicas() != b.replicas() {
				return a.replicas() > b.replicas()
			}
			return olderRS(a, b)
		})
	}
	sizes := make([]int32, len(active))
	var added int32
	for i, rv := range active {
		sizes[i] = rv.replicas()
		if toAdd != 0 {
			prop := s.replicaSetProportion(rv, toAdd, added)
			sizes[i] += prop
			added += prop
		}
	}
	for i, rv := range active {
		if i == 0 && toAdd != 0 {
			sizes[i] = max(sizes[i]+toAdd-added, 0)
		}
		s.scaleReplicaSet(rv, sizes[i])
	}
}

// replicaSetProportion is deploymentutil.GetReplicaSetProportion.
func (s *deploymentSync) replicaSetProportion(rv *rsView, toAdd, added int32) int32 {
	if rv.replicas() == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := s.replicaSetFraction(rv)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

// replicaSetFraction is deploymentutil.getReplicaSetFraction: the change
// that keeps rv's share of the Deployment's maximum size.
func (s *deploymentSync) replicaSetFraction(rv *rsView) int32 {
	want := *s.d.Spec.Replicas
	if want == 0 {
		return -rv.replicas()
	}
	maxNow := want + maxSurge(s.d)
	maxBefore, ok := intAnnotation(rv.rs.Annotations, AnnotationMaxReplicas)
	if !ok || maxBefore == 0 {
		// No record of the size it was scaled for: fall back to the
		// Deployment's last observed size, as upstream does.
		maxBefore = s.status.Replicas
		if maxBefore == 0 {
			maxBefore = maxNow
		}
	}
	scaled := float64(rv.replicas()) * float64(maxNow) / float64(maxBefore)
	return roundToInt32(scaled) - rv.replicas()
}

// roundToInt32 rounds half away from zero (k8s.io/utils/integer).
func roundToInt32(a float64) int32 {
	if a < 0 {
		return int32(a - 0.5)
	}
	return int32(a + 0.5)
}

// findActiveOrLatest is deploymentutil.FindActiveOrLatest: the only active
// ReplicaSet, or the newest one if none is active, or nil if several are.
func (s *deploymentSync) findActiveOrLatest() *rsView {
	all := s.allRSs()
	if len(all) == 0 {
		return nil
	}
	active := filterActive(all)
	switch len(active) {
	case 0:
		if s.newRS != nil {
			return s.newRS
		}
		return s.oldRSs[len(s.oldRSs)-1] // oldRSs is oldest first
	case 1:
		return active[0]
	}
	return nil
}

// isSaturated is deploymentutil.IsSaturated: the new ReplicaSet has all the
// Deployment's replicas, sized for it, and all are available.
func (s *deploymentSync) isSaturated(rv *rsView) bool {
	if rv == nil {
		return false
	}
	want := *s.d.Spec.Replicas
	desired, ok := intAnnotation(rv.rs.Annotations, AnnotationDesiredReplicas)
	return ok && desired == want && rv.replicas() == want && rv.available == want
}

// cleanupDeployment is sync.go cleanupDeployment: delete the oldest old
// ReplicaSets (by revision) beyond revisionHistoryLimit, only those scaled
// to zero with no pod left at all.
func (s *deploymentSync) cleanupDeployment() {
	limit := *s.d.Spec.RevisionHistoryLimit
	cleanable := make([]*rsView, 0, len(s.oldRSs))
	for _, rv := range s.oldRSs {
		if !rv.deleted {
			cleanable = append(cleanable, rv)
		}
	}
	diff := len(cleanable) - int(limit)
	if diff <= 0 {
		return
	}
	sort.SliceStable(cleanable, func(i, j int) bool {
		ri, rj := revision(cleanable[i].rs.Annotations), revision(cleanable[j].rs.Annotations)
		if ri != rj {
			return ri < rj
		}
		return cleanable[i].rs.Name < cleanable[j].rs.Name
	})
	for _, rv := range cleanable[:diff] {
		if rv.replicas() != 0 || len(rv.pods) != 0 {
			continue
		}
		rv.deleted = true
	}
}

func filterActive(rvs []*rsView) []*rsView {
	out := make([]*rsView, 0, len(rvs))
	for _, rv := range rvs {
		if rv.replicas() > 0 {
			out = append(out, rv)
		}
	}
	return out
}

// specSum is GetReplicaCountForReplicaSets: the sum of spec sizes.
func specSum(rvs []*rsView) int32 {
	var n int32
	for _, rv := range rvs {
		n += rv.replicas()
	}
	return n
}

// activeSum is GetActualReplicaCountForReplicaSets: pods that exist.
func activeSum(rvs []*rsView) int32 {
	var n int32
	for _, rv := range rvs {
		n += rv.active
	}
	return n
}

func availableSum(rvs []*rsView) int32 {
	var n int32
	for _, rv := range rvs {
		n += rv.available
	}
	return n
}
