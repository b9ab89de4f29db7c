// Package pki is berth's small certificate authority: the controller keeps a
// CA in its data directory, issues itself a server certificate, signs node
// agents' client certificates when they present a join token, and writes an
// admin client certificate for the CLI. Agents verify the controller on their
// very first call through the CA fingerprint carried in the token.
//
// Everything here is files in a directory with mode 0600 and the standard
// library's crypto; there is no revocation and no renewal (see
// docs/security.md).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Certificate lifetimes.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	LeafValidity   = 365 * 24 * time.Hour
	clockSkewGrace = 5 * time.Minute
	// serverRenewBefore is how long before its expiry the controller's
	// serving certificate is re-issued, so a controller that runs for more
	// than a year keeps serving.
	serverRenewBefore = 30 * 24 * time.Hour
)

// Roles a client certificate can carry, encoded in its common name.
const (
	RoleNode  = "node"
	RoleAdmin = "admin"
	// NodeCommonNamePrefix precedes the node name in a node certificate's
	// common name: "node:web-1".
	NodeCommonNamePrefix = "node:"
	// AdminCommonName is the common name of admin certificates.
	AdminCommonName = "admin"
)

// CA is the controller's certificate authority.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	now     func() time.Time
}

// LoadOrCreateCA loads the CA from dir (ca.crt, ca.key) or, when neither
// exists, creates a new ECDSA P-256 CA valid for ten years. A directory with
// only one of the two files is an error: silently replacing a CA would
// orphan every node that trusts it.
func LoadOrCreateCA(dir string) (*CA, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	certOK, err := exists(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	keyOK, err := exists(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	switch {
	case certOK && keyOK:
		return LoadCA(dir)
	case certOK || keyOK:
		return nil, fmt.Errorf("%s holds only one of %s and %s; restore the missing file (a new CA would lock out every joined node)", dir, CACertFile, CAKeyFile)
	}
	ca, err := newCA(time.Now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return nil, err
	}
	// Key first: a crash between the writes leaves a lone ca.key, which is
	// refused above rather than silently replaced; deleting it starts over.
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), ca.certPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA loads an existing CA from dir; use it where creating one would be
// wrong (the `berth token` commands).
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	keyPEM, err := readPrivate(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", filepath.Join(dir, CACertFile), err)
	}
	key, err := parseECKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load CA: %s does not belong to %s", CAKeyFile, CACertFile)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", CACertFile)
	}
	return &CA{cert: cert, certPEM: certPEM, key: key, now: time.Now}, nil
}

func newCA(now func() time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	start := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "berth CA", Organization: []string{"berth"}},
		NotBefore:             start.Add(-clockSkewGrace),
		NotAfter:              start.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return &CA{cert: cert, certPEM: encodeCert(der), key: key, now: now}, nil
}

// CertPEM is the CA certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Certificate is the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Fingerprint is the SHA-256 of the CA certificate's DER encoding, in
// lowercase hex: the pin carried in join tokens.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert) }

// Fingerprint is the SHA-256 of cert's DER encoding, in lowercase hex.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ServerCertificate issues a serving certificate for the controller, valid
// for a year, whose names are hosts plus this machine's host name and
// addresses, localhost and the loopback addresses. Unspecified addresses
// (0.0.0.0, ::) and empty strings in hosts are skipped. The chain includes
// the CA so that joining agents can match it against their token's pin.
func (ca *CA) ServerCertificate(hosts []string) (tls.Certificate, error) {
	dnsNames, ips := serverNames(hosts)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	start := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "berth controller", Organization: []string{"berth"}},
		NotBefore:    start.Add(-clockSkewGrace),
		NotAfter:     ca.clampExpiry(start.Add(LeafValidity)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// serverNames splits hosts and the machine's own names into DNS names and
// IP addresses, without duplicates.
func serverNames(hosts []string) ([]string, []net.IP) {
	all := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	if h, err := os.Hostname(); err == nil {
		all = append(all, h)
	}
	// Interface addresses are best effort: a certificate without them still
	// serves every name given explicitly.
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				all = append(all, n.IP.String())
			}
		}
	}
	var dns []string
	var ips []net.IP
	seen := map[string]bool{}
	for _, h := range all {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() || ip.IsLinkLocalUnicast() {
				continue
			}
			ips = append(ips, ip)
			continue
		}
		dns = append(dns, h)
	}
	return dns, ips
}

// ServerTLSConfig is the controller's listener configuration: it serves a
// certificate for hosts (see ServerCertificate), re-issued when it nears
// expiry, and verifies client certificates against the CA when a client
// presents one. Requiring them is left to the HTTP layer, because joining
// agents and Git webhooks have none; a certificate from any other CA fails
// the handshake.
func (ca *CA) ServerTLSConfig(hosts []string) (*tls.Config, error) {
	first, err := ca.ServerCertificate(hosts)
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		cert = &first
	)
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if ca.now().Add(serverRenewBefore).Before(cert.Leaf.NotAfter) {
			return cert, nil
		}
		next, err := ca.ServerCertificate(hosts)
		if err != nil {
			// Keep serving the old certificate until it is really gone.
			return cert, nil
		}
		cert = &next
		return cert, nil
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      ca.Pool(),
	}, nil
}

// SignCSR issues a client certificate for the key in csr, valid for a year.
// role is RoleNode (common name "node:<nodeName>") or RoleAdmin (common name
// "admin"). Nothing but the public key is taken from the request: the
// subject, names and extensions are berth's own.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, nodeName, role string) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: certificate request signature: %v", ErrInvalidRequest, err)
	}
	var cn string
	switch role {
	case RoleNode:
		if err := ValidateNodeName(nodeName); err != nil {
			return nil, err
		}
		cn = NodeCommonNamePrefix + nodeName
	case RoleAdmin:
		cn = AdminCommonName
	default:
		return nil, fmt.Errorf("unknown certificate role %q", role)
	}
	return ca.issueClient(csr.PublicKey, cn)
}

func (ca *CA) issueClient(pub any, cn string) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	start := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"berth"}},
		NotBefore:    start.Add(-clockSkewGrace),
		NotAfter:     ca.clampExpiry(start.Add(LeafValidity)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", cn, err)
	}
	return encodeCert(der), nil
}

// clampExpiry keeps a leaf from outliving its CA, which would only make it
// fail verification in a more confusing way.
func (ca *CA) clampExpiry(t time.Time) time.Time {
	if t.After(ca.cert.NotAfter) {
		return ca.cert.NotAfter
	}
	return t
}

// Identity is who a verified client certificate speaks for.
type Identity struct {
	Role string // RoleNode or RoleAdmin
	Node string // the node name, for RoleNode
}

// IdentityOf reads the identity from a client certificate already verified
// against the CA. It trusts the common name because the CA writes it itself
// and never copies it from a request.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	cn := cert.Subject.CommonName
	if cn == AdminCommonName {
		return Identity{Role: RoleAdmin}, nil
	}
	if node, ok := strings.CutPrefix(cn, NodeCommonNamePrefix); ok && ValidateNodeName(node) == nil {
		return Identity{Role: RoleNode, Node: node}, nil
	}
	return Identity{}, fmt.Errorf("certificate %q names no berth role", cn)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseECKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ECDSA", k)
	}
	return ec, nil
}
