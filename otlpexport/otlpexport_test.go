package otlpexport

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nplus1/nplus1/detector"
)

const (
	appTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	appParent = "00f067aa0ba902b7"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// nPlusOne is a finding as the detector makes it for a traced request.
func nPlusOne(traceparent string) *detector.Finding {
	f := &detector.Finding{
		Time: t0.Add(22 * time.Millisecond), Kind: detector.KindNPlusOne, Severity: detector.SeverityWarning,
		Fingerprint: "c22fd7376bdafabf", Query: "SELECT name FROM users WHERE id = $1", Tables: []string{"users"},
		Count: 6, DistinctParams: 6, DurationMS: 6,
		WindowStart: t0, WindowEnd: t0.Add(22 * time.Millisecond),
		ApplicationName: "shop-api",
		Connection:      detector.Connection{ID: 7, ClientAddr: "10.0.0.1", User: "shop", Database: "shopdb", ApplicationName: "shop-api"},
		Source:          &detector.Source{Fingerprint: "99b3850c60c71289", Query: "SELECT id, user_id FROM orders WHERE status = $1", Rows: 6},
		Evidence: &detector.Evidence{Kind: detector.EvidenceDataFlow, SourceFingerprint: "99b3850c60c71289",
			SourceColumn: "user_id", Param: 1, Matched: 6, Of: 6},
		Suggestion:  "Fetch these rows in one query with `WHERE id = ANY($1)`.",
		Occurrences: 1, Connections: 1,
	}
	if traceparent != "" {
		f.TraceID = appTrace
		f.Tags = map[string]string{"traceparent": traceparent, "route": "/orders", "framework": "express"}
	}
	return f
}

// keep is an in-memory exporter that keeps its spans after Shutdown.
type keep struct{ *tracetest.InMemoryExporter }

func (keep) Shutdown(context.Context) error { return nil }

// newMemory is an Exporter whose spans stay in the process.
func newMemory(t *testing.T, opts Options) (*Exporter, *tracetest.InMemoryExporter) {
	t.Helper()
	mem := tracetest.NewInMemoryExporter()
	if opts.Exporter == nil {
		opts.Exporter = keep{mem}
	}
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e, mem
}

// exported shuts e down, which exports what waits, and returns the spans.
func exported(t *testing.T, e *Exporter, mem *tracetest.InMemoryExporter) tracetest.SpanStubs {
	t.Helper()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return mem.GetSpans()
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestFindingJoinsTheApplicationTrace(t *testing.T) {
	e, mem := newMemory(t, Options{ServiceVersion: "v9.9.9"})
	e.Finding(nPlusOne("00-" + appTrace + "-" + appParent + "-01"))
	spans := exported(t, e, mem)
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	s := spans[0]
	if got := s.SpanContext.TraceID().String(); got != appTrace {
		t.Errorf("trace id %s, want the application's %s", got, appTrace)
	}
	if got := s.Parent.SpanID().String(); got != appParent || !s.Parent.IsRemote() {
		t.Errorf("parent %s (remote %v), want the application's span %s", got, s.Parent.IsRemote(), appParent)
	}
	if s.SpanContext.SpanID().String() == appParent || !s.SpanContext.IsSampled() {
		t.Errorf("span context %v: want a new sampled span", s.SpanContext)
	}
	if s.Name != "nplus1 n_plus_one users" {
		t.Errorf("name %q", s.Name)
	}
	if !s.StartTime.Equal(t0) || !s.EndTime.Equal(t0.Add(22*time.Millisecond)) {
		t.Errorf("start %v end %v, want the window %v .. +22ms", s.StartTime, s.EndTime, t0)
	}
	if s.SpanKind != trace.SpanKindInternal {
		t.Errorf("kind %v", s.SpanKind)
	}
	a := attrs(s)
	want := map[attribute.Key]string{
		"db.system.name":                     "postgresql",
		"db.query.text":                      "SELECT name FROM users WHERE id = $1",
		"db.namespace":                       "shopdb",
		"db.collection.name":                 "users",
		"nplus1.kind":                        "n_plus_one",
		"nplus1.severity":                    "warning",
		"nplus1.fingerprint":                 "c22fd7376bdafabf",
		"nplus1.source.query":                "SELECT id, user_id FROM orders WHERE status = $1",
		"nplus1.evidence.kind":               "data_flow",
		"nplus1.evidence.source_column":      "user_id",
		"nplus1.evidence.source_fingerprint": "99b3850c60c71289",
		"nplus1.suggestion":                  "Fetch these rows in one query with `WHERE id = ANY($1)`.",
		"nplus1.tag.route":                   "/orders",
		"nplus1.application_name":            "shop-api",
	}
	for k, v := range want {
		if got := a[k].Emit(); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for k, v := range map[attribute.Key]int64{"nplus1.count": 6, "nplus1.distinct_params": 6, "nplus1.evidence.matched": 6,
		"nplus1.evidence.of": 6, "nplus1.evidence.param": 1, "nplus1.source.rows": 6, "nplus1.occurrences": 1} {
		if got := a[k].AsInt64(); got != v {
			t.Errorf("%s = %d, want %d", k, got, v)
		}
	}
	for _, k := range []attribute.Key{"nplus1.tag.traceparent", "nplus1.trace_id", "db.operation.name"} {
		if _, ok := a[k]; ok {
			t.Errorf("unexpected attribute %s", k)
		}
	}
	r := map[string]string{}
	for _, kv := range s.Resource.Attributes() {
		r[string(kv.Key)] = kv.Value.Emit()
	}
	if r["service.name"] != "nplus1" || r["service.version"] != "v9.9.9" {
		t.Errorf("resource %v: want service.name nplus1, service.version v9.9.9", r)
	}
	if st := e.Stats(); st.Exported != 1 || st.Dropped != 0 || st.Failed != 0 || st.Pending != 0 {
		t.Errorf("stats %+v, want 1 exported", st)
	}
}

func TestFindingWithoutATraceIsARoot(t *testing.T) {
	e, mem := newMemory(t, Options{})
	e.Finding(nPlusOne(""))
	// A trace id whose traceparent tag is gone (or of another trace) is
	// kept as an attribute, on a root span.
	odd := nPlusOne("00-" + strings.Repeat("1", 32) + "-" + appParent + "-01")
	e.Finding(odd)
	spans := exported(t, e, mem)
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	for i, s := range spans {
		if s.Parent.IsValid() {
			t.Errorf("span %d has parent %v, want a root", i, s.Parent)
		}
		if s.SpanContext.TraceID().String() == appTrace {
			t.Errorf("span %d is on the application's trace without its traceparent", i)
		}
	}
	if _, ok := attrs(spans[0])["nplus1.trace_id"]; ok {
		t.Error("untraced finding has nplus1.trace_id")
	}
	if got := attrs(spans[1])["nplus1.trace_id"].AsString(); got != appTrace {
		t.Errorf("nplus1.trace_id = %q, want %s", got, appTrace)
	}
}

func TestAttributesOfOtherKinds(t *testing.T) {
	f := &detector.Finding{Kind: detector.KindNPlusOne, Severity: detector.SeverityCritical, Command: "INSERT",
		Query: "INSERT INTO items (order_id, sku) VALUES ($1, $2)", Tables: []string{"items"}, Count: 50,
		Evidence: &detector.Evidence{Kind: "transaction"}}
	a := map[attribute.Key]string{}
	for _, kv := range Attributes(f) {
		a[kv.Key] = kv.Value.Emit()
	}
	if a["db.operation.name"] != "INSERT" || a["nplus1.evidence.kind"] != "transaction" {
		t.Errorf("write N+1: %v", a)
	}
	if _, ok := a["db.namespace"]; ok {
		t.Error("db.namespace set without a database")
	}
	join := &detector.Finding{Kind: detector.KindUnpaginated, Query: "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id",
		Tables: []string{"orders", "users"}, Rows: 5000}
	a = map[attribute.Key]string{}
	for _, kv := range Attributes(join) {
		a[kv.Key] = kv.Value.Emit()
	}
	if _, ok := a["db.collection.name"]; ok {
		t.Error("db.collection.name set for a query over two tables")
	}
	if a["nplus1.tables"] != `["orders","users"]` || a["nplus1.rows"] != "5000" {
		t.Errorf("join: %v", a)
	}
	if got := SpanName(&detector.Finding{Kind: detector.KindSelectStar}); got != "nplus1 select_star" {
		t.Errorf("name without a table: %q", got)
	}
}

// stalled is an exporter whose first export waits for release: an
// endpoint that does not answer.
type stalled struct {
	sdktrace.SpanExporter
	release chan struct{}
	err     error
}

func (s *stalled) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	<-s.release
	if s.err != nil {
		return s.err
	}
	return s.SpanExporter.ExportSpans(ctx, spans)
}

func TestAFullQueueDropsAndNeverBlocks(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	st := &stalled{SpanExporter: keep{mem}, release: make(chan struct{})}
	e, _ := newMemory(t, Options{Exporter: st, QueueSize: 4, BatchTimeout: time.Hour})
	begin := time.Now()
	for range 20 {
		e.Finding(nPlusOne("00-" + appTrace + "-" + appParent + "-01"))
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("20 findings took %v with the endpoint stalled: Finding blocked", d)
	}
	if s := e.Stats(); s.Dropped != 16 || s.Pending != 4 || s.Exported != 0 {
		t.Errorf("stats %+v with 4 spans stalled in the export, want 16 dropped, 4 pending", s)
	}
	close(st.release)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Exported != 4 || s.Dropped != 16 || s.Pending != 0 {
		t.Errorf("stats %+v after the endpoint answered, want 4 exported, 16 dropped", s)
	}
	if n := len(mem.GetSpans()); n != 4 {
		t.Errorf("endpoint got %d spans, want 4", n)
	}
	e.Finding(nPlusOne(""))
	if s := e.Stats(); s.Dropped != 17 {
		t.Errorf("a finding after Shutdown: dropped %d, want 17", s.Dropped)
	}
}

func TestFailedExportsAreCountedAndLoggedOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	st := &stalled{SpanExporter: tracetest.NewInMemoryExporter(), release: make(chan struct{}), err: errors.New("connection refused")}
	close(st.release)
	e, _ := newMemory(t, Options{Exporter: st, Logger: logger, BatchTimeout: 5 * time.Millisecond})
	for range 5 {
		e.Finding(nPlusOne(""))
		time.Sleep(20 * time.Millisecond) // one batch, one error each
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Failed != 5 || s.Exported != 0 {
		t.Errorf("stats %+v, want 5 failed", s)
	}
	if n := strings.Count(buf.String(), "OTLP export failed"); n != 1 {
		t.Errorf("%d log lines for 5 failed exports within a minute, want 1:\n%s", n, buf.String())
	}
}

func TestErrorLogHoldsBackWithinTheInterval(t *testing.T) {
	var buf bytes.Buffer
	now := t0
	l := &errorLog{logger: slog.New(slog.NewTextHandler(&buf, nil)), interval: time.Minute, now: func() time.Time { return now }}
	for range 4 {
		l.Handle(errors.New("boom"))
		now = now.Add(10 * time.Second)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines in 40 s, want 1:\n%s", n, buf.String())
	}
	now = now.Add(time.Minute)
	l.Handle(errors.New("boom"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=3") {
		t.Errorf("after the interval: %q, want a second line with suppressed=3", lines)
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":              "http://127.0.0.1:4318/v1/traces",
		"http://jaeger:4318/":                "http://jaeger:4318/v1/traces",
		"https://otlp.example.com/otlp":      "https://otlp.example.com/otlp/v1/traces",
		" http://[::1]:4318 ":                "http://[::1]:4318/v1/traces",
		"https://api.honeycomb.io":           "https://api.honeycomb.io/v1/traces",
		"http://collector.observability:80/": "http://collector.observability:80/v1/traces",
	} {
		got, err := TracesURL(in)
		if err != nil || got != want {
			t.Errorf("TracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"127.0.0.1:4318":                  "scheme",
		"grpc://collector:4317":           "scheme",
		"http://":                         "no host",
		"http://user:s3cret@jaeger:4318":  "OTEL_EXPORTER_OTLP_HEADERS",
		"http://jaeger:4318/?a=b":         "query",
		"http://jaeger:99999":             "port",
		"http://jaeger:4318/%zz":          "not a URL",
		"http://user:s3cret@jaeger:bad%z": "not a URL",
	} {
		_, err := TracesURL(in)
		if err == nil || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "such as http://127.0.0.1:4318") {
			t.Errorf("TracesURL(%q): %v, want an error about %s that shows a valid value", in, err, why)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("TracesURL(%q): the error repeats the password: %v", in, err)
		}
	}
	if got := Redacted("https://jaeger:4318/v1/traces?x=1"); got != "https://jaeger:4318/v1/traces" {
		t.Errorf("Redacted: %q", got)
	}
}
