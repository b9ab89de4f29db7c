// Package hostsim builds several simulated hosts on one Linux machine, for
// berth's multi-host end-to-end tests and demos. Each node is a network
// namespace joined to a bridge in the root namespace by a veth pair, with
// its own Podman API service (own storage, state, tmp dir, network config
// and pod subnet) running inside that namespace. Pods on different nodes
// reach each other by plain routes, like flannel's host-gw backend: no
// overlay, no NAT between pods. The host (root namespace) can reach every
// node and every pod. docs/multihost.md explains each step.
//
// It needs root, iproute2, iptables, nsenter and Podman with netavark.
package hostsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"

	"berth.dev/berth/nodeagent/runtime/podman"
)

// Options describe a simulated cluster.
type Options struct {
	// Name prefixes every namespace, interface and directory the cluster
	// creates; 1-8 lowercase letters or digits, unique among clusters that
	// exist at the same time.
	Name string
	// Nodes is the number of hosts, 1..MaxNodes.
	Nodes int
	// Dir is a scratch directory for node storage and state; the cluster
	// creates one subdirectory per node and removes them on Close.
	Dir string
	// Images are tags present in the host's default Podman storage that
	// every node's storage gets a copy of (nodes cannot pull anything).
	Images []string
	// Logger receives progress and the Podman services' output; nil
	// discards them.
	Logger *slog.Logger
}

// Cluster is a set of simulated hosts. Close it to leave the machine as it
// was.
type Cluster struct {
	// BridgeAddr is the root namespace's address on the bridge: a
	// controller listening there is reachable from every node and pod.
	BridgeAddr string `json:"bridgeAddr"`
	// Network holds the bridge subnet and every node's PodSubnet.
	Network netip.Prefix `json:"network"`
	Nodes   []*Node      `json:"nodes"`

	name   string
	bridge string
	logger *slog.Logger

	mu        sync.Mutex
	undo      []undoStep // in creation order; Close runs them backwards
	closed    bool
	closeErr  error
	socketDir string
}

type undoStep struct {
	what string
	fn   func(context.Context) error
}

// Node is one simulated host.
type Node struct {
	Name string `json:"name"` // node-1, node-2, ...
	// Netns is the path of the node's network namespace (/run/netns/...).
	Netns string `json:"netns"`
	// Addr is the node's address on the bridge.
	Addr string `json:"addr"`
	// PodSubnet is the node's pod network; distinct per node.
	PodSubnet netip.Prefix `json:"podSubnet"`
	// PodmanSocket is the node's own Podman API (unix:///...), served from
	// inside the node's namespace.
	PodmanSocket string `json:"podmanSocket"`
	// DataDir is a directory the node's agent may use.
	DataDir string `json:"dataDir"`

	nsName string
	dir    string
	svcOpt podman.ServiceOptions
	logger *slog.Logger

	mu  sync.Mutex
	svc *podman.Service
}

// New builds the cluster. On error everything created so far is removed.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	if err := validateName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Nodes < 1 || opts.Nodes > MaxNodes {
		return nil, fmt.Errorf("hostsim: %d nodes: want 1..%d", opts.Nodes, MaxNodes)
	}
	if opts.Dir == "" {
		return nil, errors.New("hostsim: no scratch directory (Options.Dir)")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("hostsim: needs root (network namespaces, bridges, rootful Podman)")
	}
	for _, tool := range []string{"ip", "iptables", "nsenter", "podman"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("hostsim: %s is not installed: %w", tool, err)
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		name:   opts.Name,
		bridge: opts.Name + "-br",
		logger: logger.With("cluster", opts.Name),
	}
	if err := c.build(ctx, opts); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failed start: %w", cerr))
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) onClose(what string, fn func(context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.undo = append(c.undo, undoStep{what: what, fn: fn})
}

func (c *Cluster) build(ctx context.Context, opts Options) error {
	// Unix socket paths are limited to 108 bytes and Dir may be a long
	// t.TempDir(): the sockets live in a short directory of their own.
	socketDir, err := os.MkdirTemp("", "hostsim-"+opts.Name+"-")
	if err != nil {
		return fmt.Errorf("hostsim: socket dir: %w", err)
	}
	c.socketDir = socketDir
	c.onClose("remove "+socketDir, func(context.Context) error { return os.RemoveAll(socketDir) })

	p, err := c.buildBridge(ctx)
	if err != nil {
		return err
	}
	c.Network = p.network
	c.BridgeAddr = p.bridge.Addr().String()

	for i := 1; i <= opts.Nodes; i++ {
		n := &Node{
			Name:      "node-" + strconv.Itoa(i),
			Netns:     "/run/netns/" + c.netnsName(i),
			nsName:    c.netnsName(i),
			Addr:      p.nodeAddr(i).Addr().String(),
			PodSubnet: p.podSubnet(i),
			dir:       filepath.Join(opts.Dir, opts.Name+"-node-"+strconv.Itoa(i)),
		}
		n.logger = c.logger.With("node", n.Name)
		c.Nodes = append(c.Nodes, n)
		if err := c.buildNodeNetwork(ctx, i, n, p); err != nil {
			return err
		}
	}
	if err := c.buildRoutes(ctx); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := c.startNodePodman(ctx, n); err != nil {
			return err
		}
	}
	if err := c.copyImages(ctx, opts.Images, filepath.Join(opts.Dir, opts.Name+"-images")); err != nil {
		return err
	}
	c.logger.Info("simulated cluster up", "nodes", len(c.Nodes), "network", c.Network, "bridge", c.BridgeAddr)
	return nil
}

// Close stops every node's Podman after removing its pods, then removes the
// namespaces, interfaces, routes, firewall rules, mounts and directories the
// cluster created. It is idempotent; every step runs even if an earlier
// one failed, and the errors are joined.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	steps := c.undo
	c.undo = nil
	c.mu.Unlock()

	// Teardown must run even when the caller's context is gone (Ctrl-C).
	ctx := context.Background()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", steps[i].what, err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("hostsim: close %s: %w", c.name, err)
	}
	c.mu.Lock()
	c.closeErr = err
	c.mu.Unlock()
	c.logger.Info("simulated cluster removed", "err", err)
	return err
}

// Command prepares name to run inside the node's network namespace (and
// only that: mounts, PIDs and cgroups stay the host's, as Podman needs).
// Use it for the node's agent and for probes from the node.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return command(ctx, n.Netns, name, args...)
}
