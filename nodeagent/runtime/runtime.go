// Package runtime is the agent's port to a container engine. The agent
// translates Kubernetes pod specs into the plain PodSpec below, so an
// implementation needs no Kubernetes knowledge: it creates, starts, stops,
// inspects and removes pods and containers, nothing more. The Podman
// implementation lives in runtime/podman; an in-memory fake for scale tests
// lives in runtime/fake. Both pass the same conformance suite
// (runtime/runtimetest).
package runtime

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) when a pod or container does not exist.
var ErrNotFound = errors.New("not found")

// Runtime runs pods on one host. All calls are safe for concurrent use.
type Runtime interface {
	// ListPods returns every pod whose labels include all of selector.
	ListPods(ctx context.Context, selector map[string]string) ([]Pod, error)
	// InspectPod returns one pod by name.
	InspectPod(ctx context.Context, name string) (Pod, error)
	// CreatePod creates the pod (with its infra container, so all containers
	// share one network namespace) and its containers, and starts the infra
	// container so the pod has an IP. App containers are created but not
	// started: the agent starts them, which is how it owns restart policy.
	CreatePod(ctx context.Context, spec PodSpec) (Pod, error)
	// StartContainer starts a created or exited container.
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends SIGTERM, then SIGKILL after grace.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemovePod stops every container of the pod (SIGTERM, SIGKILL after
	// grace) and removes the pod. Removing a missing pod is not an error.
	RemovePod(ctx context.Context, name string, grace time.Duration) error
	// Exec runs cmd inside a running container and returns its exit code and
	// combined output (truncated to a few KiB).
	Exec(ctx context.Context, containerID string, cmd []string) (exitCode int, output []byte, err error)
	// Logs returns up to tail lines (all when tail < 0) of a container's output.
	Logs(ctx context.Context, containerID string, tail int) ([]byte, error)
}

// Matches reports whether labels carry every key=value of selector: the
// label selection every implementation's ListPods applies.
func Matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// PodSpec is a pod in runtime terms. Paths in Mounts are host paths the agent
// has already prepared.
type PodSpec struct {
	Name       string
	Labels     map[string]string
	Hostname   string
	PortMaps   []PortMapping // published on the host (Kubernetes hostPort)
	Containers []ContainerSpec
}

// PortMapping publishes ContainerPort on the host's HostPort.
type PortMapping struct {
	HostIP        string // "" means all addresses
	HostPort      uint16
	ContainerPort uint16
	Protocol      string // "tcp" or "udp"
}

// ContainerSpec is one application container.
type ContainerSpec struct {
	Name       string
	Image      string
	Command    []string // entrypoint override; nil keeps the image's
	Args       []string // nil keeps the image's
	WorkingDir string
	Env        map[string]string
	// PodIPEnv names variables to set to the pod's IP (Kubernetes'
	// status.podIP field reference). The IP exists only once the infra
	// container runs, so the runtime fills these in before it creates the
	// app containers.
	PodIPEnv []string
	Mounts   []Mount
	// MemoryLimit in bytes; 0 means none.
	MemoryLimit int64
	// CPULimitMilli in millicores; 0 means none.
	CPULimitMilli int64
	// StopSignal defaults to SIGTERM.
	StopSignal string
	Labels     map[string]string
}

// Mount binds a host path into the container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
}

// Pod is a pod as observed on the host.
type Pod struct {
	ID         string
	Name       string
	Labels     map[string]string
	IP         string // the pod's address on the host's container network
	Created    time.Time
	Containers []Container // app containers only, in spec order
}

// ContainerState is a container's coarse lifecycle state.
type ContainerState string

const (
	StateCreated ContainerState = "created"
	StateRunning ContainerState = "running"
	StateExited  ContainerState = "exited"
	StateUnknown ContainerState = "unknown"
)

// Container is one app container as observed on the host.
type Container struct {
	ID         string
	Name       string // the spec name, not the engine's unique name
	Image      string
	State      ContainerState
	ExitCode   int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
}
