package podman_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"berth.dev/berth/nodeagent/runtime"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

func TestPodSubnet(t *testing.T) {
	podmantest.Require(t)
	uri := podmantest.Service(t)
	podmanCLI := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("podman", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	subnetOf := func(network string) (string, error) {
		t.Helper()
		rt, err := podman.New(t.Context(), uri, slog.New(slog.DiscardHandler), podman.Options{Network: network})
		if err != nil {
			t.Fatal(err)
		}
		return rt.PodSubnet(t.Context())
	}

	t.Run("default network", func(t *testing.T) {
		want := podmanCLI("network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}")
		if got, err := subnetOf(""); err != nil || got != want {
			t.Fatalf("PodSubnet = %q, %v; podman network inspect says %q", got, err, want)
		}
	})
	t.Run("network of its own", func(t *testing.T) {
		// Creating a network only writes its definition; netavark makes
		// no bridge until a container joins it.
		name := fmt.Sprintf("berth-subnet-test-%d", os.Getpid())
		podmanCLI("network", "create", "--subnet", "10.231.7.0/24", name)
		t.Cleanup(func() { _ = exec.Command("podman", "network", "rm", "-f", name).Run() })
		if got, err := subnetOf(name); err != nil || got != "10.231.7.0/24" {
			t.Fatalf("PodSubnet = %q, %v; want 10.231.7.0/24", got, err)
		}
	})
	t.Run("missing network", func(t *testing.T) {
		_, err := subnetOf(fmt.Sprintf("berth-no-such-network-%d", os.Getpid()))
		if !errors.Is(err, runtime.ErrNotFound) {
			t.Fatalf("PodSubnet of a missing network: %v, want runtime.ErrNotFound", err)
		}
	})
}
