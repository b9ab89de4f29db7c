// Package netroute routes pod traffic between hosts without an overlay, the
// way flannel's host-gw backend does: every node keeps a route to each other
// node's pod subnet via that node's address, so a packet from a pod leaves
// its host unencapsulated, with the pod's own address, and the other host
// forwards it to its pod bridge. This needs the hosts to share a link (L2
// adjacency): the gateway of each route must be directly reachable.
//
// Routes are programmed with iproute2 (`ip route`, netlink), never through
// /proc/sys or /sys, so the Programmer acts on the network namespace of the
// process, or of the thread, that runs it, or on Config.NetNS.
package netroute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"berth.dev/berth/api"
)

// Protocol is the routing protocol number that marks berth's routes
// (`ip route show proto 179`). The Programmer lists, replaces and deletes
// only routes carrying it, so routes of an administrator, of DHCP, of the
// kernel or of another routing daemon are never touched. 179 is assigned in
// neither the kernel's rtnetlink.h (0-18, 42, 84, 99, 186-192) nor
// iproute2's rt_protos, and is clear of the numbers FRR (186-198) and BIRD
// (12) use.
const Protocol = 179

// Config configures a Programmer.
type Config struct {
	// NetNS is the path of a network namespace to program (such as
	// /run/netns/NAME); "" programs the agent's own.
	NetNS  string
	Logger *slog.Logger
}

// Programmer keeps the host's routes to the other nodes' pod subnets. It
// implements nodeagent.RouteProgrammer. It is safe for concurrent use.
type Programmer struct {
	cfg Config
	log *slog.Logger
	// run runs `ip` with args and returns its standard output; tests wrap
	// it to count the commands a sync issues.
	run func(ctx context.Context, args ...string) ([]byte, error)

	mu           sync.Mutex // serialises syncs
	lastProblems []string   // logged once, not on every periodic sync
}

// New checks that iproute2 is installed and returns a Programmer.
func New(cfg Config) (*Programmer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, bin := range []string{"ip", "nsenter"} {
		if bin == "nsenter" && cfg.NetNS == "" {
			continue
		}
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("netroute: %s: %w", bin, err)
		}
	}
	p := &Programmer{cfg: cfg, log: cfg.Logger}
	p.run = p.ip
	return p, nil
}

// Sync makes the main routing table hold a route to every listed node's pod
// subnet via its address, except self's, and no other route of Protocol.
// Entries that cannot be routed safely are skipped and logged (see
// wanted), as are destinations another route already serves (see diff).
// Every change is attempted; the error joins those that failed, and a later
// Sync retries them. A Sync with nothing to change only reads the table.
func (p *Programmer) Sync(ctx context.Context, self string, nodes []api.NodeRoute) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want, problems := wanted(self, nodes)
	table, err := p.list(ctx)
	if err != nil {
		return err
	}
	changes, blocked := diff(want, table)
	problems = append(problems, blocked...)
	slices.Sort(problems)
	if !slices.Equal(problems, p.lastProblems) {
		for _, msg := range problems {
			p.log.Warn("pod route skipped", "reason", msg)
		}
		p.lastProblems = problems
	}
	var errs []error
	for _, c := range changes {
		args := []string{"-4", "route", string(c.Op), c.Dst.String(), "via", c.Via.String(), "proto", strconv.Itoa(Protocol)}
		if _, err := p.run(ctx, args...); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", c, err))
			continue
		}
		p.log.Info("pod route changed", "op", string(c.Op), "subnet", c.Dst.String(), "via", c.Via.String())
	}
	return errors.Join(errs...)
}

// list reads the main table's IPv4 routes. -N prints protocols as numbers,
// so an rt_protos entry naming Protocol cannot hide it.
func (p *Programmer) list(ctx context.Context) ([]route, error) {
	out, err := p.run(ctx, "-j", "-N", "-4", "route", "show", "table", "main")
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return parseRoutes(out)
}

// parseRoutes parses `ip -j -N -4 route show`. ip omits the protocol of
// routes added at boot (3) and prints "default" and host routes without a
// prefix length.
func parseRoutes(out []byte) ([]route, error) {
	var raw []struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Protocol string `json:"protocol"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("parse routes: %w", err)
	}
	routes := make([]route, 0, len(raw))
	for _, r := range raw {
		var rt route
		var err error
		switch {
		case r.Dst == "default":
			rt.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		case strings.Contains(r.Dst, "/"):
			rt.Dst, err = netip.ParsePrefix(r.Dst)
		default:
			var a netip.Addr
			a, err = netip.ParseAddr(r.Dst)
			rt.Dst = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("parse routes: destination %q: %w", r.Dst, err)
		}
		if r.Gateway != "" {
			if rt.Via, err = netip.ParseAddr(r.Gateway); err != nil {
				return nil, fmt.Errorf("parse routes: gateway %q: %w", r.Gateway, err)
			}
		}
		rt.Proto = 3 // RTPROT_BOOT, which ip leaves out
		if r.Protocol != "" {
			if rt.Proto, err = strconv.Atoi(r.Protocol); err != nil {
				return nil, fmt.Errorf("parse routes: protocol %q is not a number", r.Protocol)
			}
		}
		routes = append(routes, rt)
	}
	return routes, nil
}

// ip runs iproute2, inside cfg.NetNS when set. nsenter switches only the
// network namespace; `ip netns exec` would also remount /sys, which is
// neither needed nor wanted here.
func (p *Programmer) ip(ctx context.Context, args ...string) ([]byte, error) {
	name := "ip"
	if p.cfg.NetNS != "" {
		name = "nsenter"
		args = append([]string{"--net=" + p.cfg.NetNS, "--", "ip"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
