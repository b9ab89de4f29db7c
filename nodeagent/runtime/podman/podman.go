// Package podman implements runtime.Runtime over the Podman REST API, using
// the v5 Go bindings against the Podman 4.3.1 service this project targets.
//
// Every bindings call used here was checked against a 4.3.1 service; where
// the v5 bindings and the 4.3.1 server disagree, the workaround sits next to
// the call with a comment starting "4.3.1:".
package podman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/errorhandling"

	"berth.dev/berth/nodeagent/runtime"
)

// Labels the runtime keeps on app containers so that observed containers can
// be mapped back to the spec without parsing engine names.
const (
	LabelContainer      = "berth.dev/container"       // the spec name
	labelContainerIndex = "berth.dev/container-index" // position in the spec
)

// MinServiceVersion is the oldest Podman API this package is tested against.
const MinServiceVersion = "4.3.1"

// Ulimit is one resource limit set on every app container (the infra
// container gets the service's containers.conf default_ulimits).
type Ulimit struct {
	Name string // as in podman --ulimit: "nofile", "nproc", ...
	Soft uint64
	Hard uint64
}

// ParseUlimit parses podman's "name=soft:hard" (or "name=both") notation.
func ParseUlimit(s string) (Ulimit, error) {
	name, limits, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Ulimit{}, fmt.Errorf("ulimit %q: want name=soft:hard", s)
	}
	softS, hardS, hasHard := strings.Cut(limits, ":")
	if !hasHard {
		hardS = softS
	}
	soft, err := strconv.ParseUint(softS, 10, 64)
	if err != nil {
		return Ulimit{}, fmt.Errorf("ulimit %q: soft limit: %w", s, err)
	}
	hard, err := strconv.ParseUint(hardS, 10, 64)
	if err != nil {
		return Ulimit{}, fmt.Errorf("ulimit %q: hard limit: %w", s, err)
	}
	if soft > hard {
		return Ulimit{}, fmt.Errorf("ulimit %q: soft limit above hard limit", s)
	}
	return Ulimit{Name: name, Soft: soft, Hard: hard}, nil
}

// DefaultUlimits stay below the hard limits of this project's hosts, which
// lack CAP_SYS_RESOURCE: Podman's own defaults ask for more and runc then
// fails with "error setting rlimits ... operation not permitted".
func DefaultUlimits() []Ulimit {
	return []Ulimit{{Name: "nofile", Soft: 1024, Hard: 1024}, {Name: "nproc", Soft: 4096, Hard: 4096}}
}

// Options tune the runtime. The zero value is usable.
type Options struct {
	// Network the pods join. Default "podman", the default bridge, whose
	// addresses are routable from the host.
	Network string
	// Ulimits for app containers. Default DefaultUlimits().
	Ulimits []Ulimit
}

func (o Options) withDefaults() Options {
	if o.Network == "" {
		o.Network = "podman"
	}
	if o.Ulimits == nil {
		o.Ulimits = DefaultUlimits()
	}
	return o
}

// Runtime talks to one Podman API service.
type Runtime struct {
	conn    context.Context // carries the bindings connection; only its values are used
	logger  *slog.Logger
	opts    Options
	version string

	bridgeOnce sync.Mutex // guards bridge
	bridge     string
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to the Podman service at socketURI (unix:///path/podman.sock)
// and checks that it speaks at least the 4.x libpod API.
func New(ctx context.Context, socketURI string, logger *slog.Logger, opts Options) (*Runtime, error) {
	conn, err := bindings.NewConnection(ctx, socketURI)
	if err != nil {
		return nil, fmt.Errorf("connect to podman at %s: %w", socketURI, err)
	}
	// NewConnection already refuses services older than the bindings'
	// minimal API (4.0.0); the version is kept for logs and error messages.
	v := bindings.ServiceVersion(conn)
	r := &Runtime{conn: conn, logger: logger, opts: opts.withDefaults(), version: v.String()}
	logger.Debug("connected to podman", "socket", socketURI, "apiVersion", r.version)
	return r, nil
}

// ServiceVersion is the libpod API version the service announced.
func (r *Runtime) ServiceVersion() string { return r.version }

// callCtx gives a bindings call the caller's deadline and cancellation and
// the connection's values. The bindings find their client in the context, so
// without this every call would inherit the lifetime of New's context.
func (r *Runtime) callCtx(ctx context.Context) context.Context {
	return connCtx{Context: ctx, conn: r.conn}
}

type connCtx struct {
	context.Context
	conn context.Context
}

func (c connCtx) Value(key any) any {
	if v := c.conn.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

// statusCode returns the HTTP status of a bindings error, or 0.
func statusCode(err error) int {
	var em *errorhandling.ErrorModel
	if errors.As(err, &em) {
		return em.Code()
	}
	var pc *errorhandling.PodConflictErrorModel
	if errors.As(err, &pc) {
		return pc.Code()
	}
	return 0
}

func isNotFound(err error) bool { return statusCode(err) == 404 }

// wrap adds context to err and marks "no such pod/container" answers with
// runtime.ErrNotFound.
func wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if isNotFound(err) {
		return fmt.Errorf("%s: %w: %w", msg, runtime.ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}
