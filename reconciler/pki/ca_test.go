package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %#o, want %#o", filepath.Base(path), got, want)
	}
}

func TestLoadOrCreateCAPersists(t *testing.T) {
	ca, dir := newTestCA(t)
	assertMode(t, dir, 0o700)
	assertMode(t, filepath.Join(dir, CACertFile), 0o600)
	assertMode(t, filepath.Join(dir, CAKeyFile), 0o600)
	if !ca.Certificate().IsCA || ca.Certificate().PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA certificate: IsCA %v, key %v", ca.Certificate().IsCA, ca.Certificate().PublicKeyAlgorithm)
	}
	if life := ca.Certificate().NotAfter.Sub(ca.Certificate().NotBefore); life < CAValidity {
		t.Errorf("CA valid for %s, want at least %s", life, CAValidity)
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Fingerprint() != ca.Fingerprint() {
		t.Fatal("second start created a new CA instead of loading the first")
	}
	if len(ca.Fingerprint()) != 64 {
		t.Fatalf("fingerprint %q: want 64 hex digits", ca.Fingerprint())
	}
}

func TestLoadOrCreateCARefusesHalfACA(t *testing.T) {
	for _, missing := range []string{CACertFile, CAKeyFile} {
		t.Run("without "+missing, func(t *testing.T) {
			_, dir := newTestCA(t)
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "only one of") {
				t.Fatalf("err = %v, want a refusal to replace the CA", err)
			}
		})
	}
}

func TestLoadCARefusesReadableKey(t *testing.T) {
	_, dir := newTestCA(t)
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v, want a refusal of a world-readable key", err)
	}
}

func TestServerCertificateNames(t *testing.T) {
	ca, _ := newTestCA(t)
	cert, err := ca.ServerCertificate([]string{"berth.example.com", "0.0.0.0", "", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	for _, name := range []string{"berth.example.com", "localhost", "127.0.0.1", "192.0.2.7"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate does not cover %s: %v", name, err)
		}
	}
	if host, err := os.Hostname(); err == nil {
		if !slices.Contains(leaf.DNSNames, host) && leaf.VerifyHostname(host) != nil {
			t.Errorf("server certificate does not cover the host name %s", host)
		}
	}
	for _, ip := range leaf.IPAddresses {
		if ip.IsUnspecified() {
			t.Errorf("server certificate names the unspecified address %s", ip)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("server certificate does not verify against the CA: %v", err)
	}
	if len(cert.Certificate) != 2 || Fingerprint(mustParse(t, cert.Certificate[1])) != ca.Fingerprint() {
		t.Fatal("server chain must carry the CA so joining agents can match their pin")
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCSR(t *testing.T, cn string, dnsNames ...string) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestSignCSR(t *testing.T) {
	ca, _ := newTestCA(t)
	tests := []struct {
		name     string
		csr      *x509.CertificateRequest
		node     string
		role     string
		wantCN   string
		wantErr  error
		wantRole Identity
	}{
		{"node", newCSR(t, "node:web-1"), "web-1", RoleNode, "node:web-1", nil, Identity{Role: RoleNode, Node: "web-1"}},
		{"the request's subject is ignored", newCSR(t, "admin", "evil.example.com"), "web-1", RoleNode, "node:web-1", nil, Identity{Role: RoleNode, Node: "web-1"}},
		{"admin", newCSR(t, ""), "", RoleAdmin, "admin", nil, Identity{Role: RoleAdmin}},
		{"node name with a colon", newCSR(t, ""), "a:b", RoleNode, "", ErrInvalidRequest, Identity{}},
		{"upper-case node name", newCSR(t, ""), "Web", RoleNode, "", ErrInvalidRequest, Identity{}},
		{"empty node name", newCSR(t, ""), "", RoleNode, "", ErrInvalidRequest, Identity{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, err := ca.SignCSR(tc.csr, tc.node, tc.role)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cert, err := parseCertPEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != tc.wantCN || len(cert.DNSNames) != 0 {
				t.Fatalf("CN %q, DNS names %v; want CN %q and no names", cert.Subject.CommonName, cert.DNSNames, tc.wantCN)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("client certificate does not verify for client auth: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Fatal("a client certificate must not serve as a server certificate")
			}
			if life := time.Until(cert.NotAfter); life > LeafValidity || life < LeafValidity-time.Hour {
				t.Errorf("certificate valid for %s more, want about %s", life, LeafValidity)
			}
			id, err := IdentityOf(cert)
			if err != nil || id != tc.wantRole {
				t.Fatalf("identity %+v, %v; want %+v", id, err, tc.wantRole)
			}
		})
	}
}

func TestSignCSRChecksTheRequestSignature(t *testing.T) {
	ca, _ := newTestCA(t)
	csr := newCSR(t, "")
	csr.Signature[len(csr.Signature)-1] ^= 0xff
	if _, err := ca.SignCSR(csr, "web-1", RoleNode); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("err = %v, want ErrInvalidRequest for a tampered request", err)
	}
}

func TestIdentityOfUnknownCommonName(t *testing.T) {
	for _, cn := range []string{"berth controller", "node:", "node:Bad Name", "Admin", ""} {
		if id, err := IdentityOf(&x509.Certificate{Subject: pkix.Name{CommonName: cn}}); err == nil {
			t.Errorf("CN %q read as %+v, want an error", cn, id)
		}
	}
}

func TestAdminCredentials(t *testing.T) {
	ca, dir := newTestCA(t)
	if err := ca.EnsureAdminCredentials(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{AdminCertFile, AdminKeyFile, CACertFile} {
		assertMode(t, filepath.Join(dir, f), 0o600)
	}
	first, err := os.ReadFile(filepath.Join(dir, AdminCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.EnsureAdminCredentials(dir); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(dir, AdminCertFile))
	if string(first) != string(second) {
		t.Fatal("a restart replaced the admin certificate")
	}
	cfg, err := LoadAdminCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustParse(t, cfg.Certificates[0].Certificate[0])
	if id, err := IdentityOf(leaf); err != nil || id.Role != RoleAdmin {
		t.Fatalf("admin bundle identity %+v, %v", id, err)
	}
	if err := os.Chmod(filepath.Join(dir, AdminKeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAdminCredentials(dir); err == nil {
		t.Fatal("an admin key readable by the group was accepted")
	}
}
