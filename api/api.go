// Package api holds the types that cross the wire between the controller and
// the node agents, and between the controller and the CLI. It depends only on
// k8s.io/api so both sides can share it without importing each other.
package api

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

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

// Assignment is everything one node must run: the pods bound to it and the
// ConfigMaps and Secrets those pods reference. Generation increases whenever
// the content changes, so an agent can long-poll for the next one.
type Assignment struct {
	Node       string             `json:"node"`
	Generation int64              `json:"generation"`
	Pods       []corev1.Pod       `json:"pods"`
	ConfigMaps []corev1.ConfigMap `json:"configMaps,omitempty"`
	Secrets    []corev1.Secret    `json:"secrets,omitempty"`
}

// NodeReport is what an agent sends back: its identity, capacity and the
// observed status of every pod it runs. It doubles as a heartbeat.
type NodeReport struct {
	Node       string              `json:"node"`
	Addresses  []string            `json:"addresses,omitempty"`
	Labels     map[string]string   `json:"labels,omitempty"`
	Capacity   corev1.ResourceList `json:"capacity,omitempty"`
	Generation int64               `json:"generation"` // last assignment applied
	Time       time.Time           `json:"time"`
	Pods       []PodReport         `json:"pods"`
}

// PodReport is one pod's observed state on a node.
type PodReport struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	UID       string           `json:"uid"`
	Status    corev1.PodStatus `json:"status"`
}
