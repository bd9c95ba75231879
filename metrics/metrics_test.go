package metrics

import (
	"bytes"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/promtest"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// feeder runs executions through an Exporter with a real fingerprint cache.
type feeder struct {
	e    *Exporter
	fp   *fingerprint.Cache
	conn *pgwire.ConnInfo
}

func newFeeder(t testing.TB, reg prometheus.Registerer, opts Options) *feeder {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e, err := New(reg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &feeder{e: e, fp: fingerprint.New(fingerprint.Options{}), conn: &pgwire.ConnInfo{ID: 1}}
}

// run observes one execution of sql that took d and ended with the given
// tag, SQLSTATE and rows; it returns the statement's fingerprint.
func (f *feeder) run(sql, tag, state string, rows int64, d time.Duration) *fingerprint.Statement {
	x := &pgwire.Execution{Conn: f.conn, Start: t0, End: t0.Add(d), SQL: sql, Command: tag, SQLState: state, Rows: rows}
	st := &f.fp.Of(sql).Statements[0]
	f.e.Observe(&detector.Event{Exec: x, Stmt: st})
	return st
}

func TestQueriesDurationRowsErrorsFindings(t *testing.T) {
	f := newFeeder(t, nil, Options{})
	f.run("SELECT name FROM users WHERE id = 1", "SELECT", "", 1, 700*time.Microsecond)
	f.run("SELECT name FROM users", "SELECT", "", 3000, 20*time.Millisecond)
	f.run("UPDATE users SET name = 'x' WHERE id = 2", "UPDATE", "", 1, 2*time.Millisecond)
	f.run("INSERT INTO users (id) VALUES (1)", "", "23505", -1, 3*time.Millisecond)         // failed: kind from the parse
	f.run("SELECT nope FROM users", "", "42703", -1, 300*time.Microsecond)                  // failed select: no rows observed
	f.run("SELECT 1", "", "XY123", -1, 0)                                                   // unknown class
	f.run("BEGIN", "BEGIN", "", -1, 100*time.Microsecond)                                   // transaction control
	f.run("CREATE TABLE t (a int)", "CREATE TABLE", "", -1, 15*time.Millisecond)            // utility
	f.e.Observe(&detector.Event{Exec: &pgwire.Execution{Conn: f.conn, Start: t0, End: t0}}) // empty query, no statement
	f.e.Observe(&detector.Event{})                                                          // nothing at all: ignored
	f.e.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Severity: detector.SeverityWarning, Count: 12})
	f.e.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Severity: detector.SeverityCritical, Count: 60})
	f.e.Finding(&detector.Finding{Kind: detector.KindSelectStar, Severity: detector.SeverityInfo, Count: 1})
	f.e.Finding(&detector.Finding{Kind: detector.KindDuplicateQuery, Severity: "loud", Count: 3}) // counted as a warning

	const want = `
# HELP nplus1_findings_total Findings reported, by kind (n_plus_one, duplicate_query, unpaginated, select_star, leading_wildcard, deep_offset, slow_query, lost_update, missing_index) and severity (info, warning, critical), after the safelist and the report cooldown.
# TYPE nplus1_findings_total counter
nplus1_findings_total{kind="deep_offset",severity="critical"} 0
nplus1_findings_total{kind="deep_offset",severity="info"} 0
nplus1_findings_total{kind="deep_offset",severity="warning"} 0
nplus1_findings_total{kind="duplicate_query",severity="critical"} 0
nplus1_findings_total{kind="duplicate_query",severity="info"} 0
nplus1_findings_total{kind="duplicate_query",severity="warning"} 1
nplus1_findings_total{kind="leading_wildcard",severity="critical"} 0
nplus1_findings_total{kind="leading_wildcard",severity="info"} 0
nplus1_findings_total{kind="leading_wildcard",severity="warning"} 0
nplus1_findings_total{kind="lost_update",severity="critical"} 0
nplus1_findings_total{kind="lost_update",severity="info"} 0
nplus1_findings_total{kind="lost_update",severity="warning"} 0
nplus1_findings_total{kind="missing_index",severity="critical"} 0
nplus1_findings_total{kind="missing_index",severity="info"} 0
nplus1_findings_total{kind="missing_index",severity="warning"} 0
nplus1_findings_total{kind="n_plus_one",severity="critical"} 1
nplus1_findings_total{kind="n_plus_one",severity="info"} 0
nplus1_findings_total{kind="n_plus_one",severity="warning"} 1
nplus1_findings_total{kind="select_star",severity="critical"} 0
nplus1_findings_total{kind="select_star",severity="info"} 1
nplus1_findings_total{kind="select_star",severity="warning"} 0
nplus1_findings_total{kind="slow_query",severity="critical"} 0
nplus1_findings_total{kind="slow_query",severity="info"} 0
nplus1_findings_total{kind="slow_query",severity="warning"} 0
nplus1_findings_total{kind="unpaginated",severity="critical"} 0
nplus1_findings_total{kind="unpaginated",severity="info"} 0
nplus1_findings_total{kind="unpaginated",severity="warning"} 0
# HELP nplus1_n_plus_one_group_size Executions of the repeated statement in each reported N+1 loop.
# TYPE nplus1_n_plus_one_group_size histogram
nplus1_n_plus_one_group_size_bucket{le="5"} 0
nplus1_n_plus_one_group_size_bucket{le="10"} 0
nplus1_n_plus_one_group_size_bucket{le="20"} 1
nplus1_n_plus_one_group_size_bucket{le="50"} 1
nplus1_n_plus_one_group_size_bucket{le="100"} 2
nplus1_n_plus_one_group_size_bucket{le="200"} 2
nplus1_n_plus_one_group_size_bucket{le="500"} 2
nplus1_n_plus_one_group_size_bucket{le="1000"} 2
nplus1_n_plus_one_group_size_bucket{le="2000"} 2
nplus1_n_plus_one_group_size_bucket{le="+Inf"} 2
nplus1_n_plus_one_group_size_sum 72
nplus1_n_plus_one_group_size_count 2
# HELP nplus1_query_errors_total Statements that failed, by SQLSTATE class (the code's first two characters; other for codes outside PostgreSQL's classes).
# TYPE nplus1_query_errors_total counter
nplus1_query_errors_total{class="23"} 1
nplus1_query_errors_total{class="42"} 1
nplus1_query_errors_total{class="other"} 1
# HELP nplus1_query_rows_returned Rows returned by each successful SELECT or FETCH, from its CommandComplete tag.
# TYPE nplus1_query_rows_returned histogram
nplus1_query_rows_returned_bucket{le="0"} 0
nplus1_query_rows_returned_bucket{le="1"} 1
nplus1_query_rows_returned_bucket{le="5"} 1
nplus1_query_rows_returned_bucket{le="10"} 1
nplus1_query_rows_returned_bucket{le="50"} 1
nplus1_query_rows_returned_bucket{le="100"} 1
nplus1_query_rows_returned_bucket{le="500"} 1
nplus1_query_rows_returned_bucket{le="1000"} 1
nplus1_query_rows_returned_bucket{le="5000"} 2
nplus1_query_rows_returned_bucket{le="10000"} 2
nplus1_query_rows_returned_bucket{le="100000"} 2
nplus1_query_rows_returned_bucket{le="+Inf"} 2
nplus1_query_rows_returned_sum 3001
nplus1_query_rows_returned_count 2
`
	if err := testutil.CollectAndCompare(f.e.m, strings.NewReader(want),
		"nplus1_findings_total", "nplus1_n_plus_one_group_size", "nplus1_query_errors_total", "nplus1_query_rows_returned"); err != nil {
		t.Error(err)
	}

	queries := map[[2]string]float64{
		{"select", "ok"}: 2, {"update", "ok"}: 1, {"insert", "error"}: 1, {"select", "error"}: 2,
		{"transaction", "ok"}: 1, {"utility", "ok"}: 1, {"other", "ok"}: 1,
	}
	for c := range numCommands {
		for o := range numOutcomes {
			key := [2]string{commandNames[c], outcomeNames[o]}
			if got := testutil.ToFloat64(f.e.m.queries[c][o]); got != queries[key] {
				t.Errorf("nplus1_queries_total%v = %v, want %v", key, got, queries[key])
			}
		}
	}
	if got := testutil.CollectAndCount(f.e.m.durationVec); got != numCommands {
		t.Errorf("got %d duration histograms, want one per command (%d)", got, numCommands)
	}
	// The 0.7 ms SELECT lands in the 1 ms bucket, not the 0.5 ms one.
	var buf bytes.Buffer
	out, err := testutil.CollectAndFormat(f.e.m.durationVec, expfmt.TypeTextPlain, "nplus1_query_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(out)
	for _, line := range []string{
		`nplus1_query_duration_seconds_bucket{command="select",le="0.0005"} 2`, // the two failed ones
		`nplus1_query_duration_seconds_bucket{command="select",le="0.001"} 3`,
		`nplus1_query_duration_seconds_bucket{command="select",le="0.025"} 4`,
		`nplus1_query_duration_seconds_count{command="select"} 4`,
		`nplus1_query_duration_seconds_bucket{command="utility",le="0.01"} 0`,
		`nplus1_query_duration_seconds_bucket{command="utility",le="0.025"} 1`,
	} {
		if !strings.Contains(buf.String(), line+"\n") {
			t.Errorf("exposition lacks %q:\n%s", line, buf.String())
		}
	}
}

func TestCommandOf(t *testing.T) {
	fp := fingerprint.New(fingerprint.Options{})
	st := func(sql string) *fingerprint.Statement { return &fp.Of(sql).Statements[0] }
	for _, c := range []struct {
		tag  string
		st   *fingerprint.Statement
		want string
	}{
		{"SELECT", nil, "select"},
		{"INSERT", nil, "insert"},
		{"UPDATE", nil, "update"},
		{"DELETE", nil, "delete"},
		{"MERGE", nil, "merge"},
		{"COPY", nil, "copy"},
		{"FETCH", nil, "fetch"},
		{"MOVE", nil, "fetch"},
		{"COMMIT", nil, "transaction"},
		{"START TRANSACTION", nil, "transaction"},
		{"SET", nil, "utility"},
		{"CREATE INDEX", nil, "utility"},
		{"", nil, "other"},
		{"", st("DELETE FROM t"), "delete"},
		{"", st("VACUUM"), "utility"},
		{"", st("SELEC nonsense"), "other"},
	} {
		if got := commandNames[commandOf(c.tag, c.st)]; got != c.want {
			t.Errorf("commandOf(%q, %v) = %s, want %s", c.tag, c.st != nil, got, c.want)
		}
	}
}

func TestSQLStateClass(t *testing.T) {
	for code, want := range map[string]string{"23505": "23", "42P01": "42", "08006": "08", "57014": "57", "P0001": "P0", "XX000": "XX", "ZZ999": "other", "23": "other", "": "other"} {
		if got := sqlstateClass(code); got != want {
			t.Errorf("sqlstateClass(%q) = %q, want %q", code, got, want)
		}
	}
}

func TestSources(t *testing.T) {
	ps := proxy.Stats{ConnsAccepted: 10, ConnsRejected: 1, ConnsActive: 3, ConnErrors: 2, UpstreamErrors: 4, UpstreamActive: 3,
		ProtocolErrors: 5, ServerLost: 4, Cancels: 6, BytesFromClient: 1000, BytesFromServer: 9000, Events: 70, EventsDropped: 7,
		LoginsActive: 2, LoginsRejected: 11, LoginTimeouts: 12}
	c := newSourcesCollector(Sources{Proxy: func() proxy.Stats { return ps }, QueueLength: func() int { return 8 }, QueueCapacity: 100})
	const want = `
# HELP nplus1_analysis_queue_capacity Size of the analysis queue (--queue-size).
# TYPE nplus1_analysis_queue_capacity gauge
nplus1_analysis_queue_capacity 100
# HELP nplus1_analysis_queue_length Executions waiting in the analysis queue.
# TYPE nplus1_analysis_queue_length gauge
nplus1_analysis_queue_length 8
# HELP nplus1_cancel_requests_total CancelRequests forwarded to the upstream.
# TYPE nplus1_cancel_requests_total counter
nplus1_cancel_requests_total 6
# HELP nplus1_client_connection_errors_total Client connections that ended with an error rather than a clean close, by reason (protocol: a malformed or oversized message; server_lost: the server side ended the session or login, not after the client's Terminate; other).
# TYPE nplus1_client_connection_errors_total counter
nplus1_client_connection_errors_total{reason="other"} 2
nplus1_client_connection_errors_total{reason="protocol"} 5
nplus1_client_connection_errors_total{reason="server_lost"} 4
# HELP nplus1_client_connections_accepted_total Client connections accepted.
# TYPE nplus1_client_connections_accepted_total counter
nplus1_client_connections_accepted_total 10
# HELP nplus1_client_connections_active Client connections open now.
# TYPE nplus1_client_connections_active gauge
nplus1_client_connections_active 3
# HELP nplus1_client_connections_rejected_total Client connections refused because --max-connections or --max-login-connections was reached or the proxy was shutting down.
# TYPE nplus1_client_connections_rejected_total counter
nplus1_client_connections_rejected_total 1
# HELP nplus1_client_login_timeouts_total Client connections closed because their login took longer than --login-timeout.
# TYPE nplus1_client_login_timeouts_total counter
nplus1_client_login_timeouts_total 12
# HELP nplus1_client_logins_active Client connections logging in now (accepted, not yet authenticated).
# TYPE nplus1_client_logins_active gauge
nplus1_client_logins_active 2
# HELP nplus1_client_logins_rejected_total Client connections refused at once because --max-login-connections were logging in.
# TYPE nplus1_client_logins_rejected_total counter
nplus1_client_logins_rejected_total 11
# HELP nplus1_executions_dropped_total Executions dropped because the analysis queue was full (the relay never waits for analysis).
# TYPE nplus1_executions_dropped_total counter
nplus1_executions_dropped_total 7
# HELP nplus1_executions_queued_total Executions handed to the analysis queue.
# TYPE nplus1_executions_queued_total counter
nplus1_executions_queued_total 70
# HELP nplus1_relayed_bytes_total Bytes relayed, by direction (client_to_server, server_to_client).
# TYPE nplus1_relayed_bytes_total counter
nplus1_relayed_bytes_total{direction="client_to_server"} 1000
nplus1_relayed_bytes_total{direction="server_to_client"} 9000
# HELP nplus1_upstream_connect_errors_total Failed upstream dials and TLS handshakes (for sessions and for forwarded cancel requests).
# TYPE nplus1_upstream_connect_errors_total counter
nplus1_upstream_connect_errors_total 4
# HELP nplus1_upstream_connections_active Upstream (PostgreSQL) connections open now, one per client session.
# TYPE nplus1_upstream_connections_active gauge
nplus1_upstream_connections_active 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// The detector and cache sources: every kind, reason and cache, zeros
	// included.
	det := detector.New(detector.Config{})
	fp := fingerprint.New(fingerprint.Options{})
	fp.Of("SELECT 1")
	fp.Of("SELECT 1")
	c = newSourcesCollector(Sources{Detector: det.Stats, Fingerprints: fp.Stats})
	if n := testutil.CollectAndCount(c, "nplus1_detector_occurrences_total"); n != 3*len(detector.Kinds()) {
		t.Errorf("got %d occurrence series, want %d kinds × 3 results", n, len(detector.Kinds()))
	}
	if n := testutil.CollectAndCount(c, "nplus1_detector_windows_closed_total"); n != 6 {
		t.Errorf("got %d windows_closed series, want 6 reasons", n)
	}
	const wantCache = `
# HELP nplus1_fingerprint_cache_hits_total Fingerprint cache hits, by cache (text: exact SQL text; template: statement with literals blanked; shape: facts by fingerprint).
# TYPE nplus1_fingerprint_cache_hits_total counter
nplus1_fingerprint_cache_hits_total{cache="shape"} 0
nplus1_fingerprint_cache_hits_total{cache="template"} 0
nplus1_fingerprint_cache_hits_total{cache="text"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantCache), "nplus1_fingerprint_cache_hits_total"); err != nil {
		t.Error(err)
	}
}

// TestInspectionSources: the inspection connection's counters, as
// --inspect-url exports them; none of them without it.
func TestInspectionSources(t *testing.T) {
	st := InspectionStats{Inspected: 9, Failed: 2, Dropped: 3, Lost: 1, Cached: 40, Connected: true}
	c := newSourcesCollector(Sources{Inspections: func() InspectionStats { return st }})
	const want = `
# HELP nplus1_inspection_cache_hits_total Inspection requests answered from the cache of answers per fingerprint, without a statement on the inspection connection.
# TYPE nplus1_inspection_cache_hits_total counter
nplus1_inspection_cache_hits_total 40
# HELP nplus1_inspection_connection_up 1 when the inspection connection is connected, 0 while it is being made or remade (with backoff).
# TYPE nplus1_inspection_connection_up gauge
nplus1_inspection_connection_up 1
# HELP nplus1_inspections_dropped_total Inspections that did not reach the detector, by reason (queue_full: a request dropped because the inspection queue was full, asked again by a later occurrence; answer_lost: an answer the analysis had no room for, cached for the next request).
# TYPE nplus1_inspections_dropped_total counter
nplus1_inspections_dropped_total{reason="answer_lost"} 1
nplus1_inspections_dropped_total{reason="queue_full"} 3
# HELP nplus1_inspections_total Query shapes inspected on the inspection connection (--inspect-url: catalogs and a generic plan, for missing_index), by result (ok; failed: missing privileges, a timeout, a query that does not plan).
# TYPE nplus1_inspections_total counter
nplus1_inspections_total{result="failed"} 2
nplus1_inspections_total{result="ok"} 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	st.Connected = false
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP nplus1_inspection_connection_up 1 when the inspection connection is connected, 0 while it is being made or remade (with backoff).
# TYPE nplus1_inspection_connection_up gauge
nplus1_inspection_connection_up 0
`), "nplus1_inspection_connection_up"); err != nil {
		t.Error(err)
	}
	without := newSourcesCollector(Sources{Proxy: func() proxy.Stats { return proxy.Stats{} }})
	if n := testutil.CollectAndCount(without, "nplus1_inspections_total", "nplus1_inspection_connection_up"); n != 0 {
		t.Errorf("without an inspection source: %d inspection series, want 0", n)
	}
}

func TestWatchTwiceFails(t *testing.T) {
	f := newFeeder(t, nil, Options{})
	if err := f.e.Watch(Sources{Proxy: func() proxy.Stats { return proxy.Stats{} }}); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Watch(Sources{Proxy: func() proxy.Stats { return proxy.Stats{} }}); err == nil {
		t.Error("second Watch succeeded, want an error")
	}
}

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		in      Options
		wantErr string
		wantK   int
	}{
		{in: Options{}, wantK: DefaultTopK},
		{in: Options{TopK: -1}, wantK: 0},
		{in: Options{TopK: 7, TopBy: RankTime}, wantK: 7},
		{in: Options{TopBy: "calls"}, wantErr: "unknown ranking"},
		{in: Options{TopWindow: time.Millisecond}, wantErr: "at least 1s"},
	} {
		o, err := c.in.withDefaults()
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: got error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || o.TopK != c.wantK || o.Tracked <= o.TopK {
			t.Errorf("%+v: got %+v, %v; want TopK %d and Tracked > TopK", c.in, o, err, c.wantK)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/nplus1/nplus1", Version: "v1.2.3"},
		Deps: []*debug.Module{
			{Path: "github.com/jackc/pgx/v5", Version: "v5.12.0"},
			{Path: pgQueryModule, Version: "v6.2.5"},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "f38c929"}, {Key: "vcs.modified", Value: "true"}},
	}
	if v, r, g, p := labelsOf(bi); v != "v1.2.3" || r != "f38c929-dirty" || g != runtime.Version() || p != "v6.2.5" {
		t.Errorf("got version %q revision %q go %q pg_query %q, want v1.2.3 f38c929-dirty %s v6.2.5", v, r, g, p, runtime.Version())
	}
	bi.Deps[1].Replace = &debug.Module{Path: "../pg_query_go", Version: ""}
	bi.Settings = nil
	if _, r, _, p := labelsOf(bi); r != "unknown" || p != "v6.2.5" {
		t.Errorf("with a local replace and no VCS stamp: got revision %q pg_query %q, want unknown v6.2.5", r, p)
	}
	if v, r, _, p := labelsOf(nil); v != "unknown" || r != "unknown" || p != "unknown" {
		t.Errorf("without build info: got %q %q %q, want unknown", v, r, p)
	}
	if n := testutil.CollectAndCount(newBuildInfo(), "nplus1_build_info"); n != 1 {
		t.Errorf("got %d build info series, want 1", n)
	}
}

// TestLint lints a complete exposition (every metric family, Go and process
// collectors included) with client_golang's promlint.
func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := Exercise(reg); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestPromtoolCheckMetrics runs Prometheus's own linter on a complete scrape.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := promtest.Promtool(t)
	reg := prometheus.NewRegistry()
	if err := Exercise(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Encoded here: testutil.GatherAndFormat without names returns nothing.
	var out bytes.Buffer
	enc := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"# TYPE nplus1_fingerprint_info gauge", "# TYPE nplus1_query_duration_seconds histogram", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the exposition lacks %q:\n%s", want, out.String())
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &out
	if res, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, res)
	}
}

func TestNames(t *testing.T) {
	names, err := Names()
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool)
	for _, n := range names {
		have[n] = true
	}
	for _, n := range []string{
		"nplus1_build_info", "nplus1_findings_total", "nplus1_query_duration_seconds_bucket", "nplus1_query_duration_seconds_count",
		"nplus1_query_errors_total", "nplus1_relayed_bytes_total", "nplus1_fingerprint_info", "nplus1_fingerprint_findings_total",
		"nplus1_detector_windows_open", "nplus1_fingerprint_cache_hits_total", "go_goroutines", "process_resident_memory_bytes",
		"nplus1_inspections_total", "nplus1_inspections_dropped_total", "nplus1_inspection_cache_hits_total", "nplus1_inspection_connection_up",
	} {
		if !have[n] {
			t.Errorf("Names lacks %s; got %v", n, names)
		}
	}
	if have["nplus1_query_duration_seconds"] {
		t.Error("Names holds a histogram's bare name")
	}
}
