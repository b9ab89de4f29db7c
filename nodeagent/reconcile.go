package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/nodeagent/probe"
	"berth.dev/berth/nodeagent/runtime"
)

// desiredPod is an assigned pod with its translation (or why it has none).
type desiredPod struct {
	pod *corev1.Pod
	tr  translation
	err error
}

// createFailure remembers a failed CreatePod, so a pod whose image is
// missing is retried with back-off instead of on every pass.
type createFailure struct {
	msg       string
	delay     time.Duration
	notBefore time.Time
}

// reconcile runs one pass: it stops pods that are not (or no longer
// correctly) assigned, creates missing ones, and starts, restarts or kills
// containers. It returns when the next restart back-off expires, if any.
func (a *Agent) reconcile(ctx context.Context) (time.Time, error) {
	pods, err := a.cfg.Runtime.ListPods(ctx, a.selector())
	if err != nil {
		return time.Time{}, fmt.Errorf("list pods: %w", err)
	}
	observed := make(map[string]runtime.Pod, len(pods))
	for _, p := range pods {
		observed[p.Name] = p
	}

	a.mu.Lock()
	a.observed = observed
	known := a.assignment != nil
	desired := a.desiredLocked()
	a.mu.Unlock()
	if !known {
		// Without any assignment the agent cannot tell what belongs here:
		// leave every pod as it is until the control plane answers.
		return time.Time{}, nil
	}

	for name, p := range observed {
		if why := mismatch(p, desired[name]); why != "" {
			a.terminate(ctx, p, why)
		}
	}

	var wakeAt time.Time
	var errs []error
	names := make([]string, 0, len(desired))
	for name := range desired {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		d := desired[name]
		if a.isTerminating(name) {
			continue // the old pod must be gone before its successor takes the name
		}
		p, ok := observed[name]
		if !ok {
			if d.err != nil {
				continue
			}
			if at, wait := a.createBackingOff(d.pod); wait {
				wakeAt = earliest(wakeAt, at)
				continue
			}
			if p, err = a.createPod(ctx, d); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		at, acted := a.syncContainers(ctx, d, p)
		wakeAt = earliest(wakeAt, at)
		if acted {
			// Report what the starts did, not the state before them.
			if fresh, err := a.cfg.Runtime.InspectPod(ctx, name); err == nil {
				a.mu.Lock()
				a.observed[name] = fresh
				a.mu.Unlock()
			}
		}
	}
	a.forgetGone(desired, observed)
	a.mu.Lock()
	if err := a.saveStateLocked(); err != nil {
		errs = append(errs, err)
	}
	a.mu.Unlock()
	return wakeAt, errors.Join(errs...)
}

// selector picks the pods this agent owns.
func (a *Agent) selector() map[string]string {
	return map[string]string{api.LabelManaged: "true", LabelNode: a.cfg.NodeName}
}

// desiredLocked translates the assigned pods, once per assignment.
func (a *Agent) desiredLocked() map[string]desiredPod {
	out := map[string]desiredPod{}
	if a.assignment == nil {
		return out
	}
	var cfg *configIndex
	for i := range a.assignment.Pods {
		pod := &a.assignment.Pods[i]
		name := podName(pod.Namespace, pod.Name)
		t, ok := a.translated[name]
		if !ok {
			if cfg == nil {
				idx := newConfigIndex(a.assignment)
				cfg = &idx
			}
			t.tr, t.err = a.translate(pod, *cfg)
			a.translated[name] = t
		}
		out[name] = desiredPod{pod: pod, tr: t.tr, err: t.err}
	}
	return out
}

func (a *Agent) translate(pod *corev1.Pod, cfg configIndex) (translation, error) {
	if err := checkIdentity(pod); err != nil {
		return translation{}, err
	}
	n := node{Name: a.cfg.NodeName}
	if len(a.cfg.Addresses) > 0 {
		n.IP = a.cfg.Addresses[0]
	}
	tr, err := translate(pod, cfg, a.podDir(string(pod.UID)), n)
	log := a.log.With("pod", pod.Namespace+"/"+pod.Name)
	if err != nil {
		log.Warn("pod cannot be created", "err", err)
	}
	for _, w := range tr.Warnings {
		log.Warn(w)
	}
	return tr, err
}

// checkIdentity makes sure a pod's names and UID are safe to use as Podman
// names and directory names.
func checkIdentity(pod *corev1.Pod) error {
	if pod.Namespace == "" || pod.Name == "" {
		return configErrorf("pod has no namespace or name")
	}
	if !safeUID(string(pod.UID)) {
		return configErrorf("pod has no usable metadata.uid (%q)", pod.UID)
	}
	return nil
}

// safeUID reports whether uid can name a directory under DataDir/pods.
func safeUID(uid string) bool {
	return uid != "" && uid != "." && uid != ".." && filepath.Base(uid) == uid
}

// mismatch says why an observed pod must go, or "" if it may stay.
func mismatch(p runtime.Pod, d desiredPod) string {
	switch {
	case d.pod == nil:
		return "not assigned to this node"
	case p.Labels[api.LabelUID] != string(d.pod.UID):
		return "replaced by a new pod of the same name"
	case d.err != nil:
		// A pod that runs keeps running when, say, its ConfigMap goes away,
		// as in Kubernetes.
		return ""
	case p.Labels[api.LabelSpecHash] != d.tr.Hash:
		return "spec changed"
	}
	names := make([]string, 0, len(p.Containers))
	for _, c := range p.Containers {
		names = append(names, c.Name)
	}
	want := make([]string, 0, len(d.pod.Spec.Containers))
	for _, c := range d.pod.Spec.Containers {
		want = append(want, c.Name)
	}
	if !slices.Equal(names, want) {
		return "containers were removed"
	}
	return ""
}

func (a *Agent) isTerminating(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.terminating[name]
	return ok
}

// gracePeriod reads a pod's grace period from its labels.
func gracePeriod(labels map[string]string) time.Duration {
	if s, err := strconv.ParseInt(labels[LabelGracePeriod], 10, 64); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	return defaultGracePeriodSeconds * time.Second
}

// terminate stops and removes a pod in the background (its grace period may
// be long) and deletes its volume files once it is gone.
func (a *Agent) terminate(ctx context.Context, p runtime.Pod, why string) {
	a.mu.Lock()
	if _, ok := a.terminating[p.Name]; ok {
		a.mu.Unlock()
		return
	}
	a.terminating[p.Name] = terminatingPod{pod: p}
	a.mu.Unlock()

	uid := p.Labels[api.LabelUID]
	grace := gracePeriod(p.Labels)
	log := a.log.With("pod", p.Name, "uid", uid)
	log.Info("stopping pod", "reason", why, "grace", grace)
	a.probes.RemovePod(uid)
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := a.programServices(ctx); err != nil {
			log.Warn("programming services before stopping a pod failed", "err", err)
		}
		if d := a.cfg.ShutdownDelay; d > 0 && a.cfg.Services != nil {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		err := a.cfg.Runtime.RemovePod(ctx, p.Name, grace)
		if err != nil {
			log.Warn("removing pod failed; will retry", "err", err)
		} else if safeUID(uid) {
			if err := removePodDir(a.podDir(uid)); err != nil {
				log.Warn("removing pod files failed", "err", err)
			}
			log.Info("pod removed")
		}
		a.mu.Lock()
		delete(a.terminating, p.Name)
		a.mu.Unlock()
		a.wake(a.kick)
		a.wake(a.changed)
	}()
}

func (a *Agent) createBackingOff(pod *corev1.Pod) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.createFailures[string(pod.UID)]
	if !ok || !a.now().Before(f.notBefore) {
		return time.Time{}, false
	}
	return f.notBefore, true
}

// createPod writes a pod's volumes and creates it.
func (a *Agent) createPod(ctx context.Context, d desiredPod) (runtime.Pod, error) {
	uid := string(d.pod.UID)
	dir := a.podDir(uid)
	log := a.log.With("pod", d.pod.Namespace+"/"+d.pod.Name, "uid", uid)
	err := writeVolumes(dir, d.tr.Volumes)
	var p runtime.Pod
	if err == nil {
		p, err = a.cfg.Runtime.CreatePod(ctx, d.tr.Spec)
		if err != nil {
			_ = removePodDir(dir)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		f := a.createFailures[uid]
		f.msg = err.Error()
		f.delay = nextDelay(f.delay)
		f.notBefore = a.now().Add(f.delay)
		a.createFailures[uid] = f
		log.Warn("creating pod failed", "err", err, "retry_in", f.delay)
		return p, fmt.Errorf("create pod %s: %w", d.tr.Spec.Name, err)
	}
	delete(a.createFailures, uid)
	a.observed[p.Name] = p
	log.Info("pod created", "ip", p.IP)
	return p, nil
}

// syncContainers starts, restarts or kills the containers of one pod. It
// returns when the earliest restart back-off among them expires, and
// whether it started any container.
func (a *Agent) syncContainers(ctx context.Context, d desiredPod, p runtime.Pod) (wakeAt time.Time, acted bool) {
	uid := string(d.pod.UID)
	now := a.now()
	for i := range d.pod.Spec.Containers {
		c := &d.pod.Spec.Containers[i]
		oc, ok := findContainer(p, c.Name)
		if !ok {
			continue // mismatch() has the pod replaced
		}
		key := recordKey{UID: uid, Container: c.Name}
		pkey := probe.Key{PodUID: uid, Container: c.Name}
		switch oc.State {
		case runtime.StateRunning:
			inst := probe.Instance{ID: oc.ID, StartedAt: oc.StartedAt, Target: probe.Target{PodIP: p.IP, Ports: namedPorts(c)}}
			a.probes.Sync(ctx, pkey, c, inst)
			if st := a.probes.Status(pkey, c, inst); st.Failed {
				a.stopFailed(ctx, d.pod, c, oc, st.Message)
			}
		case runtime.StateExited:
			a.probes.Remove(pkey)
			a.mu.Lock()
			rec := a.recordLocked(key)
			if rec.observeExit(oc) {
				a.stateDirty = true
				a.log.Info("container exited", "pod", p.Name, "container", c.Name, "exit_code", oc.ExitCode, "oom", oc.OOMKilled, "back_off", rec.Wait)
			}
			restart := shouldRestart(d.pod.Spec.RestartPolicy, oc.ExitCode)
			waiting := rec.backingOff(now)
			notBefore := rec.NotBefore
			a.mu.Unlock()
			switch {
			case !restart:
			case waiting:
				wakeAt = earliest(wakeAt, notBefore)
			default:
				a.start(ctx, key, p.Name, oc.ID, true)
				acted = true
			}
		case runtime.StateCreated:
			a.mu.Lock()
			rec := a.records[key]
			waiting := rec != nil && rec.StartError != "" && rec.backingOff(now)
			var notBefore time.Time
			if rec != nil {
				notBefore = rec.NotBefore
			}
			a.mu.Unlock()
			if waiting {
				wakeAt = earliest(wakeAt, notBefore)
				continue
			}
			a.start(ctx, key, p.Name, oc.ID, false)
			acted = true
		}
	}
	return wakeAt, acted
}

func findContainer(p runtime.Pod, name string) (runtime.Container, bool) {
	for _, c := range p.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return runtime.Container{}, false
}

func namedPorts(c *corev1.Container) map[string]int32 {
	if len(c.Ports) == 0 {
		return nil
	}
	out := make(map[string]int32, len(c.Ports))
	for _, p := range c.Ports {
		if p.Name != "" {
			out[p.Name] = p.ContainerPort
		}
	}
	return out
}

func (a *Agent) recordLocked(key recordKey) *containerRecord {
	rec, ok := a.records[key]
	if !ok {
		rec = &containerRecord{}
		a.records[key] = rec
		a.stateDirty = true
	}
	return rec
}

// start starts a container; restart says it ran before, so it counts.
func (a *Agent) start(ctx context.Context, key recordKey, pod, id string, restart bool) {
	err := a.cfg.Runtime.StartContainer(ctx, id)
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.recordLocked(key)
	a.stateDirty = true
	if restart {
		rec.RestartCount++
	}
	if err != nil {
		rec.observeStartError(err, a.now())
		a.log.Warn("starting container failed", "pod", pod, "container", key.Container, "err", err, "back_off", rec.Wait)
		return
	}
	rec.StartError = ""
	a.log.Info("container started", "pod", pod, "container", key.Container, "restart_count", rec.RestartCount)
}

// stopFailed kills a container whose liveness or startup probe failed; the
// restart policy then decides whether it runs again, as in Kubernetes.
func (a *Agent) stopFailed(ctx context.Context, pod *corev1.Pod, c *corev1.Container, oc runtime.Container, why string) {
	a.mu.Lock()
	if a.stopping[oc.ID] {
		a.mu.Unlock()
		return
	}
	a.stopping[oc.ID] = true
	a.mu.Unlock()

	grace := time.Duration(defaultGracePeriodSeconds) * time.Second
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
		}
	}
	a.log.Info("killing container", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "reason", why, "grace", grace)
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := a.cfg.Runtime.StopContainer(ctx, oc.ID, grace); err != nil {
			a.log.Warn("killing container failed", "container", c.Name, "err", err)
		}
		a.mu.Lock()
		delete(a.stopping, oc.ID)
		a.mu.Unlock()
		a.wake(a.kick)
	}()
}

// forgetGone drops what the agent remembers about pods that are neither
// assigned nor present any more.
func (a *Agent) forgetGone(desired map[string]desiredPod, observed map[string]runtime.Pod) {
	keep := map[string]bool{}
	for _, d := range desired {
		keep[string(d.pod.UID)] = true
	}
	for _, p := range observed {
		keep[p.Labels[api.LabelUID]] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.terminating {
		keep[t.pod.Labels[api.LabelUID]] = true
	}
	for k := range a.records {
		if !keep[k.UID] {
			delete(a.records, k)
			a.stateDirty = true
		}
	}
	for uid := range a.conditions {
		if !keep[uid] {
			delete(a.conditions, uid)
		}
	}
	for uid := range a.createFailures {
		if !keep[uid] {
			delete(a.createFailures, uid)
		}
	}
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	default:
		return b
	}
}
