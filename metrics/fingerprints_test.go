package metrics

import (
	"math"
	"testing"
	"time"

	"github.com/nplus1/nplus1/detector"
)

func TestFingerprintsCountInAndOutOfTheTopK(t *testing.T) {
	clk := &clock{t0}
	f := newFeeder(t, nil, Options{TopK: 1, Now: clk.now})
	// a: 20 lookups of 1 ms, one failed, and an N+1 finding.
	var a string
	for range 19 {
		a = f.run("SELECT name FROM users WHERE id = $1", "SELECT", "", 1, time.Millisecond).Hex
	}
	f.run("SELECT name FROM users WHERE id = $1", "", "57014", -1, time.Millisecond)
	f.e.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Fingerprint: a, Count: 20})
	// b: 2 reads of 40 ms returning 100 rows each.
	b := f.run("SELECT * FROM orders", "SELECT", "", 100, 40*time.Millisecond).Hex
	f.run("SELECT * FROM orders", "SELECT", "", 100, 40*time.Millisecond)
	scrape(t, f.e.top) // a (a finding) becomes the one member; b stays in __other__
	f.e.Finding(&detector.Finding{Kind: detector.KindSelectStar, Fingerprint: b, Count: 2})

	got := f.e.Fingerprints()
	if len(got) != 2 {
		t.Fatalf("got %d fingerprints, want 2: %+v", len(got), got)
	}
	fb, fa := got[0], got[1] // by total time: b (80 ms) before a (20 ms)
	if fb.Fingerprint != b || fa.Fingerprint != a {
		t.Fatalf("got order %s, %s; want b %s (80 ms) then a %s (20 ms)", fb.Fingerprint, fa.Fingerprint, b, a)
	}
	if fa.Calls != 20 || fa.Errors != 1 || fa.Rows != 19 || fa.TotalMS != 20 || fa.MeanMS != 1 || fa.Findings != 1 ||
		fa.FindingsByKind["n_plus_one"] != 1 || !fa.TopK || fa.Command != "select" || fa.Query != "SELECT name FROM users WHERE id = $1" ||
		len(fa.Tables) != 1 || fa.Tables[0] != "users" {
		t.Errorf("a: got %+v", fa)
	}
	// b is outside the top-K: its series count nothing, its stats everything.
	if fb.Calls != 2 || fb.Errors != 0 || fb.Rows != 200 || fb.TotalMS != 80 || fb.MeanMS != 40 || fb.Findings != 1 ||
		fb.FindingsByKind["select_star"] != 1 || fb.TopK {
		t.Errorf("b: got %+v", fb)
	}
	// p95 of 20 executions of 1 ms, in the (0.5 ms, 1 ms] bucket: rank 19
	// of 20, 0.5 + 0.5 × 19/20 ms; b's two of 40 ms in (25 ms, 50 ms]:
	// 25 + 25 × 1.9/2 ms, but never above the slowest, 40 ms.
	if want := 0.975; math.Abs(fa.P95MS-want) > 1e-9 {
		t.Errorf("a: p95 %v ms, want %v", fa.P95MS, want)
	}
	if want := 40.0; math.Abs(fb.P95MS-want) > 1e-9 {
		t.Errorf("b: p95 %v ms, want %v (the slowest)", fb.P95MS, want)
	}
	if s := scrape(t, f.e.top); s["nplus1_fingerprint_calls_total{"+b+"}"] != 0 || s["nplus1_fingerprint_calls_total{"+Other+"}"] != 22 {
		t.Errorf("series: b %v, __other__ %v; want 0 and 22 (every call before a joined the top-K)",
			s["nplus1_fingerprint_calls_total{"+b+"}"], s["nplus1_fingerprint_calls_total{"+Other+"}"])
	}
}

func TestFingerprintsAreBounded(t *testing.T) {
	f := newFeeder(t, nil, Options{TopK: 1, Tracked: 3})
	for i := range 5 {
		f.run("SELECT v FROM table_"+letters(i)+" WHERE id = $1", "SELECT", "", 1, time.Millisecond)
	}
	if got := f.e.Fingerprints(); len(got) != 3 {
		t.Errorf("got %d fingerprints, want the bound, 3", len(got))
	}
	if got := f.e.Evictions(); got != 2 {
		t.Errorf("got %d evictions, want 2", got)
	}
}

func TestQuantile(t *testing.T) {
	var l lifetime
	l.execution(30, false)
	if got := l.quantile(0.95); got != 10 {
		t.Errorf("p95 of one 30 s execution: %v, want the highest bound, 10", got)
	}
	l = lifetime{}
	for i := range 100 { // 90 of 1 ms, 10 of 200 ms: p95 in (100 ms, 250 ms]
		d := 0.001
		if i >= 90 {
			d = 0.2
		}
		l.execution(d, false)
	}
	if got, want := l.quantile(0.95), 0.1+0.15*5/10; math.Abs(got-want) > 1e-12 {
		t.Errorf("p95: %v, want %v", got, want)
	}
}

func TestQueryOfATrackedFingerprint(t *testing.T) {
	f := newFeeder(t, nil, Options{})
	st := f.run("SELECT name FROM users WHERE id = $1", "SELECT", "", 1, time.Millisecond)
	if got := f.e.Query(st.ID); got != "SELECT name FROM users WHERE id = $1" {
		t.Errorf("Query(%s) = %q, want the normalized text", st.Hex, got)
	}
	if got := f.e.Query(st.ID + 1); got != "" {
		t.Errorf("Query of an untracked fingerprint = %q, want \"\"", got)
	}
}
