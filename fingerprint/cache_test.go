package fingerprint

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCacheStats(t *testing.T) {
	c := New(Options{})
	q1 := "SELECT a FROM t WHERE id = 1"
	q2 := "SELECT a FROM t WHERE id = 2"
	q3 := "SELEC nonsense"
	r1 := c.Of(q1)
	if c.Of(q1) != r1 {
		t.Error("a hit returned a different *Result")
	}
	c.Of(q2) // new text, known template
	c.Of(q3)
	c.Of(q3)
	got := c.Stats()
	want := CacheStats{
		Hits: 2, Misses: 3, Failures: 1, Texts: 3, Bytes: got.Bytes,
		Templates: LevelStats{Hits: 1, Misses: 2, Entries: 1},
		Shapes:    LevelStats{Misses: 1, Entries: 1},
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.Bytes < len(q1)+len(q2)+len(q3) {
		t.Errorf("Bytes = %d, less than the texts held", got.Bytes)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := New(Options{MaxTexts: 2})
	a, b, d := "SELECT 1", "SELECT 2", "SELECT 3"
	c.Of(a)
	c.Of(b)
	c.Of(a) // a is now the most recent
	c.Of(d) // evicts b
	before := c.Stats()
	c.Of(a)
	c.Of(d)
	if s := c.Stats(); s.Hits != before.Hits+2 {
		t.Errorf("a and d should be cached: %+v", s)
	}
	c.Of(b)
	if s := c.Stats(); s.Misses != before.Misses+1 || s.Evictions != 2 || s.Texts != 2 {
		t.Errorf("b should have been evicted and evict another: %+v", s)
	}
}

func TestCacheByteBudget(t *testing.T) {
	c := New(Options{MaxTextBytes: 64 << 10})
	big := "SELECT '" + strings.Repeat("x", 8<<10) + "'"
	c.Of(big)
	if s := c.Stats(); s.Oversize != 1 || s.Texts != 0 {
		t.Errorf("an 8 KiB text in a 64 KiB budget should not be kept: %+v", s)
	}
	for i := 0; i < 200; i++ {
		c.Of(fmt.Sprintf("SELECT '%s', %d", strings.Repeat("y", 1000), i))
	}
	s := c.Stats()
	if s.Bytes > 64<<10 || s.Evictions == 0 {
		t.Errorf("the budget was not kept: %+v", s)
	}
}

func TestCacheDisabled(t *testing.T) {
	c := New(Options{MaxTexts: -1, MaxShapes: -1})
	for i := 0; i < 3; i++ {
		r := c.Of("SELECT a FROM t WHERE id = 1")
		if r.Statements[0].Facts.Kind != KindSelect {
			t.Fatal("disabled caches broke the analysis")
		}
	}
	s := c.Stats()
	if s.Hits != 0 || s.Misses != 3 || s.Texts != 0 || s.Shapes.Entries != 0 || s.Templates.Entries != 0 {
		t.Errorf("got %+v", s)
	}
}

// TestCacheAgreesWithOf runs a corpus through one Cache several times, in
// varied order and with varied literals, and checks every Result equals the
// uncached one.
func TestCacheAgreesWithOf(t *testing.T) {
	var corpus []string
	for _, s := range lexerCases {
		corpus = append(corpus, s)
	}
	for _, tmpl := range []string{
		"SELECT * FROM t WHERE a = %d LIMIT %d OFFSET %d",
		"SELECT x::float(%d) FROM t WHERE a = %d OR b = %d",
		"SELECT x::int[%d] FROM t WHERE b IN (%d, %d)",
		"SELECT x FROM t WHERE a LIKE '%%%d' OR a LIKE '%d%%' OFFSET %d",
		"SELECT - %d, - '%d', %d.5 FROM t",
		"UPDATE t SET a = %d WHERE b = %d AND c = '%d'",
		"SELECT x FROM t WHERE a = %d; SELEC %d; SELECT %d",
		"COPY t TO '/srv/export/%d' WITH (DELIMITER '%d', NULL '%d')",
		"COMMENT ON TABLE t IS 'v%d%d%d'",
	} {
		for _, v := range [][3]int{{1, 2, 3}, {10, 30, 0}, {3000000000, 7, 99}, {24, 25, 53}} {
			corpus = append(corpus, fmt.Sprintf(tmpl, v[0], v[1], v[2]))
		}
	}
	c := New(Options{MaxTexts: 7})
	for round := 0; round < 3; round++ {
		for i := range corpus {
			q := corpus[(i*7+round)%len(corpus)]
			if got, want := c.Of(q), Of(q); !sameResult(got, want) {
				t.Fatalf("%q:\ncache: %s\n   Of: %s", q, dump(got), dump(want))
			}
		}
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := New(Options{MaxTexts: 50, MaxShapes: 20})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				q := fmt.Sprintf("SELECT a FROM t%d WHERE id = %d", (g+i)%30, i%40)
				r := c.Of(q)
				if r.Statements[0].Facts.Kind != KindSelect {
					t.Errorf("%q: got kind %q", q, r.Statements[0].Facts.Kind)
					return
				}
				_ = c.Stats()
			}
		}()
	}
	wg.Wait()
	s := c.Stats()
	if s.Hits+s.Misses != 8*300 {
		t.Errorf("hits+misses = %d, want %d", s.Hits+s.Misses, 8*300)
	}
	if s.Texts > 50 || s.Shapes.Entries > 20 || s.Templates.Entries > 20 {
		t.Errorf("bounds exceeded: %+v", s)
	}
}

// Simple-protocol traffic inlines a new value in every text: past
// volatileAfter new texts of one shape, its texts are analyzed but no longer
// kept, so they do not push out texts that repeat.
func TestCacheVolatileShape(t *testing.T) {
	c := New(Options{})
	repeated := "SELECT a FROM t WHERE status = 'open'"
	want := c.Of(repeated)
	var firstID uint64
	for i := range volatileAfter + 500 {
		r := c.Of(fmt.Sprintf("SELECT a FROM t WHERE id = %d", i))
		if i == 0 {
			firstID = r.Statements[0].ID
		}
		if r.Statements[0].ID != firstID {
			t.Fatalf("text %d: fingerprint %x, want %x", i, r.Statements[0].ID, firstID)
		}
	}
	st := c.Stats()
	if st.Volatile != 499 {
		t.Errorf("Volatile = %d, want 499 (every new text after the first %d)", st.Volatile, volatileAfter+1)
	}
	if st.Texts != volatileAfter+2 {
		t.Errorf("Texts = %d, want %d", st.Texts, volatileAfter+2)
	}
	if c.Of(repeated) != want {
		t.Error("a repeated text of another shape was not kept")
	}

	// A shape whose texts repeat never becomes volatile: its texts hit the
	// text cache, not the template cache.
	c = New(Options{})
	for range 300 {
		for k := range 10 {
			c.Of(fmt.Sprintf("SELECT a FROM t WHERE kind = 'k%d'", k))
		}
	}
	if st := c.Stats(); st.Volatile != 0 || st.Texts != 10 || st.Hits != 2990 {
		t.Errorf("repeating texts: %+v; want 10 texts, 2990 hits, nothing volatile", st)
	}
}

// TestCacheAgreesOnBadUescape: a UESCAPE the server rejects makes the
// statement an error whether or not the shape cache already holds the
// fingerprint of a statement that reads alike with an allowed one.
func TestCacheAgreesOnBadUescape(t *testing.T) {
	for _, pair := range [][2]string{
		{"SELECT U&'' UESCAPE '!'", "SELECT U&''UESCAPE'\xd8'"},
		{"SELECT U&'d!0061t' UESCAPE '!' FROM t", "SELECT U&'d!0061t' UESCAPE 'é' FROM t"},
		{`SELECT U&"a" UESCAPE '!' FROM t`, `SELECT U&"a" UESCAPE '+' FROM t`},
	} {
		cache := New(Options{MaxTexts: 100, MaxShapes: 100})
		if r := cache.ofOn(pair[0]); r.Statements[0].Err != nil {
			t.Fatalf("%q: %v", pair[0], r.Statements[0].Err)
		}
		r, cr := ofOn(pair[1]), cache.ofOn(pair[1])
		if r.Statements[0].Err == nil {
			t.Errorf("%q: no error", pair[1])
		}
		if !sameResult(r, cr) {
			t.Errorf("%q: Cache.Of and Of disagree\n%s\n%s", pair[1], dump(cr), dump(r))
		}
	}
}
