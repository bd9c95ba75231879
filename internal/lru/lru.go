// Package lru is the one bounded least-recently-used table of nplus1: every
// cache and table that evicts (fingerprint caches, the tracker's prepared
// statements and portals, the detector's groups, the metrics top-K, the
// replay readers' session tables) is a Cache.
//
// A Cache is bounded by a count of entries and, optionally, by a summed cost
// (bytes, usually) that each entry declares when it is added. Every
// operation is O(1); a lookup of the most recently used key (a connection
// that runs one statement over and over) compares it with that entry's key
// and skips hashing. Entries live in one slice reused through a free list,
// so a Cache in steady state does not allocate.
//
// A Cache is not safe for concurrent use; its owner locks where it must.
package lru

// Cache maps keys to values, evicting the least recently used entries past
// its bounds. The zero value is not usable: call New.
type Cache[K comparable, V any] struct {
	idx     map[K]int32
	nodes   []node[K, V] // nodes[0] is the list's root; a free node has key's zero value
	free    int32        // first free node, 0 when none
	maxLen  int
	maxCost int
	cost    int
	onEvict func(K, V)
	evicted uint64
}

type node[K comparable, V any] struct {
	key        K
	val        V
	cost       int
	prev, next int32
}

// New returns a Cache that holds at most maxEntries entries (at least one)
// and, when maxCost > 0, entries whose costs sum to at most maxCost (the
// newest entry is kept even when it alone exceeds it). onEvict, when not
// nil, is called for each entry evicted to make room (not for Remove or
// Clear).
func New[K comparable, V any](maxEntries, maxCost int, onEvict func(K, V)) *Cache[K, V] {
	c := &Cache[K, V]{idx: make(map[K]int32), maxLen: max(maxEntries, 1), maxCost: maxCost, onEvict: onEvict}
	c.nodes = make([]node[K, V], 1, min(c.maxLen, 64)+1)
	return c
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int { return len(c.idx) }

// Cost is the summed cost of the entries.
func (c *Cache[K, V]) Cost() int { return c.cost }

// Evictions counts the entries evicted to make room since New.
func (c *Cache[K, V]) Evictions() uint64 { return c.evicted }

// Get returns the value of k and marks it the most recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	if f := c.nodes[0].next; f != 0 && c.nodes[f].key == k {
		return c.nodes[f].val, true // already the most recently used
	}
	i, ok := c.idx[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.moveToFront(i)
	return c.nodes[i].val, true
}

// GetString is Get for a string-keyed Cache with the key as bytes; it does
// not allocate.
func GetString[V any](c *Cache[string, V], k []byte) (V, bool) {
	if f := c.nodes[0].next; f != 0 && c.nodes[f].key == string(k) {
		return c.nodes[f].val, true
	}
	i, ok := c.idx[string(k)]
	if !ok {
		var zero V
		return zero, false
	}
	c.moveToFront(i)
	return c.nodes[i].val, true
}

// Peek returns the value of k without marking it used.
func (c *Cache[K, V]) Peek(k K) (V, bool) {
	if f := c.nodes[0].next; f != 0 && c.nodes[f].key == k {
		return c.nodes[f].val, true
	}
	i, ok := c.idx[k]
	if !ok {
		var zero V
		return zero, false
	}
	return c.nodes[i].val, true
}

// PeekString is Peek for a string-keyed Cache with the key as bytes; it does
// not allocate.
func PeekString[V any](c *Cache[string, V], k []byte) (V, bool) {
	if f := c.nodes[0].next; f != 0 && c.nodes[f].key == string(k) {
		return c.nodes[f].val, true
	}
	i, ok := c.idx[string(k)]
	if !ok {
		var zero V
		return zero, false
	}
	return c.nodes[i].val, true
}

// Add stores v under k with the given cost as the most recently used entry,
// replacing what k held, then evicts the least recently used entries until
// the bounds hold. It returns how many it evicted.
func (c *Cache[K, V]) Add(k K, v V, cost int) int {
	if i, ok := c.idx[k]; ok {
		n := &c.nodes[i]
		c.cost += cost - n.cost
		n.val, n.cost = v, cost
		c.moveToFront(i)
	} else {
		i := c.alloc()
		c.nodes[i] = node[K, V]{key: k, val: v, cost: cost}
		c.idx[k] = i
		c.cost += cost
		c.link(i)
	}
	evicted := 0
	for len(c.idx) > c.maxLen || c.maxCost > 0 && c.cost > c.maxCost && len(c.idx) > 1 {
		i := c.nodes[0].prev
		n := c.nodes[i]
		c.remove(i)
		c.evicted++
		evicted++
		if c.onEvict != nil {
			c.onEvict(n.key, n.val)
		}
	}
	return evicted
}

// Remove deletes k and returns what it held.
func (c *Cache[K, V]) Remove(k K) (V, bool) {
	i, ok := c.idx[k]
	if !ok {
		var zero V
		return zero, false
	}
	v := c.nodes[i].val
	c.remove(i)
	return v, true
}

// Oldest returns the least recently used entry without marking it used.
func (c *Cache[K, V]) Oldest() (k K, v V, ok bool) {
	if len(c.idx) == 0 {
		return k, v, false
	}
	n := &c.nodes[c.nodes[0].prev]
	return n.key, n.val, true
}

// All calls f for each entry from the most to the least recently used,
// until f returns false. f must not change the Cache. All and Backward are
// iterators: for k, v := range c.All { ... }.
func (c *Cache[K, V]) All(f func(K, V) bool) {
	for i := c.nodes[0].next; i != 0; i = c.nodes[i].next {
		if !f(c.nodes[i].key, c.nodes[i].val) {
			return
		}
	}
}

// Backward calls f for each entry from the least to the most recently used,
// until f returns false. f may Remove the entry it is given, and must not
// change the Cache otherwise.
func (c *Cache[K, V]) Backward(f func(K, V) bool) {
	for i := c.nodes[0].prev; i != 0; {
		prev := c.nodes[i].prev
		if !f(c.nodes[i].key, c.nodes[i].val) {
			return
		}
		i = prev
	}
}

// Clear removes every entry; the memory is kept for reuse.
func (c *Cache[K, V]) Clear() {
	clear(c.idx)
	clear(c.nodes)
	c.nodes = c.nodes[:1]
	c.free, c.cost = 0, 0
}

func (c *Cache[K, V]) alloc() int32 {
	if c.free != 0 {
		i := c.free
		c.free = c.nodes[i].next
		return i
	}
	c.nodes = append(c.nodes, node[K, V]{})
	return int32(len(c.nodes) - 1)
}

func (c *Cache[K, V]) remove(i int32) {
	n := &c.nodes[i]
	c.unlink(i)
	delete(c.idx, n.key)
	c.cost -= n.cost
	*n = node[K, V]{next: c.free}
	c.free = i
}

// link, unlink and moveToFront work on a local copy of the slice header:
// through c, every store to a node would make the compiler load c.nodes again.

func (c *Cache[K, V]) link(i int32) {
	nodes := c.nodes
	first := nodes[0].next
	nodes[i].prev, nodes[i].next = 0, first
	nodes[first].prev = i
	nodes[0].next = i
}

func (c *Cache[K, V]) unlink(i int32) {
	nodes := c.nodes
	prev, next := nodes[i].prev, nodes[i].next
	nodes[prev].next = next
	nodes[next].prev = prev
}

func (c *Cache[K, V]) moveToFront(i int32) {
	nodes := c.nodes
	first := nodes[0].next
	if first == i {
		return
	}
	n := &nodes[i]
	nodes[n.prev].next = n.next
	nodes[n.next].prev = n.prev
	n.prev, n.next = 0, first
	nodes[first].prev = i
	nodes[0].next = i
}
