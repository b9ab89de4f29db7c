package nodeagent

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/nodeagent/runtime"
)

// Kubernetes' container restart back-off (kubelet MaxContainerBackOff and
// KEP-4603's reset after ten minutes of running).
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 300 * time.Second
	backoffReset   = 10 * time.Minute
)

// containerRecord is what the agent remembers about one container of one
// pod across its restarts. It is saved in the state file, so a restarted
// agent keeps counting where it left off.
type containerRecord struct {
	RestartCount int32 `json:"restartCount"`
	// Delay is the back-off the next exit will have to wait out.
	Delay time.Duration `json:"delay"`
	// NotBefore is when the container may start again after its last exit
	// or failed start, Wait the back-off that set it.
	NotBefore time.Time     `json:"notBefore"`
	Wait      time.Duration `json:"wait"`
	// SeenFinish is the finish time of the last exit already accounted, so
	// one exit is never counted twice.
	SeenFinish time.Time `json:"seenFinish"`
	// Last is the most recent termination; Previous the one before it.
	Last     *corev1.ContainerStateTerminated `json:"last,omitempty"`
	Previous *corev1.ContainerStateTerminated `json:"previous,omitempty"`
	// StartError is why the last start failed, until a start succeeds.
	StartError string `json:"startError,omitempty"`
}

// shouldRestart applies a pod's restartPolicy to a container's exit code.
func shouldRestart(policy corev1.RestartPolicy, exitCode int) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	default: // Always, and the empty default
		return true
	}
}

// nextDelay is the back-off after delay: 10 s, doubling, capped at 300 s.
func nextDelay(delay time.Duration) time.Duration {
	if delay <= 0 {
		return backoffInitial
	}
	return min(2*delay, backoffMax)
}

// observeExit accounts an exited container once. Like the kubelet, the
// first exit restarts at once and each further one waits the current delay,
// which then doubles; a run of ten minutes or more forgives the past.
// It reports whether the exit was new.
func (r *containerRecord) observeExit(c runtime.Container) bool {
	if !c.FinishedAt.After(r.SeenFinish) {
		return false
	}
	r.SeenFinish = c.FinishedAt
	if !c.StartedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) >= backoffReset {
		r.Delay = 0
	}
	r.Wait = r.Delay
	r.NotBefore = c.FinishedAt.Add(r.Wait)
	r.Delay = nextDelay(r.Delay)
	r.Previous, r.Last = r.Last, terminated(c)
	return true
}

// observeStartError accounts a failed start like an exit at now.
func (r *containerRecord) observeStartError(err error, now time.Time) {
	r.StartError = err.Error()
	r.Wait = r.Delay
	r.NotBefore = now.Add(r.Wait)
	r.Delay = nextDelay(r.Delay)
}

// backingOff reports whether the container must still wait at now.
func (r *containerRecord) backingOff(now time.Time) bool {
	return now.Before(r.NotBefore)
}

// crashLoopMessage is the kubelet's CrashLoopBackOff message.
func crashLoopMessage(r *containerRecord, container, pod, namespace, uid string) string {
	return fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", r.Wait, container, pod, namespace, uid)
}

// terminated turns an exited container into its Kubernetes termination
// state.
func terminated(c runtime.Container) *corev1.ContainerStateTerminated {
	reason := "Error"
	switch {
	case c.OOMKilled:
		reason = "OOMKilled"
	case c.ExitCode == 0:
		reason = "Completed"
	}
	return &corev1.ContainerStateTerminated{
		ExitCode:    int32(c.ExitCode),
		Reason:      reason,
		StartedAt:   metav1.NewTime(c.StartedAt),
		FinishedAt:  metav1.NewTime(c.FinishedAt),
		ContainerID: containerID(c.ID),
	}
}

// containerID is a container ID in Kubernetes' <runtime>://<id> form.
func containerID(id string) string {
	if id == "" {
		return ""
	}
	return "podman://" + id
}
