// Package fake is an in-memory runtime.Runtime for scale benchmarks and pure
// unit tests. Nothing runs: a started container is "running" until it is
// stopped, removed, or told to exit with Exit. What a container's binary
// would do (exit at once, answer an exec, ignore SIGTERM) is decided by a
// pluggable Program, so tests can emulate a particular image.
package fake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/nodeagent/runtime"
)

// Program stands in for the binary inside a fake container.
type Program interface {
	// Start is called when the container starts. When exits is true the
	// container exits at once with exitCode. output is appended to its log.
	Start(c runtime.ContainerSpec) (exits bool, exitCode int, output []byte)
	// Stop returns the exit code after a stop: 0 for a graceful exit,
	// 137 for a process killed after the grace period.
	Stop(c runtime.ContainerSpec) (exitCode int)
	// Exec runs cmd inside the running container.
	Exec(c runtime.ContainerSpec, cmd []string) (exitCode int, output []byte)
}

// idleProgram runs until stopped, exits 0 on SIGTERM, and answers every exec
// with success: a healthy server with passing exec probes.
type idleProgram struct{}

func (idleProgram) Start(runtime.ContainerSpec) (bool, int, []byte)    { return false, 0, nil }
func (idleProgram) Stop(runtime.ContainerSpec) int                     { return 0 }
func (idleProgram) Exec(runtime.ContainerSpec, []string) (int, []byte) { return 0, nil }

// Options configure a fake runtime. The zero value is usable.
type Options struct {
	// Subnet is x in the pod addresses 10.244.x.2 ... 10.244.x.254, so fakes
	// simulating different nodes hand out distinct addresses.
	Subnet uint8
	// Program decides what containers do. Default: run until stopped.
	Program Program
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Runtime is the in-memory runtime. Safe for concurrent use.
type Runtime struct {
	opts Options

	mu         sync.Mutex
	nextID     uint64
	pods       map[string]*pod       // by name
	containers map[string]*container // by ID
	ipsInUse   map[uint8]bool        // last octets
}

type pod struct {
	id         string
	spec       runtime.PodSpec
	ip         string
	hostIP     uint8
	created    time.Time
	containers []*container
}

type container struct {
	id   string
	pod  *pod
	spec runtime.ContainerSpec
	obs  runtime.Container
	log  []byte
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns an empty fake runtime.
func New(opts Options) *Runtime {
	if opts.Program == nil {
		opts.Program = idleProgram{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Runtime{
		opts:       opts,
		pods:       map[string]*pod{},
		containers: map[string]*container{},
		ipsInUse:   map[uint8]bool{},
	}
}

func (r *Runtime) newID() string {
	r.nextID++
	return fmt.Sprintf("%012x%052x", r.opts.Subnet, r.nextID)
}

// ListPods returns every pod whose labels include all of selector, by name.
func (r *Runtime) ListPods(ctx context.Context, selector map[string]string) ([]runtime.Pod, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runtime.Pod
	for _, p := range r.pods {
		if runtime.Matches(p.spec.Labels, selector) {
			out = append(out, p.observe())
		}
	}
	slices.SortFunc(out, func(a, b runtime.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// InspectPod returns one pod by name or ID.
func (r *Runtime) InspectPod(ctx context.Context, name string) (runtime.Pod, error) {
	if err := ctx.Err(); err != nil {
		return runtime.Pod{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.lookupPod(name)
	if err != nil {
		return runtime.Pod{}, err
	}
	return p.observe(), nil
}

func (r *Runtime) lookupPod(nameOrID string) (*pod, error) {
	if p, ok := r.pods[nameOrID]; ok {
		return p, nil
	}
	for _, p := range r.pods {
		if p.id == nameOrID {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pod %s: %w", nameOrID, runtime.ErrNotFound)
}

func (r *Runtime) lookupContainer(id string) (*container, error) {
	if c, ok := r.containers[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
}

func (p *pod) observe() runtime.Pod {
	out := runtime.Pod{
		ID:         p.id,
		Name:       p.spec.Name,
		Labels:     maps.Clone(p.spec.Labels),
		IP:         p.ip,
		Created:    p.created,
		Containers: make([]runtime.Container, 0, len(p.containers)),
	}
	for _, c := range p.containers {
		out.Containers = append(out.Containers, c.obs)
	}
	return out
}

// CreatePod creates the pod with an address and its containers, not started.
func (r *Runtime) CreatePod(ctx context.Context, spec runtime.PodSpec) (runtime.Pod, error) {
	if err := ctx.Err(); err != nil {
		return runtime.Pod{}, err
	}
	if spec.Name == "" {
		return runtime.Pod{}, fmt.Errorf("create pod: empty name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pods[spec.Name]; ok {
		return runtime.Pod{}, fmt.Errorf("create pod %s: a pod with that name exists", spec.Name)
	}
	host, ok := r.allocateIP()
	if !ok {
		return runtime.Pod{}, fmt.Errorf("create pod %s: no free address in 10.244.%d.0/24", spec.Name, r.opts.Subnet)
	}
	p := &pod{
		id:      r.newID(),
		spec:    clonePodSpec(spec),
		ip:      fmt.Sprintf("10.244.%d.%d", r.opts.Subnet, host),
		hostIP:  host,
		created: r.opts.Now(),
	}
	for i := range p.spec.Containers {
		cs := &p.spec.Containers[i]
		for _, name := range cs.PodIPEnv {
			if cs.Env == nil {
				cs.Env = map[string]string{}
			}
			cs.Env[name] = p.ip
		}
		c := &container{id: r.newID(), pod: p, spec: *cs}
		c.obs = runtime.Container{ID: c.id, Name: cs.Name, Image: cs.Image, State: runtime.StateCreated}
		p.containers = append(p.containers, c)
		r.containers[c.id] = c
	}
	r.pods[spec.Name] = p
	return p.observe(), nil
}

// allocateIP returns the lowest free host number in 2..254.
func (r *Runtime) allocateIP() (uint8, bool) {
	for h := 2; h <= 254; h++ {
		if !r.ipsInUse[uint8(h)] {
			r.ipsInUse[uint8(h)] = true
			return uint8(h), true
		}
	}
	return 0, false
}

func clonePodSpec(s runtime.PodSpec) runtime.PodSpec {
	s.Labels = maps.Clone(s.Labels)
	s.PortMaps = slices.Clone(s.PortMaps)
	s.Containers = slices.Clone(s.Containers)
	for i := range s.Containers {
		c := &s.Containers[i]
		c.Command = slices.Clone(c.Command)
		c.Args = slices.Clone(c.Args)
		c.Env = maps.Clone(c.Env)
		c.PodIPEnv = slices.Clone(c.PodIPEnv)
		c.Mounts = slices.Clone(c.Mounts)
		c.Labels = maps.Clone(c.Labels)
	}
	return s
}

// StartContainer starts a created or exited container; a running one is
// left alone.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupContainer(id)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if c.obs.State == runtime.StateRunning {
		return nil
	}
	now := r.opts.Now()
	c.obs.State = runtime.StateRunning
	c.obs.StartedAt = now
	c.obs.FinishedAt = time.Time{}
	c.obs.ExitCode = 0
	c.obs.OOMKilled = false
	exits, code, output := r.opts.Program.Start(c.spec)
	c.log = append(c.log, output...)
	if exits {
		c.exit(code, now)
	}
	return nil
}

func (c *container) exit(code int, at time.Time) {
	c.obs.State = runtime.StateExited
	c.obs.ExitCode = code
	c.obs.FinishedAt = at
}

// StopContainer stops a running container at once; grace only matters to
// the Program's choice of exit code.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupContainer(id)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if c.obs.State == runtime.StateRunning {
		c.exit(r.opts.Program.Stop(c.spec), r.opts.Now())
	}
	return nil
}

// RemovePod stops and forgets the pod. A missing pod is not an error.
func (r *Runtime) RemovePod(ctx context.Context, name string, grace time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.lookupPod(name)
	if err != nil {
		return nil
	}
	for _, c := range p.containers {
		delete(r.containers, c.id)
	}
	delete(r.ipsInUse, p.hostIP)
	delete(r.pods, p.spec.Name)
	return nil
}

// Exec runs cmd through the Program; the container must be running.
func (r *Runtime) Exec(ctx context.Context, containerID string, cmd []string) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	r.mu.Lock()
	c, err := r.lookupContainer(containerID)
	if err != nil {
		r.mu.Unlock()
		return 0, nil, fmt.Errorf("exec: %w", err)
	}
	if c.obs.State != runtime.StateRunning {
		r.mu.Unlock()
		return 0, nil, fmt.Errorf("exec in %s: container is %s, not running", containerID, c.obs.State)
	}
	spec := c.spec
	r.mu.Unlock()
	// The Program runs unlocked: it may be slow or call back into r.
	code, out := r.opts.Program.Exec(spec, cmd)
	return code, out, nil
}

// Logs returns the last tail lines (all when tail < 0) of what the
// container's Program printed.
func (r *Runtime) Logs(ctx context.Context, containerID string, tail int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupContainer(containerID)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	return lastLines(c.log, tail), nil
}

func lastLines(b []byte, n int) []byte {
	if n < 0 {
		return slices.Clone(b)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return []byte(strings.Join(lines, ""))
}

// Exit makes a running container exit with code, as if its process ended:
// the hook for testing restart logic.
func (r *Runtime) Exit(containerID string, code int) error {
	return r.exitWith(containerID, code, false)
}

// OOMKill makes a running container exit as killed by the OOM killer.
func (r *Runtime) OOMKill(containerID string) error {
	return r.exitWith(containerID, 137, true)
}

func (r *Runtime) exitWith(containerID string, code int, oom bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupContainer(containerID)
	if err != nil {
		return err
	}
	if c.obs.State != runtime.StateRunning {
		return fmt.Errorf("container %s is %s, not running", containerID, c.obs.State)
	}
	c.exit(code, r.opts.Now())
	c.obs.OOMKilled = oom
	return nil
}

// Len reports how many pods the runtime holds.
func (r *Runtime) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pods)
}
