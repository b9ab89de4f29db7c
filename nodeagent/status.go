package nodeagent

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"berth.dev/berth/nodeagent/probe"
	"berth.dev/berth/nodeagent/runtime"
)

// containerView is everything known about one container when its status
// is put together.
type containerView struct {
	spec     *corev1.Container
	observed *runtime.Container // nil until the pod exists
	record   *containerRecord   // nil before the first start
	probes   probe.Status
	// configErr says why the pod cannot be built from its spec, createErr
	// why the runtime failed to create it.
	configErr, createErr string
}

// containerStatus derives a container's Kubernetes status.
func containerStatus(v containerView, pod *corev1.Pod, now time.Time) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: v.spec.Name, Image: v.spec.Image}
	rec := v.record
	if rec == nil {
		rec = &containerRecord{}
	}
	cs.RestartCount = rec.RestartCount
	if rec.Last != nil {
		cs.LastTerminationState.Terminated = rec.Last.DeepCopy()
	}
	oc := v.observed
	switch {
	case v.configErr != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: v.configErr}
	case v.createErr != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: v.createErr}
	case oc == nil:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	case oc.State == runtime.StateRunning:
		cs.ContainerID = containerID(oc.ID)
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(oc.StartedAt)}
		started, ready := v.probes.Started, v.probes.Ready
		cs.Started, cs.Ready = &started, ready
	case oc.State == runtime.StateExited:
		cs.ContainerID = containerID(oc.ID)
		if shouldRestart(pod.Spec.RestartPolicy, oc.ExitCode) && rec.backingOff(now) {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: crashLoopMessage(rec, v.spec.Name, pod.Name, pod.Namespace, string(pod.UID))}
			break
		}
		cs.State.Terminated = terminated(*oc)
		// The current termination is not also the last one.
		cs.LastTerminationState.Terminated = nil
		if rec.Last != nil && rec.Last.FinishedAt.Equal(&cs.State.Terminated.FinishedAt) && rec.Previous != nil {
			cs.LastTerminationState.Terminated = rec.Previous.DeepCopy()
		}
	default: // created, or a state the runtime could not name
		cs.ContainerID = containerID(oc.ID)
		switch {
		case rec.StartError != "" && rec.backingOff(now):
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: crashLoopMessage(rec, v.spec.Name, pod.Name, pod.Namespace, string(pod.UID))}
		case rec.StartError != "":
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: rec.StartError}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
	}
	if cs.Started == nil {
		f := false
		cs.Started = &f
	}
	return cs
}

// podPhase follows the kubelet: Pending until every container has started
// once, Running while any runs or will run again, then Succeeded or Failed.
func podPhase(policy corev1.RestartPolicy, statuses []corev1.ContainerStatus) corev1.PodPhase {
	var waiting, running, stopped, succeeded int
	for _, s := range statuses {
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case s.State.Waiting != nil && s.LastTerminationState.Terminated != nil:
			stopped++ // restarting
		default:
			waiting++
		}
	}
	switch {
	case len(statuses) == 0 || waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case policy == corev1.RestartPolicyAlways || policy == "":
		return corev1.PodRunning
	case stopped == succeeded:
		return corev1.PodSucceeded
	case policy == corev1.RestartPolicyOnFailure:
		return corev1.PodRunning
	default:
		return corev1.PodFailed
	}
}

// conditionClock keeps a pod condition's lastTransitionTime stable while
// its status does not change.
type conditionClock map[string]map[corev1.PodConditionType]corev1.PodCondition

// stamp returns c with the transition time of the last change of its status.
func (cc conditionClock) stamp(uid string, c corev1.PodCondition, now time.Time) corev1.PodCondition {
	byType := cc[uid]
	if byType == nil {
		byType = map[corev1.PodConditionType]corev1.PodCondition{}
		cc[uid] = byType
	}
	prev, ok := byType[c.Type]
	if ok && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	} else {
		c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
	}
	byType[c.Type] = c
	return c
}

// podStatus puts together a pod's status from its containers' statuses.
func podStatus(pod *corev1.Pod, observed *runtime.Pod, containers []corev1.ContainerStatus, messages []string, cc conditionClock, now time.Time) corev1.PodStatus {
	st := corev1.PodStatus{
		Phase:             podPhase(pod.Spec.RestartPolicy, containers),
		ContainerStatuses: containers,
		QOSClass:          qosClass(pod),
	}
	if observed != nil {
		st.PodIP = observed.IP
		if observed.IP != "" {
			st.PodIPs = []corev1.PodIP{{IP: observed.IP}}
		}
		if !observed.Created.IsZero() {
			t := metav1.NewTime(observed.Created)
			st.StartTime = &t
		}
	}
	var unready []string
	for _, c := range containers {
		if !c.Ready {
			unready = append(unready, c.Name)
		}
	}
	ready := corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}
	if len(unready) > 0 {
		ready.Status = corev1.ConditionFalse
		ready.Reason = "ContainersNotReady"
		ready.Message = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		if len(messages) > 0 {
			sort.Strings(messages)
			ready.Message += "; " + strings.Join(messages, "; ")
		}
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		ready.Reason = "PodCompleted"
	}
	podReady := ready
	podReady.Type = corev1.PodReady
	uid := string(pod.UID)
	st.Conditions = []corev1.PodCondition{
		cc.stamp(uid, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, now),
		cc.stamp(uid, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, now),
		cc.stamp(uid, ready, now),
		cc.stamp(uid, podReady, now),
	}
	return st
}

// qosClass is Kubernetes' QoS class, which only the container resources
// decide.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	guaranteed, limited := true, false
	for _, c := range pod.Spec.Containers {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, hasL := c.Resources.Limits[r]
			q, hasQ := c.Resources.Requests[r]
			if hasL || hasQ {
				limited = true
			}
			if !hasL || (hasQ && q.Cmp(l) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !limited:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}

// runtimeOnlyStatus describes a pod the agent knows only from the runtime
// (no spec at hand), such as one being stopped after the agent restarted.
func runtimeOnlyStatus(p runtime.Pod) corev1.PodStatus {
	st := corev1.PodStatus{PodIP: p.IP, Phase: corev1.PodRunning}
	if p.IP != "" {
		st.PodIPs = []corev1.PodIP{{IP: p.IP}}
	}
	running := 0
	for _, c := range p.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ContainerID: containerID(c.ID)}
		switch c.State {
		case runtime.StateRunning:
			running++
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
		case runtime.StateExited:
			cs.State.Terminated = terminated(c)
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	if running == 0 && len(p.Containers) > 0 {
		st.Phase = corev1.PodSucceeded
		for _, cs := range st.ContainerStatuses {
			if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
				st.Phase = corev1.PodFailed
			}
		}
	}
	return st
}
