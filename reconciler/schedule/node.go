package schedule

// nodeState is one node during a Schedule call: its fixed facts and the
// running totals of the pods bound to it, updated as pods are placed.
type nodeState struct {
	name          string
	labels        map[string]string
	ready         bool
	unschedulable bool
	allocatable   resources
	maxPods       int64

	pods int64
	// requested sums the pods' requests; scoreRequested the same with the
	// scoring defaults (NodeInfo.Requested and NonZeroRequested upstream).
	requested, scoreRequested resources
	ports                     portSet
	// groups counts the pods of each spreading group, terminating pods
	// aside; nil until the first grouped pod.
	groups map[string]int64
}

func newNodeState(n *Node) *nodeState {
	ns := &nodeState{
		name:          n.Name,
		labels:        n.Labels,
		ready:         n.Ready,
		unschedulable: n.Unschedulable,
	}
	ns.allocatable, ns.maxPods = allocatable(n.Allocatable)
	return ns
}

// add records p as running on the node.
func (n *nodeState) add(p *podInfo) {
	n.pods++
	n.requested.add(&p.requests)
	n.scoreRequested.add(&p.scoreRequests)
	for _, hp := range p.ports {
		n.ports.add(hp)
	}
	if p.group != "" && !p.terminating {
		if n.groups == nil {
			n.groups = map[string]int64{}
		}
		n.groups[p.group]++
	}
}

// portSet is the host ports in use on a node, indexed both ways
// HostPortInfo.CheckConflict needs: by exact IP, and by protocol and port on
// any IP (for a wanted 0.0.0.0, which clashes with every IP). Both maps are
// nil until the first host port: most nodes never see one.
type portSet struct {
	byIP  map[hostPort]struct{}
	anyIP map[protocolPort]int
}

func (s *portSet) add(hp hostPort) {
	if _, ok := s.byIP[hp]; ok {
		return
	}
	if s.byIP == nil {
		s.byIP = map[hostPort]struct{}{}
		s.anyIP = map[protocolPort]int{}
	}
	s.byIP[hp] = struct{}{}
	s.anyIP[protocolPort{hp.protocol, hp.port}]++
}

// conflicts reports whether hp clashes with a port in use: the same IP, or
// 0.0.0.0 on either side.
func (s *portSet) conflicts(hp hostPort) bool {
	if s.byIP == nil {
		return false
	}
	if hp.ip == wildcardIP {
		return s.anyIP[protocolPort{hp.protocol, hp.port}] > 0
	}
	if _, ok := s.byIP[hp]; ok {
		return true
	}
	_, ok := s.byIP[hostPort{ip: wildcardIP, protocol: hp.protocol, port: hp.port}]
	return ok
}
