// Package api holds the types that cross the wire between the controller and
// the node agents, and between the controller and the CLI. It depends only on
// k8s.io/api so both sides can share it without importing each other.
package api

import (
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ErrNotFound is wrapped by errors about an object that does not exist (an
// unknown node, say); the API answers 404 for it.
var ErrNotFound = errors.New("not found")

// Labels berth puts on every Podman pod it creates. Ownership is decided by
// these labels: the agent never touches a pod without LabelManaged.
const (
	LabelManaged   = "berth.dev/managed"
	LabelNamespace = "berth.dev/namespace"
	LabelPod       = "berth.dev/pod"
	LabelOwner     = "berth.dev/owner" // "ReplicaSet/name" or "" for bare Pods
	LabelUID       = "berth.dev/uid"
	LabelSpecHash  = "berth.dev/spec-hash"

	// AnnotationConfigDigest is added to a Deployment's pod template so that a
	// change to a ConfigMap or Secret the template references yields a new
	// pod-template-hash, and hence a rollout.
	AnnotationConfigDigest = "berth.dev/config-digest"
)

// PodReady reports whether the pod's Ready condition is True, as a node
// last reported it.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Assignment is everything one node must run: the pods bound to it and the
// ConfigMaps and Secrets those pods reference. Generation increases whenever
// the content changes, so an agent can long-poll for the next one.
type Assignment struct {
	Node       string             `json:"node"`
	Generation int64              `json:"generation"`
	Pods       []corev1.Pod       `json:"pods"`
	ConfigMaps []corev1.ConfigMap `json:"configMaps,omitempty"`
	Secrets    []corev1.Secret    `json:"secrets,omitempty"`
	// Services is the whole service table with its ready endpoints: every
	// node programs every Service, as kube-proxy does.
	Services []Service `json:"services,omitempty"`
	// Nodes lists every Ready node's address and pod subnet, so agents can
	// route pod traffic between hosts without an overlay (like flannel's
	// host-gw): a route to each other node's PodSubnet via its Address.
	Nodes []NodeRoute `json:"nodes,omitempty"`
}

// NodeRoute is where one node's pods are reached.
type NodeRoute struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	PodSubnet string `json:"podSubnet"`
}

// Service is one Service as the node proxies program it: addresses already
// allocated, target ports already resolved for each endpoint.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"` // ClusterIP or NodePort
	ClusterIP string `json:"clusterIP"`
	// AffinitySeconds > 0 means sessionAffinity ClientIP with that timeout.
	AffinitySeconds int32         `json:"affinitySeconds,omitempty"`
	Ports           []ServicePort `json:"ports"`
}

// ServicePort is one port of a Service and where its traffic goes.
type ServicePort struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"` // TCP or UDP
	Port     int32  `json:"port"`
	NodePort int32  `json:"nodePort,omitempty"`
	// Endpoints are the ready backends, sorted; empty means the Service
	// rejects connections at once.
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one backend address for a service port.
type Endpoint struct {
	IP   string `json:"ip"`
	Port int32  `json:"port"`
	Node string `json:"node,omitempty"`
	Pod  string `json:"pod,omitempty"` // namespace/name, for display
}

// NodeReport is what an agent sends back: its identity, capacity and the
// observed status of every pod it runs. It doubles as a heartbeat.
type NodeReport struct {
	Node      string              `json:"node"`
	Addresses []string            `json:"addresses,omitempty"`
	Labels    map[string]string   `json:"labels,omitempty"`
	Capacity  corev1.ResourceList `json:"capacity,omitempty"`
	// PodSubnet is the CIDR this node's pods get addresses from (its
	// Podman network); Addresses[0] is where other nodes reach it.
	PodSubnet  string      `json:"podSubnet,omitempty"`
	Generation int64       `json:"generation"` // last assignment applied
	Time       time.Time   `json:"time"`
	Pods       []PodReport `json:"pods"`
}

// PodReport is one pod's observed state on a node.
type PodReport struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	UID       string           `json:"uid"`
	Status    corev1.PodStatus `json:"status"`
	// Terminating is set while the agent stops a pod that is no longer
	// assigned (or is being replaced); the pod still runs until it is gone.
	Terminating bool `json:"terminating,omitempty"`
}

// Status is the controller's summary, served at /api/v1/status and printed by
// `berth status -o json`. See docs/status.md for each field.
type Status struct {
	Source      string             `json:"source"`
	Sync        string             `json:"sync"` // SyncSynced or SyncOutOfSync
	Applied     *Revision          `json:"applied,omitempty"`
	Head        *Revision          `json:"head,omitempty"` // newest revision fetched, applied or not
	LastFetch   time.Time          `json:"lastFetch,omitempty"`
	LastError   string             `json:"lastError,omitempty"`
	Warnings    []string           `json:"warnings,omitempty"`
	Deployments []DeploymentHealth `json:"deployments"`
	Nodes       []NodeInfo         `json:"nodes"`
}

// Sync states, as Argo CD names them.
const (
	SyncSynced    = "Synced"
	SyncOutOfSync = "OutOfSync"
)

// Revision describes one commit (or folder state) of the source.
type Revision struct {
	ID      string    `json:"id"`
	Subject string    `json:"subject,omitempty"`
	Author  string    `json:"author,omitempty"`
	Time    time.Time `json:"time,omitempty"`
}

// DeploymentHealth is one Deployment's rollout state.
type DeploymentHealth struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Desired   int32  `json:"desired"`
	Updated   int32  `json:"updated"`
	Ready     int32  `json:"ready"`
	Available int32  `json:"available"`
	Revision  int64  `json:"revision"`
	Health    string `json:"health"` // Healthy, Progressing or Degraded
	Reason    string `json:"reason,omitempty"`
	// RolledBackFrom is the commit whose pod template failed and was rolled
	// back automatically; berth does not try that template again until a
	// commit changes it.
	RolledBackFrom *Revision `json:"rolledBackFrom,omitempty"`
}

// NodeInfo is one node as the controller sees it.
type NodeInfo struct {
	Name          string            `json:"name"`
	Ready         bool              `json:"ready"`
	Unschedulable bool              `json:"unschedulable,omitempty"` // cordoned
	Draining      bool              `json:"draining,omitempty"`
	LastHeartbeat time.Time         `json:"lastHeartbeat"`
	Pods          int               `json:"pods"`
	Addresses     []string          `json:"addresses,omitempty"`
	PodSubnet     string            `json:"podSubnet,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	// Capacity is what the node reported (cpu, memory); Allocated sums the
	// requests of the pods bound to it, as the scheduler counts them.
	Capacity  corev1.ResourceList `json:"capacity,omitempty"`
	Allocated corev1.ResourceList `json:"allocated,omitempty"`
}

// HistoryEntry records what happened to one revision.
type HistoryEntry struct {
	Revision Revision  `json:"revision"`
	Time     time.Time `json:"time"`
	Outcome  string    `json:"outcome"` // Applied, Refused or RolledBack
	Message  string    `json:"message,omitempty"`
}

// Outcomes of a revision.
const (
	OutcomeApplied    = "Applied"
	OutcomeRefused    = "Refused"
	OutcomeRolledBack = "RolledBack"
)

// SyncResult answers POST /api/v1/sync.
type SyncResult struct {
	Applied *Revision `json:"applied,omitempty"`
	Head    *Revision `json:"head,omitempty"`
	Error   string    `json:"error,omitempty"`
}
