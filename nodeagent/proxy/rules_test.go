package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"berth.dev/berth/api"
)

func TestChainNamesMatchKubeProxy(t *testing.T) {
	// kube-proxy names the kubernetes Service's https port KUBE-SVC-NPX46M4PTMTKRN6Y.
	if got := svcChain("default/kubernetes:https", "TCP"); got != "BERTH-SVC-NPX46M4PTMTKRN6Y" {
		t.Errorf("svcChain = %s", got)
	}
	for _, c := range []string{svcChain("a/b:c", "tcp"), sepChain("a/b:c", "tcp", "10.0.0.1:80"), extChain("a/b:c", "udp")} {
		if len(c) > 28 { // iptables' limit
			t.Errorf("%s is longer than 28 characters", c)
		}
	}
	if sepChain("a/b:c", "tcp", "10.0.0.1:80") == sepChain("a/b:c", "tcp", "10.0.0.2:80") {
		t.Error("two endpoints share a chain")
	}
}

const fixedNat = `-A BERTH-MARK-MASQ -j MARK --or-mark 0x4000
-A BERTH-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A BERTH-POSTROUTING -j MARK --xor-mark 0x4000
-A BERTH-POSTROUTING -m comment --comment "berth service traffic requiring SNAT" -j MASQUERADE --random-fully
`

func TestBuildRulesGolden(t *testing.T) {
	svc, sep := svcChain("default/web:http", "tcp"), sepChain("default/web:http", "tcp", "10.88.0.5:8080")
	got := string(buildRules(ruleInput{
		Services: []api.Service{{
			Namespace: "default", Name: "web", Type: "ClusterIP", ClusterIP: "10.96.0.10",
			Ports: []api.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, Endpoints: []api.Endpoint{{IP: "10.88.0.5", Port: 8080}}}},
		}},
		RandomFully: true,
	}).Text)
	want := `*nat
:BERTH-SERVICES - [0:0]
:BERTH-NODEPORTS - [0:0]
:BERTH-MARK-MASQ - [0:0]
:BERTH-POSTROUTING - [0:0]
:` + svc + ` - [0:0]
:` + sep + ` - [0:0]
` + fixedNat + `-A BERTH-SERVICES -m comment --comment "default/web:http cluster IP" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j ` + svc + `
-A ` + svc + ` -m comment --comment "default/web:http -> 10.88.0.5:8080" -j ` + sep + `
-A ` + sep + ` -m comment --comment "default/web:http" -s 10.88.0.5/32 -j BERTH-MARK-MASQ
-A ` + sep + ` -m comment --comment "default/web:http" -p tcp -m tcp -j DNAT --to-destination 10.88.0.5:8080
-A BERTH-SERVICES -m comment --comment "berth service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j BERTH-NODEPORTS
COMMIT
*filter
:BERTH-SERVICES - [0:0]
:BERTH-FIREWALL - [0:0]
-A BERTH-FIREWALL -m comment --comment "block incoming localnet connections" ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func eps(n int) []api.Endpoint {
	out := make([]api.Endpoint, n)
	for i := range out {
		out[i] = api.Endpoint{IP: fmt.Sprintf("10.88.0.%d", i+1), Port: 8080}
	}
	return out
}

func TestBuildRules(t *testing.T) {
	spn := "ns/svc:p"
	svcC, extC := svcChain(spn, "tcp"), extChain(spn, "tcp")
	sep := func(i int) string { return sepChain(spn, "tcp", fmt.Sprintf("10.88.0.%d:8080", i)) }
	base := func(n int) api.Service {
		return api.Service{Namespace: "ns", Name: "svc", Type: "ClusterIP", ClusterIP: "10.96.0.1",
			Ports: []api.ServicePort{{Name: "p", Protocol: "TCP", Port: 80, Endpoints: eps(n)}}}
	}
	tests := []struct {
		name     string
		services []api.Service
		changed  map[string]bool
		existing []string
		want     []string // lines that must appear, in this order
		lacks    []string // substrings that must not appear
		chains   []string // per-service chains left afterwards
		skipped  int
	}{{
		name:     "three endpoints share traffic evenly",
		services: []api.Service{base(3)},
		want: []string{
			"-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.1:8080" -m statistic --mode random --probability 0.3333333333 -j ` + sep(1),
			"-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j ` + sep(2),
			"-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.3:8080" -j ` + sep(3),
		},
		lacks:  []string{"recent", "REJECT"},
		chains: []string{svcC, sep(1), sep(2), sep(3)},
	}, {
		name: "client IP affinity",
		services: []api.Service{func() api.Service {
			s := base(2)
			s.AffinitySeconds = 10800
			return s
		}()},
		want: []string{
			"-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.1:8080" -m recent --name ` + sep(1) + " --rcheck --seconds 10800 --reap -j " + sep(1),
			"-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.2:8080" -m recent --name ` + sep(2) + " --rcheck --seconds 10800 --reap -j " + sep(2),
			"-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.1:8080" -m statistic --mode random --probability 0.5000000000 -j ` + sep(1),
			"-A " + sep(1) + ` -m comment --comment "ns/svc:p" -m recent --name ` + sep(1) + " --set -p tcp -m tcp -j DNAT --to-destination 10.88.0.1:8080",
		},
		chains: []string{svcC, sep(1), sep(2)},
	}, {
		name: "node port",
		services: []api.Service{func() api.Service {
			s := base(1)
			s.Type, s.Ports[0].NodePort = "NodePort", 30080
			return s
		}()},
		want: []string{
			":" + extC + " - [0:0]",
			"-A BERTH-SERVICES -m comment --comment \"ns/svc:p cluster IP\" -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j " + svcC,
			`-A BERTH-NODEPORTS -m comment --comment "ns/svc:p" -p tcp -m tcp --dport 30080 -j ` + extC,
			"-A " + extC + ` -m comment --comment "masquerade traffic for ns/svc:p external destinations" -j BERTH-MARK-MASQ`,
			"-A " + extC + " -j " + svcC,
		},
		chains: []string{svcC, extC, sep(1)},
	}, {
		name: "no endpoints: rejects in filter, no nat rules",
		services: []api.Service{func() api.Service {
			s := base(0)
			s.Type = "NodePort"
			s.Ports = []api.ServicePort{
				{Name: "p", Protocol: "TCP", Port: 80, NodePort: 30080},
				{Name: "q", Protocol: "UDP", Port: 53, NodePort: 30053},
			}
			return s
		}()},
		want: []string{
			`-A BERTH-SERVICES -m comment --comment "ns/svc:p has no endpoints" -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset`,
			`-A BERTH-SERVICES -m comment --comment "ns/svc:p has no endpoints" -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j REJECT --reject-with tcp-reset`,
			`-A BERTH-SERVICES -m comment --comment "ns/svc:q has no endpoints" -d 10.96.0.1/32 -p udp -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable`,
		},
		lacks: []string{"BERTH-SVC-", "BERTH-EXT-", "--to-destination"},
	}, {
		name:     "partial: unchanged service keeps its chains untouched",
		services: []api.Service{base(2)},
		changed:  map[string]bool{},
		existing: []string{svcC, sep(1), sep(2)},
		want:     []string{"-A BERTH-SERVICES -m comment --comment \"ns/svc:p cluster IP\" -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j " + svcC},
		lacks:    []string{":" + svcC, "-A " + svcC, sep(1), "-X"},
		chains:   []string{svcC, sep(1), sep(2)},
	}, {
		name:     "partial: a lost endpoint's chain is deleted after the rewrite",
		services: []api.Service{base(1)},
		changed:  map[string]bool{"ns/svc": true},
		existing: []string{svcC, sep(1), sep(2)},
		want:     []string{":" + svcC + " - [0:0]", ":" + sep(2) + " - [0:0]", "-A " + svcC + ` -m comment --comment "ns/svc:p -> 10.88.0.1:8080" -j ` + sep(1), "-X " + sep(2), "COMMIT"},
		chains:   []string{svcC, sep(1)},
	}, {
		name:     "removed service: all its chains deleted",
		existing: []string{svcC, sep(1), extC},
		want:     []string{"-X " + extC, "-X " + sep(1), "-X " + svcC},
	}, {
		name: "headless, bad addresses and unsupported protocols are skipped",
		services: []api.Service{
			{Namespace: "ns", Name: "headless", ClusterIP: "None", Ports: []api.ServicePort{{Protocol: "TCP", Port: 80, Endpoints: eps(1)}}},
			{Namespace: "ns", Name: "v6", ClusterIP: "fd00::1", Ports: []api.ServicePort{{Protocol: "TCP", Port: 80}}},
			{Namespace: "ns", Name: "sctp", ClusterIP: "10.96.0.2", Ports: []api.ServicePort{{Protocol: "SCTP", Port: 80}}},
			{Namespace: "ns", Name: "badep", ClusterIP: "10.96.0.3", Ports: []api.ServicePort{{Protocol: "TCP", Port: 80, Endpoints: []api.Endpoint{{IP: "nope", Port: 1}}}}},
		},
		want:    []string{`-A BERTH-SERVICES -m comment --comment "ns/badep has no endpoints" -d 10.96.0.3/32`},
		lacks:   []string{"ns/headless", "fd00", "10.96.0.2"},
		skipped: 3,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			existing := map[string]bool{}
			for _, c := range tc.existing {
				existing[c] = true
			}
			out := buildRules(ruleInput{Services: tc.services, Changed: tc.changed, Existing: existing})
			text := string(out.Text)
			pos := 0
			for _, w := range tc.want {
				i := strings.Index(text[pos:], w)
				if i < 0 {
					t.Fatalf("missing (or out of order) %q in:\n%s", w, text)
				}
				pos += i + len(w)
			}
			for _, l := range tc.lacks {
				if strings.Contains(text, l) {
					t.Errorf("unexpected %q in:\n%s", l, text)
				}
			}
			var chains []string
			for c := range out.Chains {
				chains = append(chains, c)
			}
			slices.Sort(chains)
			slices.Sort(tc.chains)
			if !slices.Equal(chains, tc.chains) {
				t.Errorf("chains %v, want %v", chains, tc.chains)
			}
			if len(out.Skipped) != tc.skipped {
				t.Errorf("skipped %q, want %d", out.Skipped, tc.skipped)
			}
			if !strings.HasSuffix(text, "COMMIT\n") || strings.Count(text, "COMMIT\n") != 2 {
				t.Errorf("not two committed tables:\n%s", text)
			}
		})
	}
}

// benchServices is n services of m endpoints each, like a large cluster's.
func benchServices(n, m int) []api.Service {
	svcs := make([]api.Service, n)
	for i := range svcs {
		e := make([]api.Endpoint, m)
		for j := range e {
			e[j] = api.Endpoint{IP: fmt.Sprintf("10.%d.%d.%d", 88+i/250, i%250, j+1), Port: 8080}
		}
		svcs[i] = api.Service{
			Namespace: "ns", Name: fmt.Sprintf("svc-%04d", i), Type: "NodePort",
			ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
			Ports:     []api.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, NodePort: int32(30000 + i), Endpoints: e}},
		}
	}
	return svcs
}

func BenchmarkBuildRules(b *testing.B) {
	svcs := benchServices(1000, 10)
	full := buildRules(ruleInput{Services: svcs, RandomFully: true})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buildRules(ruleInput{Services: svcs, RandomFully: true})
		}
		b.ReportMetric(float64(len(full.Text)), "bytes/restore")
	})
	b.Run("one-changed", func(b *testing.B) {
		changed := map[string]bool{"ns/svc-0500": true}
		one := buildRules(ruleInput{Services: svcs, Changed: changed, Existing: full.Chains, RandomFully: true})
		b.ReportAllocs()
		for b.Loop() {
			buildRules(ruleInput{Services: svcs, Changed: changed, Existing: full.Chains, RandomFully: true})
		}
		b.ReportMetric(float64(len(one.Text)), "bytes/restore")
	})
}
