package hostsim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"strconv"
)

// Address plan: one /16 per cluster, 10.X.0.0/16 with X in [firstOctet,
// firstOctet+octetRange). Its first /24 is the bridge network (the host side
// is .1, node i is .(10+i)); node i's pods get 10.X.i.0/24. One /16 keeps the
// routes readable and gives the whole cluster a single prefix (Network) for
// the "do not masquerade between pods" rule.
const (
	firstOctet = 100 // stays clear of Podman's default 10.88.0.0/16
	octetRange = 100
	nodeHostID = 10 // node i's bridge address is .(nodeHostID+i)
	// MaxNodes keeps node addresses inside the bridge /24.
	MaxNodes = 254 - nodeHostID
)

// namePattern keeps every derived interface name ("<name>-br",
// "<name>-<n>") under Linux's 15-byte IFNAMSIZ limit.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

func validateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("hostsim: name %q must be 1-8 lowercase letters or digits, starting with a letter (it prefixes interface names, limited to 15 bytes)", name)
	}
	return nil
}

// plan is where a cluster's addresses go.
type plan struct {
	network netip.Prefix // 10.X.0.0/16
	bridge  netip.Prefix // 10.X.0.1/24, the host side
}

func (p plan) nodeAddr(i int) netip.Prefix {
	b := p.network.Addr().As4()
	b[3] = byte(nodeHostID + i)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

func (p plan) podSubnet(i int) netip.Prefix {
	b := p.network.Addr().As4()
	b[2] = byte(i)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

// errNoFreeNetwork means every candidate /16 overlaps something in use.
var errNoFreeNetwork = errors.New("hostsim: no free 10.x.0.0/16 network")

// pickPlan chooses the cluster's /16: the one the name hashes to, or the
// next one that overlaps none of inUse (the host's routes and addresses).
// Hashing makes a given name land on the same network run after run, which
// keeps logs and docs comparable; probing keeps clusters apart.
func pickPlan(name string, inUse []netip.Prefix) (plan, error) {
	h := fnv.New32a()
	h.Write([]byte(name))
	start := int(h.Sum32() % octetRange)
	for k := range octetRange {
		x := firstOctet + (start+k)%octetRange
		network := netip.MustParsePrefix("10." + strconv.Itoa(x) + ".0.0/16")
		if overlapsAny(network, inUse) {
			continue
		}
		bridge := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(x), 0, 1}), 24)
		return plan{network: network, bridge: bridge}, nil
	}
	return plan{}, errNoFreeNetwork
}

func overlapsAny(p netip.Prefix, others []netip.Prefix) bool {
	for _, o := range others {
		// A default route covers everything and says nothing about use.
		if o.Bits() == 0 {
			continue
		}
		if p.Overlaps(o) {
			return true
		}
	}
	return false
}
