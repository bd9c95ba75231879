package detector

import (
	"fmt"
	"testing"
	"time"
)

// TestStallInsideALoop: a loop of 6 lookups paused for 300 ms after its
// third (a stalled client or machine) is one N+1 with its source, however
// the pause falls between Advance ticks; without the data flow the halves
// (3 + 3, under the threshold of 5) would each be nothing.
func TestStallInsideALoop(t *testing.T) {
	for _, stall := range []time.Duration{150 * time.Millisecond, 300 * time.Millisecond, 450 * time.Millisecond} {
		t.Run(stall.String(), func(t *testing.T) {
			tl := newTimeline()
			tl.source(qOrders, seq(1, 6))
			for i, k := range seq(1, 6) {
				if i == 3 {
					tl.wait(stall)
				}
				tl.lookup(qUser, k)
				tl.wait(time.Millisecond)
			}
			d := New(Config{})
			got := observeTicking(d, tl.events)
			got = append(got, d.Advance(tl.now.Add(2*time.Second))...)
			ns := nPlusOnes(got)
			if len(ns) != 1 || ns[0].Count != 6 || ns[0].Source == nil || ns[0].Evidence == nil || ns[0].Evidence.Kind != EvidenceDataFlow {
				t.Fatalf("got %v, want one N+1 of 6 lookups proven from orders", summaries(got))
			}
			if s := d.Stats(); s.StallsBridged != 1 {
				t.Errorf("StallsBridged = %d, want 1", s.StallsBridged)
			}
		})
	}
}

// TestStallRulesOut: pauses that are not a stall in a loop end the window as
// the idle gap says.
func TestStallRulesOut(t *testing.T) {
	t.Run("a pause that ends MaxWindow after the window began", func(t *testing.T) {
		tl := newTimeline()
		tl.source(qOrders, seq(1, 6))
		for i, k := range seq(1, 6) {
			if i == 3 {
				tl.wait(DefaultMaxWindow)
			}
			tl.lookup(qUser, k)
		}
		if ns := nPlusOnes(detect(Config{}, tl.events)); len(ns) != 0 {
			t.Errorf("got %v, want nothing: two requests of 3 lookups", summaries(ns))
		}
	})
	t.Run("the next request starts with another statement", func(t *testing.T) {
		tl := newTimeline()
		tl.source(qOrders, seq(1, 3))
		for _, k := range seq(1, 3) {
			tl.lookup(qUser, k)
		}
		tl.wait(300 * time.Millisecond)
		tl.q(qSession, 7, 1)
		for _, k := range seq(1, 3) {
			tl.lookup(qUser, k)
		}
		d := New(Config{})
		var got []Finding
		for _, ev := range tl.events {
			got = append(got, d.Observe(ev)...)
		}
		got = append(got, d.Flush()...)
		if ns := nPlusOnes(got); len(ns) != 0 {
			t.Errorf("got %v, want nothing", summaries(ns))
		}
		if s := d.Stats(); s.StallsBridged != 0 || s.WindowsClosed[CloseIdleGap] != 1 {
			t.Errorf("got %d stalls bridged, %d windows closed by the idle gap; want 0, 1", s.StallsBridged, s.WindowsClosed[CloseIdleGap])
		}
	})
	t.Run("a key the loop already used", func(t *testing.T) {
		tl := newTimeline()
		tl.source(qOrders, seq(1, 3))
		for _, k := range seq(1, 3) {
			tl.lookup(qUser, k)
		}
		tl.wait(300 * time.Millisecond)
		for range 3 {
			tl.lookup(qUser, 1) // a refresh of one user, three times
		}
		d := New(Config{})
		for _, ev := range tl.events {
			d.Observe(ev)
		}
		if s := d.Stats(); s.StallsBridged != 0 {
			t.Errorf("got %d stalls bridged, want 0", s.StallsBridged)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		tl := newTimeline()
		tl.source(qOrders, seq(1, 6))
		for i, k := range seq(1, 6) {
			if i == 3 {
				tl.wait(300 * time.Millisecond)
			}
			tl.lookup(qUser, k)
		}
		if ns := nPlusOnes(detect(Config{StallGap: -1}, tl.events)); len(ns) != 0 {
			t.Errorf("got %v, want nothing with StallGap -1", summaries(ns))
		}
	})
	t.Run("an idle window with a loop is judged by StallGap", func(t *testing.T) {
		tl := newTimeline()
		tl.source(qOrders, seq(1, 6))
		for _, k := range seq(1, 6) {
			tl.lookup(qUser, k)
		}
		d := New(Config{})
		for _, ev := range tl.events {
			d.Observe(ev)
		}
		if got := d.Advance(tl.now.Add(400 * time.Millisecond)); len(got) != 0 {
			t.Errorf("a loop's window closed %v after its last statement: %v", 400*time.Millisecond, summaries(got))
		}
		if got := nPlusOnes(d.Advance(tl.now.Add(500 * time.Millisecond))); len(got) != 1 {
			t.Errorf("got %v at StallGap, want the N+1", summaries(got))
		}
	})
}

func TestStallLongerThanStallGapReopens(t *testing.T) {
	// A loop of 8 cut in two by a stall longer than StallGap: the window
	// closes (4 lookups: nothing), then opens again when the loop goes on,
	// and the whole loop is one finding. With the cooldown off, a reopened
	// window still does not report again what it reported before.
	for _, stall := range []time.Duration{600 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		for _, cooldown := range []time.Duration{0, -1} {
			t.Run(fmt.Sprintf("%s/cooldown=%s", stall, cooldown), func(t *testing.T) {
				tl := newTimeline()
				tl.source(qOrders, seq(1, 8))
				for i, k := range seq(1, 8) {
					if i == 4 {
						tl.wait(stall)
					}
					tl.lookup(qUser, k)
					tl.wait(time.Millisecond)
				}
				d := New(Config{ReportCooldown: cooldown})
				got := observeTicking(d, tl.events)
				got = append(got, d.Advance(tl.now.Add(10*time.Second))...)
				ns := nPlusOnes(got)
				if len(ns) != 1 || ns[0].Count != 8 || ns[0].Evidence == nil || ns[0].Evidence.Kind != EvidenceDataFlow {
					t.Fatalf("got %v, want one N+1 of 8 lookups proven from orders", summaries(got))
				}
				if s := d.Stats(); s.StallsReopened != 1 {
					t.Errorf("StallsReopened = %d, want 1", s.StallsReopened)
				}
			})
		}
	}
}

func TestStallReopenedWindowReportsOnce(t *testing.T) {
	// 6 lookups, a long stall, 4 more: the first close reports the N+1 of
	// 6; the reopened window, closing with 10, does not report it again
	// even with the cooldown off, nor its select_star.
	tl := newTimeline()
	tl.source(qOrders, seq(1, 10))
	for i, k := range seq(1, 10) {
		if i == 6 {
			tl.wait(time.Second)
		}
		tl.lookup(qUser, k)
	}
	d := New(Config{ReportCooldown: -1})
	got := observeTicking(d, tl.events)
	got = append(got, d.Flush()...)
	if ns := nPlusOnes(got); len(ns) != 1 || ns[0].Count != 6 {
		t.Fatalf("got %v, want the N+1 of the first 6 lookups once", summaries(got))
	}
}

func TestStallInsideANestedLoopReopens(t *testing.T) {
	// orders → one item per order → its product, with a 700ms stall after
	// every second order's item, before its product: the inner loop resumes
	// with a key of the outer loop's latest result, so the window opens
	// again and both loops are proven (at the first close that holds five
	// of each, reported once).
	tl := poolTimeline(1)
	x := tl.q(qOrders, 1, 8)
	x.Result = result([]string{"id", "user_id"}, []int{1, 50}, []int{2, 51}, []int{3, 52}, []int{4, 53}, []int{5, 54}, []int{6, 55}, []int{7, 56}, []int{8, 57})
	for o := 1; o <= 8; o++ {
		items := tl.q(qItems, uint64(o), 1)
		items.ParamKeys = key(o)
		items.Result = result([]string{"id", "product_id"}, []int{10 * o, 100 * o})
		if o%2 == 0 {
			tl.wait(700 * time.Millisecond)
		}
		tl.lookup(qProduct, 100*o)
	}
	d := New(Config{})
	got := observeTicking(d, tl.events)
	got = append(got, d.Advance(tl.now.Add(10*time.Second))...)
	ns := nPlusOnes(got)
	if len(ns) != 2 || names[ns[0].Fingerprint] != "items" || names[ns[1].Fingerprint] != "product" {
		t.Fatalf("got %v, want the items and the products loops, once each", summaries(got))
	}
	for _, f := range ns {
		if f.Evidence == nil || f.Evidence.Kind != EvidenceDataFlow {
			t.Errorf("%s: evidence %+v, want data_flow", summary(f), f.Evidence)
		}
	}
	if s := d.Stats(); s.StallsReopened != 4 {
		t.Errorf("StallsReopened = %d, want 4", s.StallsReopened)
	}
}

func TestStallNestedLoopProvenAfterTheStall(t *testing.T) {
	// orders → 6 items per order, the same 6 products in every order → each
	// product; a 700ms stall after the second order's items. At the stall
	// the products loop has run 6 times over items that are not yet a loop
	// (2 executions): on repetition alone it waits, and is proven once the
	// loop goes on; reported once, with the data flow.
	tl := poolTimeline(1)
	x := tl.q(qOrders, 1, 6)
	x.Result = result([]string{"id", "user_id"}, []int{1, 50}, []int{2, 51}, []int{3, 52}, []int{4, 53}, []int{5, 54}, []int{6, 55})
	for o := 1; o <= 6; o++ {
		items := tl.q(qItems, uint64(o), 6)
		items.ParamKeys = key(o)
		var rows [][]int
		for i := range 6 {
			rows = append(rows, []int{10*o + i, 60 + i})
		}
		items.Result = result([]string{"id", "product_id"}, rows...)
		if o == 2 {
			tl.wait(700 * time.Millisecond)
		}
		for i := range 6 {
			tl.lookup(qProduct, 60+i)
		}
	}
	d := New(Config{})
	got := observeTicking(d, tl.events)
	got = append(got, d.Advance(tl.now.Add(10*time.Second))...)
	ns := nPlusOnes(got)
	if len(ns) != 2 {
		t.Fatalf("got %v, want the items and the products loops", summaries(got))
	}
	for _, f := range ns {
		if f.Evidence == nil || f.Evidence.Kind != EvidenceDataFlow {
			t.Errorf("%s: evidence %+v, want data_flow", summary(f), f.Evidence)
		}
	}
}

func TestStallHeldFindingReportedWhenTheLoopDoesNotGoOn(t *testing.T) {
	// A loop over keys from the request (repetition), then a long pause and
	// another request: the N+1 held at the first close is reported when the
	// next statement does not continue the loop, and at the latest twice
	// StallGap after the loop's last statement.
	for _, next := range []bool{true, false} {
		tl := newTimeline()
		tl.source(qOrders, seq(1, 3))
		for i := range 6 {
			tl.q(qUser, uint64(500+i), 1).ParamKeys = key(500 + i)
		}
		if next {
			tl.wait(time.Second)
			tl.q(qSession, 7, 1)
		}
		d := New(Config{})
		got := observeTicking(d, tl.events)
		if !next {
			got = append(got, d.Advance(tl.now.Add(2*DefaultStallGap-time.Millisecond))...)
			if held := d.Stats().WindowsHeld; held != 1 || len(nPlusOnes(got)) != 0 {
				t.Errorf("before twice StallGap: WindowsHeld %d, findings %v; want 1 held, none reported", held, summaries(got))
			}
			got = append(got, d.Advance(tl.now.Add(2*DefaultStallGap))...)
			if held := d.Stats().WindowsHeld; held != 0 {
				t.Errorf("after twice StallGap: WindowsHeld %d, want 0", held)
			}
		}
		if ns := nPlusOnes(got); len(ns) != 1 || ns[0].Evidence.Kind != EvidenceRepetition {
			t.Errorf("next statement %v: got %v, want the N+1 on repetition", next, summaries(got))
		}
	}
}

// observeTicking runs events through d as the live analyzer does: its
// ticker Advances up to just before each statement starts, then the
// statement is observed.
func observeTicking(d *Detector, events []Event) []Finding {
	var got []Finding
	for _, ev := range events {
		got = append(got, d.Advance(ev.Exec.Start.Add(-time.Nanosecond))...)
		got = append(got, d.Observe(ev)...)
	}
	return got
}
