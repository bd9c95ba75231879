package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// loop returns the executions of an N+1: one list query returning n rows,
// then one lookup per row with literal ids (simple protocol).
func loop(conn *pgwire.ConnInfo, start time.Time, n int) []*pgwire.Execution {
	t := start
	next := func(sql string, rows int64) *pgwire.Execution {
		e := &pgwire.Execution{Conn: conn, Start: t, End: t.Add(time.Millisecond), SQL: sql, Protocol: "simple", Command: "SELECT", Rows: rows}
		t = t.Add(2 * time.Millisecond)
		return e
	}
	out := []*pgwire.Execution{next("SELECT id, user_id FROM orders WHERE status = 'open'", int64(n))}
	for i := range n {
		out = append(out, next(fmt.Sprintf("SELECT name, email FROM users WHERE id = %d", 1000+i), 1))
	}
	return out
}

func TestProcessFindsNPlusOneAndSinksGetIt(t *testing.T) {
	store := NewStore(10)
	var jsonl bytes.Buffer
	var console bytes.Buffer
	gate := NewGate([]detector.Kind{detector.KindNPlusOne})
	a := New(Config{Sinks: []Sink{store, NewJSONL(&jsonl), NewConsole(&console, func(string) string { return "" }), gate}})
	conn := &pgwire.ConnInfo{ID: 7, User: "app", Database: "shop", ApplicationName: "api"}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range loop(conn, start, 8) {
		a.Process(e)
	}
	a.Advance(start.Add(10 * time.Second))

	got := store.List(detector.KindNPlusOne, time.Time{})
	if len(got) != 1 {
		t.Fatalf("got %d n_plus_one findings, want 1: %+v", len(got), store.List("", time.Time{}))
	}
	f := got[0]
	if f.Count != 8 || f.Source == nil || f.Source.Rows != 8 {
		t.Errorf("finding count %d source %+v; want 8 executions from a source of 8 rows", f.Count, f.Source)
	}
	if gate.Failed() != 1 {
		t.Errorf("gate failed = %d, want 1", gate.Failed())
	}
	for _, out := range []string{jsonl.String(), console.String()} {
		for _, lit := range []string{"1000", "1007", "'open'", "open"} {
			if strings.Contains(out, lit) {
				t.Errorf("output holds literal %q:\n%s", lit, out)
			}
		}
	}
	var decoded detector.Finding
	if err := json.Unmarshal([]byte(strings.SplitN(jsonl.String(), "\n", 2)[0]), &decoded); err != nil {
		t.Fatalf("JSONL line does not decode: %v", err)
	}
	if !strings.Contains(console.String(), "N+1 query") || !strings.Contains(console.String(), "fix:") {
		t.Errorf("console block lacks title or fix:\n%s", console.String())
	}
	var sum bytes.Buffer
	gate.Summary(&sum)
	if !strings.Contains(sum.String(), "FAIL") {
		t.Errorf("summary does not mark the failure:\n%s", sum.String())
	}
}

// Run drains the queue on its tick, so with the queue already closed it
// returns at the first tick; in a synctest bubble that tick costs no real
// time.
func TestRunFlushesOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewStore(10)
		a := New(Config{Sinks: []Sink{store}})
		ch := make(chan *pgwire.Execution, 100)
		conn := &pgwire.ConnInfo{ID: 1}
		for _, e := range loop(conn, time.Now(), 6) {
			ch <- e
		}
		close(ch)
		a.Run(context.Background(), ch)
		if n := len(store.List(detector.KindNPlusOne, time.Time{})); n != 1 {
			t.Fatalf("after Run: %d n_plus_one findings, want 1", n)
		}
	})
}

// Run closes a window on the first tick at which the wall clock, less Lag,
// is IdleGap past the window's last execution. The bubble's fake clock makes
// that instant exact: the window is still open one tick before it and has
// been reported one tick after it.
func TestRunClosesWindowsWithWallTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tick, lag = 5 * time.Millisecond, 10 * time.Millisecond
		store := NewStore(10)
		a := New(Config{Sinks: []Sink{store}, Tick: tick, Lag: lag})
		ch := make(chan *pgwire.Execution, 100)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(ctx, ch); close(done) }()
		execs := loop(&pgwire.ConnInfo{ID: 1}, time.Now(), 6)
		for _, e := range execs {
			ch <- e
		}
		// From closeAt on, Advance (now less lag) sees the idle gap
		// passed: the first tick at or after it closes the window.
		closeAt := execs[len(execs)-1].End.Add(lag + detector.DefaultIdleGap)
		findings := func() int { return len(store.List(detector.KindNPlusOne, time.Time{})) }

		time.Sleep(time.Until(closeAt) - tick)
		synctest.Wait() // Run has handled every tick until now
		if n := findings(); n != 0 {
			t.Fatalf("%d n_plus_one findings %s before the idle gap and lag passed, want 0", n, tick)
		}
		time.Sleep(2 * tick)
		synctest.Wait()
		cancel()
		<-done
		if n := findings(); n != 1 {
			t.Fatalf("%d n_plus_one findings while running, want 1 once the idle gap passed", n)
		}
	})
}

func TestStoreRingSubscribeClear(t *testing.T) {
	s := NewStore(3)
	sub := s.Subscribe(1)
	for i := range 5 {
		s.Finding(&detector.Finding{Kind: detector.KindDuplicateQuery, Count: i})
	}
	got := s.List("", time.Time{})
	if len(got) != 3 || got[0].Count != 2 || got[2].Count != 4 {
		t.Fatalf("ring kept %+v, want counts 2,3,4", got)
	}
	if f := <-sub.C; f.Count != 0 {
		t.Errorf("subscriber got count %d first, want 0", f.Count)
	}
	if s.Dropped() != 4 {
		t.Errorf("dropped %d, want 4 (buffer of 1)", s.Dropped())
	}
	sub.Cancel()
	sub.Cancel()
	s.Clear()
	if n := len(s.List("", time.Time{})); n != 0 {
		t.Errorf("after Clear: %d findings", n)
	}
}

func TestObserveSeesEveryFingerprintedExecutionBeforeItsFindings(t *testing.T) {
	var log []string
	a := New(Config{
		Observe: func(ev *detector.Event) {
			if ev.Stmt == nil {
				t.Errorf("observed %q without a statement", ev.Exec.SQL)
				return
			}
			log = append(log, "exec "+ev.Stmt.Hex)
		},
		Sinks: []Sink{SinkFunc(func(f *detector.Finding) { log = append(log, "finding "+f.Fingerprint) })},
	})
	conn := &pgwire.ConnInfo{ID: 1}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	execs := loop(conn, start, 6)
	for _, e := range execs {
		a.Process(e)
	}
	a.Process(nil) // counted by the detector, not observed
	a.Flush()

	if len(log) < len(execs)+1 {
		t.Fatalf("got %d calls %v, want %d observations and a finding", len(log), log, len(execs))
	}
	for i := range execs {
		if !strings.HasPrefix(log[i], "exec ") {
			t.Fatalf("call %d is %q, want an observation; calls: %v", i, log[i], log)
		}
	}
	lookup := log[len(execs)-1][len("exec "):]
	if want := "finding " + lookup; log[len(execs)] != want {
		t.Errorf("got %q after the observations, want %q", log[len(execs)], want)
	}
}

// The analyzer gives the executions' evidence back to the budget a few KiB
// at a time, never holding more than evidenceGiveBack (and one execution's)
// for long, and all of it at the next Advance or Flush.
func TestEvidenceGivenBack(t *testing.T) {
	budget := pgwire.NewEvidenceBudget(1 << 20)
	a := New(Config{EvidenceBudget: budget})
	conn := &pgwire.ConnInfo{ID: 1}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	process := func(n int) {
		t.Helper()
		for i := range n {
			e := &pgwire.Execution{Conn: conn, Start: start, End: start.Add(time.Millisecond), Protocol: "extended",
				SQL: "SELECT name FROM users WHERE id = $1", Command: "SELECT", Rows: 1, ParamKeys: []valuekey.Key{valuekey.Int(int64(i))}}
			if !budget.Take(e.EvidenceSize()) {
				t.Fatal("the budget refused")
			}
			a.Process(e)
			if held := budget.Used(); held < 0 || held > evidenceGiveBack+int64(e.EvidenceSize()) {
				t.Fatalf("after %d executions the budget counts %d bytes, more than the analyzer may hold", i+1, held)
			}
		}
	}
	process(1000) // 8 bytes each: given back in 4 KiB at a time
	a.Advance(start)
	if held := budget.Used(); held != 0 {
		t.Errorf("after Advance the budget still counts %d bytes", held)
	}
	process(10)
	a.Flush()
	if held := budget.Used(); held != 0 {
		t.Errorf("after Flush the budget still counts %d bytes", held)
	}
}
