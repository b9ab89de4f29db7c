// Package server is the controller's HTTP API: node agents fetch their
// assignments and report status through it, the CLI reads status and objects,
// and Git hosts call its webhook. Routes (all JSON):
//
//	GET  /healthz                                  liveness of the controller
//	GET  /api/v1/status                            api.Status
//	GET  /api/v1/history                           []api.HistoryEntry
//	GET  /api/v1/{pods|deployments|replicasets|services|endpointslices|configmaps|secrets|nodes}?namespace=NS
//	                                               a v1 List (Secrets without values)
//	POST /api/v1/sync                              fetch now; api.SyncResult
//	POST /api/v1/nodes/{node}/{cordon|uncordon|drain}
//	GET  /api/v1/nodes/{node}/assignment?after=N   long-poll; api.Assignment
//	POST /api/v1/nodes/{node}/report               api.NodeReport
//	POST /hooks/git                                webhook (X-Hub-Signature-256 when a secret is set)
//	POST /api/v1/join                              a node's join token and CSR; pki.JoinResponse
//
// Without an Authority (berth up: one host, loopback) every route is open,
// as on any local daemon socket. With one, the API runs over TLS and each
// route says who may call it (see routes and auth.go).
package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/pki"
)

// Controller is what the API serves; *controller.Controller implements it.
type Controller interface {
	Status() api.Status
	History(ctx context.Context) ([]api.HistoryEntry, error)
	Sync(ctx context.Context) api.SyncResult
	RequestFetch()
	Assignment(ctx context.Context, node string, after int64) (api.Assignment, error)
	Report(ctx context.Context, r api.NodeReport) error
	Pods(namespace string) []corev1.Pod
	Deployments(namespace string) []appsv1.Deployment
	ReplicaSets(namespace string) []appsv1.ReplicaSet
	Services(namespace string) []corev1.Service
	EndpointSlices(namespace string) []discoveryv1.EndpointSlice
	ConfigMaps(namespace string) []corev1.ConfigMap
	Secrets(namespace string) []corev1.Secret
	Nodes() []api.NodeInfo
	// Cordon marks a node unschedulable (cordon), schedulable again
	// (neither), or unschedulable with its pods evicted (drain).
	Cordon(ctx context.Context, node string, cordon, drain bool) error
}

// Options configure the handler.
type Options struct {
	// WebhookSecret, when set, is the HMAC-SHA256 key Git hosts sign
	// webhook bodies with (GitHub's X-Hub-Signature-256).
	WebhookSecret string
	// Authority, when set, turns on multi-host mode: the handler must be
	// served over TLS with the CA's listener configuration
	// (pki.CA.ServerTLSConfig), nodes join through POST /api/v1/join, and
	// every route but /healthz, the webhook and the join requires a client
	// certificate of the right role. The webhook is refused unless
	// WebhookSecret is set. Nil serves every route without authentication.
	Authority Authority
	Logger    *slog.Logger
}

// maxBody bounds request bodies; a node report for hundreds of pods fits.
const maxBody = 16 << 20

// New returns the API handler.
func New(c Controller, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{c: c, opts: opts}
	if opts.Authority != nil && opts.WebhookSecret == "" {
		opts.Logger.Warn("POST /hooks/git is disabled: a controller serving several hosts needs a webhook secret")
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.guard(rt))
	}
	return mux
}

// route is one endpoint of the API and who may call it. New registers
// exactly the routes listed here, and the authentication tests walk the same
// list, so a new route cannot go unchecked.
type route struct {
	pattern string // http.ServeMux pattern
	access  access
	handler http.HandlerFunc
}

func (s *server) routes() []route {
	c := s.c
	return []route{
		{"GET /healthz", accessOpen, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }},
		{"GET /api/v1/status", accessAdmin, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.Status()) }},
		{"GET /api/v1/history", accessAdmin, s.history},
		{"GET /api/v1/{resource}", accessAdmin, s.list},
		{"POST /api/v1/nodes/{node}/{action}", accessAdmin, s.nodeAction},
		{"POST /api/v1/sync", accessAdmin, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.Sync(r.Context())) }},
		{"GET /api/v1/nodes/{node}/assignment", accessNode, s.assignment},
		{"POST /api/v1/nodes/{node}/report", accessNode, s.report},
		{"POST /hooks/git", accessWebhook, s.webhook},
		{"POST " + pki.JoinPath, accessJoin, s.join},
	}
}

type server struct {
	c    Controller
	opts Options
}

func (s *server) history(w http.ResponseWriter, r *http.Request) {
	h, err := s.c.History(r.Context())
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	if h == nil {
		h = []api.HistoryEntry{}
	}
	writeJSON(w, h)
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	var items any
	switch r.PathValue("resource") {
	case "pods":
		items = s.c.Pods(ns)
	case "deployments":
		items = s.c.Deployments(ns)
	case "replicasets":
		items = s.c.ReplicaSets(ns)
	case "services":
		items = s.c.Services(ns)
	case "endpointslices":
		items = s.c.EndpointSlices(ns)
	case "nodes":
		items = s.c.Nodes()
	case "configmaps":
		items = s.c.ConfigMaps(ns)
	case "secrets":
		items = s.c.Secrets(ns)
	default:
		httpError(w, http.StatusNotFound, fmt.Errorf("unknown resource %q", r.PathValue("resource")))
		return
	}
	writeJSON(w, map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

// nodeAction cordons, uncordons or drains a node.
func (s *server) nodeAction(w http.ResponseWriter, r *http.Request) {
	var cordon, drain bool
	switch r.PathValue("action") {
	case "cordon":
		cordon = true
	case "uncordon":
	case "drain":
		drain = true
	default:
		httpError(w, http.StatusNotFound, fmt.Errorf("unknown node action %q: want cordon, uncordon or drain", r.PathValue("action")))
		return
	}
	if err := s.c.Cordon(r.Context(), r.PathValue("node"), cordon, drain); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, api.ErrNotFound) {
			code = http.StatusNotFound
		}
		httpError(w, code, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) assignment(w http.ResponseWriter, r *http.Request) {
	after, err := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	if err != nil && r.URL.Query().Get("after") != "" {
		httpError(w, http.StatusBadRequest, fmt.Errorf("after: %w", err))
		return
	}
	a, err := s.c.Assignment(r.Context(), r.PathValue("node"), after)
	if err != nil {
		if r.Context().Err() != nil {
			return // the agent went away
		}
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, a)
}

func (s *server) report(w http.ResponseWriter, r *http.Request) {
	var rep api.NodeReport
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&rep); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("decode report: %w", err))
		return
	}
	if rep.Node != r.PathValue("node") {
		httpError(w, http.StatusBadRequest, fmt.Errorf("report for node %q posted to node %q", rep.Node, r.PathValue("node")))
		return
	}
	if err := s.c.Report(r.Context(), rep); err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// webhook triggers a fetch. The payload itself is not trusted for anything
// but the signature: berth always fetches the branch it follows.
func (s *server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if s.opts.WebhookSecret == "" && s.opts.Authority != nil {
		// Reachable from anywhere without a client certificate, an
		// unsigned webhook would let anyone make the controller fetch.
		httpError(w, http.StatusForbidden, errors.New("webhook disabled: a controller serving several hosts accepts webhooks only with --webhook-secret"))
		return
	}
	if s.opts.WebhookSecret != "" {
		if err := checkSignature(s.opts.WebhookSecret, r.Header.Get("X-Hub-Signature-256"), body); err != nil {
			s.opts.Logger.Warn("webhook refused", "remote", r.RemoteAddr, "err", err)
			httpError(w, http.StatusUnauthorized, err)
			return
		}
	}
	// Answer at once (Git hosts time out after a few seconds) and fetch in
	// the background.
	s.c.RequestFetch()
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "fetch scheduled\n")
}

func checkSignature(secret, header string, body []byte) error {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return errors.New("missing or malformed X-Hub-Signature-256 header")
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return errors.New("malformed X-Hub-Signature-256 header")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return errors.New("signature does not match")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// Headers are gone already; the client sees a truncated body.
		return
	}
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
