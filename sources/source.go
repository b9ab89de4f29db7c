// Package sources turns the places desired state lives (a Git repository or a
// local folder) into Revisions: an identified, immutable set of manifest files.
//
// Sources know nothing about what the files mean; decoding and validation
// happen downstream. A Source is safe for concurrent use.
package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// File is one manifest file of a Revision.
type File struct {
	// Path is relative to the repository (or folder) root, sub-path
	// included, and slash-separated.
	Path string
	// Data is the file's content. It may be shared with other Revisions of
	// the same source (unchanged files are not re-read), so treat it as
	// read-only.
	Data []byte
}

// Revision is one version of the desired state.
type Revision struct {
	// ID is the commit SHA for Git sources and "dir:" followed by the SHA-256
	// of the file set (paths and contents) for folders.
	ID string
	// Subject is the first line of the commit message ("" for folders).
	Subject string
	// Author is "Name <email>" of the commit author ("" for folders).
	Author string
	// Time is the commit (committer) time, or the newest file modification
	// time for folders.
	Time time.Time
	// Files holds every .yaml, .yml and .json file under the sub-path,
	// recursively, sorted by Path. Hidden files and directories (a name
	// starting with ".", such as .git or .github) are skipped.
	Files []File
}

// Source is a place desired state comes from.
type Source interface {
	// Fetch brings the source up to date and returns its newest revision.
	// On error the caller keeps using the last revision it obtained.
	Fetch(ctx context.Context) (Revision, error)
	// String describes the source for logs and status: the URL or folder
	// (credentials stripped), the branch and the sub-path.
	String() string
}

// Watcher is implemented by sources that can announce changes themselves
// (folders). Git sources are polled, or fetched on a webhook, by the caller.
type Watcher interface {
	// Watch blocks until ctx is done, calling changed after each burst of
	// relevant changes. It returns nil when ctx ends and an error when
	// watching cannot start or can no longer continue.
	Watch(ctx context.Context, changed func()) error
}

// Spec says where a source is and how to reach it.
type Spec struct {
	// Repo is a Git URL (file://, https://, http://, ssh://, git:// or the
	// scp-like user@host:path) or a local folder. A local folder that is a
	// Git repository (it holds .git, or is a bare repository) is followed as
	// Git on Branch; any other folder is read as it is on disk. The prefix
	// "dir://" forces the folder reading even for a Git working tree.
	Repo string
	// Branch is the Git branch to follow; default "main". Ignored for folders.
	Branch string
	// Path is the sub-path inside the repository or folder; default the root.
	Path string
	// CacheDir is where Git clones live (berth keeps it under its data dir).
	// Required for Git sources.
	CacheDir string
	// Debounce is how long a folder must stay quiet after a change before
	// Watch reports it; default 300ms.
	Debounce time.Duration
	// Auth holds credentials for Git remotes.
	Auth Auth
}

// Auth holds credentials for a Git remote. Its secrets never appear in logs,
// errors or String().
type Auth struct {
	// Token is sent over HTTP(S) as the basic-auth password, with Username
	// (default "git") as the user, as GitHub, GitLab and Gitea expect for
	// personal access and deploy tokens.
	Token    string
	Username string
	// CAFile and CABundle (PEM) add certificate authorities to the system
	// pool for HTTPS remotes, for servers with a private CA.
	CAFile   string
	CABundle []byte
	// SSHKeyFile is the private key (OpenSSH or PEM format) for ssh remotes;
	// SSHKeyPassphrase decrypts it when it is encrypted.
	SSHKeyFile       string
	SSHKeyPassphrase string
	// KnownHostsFile is required for ssh remotes: berth never trusts an
	// unknown host key.
	KnownHostsFile string
}

const (
	defaultBranch   = "main"
	defaultDebounce = 300 * time.Millisecond
	forceDirPrefix  = "dir://"
)

var (
	// ErrBranchNotFound reports that the remote has no such branch.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrPathNotFound reports that the sub-path does not exist (or is not a
	// directory) in the revision.
	ErrPathNotFound = errors.New("path not found")
)

// scpLike matches Git's scp-like syntax, user@host:path. As in Git, a slash
// before the first colon makes it a local path instead.
var scpLike = regexp.MustCompile(`^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9._-]+:`)

// Open returns the source Spec describes: a Git source for URLs and local
// Git repositories, a folder source for other local folders.
func Open(spec Spec, logger *slog.Logger) (Source, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if spec.Branch == "" {
		spec.Branch = defaultBranch
	}
	if spec.Debounce <= 0 {
		spec.Debounce = defaultDebounce
	}
	sub, err := cleanSubPath(spec.Path)
	if err != nil {
		return nil, err
	}
	spec.Path = sub

	repo := strings.TrimSpace(spec.Repo)
	if repo == "" {
		return nil, errors.New("source: no repository or folder given")
	}
	if folder, ok := strings.CutPrefix(repo, forceDirPrefix); ok {
		return newDirSource(folder, spec, logger)
	}
	if strings.Contains(repo, "://") {
		return newGitSource(repo, spec, logger)
	}
	if info, err := os.Stat(repo); err == nil {
		if !info.IsDir() {
			return nil, fmt.Errorf("source %s: not a folder", repo)
		}
		abs, err := filepath.Abs(repo)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", repo, err)
		}
		if isGitRepository(abs) {
			return newGitSource("file://"+filepath.ToSlash(abs), spec, logger)
		}
		return newDirSource(abs, spec, logger)
	}
	if scpLike.MatchString(repo) {
		return newGitSource(repo, spec, logger)
	}
	return nil, fmt.Errorf("source %s: no such folder, and not a Git URL", repo)
}

// isGitRepository reports whether dir is a Git working tree (.git is a
// directory, or a file for worktrees and submodules) or a bare repository.
func isGitRepository(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return true
	}
	for _, name := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return false
		}
	}
	return true
}

// cleanSubPath normalises a sub-path to slash-separated form without leading
// or trailing slashes ("" for the root) and refuses paths leaving the root.
func cleanSubPath(p string) (string, error) {
	p = strings.Trim(filepath.ToSlash(strings.TrimSpace(p)), "/")
	if p == "" {
		return "", nil
	}
	clean := path.Clean(p)
	if clean == "." {
		return "", nil
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("source path %q leaves the repository root", p)
	}
	return clean, nil
}

// isManifestName reports whether a file name has a manifest extension.
func isManifestName(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// isHidden reports whether a file or directory name is hidden (.git, .github,
// editor lock files like .#x.yaml).
func isHidden(name string) bool {
	return strings.HasPrefix(name, ".")
}

// describe renders "where (branch b, path p)" for String().
func describe(where, branch, sub string) string {
	var extra []string
	if branch != "" {
		extra = append(extra, "branch "+branch)
	}
	if sub != "" {
		extra = append(extra, "path "+sub)
	}
	if len(extra) == 0 {
		return where
	}
	return where + " (" + strings.Join(extra, ", ") + ")"
}
