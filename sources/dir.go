package sources

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxDebounceFactor bounds how long a stream of changes that never pauses
// can delay the callback: at most this many debounce periods.
const maxDebounceFactor = 10

// dirSource reads manifests from a local folder as they are on disk.
type dirSource struct {
	logger   *slog.Logger
	dir      string // absolute: the folder joined with the sub-path
	sub      string // the sub-path, prefixed to every file's Path
	display  string
	debounce time.Duration

	// onWatching, when set (by tests), is called once Watch has its initial
	// watches in place.
	onWatching func()
}

var (
	_ Source  = (*dirSource)(nil)
	_ Watcher = (*dirSource)(nil)
)

func newDirSource(folder string, spec Spec, logger *slog.Logger) (*dirSource, error) {
	abs, err := filepath.Abs(folder)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", folder, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("source: folder: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("source %s: not a folder", abs)
	}
	s := &dirSource{
		dir:      filepath.Join(abs, filepath.FromSlash(spec.Path)),
		sub:      spec.Path,
		display:  describe(abs, "", spec.Path),
		debounce: spec.Debounce,
	}
	s.logger = logger.With("source", s.display)
	return s, nil
}

func (s *dirSource) String() string { return s.display }

// Fetch reads every manifest file under the folder. The ID digests paths
// and contents, so it changes exactly when the file set does.
func (s *dirSource) Fetch(ctx context.Context) (Revision, error) {
	info, err := os.Stat(s.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && !info.IsDir():
		return Revision{}, fmt.Errorf("folder %s: %w: %s is not a directory", s.display, ErrPathNotFound, s.dir)
	case err != nil:
		return Revision{}, fmt.Errorf("folder %s: %w", s.display, err)
	}
	files, newest, err := readFolder(ctx, s.dir)
	if err != nil {
		return Revision{}, fmt.Errorf("folder %s: %w", s.display, err)
	}
	if s.sub != "" {
		for i := range files {
			files[i].Path = path.Join(s.sub, files[i].Path)
		}
	}
	return Revision{ID: "dir:" + digestFiles(files), Time: newest, Files: files}, nil
}

// ReadDir reads the manifest files under dir by the rules of a folder
// source, for one-shot commands such as validate.
func ReadDir(dir string) ([]File, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s: not a folder", dir)
	}
	files, _, err := readFolder(context.Background(), dir)
	if err != nil {
		return nil, fmt.Errorf("folder %s: %w", dir, err)
	}
	return files, nil
}

// readFolder returns the manifest files under dir, sorted by path, and the
// newest modification time among them.
func readFolder(ctx context.Context, dir string) ([]File, time.Time, error) {
	var (
		files  []File
		newest time.Time
	)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked; the next Fetch sees the rest
			}
			return err
		}
		if d.IsDir() {
			if p != dir && isHidden(d.Name()) {
				return filepath.SkipDir
			}
			return ctx.Err()
		}
		if !isManifestFile(d.Name()) {
			return nil
		}
		// Stat follows symlinks: a link to a file counts as that file; links
		// to directories are not followed, which keeps the walk acyclic.
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Data: data})
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, newest, nil
}

// digestFiles hashes paths and contents with length prefixes, so that no two
// different file sets share a digest by shifting bytes between fields.
func digestFiles(files []File) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range files {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Path)))
		h.Write(n[:])
		h.Write([]byte(f.Path))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Data)))
		h.Write(n[:])
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Watch watches the folder and its subdirectories (including ones created
// later) and calls changed once a burst of changes to manifest files has
// been quiet for the debounce period. changed runs on Watch's goroutine.
// Watch returns nil when ctx ends, and an error if the folder cannot be
// watched or is removed.
func (s *dirSource) Watch(ctx context.Context, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("folder %s: watch: %w", s.display, err)
	}
	defer w.Close()

	t := &tree{watcher: w, watched: make(map[string]bool), logger: s.logger}
	if err := t.add(s.dir); err != nil {
		return fmt.Errorf("folder %s: watch: %w", s.display, err)
	}
	if s.onWatching != nil {
		s.onWatching()
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		pending  bool
		first    time.Time
		rootGone bool
	)
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		wait := s.debounce
		if deadline := first.Add(maxDebounceFactor * s.debounce); now.Add(wait).After(deadline) {
			wait = max(0, deadline.Sub(now))
		}
		timer.Reset(wait)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("folder %s: watcher closed", s.display)
			}
			if ev.Name == s.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				rootGone = true
			}
			if t.relevant(ev) {
				schedule()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("folder %s: watcher closed", s.display)
			}
			s.logger.Warn("folder watch error", "error", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				schedule() // events were lost: anything may have changed
			}
		case <-timer.C:
			pending = false
			changed()
			if rootGone {
				return fmt.Errorf("folder %s was removed or renamed; watching stopped", s.display)
			}
		}
	}
}

// tree tracks the directories a watcher watches.
type tree struct {
	watcher *fsnotify.Watcher
	watched map[string]bool
	logger  *slog.Logger
}

// add watches dir and every non-hidden directory below it.
func (t *tree) add(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && isHidden(d.Name()) {
			return filepath.SkipDir
		}
		if t.watched[p] {
			return nil
		}
		if err := t.watcher.Add(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			if errors.Is(err, syscall.ENOSPC) {
				return fmt.Errorf("%s: %w (raise the fs.inotify.max_user_watches sysctl)", p, err)
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		t.watched[p] = true
		return nil
	})
}

// forget drops dir and everything below it from the watched set.
func (t *tree) forget(dir string) {
	for p := range t.watched {
		if p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) {
			// A renamed directory keeps its inotify watch; drop it so that
			// events from its new place do not arrive under the old name.
			_ = t.watcher.Remove(p)
			delete(t.watched, p)
		}
	}
}

// relevant reports whether an event can change the revision, starting to
// watch directories as they appear.
func (t *tree) relevant(ev fsnotify.Event) bool {
	name := filepath.Base(ev.Name)
	switch {
	case ev.Has(fsnotify.Create):
		info, err := os.Lstat(ev.Name)
		if err == nil && info.IsDir() {
			if isHidden(name) {
				return false
			}
			// Files created before the watch was added raised no event, so
			// a new directory always counts as a change.
			if err := t.add(ev.Name); err != nil {
				t.logger.Warn("cannot watch new directory", "dir", ev.Name, "error", err)
			}
			return true
		}
	case ev.Has(fsnotify.Remove | fsnotify.Rename):
		if t.watched[ev.Name] {
			t.forget(ev.Name)
			return true
		}
	case ev.Op == fsnotify.Chmod:
		// Backup tools and editors touch modes constantly; content did not
		// change.
		return false
	}
	return isManifestFile(name)
}

// isManifestFile reports whether a file name is read as a manifest: a
// manifest extension, and neither hidden nor an editor's temporary file.
func isManifestFile(name string) bool {
	return !isHidden(name) && !isEditorTemp(name) && isManifestName(name)
}

// isEditorTemp recognises the scratch files editors write while saving.
func isEditorTemp(name string) bool {
	switch {
	case name == "4913": // vim probes whether it may create files
	case strings.HasSuffix(name, "~"): // vim, emacs and nano backups
	case strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"): // emacs auto-save
	default:
		switch strings.ToLower(filepath.Ext(name)) {
		case ".swp", ".swx", ".swo", ".tmp", ".bak", ".orig":
			return true
		}
		return false
	}
	return true
}
