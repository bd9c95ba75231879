package valuekey

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func be(n int, v int64) []byte {
	b := make([]byte, n)
	switch n {
	case 2:
		binary.BigEndian.PutUint16(b, uint16(v))
	case 4:
		binary.BigEndian.PutUint32(b, uint32(v))
	case 8:
		binary.BigEndian.PutUint64(b, uint64(v))
	}
	return b
}

func TestSameKeyEveryForm(t *testing.T) {
	uuidBin := []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
	for _, tc := range []struct {
		name  string
		forms []Key
	}{
		{"int 8", []Key{Text([]byte("8")), String("8"), Text([]byte("+8")), Text([]byte("008")), Text([]byte(" 8 ")),
			Binary(be(2, 8), OIDInt2), Binary(be(4, 8), OIDInt4), Binary(be(8, 8), OIDInt8),
			Binary(be(2, 8), 0), Binary(be(4, 8), 0), Binary(be(8, 8), 0)}},
		{"int -42", []Key{Text([]byte("-42")), Text([]byte("-0042")), Binary(be(4, -42), OIDInt4), Binary(be(8, -42), 0), Binary(be(2, -42), 0)}},
		{"int64 min", []Key{Text([]byte("-9223372036854775808")), Binary(be(8, -1<<63), OIDInt8)}},
		{"int64 max", []Key{Text([]byte("9223372036854775807")), Binary(be(8, 1<<63-1), OIDInt8)}},
		{"zero", []Key{Text([]byte("0")), Text([]byte("-0")), Text([]byte("000")), Binary(be(4, 0), OIDInt4)}},
		{"uuid", []Key{Text([]byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")), Text([]byte("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")),
			Text([]byte("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}")), Text([]byte("a0eebc999c0b4ef8bb6d6bb9bd380a11")),
			Text([]byte("a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11")), Binary(uuidBin, OIDUUID), Binary(uuidBin, 0)}},
		{"text", []Key{Text([]byte("alice@example.com")), String("alice@example.com"), Binary([]byte("alice@example.com"), 25)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, k := range tc.forms {
				if k == None {
					t.Fatalf("form %d is None", i)
				}
				if k != tc.forms[0] {
					t.Errorf("form %d differs from form 0", i)
				}
			}
		})
	}
}

func TestDifferentValuesDiffer(t *testing.T) {
	keys := map[Key]string{}
	for _, v := range []string{"8", "9", "80", "-8", "8.0", "a", "A", "b", "18446744073709551615", "99999999999999999999",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", "t", "f"} {
		k := Text([]byte(v))
		if k == None {
			t.Fatalf("%q is None", v)
		}
		if o, dup := keys[k]; dup {
			t.Errorf("%q and %q have one key", v, o)
		}
		keys[k] = v
	}
	// int and its text are one key; text "8.0" is not 8.
	if Text([]byte("8.0")) == Text([]byte("8")) {
		t.Error("8.0 matched 8")
	}
}

// The integers' mix gives distinct digests to the integers keys are made
// of (runs of ids, their negatives, ids spaced by powers of two, the
// extremes), and each output bit is set about half the time.
func TestIntDigestsDistinct(t *testing.T) {
	seen := make(map[Key]int64, 1<<21)
	var ones [64]int
	n := 0
	add := func(v int64) {
		k := Int(v)
		if k == None {
			t.Fatalf("Int(%d) is None", v)
		}
		if o, dup := seen[k]; dup && o != v {
			t.Fatalf("Int(%d) == Int(%d)", v, o)
		}
		seen[k] = v
		for b := range ones {
			ones[b] += int(k >> b & 1)
		}
		n++
	}
	for v := range int64(1 << 20) {
		add(v)
		add(-v)
	}
	for s := range 63 {
		for i := range int64(1000) {
			add(i << s)
		}
	}
	add(-1 << 63)
	add(1<<63 - 1)
	for b, c := range ones {
		if f := float64(c) / float64(n); f < 0.49 || f > 0.51 {
			t.Errorf("bit %d is set in %.3f of the digests", b, f)
		}
	}
}

// Seal keeps equality and None, and changes every digest.
func TestSeal(t *testing.T) {
	if Seal(None) != None {
		t.Error("None sealed")
	}
	seen := map[Key]Key{}
	for v := range int64(1 << 16) {
		k := Int(v)
		s := Seal(k)
		if s == k || s == None || s != Seal(k) {
			t.Fatalf("Seal(Int(%d)) = %v (digest %v)", v, s, k)
		}
		if o, dup := seen[s]; dup {
			t.Fatalf("Int(%d) and %v seal alike", v, o)
		}
		seen[s] = k
	}
}

func TestNotKeys(t *testing.T) {
	long := make([]byte, MaxValueBytes+1)
	for i := range long {
		long[i] = 'x'
	}
	for name, k := range map[string]Key{
		"NULL":        Text(nil),
		"empty":       Text([]byte{}),
		"empty str":   String(""),
		"long":        Text(long),
		"long binary": Binary(long, 0),
	} {
		if k != None {
			t.Errorf("%s: got a key", name)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	v, b := []byte("123456"), be(8, 123456)
	if n := testing.AllocsPerRun(1000, func() { Text(v); Binary(b, 0); String("abc") }); n != 0 {
		t.Errorf("%.0f allocations", n)
	}
}

func BenchmarkText(b *testing.B) {
	v := append(make([]byte, 0, 64), "1234567"...) // in a buffer, as on the wire
	for b.Loop() {
		Text(v)
	}
}

func BenchmarkInt(b *testing.B) {
	var k Key
	for i := range int64(b.N) {
		k ^= Int(i)
	}
	sink = k
}

var sink Key

func BenchmarkBinaryInt4(b *testing.B) {
	v := be(4, 1234567)
	for b.Loop() {
		Binary(v, OIDInt4)
	}
}

// canonInt agrees with strconv.ParseInt on the decimal integers int8in
// accepts, at every length and around the limits of 64 bits.
func TestCanonIntLimits(t *testing.T) {
	var cases []string
	for _, s := range []string{"9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"-9223372036854775809", "18446744073709551615", "18446744073709551616", "99999999999999999999",
		"09223372036854775807", "00000000000000000001", "-0000000000000000001", "+1234", "0", "-0"} {
		cases = append(cases, s, " "+s+" ")
	}
	for n := 1; n <= 21; n++ {
		cases = append(cases, strings.Repeat("9", n), "1"+strings.Repeat("0", n-1), "-"+strings.Repeat("9", n))
	}
	for _, s := range cases {
		want, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		got, ok := canonInt([]byte(s))
		if ok != (err == nil) || ok && got != want {
			t.Errorf("canonInt(%q) = %d, %v; strconv says %d, %v", s, got, ok, want, err)
		}
	}
}

// The short way canonInt reads plain digits agrees with its reading of
// every form (canonIntForms) on digits of every length up to 20, and on the
// same with any one byte replaced by any other.
func TestCanonIntFastPath(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(b []byte) {
		t.Helper()
		checkCanonInt(t, b)
	}
	for n := 1; n <= 20; n++ {
		for range 50 {
			b := make([]byte, n)
			for i := range b {
				b[i] = '0' + byte(r.IntN(10))
			}
			check(b)
			i := r.IntN(n)
			for c := range 256 {
				b2 := slices.Clone(b)
				b2[i] = byte(c)
				check(b2)
			}
		}
	}
}

func FuzzCanonInt(f *testing.F) {
	for _, s := range []string{"0", "12345", "00000000", "123456789", "9999999999999999", " 12", "-7", "1_000", "12a4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCanonInt(t, b)
	})
}

// checkCanonInt checks canonInt against canonIntForms on b, as is and
// followed, within its capacity, by bytes that must not be read; and that
// Text, which reads up to 8 bytes as a whole word when its buffer has room
// (digits8), gives b the same Key as without that room.
func checkCanonInt(t *testing.T, b []byte) {
	t.Helper()
	want, wok := canonIntForms(b)
	key := Text(slices.Clip(b))
	for _, tail := range []string{"", "0", "9999999", "\x00\x00\x00\x00\x00\x00\x00", "\xff\xff\xff\xff\xff\xff\xff", "-+ /:a\x80"} {
		v := append(slices.Clip(b), tail...)[:len(b)]
		if got, ok := canonInt(v); ok != wok || got != want {
			t.Fatalf("canonInt(%q, followed by %q) = %d, %v; every form %d, %v", b, tail, got, ok, want, wok)
		}
		if k := Text(v); k != key {
			t.Fatalf("Text(%q, followed by %q) = %x; alone %x", b, tail, k, key)
		}
	}
}

// Every value of up to 8 bytes that Text reads a word at a time: each
// byte from the digits, their neighbours and the bytes whose carries or
// borrows could hide a non-digit, at every length.
func TestCanonIntWord(t *testing.T) {
	alphabet := []byte("0123456789/:\x00 +-\x7f\x80\xaf\xb0\xb9\xba\xc6\xff")
	r := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 8; n++ {
		for range 20000 {
			b := make([]byte, n, 16)
			for i := range b {
				if r.IntN(4) == 0 {
					b[i] = alphabet[r.IntN(len(alphabet))]
				} else {
					b[i] = '0' + byte(r.IntN(10))
				}
			}
			checkCanonInt(t, b)
		}
	}
	for _, s := range []string{"0", "00000000", "99999999", "12345678", "10000000", "1", "9"} {
		b := make([]byte, len(s), 8)
		copy(b, s)
		want, _ := strconv.ParseInt(s, 10, 64)
		if got, ok := canonInt(b); !ok || got != want {
			t.Errorf("canonInt(%q) = %d, %v", s, got, ok)
		}
		// The word at a time way itself reads them (Text would give the
		// same without it).
		if got, ok := digits8(binary.LittleEndian.Uint64(b[:8]), len(s)); !ok || int64(got) != want {
			t.Errorf("digits8(%q) = %d, %v", s, got, ok)
		}
	}
}
