package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandlers(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	for _, tc := range []struct {
		name     string
		env      map[string]string
		path     string
		wantCode int
		wantBody string // substring
	}{
		{"root", map[string]string{"POD_NAME": "p1"}, "/", 200, "hello dev pod=p1"},
		{"healthz", nil, "/healthz", 200, "ok"},
		{"ready", nil, "/readyz", 200, "ready"},
		{"ready fail", map[string]string{"READY_FAIL": "1"}, "/readyz", 500, "READY_FAIL"},
		{"ready file missing", map[string]string{"READY_FILE": ready}, "/readyz", 500, "missing"},
		{"env", map[string]string{"COLOR": "blue"}, "/env?name=COLOR", 200, "blue"},
		{"env unset", nil, "/env?name=HELLO_TEST_UNSET", 404, "not set"},
		{"file missing", nil, "/file?path=/nonexistent", 404, ""},
		{"unknown", nil, "/nope", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			rec := httptest.NewRecorder()
			newMux(slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
		})
	}

	// The ready file appearing makes the server ready.
	t.Setenv("READY_FILE", ready)
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	newMux(slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 200 {
		t.Errorf("readyz with the ready file present = %d, want 200", rec.Code)
	}
}

func TestTools(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer bad.Close()
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HELLO_TEST_VAR", "value")

	for _, tc := range []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"check", ok.URL}, 0, ""},
		{[]string{"check", bad.URL}, 1, ""},
		{[]string{"check"}, 2, ""},
		{[]string{"getenv", "HELLO_TEST_VAR"}, 0, "value"},
		{[]string{"getenv", "HELLO_TEST_UNSET"}, 1, ""},
		{[]string{"cat", file}, 0, "content"},
		{[]string{"cat", file + ".missing"}, 1, ""},
		{[]string{"exit", "7"}, 7, ""},
		{[]string{"exit", "x"}, 2, ""},
		{[]string{"frobnicate"}, 2, ""},
	} {
		var stdout bytes.Buffer
		code := runTool(tc.args[0], tc.args[1:], &stdout, io.Discard)
		if code != tc.wantCode || stdout.String() != tc.wantOut {
			t.Errorf("hello %v = %d %q, want %d %q", tc.args, code, stdout.String(), tc.wantCode, tc.wantOut)
		}
	}
}
