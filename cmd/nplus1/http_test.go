package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPRoutes(t *testing.T) {
	var upstreamErr error
	var sawDeadline time.Duration
	mux := newMux(httpDeps{
		checkUpstream: func(ctx context.Context) error {
			if d, ok := ctx.Deadline(); ok {
				sawDeadline = time.Until(d)
			}
			return upstreamErr
		},
		logger: slog.New(slog.DiscardHandler),
	})
	tests := []struct {
		name     string
		method   string
		path     string
		upstream error
		wantCode int
		wantBody string
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok\n"},
		{name: "healthz while upstream down", method: "GET", path: "/healthz", upstream: errors.New("down"), wantCode: 200, wantBody: "ok\n"},
		{name: "healthz HEAD", method: "HEAD", path: "/healthz", wantCode: 200},
		{name: "healthz POST", method: "POST", path: "/healthz", wantCode: 405},
		{name: "readyz", method: "GET", path: "/readyz", wantCode: 200, wantBody: "ok\n"},
		{
			name: "readyz upstream down", method: "GET", path: "/readyz",
			upstream: errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"),
			wantCode: 503, wantBody: "upstream not reachable: dial tcp 127.0.0.1:5432: connect: connection refused\n",
		},
		{name: "unknown path", method: "GET", path: "/nope", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstreamErr = tt.upstream
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.wantCode {
				t.Errorf("got status %d, want %d", res.StatusCode, tt.wantCode)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("got body %q, want %q", body, tt.wantBody)
			}
			if tt.wantCode == 200 && !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("got Content-Type %q, want text/plain", res.Header.Get("Content-Type"))
			}
		})
	}
	if sawDeadline <= 0 || sawDeadline > readyTimeout {
		t.Errorf("readyz checked the upstream with %v left, want at most %v", sawDeadline, readyTimeout)
	}
}

// Go's profiler is served only with --pprof, and behind the token like
// /metrics.
func TestHTTPPprof(t *testing.T) {
	get := func(mux http.Handler, path, token string) int {
		req := httptest.NewRequest("GET", path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Code
	}
	off := newMux(httpDeps{logger: slog.New(slog.DiscardHandler)})
	if code := get(off, "/debug/pprof/", ""); code != http.StatusNotFound {
		t.Errorf("without --pprof: /debug/pprof/ answered %d, want 404", code)
	}
	on := newMux(httpDeps{logger: slog.New(slog.DiscardHandler), pprof: true, token: "s3cret"})
	if code := get(on, "/debug/pprof/", ""); code != http.StatusUnauthorized {
		t.Errorf("--pprof without the token: %d, want 401", code)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		if code := get(on, path, "s3cret"); code != http.StatusOK {
			t.Errorf("--pprof with the token: %s answered %d, want 200", path, code)
		}
	}
}
