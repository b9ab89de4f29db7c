package podman

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	dockercontainer "github.com/docker/docker/api/types/container"
)

// maxExecOutput bounds what Exec keeps of a command's output, like the
// kubelet's probe output limit.
const maxExecOutput = 10 << 10

// StartContainer starts a created or exited container.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	if err := containers.Start(r.callCtx(ctx), id, nil); err != nil {
		return wrap(err, "start container %s", id)
	}
	return nil
}

// StopContainer sends the container's stop signal, then SIGKILL after grace.
// Stopping a container that is not running is not an error.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	opts := new(containers.StopOptions).WithTimeout(uint(graceSeconds(grace)))
	if err := containers.Stop(r.callCtx(ctx), id, opts); err != nil {
		return wrap(err, "stop container %s", id)
	}
	return nil
}

// Exec runs cmd in a running container and returns its exit code and up to
// 10 KiB of its combined output.
func (r *Runtime) Exec(ctx context.Context, containerID string, cmd []string) (int, []byte, error) {
	cctx := r.callCtx(ctx)
	session, err := containers.ExecCreate(cctx, containerID, &handlers.ExecCreateConfig{
		ExecOptions: dockercontainer.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true},
	})
	if err != nil {
		return 0, nil, wrap(err, "exec in %s", containerID)
	}
	// 4.3.1 has no exec remove endpoint (added in 4.8, and ExecRemove
	// refuses older services); the service drops finished sessions itself.

	out := &limitedBuffer{limit: maxExecOutput}
	var w io.Writer = out
	attach := new(containers.ExecStartAndAttachOptions).
		WithOutputStream(w).WithErrorStream(w).WithAttachOutput(true).WithAttachError(true)
	actx, closeConns, err := r.privateConnCtx(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("exec in %s: %w", containerID, err)
	}
	err = containers.ExecStartAndAttach(actx, session, attach)
	closeConns()
	if ctx.Err() != nil {
		return 0, out.Bytes(), fmt.Errorf("exec in %s: %w", containerID, ctx.Err())
	}
	if err != nil {
		return 0, out.Bytes(), wrap(err, "exec in %s", containerID)
	}

	// The attach stream can end a moment before the session is marked
	// finished; poll briefly for the exit code.
	for {
		info, err := containers.ExecInspect(cctx, session, nil)
		if err != nil {
			return 0, out.Bytes(), wrap(err, "exec in %s: inspect session", containerID)
		}
		if !info.Running {
			return info.ExitCode, out.Bytes(), nil
		}
		select {
		case <-ctx.Done():
			return 0, out.Bytes(), fmt.Errorf("exec in %s: %w", containerID, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// limitedBuffer keeps the first limit bytes written to it and drops the rest
// while still reporting success, so a chatty command cannot fail an exec.
type limitedBuffer struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// Logs returns up to tail lines (all when tail < 0) of the container's
// stdout and stderr, interleaved as written.
func (r *Runtime) Logs(ctx context.Context, containerID string, tail int) ([]byte, error) {
	opts := new(containers.LogOptions).WithStdout(true).WithStderr(true).WithFollow(false)
	if tail >= 0 {
		opts = opts.WithTail(strconv.Itoa(tail))
	}
	// One channel for both streams keeps their relative order.
	lines := make(chan string, 64)
	errc := make(chan error, 1)
	go func() {
		errc <- containers.Logs(r.callCtx(ctx), containerID, opts, lines, lines)
		close(lines)
	}()
	var b strings.Builder
	for line := range lines {
		b.WriteString(line)
	}
	if err := <-errc; err != nil {
		return nil, wrap(err, "logs of %s", containerID)
	}
	return []byte(b.String()), nil
}

// privateConnCtx returns a context for one ExecStartAndAttach call, with a
// private copy of the bindings connection, and a function closing every
// connection that copy opened. Two reasons, both in the v5 bindings:
//   - ExecStartAndAttach replaces the connection's http.Transport with a new
//     one wrapping the old dialer (its own comment calls this "one giant race
//     condition"): on a shared connection that races with concurrent calls
//     and stacks one more wrapper per exec, forever.
//   - once upgraded, the attach stream ignores the context, so an exec that
//     never ends (a hung probe) would block until the process exits. Closing
//     the private connections when ctx ends unblocks it.
func (r *Runtime) privateConnCtx(ctx context.Context) (context.Context, func(), error) {
	shared, err := bindings.GetClient(r.conn)
	if err != nil {
		return nil, nil, err
	}
	if shared.URI == nil || shared.URI.Scheme != "unix" {
		return nil, nil, fmt.Errorf("exec needs a unix:// connection, have %v", shared.URI)
	}
	tracker := &connTracker{path: shared.URI.Path}
	private := *shared // copies the unexported fields too
	private.Client = &http.Client{Transport: &http.Transport{DialContext: tracker.dial, DisableCompression: true}}
	stop := context.AfterFunc(ctx, tracker.closeAll)
	closeAll := func() {
		stop()
		tracker.closeAll()
	}
	return privateConnCtx{Context: ctx, conn: r.conn, private: &private}, closeAll, nil
}

// privateConnCtx is connCtx with the bindings connection swapped. The
// bindings keep it under an unexported key, so it is recognised by type.
type privateConnCtx struct {
	context.Context
	conn    context.Context
	private *bindings.Connection
}

func (c privateConnCtx) Value(key any) any {
	if v := c.conn.Value(key); v != nil {
		if _, ok := v.(*bindings.Connection); ok {
			return c.private
		}
		return v
	}
	return c.Context.Value(key)
}

// connTracker dials the service's unix socket and remembers every
// connection so they can all be closed at once.
type connTracker struct {
	path   string
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func (t *connTracker) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", t.path)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	t.conns = append(t.conns, c)
	return c, nil
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = nil
}
