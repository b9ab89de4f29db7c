package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// joinServer serves only the join route, straight from an Authority, over
// TLS with cfg. The full API is tested in the server package.
func joinServer(t *testing.T, auth *Authority, cfg *tls.Config) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+JoinPath, func(w http.ResponseWriter, r *http.Request) {
		var req JoinRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := auth.Admit(req)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(resp)
	})
	ts := httptest.NewUnstartedServer(mux)
	// Refused handshakes are what some tests are about; keep them quiet.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.Listener = tls.NewListener(ts.Listener, cfg)
	ts.Start()
	t.Cleanup(ts.Close)
	return "https://" + ts.Listener.Addr().String()
}

func newJoinFixture(t *testing.T) (url string, tokens *Tokens, ca *CA) {
	t.Helper()
	tokens, _, ca, _ = newTestTokens(t)
	tokens.Clock = nil
	cfg, err := ca.ServerTLSConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	return joinServer(t, NewAuthority(ca, tokens), cfg), tokens, ca
}

func TestJoinStoresCredentials(t *testing.T) {
	url, tokens, ca := newJoinFixture(t)
	token, info, err := tokens.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent-pki")
	ctx := context.Background()
	if err := Join(ctx, url, token, "web-1", dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CACertFile, NodeCertFile, NodeKeyFile} {
		assertMode(t, filepath.Join(dir, f), 0o600)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if strings.Contains(string(data), secretOf(t, token)) {
			t.Fatalf("%s contains the token secret", e.Name())
		}
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if string(caPEM) != string(ca.CertPEM()) {
		t.Fatal("stored CA differs from the controller's")
	}
	if list, _ := tokens.List(); len(list) != 1 || len(list[0].UsedBy) != 1 || list[0].UsedBy[0] != "web-1" || list[0].ID != info.ID {
		t.Fatalf("token use not recorded: %+v", list)
	}

	// Joined once, the agent needs no token again.
	cfg, err := EnsureNodeCredentials(ctx, url, "", "web-1", dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if leaf.Subject.CommonName != "node:web-1" {
		t.Fatalf("node certificate CN %q", leaf.Subject.CommonName)
	}
	if _, err := EnsureNodeCredentials(ctx, url, "", "web-2", dir); err == nil || !strings.Contains(err.Error(), "not node \"web-2\"") {
		t.Fatalf("credentials of web-1 used as web-2: err = %v", err)
	}
	if _, err := EnsureNodeCredentials(ctx, url, "", "web-3", t.TempDir()); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("no credentials and no token: err = %v", err)
	}
}

func TestEnsureNodeCredentialsJoinsWhenNeeded(t *testing.T) {
	url, tokens, _ := newJoinFixture(t)
	token, _, err := tokens.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg, err := EnsureNodeCredentials(context.Background(), url, token, "web-1", dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatal("client configuration lacks the certificate or the CA")
	}
}

func TestJoinRefusesAControllerWithAnotherCA(t *testing.T) {
	// The token is pinned to CA a; the server answering is served by CA b.
	_, tokensA, _ := newJoinFixture(t)
	urlB, _, _ := newJoinFixture(t)
	token, _, err := tokensA.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent")
	err = Join(context.Background(), urlB, token, "web-1", dir)
	if err == nil || !strings.Contains(err.Error(), "not from the CA pinned") {
		t.Fatalf("err = %v, want the pin to refuse the server", err)
	}
	if strings.Contains(err.Error(), secretOf(t, token)) {
		t.Fatal("the error repeats the token secret")
	}
	if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatal("a refused join left files behind")
	}
}

func TestJoinChecksTheServerName(t *testing.T) {
	tokens, _, ca, _ := newTestTokens(t)
	tokens.Clock = nil
	// A certificate from the right CA, but for another host.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: mustSerial(t),
		Subject:      pkix.Name{CommonName: "elsewhere"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"elsewhere.example.com"},
	}, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}}}
	url := joinServer(t, NewAuthority(ca, tokens), cfg)
	token, _, err := tokens.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := Join(context.Background(), url, token, "web-1", t.TempDir()); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("err = %v, want a host name mismatch", err)
	}
}

func mustSerial(t *testing.T) *big.Int {
	t.Helper()
	s, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJoinRefusesBadArguments(t *testing.T) {
	_, tokens, _ := newJoinFixture(t)
	token, _, err := tokens.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, url, token, node, want string }{
		{"plain http", "http://127.0.0.1:1", token, "web-1", "https://"},
		{"bad node name", "https://127.0.0.1:1", token, "Web 1", "node name"},
		{"malformed token", "https://127.0.0.1:1", "abc.def", "web-1", "malformed token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Join(context.Background(), tc.url, tc.token, tc.node, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
