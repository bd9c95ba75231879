package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// logWatcher is the stderr of run in a JSON-logging test: it keeps every
// line and announces each "listening" address by component.
type logWatcher struct {
	mu        sync.Mutex
	buf       bytes.Buffer // guarded by mu
	listening chan [2]string
}

func newLogWatcher() *logWatcher {
	return &logWatcher{listening: make(chan [2]string, 8)}
}

// Write gets one log record per call from slog's handlers.
func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	var rec struct{ Msg, Component, Addr string }
	if json.Unmarshal(p, &rec) == nil && rec.Msg == "listening" {
		select {
		case w.listening <- [2]string{rec.Component, rec.Addr}:
		default:
		}
	}
	return len(p), nil
}

func (w *logWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// records returns the logged records whose msg is msg.
func (w *logWatcher) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(w.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stderr line is not JSON: %q", line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// startCommand runs the command line args in-process with env and JSON logs
// into the returned watcher, and waits until every component in want has
// logged its "listening" address. done receives run's result.
func startCommand(t *testing.T, ctx context.Context, args []string, env map[string]string, stdout io.Writer, want ...string) (addrs map[string]string, logs *logWatcher, done chan error) {
	t.Helper()
	logs = newLogWatcher()
	done = make(chan error, 1)
	go func() { done <- run(ctx, args, mapEnv(env), stdout, logs) }()
	addrs = make(map[string]string)
	for len(addrs) < len(want) {
		select {
		case l := <-logs.listening:
			addrs[l[0]] = l[1]
		case err := <-done:
			t.Fatalf("run returned %v before listening; stderr:\n%s", err, logs)
		case <-time.After(30 * time.Second):
			t.Fatalf("no listening lines after 30s; stderr:\n%s", logs)
		}
	}
	for _, c := range want {
		if addrs[c] == "" {
			t.Fatalf("got listening addresses %v, want %v", addrs, want)
		}
	}
	return addrs, logs, done
}

func TestProxyEndToEnd(t *testing.T) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "debug", "--shutdown-timeout", "5s"}
	addrs, logs, done := startCommand(t, ctx, args, env, &stdout, "proxy", "http")
	proxyAddr, httpAddr := addrs["proxy"], addrs["http"]

	// A client through the proxy.
	conn, err := pgx.Connect(ctx, pgtest.URLFor(proxyAddr, pgtest.Superuser, "application_name=e2e"))
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT 'secret-literal-' || $1::text", "secret-param").Scan(&got); err != nil {
		t.Fatalf("query through the proxy: %v", err)
	}
	if got != "secret-literal-secret-param" {
		t.Errorf("got %q, want secret-literal-secret-param", got)
	}
	if _, err := conn.Exec(ctx, "SELECT generate_series(1, 3)"); err != nil {
		t.Fatalf("exec through the proxy: %v", err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The HTTP server.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		res, err := client.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want || string(body) != "ok\n" {
			t.Errorf("GET %s: got %d %q, want %d ok", path, res.StatusCode, body, want)
		}
	}

	// The executions reach the analyzer, which logs them with the normalized
	// query only.
	deadline := time.Now().Add(10 * time.Second)
	for len(logs.records(t, "execution")) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var sawSeries bool
	for _, rec := range logs.records(t, "execution") {
		if rec["component"] != "analyzer" || rec["user"] != pgtest.Superuser || rec["database"] != pgtest.Database || rec["application_name"] != "e2e" {
			t.Errorf("got execution record %v, want component analyzer, user %s, database %s, application_name e2e", rec, pgtest.Superuser, pgtest.Database)
		}
		if rec["command"] == "SELECT" && rec["rows"] == 3.0 {
			sawSeries = true
		}
	}
	if !sawSeries {
		t.Errorf("no execution record for the 3-row SELECT; stderr:\n%s", logs)
	}

	// Shutdown by cancellation, as SIGTERM does.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return 20s after cancel")
	}
	if len(logs.records(t, "stopped")) != 1 {
		t.Errorf("no stopped record; stderr:\n%s", logs)
	}
	if stdout.Len() != 0 {
		t.Errorf("got stdout %q, want none", stdout.String())
	}
	if s := logs.String(); strings.Contains(s, "secret-") {
		t.Errorf("stderr holds SQL literals or parameter values:\n%s", s)
	}
}
