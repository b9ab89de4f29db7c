package nodeagent

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/api"
)

// memControlPlane is an in-memory stand-in for the controller's HTTP API:
// it long-polls like the real one and can be taken "down".
type memControlPlane struct {
	mu      sync.Mutex
	asg     api.Assignment
	changed chan struct{} // closed when asg or down changes
	down    bool
	last    *api.NodeReport
	reports int
}

var errDown = errors.New("control plane unreachable")

func newMemControlPlane(node string) *memControlPlane {
	return &memControlPlane{asg: api.Assignment{Node: node}, changed: make(chan struct{})}
}

func (m *memControlPlane) Assignment(ctx context.Context, node string, after int64) (api.Assignment, error) {
	for {
		m.mu.Lock()
		if m.down {
			m.mu.Unlock()
			return api.Assignment{}, errDown
		}
		if m.asg.Generation > after {
			asg := m.asg
			m.mu.Unlock()
			return asg, nil
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return api.Assignment{}, ctx.Err()
		case <-ch:
		case <-time.After(time.Second): // the server's long-poll timeout
			m.mu.Lock()
			asg := m.asg
			m.mu.Unlock()
			return asg, nil
		}
	}
}

func (m *memControlPlane) Report(ctx context.Context, r api.NodeReport) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	m.last = &r
	m.reports++
	return nil
}

// assign publishes a new assignment generation.
func (m *memControlPlane) assign(pods []corev1.Pod, cms []corev1.ConfigMap, secrets []corev1.Secret) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asg = api.Assignment{Node: m.asg.Node, Generation: m.asg.Generation + 1, Pods: pods, ConfigMaps: cms, Secrets: secrets}
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *memControlPlane) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
	close(m.changed)
	m.changed = make(chan struct{})
}

// lastReport returns the newest report and how many arrived so far.
func (m *memControlPlane) lastReport() (*api.NodeReport, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.reports
}

// podReport finds a pod in a report.
func podReport(r *api.NodeReport, namespace, name string) (api.PodReport, bool) {
	if r == nil {
		return api.PodReport{}, false
	}
	for _, p := range r.Pods {
		if p.Namespace == namespace && p.Name == name && !p.Terminating {
			return p, true
		}
	}
	return api.PodReport{}, false
}
