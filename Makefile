# berth's build, test and demo entry points. Every install step the project
# needs lives here or in the scripts these targets call.

GO        ?= go
# The Podman bindings need these tags to build without cgo (no btrfs,
# devicemapper or gpgme headers needed).
TAGS      := remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp
GOFLAGS   := -tags "$(TAGS)"
export CGO_ENABLED := 0
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
STATICCHECK_VERSION := v0.8.2

BIN       := bin/berth
DEMO_DIR  := $(CURDIR)/.berth/demo

.PHONY: all build setup images demo demo-multihost demo-clean test test-short lint bench bench-e2e clean

all: build

build:
	$(GO) build $(GOFLAGS) -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/berth

# setup installs or checks Podman, runc, iptables and git (Debian/Ubuntu, root).
setup:
	@nodeagent/hostsetup/setup.sh

# images builds the example app images locally; nothing is ever pulled.
images:
	@examples/hello/build-images.sh

# demo: everything a fresh host needs, then berth following a local Git
# repository made from examples/hello. Runs in the foreground; Ctrl-C stops
# berth (the pods keep running; `make demo-clean` removes them).
demo: setup build images
	@examples/demo.sh "$(DEMO_DIR)" "$(CURDIR)/$(BIN)"

# demo-multihost: three simulated hosts on this machine (network namespaces,
# one Podman and one `berth agent` each) and a `berth controller`.
demo-multihost: setup build images
	$(GO) build $(GOFLAGS) -o bin/hostsim ./nodeagent/hostsim/cmd/hostsim
	@examples/multihost/demo.sh "$(CURDIR)/.berth/multihost" "$(CURDIR)/$(BIN)" "$(CURDIR)/bin/hostsim"

demo-clean:
	-@podman pod ls -q --filter label=berth.dev/managed=true | xargs -r podman pod rm -f -t 1
	rm -rf "$(DEMO_DIR)"

# test runs every test, including the end-to-end ones against real Podman,
# real Git repositories and real iptables. It needs root.
test: setup
	$(GO) test $(GOFLAGS) -count=1 -timeout 20m ./...

# test-short skips nothing but is meant for machines without Podman:
# BERTH_TEST_NO_PODMAN=1 turns the Podman tests into explicit skips.
test-short:
	BERTH_TEST_NO_PODMAN=1 $(GO) test $(GOFLAGS) -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(GOFLAGS) ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(GOFLAGS) ./...

# bench runs the scale benchmarks: controller, planner, scheduler, manifests,
# sources and proxy rules on fakes and in memory, plus the Podman runtime's
# own (real Podman). Six runs each: quote medians, compare with benchstat.
bench:
	$(GO) test $(GOFLAGS) -run '^$$' -bench . -benchmem -count 6 ./reconciler/... ./sources/... ./nodeagent/... | tee bench.out

# bench-e2e measures commit-to-serving on real Podman (root): the webhook to
# the first answer of the new version, and to the whole rollout.
bench-e2e:
	$(GO) test $(GOFLAGS) -run '^$$' -bench BenchmarkCommitToServing -benchtime 5x -count 3 ./cmd/berth | tee bench-e2e.out

clean:
	rm -rf bin bench.out bench-e2e.out
