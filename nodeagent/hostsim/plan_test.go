package hostsim

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPickPlan(t *testing.T) {
	free, err := pickPlan("bs1a", nil)
	if err != nil {
		t.Fatal(err)
	}
	all := func() []netip.Prefix {
		var ps []netip.Prefix
		for x := firstOctet; x < firstOctet+octetRange; x++ {
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(x), 0, 0}), 16))
		}
		return ps
	}()
	next := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, free.network.Addr().As4()[1] + 1, 0, 0}), 16)
	if free.network.Addr().As4()[1] == firstOctet+octetRange-1 {
		next = netip.MustParsePrefix("10.100.0.0/16")
	}

	tests := []struct {
		name    string
		inUse   []netip.Prefix
		want    netip.Prefix
		wantErr error
	}{
		{name: "nothing in use", want: free.network},
		{name: "default route is ignored", inUse: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, want: free.network},
		{name: "unrelated networks", inUse: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16"), netip.MustParsePrefix("192.0.2.0/24")}, want: free.network},
		{name: "a /24 inside the hashed /16 moves on", inUse: []netip.Prefix{netip.PrefixFrom(free.network.Addr(), 24)}, want: next},
		{name: "a single address inside moves on", inUse: []netip.Prefix{netip.PrefixFrom(free.bridge.Addr(), 32)}, want: next},
		{name: "a covering /8 leaves nothing", inUse: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, wantErr: errNoFreeNetwork},
		{name: "every candidate taken", inUse: all, wantErr: errNoFreeNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pickPlan("bs1a", tt.inUse)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if p.network != tt.want {
				t.Errorf("network = %s, want %s", p.network, tt.want)
			}
			if !p.network.Contains(p.bridge.Addr()) || p.bridge.Bits() != 24 {
				t.Errorf("bridge %s not a /24 address in %s", p.bridge, p.network)
			}
		})
	}
}

func TestPlanAddresses(t *testing.T) {
	p := plan{network: netip.MustParsePrefix("10.150.0.0/16"), bridge: netip.MustParsePrefix("10.150.0.1/24")}
	tests := []struct {
		node      int
		addr, pod string
	}{
		{1, "10.150.0.11/24", "10.150.1.0/24"},
		{3, "10.150.0.13/24", "10.150.3.0/24"},
		{MaxNodes, "10.150.0.254/24", "10.150.244.0/24"},
	}
	for _, tt := range tests {
		if got := p.nodeAddr(tt.node).String(); got != tt.addr {
			t.Errorf("nodeAddr(%d) = %s, want %s", tt.node, got, tt.addr)
		}
		if got := p.podSubnet(tt.node).String(); got != tt.pod {
			t.Errorf("podSubnet(%d) = %s, want %s", tt.node, got, tt.pod)
		}
		if p.podSubnet(tt.node).Overlaps(p.bridge.Masked()) {
			t.Errorf("pod subnet of node %d overlaps the bridge network", tt.node)
		}
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"bs1a", true},
		{"demo", true},
		{"a", true},
		{"abcdefgh", true},
		{"abcdefghi", false}, // "<name>-br" and "<name>-244" must fit in 15 bytes
		{"", false},
		{"1abc", false},
		{"Demo", false},
		{"de-mo", false},
	}
	for _, tt := range tests {
		if err := validateName(tt.name); (err == nil) != tt.ok {
			t.Errorf("validateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestSplitTag(t *testing.T) {
	tests := []struct{ ref, repo, tag string }{
		{"localhost/berth-hello:v1", "localhost/berth-hello", "v1"},
		{"localhost:5000/app", "localhost:5000/app", "latest"},
		{"localhost:5000/app:2", "localhost:5000/app", "2"},
		{"app", "app", "latest"},
	}
	for _, tt := range tests {
		repo, tag := splitTag(tt.ref)
		if repo != tt.repo || tag != tt.tag {
			t.Errorf("splitTag(%q) = %q, %q; want %q, %q", tt.ref, repo, tag, tt.repo, tt.tag)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/tmp/a", "/tmp/a"},
		{`/tmp/with\040space`, "/tmp/with space"},
		{`/tmp/tab\011x`, "/tmp/tab\tx"},
		{`/tmp/trailing\`, `/tmp/trailing\`},
	}
	for _, tt := range tests {
		if got := unescapeMountPath(tt.in); got != tt.want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
