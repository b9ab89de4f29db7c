// Package integration holds the node agent's end-to-end tests against a
// real Podman: an Agent runs pods from an in-memory control plane and the
// tests check what Podman, the pods' files and the reports show. It has no
// non-test code; it is a package of its own so that the agent's unit tests
// build without the Podman bindings' build tags.
package integration
