package fake_test

import (
	"testing"

	"berth.dev/berth/nodeagent/runtime"
	"berth.dev/berth/nodeagent/runtime/fake"
	"berth.dev/berth/nodeagent/runtime/runtimetest"
)

func TestConformance(t *testing.T) {
	runtimetest.Run(t, func(t *testing.T) runtime.Runtime {
		return fake.New(fake.Options{Program: runtimetest.ImageProgram{}})
	}, "localhost/berth-hello:v1")
}

func TestAddressesAndExitHook(t *testing.T) {
	ctx := t.Context()
	rt := fake.New(fake.Options{Subnet: 7})
	spec := func(name string) runtime.PodSpec {
		return runtime.PodSpec{Name: name, Containers: []runtime.ContainerSpec{{Name: "c", Image: "img"}}}
	}
	a, _ := rt.CreatePod(ctx, spec("a"))
	b, _ := rt.CreatePod(ctx, spec("b"))
	if a.IP != "10.244.7.2" || b.IP != "10.244.7.3" {
		t.Errorf("IPs %s, %s; want 10.244.7.2 and 10.244.7.3", a.IP, b.IP)
	}
	if err := rt.RemovePod(ctx, "a", 0); err != nil {
		t.Fatal(err)
	}
	c, _ := rt.CreatePod(ctx, spec("c"))
	if c.IP != "10.244.7.2" {
		t.Errorf("a freed address is reused: got %s, want 10.244.7.2", c.IP)
	}

	id := b.Containers[0].ID
	if err := rt.Exit(id, 1); err == nil {
		t.Error("Exit of a container that is not running succeeded")
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rt.Exit(id, 42); err != nil {
		t.Fatal(err)
	}
	got, _ := rt.InspectPod(ctx, "b")
	if s := got.Containers[0]; s.State != runtime.StateExited || s.ExitCode != 42 || s.FinishedAt.IsZero() {
		t.Errorf("after Exit(42): %+v", s)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rt.OOMKill(id); err != nil {
		t.Fatal(err)
	}
	got, _ = rt.InspectPod(ctx, "b")
	if s := got.Containers[0]; !s.OOMKilled || s.ExitCode != 137 {
		t.Errorf("after OOMKill: %+v", s)
	}
}
