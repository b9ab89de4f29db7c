// Package probe runs Kubernetes liveness, readiness and startup probes
// (httpGet, tcpSocket, exec) against containers and keeps their results the
// way the kubelet does: thresholds of consecutive results, initial delays,
// and liveness/readiness held back until the startup probe succeeds.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Kind says which of a container's probes a result belongs to.
type Kind string

const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Result is the outcome of one probe, or a worker's current verdict.
type Result int

const (
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	default:
		return "Unknown"
	}
}

// Execer runs a command inside a running container; runtime.Runtime
// satisfies it.
type Execer interface {
	Exec(ctx context.Context, containerID string, cmd []string) (exitCode int, output []byte, err error)
}

// Target is what a probe is aimed at: one running container of a pod.
type Target struct {
	PodIP       string
	ContainerID string
	// Ports maps the container's named ports to numbers, for probes that
	// name a port rather than number it.
	Ports map[string]int32
}

// Prober performs single probes. The zero value is not usable; build one
// with NewProber.
type Prober struct {
	exec   Execer
	client *http.Client
}

// maxBody bounds how much of a response or command output a probe keeps.
const maxBody = 10 << 10

// NewProber returns a Prober that runs exec probes through exec.
func NewProber(exec Execer) *Prober {
	transport := &http.Transport{
		// Like the kubelet: probes check liveness, not certificates.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes do not verify peers, as in Kubernetes
		DisableKeepAlives: true,
	}
	return &Prober{
		exec: exec,
		client: &http.Client{
			Transport: transport,
			// Redirects are answered by the probed server itself; a 3xx is
			// already a success, and following it could leave the pod.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Probe runs p once against t. It returns the result and, for failures, a
// message in the kubelet's wording. An error means the probe could not be
// run at all (a prober error); the kubelet ignores such results.
func (pr *Prober) Probe(ctx context.Context, p *corev1.Probe, t Target) (Result, string, error) {
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		return pr.probeHTTP(ctx, p.HTTPGet, t)
	case p.TCPSocket != nil:
		return pr.probeTCP(ctx, p.TCPSocket, t)
	case p.Exec != nil:
		return pr.probeExec(ctx, p.Exec, t, timeout)
	case p.GRPC != nil:
		return Unknown, "", errors.New("grpc probes are not supported")
	default:
		return Unknown, "", errors.New("probe has no handler")
	}
}

func (pr *Prober) probeHTTP(ctx context.Context, h *corev1.HTTPGetAction, t Target) (Result, string, error) {
	port, err := ResolvePort(h.Port, t.Ports)
	if err != nil {
		return Unknown, "", err
	}
	host := h.Host
	if host == "" {
		host = t.PodIP
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if ref, err := url.Parse(path); err == nil {
		u.Path, u.RawQuery = ref.Path, ref.RawQuery
	} else {
		return Unknown, "", fmt.Errorf("http probe path %q: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Unknown, "", fmt.Errorf("http probe request: %w", err)
	}
	req.Header.Set("User-Agent", "berth-probe")
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := pr.client.Do(req)
	if err != nil {
		// Connection refused, timeouts and the like are failures, not
		// prober errors: the container is not answering.
		return Failure, err.Error(), nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Success, "", nil
	}
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode), nil
}

func (pr *Prober) probeTCP(ctx context.Context, s *corev1.TCPSocketAction, t Target) (Result, string, error) {
	port, err := ResolvePort(s.Port, t.Ports)
	if err != nil {
		return Unknown, "", err
	}
	host := s.Host
	if host == "" {
		host = t.PodIP
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return Failure, err.Error(), nil
	}
	conn.Close()
	return Success, "", nil
}

func (pr *Prober) probeExec(ctx context.Context, e *corev1.ExecAction, t Target, timeout time.Duration) (Result, string, error) {
	if pr.exec == nil {
		return Unknown, "", errors.New("exec probes need a runtime")
	}
	code, out, err := pr.exec.Exec(ctx, t.ContainerID, e.Command)
	if ctx.Err() != nil {
		return Failure, fmt.Sprintf("command %q timed out after %s", strings.Join(e.Command, " "), timeout), nil
	}
	if err != nil {
		return Unknown, "", fmt.Errorf("exec probe: %w", err)
	}
	if len(out) > maxBody {
		out = out[:maxBody]
	}
	if code != 0 {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = fmt.Sprintf("command %q exited with %d", strings.Join(e.Command, " "), code)
		}
		return Failure, msg, nil
	}
	return Success, "", nil
}

// ResolvePort turns a probe's port, a number or the name of one of the
// container's ports, into a number.
func ResolvePort(p intstr.IntOrString, named map[string]int32) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	if n, ok := named[p.StrVal]; ok {
		return int(n), nil
	}
	return 0, fmt.Errorf("port %q is not a port of the container", p.StrVal)
}
