// Package jaegertest builds Jaeger and runs a throwaway Jaeger for tests:
// its OTLP/HTTP receiver and its query API on loopback, on ports of their
// own, the traces in memory, killed when the test ends.
//
// Jaeger is built from its Go module, pinned by the tools/jaeger module of
// this repository (a module of its own, so that Jaeger's dependencies stay
// out of nplus1's), with the go command that runs the tests, once: the
// binary is kept in the user's cache directory under the hash of
// tools/jaeger/go.sum, and Go's build cache makes a rebuild cheap. A build
// that fails is a test failure, never a skip.
package jaegertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/syncbuf"
)

// toolDir is the tools/jaeger module, found from this file's place in the
// repository.
func toolDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot find the jaegertest source file")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "tools", "jaeger")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("the tools/jaeger module: %w", err)
	}
	return dir, nil
}

// goCommand is the go command of the toolchain running the tests.
func goCommand() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); isExecutable(p) {
		return p
	}
	return "go"
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of the Jaeger binary, building it when the cache
// does not have it (minutes on a cold build cache).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build Jaeger: %v", buildErr)
	}
	return buildPath
}

// build builds Jaeger into the cache, unless it is there.
func build() (string, error) {
	dir, err := toolDir()
	if err != nil {
		return "", err
	}
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(append(mod, sum...))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "nplus1-test", "jaeger-"+hex.EncodeToString(h[:8]))
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	// Built beside its final name and renamed, so that test processes
	// building at once never run a half-written binary.
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.Command(goCommand(), "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build in %s: %v\n%s", dir, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Server is a running Jaeger.
type Server struct {
	// OTLP is the base URL of its OTLP/HTTP receiver, http://127.0.0.1:PORT.
	OTLP string
	// Query is the base URL of its query API and UI.
	Query string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *syncbuf.Buffer
}

// config is Jaeger's configuration (the OpenTelemetry Collector's format):
// an OTLP/HTTP receiver into memory storage, the query API, a health check;
// every endpoint on loopback; no telemetry of its own.
const config = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// Start runs Jaeger and waits until its receiver and query API answer (60 s
// at most). The test's cleanup kills it and waits for it to exit.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	ports := make([]int, 4) // query HTTP, query gRPC, health, OTLP/HTTP
	for i := range ports {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, config, ports[0], ports[1], ports[2], ports[3]), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{
		OTLP:  "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3])),
		Query: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		done:  make(chan struct{}),
		log:   &syncbuf.Buffer{},
	}
	s.cmd = exec.Command(bin, "--config", cfgFile)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start jaeger: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	health := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2])) + "/status"
	deadline := time.Now().Add(60 * time.Second)
	for !s.answers(health) || !s.answers(s.Query+"/api/services") {
		select {
		case <-s.done:
			t.Fatalf("jaeger exited before it was ready:\n%s", s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not ready after 60s:\n%s", s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// answers reports whether GET u answers 200.
func (s *Server) answers(u string) bool {
	res, err := http.Get(u)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// Log returns what Jaeger logged so far.
func (s *Server) Log() string { return s.log.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ErrNotFound is Trace's error for a trace Jaeger does not have (yet).
var ErrNotFound = errors.New("trace not found")

// Trace returns a trace as Jaeger's query API (api/v3) serves it: OTLP's
// JSON form, the raw body. ErrNotFound when Jaeger does not have it.
func (s *Server) Trace(ctx context.Context, traceID string) ([]byte, error) {
	return s.get(ctx, "/api/v3/traces/"+url.PathEscape(traceID))
}

// Traces returns the traces of service that started within the last
// lookback, as api/v3's FindTraces serves them; ErrNotFound when none.
func (s *Server) Traces(ctx context.Context, service string, lookback time.Duration) ([]byte, error) {
	now := time.Now()
	q := url.Values{
		"query.service_name":   {service},
		"query.start_time_min": {now.Add(-lookback).UTC().Format(time.RFC3339Nano)},
		"query.start_time_max": {now.Add(time.Minute).UTC().Format(time.RFC3339Nano)},
		"query.num_traces":     {"100"},
	}
	return s.get(ctx, "/api/v3/traces?"+q.Encode())
}

func (s *Server) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Query+path, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	switch {
	case res.StatusCode == http.StatusNotFound:
		return nil, ErrNotFound
	case res.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s: %s", path, res.Status, body)
	}
	return body, nil
}

// Span is a span of an api/v3 answer, with the resource it came from.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	Kind                          int
	Start, End                    time.Time
	// Attributes are the span's, Resource its resource's, each value as
	// its JSON text (a string's without quotes).
	Attributes, Resource map[string]string
}

// Spans reads the spans of an api/v3 answer (OTLP JSON under "result").
func Spans(body []byte) ([]Span, error) {
	type kv struct {
		Key   string                     `json:"key"`
		Value map[string]json.RawMessage `json:"value"`
	}
	var doc struct {
		Result struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []kv `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string `json:"traceId"`
						SpanID       string `json:"spanId"`
						ParentSpanID string `json:"parentSpanId"`
						Name         string `json:"name"`
						Kind         int    `json:"kind"`
						Start        string `json:"startTimeUnixNano"`
						End          string `json:"endTimeUnixNano"`
						Attributes   []kv   `json:"attributes"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("api/v3 answer: %w", err)
	}
	flat := func(attrs []kv) map[string]string {
		m := map[string]string{}
		for _, a := range attrs {
			for _, v := range a.Value {
				var s string
				if json.Unmarshal(v, &s) == nil {
					m[a.Key] = s
				} else {
					m[a.Key] = string(v)
				}
			}
		}
		return m
	}
	nanos := func(s string) time.Time {
		n, _ := strconv.ParseInt(s, 10, 64)
		return time.Unix(0, n)
	}
	var spans []Span
	for _, rs := range doc.Result.ResourceSpans {
		res := flat(rs.Resource.Attributes)
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				spans = append(spans, Span{
					TraceID: sp.TraceID, SpanID: sp.SpanID, ParentSpanID: sp.ParentSpanID,
					Name: sp.Name, Kind: sp.Kind, Start: nanos(sp.Start), End: nanos(sp.End),
					Attributes: flat(sp.Attributes), Resource: res,
				})
			}
		}
	}
	return spans, nil
}
