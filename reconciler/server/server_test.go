package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"berth.dev/berth/api"
)

// stub records what the handler asked of the controller.
type stub struct {
	fetches atomic.Int32
	reports atomic.Int32
}

func (s *stub) Status() api.Status                                  { return api.Status{Sync: api.SyncSynced} }
func (s *stub) History(context.Context) ([]api.HistoryEntry, error) { return nil, nil }
func (s *stub) Sync(context.Context) api.SyncResult                 { return api.SyncResult{} }
func (s *stub) RequestFetch()                                       { s.fetches.Add(1) }
func (s *stub) Report(context.Context, api.NodeReport) error        { s.reports.Add(1); return nil }
func (s *stub) Pods(string) []corev1.Pod                            { return nil }
func (s *stub) Deployments(string) []appsv1.Deployment              { return nil }
func (s *stub) ReplicaSets(string) []appsv1.ReplicaSet              { return nil }
func (s *stub) Services(string) []corev1.Service                    { return nil }
func (s *stub) EndpointSlices(string) []discoveryv1.EndpointSlice   { return nil }
func (s *stub) ConfigMaps(string) []corev1.ConfigMap                { return nil }
func (s *stub) Secrets(string) []corev1.Secret                      { return nil }
func (s *stub) Nodes() []api.NodeInfo                               { return nil }
func (s *stub) Cordon(context.Context, string, bool, bool) error    { return nil }
func (s *stub) Assignment(context.Context, string, int64) (api.Assignment, error) {
	return api.Assignment{}, nil
}

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestWebhookSignature(t *testing.T) {
	const body = `{"ref":"refs/heads/main"}`
	tests := []struct {
		name      string
		secret    string
		signature string
		want      int
	}{
		{"no secret configured: any call triggers a fetch", "", "", http.StatusAccepted},
		{"valid signature", "s3", sign("s3", body), http.StatusAccepted},
		{"signed with another secret", "s3", sign("other", body), http.StatusUnauthorized},
		{"signature of another body", "s3", sign("s3", body+" "), http.StatusUnauthorized},
		{"missing header", "s3", "", http.StatusUnauthorized},
		{"sha1 header only", "s3", "sha1=abc", http.StatusUnauthorized},
		{"not hex", "s3", "sha256=zz", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &stub{}
			h := New(c, Options{WebhookSecret: tc.secret})
			req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(body))
			if tc.signature != "" {
				req.Header.Set("X-Hub-Signature-256", tc.signature)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.want, rec.Body)
			}
			wantFetches := int32(0)
			if tc.want == http.StatusAccepted {
				wantFetches = 1
			}
			if got := c.fetches.Load(); got != wantFetches {
				t.Fatalf("%d fetches requested, want %d", got, wantFetches)
			}
		})
	}
}

func TestReportMustMatchItsNode(t *testing.T) {
	c := &stub{}
	h := New(c, Options{})
	req := httptest.NewRequest(http.MethodPost, "/api/v1/nodes/a/report", strings.NewReader(`{"node":"b"}`))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || c.reports.Load() != 0 {
		t.Fatalf("a report for node b posted as node a: status %d, %d reports", rec.Code, c.reports.Load())
	}
}

func TestUnknownResource(t *testing.T) {
	rec := httptest.NewRecorder()
	New(&stub{}, Options{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/widgets", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "widgets") {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
}
