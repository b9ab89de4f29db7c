package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newTestTokens(t *testing.T) (*Tokens, *clock, *CA, string) {
	t.Helper()
	ca, dir := newTestCA(t)
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	tokens := NewTokens(dir, ca.Fingerprint())
	tokens.Clock = clk.now
	return tokens, clk, ca, dir
}

var tokenShape = regexp.MustCompile(`^berth1\.[a-z0-9]{6}\.[a-z0-9]{16}\.[0-9a-f]{64}$`)

func secretOf(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 4 {
		t.Fatalf("token has %d parts", len(parts))
	}
	return parts[2]
}

func TestTokenLifecycle(t *testing.T) {
	tokens, clk, ca, dir := newTestTokens(t)
	token, info, err := tokens.Create("rack 4", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !tokenShape.MatchString(token) {
		t.Fatalf("token %q does not have the documented shape", token)
	}
	if !strings.HasSuffix(token, "."+ca.Fingerprint()) || !strings.Contains(token, "."+info.ID+".") {
		t.Fatal("token must carry its id and the CA fingerprint")
	}
	assertMode(t, filepath.Join(dir, TokensFile), 0o600)

	id, err := tokens.Validate(token)
	if err != nil || id != info.ID {
		t.Fatalf("Validate = %q, %v; want %q", id, err, info.ID)
	}
	if err := tokens.MarkUsed(id, "web-1"); err != nil {
		t.Fatal(err)
	}
	if err := tokens.MarkUsed(id, "web-1"); err != nil {
		t.Fatal(err)
	}
	if err := tokens.MarkUsed(id, "web-2"); err != nil {
		t.Fatal(err)
	}
	// Reusable until expiry, as kubeadm's bootstrap tokens are.
	if _, err := tokens.Validate(token); err != nil {
		t.Fatalf("a used token was refused before its expiry: %v", err)
	}
	list, err := tokens.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Description != "rack 4" || strings.Join(list[0].UsedBy, ",") != "web-1,web-2" ||
		!list[0].Expires.Equal(clk.now().Add(time.Hour)) || list[0].State(clk.now()) != TokenValid {
		t.Fatalf("List = %+v", list)
	}

	clk.add(time.Hour)
	if _, err := tokens.Validate(token); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: err = %v", err)
	}
	if list, _ := tokens.List(); list[0].State(clk.now()) != TokenExpired {
		t.Fatalf("state %s, want expired", list[0].State(clk.now()))
	}
}

func TestTokenWithoutExpiryAndRevocation(t *testing.T) {
	tokens, clk, _, _ := newTestTokens(t)
	token, info, err := tokens.Create("", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Expires.IsZero() {
		t.Fatalf("ttl 0 gave expiry %s, want none", info.Expires)
	}
	clk.add(50 * 365 * 24 * time.Hour)
	if _, err := tokens.Validate(token); err != nil {
		t.Fatalf("a token without expiry was refused 50 years on: %v", err)
	}
	if err := tokens.Revoke(info.ID); err != nil {
		t.Fatal(err)
	}
	if err := tokens.Revoke(info.ID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := tokens.Validate(token); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: err = %v", err)
	}
	if err := tokens.Revoke("zzzzzz"); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("revoking an unknown id: err = %v", err)
	}
	if _, _, err := tokens.Create("", -time.Second); err == nil {
		t.Fatal("a negative ttl was accepted")
	}
}

func TestValidateRefusals(t *testing.T) {
	tokens, _, ca, _ := newTestTokens(t)
	good, info, err := tokens.Create("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret := secretOf(t, good)
	otherSecret := strings.Repeat("a", 16)
	if otherSecret == secret {
		otherSecret = strings.Repeat("b", 16)
	}
	pin := ca.Fingerprint()
	tests := []struct {
		name, token, wantMsg string
	}{
		{"empty", "", "malformed token"},
		{"kubeadm token without a pin", info.ID + "." + secret, "malformed token"},
		{"other version", "berth2." + info.ID + "." + secret + "." + pin, "malformed token"},
		{"short secret", "berth1." + info.ID + "." + secret[:15] + "." + pin, "malformed token id or secret"},
		{"upper-case secret", "berth1." + info.ID + "." + strings.ToUpper(secret) + "." + pin, "malformed token id or secret"},
		{"pin not hex", "berth1." + info.ID + "." + secret + "." + strings.Repeat("g", 64), "malformed CA fingerprint"},
		{"another controller's pin", "berth1." + info.ID + "." + secret + "." + strings.Repeat("0", 64), "another controller"},
		{"unknown id", "berth1.zzzzzz." + secret + "." + pin, "not known"},
		{"wrong secret", "berth1." + info.ID + "." + otherSecret + "." + pin, "not known"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tokens.Validate(tc.token)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want ErrInvalidToken saying %q", err, tc.wantMsg)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), otherSecret) {
				t.Fatalf("error %q repeats a secret", err)
			}
		})
	}
}

func TestTokenSecretsAreNeverStoredOrListed(t *testing.T) {
	tokens, _, _, dir := newTestTokens(t)
	var secrets []string
	for i := range 3 {
		token, _, err := tokens.Create(fmt.Sprint("token ", i), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secretOf(t, token))
	}
	list, err := tokens.List()
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := json.Marshal(list)
	stored, err := os.ReadFile(filepath.Join(dir, TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(listed), s) || strings.Contains(fmt.Sprintf("%+v", list), s) {
			t.Fatal("List output contains a token secret")
		}
		if strings.Contains(string(stored), s) {
			t.Fatal("the token file contains a token secret")
		}
		if !strings.Contains(string(stored), hashSecret(s)) {
			t.Fatal("the token file lacks the secret's hash")
		}
	}
}

// Several processes (controller, `berth token create`) share the file; the
// directory lock keeps concurrent writers from losing each other's tokens.
func TestTokensConcurrentWriters(t *testing.T) {
	_, _, ca, dir := newTestTokens(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A store per goroutine, as separate processes would have.
			if _, _, err := NewTokens(dir, ca.Fingerprint()).Create("", time.Hour); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	list, err := NewTokens(dir, ca.Fingerprint()).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("%d tokens stored, want %d", len(list), n)
	}
}
