package netroute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// probeDst is any address outside the host: only the kernel's route lookup
// for it matters. It is in TEST-NET-2 (RFC 5737), which is never assigned.
var probeDst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 1}), 9)

// HostAddress returns the IPv4 address other hosts most likely reach this
// one at: the source address the kernel picks for the default route, or,
// without a default route, the first global unicast IPv4 address of an
// interface that is up (in interface order). Addresses inside exclude (the
// node's pod subnet, whose gateway sits on the pod bridge; may be the zero
// Prefix) and loopback addresses are never chosen. It works in the network
// namespace of the calling thread, and sends nothing: connecting a UDP
// socket only asks the kernel for a route.
func HostAddress(exclude netip.Prefix) (netip.Addr, error) {
	var viaDefault netip.Addr
	if c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(probeDst)); err == nil {
		viaDefault = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list interfaces: %w", err)
	}
	var candidates []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					candidates = append(candidates, ip.Unmap())
				}
			}
		}
	}
	return chooseAddress(viaDefault, candidates, exclude)
}

// chooseAddress picks HostAddress's answer from the default route's source
// (invalid when there is no default route) and the interfaces' addresses.
func chooseAddress(viaDefault netip.Addr, candidates []netip.Addr, exclude netip.Prefix) (netip.Addr, error) {
	usable := func(a netip.Addr) bool {
		return a.Is4() && a.IsGlobalUnicast() && !(exclude.IsValid() && exclude.Contains(a))
	}
	if usable(viaDefault) {
		return viaDefault, nil
	}
	for _, a := range candidates {
		if usable(a) {
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("no global unicast IPv4 address on any interface that is up")
}
