package nodeagent

import (
	"context"
	"slices"
	"time"

	"berth.dev/berth/api"
)

// ServiceProgrammer programs the whole service table on the node, as
// kube-proxy does (nodeagent/proxy). Sync is called with the complete table
// each time; an implementation may skip work when nothing changed.
type ServiceProgrammer interface {
	Sync(ctx context.Context, services []api.Service) error
}

// servicesRecheck is how often the table is handed over again when nothing
// changed, so the programmer can run its own periodic full resync (the
// proxy repairs rules changed behind its back then).
const servicesRecheck = time.Minute

// servicesChanged reports whether a new assignment carries a different
// service table from the one before it.
func servicesChanged(prev, next *api.Assignment) bool {
	if prev == nil {
		return true
	}
	return !slices.EqualFunc(prev.Services, next.Services, serviceEqual)
}

func serviceEqual(a, b api.Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Type == b.Type && a.ClusterIP == b.ClusterIP &&
		a.AffinitySeconds == b.AffinitySeconds && slices.EqualFunc(a.Ports, b.Ports, func(x, y api.ServicePort) bool {
		return x.Name == y.Name && x.Protocol == y.Protocol && x.Port == y.Port && x.NodePort == y.NodePort &&
			slices.Equal(x.Endpoints, y.Endpoints)
	})
}

// servicesLoop programs the service table of the current assignment when it
// changes, retries failures with back-off, and re-offers it every
// servicesRecheck. It runs only when Config.Services is set.
func (a *Agent) servicesLoop(ctx context.Context) {
	a.programLoop(ctx, "programming services", a.servicesKick, servicesRecheck, a.programServices)
}

// programServices programs the current assignment's service table now (a
// no-op for the proxy when nothing changed). terminate calls it before
// stopping a pod, so the pod has left every Service on this node before it
// gets SIGTERM: a rolling update behind a Service then drops no request,
// where Kubernetes leaves this race to preStop hooks.
func (a *Agent) programServices(ctx context.Context) error {
	if a.cfg.Services == nil {
		return nil
	}
	a.svcMu.Lock()
	defer a.svcMu.Unlock()
	a.mu.Lock()
	asg := a.assignment
	a.mu.Unlock()
	if asg == nil {
		return nil // nothing known yet: keep whatever the host has
	}
	return a.cfg.Services.Sync(ctx, asg.Services)
}
