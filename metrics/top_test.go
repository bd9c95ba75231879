package metrics

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// scrape collects the top-K collector and returns each series' value by
// "name{fingerprint,kind}".
func scrape(t testing.TB, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "fingerprint" || l.GetName() == "kind" {
					labels = append(labels, l.GetValue())
				}
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestTopKFoldsTheRestIntoOther(t *testing.T) {
	clk := &clock{t0}
	f := newFeeder(t, nil, Options{TopK: 2, Now: clk.now})
	workload := func() (a, b, c string) {
		for range 3 {
			a = f.run("SELECT a FROM ta WHERE id = $1", "SELECT", "", 1, 10*time.Millisecond).Hex
		}
		b = f.run("SELECT b FROM tb", "SELECT", "", 7, 50*time.Millisecond).Hex
		for range 5 {
			c = f.run("SELECT c FROM tc WHERE id = $1", "SELECT", "", 1, time.Millisecond).Hex
		}
		f.e.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Fingerprint: c, Count: 5})
		return a, b, c
	}
	a, b, c := workload()

	// The first scrape ranks c (a finding) then b (50 ms) then a (30 ms):
	// c and b get series, starting now; so far everything was counted in
	// __other__.
	got := scrape(t, f.e.top)
	want := map[string]float64{
		"nplus1_fingerprint_calls_total{" + Other + "}":                    9,
		"nplus1_fingerprint_duration_seconds_total{" + Other + "}":         0.085,
		"nplus1_fingerprint_rows_total{" + Other + "}":                     15,
		"nplus1_fingerprint_findings_total{" + Other + ",n_plus_one}":      1,
		"nplus1_fingerprint_findings_total{" + Other + ",select_star}":     0,
		"nplus1_fingerprint_calls_total{" + c + "}":                        0,
		"nplus1_fingerprint_calls_total{" + b + "}":                        0,
		"nplus1_fingerprint_findings_total{" + c + ",n_plus_one}":          0,
		"nplus1_fingerprint_info{" + c + "}":                               1,
		"nplus1_fingerprint_info{" + b + "}":                               1,
		"nplus1_fingerprint_ranking_entries{}":                             3,
		"nplus1_fingerprint_ranking_evictions_total{}":                     0,
		"nplus1_fingerprint_duration_seconds_total{" + c + "}":             0,
		"nplus1_fingerprint_findings_total{" + b + ",duplicate_query}":     0,
		"nplus1_fingerprint_findings_total{" + Other + ",unpaginated}":     0,
		"nplus1_fingerprint_findings_total{" + Other + ",duplicate_query}": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || !near(g, v) {
			t.Errorf("first scrape: %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["nplus1_fingerprint_calls_total{"+a+"}"]; ok {
		t.Errorf("a has a series, want it folded into %s", Other)
	}
	if n, want := len(got), 2*(3+numKinds+1)+3+numKinds+2; n != want { // K = 2, __other__, ranking
		t.Errorf("first scrape: got %d series, want %d: %v", n, want, got)
	}

	// The same traffic again: now c and b count on their own series.
	workload()
	got = scrape(t, f.e.top)
	for k, v := range map[string]float64{
		"nplus1_fingerprint_calls_total{" + c + "}":               5,
		"nplus1_fingerprint_calls_total{" + b + "}":               1,
		"nplus1_fingerprint_rows_total{" + b + "}":                7,
		"nplus1_fingerprint_findings_total{" + c + ",n_plus_one}": 1,
		"nplus1_fingerprint_calls_total{" + Other + "}":           12,
	} {
		if g := got[k]; !near(g, v) {
			t.Errorf("second scrape: %s = %v, want %v", k, g, v)
		}
	}

	// The info series carries the normalized query, command and tables.
	const wantInfo = `
# HELP nplus1_fingerprint_info Always 1, for each top-K fingerprint: its command, normalized query (literal-free, cut to 120 characters) and tables.
# TYPE nplus1_fingerprint_info gauge
nplus1_fingerprint_info{command="select",fingerprint="%s",query="SELECT b FROM tb",tables="tb"} 1
nplus1_fingerprint_info{command="select",fingerprint="%s",query="SELECT c FROM tc WHERE id = $1",tables="tc"} 1
`
	exp := fmt.Sprintf(wantInfo, b, c)
	if err := testutil.CollectAndCompare(f.e.top, strings.NewReader(exp), "nplus1_fingerprint_info"); err != nil {
		t.Error(err)
	}

	// Ten minutes later b and c are out of the window; a is the only one
	// active and takes a place.
	clk.t = clk.t.Add(DefaultTopWindow + time.Minute)
	f.run("SELECT a FROM ta WHERE id = $1", "SELECT", "", 1, time.Millisecond)
	got = scrape(t, f.e.top)
	if _, ok := got["nplus1_fingerprint_calls_total{"+b+"}"]; ok {
		t.Error("b still has a series after leaving the window")
	}
	if _, ok := got["nplus1_fingerprint_calls_total{"+a+"}"]; !ok {
		t.Error("a has no series although it is the only active fingerprint")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestTopKRankByTime(t *testing.T) {
	clk := &clock{t0}
	f := newFeeder(t, nil, Options{TopK: 1, TopBy: RankTime, Now: clk.now})
	slow := f.run("SELECT s FROM slow", "SELECT", "", 1, time.Second).Hex
	loop := f.run("SELECT l FROM loop WHERE id = $1", "SELECT", "", 1, time.Millisecond).Hex
	f.e.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Fingerprint: loop})
	got := scrape(t, f.e.top)
	if _, ok := got["nplus1_fingerprint_info{"+slow+"}"]; !ok {
		t.Errorf("ranked by time, the 1 s query is not in the top-1: %v", got)
	}
}

// TestTopKCountsEverythingOnce drives random traffic over fingerprints whose
// ranks keep changing (more of them than are tracked), scraping in between,
// and reads the series as Prometheus's increase() does: per series, the sum
// of its rises, a fall being a counter reset. Those add up to exactly what
// was observed, __other__ never falls, a series that reappears does so no
// lower than it left (unless the ranking forgot it in between, a reset), and
// at most K+1 fingerprints are exported.
func TestTopKCountsEverythingOnce(t *testing.T) {
	clk := &clock{t0}
	const k = 3
	f := newFeeder(t, nil, Options{TopK: k, Tracked: 8, TopWindow: time.Minute, Now: clk.now})
	rng := rand.New(rand.NewPCG(1, 2))
	var sqls []string
	for i := range 20 {
		sqls = append(sqls, "SELECT x FROM t_"+letters(i)+" WHERE id = $1")
	}
	last := map[string]float64{}     // last value of every series ever shown
	increase := map[string]float64{} // what increase() over all time would say
	var calls, findings float64
	resets := 0
	for round := range 500 {
		hot := rng.IntN(len(sqls))
		for range rng.IntN(20) {
			i := hot
			if rng.IntN(3) == 0 {
				i = rng.IntN(len(sqls))
			}
			st := f.run(sqls[i], "SELECT", "", 1, time.Duration(rng.IntN(5000))*time.Microsecond)
			calls++
			if rng.IntN(10) == 0 {
				f.e.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Fingerprint: st.Hex})
				findings++
			}
		}
		clk.t = clk.t.Add(time.Duration(rng.IntN(20)) * time.Second)
		got := scrape(t, f.e.top)
		fps := 0
		for key, v := range got {
			if strings.HasPrefix(key, "nplus1_fingerprint_ranking_entries") {
				continue
			}
			p := last[key]
			switch {
			case v >= p:
				increase[key] += v - p
			case strings.Contains(key, Other):
				t.Fatalf("round %d: %s went down from %v to %v", round, key, p, v)
			case v != 0:
				t.Fatalf("round %d: %s came back at %v, below the %v it left with", round, key, v, p)
			default:
				resets++
			}
			last[key] = v
			if strings.HasPrefix(key, "nplus1_fingerprint_calls_total{") {
				fps++
			}
		}
		var sumCalls, sumFindings float64
		for key, v := range increase {
			if strings.HasPrefix(key, "nplus1_fingerprint_calls_total{") {
				sumCalls += v
			}
			if strings.HasPrefix(key, "nplus1_fingerprint_findings_total{") {
				sumFindings += v
			}
		}
		if sumCalls != calls || sumFindings != findings {
			t.Fatalf("round %d: the series rose by %v calls and %v findings, want %v and %v", round, sumCalls, sumFindings, calls, findings)
		}
		if fps > k+1 {
			t.Fatalf("round %d: %d fingerprints exported, want at most %d", round, fps, k+1)
		}
		if got["nplus1_fingerprint_ranking_entries{}"] > 8 {
			t.Fatalf("round %d: %v entries tracked, want at most 8", round, got["nplus1_fingerprint_ranking_entries{}"])
		}
	}
	got := scrape(t, f.e.top)
	if got["nplus1_fingerprint_ranking_evictions_total{}"] == 0 {
		t.Error("20 fingerprints in 8 entries evicted none")
	}
	t.Logf("%d counter resets after evictions", resets)
}

// TestCardinalityUnderTenThousandFingerprints runs 10,000 distinct
// fingerprints of traffic (with every command, outcome, SQLSTATE class and
// finding kind) through a fully wired Exporter, scraping as it goes, and
// checks that the series count never exceeds MaxSeries and reaches exactly
// it when every label value has been seen.
func TestCardinalityUnderTenThousandFingerprints(t *testing.T) {
	clk := &clock{t0}
	reg := prometheus.NewRegistry()
	f := newFeeder(t, reg, Options{Now: clk.now})
	det := detector.New(detector.Config{})
	err := f.e.Watch(Sources{
		Proxy:         func() proxy.Stats { return proxy.Stats{} },
		Detector:      det.Stats,
		Fingerprints:  f.fp.Stats,
		QueueLength:   func() int { return 0 },
		QueueCapacity: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	limit := MaxSeries(DefaultTopK)
	if limit != 361+13*DefaultTopK+12 {
		t.Errorf("MaxSeries(%d) = %d, want 361+13K+12 = %d as doc.go says", DefaultTopK, limit, 361+13*DefaultTopK+12)
	}
	count := func() (all, perFingerprint int, fps map[string]bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		fps = map[string]bool{}
		for _, mf := range mfs {
			if !strings.HasPrefix(mf.GetName(), "nplus1_") {
				continue
			}
			for _, m := range mf.GetMetric() {
				n := 1
				switch mf.GetType() {
				case dto.MetricType_HISTOGRAM:
					n = len(m.GetHistogram().GetBucket()) + 3
					if b := m.GetHistogram().GetBucket(); len(b) > 0 && b[len(b)-1].GetUpperBound() > 1e308 {
						n-- // +Inf listed explicitly
					}
				}
				all += n
				for _, l := range m.GetLabel() {
					if l.GetName() == "fingerprint" {
						perFingerprint++
						fps[l.GetValue()] = true
					}
				}
			}
		}
		return all, perFingerprint, fps
	}

	// The per-fingerprint series: calls, seconds, rows and findings by kind
	// for the K and __other__, and _info for the K.
	perLimit := (DefaultTopK+1)*(3+numKinds) + DefaultTopK
	tags := []string{"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "BEGIN", "SET", ""}
	classes := append(append([]string{}, sqlstateClasses...), "ZZ")
	for i := range 10_000 {
		tag := tags[i%len(tags)]
		state := ""
		if i%7 == 0 {
			state = classes[(i/7)%len(classes)] + "000"
		}
		st := f.run("SELECT v FROM table_"+letters(i)+" WHERE id = $1", tag, state, 1, time.Duration(i%1000)*time.Microsecond)
		if i%10 == 0 {
			// Every (kind, severity) pair, over the findings i/10.
			j, n := i/10, len(kinds)
			f.e.Finding(&detector.Finding{Kind: kinds[j%n], Severity: severities[j/n%numSeverities], Fingerprint: st.Hex, Count: 5 + i%100})
		}
		if i%1000 == 999 {
			clk.t = clk.t.Add(15 * time.Second)
			all, per, fps := count()
			if all > limit || per > perLimit || len(fps) > DefaultTopK+1 {
				t.Fatalf("after %d fingerprints: %d series (limit %d), %d per-fingerprint series (limit %d), %d fingerprints exported",
					i+1, all, limit, per, perLimit, len(fps))
			}
		}
	}
	all, per, _ := count()
	if all != limit || per != perLimit {
		t.Errorf("with every label value seen: %d series, %d per fingerprint; want exactly the worst case %d and %d", all, per, limit, perLimit)
	}
	for s, c := range f.e.m.findings[0] {
		if n := testutil.ToFloat64(c); n == 0 {
			t.Errorf("no n_plus_one finding of severity %s counted", severities[s])
		}
	}
}

func TestTruncate(t *testing.T) {
	long := "SELECT " + strings.Repeat("très_long_nom, ", 20) + "x FROM t"
	got := truncate(long)
	if n := len([]rune(got)); n != maxLabelChars || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("truncate: got %d characters %q", n, got)
	}
	if got := truncate("SELECT 1"); got != "SELECT 1" {
		t.Errorf("truncate(short) = %q", got)
	}
	if got := truncate("a\xffb"); got != "a\uFFFDb" {
		t.Errorf("truncate(invalid UTF-8) = %q", got)
	}
}

// letters spells i in the letters a-z: pg_query's fingerprint ignores runs
// of digits in table names (partitions), so table_10 and table_11 are one
// shape, but table_ba and table_bb are two.
func letters(i int) string {
	s := ""
	for {
		s = string(rune('a'+i%26)) + s
		i /= 26
		if i == 0 {
			return s
		}
	}
}

// BenchmarkObserve is the analyzer's cost per execution with metrics on:
// the per-query instruments and the top-K table, for a workload of 100
// shapes (the fingerprinting is the analyzer's, not counted here).
//
//	BenchmarkObserve-2   16037560   151.6 ns/op   0 B/op   0 allocs/op   (2-CPU AMD EPYC VM)
func BenchmarkObserve(b *testing.B) {
	f := newFeeder(b, nil, Options{})
	var events []detector.Event
	for i := range 100 {
		sql := "SELECT v FROM table_" + letters(i) + " WHERE id = $1"
		x := &pgwire.Execution{Conn: f.conn, Start: t0, End: t0.Add(time.Millisecond), SQL: sql, Command: "SELECT", Rows: 1}
		events = append(events, detector.Event{Exec: x, Stmt: &f.fp.Of(sql).Statements[0]})
	}
	f.e.Observe(&events[0])
	scrape(b, f.e.top) // one fingerprint becomes a member
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.e.Observe(&events[i%len(events)])
	}
}
