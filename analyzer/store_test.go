package analyzer

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nplus1/nplus1/detector"
)

// finding is a stored finding of an application, with a count to tell
// them apart.
func finding(app string, count int) *detector.Finding {
	return &detector.Finding{Kind: detector.KindNPlusOne, Count: count, Connection: detector.Connection{ApplicationName: app}}
}

func ids(sts []Stored) []uint64 {
	out := []uint64{}
	for _, st := range sts {
		out = append(out, st.ID)
	}
	return out
}

func TestFilterMatch(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := detector.Finding{Kind: detector.KindNPlusOne, Time: at, TraceID: "t1",
		Connection: detector.Connection{ApplicationName: "api"},
		Tags:       map[string]string{"test": "checkout: adds an item", "route": "/cart"}}
	for _, c := range []struct {
		filter Filter
		want   bool
	}{
		{Filter{}, true},
		{Filter{Kind: detector.KindNPlusOne}, true},
		{Filter{Kind: detector.KindSelectStar}, false},
		{Filter{Since: at}, true},
		{Filter{Since: at.Add(time.Nanosecond)}, false},
		{Filter{Application: "api"}, true},
		{Filter{Application: "worker"}, false},
		{Filter{Trace: "t1"}, true},
		{Filter{Trace: "t2"}, false},
		{Filter{Tags: []Tag{{"test", "checkout: adds an item"}, {"route", "/cart"}}}, true},
		{Filter{Tags: []Tag{{"test", "checkout: adds an item"}, {"route", "/home"}}}, false},
		{Filter{Tags: []Tag{{"controller", ""}}}, false},
		{Filter{Application: "api", Trace: "t1", Tags: []Tag{{"route", "/cart"}}}, true},
	} {
		if got := c.filter.Match(&f); got != c.want {
			t.Errorf("%+v: Match = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestParseTag(t *testing.T) {
	tag, err := ParseTag("test:checkout: adds an item")
	if err != nil || tag != (Tag{"test", "checkout: adds an item"}) {
		t.Errorf("ParseTag: %+v, %v", tag, err)
	}
	if tag, err := ParseTag("route:"); err != nil || tag != (Tag{"route", ""}) {
		t.Errorf("ParseTag(route:): %+v, %v", tag, err)
	}
	for _, bad := range []string{"test", ":x", ""} {
		if _, err := ParseTag(bad); err == nil {
			t.Errorf("ParseTag(%q): no error", bad)
		}
	}
}

func TestStoreIDsAndScopedClear(t *testing.T) {
	s := NewStore(4)
	for i := range 6 { // the ring keeps the newest 4: ids 3..6
		s.Finding(finding([]string{"a", "b"}[i%2], i))
	}
	if got := ids(s.ListWhere(Filter{})); !slices.Equal(got, []uint64{3, 4, 5, 6}) {
		t.Fatalf("ids %v, want 3 4 5 6", got)
	}
	if got := ids(s.ListWhere(Filter{Application: "a"})); !slices.Equal(got, []uint64{3, 5}) {
		t.Errorf("application a: %v, want 3 5", got)
	}
	if n := s.ClearWhere(Filter{Application: "a"}); n != 2 {
		t.Errorf("ClearWhere forgot %d, want 2", n)
	}
	if got := ids(s.ListWhere(Filter{})); !slices.Equal(got, []uint64{4, 6}) {
		t.Fatalf("after clearing a: %v, want 4 6", got)
	}
	// The room cleared is used again, in order, with new ids.
	s.Finding(finding("a", 7))
	s.Finding(finding("a", 8))
	s.Finding(finding("b", 9))
	if got := ids(s.ListWhere(Filter{})); !slices.Equal(got, []uint64{6, 7, 8, 9}) {
		t.Fatalf("after three more: %v, want 6 7 8 9", got)
	}
	if got := s.List("", time.Time{}); len(got) != 4 || got[0].Count != 5 || got[3].Count != 9 {
		t.Errorf("List: %+v", got)
	}
	s.Clear()
	if got := s.ListWhere(Filter{}); len(got) != 0 {
		t.Errorf("after Clear: %v", ids(got))
	}
	s.Finding(finding("a", 10))
	if got := ids(s.ListWhere(Filter{})); !slices.Equal(got, []uint64{10}) {
		t.Errorf("after Clear the next id is %v, want 10 (ids are never given again)", got)
	}
}

func TestSubscribeAfterNoGapNoDuplicate(t *testing.T) {
	s := NewStore(100)
	for i := range 5 {
		s.Finding(finding([]string{"a", "b"}[i%2], i)) // ids 1..5
	}
	feed, b := s.SubscribeAfter(2, 10, Filter{Application: "a"})
	defer feed.Cancel()
	if b.Reset != "" || !slices.Equal(ids(b.Findings), []uint64{3, 5}) || b.Last != 5 {
		t.Fatalf("backlog after 2: %v reset %q last %d, want 3 5, no reset, last 5", ids(b.Findings), b.Reset, b.Last)
	}
	s.Finding(finding("b", 6))
	s.Finding(finding("a", 7))
	if st := <-feed.C; st.ID != 7 || st.Count != 7 {
		t.Errorf("live: %d, want 7", st.ID)
	}
	select {
	case st := <-feed.C:
		t.Errorf("live: another finding %d", st.ID)
	default:
	}

	// Unknown (a restarted process) and evicted ids say so.
	f2, b := s.SubscribeAfter(99, 10, Filter{})
	f2.Cancel()
	if b.Reset != ResetUnknownID || len(b.Findings) != 7 {
		t.Errorf("after an unknown id: reset %q, %d findings; want unknown_id and all 7", b.Reset, len(b.Findings))
	}
	small := NewStore(3)
	for i := range 6 {
		small.Finding(finding("a", i))
	}
	f3, b := small.SubscribeAfter(2, 10, Filter{})
	f3.Cancel()
	if b.Reset != ResetEvicted || b.Oldest != 4 || !slices.Equal(ids(b.Findings), []uint64{4, 5, 6}) {
		t.Errorf("after an evicted id: reset %q oldest %d %v; want evicted, 4, 4 5 6", b.Reset, b.Oldest, ids(b.Findings))
	}
	f4, b := small.SubscribeAfter(3, 10, Filter{})
	f4.Cancel()
	if b.Reset != "" || !slices.Equal(ids(b.Findings), []uint64{4, 5, 6}) {
		t.Errorf("after the newest evicted id: reset %q %v; want none, 4 5 6", b.Reset, ids(b.Findings))
	}
	f5, b := small.Follow(10, Filter{})
	f5.Cancel()
	if len(b.Findings) != 0 || b.Last != 6 {
		t.Errorf("Follow: %v last %d, want nothing and last 6", ids(b.Findings), b.Last)
	}
}

// TestFeedCatchesUp: a reader slower than the findings falls behind and
// catches up from the ring: every finding once, in order.
func TestFeedCatchesUp(t *testing.T) {
	s := NewStore(1000)
	feed, b := s.Follow(2, Filter{Application: "a"})
	defer feed.Cancel()
	last := b.Last
	var got []uint64
	take := func(st Stored) {
		if st.ID <= last {
			t.Fatalf("id %d after %d", st.ID, last)
		}
		last = st.ID
		got = append(got, st.ID)
	}
	var want []uint64
	for i := range 40 {
		app := []string{"a", "b", "a"}[i%3]
		s.Finding(finding(app, i))
		if app == "a" {
			want = append(want, uint64(i+1))
		}
		if i%7 == 0 { // now and then, read what is there
			for len(feed.C) > 0 {
				take(<-feed.C)
			}
		}
	}
	catchups := 0
	for done := false; !done; {
		select {
		case st := <-feed.C:
			take(st)
		case <-feed.Behind:
			catchups++
			for _, st := range feed.Catchup(last).Findings {
				take(st)
			}
		default:
			done = true
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v,\nwant %v", got, want)
	}
	if catchups == 0 {
		t.Error("the feed never fell behind: the test proves nothing")
	}
	if s.Dropped() != 0 {
		t.Errorf("Dropped %d: a feed catches up", s.Dropped())
	}
}

func ExampleFilter() {
	f := Filter{Application: "checkout-test", Tags: []Tag{{Key: "test", Value: "adds an item"}}}
	fmt.Println(f.Match(&detector.Finding{
		Connection: detector.Connection{ApplicationName: "checkout-test"},
		Tags:       map[string]string{"test": "adds an item"},
	}))
	// Output: true
}
