package pki

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// JoinPath is the controller route agents join through.
const JoinPath = "/api/v1/join"

// JoinRequest is the body of POST /api/v1/join.
type JoinRequest struct {
	Token    string `json:"token"`
	NodeName string `json:"nodeName"`
	// CSRPEM is a PEM "CERTIFICATE REQUEST" for the agent's new key.
	CSRPEM string `json:"csrPEM"`
}

// JoinResponse answers a successful join.
type JoinResponse struct {
	CertPEM string `json:"certPEM"` // the node's client certificate
	CAPEM   string `json:"caPEM"`   // the controller's CA
}

// Authority admits nodes: it checks their join token and signs their
// certificate request. It implements the server package's Authority.
type Authority struct {
	ca     *CA
	tokens *Tokens
}

// NewAuthority admits nodes with tokens from tokens and certificates from ca.
func NewAuthority(ca *CA, tokens *Tokens) *Authority {
	return &Authority{ca: ca, tokens: tokens}
}

// Admit validates req and returns the node's certificate. Errors wrap
// ErrInvalidToken (refused token) or ErrInvalidRequest (malformed request);
// anything else is the controller's own failure.
func (a *Authority) Admit(req JoinRequest) (JoinResponse, error) {
	id, err := a.tokens.Validate(req.Token)
	if err != nil {
		return JoinResponse{}, err
	}
	if err := ValidateNodeName(req.NodeName); err != nil {
		return JoinResponse{}, err
	}
	block, _ := pem.Decode([]byte(req.CSRPEM))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return JoinResponse{}, fmt.Errorf("%w: csrPEM holds no PEM certificate request", ErrInvalidRequest)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return JoinResponse{}, fmt.Errorf("%w: certificate request: %v", ErrInvalidRequest, err)
	}
	certPEM, err := a.ca.SignCSR(csr, req.NodeName, RoleNode)
	if err != nil {
		return JoinResponse{}, err
	}
	// Record the use before answering: a join the token list does not show
	// would be a hole in the audit trail.
	if err := a.tokens.MarkUsed(id, req.NodeName); err != nil {
		return JoinResponse{}, err
	}
	return JoinResponse{CertPEM: string(certPEM), CAPEM: string(a.ca.CertPEM())}, nil
}

// TokenID returns the public id of a well-formed token, for logs; "" when
// the token is malformed.
func TokenID(token string) string {
	id, _, _, err := parseToken(token)
	if err != nil {
		return ""
	}
	return id
}
