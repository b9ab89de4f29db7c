package sources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testDebounce is short to keep the tests quick, yet far longer than the
// few milliseconds a burst of writes in a test takes.
const testDebounce = 500 * time.Millisecond

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func openDir(t *testing.T, spec Spec) *dirSource {
	t.Helper()
	src, err := Open(spec, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	d, ok := src.(*dirSource)
	if !ok {
		t.Fatalf("Open(%q) = %T, want a folder source", spec.Repo, src)
	}
	return d
}

func TestDirFetch(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"a.yaml":                "a\n",
		"apps/b.yml":            "b\n",
		"apps/deep/c.json":      "{}",
		"apps/notes.txt":        "not a manifest\n",
		"apps/b.yml~":           "backup\n",
		"apps/.b.yml.swp":       "swap\n",
		"apps/4913":             "",
		".cache/ci.yaml":        "hidden directory\n",
		"apps/.hidden/d.yaml":   "hidden directory\n",
		"elsewhere/target.yaml": "linked\n",
	})
	if err := os.Symlink(filepath.Join(root, "elsewhere/target.yaml"), filepath.Join(root, "apps/link.yaml")); err != nil {
		t.Fatal(err)
	}
	newest := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "apps/deep/c.json"), newest, newest); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.yaml", "apps/b.yml", "elsewhere/target.yaml"} {
		old := newest.Add(-time.Hour)
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}

	src := openDir(t, Spec{Repo: root, Path: "apps"})
	rev := mustFetch(t, src)
	assertPaths(t, rev, "apps/b.yml", "apps/deep/c.json", "apps/link.yaml")
	if fileMap(rev)["apps/link.yaml"] != "linked\n" {
		t.Errorf("link.yaml = %q, want the link target's content", fileMap(rev)["apps/link.yaml"])
	}
	if !strings.HasPrefix(rev.ID, "dir:") || len(rev.ID) != len("dir:")+64 {
		t.Errorf("ID = %q, want dir:<sha256>", rev.ID)
	}
	if !rev.Time.Equal(newest) {
		t.Errorf("Time = %s, want the newest mtime %s", rev.Time, newest)
	}
	if rev.Subject != "" || rev.Author != "" {
		t.Errorf("Subject, Author = %q, %q; want empty for folders", rev.Subject, rev.Author)
	}

	files, err := ReadDir(filepath.Join(root, "apps"))
	if err != nil {
		t.Fatal(err)
	}
	// ReadDir reads the folder it is given: paths are relative to it.
	if got, want := paths(Revision{Files: files}), []string{"b.yml", "deep/c.json", "link.yaml"}; !slices.Equal(got, want) {
		t.Errorf("ReadDir = %q, want %q", got, want)
	}
	if _, err := ReadDir(filepath.Join(root, "a.yaml")); err == nil {
		t.Errorf("ReadDir of a file succeeded")
	}

	if again := mustFetch(t, src); again.ID != rev.ID {
		t.Errorf("unchanged folder: ID %s then %s", rev.ID, again.ID)
	}
	writeFiles(t, root, map[string]string{"apps/notes.txt": "still not a manifest\n"})
	if again := mustFetch(t, src); again.ID != rev.ID {
		t.Errorf("a non-manifest edit changed the ID")
	}
	writeFiles(t, root, map[string]string{"apps/b.yml": "b2\n"})
	if changed := mustFetch(t, src); changed.ID == rev.ID {
		t.Errorf("an edit kept ID %s", rev.ID)
	}
	// Renaming a file changes the ID even though contents are the same.
	if err := os.Rename(filepath.Join(root, "apps/b.yml"), filepath.Join(root, "apps/b2.yml")); err != nil {
		t.Fatal(err)
	}
	renamed := mustFetch(t, src)
	assertPaths(t, renamed, "apps/b2.yml", "apps/deep/c.json", "apps/link.yaml")
}

func TestDirMissingPath(t *testing.T) {
	root := t.TempDir()
	err := fetchErr(t, openDir(t, Spec{Repo: root, Path: "nope"}))
	if !errors.Is(err, ErrPathNotFound) {
		t.Errorf("error = %v; want ErrPathNotFound", err)
	}
	if _, err := Open(Spec{Repo: filepath.Join(root, "missing")}, testLogger(t)); err == nil {
		t.Errorf("Open of a missing folder succeeded")
	}
}

// watching runs Watch in the background and returns a channel receiving one
// value per callback. The watch stops when the test ends.
func watching(t *testing.T, src *dirSource) <-chan struct{} {
	t.Helper()
	calls := make(chan struct{}, 100)
	ready := make(chan struct{})
	src.onWatching = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func() { calls <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v after cancel, want nil", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not start")
	}
	return calls
}

// expectCallback waits for one callback, then checks that no other follows
// within a few debounce periods.
func expectCallback(t *testing.T, calls <-chan struct{}) {
	t.Helper()
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
	expectQuiet(t, calls)
}

func expectQuiet(t *testing.T, calls <-chan struct{}) {
	t.Helper()
	select {
	case <-calls:
		t.Fatal("an extra change was reported")
	case <-time.After(4 * testDebounce):
	}
}

func TestDirWatchDebouncesASave(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"app.yaml": "v: 1\n"})
	src := openDir(t, Spec{Repo: root, Debounce: testDebounce})
	before := mustFetch(t, src)
	calls := watching(t, src)

	// What vim does on :w, then a second quick save of another file.
	p := filepath.Join(root, "app.yaml")
	writeFiles(t, root, map[string]string{"4913": "", ".app.yaml.swp": "swap"})
	if err := os.Remove(filepath.Join(root, "4913")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p, p+"~"); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, root, map[string]string{"app.yaml": "v: 2\n"})
	if err := os.Remove(p + "~"); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, root, map[string]string{"other.yml": "o\n"})

	expectCallback(t, calls)
	after := mustFetch(t, src)
	if after.ID == before.ID {
		t.Fatal("the ID did not change after the edit")
	}
	assertPaths(t, after, "app.yaml", "other.yml")
	if fileMap(after)["app.yaml"] != "v: 2\n" {
		t.Errorf("app.yaml = %q", fileMap(after)["app.yaml"])
	}
}

func TestDirWatchNewSubdirectories(t *testing.T) {
	root := t.TempDir()
	src := openDir(t, Spec{Repo: root, Debounce: testDebounce})
	calls := watching(t, src)

	if err := os.MkdirAll(filepath.Join(root, "team/app/overlays"), 0o755); err != nil {
		t.Fatal(err)
	}
	expectCallback(t, calls)

	// The new, nested directory is watched: a file written there later is
	// reported.
	writeFiles(t, root, map[string]string{"team/app/overlays/deploy.yaml": "d\n"})
	expectCallback(t, calls)
	assertPaths(t, mustFetch(t, src), "team/app/overlays/deploy.yaml")

	// Removing the directory is a change too.
	if err := os.RemoveAll(filepath.Join(root, "team")); err != nil {
		t.Fatal(err)
	}
	expectCallback(t, calls)
	assertPaths(t, mustFetch(t, src))
}

func TestDirWatchIgnoresNonManifests(t *testing.T) {
	root := t.TempDir()
	src := openDir(t, Spec{Repo: root, Debounce: testDebounce})
	calls := watching(t, src)

	writeFiles(t, root, map[string]string{
		"README.md":        "readme\n",
		"app.yaml~":        "backup\n",
		".app.yaml.swp":    "swap\n",
		"4913":             "",
		"#app.yaml#":       "emacs\n",
		".hidden.yaml":     "hidden\n",
		".git/HEAD":        "ref: refs/heads/main\n",
		".git/refs/x.yaml": "hidden directory\n",
	})
	if err := os.Chmod(filepath.Join(root, "README.md"), 0o600); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, calls)
}

func TestDirWatchRootRemoved(t *testing.T) {
	root := filepath.Join(t.TempDir(), "manifests")
	writeFiles(t, root, map[string]string{"a.yaml": "a\n"})
	src := openDir(t, Spec{Repo: root, Debounce: testDebounce})
	ready := make(chan struct{})
	src.onWatching = func() { close(ready) }
	done := make(chan error, 1)
	calls := make(chan struct{}, 10)
	go func() { done <- src.Watch(context.Background(), func() { calls <- struct{}{} }) }()
	<-ready

	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "removed") {
			t.Errorf("Watch returned %v, want an error saying the folder was removed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch kept running after its folder was removed")
	}
	if len(calls) != 1 {
		t.Errorf("%d callbacks, want 1 so the caller fetches (and sees the folder gone)", len(calls))
	}
}
