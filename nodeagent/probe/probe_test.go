package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// splitHostPort returns a test server's loopback address and port.
func splitHostPort(t *testing.T, addr string) (string, int32) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return host, int32(n)
}

func TestHTTPProbe(t *testing.T) {
	var gotHeader, gotHost string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeader, gotHost = r.Header.Get("X-Probe"), r.Host
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "http://192.0.2.1/elsewhere", http.StatusFound)
		case "/query":
			if r.URL.RawQuery != "a=1" {
				w.WriteHeader(http.StatusBadRequest)
			}
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	ip, port := splitHostPort(t, srv.Listener.Addr().String())
	target := Target{PodIP: ip, Ports: map[string]int32{"http": port}}

	tests := []struct {
		name    string
		action  corev1.HTTPGetAction
		want    Result
		wantMsg string
	}{
		{name: "2xx", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(port)}, want: Success},
		{name: "named port", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("http")}, want: Success},
		{name: "3xx is success and not followed", action: corev1.HTTPGetAction{Path: "/redirect", Port: intstr.FromInt32(port)}, want: Success},
		{name: "query kept", action: corev1.HTTPGetAction{Path: "/query?a=1", Port: intstr.FromInt32(port)}, want: Success},
		{name: "500", action: corev1.HTTPGetAction{Path: "/fail", Port: intstr.FromInt32(port)}, want: Failure, wantMsg: "HTTP probe failed with statuscode: 500"},
		{name: "explicit scheme", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP}, want: Success},
	}
	p := NewProber(nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg, err := p.Probe(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &tc.action}}, target)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if got != tc.want || msg != tc.wantMsg {
				t.Errorf("Probe = %v %q, want %v %q", got, msg, tc.want, tc.wantMsg)
			}
		})
	}

	t.Run("headers and host", func(t *testing.T) {
		action := &corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(port), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "example.test"}}}
		if r, _, err := p.Probe(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: action}}, target); err != nil || r != Success {
			t.Fatalf("Probe = %v, %v", r, err)
		}
		if gotHeader != "yes" || gotHost != "example.test" {
			t.Errorf("server saw X-Probe=%q Host=%q", gotHeader, gotHost)
		}
	})
	t.Run("unknown named port is a prober error", func(t *testing.T) {
		action := &corev1.HTTPGetAction{Port: intstr.FromString("nope")}
		if _, _, err := p.Probe(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: action}}, target); err == nil {
			t.Fatal("want an error for an unknown port name")
		}
	})
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ip, port := splitHostPort(t, srv.Listener.Addr().String())
	action := &corev1.HTTPGetAction{Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTPS}
	r, msg, err := NewProber(nil).Probe(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: action}}, Target{PodIP: ip})
	if err != nil || r != Success {
		t.Fatalf("Probe = %v %q %v, want success against a self-signed server", r, msg, err)
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ip, port := splitHostPort(t, ln.Addr().String())
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
	p := NewProber(nil)
	if r, msg, err := p.Probe(context.Background(), probe, Target{PodIP: ip}); err != nil || r != Success {
		t.Fatalf("open port: %v %q %v", r, msg, err)
	}
	ln.Close()
	r, msg, err := p.Probe(context.Background(), probe, Target{PodIP: ip})
	if err != nil || r != Failure || !strings.Contains(msg, "refused") {
		t.Fatalf("closed port: %v %q %v, want a refused failure", r, msg, err)
	}
}

type fakeExec struct {
	code int
	out  string
	err  error
	got  []string
	id   string
}

func (f *fakeExec) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	f.got, f.id = cmd, id
	return f.code, []byte(f.out), f.err
}

func TestExecProbe(t *testing.T) {
	tests := []struct {
		name    string
		exec    fakeExec
		want    Result
		wantMsg string
		wantErr bool
	}{
		{name: "exit 0", exec: fakeExec{code: 0}, want: Success},
		{name: "exit 1 with output", exec: fakeExec{code: 1, out: "not healthy\n"}, want: Failure, wantMsg: "not healthy"},
		{name: "exit 2 silent", exec: fakeExec{code: 2}, want: Failure, wantMsg: `command "check /x" exited with 2`},
		{name: "runtime error", exec: fakeExec{err: errors.New("container not running")}, want: Unknown, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check", "/x"}}}}
			r, msg, err := NewProber(&tc.exec).Probe(context.Background(), probe, Target{ContainerID: "c1"})
			if (err != nil) != tc.wantErr || r != tc.want || msg != tc.wantMsg {
				t.Fatalf("Probe = %v %q %v, want %v %q err=%v", r, msg, err, tc.want, tc.wantMsg, tc.wantErr)
			}
			if tc.exec.id != "c1" || strings.Join(tc.exec.got, " ") != "check /x" {
				t.Errorf("exec ran %v in %q", tc.exec.got, tc.exec.id)
			}
		})
	}
}
