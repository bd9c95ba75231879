package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/metrics"
	"github.com/nplus1/nplus1/pgwire"
)

// fakeFingerprints is a fixed table for GET /api/fingerprints.
type fakeFingerprints []metrics.FingerprintStats

func (f fakeFingerprints) Fingerprints() []metrics.FingerprintStats {
	return append([]metrics.FingerprintStats(nil), f...)
}

func (f fakeFingerprints) Evictions() uint64 { return 7 }

var testFingerprints = fakeFingerprints{
	{Fingerprint: "000000000000000a", Query: "SELECT a FROM users WHERE id = $1", Calls: 30, TotalMS: 3, Findings: 1},
	{Fingerprint: "000000000000000b", Query: "SELECT * FROM orders", Calls: 2, TotalMS: 80, Rows: 900},
	{Fingerprint: "000000000000000c", Query: "UPDATE users SET seen = now()", Calls: 5, TotalMS: 10, Errors: 2},
}

func TestWebPageHeadersAndAccess(t *testing.T) {
	const token = "page-token"
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{token: token, web: webDeps{fingerprints: testFingerprints}})
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/app.css": "text/css"} {
		// The page and its files hold no data: no token needed.
		code, body, h := th.do(t, testRequest{method: "GET", path: path})
		if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), ctype) || body == "" {
			t.Errorf("GET %s: %d %q, want 200 %s", path, code, h.Get("Content-Type"), ctype)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") ||
			strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want only the page's own script and no frames", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v, want nosniff, DENY, no-referrer", path, h)
		}
		// A rebound name is refused: the page would then read the API.
		if code, body, _ := th.do(t, testRequest{method: "GET", path: path, host: "evil.example:{port}"}); code != http.StatusForbidden {
			t.Errorf("GET %s with a foreign Host: %d %q, want 403", path, code, body)
		}
		// A browser that has the file already gets 304.
		if code, _, _ := th.do(t, testRequest{method: "GET", path: path, header: map[string]string{"If-None-Match": h.Get("ETag")}}); code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, code)
		}
	}
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/app.js/x"}); code != http.StatusNotFound {
		t.Errorf("GET /app.js/x: %d, want 404", code)
	}
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/index.html"}); code != http.StatusNotFound {
		t.Errorf("GET /index.html: %d, want 404 (the page is /)", code)
	}
	if code, _, _ := th.do(t, testRequest{method: "POST", path: "/"}); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", code)
	}
	// The page never holds data: no query or finding is in it.
	th.store.Finding(&detector.Finding{Kind: detector.KindSelectStar, Query: "SELECT * FROM secret_table", Time: time.Now()})
	for path := range webAssets {
		if _, body, _ := th.do(t, testRequest{method: "GET", path: path}); strings.Contains(body, "secret_table") {
			t.Errorf("GET %s holds a stored query", path)
		}
	}
	// Its API needs the token, and refuses other origins.
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/api/fingerprints"}); code != http.StatusUnauthorized {
		t.Errorf("GET /api/fingerprints without the token: %d, want 401", code)
	}
	bearer := map[string]string{"Authorization": "Bearer " + token}
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/api/fingerprints", header: bearer}); code != http.StatusOK {
		t.Errorf("GET /api/fingerprints with the token: %d, want 200", code)
	}
	cross := map[string]string{"Authorization": "Bearer " + token, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/api/fingerprints", header: cross}); code != http.StatusForbidden {
		t.Errorf("GET /api/fingerprints from another origin: %d, want 403", code)
	}
}

func TestWebFingerprintsAPI(t *testing.T) {
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{web: webDeps{fingerprints: testFingerprints}})
	get := func(query string) fingerprintList {
		t.Helper()
		code, body, _ := th.do(t, testRequest{method: "GET", path: "/api/fingerprints" + query})
		if code != http.StatusOK {
			t.Fatalf("GET ?%s: %d %q", query, code, body)
		}
		var l fingerprintList
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	order := func(l fingerprintList) string {
		var s []string
		for _, f := range l.Fingerprints {
			s = append(s, f.Fingerprint[15:])
		}
		return strings.Join(s, "")
	}
	for query, want := range map[string]string{
		"":                          "bca", // total time, longest first
		"?sort=calls":               "acb",
		"?sort=calls&order=asc":     "bca",
		"?sort=errors":              "cab", // ties by fingerprint
		"?sort=rows&limit=1":        "b",
		"?sort=query&order=asc":     "bac",
		"?q=USERS":                  "ca",
		"?q=users&sort=findings":    "ac",
		"?limit=0":                  "",
		"?q=nothing+like+it&limit=": "",
	} {
		if got := order(get(query)); got != want {
			t.Errorf("GET /api/fingerprints%s: order %q, want %q", query, got, want)
		}
	}
	if l := get("?q=users&limit=1"); l.Tracked != 3 || l.Matched != 2 || l.Evictions != 7 || len(l.Fingerprints) != 1 {
		t.Errorf("?q=users&limit=1: tracked %d, matched %d, evictions %d, %d listed; want 3, 2, 7, 1", l.Tracked, l.Matched, l.Evictions, len(l.Fingerprints))
	}
	for query, want := range map[string]string{
		"?sort=bogus":  "want one of calls, command, errors",
		"?order=up":    "want asc or desc",
		"?limit=-1":    "want a whole number",
		"?limit=lots":  "want a whole number",
		"?sort=":       "", // empty: the default
		"?sort=p95_ms": "",
	} {
		code, body, _ := th.do(t, testRequest{method: "GET", path: "/api/fingerprints" + query})
		if want == "" {
			if code != http.StatusOK {
				t.Errorf("GET %s: %d %q, want 200", query, code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %q, want 400 saying %q", query, code, body, want)
		}
	}
}

// Without metrics (no fingerprint table), the page's API routes are left out.
func TestWebRoutesWithoutSources(t *testing.T) {
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{})
	for _, path := range []string{"/api/fingerprints", "/api/timeline"} {
		if code, _, _ := th.do(t, testRequest{method: "GET", path: path}); code != http.StatusNotFound {
			t.Errorf("GET %s without its source: %d, want 404", path, code)
		}
	}
	if code, _, _ := th.do(t, testRequest{method: "GET", path: "/"}); code != http.StatusOK {
		t.Errorf("GET / without metrics: %d, want 200", code)
	}
}

// timelineFeed runs executions through a timelineLog as the analyzer does.
type timelineFeed struct {
	l  *timelineLog
	t0 time.Time
}

// exec observes one execution of fingerprint fp on conn (trace: its trace
// id) that started at ms after t0 and took durMS.
func (f *timelineFeed) exec(conn uint64, trace string, fp uint64, ms, durMS float64, rows int64) {
	start := f.t0.Add(time.Duration(ms * float64(time.Millisecond)))
	x := &pgwire.Execution{Conn: &pgwire.ConnInfo{ID: conn}, Start: start, End: start.Add(time.Duration(durMS * float64(time.Millisecond))), Rows: rows}
	ev := &detector.Event{Exec: x, TraceID: trace}
	if fp != 0 {
		ev.Stmt = &fingerprint.Statement{ID: fp}
	}
	f.l.observe(ev)
}

func TestTimelineCutsTheWindow(t *testing.T) {
	queries := map[uint64]string{1: "SELECT id, user_id FROM orders LIMIT $1", 2: "SELECT name FROM users WHERE id = $1"}
	f := &timelineFeed{l: newTimelineLog(func(id uint64) string { return queries[id] }), t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.exec(7, "", 2, -50, 1, 1) // before the window
	f.exec(7, "", 1, 0, 2, 5)   // the source
	for i := range 5 {
		f.exec(7, "", 2, 3+float64(i), 0.5, 1) // the loop
		f.exec(8, "", 2, 3+float64(i), 0.5, 1) // another connection, at the same time
	}
	f.exec(7, "trace-1", 2, 4, 1, 1) // a traced request on the same connection: another group
	f.exec(7, "", 0, 9, 1, -1)       // not fingerprinted
	fin := &detector.Finding{Kind: detector.KindNPlusOne, Connection: detector.Connection{ID: 7},
		WindowStart: f.t0, WindowEnd: f.t0.Add(10 * time.Millisecond)}
	f.l.Finding(fin)
	f.l.Finding(&detector.Finding{Kind: detector.KindSelectStar, Connection: fin.Connection, WindowStart: fin.WindowStart, WindowEnd: fin.WindowEnd})

	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{web: webDeps{timelines: f.l}})
	code, body, _ := th.do(t, testRequest{method: "GET", path: "/api/timeline?connection=7&window_end=" + fin.WindowEnd.Format(time.RFC3339Nano)})
	if code != http.StatusOK {
		t.Fatalf("GET /api/timeline: %d %q", code, body)
	}
	var got struct {
		timeline
		Kept int `json:"windows_kept"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := []timelineEntry{
		{Fingerprint: "0000000000000001", Query: queries[1], Count: 1, StartMS: 0, EndMS: 2, DurationMS: 2, Rows: 5},
		{Fingerprint: "0000000000000002", Query: queries[2], Count: 5, StartMS: 3, EndMS: 7.5, DurationMS: 2.5, Rows: 5},
		{Count: 1, StartMS: 9, EndMS: 10, DurationMS: 1},
	}
	if got.Statements != 7 || len(got.Entries) != len(want) || got.Partial || got.Dropped != 0 || got.Kept != 1 {
		t.Fatalf("got %d statements in %+v (kept %d), want 7 in %+v, one window kept", got.Statements, got.Entries, got.Kept, want)
	}
	for i, e := range got.Entries {
		if e.Fingerprint != want[i].Fingerprint || e.Query != want[i].Query || e.Count != want[i].Count || e.StartMS != want[i].StartMS ||
			e.EndMS != want[i].EndMS || e.DurationMS != want[i].DurationMS || e.Rows != want[i].Rows {
			t.Errorf("entry %d: %+v, want %+v", i, e, want[i])
		}
	}

	// The traced window is its own.
	traced := &detector.Finding{Connection: detector.Connection{ID: 7}, TraceID: "trace-1", WindowStart: f.t0.Add(4 * time.Millisecond), WindowEnd: f.t0.Add(5 * time.Millisecond)}
	f.l.Finding(traced)
	_, body, _ = th.do(t, testRequest{method: "GET", path: "/api/timeline?connection=7&trace=trace-1&window_end=" + traced.WindowEnd.Format(time.RFC3339Nano)})
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Statements != 1 || got.Kept != 2 {
		t.Errorf("traced window: %s, want its one statement", body)
	}

	for query, want := range map[string]string{
		"?connection=x&window_end=2026-03-01T12:00:00Z": "connection: want",
		"?connection=7&window_end=yesterday":            "window_end: want",
		"?connection=7&window_end=2026-03-01T12:00:00Z": "no timeline of that window",
	} {
		code, body, _ := th.do(t, testRequest{method: "GET", path: "/api/timeline" + query})
		if code < 400 || !strings.Contains(body, want) {
			t.Errorf("GET /api/timeline%s: %d %q, want an error saying %q", query, code, body, want)
		}
	}
}

func TestTimelineBounds(t *testing.T) {
	f := &timelineFeed{l: newTimelineLog(func(uint64) string { return "" }), t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	// A window of more runs than an entry bound: the rest is counted.
	for i := range timelineMaxEntries + 10 {
		f.exec(1, "", uint64(1+i%2), float64(i), 0.5, 0)
	}
	fin := &detector.Finding{Connection: detector.Connection{ID: 1}, WindowStart: f.t0, WindowEnd: f.t0.Add(time.Second)}
	if tl := f.l.cut(fin); len(tl.Entries) != timelineMaxEntries || tl.Dropped != 10 || tl.Statements != timelineMaxEntries+10 {
		t.Errorf("got %d entries, %d dropped of %d; want %d, 10", len(tl.Entries), tl.Dropped, tl.Statements, timelineMaxEntries)
	}
	// A window longer than the ring: partial.
	for i := range timelineRingSize + 1 {
		f.exec(2, "", 3, float64(i)/100, 0.001, 0)
	}
	long := &detector.Finding{Connection: detector.Connection{ID: 2}, WindowStart: f.t0, WindowEnd: f.t0.Add(time.Minute)}
	if tl := f.l.cut(long); !tl.Partial || tl.Statements != timelineRingSize {
		t.Errorf("a window longer than the ring: partial %v with %d statements, want true with %d", tl.Partial, tl.Statements, timelineRingSize)
	}
	// Windows past the bound are forgotten, and counted.
	for i := range timelineMaxWindows + 5 {
		f.l.Finding(&detector.Finding{Connection: detector.Connection{ID: uint64(100 + i)}, WindowStart: f.t0, WindowEnd: f.t0.Add(time.Second)})
	}
	f.l.mu.Lock()
	kept, forgotten := f.l.windows.Len(), f.l.forgotten
	f.l.mu.Unlock()
	if kept != timelineMaxWindows || forgotten != 5 {
		t.Errorf("kept %d windows, forgot %d; want %d and 5", kept, forgotten, timelineMaxWindows)
	}
}

// BenchmarkTimelineObserve is what the page's timelines add to the
// analyzer's cost per execution: one write into the ring.
func BenchmarkTimelineObserve(b *testing.B) {
	l := newTimelineLog(func(uint64) string { return "" })
	t0 := time.Now()
	ev := &detector.Event{
		Exec: &pgwire.Execution{Conn: &pgwire.ConnInfo{ID: 1}, Start: t0, End: t0.Add(time.Millisecond), Rows: 1},
		Stmt: &fingerprint.Statement{ID: 42},
	}
	b.ReportAllocs()
	for b.Loop() {
		l.observe(ev)
	}
}
