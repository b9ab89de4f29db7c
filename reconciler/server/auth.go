package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"berth.dev/berth/reconciler/pki"
)

// Authority admits joining nodes: it checks the join token and signs the
// node's certificate request. *pki.Authority implements it. Errors wrapping
// pki.ErrInvalidToken become 401, pki.ErrInvalidRequest 400.
type Authority interface {
	Admit(req pki.JoinRequest) (pki.JoinResponse, error)
}

// access says who may call a route in multi-host mode.
type access int

const (
	// accessOpen: anyone (liveness only).
	accessOpen access = iota
	// accessWebhook: Git hosts, which cannot present client certificates;
	// the body's HMAC signature authenticates them.
	accessWebhook
	// accessJoin: agents that have no certificate yet; the join token in
	// the body authenticates them.
	accessJoin
	// accessAdmin: the CLI, with the admin certificate. Admin certificates
	// cannot act as a node: assignments carry Secret values meant for one
	// host only, and reports are that host's word.
	accessAdmin
	// accessNode: the agent whose certificate names the {node} in the path.
	accessNode
)

func (a access) String() string {
	return [...]string{"open", "webhook", "join", "admin", "node"}[a]
}

// maxJoinBody bounds a join request: a token, a name and one CSR.
const maxJoinBody = 64 << 10

// guard wraps a route's handler with the check its access level needs. In
// single-host mode (no Authority) every route is open.
func (s *server) guard(rt route) http.Handler {
	if s.opts.Authority == nil || rt.access == accessOpen || rt.access == accessWebhook || rt.access == accessJoin {
		return rt.handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := clientIdentity(r)
		if err != nil {
			s.opts.Logger.Warn("request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "err", err)
			httpError(w, http.StatusUnauthorized, err)
			return
		}
		if err := permit(rt.access, id, r); err != nil {
			s.opts.Logger.Warn("request forbidden", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
				"role", id.Role, "node", id.Node, "err", err)
			httpError(w, http.StatusForbidden, err)
			return
		}
		rt.handler(w, r)
	})
}

// clientIdentity is the identity in the request's client certificate. The
// TLS layer (tls.VerifyClientCertIfGiven with the CA's pool) has already
// refused certificates from any other CA, so a verified chain means the CA
// issued it.
func clientIdentity(r *http.Request) (pki.Identity, error) {
	if r.TLS == nil {
		return pki.Identity{}, errors.New("this API requires TLS with a client certificate")
	}
	if len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return pki.Identity{}, errors.New("a client certificate from the controller's CA is required (agents: join with a token; CLI: --data-dir or --ca/--cert/--key)")
	}
	return pki.IdentityOf(r.TLS.VerifiedChains[0][0])
}

func permit(a access, id pki.Identity, r *http.Request) error {
	switch a {
	case accessAdmin:
		if id.Role != pki.RoleAdmin {
			return fmt.Errorf("%s needs an admin certificate", r.URL.Path)
		}
	case accessNode:
		if id.Role != pki.RoleNode {
			return errors.New("only the node itself may call its node routes, not an admin")
		}
		if node := r.PathValue("node"); node != id.Node {
			return fmt.Errorf("node %q may not act as node %q", id.Node, node)
		}
	default:
		return fmt.Errorf("no rule for access %s", a)
	}
	return nil
}

// join admits a node: token and certificate request in, client certificate
// and CA out. It is served without a client certificate, since a joining
// agent has none yet.
func (s *server) join(w http.ResponseWriter, r *http.Request) {
	if s.opts.Authority == nil {
		httpError(w, http.StatusNotFound, errors.New("this controller does not admit nodes: it serves one host over plain HTTP"))
		return
	}
	if r.TLS == nil {
		httpError(w, http.StatusBadRequest, errors.New("join only over TLS"))
		return
	}
	var req pki.JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxJoinBody)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("decode join request: %w", err))
		return
	}
	// The token id is public; the secret is never logged.
	log := s.opts.Logger.With("remote", r.RemoteAddr, "node", req.NodeName, "tokenID", pki.TokenID(req.Token))
	resp, err := s.opts.Authority.Admit(req)
	switch {
	case errors.Is(err, pki.ErrInvalidToken):
		log.Warn("join refused", "err", err)
		httpError(w, http.StatusUnauthorized, err)
		return
	case errors.Is(err, pki.ErrInvalidRequest):
		log.Warn("join refused", "err", err)
		httpError(w, http.StatusBadRequest, err)
		return
	case err != nil:
		log.Error("join failed", "err", err)
		httpError(w, http.StatusInternalServerError, errors.New("join failed on the controller; see its log"))
		return
	}
	log.Info("node joined")
	writeJSON(w, resp)
}
