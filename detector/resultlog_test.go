package detector

import (
	"runtime"
	"slices"
	"testing"
	"time"
	"weak"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

func TestResultLog(t *testing.T) {
	var l resultLog
	cols := []string{"id", "user_id"}
	if !l.add(result(cols, []int{1, 10}, []int{2, 20}, []int{3, 30})) {
		t.Fatal("first result not kept")
	}
	// The same names in another list: one column list for both.
	if !l.add(result(slices.Clone(cols), []int{4, 40})) {
		t.Fatal("second result not kept")
	}
	// More names than digested columns, and a column shorter than the first.
	odd := pgwire.NewResultKeys([]string{"a", "b", "c"}, [][]valuekey.Key{
		{valuekey.Int(7), valuekey.Int(8)}, {valuekey.Int(9)},
	}, false)
	if !l.add(odd) {
		t.Fatal("third result not kept")
	}
	if l.len() != 3 || len(l.cols) != 2 {
		t.Fatalf("%d results, %d column lists; want 3 and 2", l.len(), len(l.cols))
	}
	ints := func(vs ...int) []valuekey.Key {
		var ks []valuekey.Key
		for _, v := range vs {
			ks = append(ks, valuekey.Int(int64(v)))
		}
		return ks
	}
	for _, c := range []struct {
		i, c int
		want []valuekey.Key
	}{
		{0, 0, ints(1, 2, 3)}, {0, 1, ints(10, 20, 30)}, {1, 0, ints(4)}, {1, 1, ints(40)},
		{2, 0, ints(7, 8)}, {2, 1, append(ints(9), valuekey.None)},
		{0, 2, nil}, {2, 2, nil}, {1, -1, nil},
	} {
		if got := l.column(c.i, c.c); !slices.Equal(got, c.want) {
			t.Errorf("column(%d, %d) = %v, want %v", c.i, c.c, got, c.want)
		}
	}
	if got := l.columns(2); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("columns(2) = %q, want the two digested", got)
	}
	if l.rows(0) != 3 || l.rows(1) != 1 || l.rows(2) != 2 {
		t.Errorf("rows %d %d %d, want 3 1 2", l.rows(0), l.rows(1), l.rows(2))
	}
	if !l.has(1, valuekey.Int(40)) || l.has(1, valuekey.Int(30)) || !l.hasAny(valuekey.Int(30)) || l.hasAny(valuekey.Int(5)) {
		t.Error("has/hasAny wrong")
	}
	// A column sliced out of a larger array keeps only its own rows.
	big := ints(1, 2, 3, 4)
	if !l.add(pgwire.ResultKeysOf([]string{"x"}, 2, big[:2], false)) || !slices.Equal(l.column(3, 0), ints(1, 2)) {
		t.Errorf("column of a sliced result = %v", l.column(3, 0))
	}
	// Past maxLogColumnLists distinct lists, results are not kept.
	for i := len(l.cols); i < maxLogColumnLists; i++ {
		if !l.add(result([]string{string(rune('k' + i))}, []int{i})) {
			t.Fatalf("list %d refused", i)
		}
	}
	if l.add(result([]string{"one_too_many"}, []int{1})) {
		t.Error("a result with one column list too many was kept")
	}
}

// resultBlock is a result in the same allocation as its execution, as the
// tracker builds a lookup's.
type resultBlock struct {
	rk   pgwire.ResultKeys
	keys [1]valuekey.Key
	x    pgwire.Execution
}

// An open window keeps a result's digests, not the execution they came
// with: the tracker's block (and what the execution points to) is garbage
// once the detector has seen it.
func TestWindowKeepsNoExecution(t *testing.T) {
	d := New(Config{})
	tl := newTimeline()
	var held weak.Pointer[resultBlock]
	func() {
		b := new(resultBlock)
		b.keys[0] = valuekey.Int(4711)
		b.rk = *pgwire.ResultKeysOf([]string{"id"}, 1, b.keys[:], false)
		x := tl.q(qOrders, 1, 1)
		b.x = *x
		b.x.Result = &b.rk
		held = weak.Make(b)
		d.Observe(Event{Exec: &b.x, Stmt: qOrders})
	}()
	tl.wait(time.Millisecond)
	runtime.GC()
	runtime.GC()
	if held.Value() != nil {
		t.Error("the detector keeps the execution's memory alive")
	}
	g, ok := d.groups.Peek(groupID{conn: 1})
	if !ok || g.win == nil {
		t.Fatal("no open window for connection 1")
	}
	s := g.win.shapes[g.win.byID[qOrders.ID]]
	if s.results.len() != 1 || !s.results.hasAny(valuekey.Int(4711)) {
		t.Errorf("the window kept %d results, want the one with its digest", s.results.len())
	}
}

// MaxEvidenceBytes counts what the log keeps: 8 bytes a digest, 16 a result.
func TestEvidenceBytesCountTheLog(t *testing.T) {
	tl := newTimeline()
	for k := range 5 {
		tl.lookup(qUser, k+1) // one row, one column: 24 bytes
	}
	d := New(Config{MaxEvidenceBytes: 3 * 24})
	for _, ev := range tl.events {
		d.Observe(ev)
	}
	g, ok := d.groups.Peek(groupID{conn: 1})
	if !ok || g.win == nil {
		t.Fatal("no open window for connection 1")
	}
	s := g.win.shapes[g.win.byID[qUser.ID]]
	if s.results.len() != 3 || d.evBytes != 3*24 || d.Stats().EvidenceDropped != 2 {
		t.Errorf("%d results kept in %d bytes, %d dropped; want 3 in 72, 2 dropped",
			s.results.len(), d.evBytes, d.Stats().EvidenceDropped)
	}
	d.Flush()
	if d.evBytes != 0 {
		t.Errorf("evBytes = %d after every window closed", d.evBytes)
	}
}

// A lookup's results are all alike (one row of the same columns): the log
// keeps no entry per result until one is unlike them, and reads the same
// before and after.
func TestResultLogAlike(t *testing.T) {
	var l resultLog
	cols := []string{"id", "name"}
	check := func(n int) {
		t.Helper()
		if l.len() != n {
			t.Fatalf("%d results, want %d", l.len(), n)
		}
		for i := range min(n, 6) {
			want := result(cols, []int{i, 100 + i})
			if l.rows(i) != 1 || !slices.Equal(l.columns(i), cols) || !slices.Equal(l.column(i, 0), want.Column(0)) ||
				!slices.Equal(l.column(i, 1), want.Column(1)) || !l.has(i, want.Column(1)[0]) || l.has(i, key(100 + i + 1)[0]) {
				t.Fatalf("result %d: rows %d, columns %q, %v %v", i, l.rows(i), l.columns(i), l.column(i, 0), l.column(i, 1))
			}
		}
	}
	for i := range 6 {
		if !l.add(result(cols, []int{i, 100 + i})) {
			t.Fatalf("result %d not kept", i)
		}
	}
	if l.items != nil {
		t.Errorf("alike results took %d entries", len(l.items))
	}
	check(6)
	if !l.add(result(cols, []int{6, 106}, []int{7, 107})) { // two rows: unlike the others
		t.Fatal("the unlike result was not kept")
	}
	check(7)
	if l.rows(6) != 2 || !slices.Equal(l.column(6, 1), result(cols, []int{6, 106}, []int{7, 107}).Column(1)) {
		t.Errorf("the unlike result: rows %d, %v", l.rows(6), l.column(6, 1))
	}
	if !l.add(result(cols, []int{8, 108})) {
		t.Fatal("a result after it was not kept")
	}
	if l.len() != 8 || !l.has(7, key(108)[0]) {
		t.Errorf("after it: %d results", l.len())
	}
}
