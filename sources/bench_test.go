package sources

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

const (
	benchDirs         = 20
	benchFilesPerDir  = 50 // 1,000 manifest files in all
	benchManifestSize = 600
)

// newBenchRemote returns a remote whose main branch holds 1,000 manifests
// in 20 directories, and a Git source that has fetched it once.
func newBenchRemote(b *testing.B) (*testRemote, *gitSource) {
	b.Helper()
	r := newTestRemote(b)
	files := make(map[string]string, benchDirs*benchFilesPerDir)
	for d := range benchDirs {
		for f := range benchFilesPerDir {
			files[fmt.Sprintf("team%02d/app%03d.yaml", d, f)] = benchManifest(d*benchFilesPerDir+f, 1)
		}
	}
	r.commitAndPush("1,000 manifests", files)
	src := openGit(b, Spec{Repo: r.url()})
	src.logger = slog.New(slog.DiscardHandler) // keep Debug lines out of the timing
	if rev := mustFetch(b, src); len(rev.Files) != benchDirs*benchFilesPerDir {
		b.Fatalf("%d files, want %d", len(rev.Files), benchDirs*benchFilesPerDir)
	}
	return r, src
}

func benchManifest(n, version int) string {
	head := fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-%d\n  labels:\n    version: \"%d\"\nspec:\n", n, version)
	return head + strings.Repeat("  # padding\n", (benchManifestSize-len(head))/12)
}

func BenchmarkFetchUnchanged(b *testing.B) {
	_, src := newBenchRemote(b)
	reads := countTreeReads(src)
	b.ResetTimer()
	for b.Loop() {
		mustFetch(b, src)
	}
	b.StopTimer()
	if n := reads.Load(); n != 0 {
		b.Fatalf("an unchanged head read the tree %d times", n)
	}
}

func BenchmarkFetchOneFileChanged(b *testing.B) {
	r, src := newBenchRemote(b)
	bare, err := git.PlainOpen(r.bare)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		path := fmt.Sprintf("team%02d/app%03d.yaml", i%benchDirs, i%benchFilesPerDir)
		want := commitOneFile(b, bare, path, benchManifest(i, i+2))
		b.StartTimer()

		if rev := mustFetch(b, src); rev.ID != want.String() {
			b.Fatalf("ID = %s, want %s", rev.ID, want)
		}
	}
}

// commitOneFile writes a commit on main in the bare repository that
// changes one file, in-process, so that the benchmark's setup per iteration
// stays small next to what it measures.
func commitOneFile(b *testing.B, repo *git.Repository, path, content string) plumbing.Hash {
	b.Helper()
	head, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		b.Fatal(err)
	}
	parent, err := repo.CommitObject(head.Hash())
	if err != nil {
		b.Fatal(err)
	}
	root, err := parent.Tree()
	if err != nil {
		b.Fatal(err)
	}
	blob := repo.Storer.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, err := blob.Writer()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.WriteString(w, content); err != nil {
		b.Fatal(err)
	}
	w.Close()
	blobHash, err := repo.Storer.SetEncodedObject(blob)
	if err != nil {
		b.Fatal(err)
	}
	treeHash := replaceEntry(b, repo, root, strings.Split(path, "/"), blobHash)

	sig := object.Signature{Name: "Bench", Email: "bench@example.com", When: time.Now()}
	commit := &object.Commit{Author: sig, Committer: sig, Message: "change " + path, TreeHash: treeHash, ParentHashes: []plumbing.Hash{parent.Hash}}
	obj := repo.Storer.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		b.Fatal(err)
	}
	commitHash, err := repo.Storer.SetEncodedObject(obj)
	if err != nil {
		b.Fatal(err)
	}
	if err := repo.Storer.SetReference(plumbing.NewHashReference(head.Name(), commitHash)); err != nil {
		b.Fatal(err)
	}
	return commitHash
}

// replaceEntry stores a copy of tree with the file at parts pointing to
// blob, rewriting the trees along the path, and returns the new tree's hash.
func replaceEntry(b *testing.B, repo *git.Repository, tree *object.Tree, parts []string, blob plumbing.Hash) plumbing.Hash {
	b.Helper()
	entries := append([]object.TreeEntry(nil), tree.Entries...)
	found := false
	for i, e := range entries {
		if e.Name != parts[0] {
			continue
		}
		found = true
		if len(parts) == 1 {
			entries[i].Hash = blob
			break
		}
		sub, err := repo.TreeObject(e.Hash)
		if err != nil {
			b.Fatal(err)
		}
		entries[i].Hash = replaceEntry(b, repo, sub, parts[1:], blob)
		break
	}
	if !found {
		b.Fatalf("no entry %q", parts[0])
	}
	obj := repo.Storer.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		b.Fatal(err)
	}
	h, err := repo.Storer.SetEncodedObject(obj)
	if err != nil {
		b.Fatal(err)
	}
	return h
}
