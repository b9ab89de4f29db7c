package manifest

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// readTree returns every manifest under root, with slash paths relative to it.
func readTree(t testing.TB, root string) []File {
	t.Helper()
	var files []File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !manifestFile(p) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Data: data})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// summary renders the outcome of loading files: the objects accepted, or
// every diagnostic.
func summary(files []File) string {
	var b strings.Builder
	set, err := NewDecoder().Load(files)
	var errs Errors
	switch {
	case err == nil:
		fmt.Fprintf(&b, "accepted: %d objects\n", len(set.Sources))
		for _, w := range set.Warnings {
			fmt.Fprintf(&b, "  %s\n", w)
		}
	case errors.As(err, &errs):
		fmt.Fprintf(&b, "refused: %d errors\n", errs.ErrorCount())
		for _, d := range errs {
			fmt.Fprintf(&b, "  %s\n", d)
		}
	default:
		fmt.Fprintf(&b, "unexpected error type %T: %v\n", err, err)
	}
	return b.String()
}

// TestCorpus loads real-world manifests (testdata/corpus, see its README) one
// file at a time, and each project whole, and compares the outcome with
// testdata/corpus.golden. Run with -update to rewrite the golden file after
// an intended change, and review the diff.
func TestCorpus(t *testing.T) {
	files := readTree(t, "testdata/corpus")
	if len(files) < 30 {
		t.Fatalf("corpus has %d files; is testdata/corpus complete?", len(files))
	}
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "== %s\n%s", f.Path, summary([]File{f}))
	}
	for _, dir := range []string{"guestbook", "podinfo/kustomize"} {
		var sub []File
		for _, f := range files {
			if strings.HasPrefix(f.Path, dir+"/") {
				sub = append(sub, f)
			}
		}
		fmt.Fprintf(&b, "== %s/ (whole folder)\n%s", dir, summary(sub))
	}
	got := b.String()

	golden := filepath.Join("testdata", "corpus.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestCorpus -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("corpus outcome differs from %s (rerun with -update and review the diff):\n%s", golden, lineDiff(string(want), got))
	}

	// Independently of the golden file: every object of a kind berth does
	// not support is named, with its file and kind.
	for _, f := range files {
		for _, kind := range []string{"HorizontalPodAutoscaler", "ServiceAccount", "CronJob", "StatefulSet", "PersistentVolumeClaim", "Kustomization"} {
			if !strings.Contains(string(f.Data), "kind: "+kind) {
				continue
			}
			want := fmt.Sprintf("%s:1: %s", f.Path, kind)
			if !strings.Contains(got, want) || !strings.Contains(got, "kind "+kind+" (apiVersion") {
				t.Errorf("%s: unsupported kind %s not reported as %q", f.Path, kind, want)
			}
		}
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
