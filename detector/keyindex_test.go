package detector

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// identityTable is a table of n slots whose multiplier is 1, so that a key's
// first slot is its top log2(n) bits: tests place keys where they want.
func identityTable(n int) *keyTable[int] {
	t := &keyTable[int]{mul: 1}
	t.reserve(n / 2)
	if len(t.slots) != n {
		panic("identityTable: not a power of two")
	}
	return t
}

// at is a key whose first slot in a table of 16 slots (multiplier 1) is
// slot, told apart from others of that slot by tag.
func at(slot, tag int) valuekey.Key {
	return valuekey.Key(uint64(slot)<<60 + uint64(tag) + 1)
}

// slotOf is where k is held, -1 when it is not.
// wantSlot is where a key should sit.
type wantSlot struct {
	name string
	k    valuekey.Key
	slot int
}

// checkSlots checks that each key sits in its slot and is found.
func checkSlots(t *testing.T, tb *keyTable[int], when string, want []wantSlot) {
	t.Helper()
	for _, w := range want {
		if got := slotOf(tb, w.k); got != w.slot {
			t.Errorf("%s: %s in slot %d, want %d", when, w.name, got, w.slot)
		}
		if tb.get(w.k) == nil {
			t.Errorf("%s: %s not found", when, w.name)
		}
	}
}

func slotOf(t *keyTable[int], k valuekey.Key) int {
	for i, s := range t.slots {
		if s.key == k {
			return i
		}
	}
	return -1
}

func put(t *keyTable[int], k valuekey.Key, v int) {
	p, _ := t.put(k)
	*p = v
}

func TestKeyTableCollisions(t *testing.T) {
	tb := identityTable(16)
	a, b, c := at(2, 1), at(2, 2), at(2, 3) // one first slot
	d := at(3, 1)                           // pushed on by the run from 2
	for i, k := range []valuekey.Key{a, b, c, d} {
		put(tb, k, 10+i)
	}
	for i, want := range []int{2, 3, 4, 5} {
		if got := slotOf(tb, []valuekey.Key{a, b, c, d}[i]); got != want {
			t.Errorf("key %d in slot %d, want %d", i, got, want)
		}
	}
	for i, k := range []valuekey.Key{a, b, c, d} {
		if p := tb.get(k); p == nil || *p != 10+i {
			t.Errorf("get key %d: %v", i, p)
		}
	}
	if p := tb.get(at(2, 9)); p != nil {
		t.Errorf("an absent key of the run's first slot was found: %d", *p)
	}
	if p, added := tb.put(b); added || *p != 11 {
		t.Errorf("put of a held key: added %v, value %d", added, *p)
	}
	if tb.len() != 4 {
		t.Errorf("len %d, want 4", tb.len())
	}
}

func TestKeyTableDeleteInTheMiddleOfARun(t *testing.T) {
	tb := identityTable(16)
	a, b, c := at(2, 1), at(2, 2), at(2, 3)
	d := at(3, 1) // slot 5, behind the run of slot 2
	e := at(6, 1) // slot 6, at home: must not move
	for i, k := range []valuekey.Key{a, b, c, d, e} {
		put(tb, k, i)
	}
	if !tb.delete(b) {
		t.Fatal("delete of a held key reported false")
	}
	if tb.delete(b) {
		t.Fatal("a second delete reported true")
	}
	// c moves from 4 to 3, d from 5 to 4 (its home is 3); e stays.
	checkSlots(t, tb, "after the delete", []wantSlot{{"a", a, 2}, {"c", c, 3}, {"d", d, 4}, {"e", e, 6}})
	if tb.slots[5].key != valuekey.None {
		t.Errorf("slot 5 holds %x after the shift, want empty", tb.slots[5].key)
	}
	// Deleting the head of a run whose rest sits at its own homes moves
	// nothing but what it must.
	tb.delete(a)
	if got := slotOf(tb, c); got != 2 {
		t.Errorf("c in slot %d after deleting a, want 2", got)
	}
	if got := slotOf(tb, d); got != 3 {
		t.Errorf("d in slot %d after deleting a, want its home 3", got)
	}
	if tb.len() != 3 {
		t.Errorf("len %d, want 3", tb.len())
	}
}

func TestKeyTableWrapsAround(t *testing.T) {
	tb := identityTable(16)
	a, b, c := at(14, 1), at(15, 1), at(15, 2) // c wraps to slot 0
	z := at(0, 1)                              // home 0, pushed to 1
	for i, k := range []valuekey.Key{a, b, c, z} {
		put(tb, k, i)
	}
	checkSlots(t, tb, "after the puts", []wantSlot{{"a", a, 14}, {"b", b, 15}, {"c", c, 0}, {"z", z, 1}})
	if p := tb.get(at(15, 5)); p != nil {
		t.Error("an absent key found across the wrap")
	}
	// Deleting b pulls c back over the end, and z to its home.
	tb.delete(b)
	checkSlots(t, tb, "after the delete", []wantSlot{{"a", a, 14}, {"c", c, 15}, {"z", z, 0}})
}

func TestKeyTableNone(t *testing.T) {
	var tb keyTable[int]
	if tb.get(valuekey.None) != nil || tb.delete(valuekey.None) {
		t.Fatal("None found in an empty table")
	}
	put(&tb, 5, 1)
	if tb.get(valuekey.None) != nil {
		t.Error("None found: it marks the empty slots")
	}
	if tb.delete(valuekey.None) || tb.len() != 1 {
		t.Error("None deleted")
	}
}

// TestKeyTableRandom checks random puts and deletes against a Go map: keys
// uniform like digests, and keys crowded into a few first slots (top bits
// shared, multiplier 1) so that runs are long, wrap and shift often.
func TestKeyTableRandom(t *testing.T) {
	for _, tc := range []struct {
		name string
		mul  uint64
		key  func(r *rand.Rand) valuekey.Key
	}{
		{"digests", 0, func(r *rand.Rand) valuekey.Key { return valuekey.String(strconv.Itoa(r.IntN(3000))) }},
		{"small integers", 0, func(r *rand.Rand) valuekey.Key { return valuekey.Key(r.Uint64N(3000) + 1) }},
		{"crowded", 1, func(r *rand.Rand) valuekey.Key {
			return valuekey.Key(uint64(r.IntN(3))<<62 + r.Uint64N(600) + 1)
		}},
		{"wrapping", 1, func(r *rand.Rand) valuekey.Key {
			return valuekey.Key(^uint64(0) - r.Uint64N(500))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			tb := &keyTable[int]{mul: tc.mul}
			want := map[valuekey.Key]int{}
			for op := range 60000 {
				k := tc.key(r)
				if r.IntN(5) < 3-op/30000 { // grows, then shrinks
					p, added := tb.put(k)
					if _, held := want[k]; held == added {
						t.Fatalf("op %d: put %x added %v, held %v", op, k, added, held)
					}
					*p = op
					want[k] = op
				} else {
					_, held := want[k]
					if tb.delete(k) != held {
						t.Fatalf("op %d: delete %x reported %v, held %v", op, k, !held, held)
					}
					delete(want, k)
				}
				if tb.len() != len(want) {
					t.Fatalf("op %d: len %d, want %d", op, tb.len(), len(want))
				}
				if 2*tb.len() > len(tb.slots) {
					t.Fatalf("op %d: %d keys in %d slots", op, tb.len(), len(tb.slots))
				}
				if op%997 == 0 {
					checkTable(t, tb, want)
				}
			}
			checkTable(t, tb, want)
		})
	}
}

func checkTable(t *testing.T, tb *keyTable[int], want map[valuekey.Key]int) {
	t.Helper()
	for k, v := range want {
		if p := tb.get(k); p == nil || *p != v {
			t.Fatalf("get %x: %v, want %d", k, p, v)
		}
	}
	got := map[valuekey.Key]int{}
	for k, v := range tb.all() {
		got[k] = *v
	}
	if !maps.Equal(got, want) {
		t.Fatalf("all yields %d keys, want %d", len(got), len(want))
	}
}

func ids(x *keyIndex, k valuekey.Key) []uint32 { return slices.Collect(x.ids(k)) }

func TestKeyIndexLists(t *testing.T) {
	var x keyIndex
	const a, b = valuekey.Key(7), valuekey.Key(8)
	for _, id := range []uint32{1, 2, 2, 3} {
		x.add(a, id)
	}
	x.add(b, 2)
	if got := ids(&x, a); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("ids of a %v, want [1 2 3] (a repeated newest is added once)", got)
	}
	if x.postings != 4 {
		t.Fatalf("postings %d, want 4", x.postings)
	}
	if x.dropOldest(a, 2) {
		t.Fatal("dropped an id that is not the oldest")
	}
	if !x.dropOldest(a, 1) || !slices.Equal(ids(&x, a), []uint32{2, 3}) {
		t.Fatalf("after dropping 1: %v, want [2 3]", ids(&x, a))
	}
	x.add(a, 4)
	if got := ids(&x, a); !slices.Equal(got, []uint32{2, 3, 4}) {
		t.Fatalf("after adding 4: %v", got)
	}
	for _, id := range []uint32{2, 3, 4} {
		if !x.dropOldest(a, id) {
			t.Fatalf("dropOldest %d failed", id)
		}
	}
	if x.keys.get(a) != nil || len(ids(&x, a)) != 0 {
		t.Fatal("a value with no ids left is still held")
	}
	if x.dropOldest(a, 4) || x.dropOldest(valuekey.Key(99), 1) {
		t.Fatal("dropped from a value not held")
	}
	if got := ids(&x, b); !slices.Equal(got, []uint32{2}) || x.postings != 1 {
		t.Fatalf("b %v, postings %d", got, x.postings)
	}
}

// TestKeyIndexRandom runs a ring of ids over random values, as the recent
// results do, against lists kept in a Go map, and checks that freed nodes
// are used again: the nodes stay as many as the ids held at most.
func TestKeyIndexRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const ring = 50
	var x keyIndex
	want := map[valuekey.Key][]uint32{}
	held := map[uint32][]valuekey.Key{} // the values of each id in the ring
	most := 0
	for id := uint32(0); id < 5000; id++ {
		if old := id - ring; id >= ring {
			for _, k := range held[old] {
				dropped := x.dropOldest(k, old)
				if l := want[k]; dropped != (len(l) > 0 && l[0] == old) {
					t.Fatalf("id %d: dropOldest(%x, %d) = %v, want list %v", id, k, old, dropped, l)
				}
				if dropped {
					if want[k] = want[k][1:]; len(want[k]) == 0 {
						delete(want, k)
					}
				}
			}
			delete(held, old)
		}
		for range 1 + r.IntN(12) {
			k := valuekey.Key(r.Uint64N(200) + 1)
			added := x.add(k, id)
			l := want[k]
			if wantAdded := len(l) == 0 || l[len(l)-1] != id; added != wantAdded {
				t.Fatalf("id %d: add(%x) = %v, want %v", id, k, added, wantAdded)
			}
			if added {
				want[k] = append(l, id)
			}
			held[id] = append(held[id], k)
		}
		n := 0
		for k, l := range want {
			if got := ids(&x, k); !slices.Equal(got, l) {
				t.Fatalf("id %d: ids of %x %v, want %v", id, k, got, l)
			}
			n += len(l)
		}
		if x.postings != n || x.keys.len() != len(want) {
			t.Fatalf("id %d: postings %d, keys %d; want %d, %d", id, x.postings, x.keys.len(), n, len(want))
		}
		most = max(most, n)
	}
	if len(x.nodes) > most+1 {
		t.Errorf("%d nodes for at most %d ids held: freed nodes not reused", len(x.nodes), most)
	}
}

// BenchmarkRecentSourcesAdd adds results to a full ring of 1024, each a
// list of 10 orders (id, user_id, status) as bench/replaygen writes them:
// ids of their own, users spread over a million, one status. Each result
// goes into the index and the oldest comes out.
func BenchmarkRecentSourcesAdd(b *testing.B) {
	const lists = 4096
	res := make([]*pgwire.ResultKeys, lists)
	for i := range res {
		rows := make([][]int, 10)
		for j := range rows {
			rows[j] = []int{i*10 + j + 1, (i*7919+j*104729)%1000000 + 1, 0}
		}
		res[i] = result([]string{"id", "user_id", "status"}, rows...)
	}
	r := recentSources{max: 1024}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		r.add(recentSource{stmt: qOrders, res: res[n%lists]})
		n++
	}
}
