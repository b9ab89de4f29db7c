package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/api"
	"berth.dev/berth/api/client"
	"berth.dev/berth/reconciler/pki"
)

// syncBuffer is a log sink shared by the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cluster is a controller API in multi-host mode over real TLS on loopback.
type cluster struct {
	url    string
	dir    string
	ca     *pki.CA
	tokens *pki.Tokens
	stub   *stub
	logs   *syncBuffer
}

const testWebhookSecret = "hook-secret"

func startCluster(t *testing.T, webhookSecret string) *cluster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.EnsureAdminCredentials(dir); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := ca.ServerTLSConfig([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: dir, ca: ca, tokens: pki.NewTokens(dir, ca.Fingerprint()), stub: &stub{}, logs: &syncBuffer{}}
	h := New(c.stub, Options{
		WebhookSecret: webhookSecret,
		Authority:     pki.NewAuthority(ca, c.tokens),
		Logger:        slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ErrorLog = log.New(c.logs, "http: ", 0)
	ts.Listener = tls.NewListener(ts.Listener, tlsCfg)
	ts.Start()
	t.Cleanup(ts.Close)
	c.url = "https://" + ts.Listener.Addr().String()
	return c
}

// join makes node a member through the real join route and returns its
// client configuration.
func (c *cluster) join(t *testing.T, node string) *tls.Config {
	t.Helper()
	token, _, err := c.tokens.Create("test "+node, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.EnsureNodeCredentials(context.Background(), c.url, token, node, filepath.Join(t.TempDir(), node))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (c *cluster) admin(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := pki.LoadAdminCredentials(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// anonymous trusts the CA but presents no certificate.
func (c *cluster) anonymous() *tls.Config {
	return &tls.Config{RootCAs: c.ca.Pool()}
}

// foreign presents a well-formed node certificate for node from another
// CA, trusting the right CA for the server.
func (c *cluster) foreign(t *testing.T, node string) *tls.Config {
	t.Helper()
	other, err := pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	certPEM, err := other.SignCSR(csr, node, pki.RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	cfg, err := pki.ClientTLSConfig(c.ca.CertPEM(), certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func do(t *testing.T, cfg *tls.Config, method, url, body string) (int, string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), nil
}

// samplePath fills a route pattern's wildcards; a route with a wildcard
// not listed here fails the test until someone decides its sample.
func samplePath(t *testing.T, pattern string, node string) (method, path string) {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		t.Fatalf("route %q has no method", pattern)
	}
	path = strings.NewReplacer("{resource}", "pods", "{node}", node, "{action}", "cordon").Replace(path)
	if strings.ContainsAny(path, "{}") {
		t.Fatalf("route %q: give its wildcard a sample value in samplePath", pattern)
	}
	return method, path
}

// TestEveryRouteRequiresItsCredential walks the same route table New
// registers, calling each route as every kind of client.
func TestEveryRouteRequiresItsCredential(t *testing.T) {
	c := startCluster(t, testWebhookSecret)
	const self, other = "n1", "n2"
	clients := []struct {
		name string
		cfg  *tls.Config
		// want maps an access level to the status this client gets; 0
		// means the TLS handshake itself fails.
		want map[access]int
	}{
		{"no client certificate", c.anonymous(), map[access]int{
			accessOpen: 200, accessWebhook: 401, accessJoin: 401, accessAdmin: 401, accessNode: 401}},
		{"certificate from another CA", c.foreign(t, self), map[access]int{
			accessOpen: 0, accessWebhook: 0, accessJoin: 0, accessAdmin: 0, accessNode: 0}},
		{"certificate of another node", c.join(t, other), map[access]int{
			accessOpen: 200, accessWebhook: 401, accessJoin: 401, accessAdmin: 403, accessNode: 403}},
		{"certificate of the node itself", c.join(t, self), map[access]int{
			accessOpen: 200, accessWebhook: 401, accessJoin: 401, accessAdmin: 403, accessNode: 2}},
		{"admin certificate", c.admin(t), map[access]int{
			accessOpen: 200, accessWebhook: 401, accessJoin: 401, accessAdmin: 2, accessNode: 403}},
	}
	routes := (&server{}).routes()
	seen := map[access]bool{}
	for _, rt := range routes {
		seen[rt.access] = true
		method, path := samplePath(t, rt.pattern, self)
		for _, cl := range clients {
			t.Run(rt.pattern+"/"+cl.name, func(t *testing.T) {
				want, ok := cl.want[rt.access]
				if !ok {
					t.Fatalf("no expectation for access %s", rt.access)
				}
				// A body every POST route can read: a valid report for n1,
				// no join token, no webhook signature.
				code, body, err := do(t, cl.cfg, method, c.url+path, `{"node":"n1"}`)
				switch {
				case want == 0:
					if err == nil || !strings.Contains(err.Error(), "tls") {
						t.Fatalf("got %d %s, want the TLS handshake refused", code, body)
					}
				case err != nil:
					t.Fatal(err)
				case want == 2:
					if code < 200 || code > 299 {
						t.Fatalf("status %d (%s), want 2xx", code, body)
					}
				case code != want:
					t.Fatalf("status %d (%s), want %d", code, body, want)
				}
			})
		}
	}
	for _, a := range []access{accessOpen, accessWebhook, accessJoin, accessAdmin, accessNode} {
		if !seen[a] {
			t.Errorf("no route with access %s: the table above tests nothing for it", a)
		}
	}
	if got := c.stub.reports.Load(); got != 1 {
		t.Errorf("%d reports reached the controller, want only the node's own", got)
	}
	if got := c.stub.fetches.Load(); got != 0 {
		t.Errorf("%d unsigned webhooks reached the controller", got)
	}
}

func TestJoinTokens(t *testing.T) {
	c := startCluster(t, testWebhookSecret)
	now := time.Now()
	c.tokens.Clock = func() time.Time { return now }
	valid, _, err := c.tokens.Create("valid", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, _ := c.tokens.Create("expired", time.Minute)
	revoked, revokedInfo, _ := c.tokens.Create("revoked", time.Hour)
	if err := c.tokens.Revoke(revokedInfo.ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	parts := strings.Split(valid, ".")
	wrong := strings.Join([]string{parts[0], parts[1], strings.Repeat("x", 16), parts[3]}, ".")

	tests := []struct {
		name, token string
		wantErr     string // "" for success
	}{
		{"valid token", valid, ""},
		{"wrong secret", wrong, "401 Unauthorized: join token refused: token " + parts[1] + " is not known"},
		{"expired token", expired, "401 Unauthorized: join token refused: token " + strings.Split(expired, ".")[1] + " expired"},
		{"revoked token", revoked, "401 Unauthorized: join token refused: token " + revokedInfo.ID + " was revoked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "agent")
			err := pki.Join(context.Background(), c.url, tc.token, "web-1", dir)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := pki.LoadNodeCredentials(dir)
				if err != nil {
					t.Fatal(err)
				}
				// The joined node talks to its routes through the API client.
				cl := client.NewTLS(c.url, cfg)
				if err := cl.Report(context.Background(), api.NodeReport{Node: "web-1"}); err != nil {
					t.Fatalf("report after join: %v", err)
				}
				if _, err := cl.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "403") {
					t.Fatalf("a node read the controller status: err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	// Token secrets are never logged nor echoed, whatever happened.
	logs := c.logs.String()
	for _, tok := range []string{valid, wrong, expired, revoked} {
		if secret := strings.Split(tok, ".")[2]; strings.Contains(logs, secret) {
			t.Fatalf("the log contains a token secret:\n%s", logs)
		}
	}
	if !regexp.MustCompile(`node joined.*node=web-1 tokenID=` + parts[1]).MatchString(logs) {
		t.Fatalf("the join is not logged with its token id:\n%s", logs)
	}
	list, err := c.tokens.List()
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := json.Marshal(list)
	for _, tok := range []string{valid, expired, revoked} {
		if strings.Contains(string(listed), strings.Split(tok, ".")[2]) {
			t.Fatal("the token list contains a secret")
		}
	}
}

func TestJoinRefusesMalformedRequests(t *testing.T) {
	c := startCluster(t, testWebhookSecret)
	token, _, err := c.tokens.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		want       int
	}{
		{"not JSON", "{", 400},
		{"no certificate request", `{"token":"` + token + `","nodeName":"web-1"}`, 400},
		{"bad node name", `{"token":"` + token + `","nodeName":"Web 1","csrPEM":"x"}`, 400},
		{"bad token, bad everything", `{"token":"nope","nodeName":"Web 1"}`, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := do(t, c.anonymous(), http.MethodPost, c.url+pki.JoinPath, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("status %d (%s), want %d", code, body, tc.want)
			}
			if strings.Contains(body, strings.Split(token, ".")[2]) {
				t.Fatalf("the answer echoes the token secret: %s", body)
			}
		})
	}
}

func TestWebhookInMultiHostMode(t *testing.T) {
	const body = `{"ref":"refs/heads/main"}`
	t.Run("signed, without a client certificate", func(t *testing.T) {
		c := startCluster(t, testWebhookSecret)
		req, _ := http.NewRequest(http.MethodPost, c.url+"/hooks/git", strings.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sign(testWebhookSecret, body))
		tr := &http.Transport{TLSClientConfig: c.anonymous()}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || c.stub.fetches.Load() != 1 {
			t.Fatalf("status %d, %d fetches; want 202 and a fetch", resp.StatusCode, c.stub.fetches.Load())
		}
	})
	t.Run("no secret configured", func(t *testing.T) {
		c := startCluster(t, "")
		code, resp, err := do(t, c.admin(t), http.MethodPost, c.url+"/hooks/git", body)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusForbidden || !strings.Contains(resp, "--webhook-secret") || c.stub.fetches.Load() != 0 {
			t.Fatalf("status %d (%s), %d fetches; want 403 naming --webhook-secret", code, resp, c.stub.fetches.Load())
		}
	})
}

func TestAdminThroughTheAPIClient(t *testing.T) {
	c := startCluster(t, testWebhookSecret)
	cl := client.NewTLS(c.url, c.admin(t))
	if _, err := cl.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := cl.Report(context.Background(), api.NodeReport{Node: "n1"}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("the admin posted a node report: err = %v", err)
	}
}

// Plain HTTP (berth up) keeps every route open and admits no nodes.
func TestSingleHostModeAdmitsNoNodes(t *testing.T) {
	rec := httptest.NewRecorder()
	New(&stub{}, Options{}).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, pki.JoinPath, strings.NewReader("{}")))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
}
