package detector

import (
	"fmt"
	"testing"
	"time"
)

// TestStallReopenedLoopSearchesThePoolAgain: a request on connection 2
// checks its session and loads the current user, its list of orders runs on
// connection 1 of the same pool, and it loops over the orders on connection
// 2: the order's user, then the user's address. A stall after the fourth
// user's lookup closes the window: the users loop then holds five keys, four
// of them from the list on connection 1, too few to prove it, and the search
// of the pool's recent results finds nothing. The next address lookup goes
// on with the loop (a key of the latest user's result), so the window is
// opened again, and when it closes the users loop, now with every user of
// the list, must be searched for again: it is proven from connection 1's
// list, exactly as the same loop without the stall.
func TestStallReopenedLoopSearchesThePoolAgain(t *testing.T) {
	for _, n := range []int{9, 12} { // 12: a list the pool's hop records follow too
		for _, stall := range []time.Duration{700 * time.Millisecond, 900 * time.Millisecond} {
			t.Run(fmt.Sprintf("list=%d/stall=%s", n, stall), func(t *testing.T) {
				keys := seq(11, n)
				control := loopOverAPool(t, keys, 0)
				got := loopOverAPool(t, keys, stall)

				users := findingsOf(control, "user")
				if len(users) != 1 {
					t.Fatalf("without the stall: got %v, want one N+1 of the users", summaries(control))
				}
				ev := users[0].Evidence
				if ev == nil || ev.Kind != EvidenceDataFlow || ev.SourceConnection != 1 || ev.SourceColumn != "user_id" ||
					ev.Matched != n || ev.Of != n+1 || users[0].Count != n+1 {
					t.Fatalf("without the stall: %s, evidence %+v; want data_flow from connection 1's user_id, %d of %d keys",
						summary(users[0]), ev, n, n+1)
				}

				for _, name := range []string{"user", "address"} {
					want, have := findingsOf(control, name), findingsOf(got, name)
					if len(have) != len(want) {
						t.Errorf("%s: got %v after the stall, want %v as without it", name, summaries(have), summaries(want))
						continue
					}
					for i := range want {
						if summary(have[i]) != summary(want[i]) {
							t.Errorf("%s: got %s after the stall, want %s as without it", name, summary(have[i]), summary(want[i]))
						}
						if *have[i].Evidence != *want[i].Evidence {
							t.Errorf("%s: evidence %+v after the stall, want %+v as without it", name, *have[i].Evidence, *want[i].Evidence)
						}
					}
				}
			})
		}
	}
}

// loopOverAPool runs the request of TestStallReopenedLoopSearchesThePoolAgain
// over keys, with a stall (0 for none) after the fourth user's lookup, and
// returns its N+1 findings. With a stall it checks that the window was closed
// and opened again.
func loopOverAPool(t *testing.T, keys []int, stall time.Duration) []Finding {
	t.Helper()
	tl := poolTimeline(2)
	session := tl.on(2).q(qSession, 7, 1)
	session.Result = result([]string{"user_id"}, []int{999})
	tl.lookup(qUser, 999) // the current user: a key of the users loop from no list
	tl.wait(time.Millisecond)
	tl.on(1).source(qOrders, keys)
	tl.on(2)
	for i, k := range keys {
		tl.lookup(qUser, k)
		if i == 3 {
			tl.wait(stall)
		}
		addr := tl.q(qAddress, uint64(2_000_000+k), 1)
		addr.ParamKeys = key(k)
		addr.Result = result([]string{"street"}, []int{50_000 + k})
		tl.wait(time.Millisecond)
	}
	d := New(Config{})
	got := observeTicking(d, tl.events)
	got = append(got, d.Advance(tl.now.Add(10*time.Second))...)
	got = append(got, d.Flush()...)
	if s := d.Stats(); stall > 0 && s.StallsReopened != 1 {
		t.Errorf("StallsReopened = %d, want 1: the stall did not close and reopen the window", s.StallsReopened)
	}
	return nPlusOnes(got)
}

// findingsOf returns the findings about the statement the test named name.
func findingsOf(fs []Finding, name string) []Finding {
	var out []Finding
	for _, f := range fs {
		if names[f.Fingerprint] == name {
			out = append(out, f)
		}
	}
	return out
}
