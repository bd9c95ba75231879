package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/jaegertest"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// otlpSecrets matches the literals the workload writes into its SQL text
// (a status, the ids 424243 to 424250) and its data (names, emails); none
// may reach the receiver.
var otlpSecrets = regexp.MustCompile(`paid-s3cret|Secret Name|s3cret@example\.com|(^|[^0-9a-f])42424[3-9]|424250`)

// otlpSchema is a table of users and one of orders whose rows name them: a
// source query and a loop over its rows.
const otlpSchema = `
DROP TABLE IF EXISTS otlp_orders, otlp_users;
CREATE TABLE otlp_users (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE otlp_orders (id int PRIMARY KEY, user_id int NOT NULL, status text NOT NULL);
INSERT INTO otlp_users SELECT 424242 + i, 'Secret Name ' || i, 's3cret@example.com' FROM generate_series(1, 8) i;
INSERT INTO otlp_orders SELECT i, 424242 + i, 'paid-s3cret' FROM generate_series(1, 8) i;
`

// randomHex is n random bytes in lower-case hex: a trace or span id.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// runLoop runs a request's N+1 on conn in the simple protocol, literals
// in the text: a list of orders, then one lookup per order's user. With a
// traceparent, every statement carries it in a sqlcommenter comment, as
// an instrumented application's do.
func runLoop(ctx context.Context, conn *pgx.Conn, traceparent string) error {
	comment := ""
	if traceparent != "" {
		comment = fmt.Sprintf(" /*route='%%2Forders',traceparent='%s'*/", traceparent)
	}
	rows, err := conn.Query(ctx, "SELECT id, user_id FROM otlp_orders WHERE status = 'paid-s3cret' ORDER BY id"+comment, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ ID, UserID int }])
	if err != nil {
		return err
	}
	for _, o := range ids {
		sql := fmt.Sprintf("SELECT name, email FROM otlp_users WHERE id = %d%s", o.UserID, comment)
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
	}
	return nil
}

// TestJaegerShowsTheFindingOnTheApplicationTrace runs the chain a team
// would: a real PostgreSQL, the proxy command (in process, as main runs
// it) with --otlp-endpoint pointing at a real Jaeger built from its Go
// module, and an application whose statements carry a sqlcommenter
// traceparent running an N+1. Through Jaeger's query API it asserts that
// the finding is a span on the application's trace, child of the
// application's span, over the finding's window, with the database
// semantic conventions' and nplus1's attributes, and that no literal of
// the SQL text or the data reached Jaeger; that an N+1 without a
// traceparent is a trace of its own; and that /metrics counts the spans.
func TestJaegerShowsTheFindingOnTheApplicationTrace(t *testing.T) {
	jaeger := jaegertest.Start(t)
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser),
		"NPLUS1_OTLP_ENDPOINT": jaeger.OTLP}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s"}
	addrs, logs, done := startCommand(t, ctx, args, env, io.Discard, "proxy", "http")
	stopped := false
	stop := func() {
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after cancel, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not return 20s after cancel")
		}
	}
	defer func() {
		if !stopped {
			stop()
		}
	}()

	conn, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=otlp-e2e"))
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, otlpSchema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	time.Sleep(250 * time.Millisecond) // the schema's window closes first

	traceID, appSpan := randomHex(t, 16), randomHex(t, 8)
	if err := runLoop(ctx, conn, "00-"+traceID+"-"+appSpan+"-01"); err != nil {
		t.Fatalf("traced N+1: %v", err)
	}
	time.Sleep(250 * time.Millisecond)
	untracedFrom := time.Now()
	if err := runLoop(ctx, conn, ""); err != nil {
		t.Fatalf("untraced N+1: %v", err)
	}

	// The finding reaches Jaeger on the application's trace.
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		body, err = jaeger.Trace(qctx, traceID)
		qcancel()
		if err == nil {
			break
		}
		if !errors.Is(err, jaegertest.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("trace %s from Jaeger: %v\nproxy log:\n%s\njaeger log:\n%s", traceID, err, logs, jaeger.Log())
		}
		time.Sleep(250 * time.Millisecond)
	}
	spans, err := jaegertest.Spans(body)
	if err != nil {
		t.Fatal(err)
	}
	var loop *jaegertest.Span
	for i, s := range spans {
		if s.Attributes["nplus1.kind"] == "n_plus_one" {
			loop = &spans[i]
		}
	}
	if loop == nil {
		t.Fatalf("no n_plus_one span on trace %s: %s", traceID, body)
	}
	if loop.TraceID != traceID || loop.ParentSpanID != appSpan {
		t.Errorf("span on trace %s, parent %s; want the application's trace %s and span %s", loop.TraceID, loop.ParentSpanID, traceID, appSpan)
	}
	if loop.Name != "nplus1 n_plus_one otlp_users" {
		t.Errorf("span name %q, want nplus1 n_plus_one otlp_users", loop.Name)
	}
	if d := loop.End.Sub(loop.Start); d <= 0 || d > 5*time.Second || time.Since(loop.Start) > time.Minute {
		t.Errorf("span from %v to %v: want the loop's window", loop.Start, loop.End)
	}
	want := map[string]string{
		"db.system.name":                "postgresql",
		"db.query.text":                 "SELECT name, email FROM otlp_users WHERE id = $1",
		"db.namespace":                  pgtest.Database,
		"db.collection.name":            "otlp_users",
		"nplus1.kind":                   "n_plus_one",
		"nplus1.count":                  "8",
		"nplus1.distinct_params":        "8",
		"nplus1.source.query":           "SELECT id, user_id FROM otlp_orders WHERE status = $1 ORDER BY id",
		"nplus1.source.rows":            "8",
		"nplus1.evidence.kind":          "data_flow",
		"nplus1.evidence.source_column": "user_id",
		"nplus1.evidence.matched":       "8",
		"nplus1.application_name":       "otlp-e2e",
		"nplus1.tag.route":              "/orders",
	}
	for k, v := range want {
		if got := loop.Attributes[k]; got != v {
			t.Errorf("attribute %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"nplus1.severity", "nplus1.fingerprint", "nplus1.suggestion"} {
		if loop.Attributes[k] == "" {
			t.Errorf("attribute %s missing", k)
		}
	}
	if !strings.Contains(loop.Attributes["nplus1.suggestion"], "otlp_users") {
		t.Errorf("suggestion %q does not name the table", loop.Attributes["nplus1.suggestion"])
	}
	if _, ok := loop.Attributes["nplus1.tag.traceparent"]; ok {
		t.Error("the traceparent tag is an attribute; the span's parent already says it")
	}
	if loop.Resource["service.name"] != "nplus1" {
		t.Errorf("resource service.name = %q, want nplus1", loop.Resource["service.name"])
	}
	if m := otlpSecrets.Find(body); m != nil {
		t.Errorf("Jaeger's trace holds the literal %q:\n%s", m, body)
	}

	// The untraced loop is a trace of its own, a root span.
	var own *jaegertest.Span
	for time.Now().Before(deadline.Add(30*time.Second)) && own == nil {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		all, err := jaeger.Traces(qctx, "nplus1", time.Since(untracedFrom)+time.Minute)
		qcancel()
		if err != nil && !errors.Is(err, jaegertest.ErrNotFound) {
			t.Fatalf("search Jaeger: %v", err)
		}
		if err == nil {
			ss, err := jaegertest.Spans(all)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range ss {
				if s.TraceID != traceID && s.Attributes["nplus1.kind"] == "n_plus_one" {
					own = &ss[i]
				}
			}
			if m := otlpSecrets.Find(all); m != nil {
				t.Fatalf("Jaeger's traces hold the literal %q:\n%s", m, all)
			}
		}
		if own == nil {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if own == nil {
		t.Fatalf("no trace of its own for the untraced N+1\nproxy log:\n%s", logs)
	}
	if own.ParentSpanID != "" {
		t.Errorf("untraced finding has parent %s, want a root span", own.ParentSpanID)
	}

	// /metrics counts the spans Jaeger accepted.
	res, err := http.Get("http://" + addrs["http"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, line := range []string{"nplus1_otlp_spans_dropped_total{reason=\"queue_full\"} 0", "nplus1_otlp_spans_dropped_total{reason=\"export_failed\"} 0"} {
		if !bytes.Contains(metricsText, []byte(line)) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if bytes.Contains(metricsText, []byte("nplus1_otlp_spans_exported_total 0\n")) || !bytes.Contains(metricsText, []byte("nplus1_otlp_spans_exported_total ")) {
		t.Errorf("/metrics: no span counted as exported:\n%s", grepLines(metricsText, "nplus1_otlp_"))
	}

	stop()
	recs := logs.records(t, "OTLP export stopped")
	if len(recs) != 1 || recs[0]["failed"] != float64(0) || recs[0]["exported"].(float64) < 2 {
		t.Errorf("OTLP export stopped records: %v, want one with 2 or more exported, none failed", recs)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text []byte, s string) string {
	var out []string
	for line := range strings.Lines(string(text)) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}

// TestOTLPBlackHoleChangesNothingForTheRelay points --otlp-endpoint at an
// endpoint that accepts connections and never answers: statements through
// the proxy run as before, findings are still made and served, errors are
// logged at most once, and the proxy still stops within its shutdown
// timeout plus the export's.
func TestOTLPBlackHoleChangesNothingForTheRelay(t *testing.T) {
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "2s",
		"--otlp-endpoint", "http://" + hole.Addr().String(), "--report-cooldown", "0"}
	addrs, logs, done := startCommand(t, ctx, args, env, io.Discard, "proxy", "http")

	conn, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=otlp-hole"))
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	if _, err := conn.Exec(ctx, otlpSchema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	const loops = 5
	for i := range loops {
		time.Sleep(250 * time.Millisecond)
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		err := runLoop(tctx, conn, "00-"+randomHex(t, 16)+"-"+randomHex(t, 8)+"-01")
		tcancel()
		if err != nil {
			t.Fatalf("loop %d through the proxy with the endpoint a black hole: %v", i, err)
		}
	}
	conn.Close(ctx)
	// The findings are made and served, whatever the endpoint does.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + addrs["http"] + "/api/findings?kind=n_plus_one")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if n := bytes.Count(b, []byte(`"kind":"n_plus_one"`)); n == loops {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d n_plus_one findings served, want %d", n, loops)
		}
		time.Sleep(100 * time.Millisecond)
	}

	begin := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return 20s after cancel with the endpoint a black hole")
	}
	if d := time.Since(begin); d > 2*time.Second+otlpShutdownTimeout+3*time.Second {
		t.Errorf("stopping took %v, want at most the shutdown timeouts (2s + %v) and a margin", d, otlpShutdownTimeout)
	}
	if n := len(logs.records(t, "OTLP export failed")); n > 1 {
		t.Errorf("%d export failures logged within a minute, want at most 1", n)
	}
	recs := logs.records(t, "OTLP export stopped")
	if len(recs) != 1 || recs[0]["exported"] != float64(0) {
		t.Errorf("OTLP export stopped records: %v, want one with nothing exported", recs)
	}
}
