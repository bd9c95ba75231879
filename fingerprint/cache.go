package fingerprint

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Default cache sizes, used for zero Options fields.
const (
	DefaultMaxTexts     = 10000
	DefaultMaxShapes    = 5000
	DefaultMaxTextBytes = 32 << 20
)

// Options size a Cache. Zero fields take the defaults; a negative MaxTexts or
// MaxShapes turns that cache off.
type Options struct {
	// MaxTexts bounds the number of SQL texts whose Result is kept.
	MaxTexts int
	// MaxShapes bounds the number of fingerprints whose facts are kept,
	// and the number of statement templates (statements with literals
	// blanked) whose fingerprint is kept.
	MaxShapes int
	// MaxTextBytes bounds the memory of the text cache, counted as the
	// length of the texts and their normalized statements plus a fixed
	// overhead per entry, and separately that of the template cache. A text
	// or template that would take more than a sixteenth of it is analyzed
	// but not kept, so that one huge statement cannot flush a cache.
	MaxTextBytes int
}

// CacheStats is a snapshot of a Cache's counters. Counters only grow.
type CacheStats struct {
	// The text cache, consulted once per call to Of: Hits+Misses is the
	// number of calls.
	Hits, Misses uint64
	// Evictions counts texts dropped to respect MaxTexts or MaxTextBytes.
	Evictions uint64
	// Failures counts statements that did not parse and got a fallback
	// fingerprint. It counts per analysis, so a cached text counts once.
	Failures uint64
	// Oversize counts texts analyzed but not kept because of their size.
	Oversize uint64
	// Volatile counts texts analyzed but not kept because their shape
	// comes with new literal values every time (more than a thousand new
	// texts of it so far): keeping them would only evict texts that repeat.
	Volatile uint64
	// Texts and Bytes are the text cache's current size.
	Texts, Bytes int
	// Templates are the counters of the template cache, consulted once per
	// statement of a text the text cache missed: a hit costs no call into
	// pg_query.
	Templates LevelStats
	// Shapes are the counters of the fingerprint cache, consulted on a
	// template miss: a miss costs a parse.
	Shapes LevelStats
}

// LevelStats is a snapshot of one of a Cache's inner caches.
type LevelStats struct {
	Hits, Misses, Evictions uint64
	Entries                 int
}

// Cache computes Results and keeps them: by exact text, and the parsed facts
// by fingerprint. It is safe for concurrent use. Two goroutines that miss on
// the same text at once both compute it; one Result is kept.
type Cache struct {
	texts        *lru[string, *Result]
	templates    *lru[string, *shape]
	shapes       *lru[uint64, *shape]
	maxEntryCost int
	failures     atomic.Uint64
	oversize     atomic.Uint64
	volatile     atomic.Uint64
	scratch      sync.Pool // of *scratch
}

// scratch holds an analyzer's buffers between calls.
type scratch struct {
	toks []token
	key  []byte
}

// New returns a Cache sized by opts.
func New(opts Options) *Cache {
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return max(v, 0)
	}
	maxBytes := def(opts.MaxTextBytes, DefaultMaxTextBytes)
	shapes := def(opts.MaxShapes, DefaultMaxShapes)
	return &Cache{
		texts:        newLRU[string, *Result](def(opts.MaxTexts, DefaultMaxTexts), maxBytes),
		templates:    newLRU[string, *shape](shapes, maxBytes),
		shapes:       newLRU[uint64, *shape](shapes, 0),
		maxEntryCost: maxBytes / 16,
	}
}

// Of returns the Result for sql, from the cache when it has seen sql before.
// The Result is shared and must not be modified.
func (c *Cache) Of(sql string) *Result {
	if r, ok := c.texts.get(sql); ok {
		return r
	}
	a := analyzer{maxKey: c.maxEntryCost}
	if c.shapes.capacity > 0 {
		a.shapes, a.templates = c.shapes, c.templates
	}
	if sc, ok := c.scratch.Get().(*scratch); ok {
		a.toks, a.key = sc.toks[:0], sc.key[:0]
	}
	r := a.analyze(sql)
	if cap(a.toks) <= 1<<14 && cap(a.key) <= 1<<16 {
		c.scratch.Put(&scratch{toks: a.toks, key: a.key})
	}
	if a.failures > 0 {
		c.failures.Add(uint64(a.failures))
	}
	if a.volatile {
		c.volatile.Add(1)
		return r
	}
	cost := entryCost(sql, r)
	if cost > c.maxEntryCost {
		c.oversize.Add(1)
		return r
	}
	return c.texts.add(strings.Clone(sql), r, cost)
}

// entryCost approximates the bytes a text cache entry holds on to.
func entryCost(sql string, r *Result) int {
	n := 256 + len(sql)
	for _, st := range r.Statements {
		n += 160 + len(st.Normalized)
	}
	for k, v := range r.Tags {
		n += 64 + len(k) + len(v)
	}
	return n
}

// Stats returns the Cache's counters.
func (c *Cache) Stats() CacheStats {
	var s CacheStats
	s.Hits, s.Misses, s.Evictions, s.Texts, s.Bytes = c.texts.stats()
	s.Templates.Hits, s.Templates.Misses, s.Templates.Evictions, s.Templates.Entries, _ = c.templates.stats()
	s.Shapes.Hits, s.Shapes.Misses, s.Shapes.Evictions, s.Shapes.Entries, _ = c.shapes.stats()
	s.Failures = c.failures.Load()
	s.Oversize = c.oversize.Load()
	s.Volatile = c.volatile.Load()
	return s
}

// lru is a map with least-recently-used eviction, bounded by a number of
// entries and optionally by a total cost. All fields are guarded by mu.
type lru[K comparable, V any] struct {
	mu       sync.Mutex
	m        map[K]*lruEntry[K, V]
	root     lruEntry[K, V] // root.next is the most recently used entry
	capacity int            // max entries; 0 keeps nothing
	maxCost  int            // max summed cost; 0 means no bound
	cost     int
	hits     uint64
	misses   uint64
	evicted  uint64
}

type lruEntry[K comparable, V any] struct {
	key        K
	val        V
	cost       int
	prev, next *lruEntry[K, V]
}

func newLRU[K comparable, V any](capacity, maxCost int) *lru[K, V] {
	c := &lru[K, V]{m: make(map[K]*lruEntry[K, V]), capacity: capacity, maxCost: maxCost}
	c.root.prev, c.root.next = &c.root, &c.root
	return c
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	if !ok {
		c.misses++
		c.mu.Unlock()
		var zero V
		return zero, false
	}
	c.hits++
	c.unlink(e)
	c.pushFront(e)
	v := e.val
	c.mu.Unlock()
	return v, true
}

// getBytes is get for a string-keyed cache, with the key as bytes: it does
// not allocate the string.
func getBytes[V any](c *lru[string, V], k []byte) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[string(k)]
	if !ok {
		c.misses++
		c.mu.Unlock()
		var zero V
		return zero, false
	}
	c.hits++
	c.unlink(e)
	c.pushFront(e)
	v := e.val
	c.mu.Unlock()
	return v, true
}

// add stores v under k unless k is present already, and returns the value
// stored under k.
func (c *lru[K, V]) add(k K, v V, cost int) V {
	if c.capacity <= 0 {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		return e.val
	}
	e := &lruEntry[K, V]{key: k, val: v, cost: cost}
	c.m[k] = e
	c.pushFront(e)
	c.cost += cost
	for len(c.m) > c.capacity || c.maxCost > 0 && c.cost > c.maxCost && len(c.m) > 1 {
		old := c.root.prev
		c.unlink(old)
		delete(c.m, old.key)
		c.cost -= old.cost
		c.evicted++
	}
	return v
}

func (c *lru[K, V]) unlink(e *lruEntry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *lru[K, V]) pushFront(e *lruEntry[K, V]) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}

func (c *lru[K, V]) stats() (hits, misses, evictions uint64, entries, cost int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.evicted, len(c.m), c.cost
}
