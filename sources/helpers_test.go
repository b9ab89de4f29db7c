package sources

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testRemote is a real bare Git repository (the "server") plus a working
// clone used to author commits with the git CLI.
type testRemote struct {
	t    testing.TB
	bare string
	work string
}

type signature struct {
	name, email string
	when        time.Time
}

var (
	ada   = signature{"Ada Lovelace", "ada@example.com", time.Date(2024, 5, 1, 12, 0, 0, 0, time.FixedZone("", 2*3600))}
	grace = signature{"Grace Hopper", "grace@example.com", time.Date(2024, 5, 2, 9, 30, 15, 0, time.UTC)}
)

func newTestRemote(t testing.TB) *testRemote {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("these tests need the git CLI: %v", err)
	}
	root := t.TempDir()
	r := &testRemote{t: t, bare: filepath.Join(root, "remote.git"), work: filepath.Join(root, "work")}
	r.git(root, "init", "--quiet", "--bare", "--initial-branch=main", r.bare)
	r.git(root, "init", "--quiet", "--initial-branch=main", r.work)
	r.git(r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *testRemote) url() string { return "file://" + r.bare }

func (r *testRemote) git(dir string, args ...string) string {
	r.t.Helper()
	return runGit(r.t, dir, ada, args...)
}

func runGit(t testing.TB, dir string, sig signature, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	date := sig.when.Format(time.RFC3339)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME="+sig.name, "GIT_AUTHOR_EMAIL="+sig.email, "GIT_AUTHOR_DATE="+date,
		"GIT_COMMITTER_NAME="+sig.name, "GIT_COMMITTER_EMAIL="+sig.email, "GIT_COMMITTER_DATE="+date,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// write writes files (path -> content) into the working clone.
func (r *testRemote) write(files map[string]string) {
	r.t.Helper()
	for p, content := range files {
		full := filepath.Join(r.work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// commit commits everything in the working clone and returns the SHA.
func (r *testRemote) commit(message string, sig signature) string {
	r.t.Helper()
	runGit(r.t, r.work, sig, "add", "--all")
	runGit(r.t, r.work, sig, "commit", "--quiet", "--allow-empty", "-m", message)
	return runGit(r.t, r.work, sig, "rev-parse", "HEAD")
}

// push force-pushes the working clone's HEAD to branch.
func (r *testRemote) push(branch string) {
	r.t.Helper()
	r.git(r.work, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/"+branch)
}

// commitAndPush writes files, commits as ada and pushes to main.
func (r *testRemote) commitAndPush(message string, files map[string]string) string {
	r.t.Helper()
	r.write(files)
	sha := r.commit(message, ada)
	r.push("main")
	return sha
}

// openGit opens a Git source for spec and fails the test if it is not one.
func openGit(t testing.TB, spec Spec) *gitSource {
	t.Helper()
	if spec.CacheDir == "" {
		spec.CacheDir = t.TempDir()
	}
	src, err := Open(spec, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	g, ok := src.(*gitSource)
	if !ok {
		t.Fatalf("Open(%q) = %T, want a Git source", spec.Repo, src)
	}
	return g
}

// countTreeReads installs the tree-read hook and returns the counter.
func countTreeReads(g *gitSource) *atomic.Int64 {
	var n atomic.Int64
	g.onTreeRead = func() { n.Add(1) }
	return &n
}

func mustFetch(t testing.TB, src Source) Revision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rev, err := src.Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch %s: %v", src, err)
	}
	return rev
}

func fetchErr(t testing.TB, src Source) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rev, err := src.Fetch(ctx)
	if err == nil {
		t.Fatalf("Fetch %s succeeded with %s, want an error", src, rev.ID)
	}
	return err
}

// fileMap returns a revision's files as path -> content.
func fileMap(rev Revision) map[string]string {
	m := make(map[string]string, len(rev.Files))
	for _, f := range rev.Files {
		m[f.Path] = string(f.Data)
	}
	return m
}

func paths(rev Revision) []string {
	var p []string
	for _, f := range rev.Files {
		p = append(p, f.Path)
	}
	return p
}

func assertPaths(t testing.TB, rev Revision, want ...string) {
	t.Helper()
	if got := paths(rev); !slices.Equal(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
