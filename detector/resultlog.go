package detector

import (
	"math"
	"slices"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// resultLog holds the digests of a shape's results in a window, the
// candidate sources of a later loop, copied out of the executions as they
// arrive. An execution's result lives in memory the tracker allocated with
// the execution (pgwire's Bind block, 480 bytes for a lookup's row):
// keeping a pointer to it kept the whole block, with the execution's own
// pointers, alive and scanned by every collection for as long as the window
// stayed open, and a busy connection's window keeps thousands. The log
// keeps 8 bytes a digest and 12 a result (none while the results are all
// alike, as a lookup's are), in memory without pointers (the collector
// never scans it), and the execution is garbage as soon as the detector is
// done with it.
type resultLog struct {
	keys []valuekey.Key // result after result, column after column
	// items are the results, when they are not all alike; while they are
	// (a lookup's shape: one row of the same columns each time), they are
	// n copies of like, and result i starts at i*rows*width.
	items []logItem
	like  logItem
	n     int
	// cols are the column lists of the results: the shape's, nearly always
	// one (the tracker shares it between the results of a statement).
	cols [][]string
}

// logItem is one result of a resultLog.
type logItem struct {
	off   int32  // index in keys of its first digest
	rows  int32  // rows hashed
	cols  uint16 // its column names: resultLog.cols[cols]
	width uint16 // columns hashed
}

// logCost is what r takes in a resultLog, counted in MaxEvidenceBytes: its
// digests and its entry (a log's slices may hold up to twice what they
// use as they grow).
func logCost(r *pgwire.ResultKeys) int { return 8*len(r.Digests()) + 16 }

// maxLogColumnLists bounds the distinct column lists a log tells apart; a
// result with yet another list is not kept (a shape's results all have the
// same columns but after a schema change).
const maxLogColumnLists = 8

// add copies the digests of r (not nil) and reports whether it was kept.
func (l *resultLog) add(r *pgwire.ResultKeys) bool {
	width, rows := r.Width(), r.Rows()
	names := r.Columns[:min(len(r.Columns), width)]
	ci := l.columnList(names)
	if ci < 0 || width > math.MaxUint16 || len(l.keys)+width*rows > math.MaxInt32 {
		return false
	}
	it := logItem{off: int32(len(l.keys)), rows: int32(rows), cols: uint16(ci), width: uint16(width)}
	l.keys = append(l.keys, r.Digests()...) // column after column, as the log keeps them
	switch {
	case l.items == nil && (l.n == 0 || it.rows == l.like.rows && it.cols == l.like.cols && it.width == l.like.width):
		l.like = it
		l.n++
	default:
		if l.items == nil { // the first result unlike the others
			items := make([]logItem, l.n, 2*l.n+1)
			for i := range items {
				items[i] = l.item(i)
			}
			l.items = items
		}
		l.items = append(l.items, it)
	}
	return true
}

// item returns result i.
func (l *resultLog) item(i int) logItem {
	if l.items != nil {
		return l.items[i]
	}
	it := l.like
	it.off = int32(i * int(it.rows) * int(it.width))
	return it
}

// columnList returns the index of names in l.cols, adding it when new;
// -1 when the log tells apart as many lists as it may.
func (l *resultLog) columnList(names []string) int {
	for i := len(l.cols) - 1; i >= 0; i-- {
		if sameNames(l.cols[i], names) {
			return i
		}
	}
	if len(l.cols) == maxLogColumnLists {
		return -1
	}
	l.cols = append(l.cols, names)
	return len(l.cols) - 1
}

// sameNames reports whether a and b hold the same names: at once when they
// are the same list.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0] || slices.Equal(a, b)
}

// len is the number of results kept.
func (l *resultLog) len() int {
	if l.items != nil {
		return len(l.items)
	}
	return l.n
}

// columns are the names of result i's columns.
func (l *resultLog) columns(i int) []string { return l.cols[l.item(i).cols] }

// column returns the digests of column c of result i, row by row; nil past
// its columns.
func (l *resultLog) column(i, c int) []valuekey.Key {
	it := l.item(i)
	if c < 0 || c >= int(it.width) {
		return nil
	}
	start := int(it.off) + c*int(it.rows)
	return l.keys[start : start+int(it.rows) : start+int(it.rows)]
}

// rows is the number of rows of result i.
func (l *resultLog) rows(i int) int { return int(l.item(i).rows) }

// has reports whether any value of result i is k.
func (l *resultLog) has(i int, k valuekey.Key) bool {
	it := l.item(i)
	end := int(it.off) + int(it.width)*int(it.rows)
	return slices.Contains(l.keys[it.off:end], k)
}

// hasAny reports whether any value of any result is k.
func (l *resultLog) hasAny(k valuekey.Key) bool { return slices.Contains(l.keys, k) }

// resultSet is the results a candidate source offers: a shape's log (the
// window's sources), or one recent result (the ring's).
type resultSet struct {
	log *resultLog
	one *pgwire.ResultKeys
}

func (s resultSet) len() int {
	switch {
	case s.log != nil:
		return s.log.len()
	case s.one != nil:
		return 1
	}
	return 0
}

// columns are the names of result i's columns that have digests.
func (s resultSet) columns(i int) []string {
	if s.log != nil {
		return s.log.columns(i)
	}
	return s.one.Columns[:min(len(s.one.Columns), s.one.Width())]
}

// column returns the digests of column c of result i; nil past its columns.
func (s resultSet) column(i, c int) []valuekey.Key {
	if s.log != nil {
		return s.log.column(i, c)
	}
	return s.one.Column(c)
}

// rows is the number of rows of result i.
func (s resultSet) rows(i int) int {
	if s.log != nil {
		return s.log.rows(i)
	}
	return s.one.Rows()
}
