package podman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServiceOptions describe a private `podman system service`.
type ServiceOptions struct {
	// Socket is the path of the unix socket to serve on. Required.
	Socket string
	// Root and RunRoot are Podman's storage and state directories; empty
	// means the host's defaults (so images built on the host are visible).
	Root, RunRoot string
	// ContainersConf is passed as CONTAINERS_CONF. Empty keeps the
	// environment's; see nodeagent/hostsetup/containers.conf.
	ContainersConf string
	// NetworkConfigDir is Podman's --network-config-dir (netavark's
	// network definitions); empty means the default.
	NetworkConfigDir string
	// TmpDir is Podman's --tmpdir (its own state: locks, events, exec
	// sessions). Give each service with its own RunRoot its own TmpDir.
	TmpDir string
	// Netns, when set, runs the service in /run/netns/NAME through nsenter,
	// which switches only the network namespace (`ip netns exec` would
	// remount /sys and hide the cgroup mounts Podman needs).
	Netns string
	// PodmanPath defaults to "podman" from PATH.
	PodmanPath string
	// Logger receives the service's output at debug level; nil discards it.
	Logger *slog.Logger
	// StartTimeout bounds the wait for the socket. Default 30 s.
	StartTimeout time.Duration
}

// Service is a running `podman system service` child process.
type Service struct {
	uri string

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// StartService starts `podman system service --time=0` on opts.Socket and
// returns once the socket answers.
func StartService(ctx context.Context, opts ServiceOptions) (*Service, error) {
	if opts.Socket == "" {
		return nil, errors.New("podman service: no socket path")
	}
	podman := opts.PodmanPath
	if podman == "" {
		podman = "podman"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	uri := "unix://" + opts.Socket
	if Ping(ctx, uri) == nil {
		return nil, fmt.Errorf("podman service: %s is already served by another process", opts.Socket)
	}
	// A stale socket from a crashed run would make the readiness check below
	// race with the new process binding it.
	if err := os.Remove(opts.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("podman service: remove stale socket: %w", err)
	}

	var args []string
	if opts.Root != "" {
		args = append(args, "--root", opts.Root)
	}
	if opts.RunRoot != "" {
		args = append(args, "--runroot", opts.RunRoot)
	}
	if opts.TmpDir != "" {
		args = append(args, "--tmpdir", opts.TmpDir)
	}
	if opts.NetworkConfigDir != "" {
		args = append(args, "--network-config-dir", opts.NetworkConfigDir)
	}
	args = append(args, "system", "service", "--time=0", uri)

	name := podman
	if opts.Netns != "" {
		args = append([]string{"--net=/run/netns/" + opts.Netns, "--", podman}, args...)
		name = "nsenter"
	}
	// Not exec.CommandContext: the service must outlive ctx, which only
	// bounds the start-up; Stop ends it.
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	if opts.ContainersConf != "" {
		cmd.Env = append(cmd.Env, "CONTAINERS_CONF="+opts.ContainersConf)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	out := &logWriter{logger: logger.With("component", "podman-service")}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a terminal's Ctrl-C reaches us, not it, and
	// Stop can shut it down cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("podman service: start %s: %w", name, err)
	}
	s := &Service{uri: uri, cmd: cmd, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()

	startCtx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	for {
		err := Ping(startCtx, uri)
		if err == nil {
			logger.Debug("podman service ready", "socket", opts.Socket, "pid", cmd.Process.Pid)
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("podman service exited before answering on %s: %v (output: %s)", opts.Socket, s.waitErr, out.tail())
		case <-startCtx.Done():
			s.Stop()
			return nil, fmt.Errorf("podman service on %s did not answer: %w (last error: %v; output: %s)", opts.Socket, startCtx.Err(), err, out.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URI is the service's socket as New expects it: unix:///path.
func (s *Service) URI() string { return s.uri }

// Stop ends the service (SIGTERM, SIGKILL after 10 s) and waits for it.
// Containers it started keep running: conmon owns them.
func (s *Service) Stop() error {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	var exitErr *exec.ExitError
	if s.waitErr != nil && !errors.As(s.waitErr, &exitErr) {
		return fmt.Errorf("podman service: %w", s.waitErr)
	}
	return nil
}

// Ping reports whether a Podman service answers on socketURI
// (unix:///path).
func Ping(ctx context.Context, socketURI string) error {
	path, ok := strings.CutPrefix(socketURI, "unix://")
	if !ok {
		return fmt.Errorf("ping %s: only unix:// sockets are supported", socketURI)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", socketURI, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: %s", socketURI, resp.Status)
	}
	if resp.Header.Get("Libpod-API-Version") == "" {
		return fmt.Errorf("ping %s: not a Podman service (no Libpod-API-Version header)", socketURI)
	}
	return nil
}

// logWriter forwards the service's output to a logger line by line and keeps
// the last few KiB for error messages.
type logWriter struct {
	logger *slog.Logger
	mu     sync.Mutex
	last   []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = append(w.last, p...)
	if len(w.last) > 4096 {
		w.last = w.last[len(w.last)-4096:]
	}
	for line := range strings.Lines(string(p)) {
		if line = strings.TrimSpace(line); line != "" {
			w.logger.Debug(line)
		}
	}
	return len(p), nil
}

func (w *logWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.last))
}
