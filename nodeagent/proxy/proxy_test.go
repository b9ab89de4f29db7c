package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/api"
)

// endpoints lists the test host's endpoints with the given names.
func (h *testHost) eps(port int32, names ...string) []api.Endpoint {
	var out []api.Endpoint
	for _, n := range names {
		for _, ep := range h.endpoints {
			if ep.name == n {
				out = append(out, api.Endpoint{IP: ep.ip, Port: port})
			}
		}
	}
	if len(out) != len(names) {
		h.t.Fatalf("unknown endpoint among %v", names)
	}
	return out
}

func (h *testHost) endpoint(name string) testEndpoint {
	for _, ep := range h.endpoints {
		if ep.name == name {
			return ep
		}
	}
	h.t.Fatalf("no endpoint %s", name)
	return testEndpoint{}
}

func web(clusterIP string, eps []api.Endpoint) api.Service {
	return api.Service{
		Namespace: "default", Name: "web", Type: "ClusterIP", ClusterIP: clusterIP,
		Ports: []api.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, Endpoints: eps}},
	}
}

func mustSync(t *testing.T, p *Proxy, svcs ...api.Service) {
	t.Helper()
	if err := p.Sync(context.Background(), svcs); err != nil {
		t.Fatal(err)
	}
}

func TestClusterIPSpreadsOverEndpoints(t *testing.T) {
	h := newTestHost(t, 3)
	p := h.newProxy(Config{})
	mustSync(t, p, web("10.96.0.10", h.eps(tcpPort, "e1", "e2", "e3")))

	// From the node itself (nat OUTPUT) and from a pod on the bridge (nat
	// PREROUTING, then an answer across the bridge).
	for _, from := range []struct{ name, path string }{{"node", h.nodePath}, {"pod", h.client}} {
		got := askN(t, from.path, "tcp4", "10.96.0.10:80", 120)
		t.Logf("from %s: %v", from.name, got)
		for _, ep := range []string{"e1", "e2", "e3"} {
			// 40 expected each; fewer than 10 has a probability below 1e-9.
			if got[ep] < 10 {
				t.Errorf("from %s: endpoint %s answered %d of 120: %v", from.name, ep, got[ep], got)
			}
		}
	}
}

func TestEndpointChangesMoveTraffic(t *testing.T) {
	h := newTestHost(t, 3)
	p := h.newProxy(Config{})
	mustSync(t, p, web("10.96.0.10", h.eps(tcpPort, "e1", "e2")))
	got := askN(t, h.nodePath, "tcp4", "10.96.0.10:80", 40)
	if got["e3"] != 0 || got["e1"] == 0 || got["e2"] == 0 {
		t.Fatalf("with e1, e2 ready: %v", got)
	}
	// e1 and e2 stop being ready, e3 becomes ready.
	mustSync(t, p, web("10.96.0.10", h.eps(tcpPort, "e3")))
	if got := askN(t, h.nodePath, "tcp4", "10.96.0.10:80", 30); got["e3"] != 30 {
		t.Fatalf("with only e3 ready: %v", got)
	}
	if save := h.save(); strings.Count(save, ":BERTH-SEP-") != 1 {
		t.Errorf("the endpoint chains of e1 and e2 were not deleted:\n%s", save)
	}
}

func TestNoEndpointsRefuses(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.newProxy(Config{})
	svc := web("10.96.0.10", nil)
	svc.Type = "NodePort"
	svc.Ports[0].NodePort = 30080
	svc.Ports = append(svc.Ports, api.ServicePort{Name: "dns", Protocol: "UDP", Port: 53, NodePort: 30053})
	mustSync(t, p, svc)
	for _, c := range []struct{ from, network, addr string }{
		{h.nodePath, "tcp4", "10.96.0.10:80"},
		{h.client, "tcp4", "10.96.0.10:80"},
		{h.nodePath, "tcp4", "127.0.0.1:30080"},
		{h.client, "tcp4", nodeAddr + ":30080"},
		{h.nodePath, "udp4", "10.96.0.10:53"},
		{h.client, "udp4", "10.96.0.10:53"},
		{h.client, "udp4", nodeAddr + ":30053"},
	} {
		// Refused, not timed out: without the REJECT the SYN would go
		// unanswered until the 3 s dial timeout. A datagram rejected in
		// OUTPUT fails its send with EPERM instead.
		who, err := ask(c.from, c.network, c.addr)
		if c.network == "udp4" && c.from == h.nodePath && errors.Is(err, syscall.EPERM) {
			continue
		}
		if !isRefused(err) {
			t.Errorf("%s %s from %s: answer %q, error %v; want connection refused", c.network, c.addr, c.from, who, err)
		}
	}
	// The Service gets an endpoint: the rejects go, traffic flows.
	svc.Ports[0].Endpoints = h.eps(tcpPort, "e1")
	mustSync(t, p, svc)
	if got := askN(t, h.client, "tcp4", "10.96.0.10:80", 3); got["e1"] != 3 {
		t.Fatalf("after the endpoint came: %v", got)
	}
}

func TestNodePort(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.newProxy(Config{})
	svc := web("10.96.0.10", h.eps(tcpPort, "e1", "e2"))
	svc.Type = "NodePort"
	svc.Ports[0].NodePort = 30080
	mustSync(t, p, svc)
	for _, c := range []struct{ name, from, addr string }{
		{"localhost", h.nodePath, "127.0.0.1:30080"},
		{"node address from the node", h.nodePath, nodeAddr + ":30080"},
		{"node address from a pod", h.client, nodeAddr + ":30080"},
		{"bridge address from a pod", h.client, "10.88.0.1:30080"},
		{"node address from another machine", h.outside, nodeAddr + ":30080"},
		{"cluster IP", h.nodePath, "10.96.0.10:80"},
	} {
		got := askN(t, c.from, "tcp4", c.addr, 30)
		if got["e1"]+got["e2"] != 30 || got["e1"] == 0 || got["e2"] == 0 {
			t.Errorf("%s: %v", c.name, got)
		}
	}
}

func TestSessionAffinity(t *testing.T) {
	h := newTestHost(t, 3)
	p := h.newProxy(Config{})
	svc := web("10.96.0.10", h.eps(tcpPort, "e1", "e2", "e3"))
	svc.AffinitySeconds = 600
	mustSync(t, p, svc)
	for _, from := range []string{h.nodePath, h.client} {
		if got := askN(t, from, "tcp4", "10.96.0.10:80", 30); len(got) != 1 {
			t.Errorf("from %s: answers from more than one endpoint: %v", from, got)
		}
	}
}

func TestUDP(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.newProxy(Config{})
	svc := api.Service{
		Namespace: "kube-system", Name: "dns", Type: "NodePort", ClusterIP: "10.96.0.53",
		Ports: []api.ServicePort{{Name: "dns", Protocol: "UDP", Port: 53, NodePort: 30053, Endpoints: h.eps(udpPort, "e1", "e2")}},
	}
	mustSync(t, p, svc)
	// Every ask is a new socket and so a new conntrack flow.
	for _, c := range []struct{ from, addr string }{
		{h.nodePath, "10.96.0.53:53"},
		{h.client, "10.96.0.53:53"},
		{h.client, nodeAddr + ":30053"},
	} {
		got := askN(t, c.from, "udp4", c.addr, 40)
		if got["e1"] == 0 || got["e2"] == 0 {
			t.Errorf("udp %s: %v", c.addr, got)
		}
	}
}

func TestHairpin(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.newProxy(Config{})
	mustSync(t, p, web("10.96.0.10", h.eps(tcpPort, "e1")))
	// e1 reaches itself through its Service. Without the masquerade it
	// would get its own SYN from its own address and answer itself
	// directly, and the connection would never complete.
	//
	// With br_netfilter the DNATed packet is bridged straight back out of
	// the port it came in on, which a bridge does only for ports in
	// hairpin mode. netavark (1.4, Podman 4.3) leaves hairpin mode off, as
	// the CNI bridge plugin's hairpinMode or kubelet's hairpin-veth would
	// not; see docs/services.md.
	ipCmd(t, "-n", h.node, "link", "set", "ve1", "type", "bridge_slave", "hairpin", "on")
	if got := askN(t, h.endpoint("e1").path, "tcp4", "10.96.0.10:80", 5); got["e1"] != 5 {
		t.Fatalf("hairpin: %v", got)
	}
	if got := askN(t, h.endpoint("e2").path, "tcp4", "10.96.0.10:80", 5); got["e1"] != 5 {
		t.Fatalf("pod to pod on the same bridge: %v", got)
	}
}

func TestPartialSyncRewritesOnlyChangedService(t *testing.T) {
	h := newTestHost(t, 3)
	p := h.newProxy(Config{ResyncPeriod: time.Hour})
	a := web("10.96.0.10", h.eps(tcpPort, "e1", "e2"))
	b := api.Service{
		Namespace: "shop", Name: "api", Type: "NodePort", ClusterIP: "10.96.0.20",
		Ports: []api.ServicePort{{Protocol: "TCP", Port: 8080, NodePort: 30081, Endpoints: h.eps(tcpPort, "e2", "e3")}},
	}
	mustSync(t, p, a, b)
	aSVC, bSVC := svcChain("default/web:http", "tcp"), svcChain("shop/api", "tcp")
	if text := string(p.lastText); !strings.Contains(text, ":"+aSVC+" ") || !strings.Contains(text, ":"+bSVC+" ") {
		t.Fatalf("first sync is not a full one:\n%s", text)
	}

	// Nothing changed: no restore at all.
	before := p.lastText
	mustSync(t, p, a, b)
	if &p.lastText[0] != &before[0] {
		t.Fatal("a sync with nothing changed ran a restore")
	}

	b.Ports[0].Endpoints = h.eps(tcpPort, "e3")
	mustSync(t, p, a, b)
	text := string(p.lastText)
	oldSEP := sepChain("shop/api", "tcp", h.endpoint("e2").ip+":8080")
	for _, want := range []string{
		":" + bSVC + " ", ":" + extChain("shop/api", "tcp") + " ", "-X " + oldSEP + "\n",
		"-j " + aSVC + "\n", // BERTH-SERVICES is written in full
	} {
		if !strings.Contains(text, want) {
			t.Errorf("restore text lacks %q:\n%s", want, text)
		}
	}
	for _, unwanted := range []string{":" + aSVC, "-A " + aSVC, sepChain("default/web:http", "tcp", h.endpoint("e1").ip+":8080")} {
		if strings.Contains(text, unwanted) {
			t.Errorf("restore text rewrites the unchanged service (%q):\n%s", unwanted, text)
		}
	}
	if got := askN(t, h.nodePath, "tcp4", "10.96.0.10:80", 30); got["e1"] == 0 || got["e2"] == 0 {
		t.Errorf("unchanged service: %v", got)
	}
	if got := askN(t, h.nodePath, "tcp4", "127.0.0.1:30081", 10); got["e3"] != 10 {
		t.Errorf("changed service: %v", got)
	}

	// Removing a service deletes its chains.
	mustSync(t, p, a)
	if save := h.save(); strings.Contains(save, bSVC) || strings.Contains(save, "30081") {
		t.Errorf("removed service left rules:\n%s", save)
	}
}

func TestFullSyncAfterFailure(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.newProxy(Config{ResyncPeriod: time.Hour})
	a := web("10.96.0.10", h.eps(tcpPort, "e1"))
	b := web("10.96.0.20", h.eps(tcpPort, "e2"))
	b.Name = "other"
	mustSync(t, p, a, b)
	// Someone removes a's chain behind berth's back. A partial sync for b
	// still jumps to it, fails, and the next sync repairs everything.
	aSVC := svcChain("default/web:http", "tcp")
	h.iptables("-t", "nat", "-F", chainServices)
	h.iptables("-t", "nat", "-F", aSVC)
	h.iptables("-t", "nat", "-X", aSVC)
	b.Ports[0].Endpoints = h.eps(tcpPort, "e1")
	err := p.Sync(context.Background(), []api.Service{a, b})
	if err == nil || !strings.Contains(err.Error(), aSVC) {
		t.Fatalf("partial sync over a missing chain: err = %v, want one naming %s", err, aSVC)
	}
	mustSync(t, p, a, b)
	if !strings.Contains(string(p.lastText), ":"+aSVC+" ") {
		t.Fatal("the sync after a failure was not a full one")
	}
	if got := askN(t, h.nodePath, "tcp4", "10.96.0.10:80", 5); got["e1"] != 5 {
		t.Fatalf("after repair: %v", got)
	}
}

func TestCleanupRestoresHostAndKeepsOthersRules(t *testing.T) {
	h := newTestHost(t, 2)
	// Rules of other owners, in the built-in chains berth jumps from.
	h.iptables("-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
	h.iptables("-I", "OUTPUT", "1", "-d", "10.77.0.0/16", "-j", "DROP")
	h.iptables("-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "9998", "-j", "REDIRECT", "--to-ports", "9997")
	h.iptables("-t", "nat", "-N", "SOMEONE-ELSE")
	h.iptables("-t", "nat", "-A", "SOMEONE-ELSE", "-s", "10.123.0.0/16", "-j", "RETURN")
	before := h.save()
	others := otherRules(before)

	// Every full sync re-checks the jumps: they must not pile up.
	p := h.newProxy(Config{ResyncPeriod: time.Nanosecond})
	svc := web("10.96.0.10", h.eps(tcpPort, "e1", "e2"))
	svc.Type, svc.Ports[0].NodePort = "NodePort", 30080
	empty := web("10.96.0.11", nil)
	empty.Name = "empty"
	for i := range 3 {
		svc.Ports[0].Endpoints = h.eps(tcpPort, []string{"e1", "e2"}[:1+i%2]...)
		mustSync(t, p, svc, empty)
		save := h.save()
		if got := otherRules(save); got != others {
			t.Fatalf("sync %d changed rules that are not berth's:\nbefore:\n%s\nafter:\n%s", i, others, got)
		}
		for _, j := range jumps {
			if n := strings.Count(save, "-A "+j.chain+" "+strings.Join(quoteComment(j.rule), " ")+"\n"); n != 1 {
				t.Fatalf("sync %d: jump %v appears %d times:\n%s", i, j, n, save)
			}
		}
	}
	if got := askN(t, h.nodePath, "tcp4", "10.96.0.10:80", 3); got["e1"] != 3 {
		t.Fatalf("before cleanup: %v", got)
	}

	if err := p.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := h.save(); after != before {
		t.Fatalf("cleanup did not restore the rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Cleanup is what `berth cleanup` runs from a fresh process, maybe
	// twice: it must work with nothing installed.
	fresh := h.newProxy(Config{})
	if err := fresh.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	// And the proxy works again after a cleanup.
	mustSync(t, p, svc)
	if err := fresh.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := h.save(); after != before {
		t.Fatalf("second cleanup did not restore the rules:\n%s", after)
	}
}

// otherRules keeps the lines of an iptables-save that do not mention berth.
func otherRules(save string) string {
	var b strings.Builder
	for line := range strings.Lines(save) {
		if !strings.Contains(line, "BERTH-") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// quoteComment writes a rule spec as iptables-save prints it.
func quoteComment(rule []string) []string {
	out := make([]string, len(rule))
	for i, a := range rule {
		if strings.Contains(a, " ") {
			a = fmt.Sprintf("%q", a)
		}
		out[i] = a
	}
	return out
}
