package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// File names inside a PKI directory. The controller's directory holds the CA,
// the admin bundle and the token list; an agent's holds its node bundle.
const (
	CACertFile    = "ca.crt"
	CAKeyFile     = "ca.key"
	AdminCertFile = "admin.crt"
	AdminKeyFile  = "admin.key"
	NodeCertFile  = "node.crt"
	NodeKeyFile   = "node.key"
	TokensFile    = "tokens.json"
	lockFile      = ".lock"
)

// Dir is where berth keeps these files under a controller's or an agent's
// data directory: <data-dir>/pki.
func Dir(dataDir string) string { return filepath.Join(dataDir, "pki") }

// writeFile replaces path atomically with data, mode 0600: a reader sees the
// old file or the new one, never half of one, and a crash leaves no partial
// key behind.
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readPrivate reads a file that must not be readable by anyone but its
// owner, refusing it otherwise as OpenSSH does for private keys: a key that
// others could have read is no longer a secret.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %#o, readable by others: run chmod 600 %s", path, perm, path)
	}
	return os.ReadFile(path)
}

// lockDir takes an exclusive advisory lock on dir, creating it (0700) if
// needed. The controller and `berth token` commands run as separate
// processes over the same files; the lock serialises their
// read-modify-write cycles.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}
