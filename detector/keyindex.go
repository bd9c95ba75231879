package detector

import (
	"iter"
	"math/bits"
	"math/rand/v2"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// Tables keyed by value digests. The evidence looks values up all the time
// (a loop's keys, a result's values, the recent results' index), and a
// valuekey.Key is already a keyed hash, uniform over its 64 bits: a Go map
// would hash it again and carry machinery these tables do not need.

// keyTable is an open-addressing hash table from value digests to V.
//
// The slots are a power of two. A key's first slot is the top bits of the
// key times an odd multiplier (multiply-shift: one multiplication, no
// hashing); from there it is probed linearly. Deleting a key shifts the
// later keys of its run back into the hole, so there are no tombstones and
// lookups stay as short as the keys held make them, however many came and
// went. The table holds at most half as many keys as slots, doubling when a
// key would take it past that, and never shrinks: its bytes are
// max(8, 2^⌈log2(2×most keys held)⌉) × the size of a slot (8 bytes of key
// and V, aligned).
//
// The multiplier is drawn once per process (tableMul). Digests are uniform
// whatever it is; it matters for keys that are not: digests a recording or
// a test wrote by hand (small integers, equal low bits), and digests written
// to collide, which a random multiplier spreads like any others.
// Nothing the detector reports depends on the order of the slots.
//
// valuekey.None marks an empty slot: it is never a key (get and delete
// find nothing; put must not be given it). The zero keyTable is empty and
// ready to use.
type keyTable[V any] struct {
	slots []keySlot[V]
	n     int    // keys held
	shift uint   // 64 − log2(len(slots))
	mul   uint64 // odd; tableMul unless set before the first key
}

type keySlot[V any] struct {
	key valuekey.Key
	val V
}

// minTableSlots is the size of a table's first slots.
const minTableSlots = 8

// tableMul is the keyTables' multiplier: random, odd.
var tableMul = rand.Uint64() | 1

// len returns the number of keys held.
func (t *keyTable[V]) len() int { return t.n }

// home is k's first slot.
func (t *keyTable[V]) home(k valuekey.Key) int {
	return int((uint64(k) * t.mul) >> t.shift)
}

// find returns k's slot and true, or the empty slot that ends k's run and
// false. The table must have slots.
func (t *keyTable[V]) find(k valuekey.Key) (int, bool) {
	mask := len(t.slots) - 1
	for i := t.home(k); ; i = (i + 1) & mask {
		switch t.slots[i].key {
		case k:
			return i, true
		case valuekey.None:
			return i, false
		}
	}
}

// lookup returns k's slot, or false when k is not held (or is None).
func (t *keyTable[V]) lookup(k valuekey.Key) (int, bool) {
	if t.n == 0 || k == valuekey.None {
		return 0, false
	}
	return t.find(k)
}

// get returns k's value, or nil when k is not held (or is None). The
// pointer is good until the next put or delete.
func (t *keyTable[V]) get(k valuekey.Key) *V {
	if i, ok := t.lookup(k); ok {
		return &t.slots[i].val
	}
	return nil
}

// put returns k's value, adding k with V's zero value first when it was not
// held (added). The pointer is good until the next put or delete.
func (t *keyTable[V]) put(k valuekey.Key) (v *V, added bool) {
	if 2*(t.n+1) > len(t.slots) {
		// Full, unless k is held: grow only to add.
		if i, ok := t.lookup(k); ok {
			return &t.slots[i].val, false
		}
		t.resize(2 * len(t.slots))
	}
	i, ok := t.find(k)
	if !ok {
		t.slots[i] = keySlot[V]{key: k}
		t.n++
	}
	return &t.slots[i].val, !ok
}

// delete removes k, reporting whether it was held.
func (t *keyTable[V]) delete(k valuekey.Key) bool {
	i, ok := t.lookup(k)
	if ok {
		t.deleteAt(i)
	}
	return ok
}

// deleteAt removes the key of slot i, which holds one.
func (t *keyTable[V]) deleteAt(i int) {
	// Backward shift: walk the rest of the run; a key whose first slot is
	// not after the hole (cyclically, up to the key's slot) moves into it,
	// and its slot becomes the hole.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].key != valuekey.None; j = (j + 1) & mask {
		if (j-t.home(t.slots[j].key))&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = keySlot[V]{}
	t.n--
}

// reserve makes room for n keys without growing.
func (t *keyTable[V]) reserve(n int) {
	if need := 2 * n; need > len(t.slots) {
		t.resize(need)
	}
}

// resize moves the keys to at least n slots (a power of two, at least
// minTableSlots).
func (t *keyTable[V]) resize(n int) {
	n = max(n, minTableSlots)
	if n&(n-1) != 0 {
		n = 1 << bits.Len(uint(n))
	}
	if t.mul == 0 {
		t.mul = tableMul
	}
	old := t.slots
	t.slots = make([]keySlot[V], n)
	t.shift = uint(64 - bits.TrailingZeros(uint(n)))
	for _, s := range old {
		if s.key != valuekey.None {
			i, _ := t.find(s.key)
			t.slots[i] = s
		}
	}
}

// all yields the keys held and their values, in the order of the slots.
func (t *keyTable[V]) all() iter.Seq2[valuekey.Key, *V] {
	return func(yield func(valuekey.Key, *V) bool) {
		for i := range t.slots {
			if s := &t.slots[i]; s.key != valuekey.None && !yield(s.key, &s.val) {
				return
			}
		}
	}
}

// keyIndex maps each value to the ids of the things that hold it (the
// recent results, by seq modulo 2^32), oldest first: ids are added newest
// last and leave oldest first, as a ring's results do.
//
// A value's first id is in its slot of the table; the others are nodes of
// a circular list the slot points at by its newest, whose next is the
// second oldest, so that both ends are one step away. Most values are in
// one result and cost their 16-byte slot; each further id costs an 8-byte
// node, kept on a free list when it leaves. Its bytes: the table's (see
// keyTable) plus 8 × the most ids beyond each value's first held at once.
type keyIndex struct {
	keys     keyTable[postList]
	nodes    []postNode // node 0 is unused: 0 is "none"
	free     int32      // the first free node, 0 when none
	postings int        // ids held
}

// postList is one value's ids.
type postList struct {
	first uint32 // the oldest id
	last  int32  // the node of the newest id; 0 when first is the only one
}

// postNode is an id after a value's first; next is the node of the next
// newer id, or of the second oldest for the newest.
type postNode struct {
	id   uint32
	next int32
}

// add appends id to k's ids, unless it is already the newest (a value
// repeated in one result), and reports whether it did. k must not be None.
func (x *keyIndex) add(k valuekey.Key, id uint32) bool {
	p, added := x.keys.put(k)
	switch {
	case added:
		p.first = id
	case x.newest(p) == id:
		return false
	default:
		n := x.node(id)
		if p.last == 0 {
			x.nodes[n].next = n
		} else {
			x.nodes[n].next = x.nodes[p.last].next
			x.nodes[p.last].next = n
		}
		p.last = n
	}
	x.postings++
	return true
}

// dropOldest removes id from k's ids when it is the oldest, and reports
// whether it did.
func (x *keyIndex) dropOldest(k valuekey.Key, id uint32) bool {
	i, ok := x.keys.lookup(k)
	if !ok {
		return false
	}
	p := &x.keys.slots[i].val
	if p.first != id {
		return false
	}
	x.postings--
	if p.last == 0 {
		x.keys.deleteAt(i)
		return true
	}
	second := x.nodes[p.last].next
	p.first = x.nodes[second].id
	if second == p.last {
		p.last = 0
	} else {
		x.nodes[p.last].next = x.nodes[second].next
	}
	x.nodes[second] = postNode{next: x.free}
	x.free = second
	return true
}

// ids yields k's ids, oldest first.
func (x *keyIndex) ids(k valuekey.Key) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		p := x.keys.get(k)
		if p == nil || !yield(p.first) || p.last == 0 {
			return
		}
		for n := x.nodes[p.last].next; ; n = x.nodes[n].next {
			if !yield(x.nodes[n].id) || n == p.last {
				return
			}
		}
	}
}

// newest is the newest of p's ids.
func (x *keyIndex) newest(p *postList) uint32 {
	if p.last == 0 {
		return p.first
	}
	return x.nodes[p.last].id
}

// node returns a free node holding id.
func (x *keyIndex) node(id uint32) int32 {
	if n := x.free; n != 0 {
		x.free = x.nodes[n].next
		x.nodes[n] = postNode{id: id}
		return n
	}
	if len(x.nodes) == 0 {
		x.nodes = append(x.nodes, postNode{})
	}
	x.nodes = append(x.nodes, postNode{id: id})
	return int32(len(x.nodes) - 1)
}
