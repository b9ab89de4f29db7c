package nodeagent

import (
	"encoding/json"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/probe"
	"berth.dev/berth/nodeagent/runtime"
)

// report puts together the node's report from the last pass's observations,
// the restart records and the probes' current verdicts.
func (a *Agent) report() api.NodeReport {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	rep := api.NodeReport{
		Node:      a.cfg.NodeName,
		Addresses: a.cfg.Addresses,
		Labels:    a.cfg.Labels,
		Capacity:  a.cfg.Capacity,
		PodSubnet: a.podSubnet,
		Time:      now,
		Pods:      []api.PodReport{},
	}
	reported := map[string]bool{} // Podman pod names
	if a.assignment != nil {
		rep.Generation = a.assignment.Generation
		for i := range a.assignment.Pods {
			pod := &a.assignment.Pods[i]
			name := podName(pod.Namespace, pod.Name)
			var obs *runtime.Pod
			if p, ok := a.observed[name]; ok && p.Labels[api.LabelUID] == string(pod.UID) {
				if _, term := a.terminating[name]; !term {
					obs = &p
					reported[name] = true
				}
			}
			rep.Pods = append(rep.Pods, api.PodReport{
				Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID),
				Status: a.podStatusLocked(pod, obs, now),
			})
		}
	}
	// Pods on their way out, and (before any assignment is known) the pods
	// the agent found running, so the controller sees them either way.
	for name, p := range a.observed {
		_, term := a.terminating[name]
		if reported[name] || (!term && a.assignment != nil) {
			continue
		}
		rep.Pods = append(rep.Pods, api.PodReport{
			Namespace: p.Labels[api.LabelNamespace], Name: p.Labels[api.LabelPod], UID: p.Labels[api.LabelUID],
			Status: runtimeOnlyStatus(p), Terminating: term,
		})
	}
	sort.SliceStable(rep.Pods, func(i, j int) bool {
		x, y := rep.Pods[i], rep.Pods[j]
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return !x.Terminating && y.Terminating
	})
	return rep
}

// podStatusLocked derives one assigned pod's status; obs is its Podman pod
// if it exists.
func (a *Agent) podStatusLocked(pod *corev1.Pod, obs *runtime.Pod, now time.Time) corev1.PodStatus {
	uid := string(pod.UID)
	var cfgErr, createErr string
	if t, ok := a.translated[podName(pod.Namespace, pod.Name)]; ok && t.err != nil && obs == nil {
		cfgErr = t.err.Error()
	}
	if f, ok := a.createFailures[uid]; ok && obs == nil {
		createErr = f.msg
	}
	statuses := make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	var messages []string
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		v := containerView{spec: c, record: a.records[recordKey{UID: uid, Container: c.Name}], configErr: cfgErr, createErr: createErr}
		if obs != nil {
			if oc, ok := findContainer(*obs, c.Name); ok {
				v.observed = &oc
				if oc.State == runtime.StateRunning {
					inst := probe.Instance{ID: oc.ID, StartedAt: oc.StartedAt}
					v.probes = a.probes.Status(probe.Key{PodUID: uid, Container: c.Name}, c, inst)
					if v.probes.Message != "" {
						messages = append(messages, c.Name+": "+v.probes.Message)
					}
				}
			}
		}
		statuses = append(statuses, containerStatus(v, pod, now))
	}
	return podStatus(pod, obs, statuses, messages, a.conditions, now)
}

// reportKey identifies a report's content, apart from its time, so an
// unchanged report is not sent again before the next heartbeat.
func reportKey(r api.NodeReport) string {
	r.Time = time.Time{}
	b, err := json.Marshal(r)
	if err != nil {
		return ""
	}
	return string(b)
}
