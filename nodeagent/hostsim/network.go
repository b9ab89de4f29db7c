package hostsim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"
)

func (c *Cluster) netnsName(i int) string { return c.name + "-" + strconv.Itoa(i) }

// vethName is the root-namespace end of node i's veth pair; the end inside
// the namespace is always eth0, like a real host's NIC.
func (c *Cluster) vethName(i int) string { return c.name + "-" + strconv.Itoa(i) }

// buildBridge picks the cluster's network and creates the bridge that plays
// the hosts' shared LAN, with the root namespace's address on it.
func (c *Cluster) buildBridge(ctx context.Context) (plan, error) {
	if err := run(ctx, "", "ip", "link", "show", c.bridge); err == nil {
		return plan{}, fmt.Errorf("hostsim: interface %s already exists: a cluster named %q is running or was not closed", c.bridge, c.name)
	}
	unlock, err := lockNetworks()
	if err != nil {
		return plan{}, err
	}
	defer unlock()
	inUse, err := prefixesInUse(ctx)
	if err != nil {
		return plan{}, err
	}
	p, err := pickPlan(c.name, inUse)
	if err != nil {
		return plan{}, err
	}
	if err := run(ctx, "", "ip", "link", "add", c.bridge, "type", "bridge"); err != nil {
		return plan{}, err
	}
	c.onClose("delete bridge "+c.bridge, func(ctx context.Context) error {
		return ignoreMissing(run(ctx, "", "ip", "link", "del", c.bridge))
	})
	for _, args := range [][]string{
		{"addr", "add", p.bridge.String(), "dev", c.bridge},
		{"link", "set", c.bridge, "up"},
	} {
		if err := run(ctx, "", "ip", args...); err != nil {
			return plan{}, err
		}
	}

	// With br_netfilter loaded (it is here: bridge-nf-call-iptables=1),
	// frames switched between two veths of the bridge traverse the root
	// namespace's FORWARD chain. Its policy is ACCEPT on this machine, but a
	// host with Docker sets it to DROP; this rule keeps node-to-node traffic
	// independent of that, and is removed on Close.
	rule := []string{"FORWARD", "-i", c.bridge, "-o", c.bridge, "-m", "comment", "--comment", "berth hostsim " + c.name, "-j", "ACCEPT"}
	if err := run(ctx, "", "iptables", append([]string{"-w", "-I"}, rule...)...); err != nil {
		return plan{}, err
	}
	c.onClose("delete FORWARD rule for "+c.bridge, func(ctx context.Context) error {
		return ignoreMissing(run(ctx, "", "iptables", append([]string{"-w", "-D"}, rule...)...))
	})
	return p, nil
}

// buildNodeNetwork creates node i's namespace and wires it to the bridge.
func (c *Cluster) buildNodeNetwork(ctx context.Context, i int, n *Node, p plan) error {
	ns := n.nsName
	if err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	c.onClose("delete namespace "+ns, func(ctx context.Context) error { return c.deleteNetns(ctx, n) })

	veth := c.vethName(i)
	if err := run(ctx, "", "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
		return err
	}
	c.onClose("delete veth "+veth, func(ctx context.Context) error {
		return ignoreMissing(run(ctx, "", "ip", "link", "del", veth))
	})
	if err := run(ctx, "", "ip", "link", "set", veth, "master", c.bridge, "up"); err != nil {
		return err
	}

	steps := [][]string{
		{"ip", "addr", "add", p.nodeAddr(i).String(), "dev", "eth0"},
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", p.bridge.Addr().String()},
		// netavark turns forwarding on when it creates the pod bridge; the
		// node needs it before that, and must not depend on it.
		{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		// netavark masquerades everything its pods send outside their own
		// subnet, which would hide a pod's address from pods on other nodes.
		// Kubernetes' network model has no NAT between pods (and between
		// pods and nodes); this rule, ahead of netavark's, keeps traffic
		// inside the cluster network unNATed. It dies with the namespace.
		{"iptables", "-w", "-t", "nat", "-I", "POSTROUTING", "1", "-s", n.PodSubnet.String(), "-d", p.network.String(),
			"-m", "comment", "--comment", "berth hostsim: no NAT between pods", "-j", "ACCEPT"},
	}
	for _, s := range steps {
		if err := run(ctx, n.Netns, s[0], s[1:]...); err != nil {
			return fmt.Errorf("hostsim: set up %s: %w", n.Name, err)
		}
	}
	return nil
}

// buildRoutes gives every node a route to every other node's pod subnet via
// that node (flannel's host-gw), and the root namespace a route to every pod
// subnet, so tests and a controller on the host reach pod IPs. Netavark's
// FORWARD rules in a node only accept established traffic towards its pods,
// but the chain's policy in a fresh namespace is ACCEPT, so new connections
// from other nodes pass without a rule of ours.
func (c *Cluster) buildRoutes(ctx context.Context) error {
	for _, dst := range c.Nodes {
		for _, src := range c.Nodes {
			if src == dst {
				continue
			}
			if err := run(ctx, src.Netns, "ip", "route", "add", dst.PodSubnet.String(), "via", dst.Addr, "dev", "eth0"); err != nil {
				return err
			}
		}
		subnet, via := dst.PodSubnet.String(), dst.Addr
		if err := run(ctx, "", "ip", "route", "add", subnet, "via", via, "dev", c.bridge); err != nil {
			return err
		}
		c.onClose("delete route to "+subnet, func(ctx context.Context) error {
			return ignoreMissing(run(ctx, "", "ip", "route", "del", subnet, "via", via, "dev", c.bridge))
		})
	}
	return nil
}

// deleteNetns ends whatever still runs in the node's namespace (normally
// nothing: the Podman teardown ran before), then removes it. A namespace
// with a process left in it would outlive its /run/netns name, keeping its
// veth and so the bridge's port.
func (c *Cluster) deleteNetns(ctx context.Context, n *Node) error {
	pids, err := pidsInNetns(n.Netns)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, pid := range pids {
		n.logger.Warn("killing a process left in the node's namespace", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return ignoreMissing(run(ctx, "", "ip", "netns", "del", n.nsName))
}
