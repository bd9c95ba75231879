package detector

import (
	"math"
	"testing"
	"time"
)

// instantsUnderTest are the times whose nanos must order, subtract and add
// as time.Time does: the zero time (unset), the epoch and around it, event
// times in several zones, and the ends of the range nanos holds exactly.
func instantsUnderTest() []time.Time {
	cet := time.FixedZone("CET", 3600)
	return []time.Time{
		{},
		time.Unix(0, 0).UTC(),
		time.Unix(0, 1).UTC(),
		time.Unix(-1, 999_999_999).UTC(),
		time.Date(1969, 12, 31, 23, 59, 58, 0, time.UTC),
		t0,
		t0.Add(time.Nanosecond),
		t0.Add(100 * time.Millisecond),
		t0.Add(-time.Minute),
		t0.In(cet),
		time.Date(2026, 3, 14, 16, 9, 26, 1, cet),
		time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2250, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, math.MinInt64+1).UTC(),
		time.Unix(0, math.MaxInt64).UTC(),
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func cmpNanos(a, b nanos) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestNanosMatchTime checks nanosOf, sub and comparisons against time.Time
// on every pair of instants, and isZero against IsZero.
func TestNanosMatchTime(t *testing.T) {
	ts := instantsUnderTest()
	for _, a := range ts {
		na := nanosOf(a)
		if na.isZero() != a.IsZero() {
			t.Errorf("%v: isZero %v, IsZero %v", a, na.isZero(), a.IsZero())
		}
		for _, b := range ts {
			nb := nanosOf(b)
			if got, want := cmpNanos(na, nb), sign(a.Compare(b)); got != want {
				t.Errorf("%v vs %v: compare %d, want %d", a, b, got, want)
			}
			if got, want := na.sub(nb), a.Sub(b); got != want {
				t.Errorf("%v - %v: %v, want %v", a, b, got, want)
			}
		}
	}
}

// TestNanosAddOrders checks that an instant moved by a duration (what the
// detector compares others with: "at most IdleGap before the window") is
// ordered against every instant as time.Time orders it, the zero time
// moved back included, and that a sum past the range saturates.
func TestNanosAddOrders(t *testing.T) {
	ts := instantsUnderTest()
	for _, d := range []time.Duration{-5 * time.Second, -time.Nanosecond, 0, 350 * time.Millisecond} {
		for _, a := range ts {
			if y := a.Year(); a.IsZero() && d > 0 || !a.IsZero() && (y < 1678 || y > 2261) {
				continue // moved out of the range nanos holds exactly; the unset instant is only moved back
			}
			moved := nanosOf(a).add(d)
			for _, b := range ts {
				if got, want := cmpNanos(nanosOf(b), moved) < 0, b.Before(a.Add(d)); got != want {
					t.Errorf("%v before %v%+v: %v, want %v", b, a, d, got, want)
				}
			}
		}
	}
	if got := nanosOf(time.Time{}).add(-time.Second); got != noTime {
		t.Errorf("unset less a second: %d, want noTime", got)
	}
	if got := nanos(math.MaxInt64 - 1).add(time.Second); got != math.MaxInt64 {
		t.Errorf("past the end: %d, want the end", got)
	}
}

// TestNanosOfClamps checks that instants outside the range nanos holds are
// clamped to its ends rather than wrapped around: the zero time's UnixNano
// is a date in 1754.
func TestNanosOfClamps(t *testing.T) {
	early := time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	late := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := nanosOf(early); got != noTime+1 {
		t.Errorf("year 1000: %d, want the earliest set instant", got)
	}
	if got := nanosOf(late); got != math.MaxInt64 {
		t.Errorf("year 3000: %d, want the latest instant", got)
	}
	if nanosOf(early) <= nanosOf(time.Time{}) || nanosOf(late) <= nanosOf(t0) {
		t.Error("clamped instants out of order")
	}
}

// TestFindingTimesAsEventsGaveThem checks that a finding's times are the
// events' own time.Time values, zone included, not ones rebuilt from the
// nanoseconds the detector compares: the start of the window's first
// statement (its end when it came without a start) and the end of its
// latest.
func TestFindingTimesAsEventsGaveThem(t *testing.T) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	tl := newTimeline()
	tl.now = t0.In(zone)
	first := tl.q(qOrders, 1, 10)
	first.Start = time.Time{}
	tl.loop(qUser, 6, 1, 0)
	last := tl.events[len(tl.events)-1].Exec
	fs := detect(Config{}, tl.events)
	if len(fs) == 0 {
		t.Fatal("no finding")
	}
	for _, f := range fs {
		if f.WindowStart != first.End {
			t.Errorf("%s: window start %v, want the first statement's end %v", f.Kind, f.WindowStart, first.End)
		}
		if f.WindowEnd != last.End || f.Time != last.End {
			t.Errorf("%s: time %v, window end %v, want %v", f.Kind, f.Time, f.WindowEnd, last.End)
		}
		if f.Time.Location() != zone {
			t.Errorf("%s: time in %v, want %v", f.Kind, f.Time.Location(), zone)
		}
	}
}
