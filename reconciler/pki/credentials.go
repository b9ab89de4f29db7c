package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ClientTLSConfig is a client configuration that trusts only the CA in
// caPEM and presents the certificate and key given.
func ClientTLSConfig(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("client TLS: no certificate in the CA file")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
	}, nil
}

// LoadClientTLS reads a CA, a client certificate and its key from files
// (the CLI's --ca, --cert and --key) into a client configuration. The key
// file must not be readable by others.
func LoadClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	keyPEM, err := readPrivate(keyFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return ClientTLSConfig(caPEM, certPEM, keyPEM)
}

// EnsureAdminCredentials writes an admin client certificate and key
// (admin.crt, admin.key, 0600) into dir, next to the CA's ca.crt, unless
// they exist already. The controller calls it at start so that the CLI on
// the same host can use the API.
func (ca *CA) EnsureAdminCredentials(dir string) error {
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	ok, err := exists(filepath.Join(dir, AdminCertFile))
	if err != nil || ok {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate admin key: %w", err)
	}
	certPEM, err := ca.issueClient(&key.PublicKey, AdminCommonName)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), ca.certPEM); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, AdminKeyFile), keyPEM); err != nil {
		return err
	}
	// The certificate last: its presence is what marks the bundle complete.
	return writeFile(filepath.Join(dir, AdminCertFile), certPEM)
}

// LoadAdminCredentials reads the admin bundle the controller wrote into dir
// (ca.crt, admin.crt, admin.key) into a client configuration.
func LoadAdminCredentials(dir string) (*tls.Config, error) {
	return LoadClientTLS(filepath.Join(dir, CACertFile), filepath.Join(dir, AdminCertFile), filepath.Join(dir, AdminKeyFile))
}
