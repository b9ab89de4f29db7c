package netroute

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"berth.dev/berth/api"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestWanted(t *testing.T) {
	self := api.NodeRoute{Name: "n1", Address: "192.168.1.11", PodSubnet: "10.244.1.0/24"}
	n2 := api.NodeRoute{Name: "n2", Address: "192.168.1.12", PodSubnet: "10.244.2.0/24"}
	n3 := api.NodeRoute{Name: "n3", Address: "192.168.1.13", PodSubnet: "10.244.3.0/24"}
	for _, tc := range []struct {
		name     string
		nodes    []api.NodeRoute
		want     map[netip.Prefix]netip.Addr
		problems []string // substrings, one per expected problem
	}{
		{name: "no nodes", want: map[netip.Prefix]netip.Addr{}},
		{name: "only self", nodes: []api.NodeRoute{self}, want: map[netip.Prefix]netip.Addr{}},
		{
			name:  "others routed, self skipped",
			nodes: []api.NodeRoute{n3, self, n2},
			want:  map[netip.Prefix]netip.Addr{pfx("10.244.2.0/24"): addr("192.168.1.12"), pfx("10.244.3.0/24"): addr("192.168.1.13")},
		},
		{
			name: "empty and invalid values",
			nodes: []api.NodeRoute{self, n2,
				{Name: "a", Address: "192.168.1.20", PodSubnet: ""},
				{Name: "b", Address: "", PodSubnet: "10.244.5.0/24"},
				{Name: "c", Address: "192.168.1.22", PodSubnet: "10.244.6.1/24"},
				{Name: "d", Address: "192.168.1.23", PodSubnet: "fd00:1::/64"},
				{Name: "e", Address: "fe80::1", PodSubnet: "10.244.8.0/24"},
				{Name: "f", Address: "127.0.0.1", PodSubnet: "10.244.9.0/24"},
				{Name: "g", Address: "192.168.1.26", PodSubnet: "0.0.0.0/0"},
				{Name: "h", Address: "0.0.0.0", PodSubnet: "10.244.11.0/24"},
				{Name: "i", Address: "host-i", PodSubnet: "10.244.12.0/24"},
			},
			want: map[netip.Prefix]netip.Addr{pfx("10.244.2.0/24"): addr("192.168.1.12")},
			problems: []string{`node a: pod subnet ""`, `node b: address ""`, "node c: pod subnet 10.244.6.1/24 has host bits set",
				"node d: pod subnet fd00:1::/64: only IPv4", "node e: address fe80::1: only IPv4", "node f: address 127.0.0.1 is not",
				"node g: pod subnet 0.0.0.0/0 would be a default route", "node h: address 0.0.0.0 is not", `node i: address "host-i"`},
		},
		{
			name:     "overlap with own subnet refused",
			nodes:    []api.NodeRoute{self, n2, {Name: "big", Address: "192.168.1.30", PodSubnet: "10.244.0.0/16"}},
			want:     map[netip.Prefix]netip.Addr{},
			problems: []string{"node big: pod subnet 10.244.0.0/16 overlaps this node's 10.244.1.0/24", "nodes n2 and big: pod subnets"},
		},
		{
			name:     "two others claiming one subnet: both refused",
			nodes:    []api.NodeRoute{self, n2, n3, {Name: "n4", Address: "192.168.1.14", PodSubnet: "10.244.3.0/24"}},
			want:     map[netip.Prefix]netip.Addr{pfx("10.244.2.0/24"): addr("192.168.1.12")},
			problems: []string{"nodes n3 and n4: pod subnets 10.244.3.0/24 and 10.244.3.0/24 overlap"},
		},
		{
			name:  "self's invalid subnet only disables the overlap check",
			nodes: []api.NodeRoute{{Name: "n1", Address: "192.168.1.11", PodSubnet: "bogus"}, n2},
			want:  map[netip.Prefix]netip.Addr{pfx("10.244.2.0/24"): addr("192.168.1.12")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := wanted("n1", tc.nodes)
			if !mapsEqual(got, tc.want) {
				t.Errorf("routes = %v, want %v", got, tc.want)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems = %q, want %d matching %q", problems, len(tc.problems), tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.Contains(problems[i], p) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], p)
				}
			}
		})
	}
}

func mapsEqual(a, b map[netip.Prefix]netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestDiff(t *testing.T) {
	ours := func(dst, via string) route { return route{Dst: pfx(dst), Via: addr(via), Proto: Protocol} }
	other := func(dst, via string, proto int) route {
		r := route{Dst: pfx(dst), Proto: proto}
		if via != "" {
			r.Via = addr(via)
		}
		return r
	}
	want := map[netip.Prefix]netip.Addr{pfx("10.244.2.0/24"): addr("192.168.1.12"), pfx("10.244.3.0/24"): addr("192.168.1.13")}
	lan := other("192.168.1.0/24", "", 2)
	dflt := other("0.0.0.0/0", "192.168.1.1", 3)
	for _, tc := range []struct {
		name     string
		want     map[netip.Prefix]netip.Addr
		table    []route
		changes  []string
		problems int
	}{
		{name: "empty table", want: want, table: []route{lan, dflt},
			changes: []string{"add 10.244.2.0/24 via 192.168.1.12", "add 10.244.3.0/24 via 192.168.1.13"}},
		{name: "in place: nothing to do", want: want,
			table: []route{lan, dflt, ours("10.244.3.0/24", "192.168.1.13"), ours("10.244.2.0/24", "192.168.1.12")}},
		{name: "node gone", want: map[netip.Prefix]netip.Addr{pfx("10.244.2.0/24"): addr("192.168.1.12")},
			table:   []route{lan, ours("10.244.2.0/24", "192.168.1.12"), ours("10.244.3.0/24", "192.168.1.13")},
			changes: []string{"del 10.244.3.0/24 via 192.168.1.13"}},
		{name: "no nodes: all ours go, nothing else", want: map[netip.Prefix]netip.Addr{},
			table:   []route{lan, dflt, other("10.9.0.0/16", "192.168.1.1", 4), ours("10.244.2.0/24", "192.168.1.12")},
			changes: []string{"del 10.244.2.0/24 via 192.168.1.12"}},
		{name: "address changed", want: want,
			table:   []route{ours("10.244.2.0/24", "192.168.1.99"), ours("10.244.3.0/24", "192.168.1.13")},
			changes: []string{"replace 10.244.2.0/24 via 192.168.1.12"}},
		{name: "someone else's route with the same gateway is enough", want: want,
			table:   []route{other("10.244.2.0/24", "192.168.1.12", 3)},
			changes: []string{"add 10.244.3.0/24 via 192.168.1.13"}},
		{name: "someone else's route elsewhere is left and reported", want: want,
			table:    []route{other("10.244.2.0/24", "192.168.1.50", 4), other("10.244.3.0/24", "", 2)},
			problems: 2},
		{name: "ours beside someone else's: ours kept up to date", want: want,
			table: []route{other("10.244.2.0/24", "192.168.1.50", 4), ours("10.244.2.0/24", "192.168.1.99"),
				ours("10.244.3.0/24", "192.168.1.13")},
			changes: []string{"replace 10.244.2.0/24 via 192.168.1.12"}},
		{name: "duplicates of ours rebuilt", want: want,
			table: []route{ours("10.244.2.0/24", "192.168.1.12"), ours("10.244.2.0/24", "192.168.1.77"),
				ours("10.244.3.0/24", "192.168.1.13")},
			changes: []string{"del 10.244.2.0/24 via 192.168.1.12", "del 10.244.2.0/24 via 192.168.1.77", "add 10.244.2.0/24 via 192.168.1.12"}},
		{name: "a covering route of another owner does not block a more specific one", want: want,
			table:   []route{other("10.244.0.0/16", "192.168.1.1", 4)},
			changes: []string{"add 10.244.2.0/24 via 192.168.1.12", "add 10.244.3.0/24 via 192.168.1.13"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes, problems := diff(tc.want, tc.table)
			var got []string
			for _, c := range changes {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tc.changes) {
				t.Errorf("changes = %q, want %q", got, tc.changes)
			}
			if len(problems) != tc.problems {
				t.Errorf("problems = %q, want %d", problems, tc.problems)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	out := `[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
{"dst":"192.0.2.0/24","dev":"eth0","protocol":"2","scope":"253","prefsrc":"192.0.2.2","flags":[]},
{"dst":"10.244.2.0/24","gateway":"192.0.2.12","dev":"eth0","protocol":"179","flags":[]},
{"type":"blackhole","dst":"10.1.2.3","protocol":"4","flags":[]}]`
	got, err := parseRoutes([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []route{
		{Dst: pfx("0.0.0.0/0"), Via: addr("192.0.2.1"), Proto: 3},
		{Dst: pfx("192.0.2.0/24"), Proto: 2},
		{Dst: pfx("10.244.2.0/24"), Via: addr("192.0.2.12"), Proto: Protocol},
		{Dst: pfx("10.1.2.3/32"), Proto: 4},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseRoutes =\n%v\nwant\n%v", got, want)
	}
	if got, err := parseRoutes([]byte("\n")); err != nil || len(got) != 0 {
		t.Errorf("empty output: %v, %v", got, err)
	}
	if _, err := parseRoutes([]byte(`[{"dst":"10.0.0.0/8","protocol":"kernel"}]`)); err == nil {
		t.Error("a protocol name (ip run without -N) was accepted")
	}
}

func TestChooseAddress(t *testing.T) {
	podNet := pfx("10.88.0.0/16")
	for _, tc := range []struct {
		name       string
		viaDefault string
		candidates []string
		exclude    netip.Prefix
		want       string // "" = error
	}{
		{"default route source wins", "192.168.1.11", []string{"10.88.0.1", "172.16.0.5"}, podNet, "192.168.1.11"},
		{"no default route: first usable interface address", "", []string{"127.0.0.1", "fe80::1", "169.254.3.3", "10.88.0.1", "172.16.0.5", "172.16.1.5"}, podNet, "172.16.0.5"},
		{"default source inside the pod subnet is not used", "10.88.0.1", []string{"10.88.0.1", "172.16.0.5"}, podNet, "172.16.0.5"},
		{"no exclusion known", "", []string{"10.88.0.1"}, netip.Prefix{}, "10.88.0.1"},
		{"nothing usable", "", []string{"127.0.0.1", "::1", "10.88.0.1"}, podNet, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var def netip.Addr
			if tc.viaDefault != "" {
				def = addr(tc.viaDefault)
			}
			var cands []netip.Addr
			for _, c := range tc.candidates {
				cands = append(cands, addr(c))
			}
			got, err := chooseAddress(def, cands, tc.exclude)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("chose %s, want an error", got)
				}
				return
			}
			if err != nil || got != addr(tc.want) {
				t.Fatalf("chooseAddress = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
