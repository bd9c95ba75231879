package detector

import (
	"testing"
	"time"
)

// twoWorkers runs an N+1 on connection 1 as application worker-a, then one
// on connection 2 as worker-b, and, when trace is set, one under that trace
// on connection 3 (worker-c), all close enough that every window is still
// open at the end.
func twoWorkers(tl *timeline, trace string) {
	for id, app := range map[uint64]string{1: "worker-a", 2: "worker-b", 3: "worker-c"} {
		tl.on(id).conn.ApplicationName = app
	}
	tl.on(1)
	nPlusOneRequest(tl, 6)
	tl.on(2)
	nPlusOneRequest(tl, 6)
	if trace != "" {
		tl.on(3)
		tl.trace = trace
		nPlusOneRequest(tl, 6)
		tl.trace = ""
	}
}

func observeAll(d *Detector, events []Event) []Finding {
	var out []Finding
	for _, ev := range events {
		out = append(out, d.Observe(ev)...)
	}
	return out
}

func appsOf(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Connection.ApplicationName)
	}
	return out
}

const traceC = "4bf92f3577b34da6a3ce929d0e0e4736"

func TestFlushWhereClosesOnlyItsScope(t *testing.T) {
	tl := newTimeline()
	twoWorkers(tl, traceC)
	d := New(Config{})
	if got := observeAll(d, tl.events); len(got) != 0 {
		t.Fatalf("findings before any flush: %v", summaries(got))
	}
	if open := d.Stats().WindowsOpen; open != 3 {
		t.Fatalf("%d windows open, want 3 (two connections, one trace)", open)
	}

	fs, closed := d.FlushWhere("nobody", "")
	if len(fs) != 0 || closed != 0 {
		t.Errorf("flush of an unknown application: %d windows, %v", closed, summaries(fs))
	}
	fs, closed = d.FlushWhere("worker-a", "")
	if closed != 1 || len(fs) != 1 || fs[0].Kind != KindNPlusOne || fs[0].Connection.ApplicationName != "worker-a" {
		t.Fatalf("flush of worker-a: %d windows, %v of %v; want one window, worker-a's N+1", closed, summaries(fs), appsOf(fs))
	}
	if open := d.Stats().WindowsOpen; open != 2 {
		t.Errorf("after the flush of worker-a %d windows open, want worker-b's and the trace's", open)
	}
	if s := d.Stats(); s.WindowsClosed[CloseFlush] != 1 {
		t.Errorf("closed for flush: %d, want 1", s.WindowsClosed[CloseFlush])
	}

	// A trace is flushed by its id; an application that did not run it does
	// not match it.
	if fs, closed := d.FlushWhere("worker-b", traceC); closed != 0 || len(fs) != 0 {
		t.Errorf("flush of worker-b's part of the trace (none): %d windows, %v", closed, summaries(fs))
	}
	fs, closed = d.FlushWhere("", traceC)
	if closed != 1 || len(fs) != 1 || fs[0].TraceID != traceC {
		t.Fatalf("flush of the trace: %d windows, %v; want its N+1", closed, summaries(fs))
	}

	fs, closed = d.FlushWhere("", "")
	if closed != 1 || len(fs) != 1 || fs[0].Connection.ApplicationName != "worker-b" {
		t.Fatalf("unscoped flush: %d windows, %v of %v; want worker-b's N+1", closed, summaries(fs), appsOf(fs))
	}
	if open := d.Stats().WindowsOpen; open != 0 {
		t.Errorf("%d windows open after every flush", open)
	}
}

func TestResetReportedWhereResetsOnlyItsScope(t *testing.T) {
	tl := newTimeline()
	twoWorkers(tl, traceC)
	for _, id := range []uint64{1, 2} {
		tl.on(id)
		tl.q(qStarUser, 1, 1) // select_star: once per fingerprint, shared
	}
	d := New(Config{})
	first := append(observeAll(d, tl.events), d.Flush()...)
	if n := len(first); n != 4 {
		t.Fatalf("first round: %v, want three N+1s and a select_star", summaries(first))
	}

	again := func(reset func()) []string {
		t.Helper()
		reset()
		tl.wait(time.Second) // well within the cooldown
		n := len(tl.events)
		twoWorkers(tl, traceC)
		for _, id := range []uint64{1, 2} {
			tl.on(id)
			tl.q(qStarUser, 1, 1)
		}
		fs := append(observeAll(d, tl.events[n:]), d.Flush()...)
		var got []string
		for _, f := range fs {
			got = append(got, string(f.Kind)+" "+f.Connection.ApplicationName+" "+f.TraceID)
		}
		return got
	}
	if got := again(func() {}); len(got) != 0 {
		t.Errorf("without a reset, within the cooldown: %v, want nothing", got)
	}
	if got := again(func() { d.ResetReportedWhere("worker-a", "") }); len(got) != 1 || got[0] != "n_plus_one worker-a " {
		t.Errorf("after resetting worker-a: %q, want worker-a's N+1 alone (select_star is shared)", got)
	}
	if got := again(func() { d.ResetReportedWhere("", traceC) }); len(got) != 1 || got[0] != "n_plus_one worker-c "+traceC {
		t.Errorf("after resetting the trace: %q, want the trace's N+1 alone", got)
	}
	if got := again(d.ResetReported); len(got) != 4 {
		t.Errorf("after the unscoped reset: %q, want all four again", got)
	}
}
