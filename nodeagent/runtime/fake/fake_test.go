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
