package detector

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestDefaults(t *testing.T) {
	got := New(Config{}).Config()
	want := Config{
		IdleGap:            100 * time.Millisecond,
		MaxWindow:          5 * time.Second,
		StallGap:           500 * time.Millisecond,
		NPlusOneThreshold:  5,
		DuplicateThreshold: 3,
		UnpaginatedRows:    1000,
		DeepOffset:         1000,
		LostUpdateWindow:   time.Second,
		MissingIndexRows:   10000,
		MissingIndexRuns:   60,
		ReportCooldown:     time.Minute,
		MaxGroups:          4096,
		MaxWindowEvents:    2000,
		MaxParamsPerShape:  512,
		MaxSelectStar:      10000,
		MaxEvidenceBytes:   64 << 20,
		MaxRecentSources:   1024,
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("got defaults %s, want %s", gj, wj)
	}
	if c := New(Config{NPlusOneThreshold: 20, MaxParamsPerShape: 8}).Config(); c.MaxParamsPerShape != 20 {
		t.Errorf("got MaxParamsPerShape %d, want it raised to the threshold 20", c.MaxParamsPerShape)
	}
}

// nPlusOneRequest appends one request with an N+1 of n lookups.
func nPlusOneRequest(tl *timeline, n int) {
	tl.q(qOrders, 1, int64(n))
	tl.loop(qUser, n, 1, work)
}

func TestAdvance(t *testing.T) {
	tl := newTimeline()
	nPlusOneRequest(tl, 6)
	last := tl.events[len(tl.events)-1].Exec.End

	d := New(Config{})
	for _, ev := range tl.events {
		if got := d.Observe(ev); len(got) != 0 {
			t.Fatalf("Observe reported %v before the window closed", summaries(got))
		}
	}
	if got := d.Advance(last.Add(DefaultIdleGap - time.Nanosecond)); len(got) != 0 {
		t.Errorf("Advance just under the idle gap reported %v", summaries(got))
	}
	if s := d.Stats(); s.WindowsOpen != 1 || s.Groups != 1 {
		t.Errorf("got %d windows open, %d groups; want 1, 1", s.WindowsOpen, s.Groups)
	}
	checkSummaries(t, d.Advance(last.Add(DefaultIdleGap)), []string{"n_plus_one user n=6 d=6 src=orders/6 warning"})
	if got := d.Flush(); len(got) != 0 {
		t.Errorf("Flush after Advance reported %v again", summaries(got))
	}
	s := d.Stats()
	if s.WindowsOpen != 0 || s.WindowsClosed[CloseIdleGap] != 1 {
		t.Errorf("got %d windows open, %d closed by idle gap; want 0, 1", s.WindowsOpen, s.WindowsClosed[CloseIdleGap])
	}
	// A connection's group is forgotten once its window is judged: its
	// cooldown lives in its pool scope.
	d.Advance(last.Add(30 * time.Second))
	if g := d.Stats().Groups; g != 0 {
		t.Errorf("got %d groups after the window was judged, want 0", g)
	}
}

// TestCooldownPerPoolScope: one loop served by several connections of one
// pool (same user, database, application and client address) is reported
// once per cooldown, with the held-back occurrences and the connections
// they were seen on; a trace keeps its own cooldown.
func TestCooldownPerPoolScope(t *testing.T) {
	tl := newTimeline()
	for _, id := range []uint64{3, 4, 5} {
		tl.conns[id] = &pgwire.ConnInfo{ID: id, ClientAddr: "10.0.0.9", User: "shop", Database: "shop", ApplicationName: "shop-api"}
	}
	tl.on(3)
	nPlusOneRequest(tl, 6) // t0: reported
	tl.wait(5 * time.Second).on(4)
	nPlusOneRequest(tl, 7) // held back: same scope
	tl.wait(5 * time.Second).on(5)
	nPlusOneRequest(tl, 8) // held back
	tl.wait(5 * time.Second).on(3)
	nPlusOneRequest(tl, 9) // held back
	tl.now = t0.Add(70 * time.Second)
	tl.on(4)
	nPlusOneRequest(tl, 10) // reported: 4 occurrences on 3 connections
	tl.on(1)                // another client address: its own scope
	tl.wait(time.Second)
	nPlusOneRequest(tl, 11)

	d := New(Config{})
	var got []Finding
	for _, ev := range tl.events {
		got = append(got, d.Observe(ev)...)
		got = append(got, d.Advance(ev.Exec.End.Add(-time.Nanosecond))...)
	}
	got = append(got, d.Flush()...)
	checkSummaries(t, got, []string{
		"n_plus_one user n=6 d=6 src=orders/6 warning",
		"n_plus_one user n=10 d=10 src=orders/10 warning",
		"n_plus_one user n=11 d=11 src=orders/11 warning",
	})
	type oc struct{ occ, conns int }
	var counts []oc
	for _, f := range got {
		counts = append(counts, oc{f.Occurrences, f.Connections})
	}
	if want := []oc{{1, 1}, {4, 3}, {1, 1}}; !slices.Equal(counts, want) {
		t.Errorf("got (occurrences, connections) %v, want %v", counts, want)
	}
}

func TestAdvanceMaxWindow(t *testing.T) {
	d := New(Config{MaxWindow: time.Second})
	tl := newTimeline()
	tl.loop(qUser, 6, 1, 50*time.Millisecond)
	for _, ev := range tl.events {
		d.Observe(ev)
	}
	// A loop still running 1s after it started: the window is closed even
	// though the idle gap has not passed.
	for range 30 {
		if got := d.Observe(Event{Exec: tl.q(qOne, 0, 1), Stmt: qOne}); len(got) != 0 {
			t.Fatalf("Observe closed the window first: %v", summaries(got))
		}
		tl.wait(50 * time.Millisecond)
		if got := d.Advance(tl.now); len(got) != 0 {
			checkSummaries(t, got, []string{"n_plus_one user n=6 d=6 src=none warning"})
			if s := d.Stats(); s.WindowsClosed[CloseMaxWindow] != 1 {
				t.Errorf("got %v closes, want one by max_window", s.WindowsClosed)
			}
			return
		}
	}
	t.Error("Advance never closed the window at MaxWindow")
}

// TestAdvanceMatchesObserve: driving time with Advance after every event
// (the live proxy) gives the same findings as letting Observe and Flush close
// the windows (a replay that never calls Advance).
func TestAdvanceMatchesObserve(t *testing.T) {
	events := mixedTraffic()
	want := jsonLines(detect(Config{}, events))

	d := New(Config{})
	var got []Finding
	for _, ev := range events {
		got = append(got, d.Observe(ev)...)
		got = append(got, d.Advance(ev.Exec.End)...)
	}
	got = append(got, d.Flush()...)
	g := jsonLines(got)
	slices.Sort(g)
	slices.Sort(want)
	if !slices.Equal(g, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
}

func TestCooldown(t *testing.T) {
	build := func() *timeline {
		tl := newTimeline()
		nPlusOneRequest(tl, 6) // t0: reported
		tl.wait(10 * time.Second)
		nPlusOneRequest(tl, 7) // t0+10s: held back
		tl.wait(5 * time.Second)
		tl.on(2)
		nPlusOneRequest(tl, 8) // another connection: its own group key
		tl.on(1)
		tl.now = t0.Add(70 * time.Second)
		nPlusOneRequest(tl, 9) // after the cooldown: reported, 2 occurrences
		tl.now = t0.Add(300 * time.Second)
		nPlusOneRequest(tl, 10) // long after: a fresh report
		return tl
	}

	t.Run("default", func(t *testing.T) {
		d := New(Config{})
		var got []Finding
		for _, ev := range build().events {
			got = append(got, d.Observe(ev)...)
		}
		got = append(got, d.Flush()...)
		// Connection 2's window closes only at Flush: nothing calls Advance.
		checkSummaries(t, got, []string{
			"n_plus_one user n=6 d=6 src=orders/6 warning",
			"n_plus_one user n=9 d=9 src=orders/9 warning",
			"n_plus_one user n=8 d=8 src=orders/8 warning",
			"n_plus_one user n=10 d=10 src=orders/10 warning",
		})
		var occ []int
		for _, f := range got {
			occ = append(occ, f.Occurrences)
		}
		if !slices.Equal(occ, []int{1, 2, 1, 1}) {
			t.Errorf("got occurrences %v, want [1 2 1 1]", occ)
		}
		s := d.Stats()
		if s.Found[KindNPlusOne] != 5 || s.Reported[KindNPlusOne] != 4 || s.Suppressed[KindNPlusOne] != 1 {
			t.Errorf("got found %d reported %d suppressed %d, want 5 4 1",
				s.Found[KindNPlusOne], s.Reported[KindNPlusOne], s.Suppressed[KindNPlusOne])
		}
	})

	t.Run("disabled", func(t *testing.T) {
		got := detect(Config{ReportCooldown: -1}, build().events)
		if len(got) != 5 {
			t.Errorf("got %d findings, want all 5", len(got))
		}
	})

	t.Run("another source is another finding", func(t *testing.T) {
		tl := newTimeline()
		nPlusOneRequest(tl, 6)
		tl.wait(time.Second)
		tl.q(qInsertRet, 0, 6)
		tl.loop(qUser, 6, 1, work)
		checkSummaries(t, detect(Config{}, tl.events), []string{
			"n_plus_one user n=6 d=6 src=orders/6 warning",
			"n_plus_one user n=6 d=6 src=insert_returning/6 warning",
		})
	})

	t.Run("reset", func(t *testing.T) {
		tl := newTimeline()
		nPlusOneRequest(tl, 6)
		tl.q(qStarUser, 1, 1)
		d := New(Config{})
		for _, ev := range tl.events {
			d.Observe(ev)
		}
		if got := d.Flush(); len(got) != 2 {
			t.Fatalf("got %v, want an n+1 and a select_star", summaries(got))
		}
		d.ResetReported()
		tl.wait(time.Second)
		n := len(tl.events)
		nPlusOneRequest(tl, 6)
		tl.q(qStarUser, 1, 1)
		for _, ev := range tl.events[n:] {
			d.Observe(ev)
		}
		if got := d.Flush(); len(got) != 2 {
			t.Errorf("after ResetReported got %v, want both again", summaries(got))
		}
	})
}

func TestSelectStarEscalates(t *testing.T) {
	tl := newTimeline()
	tl.q(qStarUser, 1, 1)
	tl.wait(time.Second)
	tl.q(qOrders, 1, 6)
	tl.loop(qStarUser, 6, 1, work)
	tl.wait(time.Second)
	tl.q(qOrders, 1, 6)
	tl.loop(qStarUser, 6, 1, work)
	got := detect(Config{}, tl.events)
	checkSummaries(t, got, []string{
		"select_star star_user n=1 info",
		"n_plus_one star_user n=6 d=6 src=orders/6 warning",
		"select_star star_user n=6 warning",
	})
	if o := got[2].Occurrences; o != 2 {
		t.Errorf("got select_star occurrences %d, want 2 (windows seen so far)", o)
	}
}

func TestSafelist(t *testing.T) {
	tl := newTimeline()
	tl.q(qOrders, 1, 6)
	tl.loop(qStarUser, 6, 1, work) // n_plus_one + select_star on users
	for range 3 {
		tl.q(qSession, 9, 1) // duplicate_query on sessions
	}
	tl.q(qAllOrders, 0, 5000) // unpaginated on orders
	all := []string{
		"n_plus_one star_user n=6 d=6 src=orders/6 warning",
		"select_star star_user n=6 warning",
		"duplicate_query session n=3 d=1 warning",
		"unpaginated all_orders n=1 rows=5000 warning",
	}
	tests := []struct {
		ignore []string
		want   []string
	}{
		{nil, all},
		{[]string{"fingerprint:" + qStarUser.Hex}, all[2:]},
		{[]string{"fingerprint:" + strings.ToUpper(qSession.Hex)}, []string{all[0], all[1], all[3]}},
		{[]string{"query:^SELECT \\* "}, all[2:]},
		{[]string{"query:sessions"}, []string{all[0], all[1], all[3]}},
		{[]string{"table:orders"}, all[:3]},
		{[]string{"table:public.orders"}, all},
		{[]string{"table:USERS", "table:sessions"}, all[3:]},
		{[]string{"app:shop-api"}, nil},
		{[]string{"app:shop"}, all},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.ignore, ","), func(t *testing.T) {
			var cfg Config
			for _, s := range tt.ignore {
				cfg.Ignore = append(cfg.Ignore, MustParseIgnore(s))
			}
			d := New(cfg)
			var got []Finding
			for _, ev := range tl.events {
				got = append(got, d.Observe(ev)...)
			}
			got = append(got, d.Flush()...)
			checkSummaries(t, got, tt.want)
			s := d.Stats()
			var ignored uint64
			for _, k := range Kinds() {
				ignored += s.Ignored[k]
				if s.Found[k] != s.Reported[k]+s.Suppressed[k]+s.Ignored[k] {
					t.Errorf("%s: found %d != reported %d + suppressed %d + ignored %d",
						k, s.Found[k], s.Reported[k], s.Suppressed[k], s.Ignored[k])
				}
			}
			if int(ignored) != len(all)-len(tt.want) {
				t.Errorf("got %d ignored, want %d", ignored, len(all)-len(tt.want))
			}
		})
	}
}

func TestEviction(t *testing.T) {
	tl := newTimeline()
	nPlusOneRequest(tl, 6)     // connection 1: window still open
	tl.on(2).q(qUser, 1, 1)    // connection 2
	tl.on(3).q(qSession, 1, 1) // connection 3: evicts connection 1
	d := New(Config{MaxGroups: 2})
	var got []Finding
	for i, ev := range tl.events {
		f := d.Observe(ev)
		if len(f) != 0 && i != len(tl.events)-1 {
			t.Errorf("event %d reported %v", i, summaries(f))
		}
		got = append(got, f...)
	}
	checkSummaries(t, got, []string{"n_plus_one user n=6 d=6 src=orders/6 warning"})
	s := d.Stats()
	if s.GroupsEvicted != 1 || s.Groups != 2 || s.WindowsClosed[CloseEvicted] != 1 || s.WindowsOpen != 2 {
		t.Errorf("got evicted %d groups %d closed-evicted %d open %d; want 1 2 1 2",
			s.GroupsEvicted, s.Groups, s.WindowsClosed[CloseEvicted], s.WindowsOpen)
	}
}

func TestBounds(t *testing.T) {
	t.Run("params per shape", func(t *testing.T) {
		tl := newTimeline()
		nPlusOneRequest(tl, 12)
		d := New(Config{MaxParamsPerShape: 5})
		for _, ev := range tl.events {
			d.Observe(ev)
		}
		checkSummaries(t, d.Flush(), []string{"n_plus_one user n=12 d=5 src=orders/12 warning"})
		if s := d.Stats(); s.ParamsDropped != 7 {
			t.Errorf("got %d parameter sets dropped, want 7", s.ParamsDropped)
		}
	})
	t.Run("events per window", func(t *testing.T) {
		tl := newTimeline()
		tl.loop(qUser, 9, 1, 0)
		d := New(Config{MaxWindowEvents: 4})
		for _, ev := range tl.events {
			d.Observe(ev)
		}
		d.Flush()
		if s := d.Stats(); s.WindowsClosed[CloseMaxEvents] != 2 || s.WindowsClosed[CloseFlush] != 1 {
			t.Errorf("got closes %v, want 2 max_events and 1 flush", s.WindowsClosed)
		}
	})
	t.Run("select star memory", func(t *testing.T) {
		tl := newTimeline()
		for range 2 {
			tl.q(qStarUser, 1, 1)
			tl.q(qStarOrders, 0, 1)
			tl.wait(time.Second)
		}
		d := New(Config{MaxSelectStar: 1})
		var got []Finding
		for _, ev := range tl.events {
			got = append(got, d.Observe(ev)...)
		}
		got = append(got, d.Flush()...)
		if len(got) != 4 {
			t.Errorf("got %v, want each select_star twice: the memory holds one", summaries(got))
		}
		if s := d.Stats(); s.SelectStarForgotten != 3 {
			t.Errorf("got %d forgotten, want 3", s.SelectStarForgotten)
		}
	})
}

func TestInvalidEvents(t *testing.T) {
	d := New(Config{})
	if got := d.Observe(Event{}); got != nil {
		t.Errorf("got %v for an event without execution", got)
	}
	tl := newTimeline()
	x := tl.q(qUser, 1, 1)
	x.Conn = nil
	x.Start = time.Time{}
	d.Observe(tl.events[0])
	d.Flush()
	if s := d.Stats(); s.Invalid != 1 || s.Events != 1 {
		t.Errorf("got invalid %d events %d, want 1 1", s.Invalid, s.Events)
	}
}

func TestStatsMapsHaveEveryKey(t *testing.T) {
	s := New(Config{}).Stats()
	for _, k := range Kinds() {
		for _, m := range []map[Kind]uint64{s.Found, s.Reported, s.Suppressed, s.Ignored} {
			if _, ok := m[k]; !ok {
				t.Errorf("stats map lacks kind %s", k)
			}
		}
	}
	if len(s.WindowsClosed) != len(CloseReasons()) {
		t.Errorf("got %d close reasons, want %d", len(s.WindowsClosed), len(CloseReasons()))
	}
	// Stats is a copy.
	s.Found[KindNPlusOne] = 99
	d := New(Config{})
	d.Stats().Found[KindNPlusOne] = 99
	if d.Stats().Found[KindNPlusOne] != 0 {
		t.Error("Stats returned the detector's own map")
	}
}

// mixedTraffic is a few minutes of traffic from several connections and
// traces with every kind of finding, and traffic that must not be flagged.
func mixedTraffic() []Event {
	tl := newTimeline()
	for round := range 3 {
		tl.on(1)
		nPlusOneRequest(tl, 6+round)
		tl.on(2)
		tl.trace = "0af7651916cd43dd8448eb211c80319c"
		tl.q(qOrders, 1, 5)
		for o := range 5 {
			tl.on(uint64(2+o%2)).q(qItems, uint64(o+1), 2)
			for i := range 2 {
				tl.q(qProduct, uint64(10*o+i), 1)
			}
		}
		tl.trace = ""
		tl.on(3)
		for range 3 {
			tl.q(qSession, 7, 1)
		}
		tl.q(qStarOrders, 0, 2500)
		tl.q(qUsersAny, 3, 40)
		tl.on(4)
		for i := range 10 {
			tl.q(qPage, uint64(i), 50)
		}
		tl.q(qOne, 0, 1)
		tl.on(5)
		patternsRequest(tl)
		tl.on(7)
		lostUpdateRequest(tl)
		tl.on(6)
		tl.qd(qCountPer, uint64(round+1), 1, 400*time.Millisecond) // slow with mixedConfig
		tl.wait(40 * time.Second)
	}
	return tl.events
}

func jsonLines(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		b, err := json.Marshal(f)
		if err != nil {
			panic(err)
		}
		out = append(out, string(b))
	}
	return out
}

// mixedConfig turns on the rules that are off by default.
var mixedConfig = Config{SlowThreshold: 250 * time.Millisecond}

func TestDeterministic(t *testing.T) {
	a := jsonLines(detect(mixedConfig, mixedTraffic()))
	b := jsonLines(detect(mixedConfig, mixedTraffic()))
	if len(a) == 0 {
		t.Fatal("mixed traffic gave no finding")
	}
	if !slices.Equal(a, b) {
		t.Errorf("two runs differ:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	kinds := map[string]bool{}
	for _, f := range detect(mixedConfig, mixedTraffic()) {
		kinds[string(f.Kind)] = true
	}
	for _, k := range Kinds() {
		if !kinds[string(k)] && k != KindMissingIndex { // made by Inspected: missingindex_test.go
			t.Errorf("mixed traffic has no %s finding", k)
		}
	}
}

// TestGolden pins the JSON form of one finding of each kind.
func TestGolden(t *testing.T) {
	tl := newTimeline()
	tl.trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tl.tags = map[string]string{"route": "/orders", "framework": "express"}
	tl.q(qOrders, 1, 6)
	tl.loop(qStarUser, 6, 1, work)
	tl.trace, tl.tags = "", nil
	tl.on(2)
	for range 3 {
		tl.q(qSession, 9, 1)
	}
	tl.qd(qAllOrders, 0, 12500, 180*time.Millisecond)
	got := detect(Config{SlowThreshold: 150 * time.Millisecond}, tl.events)

	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", "findings.golden.json")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("findings differ from %s (go test -update to accept):\n%s", path, b)
	}
}

// TestNoLiterals: the SQL text of the executions carries literal values; no
// finding may repeat them.
func TestNoLiterals(t *testing.T) {
	secrets := []string{"alice@example.com", "4111111111111111", "hunter2"}
	tl := newTimeline()
	tl.simple(qOrders, 1, 6).SQL = "SELECT id, user_id FROM orders WHERE status = 'hunter2'"
	for i := range 6 {
		x := tl.simple(qStarUser, uint64(i+1), 1)
		x.SQL = "SELECT * FROM users WHERE id = 4111111111111111 -- alice@example.com"
	}
	for range 3 {
		tl.q(qSession, 77, 1).SQL = "SELECT user_id FROM sessions WHERE token = 'hunter2'"
	}
	tl.q(qAllOrders, 0, 4111).SQL = "SELECT id, total FROM orders /* alice@example.com */"
	events := append(tl.events, mixedTraffic()...)
	got := detect(Config{ReportCooldown: -1}, events)
	if len(got) < 4 {
		t.Fatalf("got %d findings, want at least one of each kind", len(got))
	}
	for _, line := range jsonLines(got) {
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("finding contains the literal %q: %s", s, line)
			}
		}
		if strings.Contains(line, "'") {
			t.Errorf("finding contains a quoted literal: %s", line)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	events := mixedTraffic()
	b.ReportAllocs()
	for b.Loop() {
		d := New(Config{})
		for _, ev := range events {
			d.Observe(ev)
		}
		d.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

func TestFindingLocationFromTags(t *testing.T) {
	for _, tc := range []struct {
		tags map[string]string
		want string
	}{
		{map[string]string{"route": "/orders/:id", "framework": "express"}, "route /orders/:id"},
		{map[string]string{"controller": "orders", "action": "index", "framework": "rails"}, "controller orders#index"},
		{map[string]string{"job": "ReceiptJob"}, "job ReceiptJob"},
		{map[string]string{"framework": "django", "db_driver": "psycopg"}, ""},
		{nil, ""},
	} {
		tl := newTimeline()
		tl.tags = tc.tags
		tl.q(qOrders, 1, 10)
		tl.loop(qUser, 6, 1, 0)
		fs := detect(Config{}, tl.events)
		if len(fs) == 0 {
			t.Fatalf("%v: no finding", tc.tags)
		}
		if got := fs[0].Location.String(); got != tc.want {
			t.Errorf("%v: location %q, want %q", tc.tags, got, tc.want)
		}
		if l := fs[0].Location; l != nil && l.Framework != tc.tags["framework"] {
			t.Errorf("%v: framework %q", tc.tags, l.Framework)
		}
	}
}
