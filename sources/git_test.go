package sources

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGitFetchSeesNewCommits(t *testing.T) {
	r := newTestRemote(t)
	r.write(map[string]string{
		"a.yaml":                     "kind: A\n",
		"b/c.yml":                    "kind: C\n",
		"b/d/e.json":                 `{"kind":"E"}`,
		"b/UPPER.YAML":               "kind: Upper\n",
		"README.md":                  "not a manifest\n",
		"notes.txt":                  "not a manifest\n",
		"x.yaml~":                    "editor backup\n",
		"b/.hidden.yaml":             "hidden file\n",
		".github/workflows/ci.yaml":  "hidden directory\n",
		"b/.config/settings.json":    "hidden directory\n",
		"scripts/deploy.sh":          "#!/bin/sh\n",
		"scripts/values.yaml.sample": "not a manifest\n",
	})
	first := r.commit("Initial manifests\n\nWith a body.", ada)
	r.push("main")

	cache := t.TempDir()
	src := openGit(t, Spec{Repo: r.url(), CacheDir: cache})
	rev := mustFetch(t, src)
	if rev.ID != first {
		t.Fatalf("ID = %s, want %s", rev.ID, first)
	}
	if rev.Subject != "Initial manifests" {
		t.Errorf("Subject = %q", rev.Subject)
	}
	if rev.Author != "Ada Lovelace <ada@example.com>" {
		t.Errorf("Author = %q", rev.Author)
	}
	if !rev.Time.Equal(ada.when) {
		t.Errorf("Time = %s, want %s", rev.Time, ada.when)
	}
	assertPaths(t, rev, "a.yaml", "b/UPPER.YAML", "b/c.yml", "b/d/e.json")
	if got := fileMap(rev)["b/d/e.json"]; got != `{"kind":"E"}` {
		t.Errorf("b/d/e.json = %q", got)
	}

	r.write(map[string]string{"a.yaml": "kind: A2\n", "f.yaml": "kind: F\n"})
	if err := os.Remove(r.work + "/b/c.yml"); err != nil {
		t.Fatal(err)
	}
	second := r.commit("Change A, add F, drop C", grace)
	r.push("main")

	rev2 := mustFetch(t, src)
	if rev2.ID != second || rev2.Subject != "Change A, add F, drop C" || rev2.Author != "Grace Hopper <grace@example.com>" || !rev2.Time.Equal(grace.when) {
		t.Fatalf("second revision = %s %q %q %s, want %s by Grace at %s", rev2.ID, rev2.Subject, rev2.Author, rev2.Time, second, grace.when)
	}
	assertPaths(t, rev2, "a.yaml", "b/UPPER.YAML", "b/d/e.json", "f.yaml")
	if got := fileMap(rev2)["a.yaml"]; got != "kind: A2\n" {
		t.Errorf("a.yaml = %q", got)
	}
	// The caller's copy of the first revision is untouched.
	if got := fileMap(rev)["a.yaml"]; got != "kind: A\n" {
		t.Errorf("first revision's a.yaml changed to %q", got)
	}

	// A second source (a restarted berth) reuses the cache.
	again := openGit(t, Spec{Repo: r.url(), CacheDir: cache})
	if again.cacheDir != src.cacheDir {
		t.Fatalf("cache dirs differ: %s vs %s", again.cacheDir, src.cacheDir)
	}
	if rev3 := mustFetch(t, again); rev3.ID != second {
		t.Fatalf("restarted source ID = %s, want %s", rev3.ID, second)
	}
}

func TestGitUnchangedHeadSkipsTreeRead(t *testing.T) {
	r := newTestRemote(t)
	first := r.commitAndPush("one", map[string]string{"a.yaml": "a: 1\n"})

	src := openGit(t, Spec{Repo: r.url()})
	reads := countTreeReads(src)
	for i := range 3 {
		if rev := mustFetch(t, src); rev.ID != first {
			t.Fatalf("fetch %d: ID = %s, want %s", i, rev.ID, first)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("tree read %d times for an unchanged head, want 1", n)
	}

	second := r.commitAndPush("two", map[string]string{"a.yaml": "a: 2\n"})
	if rev := mustFetch(t, src); rev.ID != second {
		t.Fatalf("ID = %s, want %s", rev.ID, second)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("tree read %d times after one new commit, want 2", n)
	}
}

func TestGitBranchSelection(t *testing.T) {
	r := newTestRemote(t)
	mainSHA := r.commitAndPush("main", map[string]string{"env.yaml": "env: prod\n"})
	r.git(r.work, "checkout", "--quiet", "-b", "staging")
	r.write(map[string]string{"env.yaml": "env: staging\n", "extra.yaml": "x: 1\n"})
	stagingSHA := r.commit("staging", ada)
	r.push("staging")

	tests := []struct {
		branch, wantID, wantEnv string
		wantPaths               []string
	}{
		{"", mainSHA, "env: prod\n", []string{"env.yaml"}},
		{"main", mainSHA, "env: prod\n", []string{"env.yaml"}},
		{"staging", stagingSHA, "env: staging\n", []string{"env.yaml", "extra.yaml"}},
	}
	for _, tt := range tests {
		t.Run("branch="+tt.branch, func(t *testing.T) {
			rev := mustFetch(t, openGit(t, Spec{Repo: r.url(), Branch: tt.branch}))
			if rev.ID != tt.wantID {
				t.Errorf("ID = %s, want %s", rev.ID, tt.wantID)
			}
			assertPaths(t, rev, tt.wantPaths...)
			if got := fileMap(rev)["env.yaml"]; got != tt.wantEnv {
				t.Errorf("env.yaml = %q, want %q", got, tt.wantEnv)
			}
		})
	}
}

func TestGitSubPath(t *testing.T) {
	r := newTestRemote(t)
	r.commitAndPush("layout", map[string]string{
		"deploy/prod/app.yaml":       "app\n",
		"deploy/prod/db/db.yaml":     "db\n",
		"deploy/staging/app.yaml":    "staging\n",
		"deploy/prodution-typo.yaml": "sibling with a shared prefix\n",
		"top.yaml":                   "top\n",
	})
	for _, path := range []string{"deploy/prod", "/deploy/prod/", "deploy//prod"} {
		t.Run(path, func(t *testing.T) {
			src := openGit(t, Spec{Repo: r.url(), Path: path})
			rev := mustFetch(t, src)
			// Paths stay relative to the repository root.
			assertPaths(t, rev, "deploy/prod/app.yaml", "deploy/prod/db/db.yaml")
			if !strings.Contains(src.String(), "path deploy/prod") {
				t.Errorf("String() = %q, want the path in it", src.String())
			}
		})
	}
}

func TestGitMissingBranchAndPath(t *testing.T) {
	r := newTestRemote(t)
	r.commitAndPush("one", map[string]string{"apps/a.yaml": "a\n"})

	err := fetchErr(t, openGit(t, Spec{Repo: r.url(), Branch: "release-9"}))
	if !errors.Is(err, ErrBranchNotFound) || !strings.Contains(err.Error(), `"release-9"`) || !strings.Contains(err.Error(), r.url()) {
		t.Errorf("missing branch error = %v; want ErrBranchNotFound naming the branch and URL", err)
	}

	for _, path := range []string{"nope", "apps/a.yaml"} {
		err = fetchErr(t, openGit(t, Spec{Repo: r.url(), Path: path}))
		if !errors.Is(err, ErrPathNotFound) || !strings.Contains(err.Error(), `"`+path+`"`) {
			t.Errorf("path %q: error = %v; want ErrPathNotFound naming the path", path, err)
		}
	}

	empty := newTestRemote(t)
	err = fetchErr(t, openGit(t, Spec{Repo: empty.url()}))
	if !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("empty repository: error = %v; want ErrBranchNotFound", err)
	}
}

func TestGitFetchFailureKeepsCache(t *testing.T) {
	r := newTestRemote(t)
	first := r.commitAndPush("one", map[string]string{"a.yaml": "a: 1\n"})
	src := openGit(t, Spec{Repo: r.url()})
	reads := countTreeReads(src)
	rev := mustFetch(t, src)

	moved := r.bare + ".moved"
	if err := os.Rename(r.bare, moved); err != nil {
		t.Fatal(err)
	}
	err := fetchErr(t, src)
	t.Logf("fetch error: %v", err)
	if msg := err.Error(); !strings.Contains(msg, r.url()) || !strings.Contains(msg, "branch main") {
		t.Errorf("error %q should name the URL and the branch", msg)
	}
	if rev.ID != first || fileMap(rev)["a.yaml"] != "a: 1\n" {
		t.Errorf("the caller's last revision changed: %s %v", rev.ID, fileMap(rev))
	}

	// The remote comes back: same head, so the cached revision is reused.
	if err := os.Rename(moved, r.bare); err != nil {
		t.Fatal(err)
	}
	if again := mustFetch(t, src); again.ID != first {
		t.Fatalf("after recovery ID = %s, want %s", again.ID, first)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("tree read %d times, want 1 (the failure must not drop the cached revision)", n)
	}
}

func TestGitForcePush(t *testing.T) {
	r := newTestRemote(t)
	a := r.commitAndPush("A", map[string]string{"app.yaml": "v: a\n"})
	b := r.commitAndPush("B", map[string]string{"app.yaml": "v: b\n"})
	src := openGit(t, Spec{Repo: r.url()})
	if rev := mustFetch(t, src); rev.ID != b {
		t.Fatalf("ID = %s, want %s", rev.ID, b)
	}

	r.git(r.work, "reset", "--quiet", "--hard", a)
	c := r.commitAndPush("C rewrites history", map[string]string{"app.yaml": "v: c\n"})
	rev := mustFetch(t, src)
	if rev.ID != c || fileMap(rev)["app.yaml"] != "v: c\n" {
		t.Fatalf("after force-push: %s %v, want %s with v: c", rev.ID, fileMap(rev), c)
	}
}

func TestGitLocalRepositoryFollowsBranch(t *testing.T) {
	r := newTestRemote(t)
	committed := r.commitAndPush("one", map[string]string{"app.yaml": "v: committed\n"})
	// Uncommitted work is not part of any revision of a Git source.
	r.write(map[string]string{"app.yaml": "v: uncommitted\n", "new.yaml": "n\n"})

	for name, repo := range map[string]string{"working tree": r.work, "bare": r.bare} {
		t.Run(name, func(t *testing.T) {
			rev := mustFetch(t, openGit(t, Spec{Repo: repo}))
			if rev.ID != committed || fileMap(rev)["app.yaml"] != "v: committed\n" {
				t.Fatalf("got %s %v, want the committed state %s", rev.ID, fileMap(rev), committed)
			}
		})
	}

	t.Run("dir:// reads the folder", func(t *testing.T) {
		src, err := Open(Spec{Repo: "dir://" + r.work}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := src.(*dirSource); !ok {
			t.Fatalf("Open = %T, want a folder source", src)
		}
		rev := mustFetch(t, src)
		assertPaths(t, rev, "app.yaml", "new.yaml")
		if fileMap(rev)["app.yaml"] != "v: uncommitted\n" {
			t.Fatalf("app.yaml = %q", fileMap(rev)["app.yaml"])
		}
	})
}

func TestGitUnchangedFilesShareData(t *testing.T) {
	r := newTestRemote(t)
	r.commitAndPush("one", map[string]string{"same.yaml": "same\n", "changes.yaml": "1\n"})
	src := openGit(t, Spec{Repo: r.url()})
	first := mustFetch(t, src)
	r.commitAndPush("two", map[string]string{"changes.yaml": "2\n"})
	second := mustFetch(t, src)

	if &first.Files[1].Data[0] != &second.Files[1].Data[0] {
		t.Errorf("unchanged %s was read again instead of reused", second.Files[1].Path)
	}
	if string(second.Files[0].Data) != "2\n" {
		t.Errorf("%s = %q, want the new content", second.Files[0].Path, second.Files[0].Data)
	}
}

func TestGitCacheRepack(t *testing.T) {
	r := newTestRemote(t)
	cache := t.TempDir()
	src := openGit(t, Spec{Repo: r.url(), CacheDir: cache})
	src.packLimit = 2
	packs := func() int {
		matches, err := filepath.Glob(filepath.Join(src.cacheDir, "objects", "pack", "*.pack"))
		if err != nil {
			t.Fatal(err)
		}
		return len(matches)
	}

	var last string
	for i := range 6 {
		if i == 4 {
			r.git(r.work, "reset", "--quiet", "--hard", "HEAD~2") // a force-push in between
		}
		last = r.commitAndPush(fmt.Sprintf("commit %d", i), map[string]string{
			"app.yaml":                      fmt.Sprintf("v: %d\n", i),
			fmt.Sprintf("more/f%d.yaml", i): "x\n",
		})
		rev := mustFetch(t, src)
		if rev.ID != last || fileMap(rev)["app.yaml"] != fmt.Sprintf("v: %d\n", i) {
			t.Fatalf("commit %d: got %s %v", i, rev.ID, fileMap(rev))
		}
		if n := packs(); n > src.packLimit+1 {
			t.Fatalf("commit %d: %d packs in the cache, want at most %d", i, n, src.packLimit+1)
		}
	}

	// A fresh source (a restarted berth) reads the repacked cache.
	again := openGit(t, Spec{Repo: r.url(), CacheDir: cache})
	rev := mustFetch(t, again)
	if rev.ID != last {
		t.Fatalf("after repack: ID = %s, want %s", rev.ID, last)
	}
	assertPaths(t, rev, "app.yaml", "more/f0.yaml", "more/f1.yaml", "more/f4.yaml", "more/f5.yaml")
}
