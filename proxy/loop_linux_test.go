package proxy

import (
	"testing"
	"testing/synctest"
	"time"
)

// The event loop's wait policy (waitPolicy in loop_linux.go), driven the
// way run drives it, in a synctest bubble whose fake clock the policy reads
// through time.Now: time.Sleep stands for the time a wait or the relay work
// took.

// idleWait is one epoll_wait that timed out after the timeout the policy
// asked for; it returns whether the loop yielded after it.
func idleWait(t *testing.T, p *waitPolicy) bool {
	t.Helper()
	park, timeout := p.next()
	if park {
		t.Fatalf("next() parks; want an epoll_wait (quiet %d)", p.quiet)
	}
	if timeout < 0 {
		t.Fatalf("next() blocks in epoll_wait; an idle wait needs a timeout")
	}
	time.Sleep(time.Duration(timeout) * time.Millisecond)
	return p.idle(true)
}

func TestWaitPolicyQuietLoopYieldsThenParks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newWaitPolicy()
		if park, timeout := p.next(); park || timeout != int(loopYield/time.Millisecond) {
			t.Fatalf("first wait: park %v, timeout %d ms; want epoll_wait for %s", park, timeout, loopYield)
		}
		start := time.Now()
		// Each wait lasts loopYield, so the loop goes through the
		// scheduler after every one but the one after which it parks.
		for i := 1; i < loopQuietWaits; i++ {
			if !idleWait(t, &p) {
				t.Fatalf("no yield after timed-out wait %d (%s since the last one)", i, loopYield)
			}
		}
		if idleWait(t, &p) {
			t.Errorf("yielded after timed-out wait %d, where the loop parks instead", loopQuietWaits)
		}
		if park, _ := p.next(); !park {
			t.Fatalf("not parking after %d timed-out waits", loopQuietWaits)
		}
		if d := time.Since(start); d != loopQuietWaits*loopYield {
			t.Errorf("parked after %s of quiet, want %s", d, loopQuietWaits*loopYield)
		}

		// The parked wait ends with an event (through the scheduler): the
		// loop is busy again and the next wait is an epoll_wait.
		time.Sleep(time.Second)
		p.unparked()
		p.busy()
		if park, timeout := p.next(); park || timeout != int(loopYield/time.Millisecond) {
			t.Fatalf("after the parked wait: park %v, timeout %d ms; want epoll_wait for %s", park, timeout, loopYield)
		}
		if p.yieldDue() {
			t.Errorf("yield due right after a parked wait, which went through the scheduler")
		}
		// The quiet count starts over.
		for i := 1; i < loopQuietWaits; i++ {
			idleWait(t, &p)
		}
		if park, _ := p.next(); park {
			t.Errorf("parking after %d timed-out waits following events, want %d", loopQuietWaits-1, loopQuietWaits)
		}
	})
}

func TestWaitPolicyEventsResetQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newWaitPolicy()
		for range loopQuietWaits - 1 {
			idleWait(t, &p)
		}
		p.busy() // one event: the quiet spell is over
		for i := 1; i < loopQuietWaits; i++ {
			idleWait(t, &p)
			if park, _ := p.next(); park {
				t.Fatalf("parking after %d timed-out waits since an event, want %d", i, loopQuietWaits)
			}
		}
		idleWait(t, &p)
		if park, _ := p.next(); !park {
			t.Fatalf("not parking after %d timed-out waits since an event", loopQuietWaits)
		}
	})
}

// A wait interrupted before it waited (EINTR with no events) neither counts
// as quiet nor ends the quiet spell; it may yield.
func TestWaitPolicyInterruptedWaitsDoNotCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newWaitPolicy()
		for range loopQuietWaits - 1 {
			idleWait(t, &p)
		}
		for range 3 * loopQuietWaits {
			p.idle(false)
		}
		if park, _ := p.next(); park {
			t.Fatalf("parking after %d timed-out and some interrupted waits, want %d timed out", loopQuietWaits-1, loopQuietWaits)
		}
		time.Sleep(loopYield)
		if !p.idle(false) {
			t.Errorf("no yield after an interrupted wait %s after the last yield", loopYield)
		}
		idleWait(t, &p)
		if park, _ := p.next(); !park {
			t.Fatalf("not parking after %d timed-out waits", loopQuietWaits)
		}
		// Parked, an interrupted wait keeps it parked and does not yield
		// (the parked wait itself goes through the scheduler).
		time.Sleep(time.Second)
		if p.idle(false) {
			t.Errorf("yield after an interrupted parked wait")
		}
		if park, _ := p.next(); !park {
			t.Errorf("an interrupted parked wait ended the parking")
		}
	})
}

// Busy, the loop yields once loopYield has passed since the last yield,
// whether or not events keep coming, and not before.
func TestWaitPolicyBusyLoopYieldsEveryLoopYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newWaitPolicy()
		const work = 300 * time.Microsecond // one round of events
		yields, rounds := 0, 0
		start := time.Now()
		last := start // the last yield
		for time.Since(start) < 100*time.Millisecond {
			if park, _ := p.next(); park {
				t.Fatalf("parking while busy")
			}
			p.busy()
			time.Sleep(work)
			rounds++
			since := time.Since(last)
			if p.yieldDue() {
				yields++
				last = time.Now()
				if since < loopYield || since >= loopYield+work {
					t.Fatalf("yielded %s after the last yield, want the first round that ends %s or more after it", since, loopYield)
				}
			} else if since >= loopYield {
				t.Fatalf("no yield %s after the last one", since)
			}
		}
		// 100 ms of rounds of 0.3 ms: a yield every 17 rounds (5.1 ms),
		// the last at 96.9 ms.
		if yields != 19 {
			t.Errorf("%d yields in %d rounds over %s, want 19", yields, rounds, time.Since(start))
		}
	})
}

// When parking fails, the loop blocks in epoll_wait (no timeout), never
// parks again, and still yields when it wakes loopYield after the last yield.
func TestWaitPolicyCannotPark(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newWaitPolicy()
		for range loopQuietWaits {
			idleWait(t, &p)
		}
		if park, _ := p.next(); !park {
			t.Fatalf("not parking after %d timed-out waits", loopQuietWaits)
		}
		p.unparked()
		p.cannotPark()
		for i := range 3 * loopQuietWaits {
			if park, timeout := p.next(); park || timeout != -1 {
				t.Fatalf("wait %d after parking failed: park %v, timeout %d ms; want epoll_wait with no timeout", i, park, timeout)
			}
			time.Sleep(loopYield) // an epoll_wait with no timeout can return no event (EINTR)
			if !p.idle(true) {
				t.Fatalf("no yield after a wait of %s", loopYield)
			}
		}
		p.busy()
		time.Sleep(loopYield - time.Nanosecond)
		if p.yieldDue() {
			t.Errorf("yield due before %s passed", loopYield)
		}
		time.Sleep(time.Nanosecond)
		if !p.yieldDue() {
			t.Errorf("no yield due %s after the last one", loopYield)
		}
		if park, timeout := p.next(); park || timeout != -1 {
			t.Errorf("after events: park %v, timeout %d ms; want epoll_wait with no timeout", park, timeout)
		}
	})
}
