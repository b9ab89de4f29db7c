// Package client talks to a berth controller's HTTP API. Node agents use it
// as their control plane (it implements nodeagent.ControlPlane) and the CLI
// uses it for everything else; the local agent of `berth up` goes through it
// too, so one host exercises the same path as many.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"berth.dev/berth/api"
)

// Client is a controller API client.
type Client struct {
	base string
	http *http.Client
}

// New returns a client for the controller at server (e.g.
// http://127.0.0.1:7070). hc may be nil.
func New(server string, hc *http.Client) *Client {
	if hc == nil {
		// No overall timeout: assignment long-polls last ~30 s and every call
		// carries a context.
		hc = &http.Client{Transport: http.DefaultTransport}
	}
	return &Client{base: strings.TrimRight(server, "/"), http: hc}
}

// NewTLS returns a client for a controller serving https (e.g.
// https://10.0.0.5:7070) that verifies it and authenticates itself with cfg,
// typically from pki.LoadNodeCredentials or pki.LoadAdminCredentials.
func NewTLS(server string, cfg *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return New(server, &http.Client{Transport: tr})
}

// Status fetches the controller's summary.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var s api.Status
	return s, c.do(ctx, http.MethodGet, "/api/v1/status", nil, &s)
}

// History fetches the revision history.
func (c *Client) History(ctx context.Context) ([]api.HistoryEntry, error) {
	var h []api.HistoryEntry
	return h, c.do(ctx, http.MethodGet, "/api/v1/history", nil, &h)
}

// Sync asks the controller to fetch now and waits for the outcome.
func (c *Client) Sync(ctx context.Context) (api.SyncResult, error) {
	var r api.SyncResult
	return r, c.do(ctx, http.MethodPost, "/api/v1/sync", nil, &r)
}

// List fetches objects of a resource ("pods", "deployments", ...) into
// items, which must point to a slice of the matching k8s.io/api type.
// An empty namespace means all namespaces.
func (c *Client) List(ctx context.Context, resource, namespace string, items any) error {
	path := "/api/v1/" + url.PathEscape(resource)
	if namespace != "" {
		path += "?namespace=" + url.QueryEscape(namespace)
	}
	var list struct {
		Items json.RawMessage `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &list); err != nil {
		return err
	}
	if len(list.Items) == 0 || string(list.Items) == "null" {
		return nil
	}
	if err := json.Unmarshal(list.Items, items); err != nil {
		return fmt.Errorf("decode %s: %w", resource, err)
	}
	return nil
}

// NodeAction cordons, uncordons or drains a node ("cordon", "uncordon",
// "drain").
func (c *Client) NodeAction(ctx context.Context, node, action string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(node)+"/"+url.PathEscape(action), nil, nil)
}

// Assignment long-polls for the node's assignment newer than after.
func (c *Client) Assignment(ctx context.Context, node string, after int64) (api.Assignment, error) {
	var a api.Assignment
	path := "/api/v1/nodes/" + url.PathEscape(node) + "/assignment?after=" + strconv.FormatInt(after, 10)
	return a, c.do(ctx, http.MethodGet, path, nil, &a)
}

// Report sends a node report (also the node's heartbeat).
func (c *Client) Report(ctx context.Context, r api.NodeReport) error {
	return c.do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(r.Node)+"/report", r, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// DefaultTimeout is a sensible timeout for CLI calls.
const DefaultTimeout = 30 * time.Second
