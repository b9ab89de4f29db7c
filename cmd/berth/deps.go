package main

// Temporary: pins dependencies in go.mod until the packages that use them land.
import (
	_ "github.com/containers/podman/v5/pkg/bindings"
	_ "github.com/containers/podman/v5/pkg/bindings/containers"
	_ "github.com/containers/podman/v5/pkg/bindings/pods"
	_ "github.com/containers/podman/v5/pkg/specgen"
	_ "github.com/coreos/go-iptables/iptables"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/bbolt"
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/apimachinery/pkg/api/validation"
	_ "sigs.k8s.io/yaml"
)

func main() {}
