// Package intern turns byte slices into strings that are shared when they
// repeat: the readers of captures, logs and recordings see the same SQL
// texts and names millions of times, and each would otherwise cost an
// allocation. The table is bounded; when full it is emptied and refilled.
package intern

// Bounds of a Table.
const (
	maxEntries = 8192
	maxBytes   = 16 << 20
	// maxString: longer strings are not kept (they rarely repeat whole).
	maxString = 64 << 10
)

// Table interns strings. It is not safe for concurrent use.
type Table struct {
	m    map[string]string
	size int // bytes of the keys in m
}

// Str returns b as a string, the same string for the same bytes while the
// table holds it.
func (t *Table) Str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := t.m[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(b) > maxString {
		return s
	}
	if t.m == nil {
		t.m = make(map[string]string)
	}
	if len(t.m) >= maxEntries || t.size+len(s) > maxBytes {
		clear(t.m)
		t.size = 0
	}
	t.m[s] = s
	t.size += len(s)
	return s
}
