// Package proxy programs Kubernetes Services on one host with iptables, the
// way kube-proxy's iptables mode does: a ClusterIP or NodePort connection is
// DNATed to one of the Service's ready endpoints by rules in berth's own
// chains of the nat table, and refused at once by the filter table when the
// Service has none. docs/services.md describes the chain layout.
//
// Every sync is one `iptables-restore --noflush` that rewrites only berth's
// chains (named BERTH-*); rules of other owners, netavark's NETAVARK-*
// chains among them, are never read back or changed. Jumps from the
// built-in chains are inserted once, with go-iptables.
package proxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"berth.dev/berth/api"
)

// Config configures a Proxy.
type Config struct {
	Logger *slog.Logger
	// IPTables and IPTablesRestore are the commands to run, by path or by
	// name looked up in PATH; "iptables" and "iptables-restore" by default.
	IPTables        string
	IPTablesRestore string
	// NetNS is the path of a network namespace to program (such as
	// /run/netns/NAME) instead of the process's own: for tests, and for
	// several simulated nodes sharing one machine.
	NetNS string
	// ResyncPeriod is the longest time between two full syncs; partial
	// syncs in between rewrite only changed Services. Default 5 minutes.
	ResyncPeriod time.Duration
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// Proxy programs one host's Services. It is safe for concurrent use; syncs
// are serialised.
type Proxy struct {
	cfg         Config
	log         *slog.Logger
	ipt         *iptables.IPTables
	restorePath string

	mu sync.Mutex
	// applied is the service table of the last successful sync, by
	// serviceKey; a partial sync rewrites the chains of the services that
	// differ from it.
	applied map[string]api.Service
	// chains holds the per-service nat chains the last sync left.
	chains   map[string]bool
	fullDue  bool // the next sync must be a full one
	lastFull time.Time
	lastText []byte // the last restore input, for tests and debugging
}

// New finds the iptables commands and returns a Proxy. It changes nothing
// on the host: the first Sync does.
func New(cfg Config) (*Proxy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IPTables == "" {
		cfg.IPTables = "iptables"
	}
	if cfg.IPTablesRestore == "" {
		cfg.IPTablesRestore = "iptables-restore"
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	restorePath, err := exec.LookPath(cfg.IPTablesRestore)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var ipt *iptables.IPTables
	err = inNetNS(cfg.NetNS, func() (err error) {
		ipt, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(cfg.IPTables))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: iptables: %w", err)
	}
	return &Proxy{
		cfg:         cfg,
		log:         cfg.Logger,
		ipt:         ipt,
		restorePath: restorePath,
		fullDue:     true,
	}, nil
}

// jump is a rule in a built-in chain that sends traffic into berth's
// chains.
type jump struct {
	table, chain string
	rule         []string
}

// jumps are inserted at the top of their chains so that berth sees a packet
// before any other owner's rule can accept it. That matters in nat
// POSTROUTING: netavark's per-network chain ACCEPTs pod-to-pod traffic
// (-d 10.88.0.0/16 -j ACCEPT), which would otherwise skip berth's hairpin
// masquerade.
var jumps = []jump{
	{"nat", "PREROUTING", []string{"-m", "comment", "--comment", "berth service portals", "-j", chainServices}},
	{"nat", "OUTPUT", []string{"-m", "comment", "--comment", "berth service portals", "-j", chainServices}},
	{"nat", "POSTROUTING", []string{"-m", "comment", "--comment", "berth postrouting rules", "-j", chainPostrouting}},
	{"filter", "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "berth service portals", "-j", chainServices}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "berth service portals", "-j", chainServices}},
	{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "berth service portals", "-j", chainServices}},
	{"filter", "INPUT", []string{"-m", "comment", "--comment", "berth firewall", "-j", chainFirewall}},
}

// Sync programs services, the whole service table. When nothing changed
// since the last successful sync and no full sync is due it does nothing,
// so callers may call it as often as they like. A failed sync leaves the
// previous rules in place (iptables-restore applies all or nothing) and
// makes the next one a full sync.
func (p *Proxy) Sync(ctx context.Context, services []api.Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Clock()
	full := p.fullDue || now.Sub(p.lastFull) >= p.cfg.ResyncPeriod
	var changed map[string]bool
	if !full {
		var any bool
		changed, any = p.changedLocked(services)
		if !any {
			return nil
		}
	}
	began := time.Now()
	out, err := p.syncLocked(ctx, services, full, changed)
	if err != nil {
		p.fullDue = true
		return fmt.Errorf("proxy: sync: %w", err)
	}
	for _, s := range out.Skipped {
		p.log.Warn("service not programmed", "reason", s)
	}
	p.applied = snapshot(services)
	p.chains = out.Chains
	p.lastText = out.Text
	if full {
		p.fullDue = false
		p.lastFull = now
	}
	p.log.Debug("services programmed", "full", full, "services", len(services),
		"changed", len(changed), "bytes", len(out.Text), "took", time.Since(began))
	return nil
}

// changedLocked returns the keys of the services that differ from the last
// sync, and whether anything (a change or a removal) needs a sync.
func (p *Proxy) changedLocked(services []api.Service) (map[string]bool, bool) {
	changed := map[string]bool{}
	seen := make(map[string]bool, len(services))
	for i := range services {
		key := serviceKey(&services[i])
		seen[key] = true
		if old, ok := p.applied[key]; !ok || !serviceEqual(&old, &services[i]) {
			changed[key] = true
		}
	}
	removed := false
	for key := range p.applied {
		if !seen[key] {
			removed = true
			break
		}
	}
	return changed, removed || len(changed) > 0
}

func (p *Proxy) syncLocked(ctx context.Context, services []api.Service, full bool, changed map[string]bool) (ruleOutput, error) {
	var out ruleOutput
	err := inNetNS(p.cfg.NetNS, func() error {
		existing := p.chains
		if full {
			p.setSysctls()
			var err error
			if existing, err = p.listChains("nat", isServiceChain); err != nil {
				return err
			}
			changed = nil
		}
		out = buildRules(ruleInput{
			Services:    services,
			Changed:     changed,
			Existing:    existing,
			RandomFully: p.ipt.HasRandomFully(),
		})
		if err := p.restore(ctx, out.Text); err != nil {
			return err
		}
		if full {
			// After the restore, which creates the chains the jumps name.
			return p.ensureJumps()
		}
		return nil
	})
	return out, err
}

// Cleanup removes every berth chain and every jump to them, leaving the
// host's rules as they were before berth. Other owners' rules are left
// alone. Safe to call when nothing is installed.
func (p *Proxy) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied, p.chains, p.fullDue = nil, nil, true
	err := inNetNS(p.cfg.NetNS, func() error {
		for _, j := range jumps {
			if err := p.deleteJump(j); err != nil {
				return err
			}
		}
		var text bytes.Buffer
		for _, table := range []string{"nat", "filter"} {
			chains, err := p.listChains(table, func(c string) bool { return strings.HasPrefix(c, chainPrefix) })
			if err != nil {
				return err
			}
			if len(chains) == 0 {
				continue
			}
			names := make([]string, 0, len(chains))
			for c := range chains {
				names = append(names, c)
			}
			slices.Sort(names)
			text.WriteString("*" + table + "\n")
			for _, c := range names {
				text.WriteString(":" + c + " - [0:0]\n")
			}
			for _, c := range names {
				text.WriteString("-X " + c + "\n")
			}
			text.WriteString("COMMIT\n")
		}
		if text.Len() == 0 {
			return nil
		}
		return p.restore(ctx, text.Bytes())
	})
	if err != nil {
		return fmt.Errorf("proxy: cleanup: %w", err)
	}
	return nil
}

func (p *Proxy) ensureJumps() error {
	for _, j := range jumps {
		ok, err := p.ipt.Exists(j.table, j.chain, j.rule...)
		if err != nil {
			return fmt.Errorf("check jump from %s %s: %w", j.table, j.chain, err)
		}
		if ok {
			continue
		}
		if err := p.ipt.Insert(j.table, j.chain, 1, j.rule...); err != nil {
			return fmt.Errorf("insert jump from %s %s: %w", j.table, j.chain, err)
		}
	}
	return nil
}

// deleteJump removes every copy of a jump rule (a crash between a check and
// an insert elsewhere could have left two).
func (p *Proxy) deleteJump(j jump) error {
	// A jump cannot outlive the chain it names, and checking for a rule
	// that names a missing chain is an error, so look at the chain first.
	target := j.rule[len(j.rule)-1]
	if ok, err := p.ipt.ChainExists(j.table, target); err != nil || !ok {
		return err
	}
	for {
		ok, err := p.ipt.Exists(j.table, j.chain, j.rule...)
		if err != nil {
			return fmt.Errorf("check jump from %s %s: %w", j.table, j.chain, err)
		}
		if !ok {
			return nil
		}
		if err := p.ipt.Delete(j.table, j.chain, j.rule...); err != nil {
			return fmt.Errorf("delete jump from %s %s: %w", j.table, j.chain, err)
		}
	}
}

func (p *Proxy) listChains(table string, keep func(string) bool) (map[string]bool, error) {
	all, err := p.ipt.ListChains(table)
	if err != nil {
		return nil, fmt.Errorf("list %s chains: %w", table, err)
	}
	chains := map[string]bool{}
	for _, c := range all {
		if keep(c) {
			chains[c] = true
		}
	}
	return chains, nil
}

var failedLine = regexp.MustCompile(`line:? (\d+) failed`)

// restore applies text with one iptables-restore run. --noflush keeps every
// chain the text does not declare, other owners' chains among them.
func (p *Proxy) restore(ctx context.Context, text []byte) error {
	cmd := exec.CommandContext(ctx, p.restorePath, "--wait", "--noflush")
	cmd.Stdin = bytes.NewReader(text)
	output, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(output))
	// Name the rule that failed: the line number alone says little.
	if m := failedLine.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			if lines := bytes.Split(text, []byte("\n")); n >= 1 && n <= len(lines) {
				msg += fmt.Sprintf(" (%q)", lines[n-1])
			}
		}
	}
	return fmt.Errorf("iptables-restore: %w: %s", err, msg)
}

// sysctls berth needs, written on every full sync.
//
// route_localnet: a NodePort on 127.0.0.1 is DNATed to a pod address, and
// the kernel drops a packet with a 127.0.0.0/8 address that is routed off
// the loopback device unless route_localnet is set. The source is then
// masqueraded (EXT chains mark NodePort traffic) so the pod can answer.
//
// bridge-nf-call-iptables: a pod reaching another pod of the same Podman
// bridge through a ClusterIP gets its answer straight across the bridge;
// only with this set does that answer pass conntrack and get its source
// translated back to the ClusterIP. Present only when br_netfilter is
// loaded.
var sysctls = []struct{ path, why string }{
	{"/proc/sys/net/ipv4/conf/all/route_localnet", "NodePorts on 127.0.0.1 will not answer"},
	{"/proc/sys/net/bridge/bridge-nf-call-iptables", "pods reaching a pod of the same bridge through a ClusterIP will not get answers (is br_netfilter loaded?)"},
}

func (p *Proxy) setSysctls() {
	for _, s := range sysctls {
		if cur, err := os.ReadFile(s.path); err == nil && strings.TrimSpace(string(cur)) == "1" {
			continue
		}
		if err := os.WriteFile(s.path, []byte("1\n"), 0o644); err != nil {
			p.log.Warn("cannot set sysctl; "+s.why, "path", s.path, "err", err)
		}
	}
}

// snapshot copies services deeply enough that a caller reusing its slices
// cannot change what the next sync compares against.
func snapshot(services []api.Service) map[string]api.Service {
	m := make(map[string]api.Service, len(services))
	for _, s := range services {
		ports := make([]api.ServicePort, len(s.Ports))
		for i, sp := range s.Ports {
			sp.Endpoints = slices.Clone(sp.Endpoints)
			ports[i] = sp
		}
		s.Ports = ports
		key := serviceKey(&s)
		if _, dup := m[key]; !dup {
			m[key] = s
		}
	}
	return m
}

// serviceEqual reports whether two services program the same rules.
func serviceEqual(a, b *api.Service) bool {
	if a.Namespace != b.Namespace || a.Name != b.Name || a.Type != b.Type ||
		a.ClusterIP != b.ClusterIP || a.AffinitySeconds != b.AffinitySeconds || len(a.Ports) != len(b.Ports) {
		return false
	}
	for i := range a.Ports {
		pa, pb := &a.Ports[i], &b.Ports[i]
		if pa.Name != pb.Name || pa.Protocol != pb.Protocol || pa.Port != pb.Port || pa.NodePort != pb.NodePort ||
			len(pa.Endpoints) != len(pb.Endpoints) {
			return false
		}
		for j := range pa.Endpoints {
			if pa.Endpoints[j].IP != pb.Endpoints[j].IP || pa.Endpoints[j].Port != pb.Endpoints[j].Port {
				return false
			}
		}
	}
	return true
}
