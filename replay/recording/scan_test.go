package recording

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// specialSlow is special's definition, a byte at a time.
func specialSlow(b []byte) int {
	for i, c := range b {
		if c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return len(b)
}

func TestSpecial(t *testing.T) {
	// Every byte value at every offset of a word, after bytes that borrow
	// (0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff) and before others.
	fills := []byte{'a', 0x00, 0x1f, 0x20, 0x21, '"' + 1, '\\' - 1, 0x7f, 0x80, 0xdc, 0xff}
	for n := 0; n <= 19; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				for _, fill := range fills {
					b := make([]byte, n)
					for i := range b {
						b[i] = 'x'
						if i > at {
							b[i] = fill
						}
					}
					b[at] = byte(c)
					if got, want := special(b), specialSlow(b); got != want {
						t.Fatalf("special(%q) = %d, want %d", b, got, want)
					}
				}
			}
		}
	}
}

func FuzzScannerString(f *testing.F) {
	for _, s := range []string{`"plain"`, `"a\"b"`, `"\u00e9\ud83d\ude00"`, "\"tab\there\"", `"` + "\x7f\x80\xff" + `"`, `"\\"`, `""`, `"unterminated`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || in[0] != '"' || in[len(in)-1] != '"' {
			return // blanks around a string are the caller's
		}
		var sc scanner
		sc.reset(in)
		got, ok := sc.str()
		if ok && sc.i != len(in) {
			ok = false // trailing bytes: not one JSON string
		}
		var want string
		err := json.Unmarshal(in, &want)
		if ok != (err == nil) {
			t.Fatalf("str(%q) ok %v, encoding/json: %v", in, ok, err)
		}
		// encoding/json replaces invalid UTF-8 with U+FFFD; the scanner keeps
		// the bytes. Compare valid strings only.
		if ok && json.Valid(in) && string(got) != want && utf8.Valid(got) {
			t.Fatalf("str(%q) = %q, encoding/json %q", in, got, want)
		}
	})
}

func TestScannerInt(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"7", 7, true}, {"-7", -7, true}, {"150000", 150000, true},
		{"999999999999999999", 999999999999999999, true}, {"9223372036854775807", 9223372036854775807, true},
		{"-9223372036854775808", -9223372036854775808, true}, {"1e3", 1000, true}, {"2.5", 2, true},
		{"007", 7, true}, {"-", 0, false}, {"--1", 0, false}, {"1x", 0, false}, {"", 0, false},
		{"99999999999999999999", 0, false}, {"true", 0, false},
	} {
		var sc scanner
		sc.reset([]byte(c.in))
		got, ok := sc.int()
		if ok != c.ok || got != c.want {
			t.Errorf("int(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
