package fnv1a

import (
	"hash/fnv"
	"math/rand/v2"
	"testing"
)

func TestKnownValues(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"", 0xcbf29ce484222325},
		{"a", 0xaf63dc4c8601ec8c},
		{"foobar", 0x85944171f73967e8},
	} {
		if got := Sum(c.in); got != c.want {
			t.Errorf("Sum(%q) = %#x, want %#x", c.in, got, c.want)
		}
		if got := Sum([]byte(c.in)); got != c.want {
			t.Errorf("Sum([]byte(%q)) = %#x, want %#x", c.in, got, c.want)
		}
	}
}

// TestMatchesStdlib feeds random pieces through Add, AddByte and hash/fnv.
func TestMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		std := fnv.New64a()
		h := Offset
		for range r.IntN(8) {
			p := make([]byte, r.IntN(40))
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			std.Write(p)
			switch r.IntN(3) {
			case 0:
				h = Add(h, p)
			case 1:
				h = Add(h, string(p))
			default:
				for _, c := range p {
					h = AddByte(h, c)
				}
			}
		}
		if want := std.Sum64(); h != want {
			t.Fatalf("got %#x, want %#x", h, want)
		}
	}
}

func TestDoesNotAllocate(t *testing.T) {
	b, s := []byte("SELECT 1"), "SELECT 2"
	var h uint64
	if n := testing.AllocsPerRun(100, func() { h = AddByte(Add(Add(Offset, b), s), 0) }); n != 0 {
		t.Fatalf("%.0f allocations", n)
	}
	_ = h
}

func BenchmarkAdd(b *testing.B) {
	p := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1;")
	b.SetBytes(int64(len(p)))
	h := Offset
	for b.Loop() {
		h = Add(h, p)
	}
	_ = h
}
