// Package podmantest holds helpers for tests that need a real Podman: a
// gate that fails clearly when Podman is unusable, a private API service per
// test, locally built images (nothing can be pulled), and leftover cleanup.
package podmantest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/nodeagent/hostsetup"
	"berth.dev/berth/nodeagent/runtime/podman"
)

// SkipEnv, set to 1, turns the Podman requirement into a skip.
const SkipEnv = "BERTH_TEST_NO_PODMAN"

// DigestLabel records the digest of an image's build context, so an image is
// rebuilt only when its inputs change. examples/hello/build-images.sh
// computes the same digest.
const DigestLabel = "berth.dev/context-digest"

// Require fails the test unless it runs as root with podman installed, or
// skips it when BERTH_TEST_NO_PODMAN=1.
func Require(t testing.TB) {
	t.Helper()
	var problem string
	if os.Geteuid() != 0 {
		problem = "these tests need root (rootful Podman)"
	} else if _, err := exec.LookPath("podman"); err != nil {
		problem = "podman is not installed (run nodeagent/hostsetup/setup.sh)"
	}
	if problem == "" {
		return
	}
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s; skipped because %s=1", problem, SkipEnv)
	}
	t.Fatalf("%s; set %s=1 to skip tests that need Podman", problem, SkipEnv)
}

// ModuleRoot returns the directory holding berth's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("podmantest: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ContainersConf writes the project's containers.conf (the one the agent's
// service uses) into a temporary directory and returns its path.
func ContainersConf(t testing.TB) string {
	t.Helper()
	path, err := hostsetup.WriteContainersConf(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Service starts a private `podman system service` for this test, sharing
// the host's default storage (so locally built images are visible), and
// returns its socket URI. It is stopped when the test ends; starting one
// takes about 0.1 s here.
func Service(t testing.TB) string {
	t.Helper()
	Require(t)
	// Not t.TempDir: test names can push the path past the 108-byte limit
	// on unix socket paths.
	dir, err := os.MkdirTemp("", "berth-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc, err := podman.StartService(ctx, podman.ServiceOptions{
		Socket:         filepath.Join(dir, "podman.sock"),
		ContainersConf: ContainersConf(t),
	})
	if err != nil {
		t.Fatalf("podmantest: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("podmantest: stop service: %v", err)
		}
	})
	return svc.URI()
}

// podmanCmd runs the podman CLI with the project's containers.conf.
func podmanCmd(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+ContainersConf(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// BuildImage builds contextDir (which must hold a Containerfile) as tag,
// unless tag already exists with the same context digest.
func BuildImage(t testing.TB, tag, contextDir string) {
	t.Helper()
	Require(t)
	digest, err := ContextDigest(contextDir)
	if err != nil {
		t.Fatalf("podmantest: %v", err)
	}
	out, err := podmanCmd(t, "image", "inspect", "--format", "{{index .Labels \""+DigestLabel+"\"}}", tag)
	if err == nil && strings.TrimSpace(string(out)) == digest {
		return
	}
	if _, err := podmanCmd(t, "build", "-q", "--label", DigestLabel+"="+digest, "-t", tag, contextDir); err != nil {
		t.Fatalf("podmantest: build %s: %v", tag, err)
	}
}

// ContextDigest hashes every regular file under dir the way
// `find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum` does.
func ContextDigest(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, "./"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", dir, err)
	}
	slices.Sort(files)
	var list bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", fmt.Errorf("digest of %s: %w", dir, err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(&list, "%s  %s\n", hex.EncodeToString(sum[:]), f)
	}
	sum := sha256.Sum256(list.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// HelloImage builds the example app (examples/hello/app) as
// localhost/berth-hello:VERSION, exactly as examples/hello/build-images.sh
// does, and returns the tag.
func HelloImage(t testing.TB, version string) string {
	t.Helper()
	Require(t)
	app := filepath.Join(ModuleRoot(t), "examples", "hello", "app")
	ctxDir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", filepath.Join(ctxDir, "hello"), ".")
	build.Dir = app
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("podmantest: build hello: %v\n%s", err, out)
	}
	containerfile, err := os.ReadFile(filepath.Join(app, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Containerfile"), containerfile, 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "localhost/berth-hello:" + version
	BuildImage(t, tag, ctxDir)
	return tag
}

// Cleanup force-removes every pod carrying labelSelector ("key=value") now,
// which clears leftovers of an interrupted run, and again when the test ends.
func Cleanup(t testing.TB, labelSelector string) {
	t.Helper()
	Require(t)
	remove := func() {
		out, err := podmanCmd(t, "pod", "ps", "-q", "--filter", "label="+labelSelector)
		if err != nil {
			t.Errorf("podmantest: list leftover pods: %v", err)
			return
		}
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			return
		}
		if _, err := podmanCmd(t, append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...); err != nil {
			t.Errorf("podmantest: remove leftover pods: %v", err)
		}
	}
	remove()
	t.Cleanup(remove)
}
