package proxy

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"berth.dev/berth/api"
)

// ruleInput is everything the rules text depends on: buildRules is a pure
// function of it, so the whole of berth's iptables programming can be
// table-tested without a kernel.
type ruleInput struct {
	Services []api.Service
	// Changed holds the keys (serviceKey) of the services whose SVC, SEP
	// and EXT chains must be written. Nil means all of them: a full sync.
	Changed map[string]bool
	// Existing is the set of per-service nat chains (SVC, SEP, EXT) that
	// exist in the kernel now; any of them not wanted any more is deleted.
	Existing map[string]bool
	// RandomFully adds --random-fully to MASQUERADE (iptables >= 1.6.2).
	RandomFully bool
}

// ruleOutput is the text for one `iptables-restore --noflush` and what it
// leaves behind.
type ruleOutput struct {
	Text []byte
	// Chains is the set of per-service nat chains that exist once Text is
	// applied.
	Chains map[string]bool
	// Skipped lists the parts of the input that cannot be programmed (a
	// malformed address, an unsupported protocol), one message each. They
	// are left out so that one bad Service cannot block all the others.
	Skipped []string
}

func serviceKey(s *api.Service) string { return s.Namespace + "/" + s.Name }

// buildRules writes the restore text for every berth chain of the nat and
// filter tables.
//
// BERTH-SERVICES, BERTH-NODEPORTS, BERTH-MARK-MASQ, BERTH-POSTROUTING and
// the filter chains are written in full every time: they are small and
// they are where a Service appears or vanishes. The per-service chains are
// written only for Changed services (all of them on a full sync); the
// chains of unchanged services are left as they are in the kernel, which is
// what makes a one-Service change cost one Service's worth of rules
// (KEP-3453). Chains in Existing that no Service wants any more are flushed
// and deleted at the end, after every rule that jumped to them is gone.
func buildRules(in ruleInput) ruleOutput {
	w := ruleWriter{
		in:      in,
		chains:  make(map[string]bool, len(in.Existing)+16),
		seenSvc: make(map[string]bool, len(in.Services)),
	}
	w.natChains.Grow(1 << 10)
	for _, c := range []string{chainServices, chainNodePorts, chainMarkMasq, chainPostrouting} {
		w.declareNat(c)
	}
	w.natRules.WriteString("-A " + chainMarkMasq + " -j MARK --or-mark " + masqMark + "\n")
	w.natRules.WriteString("-A " + chainPostrouting + " -m mark ! --mark " + masqMark + "/" + masqMark + " -j RETURN\n")
	// Clear the bit so that a packet re-entering the stack (a hairpin
	// through a bridge) is not masqueraded twice.
	w.natRules.WriteString("-A " + chainPostrouting + " -j MARK --xor-mark " + masqMark + "\n")
	w.natRules.WriteString("-A " + chainPostrouting + ` -m comment --comment "berth service traffic requiring SNAT" -j MASQUERADE`)
	if in.RandomFully {
		w.natRules.WriteString(" --random-fully")
	}
	w.natRules.WriteByte('\n')

	w.filterChains.WriteString(":" + chainServices + " - [0:0]\n")
	w.filterChains.WriteString(":" + chainFirewall + " - [0:0]\n")
	// route_localnet lets 127.0.0.1:NodePort be DNATed to a pod; it would
	// also let another host send packets to 127.0.0.0/8 on this one. Drop
	// those, as kube-proxy does (CVE-2020-8558).
	w.filterRules.WriteString("-A " + chainFirewall + ` -m comment --comment "block incoming localnet connections" ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP` + "\n")

	order := make([]*api.Service, len(in.Services))
	for i := range in.Services {
		order[i] = &in.Services[i]
	}
	slices.SortStableFunc(order, func(a, b *api.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, svc := range order {
		w.service(svc)
	}
	// NodePorts last: a packet to a local address that matched no ClusterIP
	// above may be for a NodePort.
	w.natRules.WriteString("-A " + chainServices + ` -m comment --comment "berth service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j ` + chainNodePorts + "\n")

	var stale []string
	for c := range in.Existing {
		if !w.chains[c] {
			stale = append(stale, c)
		}
	}
	slices.Sort(stale)
	for _, c := range stale {
		w.declareNat(c)
		w.natRules.WriteString("-X " + c + "\n")
	}

	var out bytes.Buffer
	out.Grow(w.natChains.Len() + w.natRules.Len() + w.filterChains.Len() + w.filterRules.Len() + 64)
	out.WriteString("*nat\n")
	out.Write(w.natChains.Bytes())
	out.Write(w.natRules.Bytes())
	out.WriteString("COMMIT\n*filter\n")
	out.Write(w.filterChains.Bytes())
	out.Write(w.filterRules.Bytes())
	out.WriteString("COMMIT\n")
	return ruleOutput{Text: out.Bytes(), Chains: w.chains, Skipped: w.skipped}
}

// ruleWriter accumulates the text of one restore: chain declarations first
// (each one creates or flushes a chain), then rules, per table.
type ruleWriter struct {
	in                        ruleInput
	natChains, natRules       bytes.Buffer
	filterChains, filterRules bytes.Buffer
	chains                    map[string]bool // per-service chains wanted
	seenSvc                   map[string]bool
	skipped                   []string
}

func (w *ruleWriter) declareNat(chain string) {
	w.natChains.WriteString(":" + chain + " - [0:0]\n")
}

func (w *ruleWriter) skip(format string, args ...any) {
	w.skipped = append(w.skipped, fmt.Sprintf(format, args...))
}

// endpoint is a checked backend of one service port.
type endpoint struct {
	ip, addr, chain string
}

func (w *ruleWriter) service(svc *api.Service) {
	key := serviceKey(svc)
	if w.seenSvc[key] {
		w.skip("service %s: listed twice; the first one is programmed", key)
		return
	}
	w.seenSvc[key] = true
	if svc.ClusterIP == "" || svc.ClusterIP == "None" {
		return // headless: clients use the endpoints' addresses directly
	}
	if a, err := netip.ParseAddr(svc.ClusterIP); err != nil || !a.Is4() {
		w.skip("service %s: cluster IP %q is not an IPv4 address", key, svc.ClusterIP)
		return
	}
	clusterIP := svc.ClusterIP
	write := w.in.Changed == nil || w.in.Changed[key]
	seenPort := make(map[string]bool, len(svc.Ports))
	for i := range svc.Ports {
		port := &svc.Ports[i]
		spn := servicePortName(svc, port)
		proto, ok := protocol(port.Protocol)
		if !ok {
			w.skip("service port %s: protocol %q is not supported (TCP and UDP are)", spn, port.Protocol)
			continue
		}
		if !validPort(port.Port) || (port.NodePort != 0 && !validPort(port.NodePort)) {
			w.skip("service port %s: port %d or node port %d out of range", spn, port.Port, port.NodePort)
			continue
		}
		svcName := svcChain(spn, proto)
		if seenPort[svcName] {
			w.skip("service port %s/%s: listed twice", spn, proto)
			continue
		}
		seenPort[svcName] = true
		w.servicePort(svc, port, spn, proto, clusterIP, svcName, write)
	}
}

func (w *ruleWriter) servicePort(svc *api.Service, port *api.ServicePort, spn, proto, clusterIP, svcName string, write bool) {
	nodePort := svc.Type == "NodePort" && port.NodePort != 0
	eps := make([]endpoint, 0, len(port.Endpoints))
	for _, ep := range port.Endpoints {
		if a, err := netip.ParseAddr(ep.IP); err != nil || !a.Is4() || !validPort(ep.Port) {
			w.skip("service port %s: endpoint %s:%d is not an IPv4 address and port", spn, ep.IP, ep.Port)
			continue
		}
		addr := hostPort(ep.IP, ep.Port)
		eps = append(eps, endpoint{ip: ep.IP, addr: addr, chain: sepChain(spn, proto, addr)})
	}
	match := " -p " + proto + " -m " + proto + " --dport "

	if len(eps) == 0 {
		// No chain at all: the filter table refuses the connection at once
		// (an unanswered SYN would make clients wait for their timeout).
		reject := " -j REJECT --reject-with icmp-port-unreachable\n"
		if proto == "tcp" {
			reject = " -j REJECT --reject-with tcp-reset\n"
		}
		comment := ` -m comment --comment "` + spn + ` has no endpoints"`
		w.filterRules.WriteString("-A " + chainServices + comment + " -d " + clusterIP + "/32" + match + itoa(port.Port) + reject)
		if nodePort {
			w.filterRules.WriteString("-A " + chainServices + comment + " -m addrtype --dst-type LOCAL" + match + itoa(port.NodePort) + reject)
		}
		return
	}

	comment := ` -m comment --comment "` + spn + `"`
	w.chains[svcName] = true
	w.natRules.WriteString("-A " + chainServices + ` -m comment --comment "` + spn + ` cluster IP" -d ` + clusterIP + "/32" + match + itoa(port.Port) + " -j " + svcName + "\n")
	var ext string
	if nodePort {
		ext = extChain(spn, proto)
		w.chains[ext] = true
		w.natRules.WriteString("-A " + chainNodePorts + comment + match + itoa(port.NodePort) + " -j " + ext + "\n")
	}
	for _, ep := range eps {
		w.chains[ep.chain] = true
	}
	if !write {
		return
	}

	if ext != "" {
		// Traffic that came in on a node address (or 127.0.0.1) must be
		// masqueraded: the endpoint could not answer the client directly.
		w.declareNat(ext)
		w.natRules.WriteString("-A " + ext + ` -m comment --comment "masquerade traffic for ` + spn + ` external destinations" -j ` + chainMarkMasq + "\n")
		w.natRules.WriteString("-A " + ext + " -j " + svcName + "\n")
	}

	w.declareNat(svcName)
	if svc.AffinitySeconds > 0 {
		// A client seen recently by an endpoint goes back to it; only new
		// clients are spread.
		for _, ep := range eps {
			w.natRules.WriteString("-A " + svcName + ` -m comment --comment "` + spn + " -> " + ep.addr + `" -m recent --name ` + ep.chain + " --rcheck --seconds " + itoa(svc.AffinitySeconds) + " --reap -j " + ep.chain + "\n")
		}
	}
	n := len(eps)
	for i, ep := range eps {
		w.natRules.WriteString("-A " + svcName + ` -m comment --comment "` + spn + " -> " + ep.addr + `"`)
		if i < n-1 {
			// Endpoint i takes 1/(n-i) of what the ones before it left,
			// which gives each endpoint 1/n overall.
			w.natRules.WriteString(" -m statistic --mode random --probability " + strconv.FormatFloat(1/float64(n-i), 'f', 10, 64))
		}
		w.natRules.WriteString(" -j " + ep.chain + "\n")
	}

	for _, ep := range eps {
		w.declareNat(ep.chain)
		// Hairpin: a pod reaching itself through the Service would see its
		// own address as the source and answer itself directly.
		w.natRules.WriteString("-A " + ep.chain + comment + " -s " + ep.ip + "/32 -j " + chainMarkMasq + "\n")
		w.natRules.WriteString("-A " + ep.chain + comment)
		if svc.AffinitySeconds > 0 {
			w.natRules.WriteString(" -m recent --name " + ep.chain + " --set")
		}
		w.natRules.WriteString(" -p " + proto + " -m " + proto + " -j DNAT --to-destination " + ep.addr + "\n")
	}
}

// protocol maps a Service protocol to iptables' name for it.
func protocol(p string) (string, bool) {
	switch p {
	case "", "TCP":
		return "tcp", true
	case "UDP":
		return "udp", true
	}
	return "", false
}

func validPort(p int32) bool { return p > 0 && p < 65536 }

func itoa(i int32) string { return strconv.Itoa(int(i)) }
