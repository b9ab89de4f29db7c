package podman

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"

	"github.com/containers/podman/v5/pkg/bindings/network"
)

// enableHairpin turns on hairpin mode for every port of the pod network's
// bridge, so that a pod reaching a Service's ClusterIP can be answered by
// itself: with br_netfilter the DNATed packet must leave through the port it
// came in on, which a bridge refuses unless hairpin is on. Netavark (as of
// 4.3) leaves it off; the kubelet's "hairpin-veth" mode does the same as
// this. It uses netlink through iproute2's `bridge`, which works inside a
// network namespace entered with nsenter, where /sys would still show the
// root namespace's devices.
func (r *Runtime) enableHairpin(ctx context.Context) error {
	bridge, err := r.bridgeName(ctx)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "bridge", "-j", "-d", "link", "show", "master", bridge).Output()
	if err != nil {
		return fmt.Errorf("list ports of bridge %s: %w", bridge, err)
	}
	var ports []struct {
		IfName  string `json:"ifname"`
		Hairpin bool   `json:"hairpin"`
	}
	if err := json.Unmarshal(out, &ports); err != nil {
		return fmt.Errorf("list ports of bridge %s: %w", bridge, err)
	}
	for _, p := range ports {
		if p.Hairpin {
			continue
		}
		if out, err := exec.CommandContext(ctx, "bridge", "link", "set", "dev", p.IfName, "hairpin", "on").CombinedOutput(); err != nil {
			return fmt.Errorf("hairpin on %s: %v: %s", p.IfName, err, out)
		}
	}
	return nil
}

// bridgeName is the Linux bridge behind the pod network, looked up once.
func (r *Runtime) bridgeName(ctx context.Context) (string, error) {
	r.bridgeOnce.Lock()
	defer r.bridgeOnce.Unlock()
	if r.bridge != "" {
		return r.bridge, nil
	}
	n, err := network.Inspect(r.callCtx(ctx), r.opts.Network, nil)
	if err != nil {
		return "", fmt.Errorf("inspect network %s: %w", r.opts.Network, err)
	}
	if n.NetworkInterface == "" {
		return "", fmt.Errorf("network %s has no bridge interface", r.opts.Network)
	}
	r.bridge = n.NetworkInterface
	return r.bridge, nil
}
