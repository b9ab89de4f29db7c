package schedule

import "math"

// Scoring. Each score is 0-100 (kube-scheduler's MaxNodeScore); a node's
// total is the weighted sum, with kube-scheduler's default weights. The
// other default scores are the same on every berth node (taints,
// preferred affinity, inter-pod affinity, image locality) or not
// implemented (balanced allocation), so they could not change a choice.
const (
	maxNodeScore = 100

	// spreadWeight weighs PodTopologySpread: fewer pods of the same group on
	// the node is better.
	spreadWeight = 2
	// leastAllocatedWeight weighs NodeResourcesFit's LeastAllocated: more
	// CPU and memory left after placing the pod is better.
	leastAllocatedWeight = 1

	// hostnameMaxSkew is the maxSkew of kube-scheduler's default hostname
	// spreading constraint (ScheduleAnyway), which only softens the score.
	hostnameMaxSkew = 3
)

// selectHost scores the feasible nodes and returns the best. Ties go to the
// first in name order: kube-scheduler picks among tied nodes at random,
// berth stays deterministic.
func (s *scheduler) selectHost(p *podInfo) *nodeState {
	if len(s.feasible) == 1 {
		return s.feasible[0] // nothing to compare, as upstream
	}
	spread := s.spreadScores(p)
	var best *nodeState
	bestScore := int64(-1)
	for i, n := range s.feasible {
		score := leastAllocatedWeight * leastAllocated(p, n)
		if spread != nil {
			score += spreadWeight * spread[i]
		}
		if score > bestScore {
			best, bestScore = n, score
		}
	}
	return best
}

// spreadScores is PodTopologySpread's score with the system default
// hostname constraint, for each feasible node: the count of the pod's group
// on the node, weighted by log(feasible nodes + 2) and offset by maxSkew-1,
// rounded; then normalized so that the least crowded node scores 100
// (podtopologyspread/scoring.go). It returns nil for a pod in no group,
// which upstream skips.
func (s *scheduler) spreadScores(p *podInfo) []int64 {
	if p.group == "" {
		return nil
	}
	weight := math.Log(float64(len(s.feasible) + 2))
	s.spread = s.spread[:0]
	minRaw, maxRaw := int64(math.MaxInt64), int64(0)
	for _, n := range s.feasible {
		raw := int64(math.Round(float64(n.groups[p.group])*weight + float64(hostnameMaxSkew-1)))
		s.spread = append(s.spread, raw)
		minRaw, maxRaw = min(minRaw, raw), max(maxRaw, raw)
	}
	for i, raw := range s.spread {
		if maxRaw == 0 {
			s.spread[i] = maxNodeScore
			continue
		}
		s.spread[i] = maxNodeScore * (maxRaw + minRaw - raw) / maxRaw
	}
	return s.spread
}

// leastAllocated is NodeResourcesFit's LeastAllocated score with cpu and
// memory weighted 1 each: the share of each left free once the pod is
// placed, counting pods with no requests at the scoring defaults. A
// resource the node does not have is left out of the average.
func leastAllocated(p *podInfo, n *nodeState) int64 {
	var sum, weights int64
	for _, r := range [...]struct{ requested, capacity int64 }{
		{n.scoreRequested.milliCPU + p.scoreRequests.milliCPU, n.allocatable.milliCPU},
		{n.scoreRequested.memory + p.scoreRequests.memory, n.allocatable.memory},
	} {
		if r.capacity == 0 {
			continue
		}
		sum += leastRequested(r.requested, r.capacity)
		weights++
	}
	if weights == 0 {
		return 0
	}
	return sum / weights
}

// leastRequested is the share of capacity left free, 0-100.
func leastRequested(requested, capacity int64) int64 {
	if requested > capacity {
		return 0
	}
	return (capacity - requested) * maxNodeScore / capacity
}
