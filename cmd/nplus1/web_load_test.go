package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/metrics"
	"github.com/nplus1/nplus1/pgwire"
)

// Page load budget: DOMContentLoaded and the first render of the findings
// list, from the start of the navigation, with a full store.
const (
	loadFindings     = 1000
	loadFingerprints = 5000
	loadBudget       = 200 * time.Millisecond
	loadGuard        = 3 * time.Second
)

// loadedExporter returns an exporter that tracks at most loadFingerprints
// fingerprints and has seen n distinct ones.
func loadedExporter(t *testing.T, n int) *metrics.Exporter {
	t.Helper()
	exp, err := metrics.New(prometheus.NewRegistry(), metrics.Options{Tracked: loadFingerprints})
	if err != nil {
		t.Fatal(err)
	}
	fp := fingerprint.New(fingerprint.Options{})
	conn := &pgwire.ConnInfo{ID: 1}
	t0 := time.Now()
	for i := range n {
		sql := "SELECT v FROM table_" + letterName(i) + " WHERE id = $1" // digits in names would make one shape
		x := &pgwire.Execution{Conn: conn, Start: t0, End: t0.Add(time.Duration(i%50) * time.Millisecond), SQL: sql, Command: "SELECT", Rows: 1}
		exp.Observe(&detector.Event{Exec: x, Stmt: &fp.Of(sql).Statements[0]})
	}
	return exp
}

// letterName spells i in letters: a, b, ..., z, ba, bb, ...
func letterName(i int) string {
	s := ""
	for {
		s = string(rune('a'+i%26)) + s
		if i /= 26; i == 0 {
			return s
		}
	}
}

// loadFinding is the i-th of the findings the load test holds.
func loadFinding(i int, now time.Time) detector.Finding {
	kinds := detector.Kinds()
	f := detector.Finding{
		Time:            now.Add(time.Duration(i-loadFindings) * time.Second),
		Kind:            kinds[i%len(kinds)],
		Severity:        detector.SeverityWarning,
		Fingerprint:     fmt.Sprintf("%016x", 0xabc000+i),
		Query:           fmt.Sprintf("SELECT name, email, created_at FROM users_%d WHERE id = $1", i%40),
		Tables:          []string{fmt.Sprintf("users_%d", i%40)},
		Count:           20 + i%30,
		DurationMS:      float64(i%100) / 3,
		ApplicationName: fmt.Sprintf("app-%d", i%7),
		Connection:      detector.Connection{ID: uint64(i), ApplicationName: fmt.Sprintf("app-%d", i%7), User: "app", Database: "shop"},
		Suggestion:      "Fetch these rows in one query with `WHERE id = ANY($1)`.",
		Occurrences:     1,
	}
	f.WindowStart, f.WindowEnd = f.Time.Add(-40*time.Millisecond), f.Time
	if f.Kind == detector.KindNPlusOne {
		f.Source = &detector.Source{Fingerprint: "00000000000000aa", Query: "SELECT id, user_id FROM orders LIMIT $1", Rows: 20}
	}
	return f
}

// TestWebPageLoadsFast loads the page with 1,000 findings and 5,000
// fingerprints held, in a browser that has never seen it, and measures
// DOMContentLoaded and the first render of the list. The bounds of the
// store and of the ranking hold at that size.
func TestWebPageLoadsFast(t *testing.T) {
	// 100 more fingerprints than the ranking tracks: the bound holds.
	exp := loadedExporter(t, loadFingerprints+100)
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{web: webDeps{fingerprints: exp, timelines: newTimelineLog(exp.Query)}})
	now := time.Now()
	for i := range loadFindings {
		f := loadFinding(i, now)
		th.store.Finding(&f)
	}
	if n, ev := len(exp.Fingerprints()), exp.Evictions(); n != loadFingerprints || ev != 100 {
		t.Fatalf("the ranking holds %d fingerprints after %d evictions, want its bound %d after 100", n, ev, loadFingerprints)
	}

	type timing struct {
		DOMContentLoaded float64 `json:"dcl"`
		FindingsParsed   float64 `json:"parsed"`
		FirstRender      float64 `json:"render"`
		Rows             int     `json:"rows"`
		Findings         string  `json:"findings"`
		Queries          string  `json:"queries"`
	}
	measure := func() timing {
		b := newBrowser(t) // a new profile: nothing cached
		// A browser that runs already, as the developer's does, with an
		// empty cache: the page is cold, the browser is not.
		browse(t, b, "start the tab", chromedp.Navigate("about:blank"))
		time.Sleep(time.Second)
		browse(t, b, "open the page", chromedp.Navigate(th.base+"/"))
		waitFor(t, b, `document.documentElement.dataset.ready === '1' && document.getElementById('count-queries').textContent !== '0' &&
			document.querySelectorAll('#findings tr').length === 500`, 10*time.Second)
		return evalJS[timing](t, b, `(() => {
			const nav = performance.getEntriesByType('navigation')[0];
			const mark = (name) => performance.getEntriesByName(name)[0].startTime;
			return {dcl: nav.domContentLoadedEventEnd, parsed: mark('nplus1:findings-parsed'), render: mark('nplus1:first-render'),
				rows: document.querySelectorAll('#findings tr').length,
				findings: document.getElementById('count-findings').textContent,
				queries: document.getElementById('count-queries').textContent};
		})()`)
	}
	var renders []float64
	for i := range 3 {
		m := measure()
		if m.Rows != 500 || m.Findings != "1000" || m.Queries != "5000" {
			t.Fatalf("the page shows %d rows, %s findings, %s queries; want 500 (its bound), 1000, 5000", m.Rows, m.Findings, m.Queries)
		}
		t.Logf("cold load %d: DOMContentLoaded %.1f ms, findings parsed %.1f ms, first render %.1f ms (%d findings, %d fingerprints held)",
			i+1, m.DOMContentLoaded, m.FindingsParsed, m.FirstRender, loadFindings, loadFingerprints)
		renders = append(renders, m.FirstRender)
	}
	slices.Sort(renders)
	best := time.Duration(renders[0] * float64(time.Millisecond))
	t.Logf("fastest first render of 3: %v (budget %v, met: %v)", best.Round(100*time.Microsecond), loadBudget, best <= loadBudget)
	// The budget is measured, not asserted: on a shared 2-core machine the
	// browser's processes compete for the cores with whatever else runs
	// (the race detector slows the server several times). What is asserted
	// is a bound that only a gross regression crosses; the log has the
	// numbers.
	if best > loadGuard {
		t.Errorf("the fastest of 3 cold loads rendered after %v, want under %v (budget %v)", best, loadGuard, loadBudget)
	}
}
