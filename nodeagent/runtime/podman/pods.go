package podman

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/pods"
	entities "github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	nettypes "go.podman.io/common/libnetwork/types"
	"golang.org/x/sys/unix"

	"berth.dev/berth/nodeagent/runtime"
)

// cpuPeriod is the CFS period used for CPU limits, as in Kubernetes.
const cpuPeriod = 100_000 // µs

// ListPods returns every pod whose labels include all of selector.
func (r *Runtime) ListPods(ctx context.Context, selector map[string]string) ([]runtime.Pod, error) {
	filters := map[string][]string{}
	for k, v := range selector {
		filters["label"] = append(filters["label"], k+"="+v)
	}
	reports, err := pods.List(r.callCtx(ctx), new(pods.ListOptions).WithFilters(filters))
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	out := make([]runtime.Pod, 0, len(reports))
	for _, rep := range reports {
		// The server filters already; matching again keeps the contract
		// independent of how a given Podman version combines label filters.
		if !runtime.Matches(rep.Labels, selector) {
			continue
		}
		ids := make([]string, 0, len(rep.Containers))
		for _, c := range rep.Containers {
			ids = append(ids, c.Id)
		}
		pod, err := r.observe(ctx, rep.Id, rep.Name, rep.Labels, rep.Created, rep.InfraId, ids)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed while we looked
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pod)
	}
	slices.SortFunc(out, func(a, b runtime.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// InspectPod returns one pod by name.
func (r *Runtime) InspectPod(ctx context.Context, name string) (runtime.Pod, error) {
	rep, err := pods.Inspect(r.callCtx(ctx), name, nil)
	if err != nil {
		return runtime.Pod{}, wrap(err, "inspect pod %s", name)
	}
	ids := make([]string, 0, len(rep.Containers))
	for _, c := range rep.Containers {
		ids = append(ids, c.ID)
	}
	return r.observe(ctx, rep.ID, rep.Name, rep.Labels, rep.Created, rep.InfraContainerID, ids)
}

// observe builds a runtime.Pod from the pod's containers. The pod's address
// lives on its infra container; pod inspect does not report it.
func (r *Runtime) observe(ctx context.Context, id, name string, labels map[string]string, created time.Time, infraID string, containerIDs []string) (runtime.Pod, error) {
	pod := runtime.Pod{ID: id, Name: name, Labels: labels, Created: created}
	type indexed struct {
		index int
		c     runtime.Container
	}
	var apps []indexed
	for _, cid := range containerIDs {
		data, err := containers.Inspect(r.callCtx(ctx), cid, nil)
		if isNotFound(err) {
			// Removed between the pod listing and this inspect (the pod is
			// being torn down): the pod is observed without it.
			continue
		}
		if err != nil {
			return runtime.Pod{}, wrap(err, "pod %s: inspect container %s", name, cid)
		}
		if cid == infraID {
			pod.IP = podIP(data, r.opts.Network)
			continue
		}
		index, err := strconv.Atoi(data.Config.Labels[labelContainerIndex])
		if err != nil {
			// Not ours (someone ran `podman run --pod`); ignore it.
			continue
		}
		apps = append(apps, indexed{index, containerFromInspect(data)})
	}
	slices.SortFunc(apps, func(a, b indexed) int { return a.index - b.index })
	for _, a := range apps {
		pod.Containers = append(pod.Containers, a.c)
	}
	return pod, nil
}

func podIP(data *define.InspectContainerData, network string) string {
	if data.NetworkSettings == nil {
		return ""
	}
	if n, ok := data.NetworkSettings.Networks[network]; ok && n != nil {
		return n.IPAddress
	}
	return data.NetworkSettings.IPAddress
}

func containerFromInspect(data *define.InspectContainerData) runtime.Container {
	c := runtime.Container{
		ID:    data.ID,
		Name:  data.Config.Labels[LabelContainer],
		Image: data.ImageName,
		State: runtime.StateUnknown,
	}
	if s := data.State; s != nil {
		c.State = stateOf(s.Status)
		c.ExitCode = int(s.ExitCode)
		c.OOMKilled = s.OOMKilled
		c.StartedAt = s.StartedAt
		c.FinishedAt = s.FinishedAt
		// Podman stamps StartedAt after runc returns but FinishedAt from
		// the exit file, so a process that exits at once can "finish"
		// before it "started". Consumers compare the two; keep them ordered.
		if !c.FinishedAt.IsZero() && c.FinishedAt.Before(c.StartedAt) {
			c.FinishedAt = c.StartedAt
		}
	}
	return c
}

// stateOf maps libpod's container states onto the runtime's coarse ones.
func stateOf(status string) runtime.ContainerState {
	switch status {
	case "configured", "created", "initialized":
		return runtime.StateCreated
	case "running", "paused", "stopping":
		return runtime.StateRunning
	case "exited", "stopped", "removing":
		return runtime.StateExited
	default:
		return runtime.StateUnknown
	}
}

// CreatePod creates the pod and its infra container, starts the infra (so
// the pod has an address), then creates the app containers without starting
// them. Starting the pod before any app container exists is what keeps
// pods.Start from starting them too. On failure nothing is left behind.
func (r *Runtime) CreatePod(ctx context.Context, ps runtime.PodSpec) (runtime.Pod, error) {
	if ps.Name == "" {
		return runtime.Pod{}, errors.New("create pod: empty name")
	}
	podGen := specgen.PodSpecGenerator{}
	podGen.Name = ps.Name
	podGen.Labels = ps.Labels
	podGen.Hostname = ps.Hostname
	podGen.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
	podGen.Networks = map[string]nettypes.PerNetworkOptions{r.opts.Network: {}}
	for _, pm := range ps.PortMaps {
		proto := pm.Protocol
		if proto == "" {
			proto = "tcp"
		}
		podGen.PortMappings = append(podGen.PortMappings, nettypes.PortMapping{
			HostIP: pm.HostIP, HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: strings.ToLower(proto), Range: 1,
		})
	}
	created, err := pods.CreatePodFromSpec(r.callCtx(ctx), &entities.PodSpec{PodSpecGen: podGen})
	if err != nil {
		return runtime.Pod{}, fmt.Errorf("create pod %s: %w", ps.Name, err)
	}
	cleanup := func(cause error) (runtime.Pod, error) {
		// Use a fresh context: the caller's may be what just failed.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := r.RemovePod(rmCtx, created.Id, 0); err != nil {
			r.logger.Warn("removing half-created pod failed", "pod", ps.Name, "err", err)
		}
		return runtime.Pod{}, cause
	}

	// Only the infra container exists yet, so this starts just the infra.
	start, err := pods.Start(r.callCtx(ctx), created.Id, nil)
	if err == nil && len(start.Errs) > 0 {
		err = errors.Join(start.Errs...)
	}
	if err != nil {
		return cleanup(fmt.Errorf("create pod %s: start infra: %w", ps.Name, err))
	}
	if err := r.enableHairpin(ctx); err != nil {
		// Only a pod reaching itself through a Service suffers; say so
		// rather than fail the pod.
		r.logger.Warn("hairpin mode not enabled", "pod", ps.Name, "err", err)
	}

	// The pod's address exists only now that the infra runs; containers
	// that ask for it (status.podIP in Kubernetes' downward API) get it.
	var ip string
	ps.Containers = slices.Clone(ps.Containers) // env is filled in below
	for _, cs := range ps.Containers {
		if len(cs.PodIPEnv) == 0 {
			continue
		}
		infra, err := r.InspectPod(ctx, created.Id)
		if err != nil {
			return cleanup(fmt.Errorf("create pod %s: pod IP: %w", ps.Name, err))
		}
		ip = infra.IP
		break
	}
	for i, cs := range ps.Containers {
		if len(cs.PodIPEnv) > 0 {
			env := make(map[string]string, len(cs.Env)+len(cs.PodIPEnv))
			maps.Copy(env, cs.Env)
			for _, name := range cs.PodIPEnv {
				env[name] = ip
			}
			ps.Containers[i].Env = env
		}
		s, err := r.containerSpec(created.Id, ps, i)
		if err != nil {
			return cleanup(fmt.Errorf("create pod %s: container %s: %w", ps.Name, cs.Name, err))
		}
		if _, err := containers.CreateWithSpec(r.callCtx(ctx), s, nil); err != nil {
			return cleanup(fmt.Errorf("create pod %s: container %s: %w", ps.Name, cs.Name, err))
		}
	}
	pod, err := r.InspectPod(ctx, created.Id)
	if err != nil {
		return cleanup(fmt.Errorf("create pod %s: %w", ps.Name, err))
	}
	return pod, nil
}

// ContainerName is the engine name of a pod's app container.
func ContainerName(pod, container string) string { return pod + "_" + container }

func (r *Runtime) containerSpec(podID string, ps runtime.PodSpec, i int) (*specgen.SpecGenerator, error) {
	cs := ps.Containers[i]
	s := specgen.NewSpecGenerator(cs.Image, false)
	s.Name = ContainerName(ps.Name, cs.Name)
	s.Pod = podID
	s.Labels = maps.Clone(ps.Labels)
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	maps.Copy(s.Labels, cs.Labels)
	s.Labels[LabelContainer] = cs.Name
	s.Labels[labelContainerIndex] = strconv.Itoa(i)

	// Podman drops the image's CMD when the entrypoint is overridden and no
	// command is given, which is what Kubernetes does with command without args.
	s.Entrypoint = cs.Command
	s.Command = cs.Args
	s.WorkDir = cs.WorkingDir
	s.Env = maps.Clone(cs.Env)

	for _, m := range cs.Mounts {
		opts := []string{"rbind"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, spec.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, Options: opts})
	}

	var res spec.LinuxResources
	if cs.MemoryLimit > 0 {
		limit := cs.MemoryLimit
		// No swap beyond the limit, as in Kubernetes; Podman would
		// otherwise allow twice the limit where swap accounting is on.
		swap := cs.MemoryLimit
		res.Memory = &spec.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if cs.CPULimitMilli > 0 {
		quota := cs.CPULimitMilli * cpuPeriod / 1000
		period := uint64(cpuPeriod)
		res.CPU = &spec.LinuxCPU{Quota: &quota, Period: &period}
	}
	if res.Memory != nil || res.CPU != nil {
		s.ResourceLimits = &res
	}
	for _, u := range r.opts.Ulimits {
		// The server prefixes "RLIMIT_" itself: "nofile", not "RLIMIT_NOFILE".
		s.Rlimits = append(s.Rlimits, spec.POSIXRlimit{Type: strings.ToLower(u.Name), Soft: u.Soft, Hard: u.Hard})
	}
	if cs.StopSignal != "" {
		sig, err := parseSignal(cs.StopSignal)
		if err != nil {
			return nil, err
		}
		s.StopSignal = &sig
	}
	return s, nil
}

// parseSignal accepts "SIGTERM", "TERM" or "15".
func parseSignal(name string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	upper := strings.ToUpper(name)
	if !strings.HasPrefix(upper, "SIG") {
		upper = "SIG" + upper
	}
	if sig := unix.SignalNum(upper); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown stop signal %q", name)
}

// RemovePod stops the pod's app containers (stop signal, SIGKILL after
// grace) and removes the pod. A missing pod is not an error.
func (r *Runtime) RemovePod(ctx context.Context, name string, grace time.Duration) error {
	rep, err := pods.Inspect(r.callCtx(ctx), name, nil)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove pod %s: %w", name, err)
	}
	// 4.3.1: the pod stop endpoint cannot be used for this. The v5 binding
	// sends its timeout as ?timeout= while the server reads ?t=, so the
	// grace period is silently replaced by the default 10 s; and with ?t=
	// the 4.3.1 server answers 304 and stops nothing as soon as one
	// container of the pod has already exited. So stop the running app
	// containers one by one, in parallel, each with the grace period.
	var wg sync.WaitGroup
	for _, c := range rep.Containers {
		if c.ID == rep.InfraContainerID || stateOf(c.State) != runtime.StateRunning {
			continue
		}
		wg.Go(func() {
			if err := r.StopContainer(ctx, c.ID, grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				// The forced remove below kills it.
				r.logger.Warn("stopping container failed; removing it by force", "pod", name, "container", c.Name, "err", err)
			}
		})
	}
	wg.Wait()

	// Only the infra container (catatonit, which exits on SIGTERM) and
	// containers that refused to stop remain: no further grace.
	opts := new(pods.RemoveOptions).WithForce(true).WithTimeout(0)
	if _, err := pods.Remove(r.callCtx(ctx), rep.ID, opts); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove pod %s: %w", name, err)
	}
	return nil
}

// graceSeconds rounds a grace period up to Podman's whole seconds.
func graceSeconds(grace time.Duration) int {
	if grace <= 0 {
		return 0
	}
	return int((grace + time.Second - 1) / time.Second)
}
