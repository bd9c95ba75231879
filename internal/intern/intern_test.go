package intern

import (
	"strings"
	"testing"
	"unsafe"
)

func TestStrSharesAndBounds(t *testing.T) {
	var tb Table
	a := tb.Str([]byte("SELECT 1"))
	b := tb.Str([]byte("SELECT 1"))
	if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("the same bytes gave two strings")
	}
	if tb.Str(nil) != "" {
		t.Fatal("empty input")
	}
	long := strings.Repeat("x", maxString+1)
	if tb.Str([]byte(long)) != long || len(tb.m) != 1 {
		t.Fatalf("a long string was kept: %d entries", len(tb.m))
	}
	for i := range maxEntries + 10 {
		tb.Str([]byte(strings.Repeat("y", i%50+1) + string(rune('a'+i%26)) + string(rune(i))))
	}
	if len(tb.m) > maxEntries {
		t.Fatalf("table grew to %d entries, bound %d", len(tb.m), maxEntries)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Str([]byte("SELECT 1")) }); n > 1 {
		t.Errorf("%v allocations per interned hit", n)
	}
}
