package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// The per-test API: findings selected by application, trace and tag, the
// scoped DELETE, POST /api/flush, and the event stream's ids and resume.

const testTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

// serveFindings serves the routes over store with flush on a test server.
func serveFindings(t *testing.T, store *analyzer.Store, flush func(context.Context, analyzer.Filter) (analyzer.FlushResult, error)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newMux(httpDeps{
		checkUpstream: func(context.Context) error { return nil },
		findings:      store,
		flush:         flush,
		logger:        slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(srv.Close)
	return srv
}

// call sends one request and returns the status and body.
func call(t *testing.T, method, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// listIDs is GET /api/findings with query: the ids, in order.
func listIDs(t *testing.T, base, query string) []uint64 {
	t.Helper()
	code, body := call(t, "GET", base+"/api/findings"+query, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /api/findings%s: %d %s", query, code, body)
	}
	var fs []struct {
		ID uint64 `json:"id"`
		detector.Finding
	}
	if err := json.Unmarshal([]byte(body), &fs); err != nil {
		t.Fatal(err)
	}
	out := []uint64{}
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func TestFindingsAPIFilters(t *testing.T) {
	store := analyzer.NewStore(0)
	add := func(app, trace string, tags map[string]string) {
		store.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Time: time.Now(), TraceID: trace, Tags: tags,
			Connection: detector.Connection{ApplicationName: app}})
	}
	add("worker-a", "", map[string]string{"test": "cart: adds one"}) // 1
	add("worker-b", testTrace, nil)                                  // 2
	add("worker-a", "", map[string]string{"test": "cart: removes"})  // 3
	var flushed []analyzer.Filter
	flushErr := error(nil)
	srv := serveFindings(t, store, func(_ context.Context, f analyzer.Filter) (analyzer.FlushResult, error) {
		flushed = append(flushed, f)
		return analyzer.FlushResult{Executions: 42, WindowsClosed: 1, Findings: 2}, flushErr
	})
	api := srv.URL + "/api/findings"

	for query, want := range map[string][]uint64{
		"":                      {1, 2, 3},
		"?application=worker-a": {1, 3},
		"?application=worker-a&tag=test:cart:+removes":    {3},
		"?tag=test:cart:+adds+one":                        {1},
		"?tag=test:cart:+adds+one&tag=test:cart:+removes": {},
		"?trace=" + testTrace:                             {2},
		"?application=worker-a&trace=" + testTrace:        {},
		"?kind=n_plus_one&since=1h":                       {1, 2, 3},
	} {
		if got := listIDs(t, srv.URL, query); !slices.Equal(got, want) {
			t.Errorf("GET %s: ids %v, want %v", query, got, want)
		}
	}
	for query, wantMsg := range map[string]string{
		"?app=worker-a":                "unknown parameter \"app\"; this route takes kind, since, application, trace, tag",
		"?trace=abc":                   "want a trace id, the 32 lowercase hex digits",
		"?tag=test":                    "want KEY:VALUE",
		"?kind=bogus":                  "deep_offset",
		"?application=a&application=b": "give it once",
		"?since=yesterday":             "want an RFC 3339 time",
	} {
		code, body := call(t, "GET", api+query, nil)
		if code != http.StatusBadRequest || !strings.Contains(body, wantMsg) {
			t.Errorf("GET %s: %d %q, want 400 saying %q", query, code, body, wantMsg)
		}
	}

	// A DELETE with a typo removes nothing; a scoped one only its scope.
	if code, body := call(t, "DELETE", api+"?app=worker-a", nil); code != http.StatusBadRequest {
		t.Errorf("DELETE ?app=: %d %s, want 400", code, body)
	}
	if code, _ := call(t, "DELETE", api+"?application=worker-a&tag=test:cart:+removes", nil); code != http.StatusNoContent {
		t.Errorf("scoped DELETE: %d", code)
	}
	if got := listIDs(t, srv.URL, ""); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("after deleting worker-a's removes test: %v, want 1 2", got)
	}
	call(t, "DELETE", api+"?trace="+testTrace, nil)
	if got := listIDs(t, srv.URL, ""); !slices.Equal(got, []uint64{1}) {
		t.Errorf("after deleting the trace: %v, want 1", got)
	}

	// POST /api/flush: its scope reaches the analyzer, its answer is JSON.
	code, body := call(t, "POST", srv.URL+"/api/flush?application=worker-a", nil)
	if code != http.StatusOK || len(flushed) != 1 || flushed[0].Application != "worker-a" {
		t.Fatalf("POST /api/flush: %d %s, flushed %+v", code, body, flushed)
	}
	var res analyzer.FlushResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || res != (analyzer.FlushResult{Executions: 42, WindowsClosed: 1, Findings: 2}) {
		t.Errorf("flush answer %q: %+v %v", body, res, err)
	}
	for _, c := range []struct {
		method, query string
		header        map[string]string
		code          int
	}{
		{"POST", "?tag=test:x", nil, http.StatusBadRequest}, // a window has no tag to be flushed by
		{"POST", "?kind=n_plus_one", nil, http.StatusBadRequest},
		{"POST", "?application=worker-a", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"POST", "?application=worker-a", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"GET", "?application=worker-a", nil, http.StatusMethodNotAllowed},
	} {
		if code, body := call(t, c.method, srv.URL+"/api/flush"+c.query, c.header); code != c.code {
			t.Errorf("%s /api/flush%s %v: %d %q, want %d", c.method, c.query, c.header, code, body, c.code)
		}
	}
	if len(flushed) != 1 {
		t.Errorf("refused flushes reached the analyzer: %+v", flushed)
	}
	flushErr = context.DeadlineExceeded
	if code, body := call(t, "POST", srv.URL+"/api/flush", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "did not catch up") {
		t.Errorf("a flush that timed out: %d %q, want 503", code, body)
	}
}

// sseEvent is one event of the findings stream.
type sseEvent struct {
	id, event, data string
}

// sseStream reads a findings stream into events until it ends.
type sseStream struct {
	res    *http.Response
	events chan sseEvent
}

// openSSE opens GET /api/findings/stream?query with Last-Event-ID lastID
// ("": none) and reads its events.
func openSSE(t *testing.T, ctx context.Context, base, query, lastID string) *sseStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/findings/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		t.Fatalf("stream: %d %s", res.StatusCode, body)
	}
	s := &sseStream{res: res, events: make(chan sseEvent, 20000)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		seen := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if seen {
					s.events <- ev
				}
				ev, seen = sseEvent{}, false
			case strings.HasPrefix(line, ":"):
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				seen = true
				switch field {
				case "id":
					ev.id = value
				case "event":
					ev.event = value
				case "data":
					ev.data = value
				}
			}
		}
	}()
	t.Cleanup(func() { res.Body.Close() })
	return s
}

// next returns the next event, failing after 10s.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the stream after 10s")
	}
	return sseEvent{}
}

// findingIDs reads events until an event without data (the position
// marker) and returns the ids of the finding events and the marker's id.
func (s *sseStream) findingIDs(t *testing.T) (ids []uint64, marker string, resets []string) {
	t.Helper()
	for {
		ev := s.next(t)
		switch ev.event {
		case "finding":
			id, err := strconv.ParseUint(ev.id, 10, 64)
			if err != nil {
				t.Fatalf("finding event without a numeric id: %+v", ev)
			}
			var st analyzer.Stored
			if err := json.Unmarshal([]byte(ev.data), &st); err != nil || st.ID != id {
				t.Fatalf("finding event %s: data id %d, %v", ev.id, st.ID, err)
			}
			ids = append(ids, id)
		case "reset":
			resets = append(resets, ev.data)
		case "":
			if ev.data == "" {
				return ids, ev.id, resets
			}
		}
	}
}

func seq(from, to uint64) []uint64 {
	out := []uint64{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestFindingsStreamResumeBounds: a Last-Event-ID the ring no longer
// reaches, or one this process never gave, is said in a reset event; a bad
// one is refused.
func TestFindingsStreamResumeBounds(t *testing.T) {
	store := analyzer.NewStore(analyzer.DefaultStoreSize)
	for range analyzer.DefaultStoreSize + 5 {
		store.Finding(&detector.Finding{Kind: detector.KindNPlusOne})
	}
	srv := serveFindings(t, store, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last := uint64(analyzer.DefaultStoreSize + 5)

	s := openSSE(t, ctx, srv.URL, "", "2")
	ids, marker, resets := s.findingIDs(t)
	if len(resets) != 1 || !strings.Contains(resets[0], `"reason":"evicted","last_event_id":2,"oldest_id":6`) {
		t.Errorf("resume after an evicted id: resets %q, want one saying evicted, oldest 6", resets)
	}
	if !slices.Equal(ids, seq(6, last)) || marker != strconv.FormatUint(last, 10) {
		t.Errorf("resume after an evicted id: %d findings from %v, marker %s", len(ids), ids[:1], marker)
	}

	s = openSSE(t, ctx, srv.URL, "", "5") // 5 was the newest evicted: nothing lost
	if ids, _, resets := s.findingIDs(t); len(resets) != 0 || !slices.Equal(ids, seq(6, last)) {
		t.Errorf("resume after 5: resets %q, %d findings", resets, len(ids))
	}
	s = openSSE(t, ctx, srv.URL, "?application=none", strconv.FormatUint(last+100, 10))
	if ids, marker, resets := s.findingIDs(t); len(resets) != 1 || !strings.Contains(resets[0], `"reason":"unknown_id"`) || len(ids) != 0 || marker != strconv.FormatUint(last, 10) {
		t.Errorf("resume after an id never given: resets %q, ids %v, marker %s", resets, ids, marker)
	}
	if code, body := call(t, "GET", srv.URL+"/api/findings/stream", map[string]string{"Last-Event-ID": "abc"}); code != http.StatusBadRequest || !strings.Contains(body, "a whole number") {
		t.Errorf("Last-Event-ID abc: %d %q, want 400", code, body)
	}
}

// TestFindingsStreamReconnect: through the real proxy and PostgreSQL, a
// stream client drops its connection, findings are made meanwhile, and it
// reconnects with Last-Event-ID: it gets exactly those it missed, then the
// live ones, none twice. Every finding is asserted right after POST
// /api/flush, without sleeping.
func TestFindingsStreamReconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgresWith(t, ctx, shop.Schema, pgtest.Options{})

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	env := map[string]string{"NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser), "NPLUS1_LOG_FORMAT": "json"}
	// --record puts the recording tee between the proxy's queue and the
	// analyzer: the flush's barrier must hold through it.
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s",
		"--record", t.TempDir()}
	addrs, _, done := startCommand(t, rctx, args, env, &bytes.Buffer{}, "proxy", "http")
	base := "http://" + addrs["http"]
	var nPlusOne shop.Scenario
	for _, sc := range shop.Scenarios() {
		if sc.Name == "n_plus_one" {
			nPlusOne = sc
		}
	}
	// loop runs the N+1 as application app (a scope of its own, so that no
	// cooldown holds it back), flushes that application and returns the
	// flush's answer.
	loop := func(app string) analyzer.FlushResult {
		t.Helper()
		c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name="+app))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if err := nPlusOne.Bad(ctx, c); err != nil {
			t.Fatal(err)
		}
		code, body := call(t, "POST", base+"/api/flush?application="+app, nil)
		if code != http.StatusOK {
			t.Fatalf("flush %s: %d %s", app, code, body)
		}
		var res analyzer.FlushResult
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			t.Fatal(err)
		}
		if res.Findings != 1 || res.WindowsClosed < 1 {
			t.Fatalf("flush %s: %+v, want its N+1", app, res)
		}
		return res
	}

	sctx, drop := context.WithCancel(ctx)
	s := openSSE(t, sctx, base, "", "")
	if ids, marker, _ := s.findingIDs(t); len(ids) != 0 || marker != "0" {
		t.Fatalf("a new stream: findings %v, marker %q; want none and id 0", ids, marker)
	}
	loop("sse-1")
	ev := s.next(t)
	if ev.event != "finding" || ev.id != "1" {
		t.Fatalf("live: %+v, want finding 1", ev)
	}
	drop() // the client goes away
	for range s.events {
	}

	for _, app := range []string{"sse-2", "sse-3", "sse-4"} {
		loop(app)
	}
	missed := listIDs(t, base, "?since=1h")[1:]
	if !slices.Equal(missed, []uint64{2, 3, 4}) {
		t.Fatalf("stored while disconnected: %v, want 2 3 4", missed)
	}

	s = openSSE(t, ctx, base, "", ev.id)
	ids, marker, resets := s.findingIDs(t)
	if !slices.Equal(ids, missed) || marker != "4" || len(resets) != 0 {
		t.Fatalf("resumed after %s: %v (marker %s, resets %q), want %v", ev.id, ids, marker, resets, missed)
	}
	loop("sse-5")
	if ev := s.next(t); ev.event != "finding" || ev.id != "5" {
		t.Errorf("live after the resume: %+v, want finding 5", ev)
	}

	// Filtered: the stream of one application resumes with its own only.
	s = openSSE(t, ctx, base, "?application=sse-3", "1")
	if ids, _, _ := s.findingIDs(t); !slices.Equal(ids, []uint64{3}) {
		t.Errorf("sse-3's stream after 1: %v, want 3", ids)
	}

	stop()
	if err := <-done; err != nil {
		t.Errorf("proxy: %v", err)
	}
}
