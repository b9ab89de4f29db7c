package sources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const (
	// remoteName is the name fetched refs are stored under in the cache.
	remoteName = "origin"
	// sshConnectTimeout bounds the TCP connect and SSH handshake, which
	// go-git does not tie to the fetch context.
	sshConnectTimeout = 30 * time.Second
	// defaultPackLimit is how many packfiles the cache may hold before it is
	// repacked: every fetch that brings objects adds one, and lookups slow
	// down as they pile up.
	defaultPackLimit = 50
	// minSecretLen is the shortest secret redacted from error messages; a
	// shorter one would garble the message while revealing next to nothing.
	minSecretLen = 4
)

// gitSource follows one branch of a Git remote. The cache is a bare
// repository that only ever receives the followed branch; files are read
// from the commit's tree in the object store, never checked out.
type gitSource struct {
	logger   *slog.Logger
	url      string // handed to go-git; never holds credentials
	display  string // url as shown in logs and errors
	branch   string
	sub      string
	cacheDir string
	auth     transport.AuthMethod
	caBundle []byte
	secrets  []string // redacted from every error message
	// packLimit is the number of packfiles above which the cache is
	// repacked into one.
	packLimit int

	// onTreeRead, when set (by tests), is called each time a commit's tree
	// is read, which Fetch must skip when the branch head did not move.
	onTreeRead func()

	mu   sync.Mutex // serialises Fetch: one fetch at a time per cache
	repo *git.Repository
	last *gitState // nil until the first successful Fetch
}

var _ Source = (*gitSource)(nil)

// gitState is what Fetch remembers of the last revision it returned.
type gitState struct {
	commit plumbing.Hash
	rev    Revision
	// blobs maps each file's blob hash to its content, so the next revision
	// reads only the blobs that changed.
	blobs map[plumbing.Hash][]byte
}

func newGitSource(rawURL string, spec Spec, logger *slog.Logger) (*gitSource, error) {
	if err := plumbing.NewBranchReferenceName(spec.Branch).Validate(); err != nil {
		return nil, fmt.Errorf("source: invalid branch name %q: %w", spec.Branch, err)
	}
	s := &gitSource{
		logger:    logger,
		branch:    spec.Branch,
		sub:       spec.Path,
		packLimit: defaultPackLimit,
	}
	if err := s.configureRemote(rawURL, spec.Auth); err != nil {
		return nil, err
	}
	if spec.CacheDir == "" {
		return nil, fmt.Errorf("git source %s: no cache directory configured", s.display)
	}
	// Keyed by URL and branch: two sources following different branches of
	// one repository never write to the same object store concurrently.
	key := sha256.Sum256([]byte(s.url + "\n" + s.branch))
	s.cacheDir = filepath.Join(spec.CacheDir, hex.EncodeToString(key[:12]))
	s.logger = logger.With("source", s.String())
	return s, nil
}

// configureRemote sets url, display, auth, caBundle and secrets from the
// raw URL and Auth. Credentials embedded in an HTTP(S) URL are moved into
// the auth method so that the URL itself can be shown and stored safely.
func (s *gitSource) configureRemote(rawURL string, auth Auth) error {
	s.secrets = appendSecret(s.secrets, auth.Token)
	s.secrets = appendSecret(s.secrets, auth.SSHKeyPassphrase)

	if !strings.Contains(rawURL, "://") {
		// scp-like user@host:path is ssh; it cannot carry a password.
		s.url, s.display = rawURL, rawURL
		user, _, found := strings.Cut(strings.SplitN(rawURL, ":", 2)[0], "@")
		if !found {
			user = ""
		}
		return s.configureSSH(user, auth)
	}

	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, which may hold credentials.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("source: invalid Git URL: %w", err)
	}
	var user, password string
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
		s.secrets = appendSecret(s.secrets, password)
	}

	switch u.Scheme {
	case "file", "git":
		u.User = nil
		s.url = u.String()
		s.display = s.url
		return nil
	case "http", "https":
		// A bare user in an HTTPS URL is commonly a token itself.
		if password == "" && auth.Token == "" {
			s.secrets = appendSecret(s.secrets, user)
		}
		u.User = nil
		s.url = u.String()
		s.display = s.url
		if err := s.configureHTTP(u.Scheme, user, password, auth); err != nil {
			return err
		}
		return nil
	case "ssh":
		// ssh passwords are not supported; keep only the user name.
		if user != "" {
			u.User = url.User(user)
		} else {
			u.User = nil
		}
		s.url = u.String()
		s.display = s.url
		return s.configureSSH(user, auth)
	default:
		u.User = nil
		return fmt.Errorf("source %s: unsupported URL scheme %q (want https, http, ssh, git or file)", u.String(), u.Scheme)
	}
}

func (s *gitSource) configureHTTP(scheme, urlUser, urlPassword string, auth Auth) error {
	switch {
	case auth.Token != "":
		user := auth.Username
		if user == "" {
			user = "git"
		}
		s.auth = &githttp.BasicAuth{Username: user, Password: auth.Token}
	case urlUser != "":
		s.auth = &githttp.BasicAuth{Username: urlUser, Password: urlPassword}
	}
	if s.auth != nil && scheme == "http" {
		s.logger.Warn("git credentials will be sent unencrypted over http", "url", s.display)
	}
	s.caBundle = slices.Clone(auth.CABundle)
	if auth.CAFile != "" {
		pem, err := os.ReadFile(auth.CAFile)
		if err != nil {
			return fmt.Errorf("source %s: CA file: %w", s.display, err)
		}
		s.caBundle = append(append(s.caBundle, '\n'), pem...)
	}
	return nil
}

func (s *gitSource) configureSSH(urlUser string, auth Auth) error {
	if auth.KnownHostsFile == "" {
		return fmt.Errorf("source %s: ssh needs a known_hosts file (Auth.KnownHostsFile); berth never trusts an unknown host key", s.display)
	}
	if _, err := os.Stat(auth.KnownHostsFile); err != nil {
		return fmt.Errorf("source %s: known_hosts file: %w", s.display, err)
	}
	if auth.SSHKeyFile == "" {
		return fmt.Errorf("source %s: ssh needs a private key file (Auth.SSHKeyFile)", s.display)
	}
	ep, err := transport.NewEndpoint(s.url)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.display, err)
	}
	user := urlUser
	if user == "" {
		user = auth.Username
	}
	if user == "" {
		user = "git"
	}
	keys, err := gitssh.NewPublicKeysFromFile(user, auth.SSHKeyFile, auth.SSHKeyPassphrase)
	if err != nil {
		return s.wrapError(fmt.Sprintf("source %s: ssh key %s", s.display, auth.SSHKeyFile), err, "")
	}
	db, err := gitssh.NewKnownHostsDb(auth.KnownHostsFile)
	if err != nil {
		return fmt.Errorf("source %s: known_hosts file %s: %w", s.display, auth.KnownHostsFile, err)
	}
	port := ep.Port
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	hostPort := net.JoinHostPort(ep.Host, strconv.Itoa(port))
	// Setting the algorithms from known_hosts makes the server present the
	// key type we know instead of whichever it prefers.
	keys.HostKeyCallbackHelper = gitssh.HostKeyCallbackHelper{
		HostKeyCallback:   db.HostKeyCallback(),
		HostKeyAlgorithms: db.HostKeyAlgorithms(hostPort),
	}
	s.auth = sshAuth{keys}
	return nil
}

// sshAuth adds a connect timeout to public-key authentication.
type sshAuth struct{ *gitssh.PublicKeys }

func (a sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cfg, err := a.PublicKeys.ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = sshConnectTimeout
	return cfg, nil
}

func (s *gitSource) String() string { return describe(s.display, s.branch, s.sub) }

// Fetch fetches the branch and returns the revision at its head. When the
// head did not move it returns the previous revision without reading the
// tree again.
func (s *gitSource) Fetch(ctx context.Context) (Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	repo, err := s.openCache()
	if err != nil {
		return Revision{}, fmt.Errorf("git %s: cache %s: %w", s.display, s.cacheDir, err)
	}
	head, err := s.fetchHead(ctx, repo)
	if err != nil {
		return Revision{}, err
	}
	if s.last != nil && s.last.commit == head {
		s.logger.Debug("git branch unchanged", "commit", head.String())
		return s.last.rev, nil
	}
	repo = s.maybeRepack(repo)
	state, err := s.read(ctx, repo, head)
	if err != nil {
		return Revision{}, err
	}
	s.last = state
	s.logger.Debug("git revision read", "commit", head.String(), "files", len(state.rev.Files))
	return state.rev, nil
}

// openCache opens the bare cache repository, creating it on first use. A
// cache that cannot be opened is only a copy, so it is recreated.
func (s *gitSource) openCache() (*git.Repository, error) {
	if s.repo != nil {
		return s.repo, nil
	}
	repo, err := git.PlainOpen(s.cacheDir)
	switch {
	case err == nil:
	case errors.Is(err, git.ErrRepositoryNotExists):
		s.logger.Info("cloning git source", "cache", s.cacheDir)
		if repo, err = s.initCache(); err != nil {
			return nil, err
		}
	default:
		s.logger.Warn("git cache unreadable, cloning again", "cache", s.cacheDir, "error", err)
		if err := os.RemoveAll(s.cacheDir); err != nil {
			return nil, err
		}
		if repo, err = s.initCache(); err != nil {
			return nil, err
		}
	}
	s.repo = repo
	return repo, nil
}

func (s *gitSource) initCache() (*git.Repository, error) {
	if err := os.MkdirAll(s.cacheDir, 0o700); err != nil {
		return nil, err
	}
	return git.PlainInit(s.cacheDir, true)
}

// fetchHead fetches the followed branch into the cache and returns the
// commit it points to.
func (s *gitSource) fetchHead(ctx context.Context, repo *git.Repository) (plumbing.Hash, error) {
	local := plumbing.NewRemoteReferenceName(remoteName, s.branch)
	// The remote is not saved in the cache's config: it exists only for the
	// duration of the fetch. "+" accepts force-pushes.
	remote := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: remoteName, URLs: []string{s.url}})
	err := remote.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(s.branch).String() + ":" + local.String())},
		Auth:       s.auth,
		CABundle:   s.caBundle,
		Tags:       git.NoTags,
		Force:      true,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, git.NoMatchingRefSpecError{}):
		return plumbing.ZeroHash, fmt.Errorf("git %s: %w: %q", s.display, ErrBranchNotFound, s.branch)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return plumbing.ZeroHash, fmt.Errorf("git %s: %w: %q (the repository has no commits)", s.display, ErrBranchNotFound, s.branch)
	default:
		return plumbing.ZeroHash, s.wrapError(fmt.Sprintf("git fetch %s (branch %s)", s.display, s.branch), err, fetchHint(err))
	}
	ref, err := repo.Reference(local, true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git %s: reading fetched branch %s: %w", s.display, s.branch, err)
	}
	return ref.Hash(), nil
}

// maybeRepack packs the cache into one packfile once fetches have left more
// than packLimit, and returns the repository to use from then on. Repacking
// also drops objects only a force-pushed-over history referenced. A failure
// costs only speed, so it is logged.
func (s *gitSource) maybeRepack(repo *git.Repository) *git.Repository {
	packed, ok := repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return repo
	}
	packs, err := packed.ObjectPacks()
	if err != nil || len(packs) <= s.packLimit {
		return repo
	}
	start := time.Now()
	err = repo.RepackObjects(&git.RepackConfig{})
	// The open storage indexes the old packs: reopen it either way.
	s.repo = nil
	reopened, openErr := s.openCache()
	if openErr != nil {
		s.logger.Warn("git cache reopen after repack failed", "error", openErr)
		return repo
	}
	if err != nil {
		s.logger.Warn("git cache repack failed", "packs", len(packs), "error", err)
	} else {
		s.logger.Info("git cache repacked", "packs", len(packs), "took", time.Since(start))
	}
	return reopened
}

// fetchHint names the likely remedy for the failures users can fix.
func fetchHint(err error) string {
	var keyErr *knownhosts.KeyError
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return " (authentication failed: check the token and username)"
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return " (access denied: the credentials lack read access)"
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return " (check the URL, and that the credentials can see the repository)"
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return " (host key verification failed: the host is not in the known_hosts file)"
	case errors.As(err, &keyErr):
		return " (host key verification failed: the server's key does not match the known_hosts file)"
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		return " (the server refused the ssh key)"
	}
	return ""
}

// read reads the manifest files of commit head under the sub-path.
func (s *gitSource) read(ctx context.Context, repo *git.Repository, head plumbing.Hash) (*gitState, error) {
	commit, err := repo.CommitObject(head)
	if err != nil {
		return nil, fmt.Errorf("git %s: commit %s: %w", s.display, head, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("git %s: commit %s: tree: %w", s.display, head, err)
	}
	if s.sub != "" {
		if tree, err = tree.Tree(s.sub); err != nil {
			return nil, fmt.Errorf("git %s: %w: %q is not a directory in commit %s of branch %s", s.display, ErrPathNotFound, s.sub, head.String()[:12], s.branch)
		}
	}
	if s.onTreeRead != nil {
		s.onTreeRead()
	}

	var previous map[plumbing.Hash][]byte
	if s.last != nil {
		previous = s.last.blobs
	}
	w := treeWalker{repo: repo, previous: previous, blobs: make(map[plumbing.Hash][]byte)}
	// Paths stay relative to the repository root, so a diagnostic names
	// the file as the user sees it in their repository.
	if err := w.walk(ctx, tree, s.sub); err != nil {
		return nil, fmt.Errorf("git %s: commit %s: %w", s.display, head, err)
	}
	slices.SortFunc(w.files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })

	return &gitState{
		commit: head,
		blobs:  w.blobs,
		rev: Revision{
			ID:      head.String(),
			Subject: subject(commit.Message),
			Author:  fmt.Sprintf("%s <%s>", commit.Author.Name, commit.Author.Email),
			Time:    commit.Committer.When,
			Files:   w.files,
		},
	}, nil
}

// treeWalker collects manifest files from a tree, reusing the content of
// blobs the previous revision already read.
type treeWalker struct {
	repo     *git.Repository
	previous map[plumbing.Hash][]byte
	blobs    map[plumbing.Hash][]byte
	files    []File
}

func (w *treeWalker) walk(ctx context.Context, tree *object.Tree, prefix string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range tree.Entries {
		if isHidden(e.Name) {
			continue
		}
		p := path.Join(prefix, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := w.repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := w.walk(ctx, sub, p); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if !isManifestFile(e.Name) {
				continue
			}
			data, err := w.blob(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			w.files = append(w.files, File{Path: p, Data: data})
		}
		// Symlinks and submodules are not followed: their targets are not
		// part of this tree.
	}
	return nil
}

func (w *treeWalker) blob(h plumbing.Hash) ([]byte, error) {
	if data, ok := w.blobs[h]; ok {
		return data, nil
	}
	data, ok := w.previous[h]
	if !ok {
		blob, err := w.repo.BlobObject(h)
		if err != nil {
			return nil, err
		}
		r, err := blob.Reader()
		if err != nil {
			return nil, err
		}
		data = make([]byte, blob.Size)
		_, err = io.ReadFull(r, data)
		r.Close()
		if err != nil {
			return nil, err
		}
	}
	w.blobs[h] = data
	return data, nil
}

// subject returns the first line of a commit message.
func subject(message string) string {
	line, _, _ := strings.Cut(strings.TrimLeft(message, "\n"), "\n")
	return strings.TrimSpace(line)
}

// wrapError wraps err as "context: cause hint" on one line, with the
// source's secrets removed from the message. The cause stays reachable for
// errors.Is and errors.As.
func (s *gitSource) wrapError(context string, err error, hint string) error {
	msg := context + ": " + strings.Join(strings.Fields(err.Error()), " ") + hint
	for _, secret := range s.secrets {
		msg = strings.ReplaceAll(msg, secret, "[redacted]")
	}
	return &sourceError{msg: msg, err: err}
}

type sourceError struct {
	msg string
	err error
}

func (e *sourceError) Error() string { return e.msg }
func (e *sourceError) Unwrap() error { return e.err }

func appendSecret(secrets []string, secret string) []string {
	if len(secret) < minSecretLen {
		return secrets
	}
	return append(secrets, secret, url.QueryEscape(secret), url.PathEscape(secret))
}
