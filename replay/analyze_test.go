package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/pgwire"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// workload: conn 1 runs an N+1 (a source query, then 8 lookups), conn 2
// repeats one query 4 times, interleaved, then an idle second, then conn 1
// runs a SELECT * once.
func workload() []*pgwire.Execution {
	c1 := &pgwire.ConnInfo{ID: 1, User: "u", Database: "d", ApplicationName: "a"}
	c2 := &pgwire.ConnInfo{ID: 2, User: "u", Database: "d"}
	var out []*pgwire.Execution
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	out = append(out, &pgwire.Execution{Conn: c1, Start: at(0), End: at(1), SQL: "SELECT id, user_id FROM orders WHERE status = $1 LIMIT 20",
		Protocol: "extended", Command: "SELECT", Rows: 8, ParamsHash: 1, NumParams: 1})
	for i := range 8 {
		out = append(out, &pgwire.Execution{Conn: c1, Start: at(2 + float64(i)), End: at(2.5 + float64(i)), SQL: "SELECT name FROM users WHERE id = $1",
			Protocol: "extended", Command: "SELECT", Rows: 1, ParamsHash: uint64(100 + i), NumParams: 1})
		if i < 4 {
			out = append(out, &pgwire.Execution{Conn: c2, Start: at(2.6 + float64(i)), End: at(2.8 + float64(i)), SQL: "SELECT name FROM users WHERE id = $1",
				Protocol: "extended", Command: "SELECT", Rows: 1, ParamsHash: 7, NumParams: 1})
		}
	}
	out = append(out, &pgwire.Execution{Conn: c1, Start: at(1000), End: at(1001), SQL: "SELECT * FROM products WHERE id = 42",
		Protocol: "simple", Command: "SELECT", Rows: 1})
	out = append(out, &pgwire.Execution{Conn: c1, Start: at(1002), End: at(1003), SQL: "SELECT nope", Protocol: "simple", Rows: -1, SQLState: "42703"})
	return out
}

func run(t *testing.T, execs []*pgwire.Execution) (*Report, string) {
	t.Helper()
	col := NewCollector(0)
	var jsonl bytes.Buffer
	src := SliceSource(execs)
	sum, err := Analyze(context.Background(), &src, Config{Analyzer: analyzer.Config{Sinks: []analyzer.Sink{col, analyzer.NewJSONL(&jsonl)}}})
	if err != nil {
		t.Fatal(err)
	}
	fs, dropped := col.Findings()
	return &Report{Mode: "analysis", Findings: fs, FindingsDropped: dropped, Summary: sum}, jsonl.String()
}

func TestAnalyze(t *testing.T) {
	r, jsonl := run(t, workload())
	var kinds []string
	for _, f := range r.Findings {
		kinds = append(kinds, fmt.Sprintf("%s/conn%d", f.Kind, f.Connection.ID))
	}
	if got, want := strings.Join(kinds, " "), "duplicate_query/conn2 n_plus_one/conn1 select_star/conn1"; got != want {
		t.Errorf("findings: got %s, want %s", got, want)
	}
	// Deterministic: the same input gives the same findings, byte for byte.
	for range 3 {
		if _, again := run(t, workload()); again != jsonl {
			t.Fatalf("findings differ between runs:\n%s\n%s", jsonl, again)
		}
	}
	s := r.Summary
	if s.Statements != 15 || s.Connections != 2 || s.Errors != 1 || len(s.Fingerprints) != 4 {
		t.Fatalf("summary: %d statements, %d conns, %d errors, %d fingerprints", s.Statements, s.Connections, s.Errors, len(s.Fingerprints))
	}
	top := s.Fingerprints[0]
	if top.Calls != 12 || top.Query != "SELECT name FROM users WHERE id = $1" || top.Findings[detector.KindNPlusOne] != 1 ||
		top.Findings[detector.KindDuplicateQuery] != 1 || top.Rows != 12 {
		t.Errorf("top fingerprint: %+v", top)
	}
	wantTotal := 8*500*time.Microsecond + 4*200*time.Microsecond
	if d := top.Total - wantTotal; d < -time.Microsecond || d > time.Microsecond || top.Max != 500*time.Microsecond {
		t.Errorf("total %v, max %v; want %v, 500µs", top.Total, top.Max, wantTotal)
	}
	if p := top.P95(); p < 480*time.Microsecond || p > 500*time.Microsecond {
		t.Errorf("p95 %v, want about 500µs", p)
	}

	var text bytes.Buffer
	if err := WriteText(&text, r, 2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"15 statements on 2 connections", "3 findings (1 n_plus_one, 1 duplicate_query, 1 select_star)",
		"n_plus_one,duplicate_query", "SELECT name FROM users WHERE id = $1", "(2 more query shapes"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []detector.Finding `json:"findings"`
		Summary  struct {
			Statements   int `json:"statements"`
			Fingerprints []struct {
				Calls int     `json:"calls"`
				P95   float64 `json:"p95_ms"`
			} `json:"fingerprints"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("json output: %v\n%s", err, js.String())
	}
	if len(doc.Findings) != 3 || doc.Summary.Statements != 15 || doc.Summary.Fingerprints[0].Calls != 12 {
		t.Errorf("json output: %+v", doc)
	}

	var ju bytes.Buffer
	if err := WriteJUnit(&ju, r, []detector.Kind{detector.KindNPlusOne}, nil); err != nil {
		t.Fatal(err)
	}
	var suites junitSuites
	if err := xml.Unmarshal(ju.Bytes(), &suites); err != nil {
		t.Fatalf("junit output: %v\n%s", err, ju.String())
	}
	if suites.Tests != 3 || suites.Fails != 1 || len(suites.Suites) != len(detector.Kinds()) { // a suite per kind
		t.Errorf("junit: %d tests, %d failures, %d suites; want 3, 1, %d\n%s", suites.Tests, suites.Fails, len(suites.Suites), len(detector.Kinds()), ju.String())
	}
}

func TestHistogram(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 15 * time.Microsecond, 16 * time.Microsecond, 33 * time.Microsecond,
		time.Millisecond, 1234567 * time.Microsecond, time.Hour} {
		b := bucketOf(d)
		if up := bucketUpper(b); up < d || (b > 0 && bucketUpper(b-1) >= d) {
			t.Errorf("%v: bucket %d upper %v, previous %v", d, b, up, bucketUpper(b-1))
		}
		if up := bucketUpper(b); d > 16*time.Microsecond && float64(up-d) > float64(d)/subBuckets {
			t.Errorf("%v: bucket upper %v is more than 1/%d off", d, up, subBuckets)
		}
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	if q := h.quantile(0.95); q < 950*time.Millisecond || q > 1010*time.Millisecond {
		t.Errorf("p95 of 1..1000 ms: got %v", q)
	}
}

func TestSummaryBound(t *testing.T) {
	var execs []*pgwire.Execution
	c := &pgwire.ConnInfo{ID: 1}
	for i := range 50 {
		execs = append(execs, &pgwire.Execution{Conn: c, Start: t0, End: t0.Add(time.Millisecond), SQL: fmt.Sprintf("SELECT c%d FROM t", i), Rows: 1})
	}
	src := SliceSource(execs)
	sum, err := Analyze(context.Background(), &src, Config{MaxFingerprints: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Fingerprints) != 11 || sum.Statements != 50 {
		t.Fatalf("got %d fingerprints, want 10 and other", len(sum.Fingerprints))
	}
	var other *FingerprintStats
	for _, f := range sum.Fingerprints {
		if f.Fingerprint == "other" {
			other = f
		}
	}
	if other == nil || other.Calls != 40 {
		t.Errorf("other: %+v", other)
	}
}
