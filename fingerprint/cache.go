package fingerprint

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/internal/valuekey"
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
	texts        *level[textKey, *Result]
	templates    *level[string, *shape]
	shapes       *level[uint64, *shape]
	maxEntryCost int
	failures     atomic.Uint64
	oversize     atomic.Uint64
	volatile     atomic.Uint64
	scratch      sync.Pool // of *scratch
}

// textKey keys the text cache: one text reads differently under each
// setting of standard_conforming_strings.
type textKey struct {
	sql  string
	mode Strings
}

// scratch holds an analyzer's buffers between calls.
type scratch struct {
	toks  []token
	toks2 []token
	key   []byte
	keys  []valuekey.Key
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
		texts:        newLevel[textKey, *Result](def(opts.MaxTexts, DefaultMaxTexts), maxBytes),
		templates:    newLevel[string, *shape](shapes, maxBytes),
		shapes:       newLevel[uint64, *shape](shapes, 0),
		maxEntryCost: maxBytes / 16,
	}
}

// Of returns the Result for sql, read for a session whose
// standard_conforming_strings is not known (StringsUnknown), from the cache
// when it has seen sql before. The Result is shared and must not be
// modified.
func (c *Cache) Of(sql string) *Result {
	return c.OfStrings(sql, StringsUnknown)
}

// OfStrings is Of for a session whose standard_conforming_strings is mode.
// The text cache keeps one Result per text and mode; the template and shape
// caches serve all modes alike (see appendTemplateKey).
func (c *Cache) OfStrings(sql string, mode Strings) *Result {
	mode = validStrings(mode)
	if r, ok := c.texts.get(textKey{sql, mode}); ok {
		return r
	}
	a := analyzer{maxKey: c.maxEntryCost, mode: mode}
	if c.shapes.enabled() {
		a.shapes, a.templates = c.shapes, c.templates
	}
	sc, _ := c.scratch.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	a.toks, a.toks2, a.key, a.keys = sc.toks[:0], sc.toks2[:0], sc.key[:0], sc.keys[:0]
	r := a.analyze(sql)
	if cap(a.toks) <= 1<<14 && cap(a.toks2) <= 1<<14 && cap(a.key) <= 1<<16 && cap(a.keys) <= 1<<12 {
		sc.toks, sc.toks2, sc.key, sc.keys = a.toks, a.toks2, a.key, a.keys
		c.scratch.Put(sc)
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
	return c.texts.add(textKey{strings.Clone(sql), mode}, r, cost)
}

// entryCost approximates the bytes a text cache entry holds on to.
func entryCost(sql string, r *Result) int {
	n := 256 + len(sql)
	for _, st := range r.Statements {
		n += 160 + len(st.Normalized) + 8*len(st.LiteralKeys)
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

// level is one of a Cache's inner caches: an lru.Cache behind a mutex, with
// hit and miss counters. All fields are guarded by mu.
type level[K comparable, V any] struct {
	mu     sync.Mutex
	c      *lru.Cache[K, V] // nil keeps nothing
	hits   uint64
	misses uint64
}

// newLevel returns a level of at most capacity entries (none when
// capacity <= 0) and, when maxCost > 0, of summed cost at most maxCost.
func newLevel[K comparable, V any](capacity, maxCost int) *level[K, V] {
	l := &level[K, V]{}
	if capacity > 0 {
		l.c = lru.New[K, V](capacity, maxCost, nil)
	}
	return l
}

// enabled reports whether the level keeps anything.
func (l *level[K, V]) enabled() bool { return l.c != nil }

func (l *level[K, V]) get(k K) (v V, ok bool) {
	l.mu.Lock()
	if l.c != nil {
		v, ok = l.c.Get(k)
	}
	if ok {
		l.hits++
	} else {
		l.misses++
	}
	l.mu.Unlock()
	return v, ok
}

// getBytes is get for a string-keyed level, with the key as bytes: it does
// not allocate the string.
func getBytes[V any](l *level[string, V], k []byte) (v V, ok bool) {
	l.mu.Lock()
	if l.c != nil {
		v, ok = lru.GetString(l.c, k)
	}
	if ok {
		l.hits++
	} else {
		l.misses++
	}
	l.mu.Unlock()
	return v, ok
}

// add stores v under k unless k is present already, and returns the value
// stored under k.
func (l *level[K, V]) add(k K, v V, cost int) V {
	if l.c == nil {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.c.Peek(k); ok {
		return old
	}
	l.c.Add(k, v, cost)
	return v
}

func (l *level[K, V]) stats() (hits, misses, evictions uint64, entries, cost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		evictions, entries, cost = l.c.Evictions(), l.c.Len(), l.c.Cost()
	}
	return l.hits, l.misses, evictions, entries, cost
}
