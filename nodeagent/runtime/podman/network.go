package podman

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/containers/podman/v5/pkg/bindings/network"
)

// PodSubnet returns the IPv4 subnet of the network the pods join (Options
// .Network), in CIDR form: the range the node's pod addresses come from,
// which other nodes route to this one. It asks the service every time, so
// a network recreated with another subnet is seen.
func (r *Runtime) PodSubnet(ctx context.Context) (string, error) {
	n, err := network.Inspect(r.callCtx(ctx), r.opts.Network, nil)
	if err != nil {
		return "", wrap(err, "inspect network %s", r.opts.Network)
	}
	for _, s := range n.Subnets {
		ip, ok := netip.AddrFromSlice(s.Subnet.IP)
		ones, size := s.Subnet.Mask.Size()
		if !ok || size == 0 {
			continue
		}
		if size == 128 && ip.Is4In6() {
			ones -= 96 // an IPv4 subnet held in 16-byte form
		}
		if ip = ip.Unmap(); ip.Is4() {
			return netip.PrefixFrom(ip, ones).Masked().String(), nil
		}
	}
	return "", fmt.Errorf("network %s has no IPv4 subnet", r.opts.Network)
}
