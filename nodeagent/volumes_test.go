package nodeagent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteVolumesModes(t *testing.T) {
	// A permissive umask must not loosen anything, nor a strict one break
	// the emptyDir.
	old := syscall.Umask(0o000)
	defer syscall.Umask(old)

	dir := filepath.Join(t.TempDir(), "pods", "uid-1")
	plans := []volumePlan{
		{Name: "conf", Kind: volumeConfigMap, Files: []volumeFile{{Path: "a/b.txt", Data: []byte("b"), Mode: 0o640}, {Path: "c", Data: []byte("c"), Mode: 0o644}}},
		{Name: "creds", Kind: volumeSecret, Files: []volumeFile{{Path: "pw", Data: []byte("s3cret"), Mode: 0o400}, {Path: "dir/tok", Data: []byte("t"), Mode: 0o600}}},
		{Name: "scratch", Kind: volumeEmptyDir, SubDirs: []string{"x/y"}},
	}
	// Stale files from an earlier incarnation are cleared.
	if err := os.MkdirAll(filepath.Join(dir, "volumes", "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeVolumes(dir, plans); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		"":                      0o700 | os.ModeDir,
		"volumes/conf":          0o755 | os.ModeDir,
		"volumes/conf/a":        0o755 | os.ModeDir,
		"volumes/conf/a/b.txt":  0o640,
		"volumes/conf/c":        0o644,
		"volumes/creds":         0o700 | os.ModeDir,
		"volumes/creds/pw":      0o400,
		"volumes/creds/dir":     0o700 | os.ModeDir,
		"volumes/creds/dir/tok": 0o600,
		"volumes/scratch":       0o777 | os.ModeDir,
		"volumes/scratch/x/y":   0o777 | os.ModeDir,
	}
	for rel, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "volumes/creds/pw"))
	if err != nil || string(b) != "s3cret" {
		t.Fatalf("secret content %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "volumes", "old")); !os.IsNotExist(err) {
		t.Errorf("stale volume survived: %v", err)
	}
	// Nothing under a secret volume is readable by group or others.
	err = filepath.Walk(filepath.Join(dir, "volumes", "creds"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is open to group or others: %v", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := removePodDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pod dir left behind: %v", err)
	}
}
