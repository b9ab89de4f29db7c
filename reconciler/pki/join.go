package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Join makes this host a node of the controller at serverURL (https://...):
// it generates a key, sends a certificate request with the join token,
// verifies the controller against the CA fingerprint in the token, and
// stores ca.crt, node.crt and node.key (0600) in dir. The token is not
// stored.
func Join(ctx context.Context, serverURL, token, nodeName, dir string) error {
	_, _, pin, err := parseToken(token)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if err := ValidateNodeName(nodeName); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("join: server %q: want https://HOST:PORT", serverURL)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("join: generate key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: NodeCommonNamePrefix + nodeName},
	}, key)
	if err != nil {
		return fmt.Errorf("join: certificate request: %w", err)
	}
	body, err := json.Marshal(JoinRequest{
		Token:    token,
		NodeName: nodeName,
		CSRPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
	})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	resp, err := postJoin(ctx, strings.TrimRight(serverURL, "/")+JoinPath, body, pinnedTLSConfig(pin, u.Hostname()))
	if err != nil {
		return fmt.Errorf("join %s: %w", serverURL, err)
	}
	certPEM, caPEM, err := checkJoinResponse(resp, key, pin, nodeName)
	if err != nil {
		return fmt.Errorf("join %s: %w", serverURL, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	for _, f := range []struct {
		name string
		data []byte
	}{
		{CACertFile, caPEM},
		{NodeKeyFile, keyPEM},
		{NodeCertFile, certPEM}, // last: its presence marks the bundle complete
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("join: %w", err)
		}
	}
	return nil
}

func postJoin(ctx context.Context, endpoint string, body []byte, cfg *tls.Config) (JoinResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return JoinResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	tr := &http.Transport{TLSClientConfig: cfg, TLSHandshakeTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return JoinResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return JoinResponse{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return JoinResponse{}, fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	var out JoinResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return JoinResponse{}, fmt.Errorf("decode join response: %w", err)
	}
	return out, nil
}

// checkJoinResponse makes sure the controller sent what was asked: the
// pinned CA, and a client certificate from it for our key and node name.
func checkJoinResponse(resp JoinResponse, key *ecdsa.PrivateKey, pin, nodeName string) (certPEM, caPEM []byte, err error) {
	ca, err := parseCertPEM([]byte(resp.CAPEM))
	if err != nil {
		return nil, nil, fmt.Errorf("CA in response: %w", err)
	}
	if Fingerprint(ca) != pin {
		return nil, nil, errors.New("the CA in the response does not match the token's fingerprint")
	}
	cert, err := parseCertPEM([]byte(resp.CertPEM))
	if err != nil {
		return nil, nil, fmt.Errorf("certificate in response: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the certificate in the response is not for our key")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, nil, fmt.Errorf("certificate in response: %w", err)
	}
	if id, err := IdentityOf(cert); err != nil || id.Role != RoleNode || id.Node != nodeName {
		return nil, nil, fmt.Errorf("the certificate in the response is for %q, not node %q", cert.Subject.CommonName, nodeName)
	}
	return []byte(resp.CertPEM), []byte(resp.CAPEM), nil
}

// pinnedTLSConfig trusts a server whose chain contains the CA with the given
// fingerprint and whose certificate, issued by that CA, names host. It
// stands in for RootCAs before the agent has the CA file.
func pinnedTLSConfig(pin, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: host,
		// Verification is not skipped: VerifyConnection below does the
		// whole of it, against the pinned CA instead of the system roots.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the controller presented no certificate")
			}
			var ca *x509.Certificate
			intermediates := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				if Fingerprint(c) == pin {
					ca = c
				} else {
					intermediates.AddCert(c)
				}
			}
			if ca == nil {
				return errors.New("the controller's certificate is not from the CA pinned in the join token (wrong server, or a token from another controller)")
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: intermediates,
				// Not cs.ServerName: it is empty when host is an IP address.
				DNSName:   host,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("controller certificate: %w", err)
			}
			return nil
		},
	}
}

// LoadNodeCredentials reads the bundle Join stored in dir into a client
// configuration for the controller API.
func LoadNodeCredentials(dir string) (*tls.Config, error) {
	return LoadClientTLS(filepath.Join(dir, CACertFile), filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile))
}

// EnsureNodeCredentials returns the node's client configuration, joining
// first when dir holds no credentials yet. An agent that joined once needs
// no token again (token may then be empty). Credentials for another node
// name, or expired ones, are an error that says how to start over.
func EnsureNodeCredentials(ctx context.Context, serverURL, token, nodeName, dir string) (*tls.Config, error) {
	ok, err := exists(filepath.Join(dir, NodeCertFile))
	if err != nil {
		return nil, err
	}
	if !ok {
		if token == "" {
			return nil, fmt.Errorf("no node credentials in %s: pass a join token (berth token create on the controller)", dir)
		}
		if err := Join(ctx, serverURL, token, nodeName, dir); err != nil {
			return nil, err
		}
	}
	cfg, err := LoadNodeCredentials(dir)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("node certificate in %s: %w", dir, err)
	}
	if id, err := IdentityOf(leaf); err != nil || id.Role != RoleNode || id.Node != nodeName {
		return nil, fmt.Errorf("the credentials in %s are for %q, not node %q: remove %s and %s to join again under the new name",
			dir, leaf.Subject.CommonName, nodeName, filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile))
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("the node certificate in %s expired at %s: remove %s and join again with a new token",
			dir, leaf.NotAfter.Format(time.RFC3339), filepath.Join(dir, NodeCertFile))
	}
	return cfg, nil
}
