package sources

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// --- HTTPS: git http-backend behind a TLS server with basic auth ----------

// serveHTTPS serves the remote's bare repository over smart HTTP with TLS,
// accepting only user:token. It returns the repository URL and the server's
// CA certificate in PEM.
func serveHTTPS(t *testing.T, r *testRemote, user, token string) (string, []byte) {
	t.Helper()
	execPath := runGit(t, r.work, ada, "--exec-path")
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Root: "/git",
		Env: []string{
			"GIT_PROJECT_ROOT=" + filepath.Dir(r.bare),
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
		},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, req)
	}))
	// The unknown-CA test makes the client hang up mid-handshake; that is
	// expected, not worth a line in the output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv.URL + "/git/" + filepath.Base(r.bare), ca
}

func TestGitHTTPSToken(t *testing.T) {
	const token = "glpat-test-token-0123456789"
	r := newTestRemote(t)
	head := r.commitAndPush("over https", map[string]string{"app.yaml": "app\n"})
	repoURL, ca := serveHTTPS(t, r, "git", token)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("right token", func(t *testing.T) {
		src := openGit(t, Spec{Repo: repoURL, Auth: Auth{Token: token, CABundle: ca}})
		if rev := mustFetch(t, src); rev.ID != head {
			t.Fatalf("ID = %s, want %s", rev.ID, head)
		}
		if strings.Contains(src.String(), token) {
			t.Fatalf("String() leaks the token: %s", src)
		}
	})

	t.Run("CA file", func(t *testing.T) {
		src := openGit(t, Spec{Repo: repoURL, Auth: Auth{Token: token, CAFile: caFile}})
		if rev := mustFetch(t, src); rev.ID != head {
			t.Fatalf("ID = %s, want %s", rev.ID, head)
		}
	})

	t.Run("token in the URL", func(t *testing.T) {
		withCreds := strings.Replace(repoURL, "https://", "https://git:"+token+"@", 1)
		src := openGit(t, Spec{Repo: withCreds, Auth: Auth{CABundle: ca}})
		if rev := mustFetch(t, src); rev.ID != head {
			t.Fatalf("ID = %s, want %s", rev.ID, head)
		}
		if strings.Contains(src.String(), token) {
			t.Fatalf("String() leaks the token: %s", src)
		}
		entries, err := os.ReadFile(filepath.Join(src.cacheDir, "config"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(entries), token) {
			t.Fatalf("the cache's config stores the token:\n%s", entries)
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		const wrong = "glpat-wrong-token-9876543210"
		err := fetchErr(t, openGit(t, Spec{Repo: repoURL, Auth: Auth{Token: wrong, CABundle: ca}}))
		t.Logf("error: %v", err)
		if !errors.Is(err, transport.ErrAuthenticationRequired) || !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("error = %v; want an authentication error", err)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("error leaks the token: %v", err)
		}
	})

	t.Run("wrong username", func(t *testing.T) {
		err := fetchErr(t, openGit(t, Spec{Repo: repoURL, Auth: Auth{Token: token, Username: "oauth2", CABundle: ca}}))
		t.Logf("error: %v", err)
		if !errors.Is(err, transport.ErrAuthenticationRequired) {
			t.Errorf("error = %v; want an authentication error", err)
		}
	})

	t.Run("unknown CA", func(t *testing.T) {
		err := fetchErr(t, openGit(t, Spec{Repo: repoURL, Auth: Auth{Token: token}}))
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error = %v; want a certificate verification error", err)
		}
	})
}

// --- SSH: an in-process server running git-upload-pack --------------------

type sshGitServer struct {
	addr    string
	hostKey ssh.Signer
}

// serveSSH serves root's repositories over SSH on 127.0.0.1 to clients
// holding the authorized key, running git-upload-pack for exec requests.
func serveSSH(t *testing.T, root string, authorized ssh.PublicKey) *sshGitServer {
	t.Helper()
	hostKey := newSSHKey(t)
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostKey)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serveSSHConn(t, c, cfg, root) })
		}
	})
	return &sshGitServer{addr: ln.Addr().String(), hostKey: hostKey}
}

func serveSSHConn(t *testing.T, c net.Conn, cfg *ssh.ServerConfig, root string) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return // refused handshakes are part of the tests
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		go serveSSHSession(t, ch, requests, root)
	}
}

func serveSSHSession(t *testing.T, ch ssh.Channel, requests <-chan *ssh.Request, root string) {
	defer ch.Close()
	for req := range requests {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		prog, arg, _ := strings.Cut(payload.Command, " ")
		repo := filepath.Clean(strings.Trim(arg, "'"))
		if prog != "git-upload-pack" || !strings.HasPrefix(repo, root+string(filepath.Separator)) {
			t.Errorf("ssh server: unexpected command %q", payload.Command)
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)

		cmd := exec.Command("git-upload-pack", repo)
		cmd.Stdout = ch
		cmd.Stderr = ch.Stderr()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return
		}
		go func() {
			_, _ = io.Copy(stdin, ch)
			stdin.Close()
		}()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func newSSHKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// writeSSHKey writes a fresh ed25519 client key (encrypted when passphrase
// is set) and returns its file and public key.
func writeSSHKey(t *testing.T, passphrase string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "berth test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "berth test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return file, sshPub
}

func writeKnownHosts(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if err := os.WriteFile(file, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestGitSSH(t *testing.T) {
	const passphrase = "correct horse battery staple"
	r := newTestRemote(t)
	head := r.commitAndPush("over ssh", map[string]string{"app.yaml": "app\n"})
	keyFile, pub := writeSSHKey(t, "")
	srv := serveSSH(t, filepath.Dir(r.bare), pub)
	repoURL := "ssh://git@" + srv.addr + r.bare
	knownHosts := writeKnownHosts(t, srv.addr, srv.hostKey.PublicKey())

	t.Run("known host", func(t *testing.T) {
		src := openGit(t, Spec{Repo: repoURL, Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: knownHosts}})
		if rev := mustFetch(t, src); rev.ID != head {
			t.Fatalf("ID = %s, want %s", rev.ID, head)
		}
	})

	t.Run("host key mismatch", func(t *testing.T) {
		impostor := writeKnownHosts(t, srv.addr, newSSHKey(t).PublicKey())
		err := fetchErr(t, openGit(t, Spec{Repo: repoURL, Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: impostor}}))
		t.Logf("error: %v", err)
		var keyErr *knownhosts.KeyError
		if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("error = %v; want a host key mismatch", err)
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		other := writeKnownHosts(t, "192.0.2.1:22", srv.hostKey.PublicKey())
		err := fetchErr(t, openGit(t, Spec{Repo: repoURL, Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: other}}))
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "not in the known_hosts") {
			t.Errorf("error = %v; want an unknown host error", err)
		}
	})

	t.Run("known_hosts required", func(t *testing.T) {
		_, err := Open(Spec{Repo: repoURL, CacheDir: t.TempDir(), Auth: Auth{SSHKeyFile: keyFile}}, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), "known_hosts") {
			t.Errorf("Open error = %v; want one asking for a known_hosts file", err)
		}
	})

	t.Run("key not authorized", func(t *testing.T) {
		stranger, _ := writeSSHKey(t, "")
		err := fetchErr(t, openGit(t, Spec{Repo: repoURL, Auth: Auth{SSHKeyFile: stranger, KnownHostsFile: knownHosts}}))
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "refused the ssh key") {
			t.Errorf("error = %v; want the key refusal named", err)
		}
	})

	t.Run("encrypted key", func(t *testing.T) {
		encrypted, encPub := writeSSHKey(t, passphrase)
		srv := serveSSH(t, filepath.Dir(r.bare), encPub)
		repoURL := "ssh://git@" + srv.addr + r.bare
		knownHosts := writeKnownHosts(t, srv.addr, srv.hostKey.PublicKey())

		src := openGit(t, Spec{Repo: repoURL, Auth: Auth{SSHKeyFile: encrypted, SSHKeyPassphrase: passphrase, KnownHostsFile: knownHosts}})
		if rev := mustFetch(t, src); rev.ID != head {
			t.Fatalf("ID = %s, want %s", rev.ID, head)
		}

		const wrong = "incorrect horse battery"
		_, err := Open(Spec{Repo: repoURL, CacheDir: t.TempDir(), Auth: Auth{SSHKeyFile: encrypted, SSHKeyPassphrase: wrong, KnownHostsFile: knownHosts}}, testLogger(t))
		if err == nil || strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), encrypted) {
			t.Errorf("wrong passphrase: Open error = %v; want one naming the key file, without the passphrase", err)
		}
	})
}
