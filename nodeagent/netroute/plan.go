package netroute

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"berth.dev/berth/api"
)

// route is one IPv4 route of the main table, as far as the plan needs it.
type route struct {
	Dst   netip.Prefix
	Via   netip.Addr // invalid for routes without a gateway
	Proto int        // routing protocol number; Protocol marks berth's
}

// op is what a change does to the table.
type op string

const (
	opAdd     op = "add"
	opReplace op = "replace"
	opDel     op = "del"
)

// change is one `ip route` command of a plan.
type change struct {
	Op  op
	Dst netip.Prefix
	Via netip.Addr
}

func (c change) String() string { return fmt.Sprintf("%s %s via %s", c.Op, c.Dst, c.Via) }

// candidate is one node entry that parsed.
type candidate struct {
	name string
	dst  netip.Prefix
	via  netip.Addr
}

// wanted works out the routes this node should have: one to every other
// node's pod subnet via that node's address. Entries that cannot be routed
// safely are left out and described in problems: unparsable or non-IPv4
// values, a pod subnet that overlaps this node's own (self's entry, when
// listed), and subnets that overlap each other (all of them, since there is
// no telling which node is right).
func wanted(self string, nodes []api.NodeRoute) (want map[netip.Prefix]netip.Addr, problems []string) {
	var own netip.Prefix
	var others []candidate
	for _, n := range nodes {
		dst, via, err := parseEntry(n)
		if n.Name == self {
			if err == nil {
				own = dst
			}
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %s: %v", n.Name, err))
			continue
		}
		others = append(others, candidate{name: n.Name, dst: dst, via: via})
	}
	refused := make([]bool, len(others))
	for i, c := range others {
		if own.IsValid() && c.dst.Overlaps(own) {
			refused[i] = true
			problems = append(problems, fmt.Sprintf("node %s: pod subnet %s overlaps this node's %s", c.name, c.dst, own))
		}
		for j := i + 1; j < len(others); j++ {
			if d := others[j]; c.dst.Overlaps(d.dst) {
				refused[i], refused[j] = true, true
				problems = append(problems, fmt.Sprintf("nodes %s and %s: pod subnets %s and %s overlap", c.name, d.name, c.dst, d.dst))
			}
		}
	}
	want = map[netip.Prefix]netip.Addr{}
	for i, c := range others {
		if !refused[i] {
			want[c.dst] = c.via
		}
	}
	slices.Sort(problems)
	return want, problems
}

// parseEntry checks one node's pod subnet and address.
func parseEntry(n api.NodeRoute) (netip.Prefix, netip.Addr, error) {
	dst, err := netip.ParsePrefix(n.PodSubnet)
	switch {
	case err != nil:
		return dst, netip.Addr{}, fmt.Errorf("pod subnet %q: %w", n.PodSubnet, err)
	case !dst.Addr().Is4():
		return dst, netip.Addr{}, fmt.Errorf("pod subnet %s: only IPv4 is routed", dst)
	case dst != dst.Masked():
		return dst, netip.Addr{}, fmt.Errorf("pod subnet %s has host bits set (did you mean %s?)", dst, dst.Masked())
	case dst.Bits() == 0:
		return dst, netip.Addr{}, fmt.Errorf("pod subnet %s would be a default route", dst)
	}
	via, err := netip.ParseAddr(n.Address)
	switch {
	case err != nil:
		return dst, via, fmt.Errorf("address %q: %w", n.Address, err)
	case !via.Is4():
		return dst, via, fmt.Errorf("address %s: only IPv4 is routed", via)
	case via.IsUnspecified() || via.IsLoopback() || via.IsMulticast() || via == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return dst, via, fmt.Errorf("address %s is not a host's unicast address", via)
	}
	return dst, via, nil
}

// diff lines the wanted routes up with the table and returns the changes,
// sorted by destination, and the wanted routes it leaves alone because
// another route to the same destination is in the way.
//
// It touches only routes of its own protocol. A destination that already
// has a route of another protocol (a static route, another tool's, the
// kernel's own for a connected subnet) is not taken over, because `ip route
// replace` would silently change that route's owner and gateway; if that
// route already goes via the wanted address, the node is reachable and
// nothing is reported.
func diff(want map[netip.Prefix]netip.Addr, table []route) (changes []change, problems []string) {
	ours := map[netip.Prefix][]route{}
	foreign := map[netip.Prefix][]route{}
	for _, r := range table {
		if r.Proto == Protocol {
			ours[r.Dst] = append(ours[r.Dst], r)
		} else {
			foreign[r.Dst] = append(foreign[r.Dst], r)
		}
	}
	for dst, via := range want {
		mine := ours[dst]
		switch {
		case len(mine) == 1 && mine[0].Via == via:
			// Already there.
		case len(mine) == 1:
			changes = append(changes, change{Op: opReplace, Dst: dst, Via: via})
		case len(mine) > 1:
			// Only a hand-made duplicate gets here: start over.
			for _, r := range mine {
				changes = append(changes, change{Op: opDel, Dst: dst, Via: r.Via})
			}
			changes = append(changes, change{Op: opAdd, Dst: dst, Via: via})
		case len(foreign[dst]) > 0:
			if !slices.ContainsFunc(foreign[dst], func(r route) bool { return r.Via == via }) {
				r := foreign[dst][0]
				problems = append(problems, fmt.Sprintf("route to %s via %s: the table already has one (protocol %d, via %s); left as is",
					dst, via, r.Proto, viaString(r.Via)))
			}
		default:
			changes = append(changes, change{Op: opAdd, Dst: dst, Via: via})
		}
	}
	for dst, rs := range ours {
		if _, ok := want[dst]; !ok {
			for _, r := range rs {
				changes = append(changes, change{Op: opDel, Dst: dst, Via: r.Via})
			}
		}
	}
	slices.SortFunc(changes, func(a, b change) int {
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Dst.Bits(), b.Dst.Bits()); c != 0 {
			return c
		}
		// Deletions before the add that replaces them.
		return cmp.Compare(opOrder(a.Op), opOrder(b.Op))
	})
	slices.Sort(problems)
	return changes, problems
}

func opOrder(o op) int {
	if o == opDel {
		return 0
	}
	return 1
}

func viaString(a netip.Addr) string {
	if !a.IsValid() {
		return "no gateway"
	}
	return a.String()
}
