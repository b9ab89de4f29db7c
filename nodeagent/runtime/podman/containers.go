package podman

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containers/podman/v5/pkg/api/handlers"
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
	if err := containers.ExecStartAndAttach(cctx, session, attach); err != nil {
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
