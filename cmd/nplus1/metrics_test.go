package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// proxyMetricsFrom parses args and env as the proxy command does and starts
// its metrics.
func proxyMetricsFrom(t *testing.T, enabled bool, env map[string]string, args ...string) (*proxyMetrics, error) {
	t.Helper()
	fs := newFlagSet("proxy")
	o := newMetricsOptions(fs)
	if _, err := fs.parse(args, mapEnv(env)); err != nil {
		return nil, err
	}
	return o.start(enabled)
}

func TestMetricsFlags(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "defaults"},
		{name: "none", args: []string{"--metrics-top-k", "0"}},
		{name: "env", env: map[string]string{"NPLUS1_METRICS_TOP_K": "5", "NPLUS1_METRICS_TOP_BY": "time", "NPLUS1_METRICS_TOP_WINDOW": "1m"}},
		{name: "negative k", args: []string{"--metrics-top-k", "-1"}, wantErr: "--metrics-top-k: must be 0 (none) or more"},
		{name: "short window", args: []string{"--metrics-top-window", "10ms"}, wantErr: "--metrics-top-window: must be at least 1s"},
		{name: "unknown ranking", args: []string{"--metrics-top-by", "calls"}, wantErr: "metrics-top-by"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pm, err := proxyMetricsFrom(t, true, c.env, c.args...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got error %v, want %q", err, c.wantErr)
				}
				if exitCode(err) != 2 {
					t.Errorf("got exit code %d, want 2 (usage)", exitCode(err))
				}
				return
			}
			if err != nil || pm == nil {
				t.Fatalf("got %v, %v; want metrics", pm, err)
			}
		})
	}
	if pm, err := proxyMetricsFrom(t, false, nil); pm != nil || err != nil {
		t.Errorf("without --http: got %v, %v; want no metrics", pm, err)
	}
	// A nil *proxyMetrics wires nothing.
	var pm *proxyMetrics
	if pm.handler(slog.New(slog.DiscardHandler)) != nil || pm.watch(nil, nil, nil) != nil || pm.watchInspector(nil) != nil {
		t.Error("nil proxyMetrics does something")
	}
}

func TestMetricsRoute(t *testing.T) {
	pm, err := proxyMetricsFrom(t, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pm.watchInspector(nil); err != nil { // no --inspect-url
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	mux := newMux(httpDeps{checkUpstream: func(context.Context) error { return nil }, metrics: pm.handler(logger), logger: logger})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("GET /metrics: got %d %q, want 200 text/plain", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{"nplus1_build_info{", `nplus1_findings_total{kind="n_plus_one",severity="critical"} 0`, "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics lacks %q:\n%s", want, body)
		}
	}
	// Without --inspect-url, no inspection series.
	if strings.Contains(string(body), "nplus1_inspection") {
		t.Errorf("inspection series without an inspection connection:\n%s", grepLines(body, "nplus1_inspection"))
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/metrics", nil))
	if rec.Code != 405 {
		t.Errorf("POST /metrics: got %d, want 405", rec.Code)
	}

	mux = newMux(httpDeps{checkUpstream: func(context.Context) error { return nil }, logger: logger})
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("GET /metrics without metrics: got %d, want 404", rec.Code)
	}
}
