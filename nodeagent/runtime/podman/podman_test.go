package podman_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"berth.dev/berth/nodeagent/runtime"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
	"berth.dev/berth/nodeagent/runtime/runtimetest"
)

func newRuntime(t *testing.T, uri string) *podman.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rt, err := podman.New(ctx, uri, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})), podman.Options{})
	if err != nil {
		t.Fatalf("podman.New: %v", err)
	}
	return rt
}

func TestConformance(t *testing.T) {
	podmantest.Require(t)
	image := podmantest.HelloImage(t, "v1")
	uri := podmantest.Service(t)
	podmantest.Cleanup(t, runtimetest.SuiteLabel)
	runtimetest.Run(t, func(t *testing.T) runtime.Runtime { return newRuntime(t, uri) }, image)
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
