package lru

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func keys[K comparable, V any](c *Cache[K, V]) []K {
	var ks []K
	c.All(func(k K, _ V) bool { ks = append(ks, k); return true })
	return ks
}

func TestOrderAndEviction(t *testing.T) {
	var evicted []string
	c := New[string, int](3, 0, func(k string, _ int) { evicted = append(evicted, k) })
	c.Add("a", 1, 0)
	c.Add("b", 2, 0)
	c.Add("c", 3, 0)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %v, %v", v, ok)
	}
	if n := c.Add("d", 4, 0); n != 1 {
		t.Fatalf("Add evicted %d, want 1", n)
	}
	if got := keys(c); !slices.Equal(got, []string{"d", "a", "c"}) {
		t.Fatalf("order %v", got)
	}
	if !slices.Equal(evicted, []string{"b"}) || c.Evictions() != 1 {
		t.Fatalf("evicted %v (%d)", evicted, c.Evictions())
	}
	if _, ok := c.Peek("c"); !ok {
		t.Fatal("Peek(c) missing")
	}
	if k, _, _ := c.Oldest(); k != "c" {
		t.Fatalf("Peek moved c: oldest %q", k)
	}
	if v, ok := GetString(c, []byte("c")); !ok || v != 3 {
		t.Fatalf("GetString(c) = %v, %v", v, ok)
	}
	if k, _, _ := c.Oldest(); k != "a" {
		t.Fatalf("oldest %q, want a", k)
	}
	if v, ok := c.Remove("a"); !ok || v != 1 || c.Len() != 2 {
		t.Fatalf("Remove(a) = %v, %v; len %d", v, ok, c.Len())
	}
	if _, ok := c.Remove("a"); ok {
		t.Fatal("Remove(a) twice")
	}
	if len(evicted) != 1 {
		t.Fatal("Remove called onEvict")
	}
	c.Clear()
	if c.Len() != 0 || len(keys(c)) != 0 {
		t.Fatal("Clear left entries")
	}
	c.Add("x", 1, 0)
	if got := keys(c); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("after Clear: %v", got)
	}
}

func TestPeekStringAndBackward(t *testing.T) {
	c := New[string, int](4, 0, nil)
	for i, k := range []string{"a", "b", "c", "d"} {
		c.Add(k, i, 0)
	}
	if v, ok := PeekString(c, []byte("b")); !ok || v != 1 {
		t.Fatalf("PeekString(b) = %v, %v", v, ok)
	}
	if _, ok := PeekString(c, []byte("x")); ok {
		t.Fatal("PeekString(x) found")
	}
	if k, _, _ := c.Oldest(); k != "a" {
		t.Fatalf("PeekString moved an entry: oldest %q", k)
	}
	var back []string
	for k := range c.Backward {
		back = append(back, k)
	}
	if !slices.Equal(back, []string{"a", "b", "c", "d"}) {
		t.Fatalf("Backward %v", back)
	}
	back = back[:0]
	for k := range c.Backward {
		back = append(back, k)
		if k == "b" {
			break
		}
	}
	if !slices.Equal(back, []string{"a", "b"}) {
		t.Fatalf("Backward with break %v", back)
	}
	// Removing the entry at hand while walking.
	back = back[:0]
	for k, v := range c.Backward {
		back = append(back, k)
		if v%2 == 0 {
			c.Remove(k)
		}
	}
	if !slices.Equal(back, []string{"a", "b", "c", "d"}) || !slices.Equal(keys(c), []string{"d", "b"}) {
		t.Fatalf("Backward removing: walked %v, left %v", back, keys(c))
	}
	c.Add("e", 5, 0)
	if got := keys(c); !slices.Equal(got, []string{"e", "d", "b"}) {
		t.Fatalf("after removing while walking: %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { PeekString(c, []byte("d")) }); n != 0 {
		t.Fatalf("PeekString allocates %.0f", n)
	}
}

func TestCost(t *testing.T) {
	c := New[int, string](100, 10, nil)
	c.Add(1, "a", 4)
	c.Add(2, "b", 4)
	c.Add(3, "c", 4) // 12 > 10: 1 goes
	if _, ok := c.Peek(1); ok || c.Cost() != 8 {
		t.Fatalf("cost bound not kept: cost %d, keys %v", c.Cost(), keys(c))
	}
	c.Add(2, "b2", 1) // replace: cost 5
	if c.Cost() != 5 || c.Len() != 2 {
		t.Fatalf("replace: cost %d len %d", c.Cost(), c.Len())
	}
	c.Add(9, "big", 50) // alone over the bound: kept, the rest goes
	if c.Len() != 1 || c.Cost() != 50 {
		t.Fatalf("oversized entry: len %d cost %d", c.Len(), c.Cost())
	}
}

// TestModel checks random operations against a plain slice model.
func TestModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const max = 8
	c := New[int, int](max, 0, nil)
	var model []int // most recent first
	vals := map[int]int{}
	for step := range 20000 {
		k := r.IntN(20)
		switch r.IntN(4) {
		case 0, 1:
			c.Add(k, step, 0)
			model = slices.DeleteFunc(model, func(x int) bool { return x == k })
			model = append([]int{k}, model...)
			vals[k] = step
			if len(model) > max {
				delete(vals, model[max])
				model = model[:max]
			}
		case 2:
			v, ok := c.Get(k)
			if i := slices.Index(model, k); i >= 0 {
				if !ok || v != vals[k] {
					t.Fatalf("step %d: Get(%d) = %d, %v; want %d", step, k, v, ok, vals[k])
				}
				model = append([]int{k}, slices.Delete(model, i, i+1)...)
			} else if ok {
				t.Fatalf("step %d: Get(%d) found an evicted key", step, k)
			}
		case 3:
			_, ok := c.Remove(k)
			if i := slices.Index(model, k); (i >= 0) != ok {
				t.Fatalf("step %d: Remove(%d) = %v", step, k, ok)
			} else if i >= 0 {
				model = slices.Delete(model, i, i+1)
				delete(vals, k)
			}
		}
		if got := keys(c); !slices.Equal(got, model) {
			t.Fatalf("step %d: order %v, want %v", step, got, model)
		}
		var back []int
		c.Backward(func(k, _ int) bool { back = append(back, k); return true })
		if slices.Reverse(back); !slices.Equal(back, model) {
			t.Fatalf("step %d: backward order %v, want the reverse of %v", step, back, model)
		}
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	c := New[int, int](64, 0, nil)
	for i := range 64 {
		c.Add(i, i, 0)
	}
	i := 64
	allocs := testing.AllocsPerRun(1000, func() {
		c.Add(i, i, 0)
		c.Get(i - 10)
		c.Remove(i - 20)
		i++
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per round in steady state", allocs)
	}
}

func BenchmarkAddGet(b *testing.B) {
	c := New[string, int](1000, 0, nil)
	ks := make([]string, 2000)
	for i := range ks {
		ks[i] = string(rune('a'+i%26)) + string(rune('A'+i/26%26)) + string(rune('0'+i/676))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := ks[i%len(ks)]
		if _, ok := c.Get(k); !ok {
			c.Add(k, i, len(k))
		}
	}
}

// TestMostRecentLookup: a lookup of the most recently used key is answered
// from that entry without the index; it must agree with the index whenever
// the front changes (Add, Get, Remove, Clear, eviction) and must not take
// an empty cache's root for an entry of the zero key.
func TestMostRecentLookup(t *testing.T) {
	c := New[string, int](2, 0, nil)
	if _, ok := c.Get(""); ok {
		t.Fatal("Get of the zero key in an empty cache")
	}
	if _, ok := PeekString(c, nil); ok {
		t.Fatal("PeekString of the zero key in an empty cache")
	}
	c.Add("", 7, 0)
	if v, ok := c.Get(""); !ok || v != 7 {
		t.Fatalf("Get(\"\") = %v, %v", v, ok)
	}
	c.Add("a", 1, 0)
	if v, ok := GetString(c, []byte("a")); !ok || v != 1 {
		t.Fatalf("GetString(a) = %v, %v", v, ok)
	}
	c.Add("a", 2, 0) // replaced in place
	if v, ok := c.Peek("a"); !ok || v != 2 {
		t.Fatalf("Peek(a) after replacing = %v, %v", v, ok)
	}
	c.Remove("a")
	for _, get := range []func() (int, bool){
		func() (int, bool) { return c.Get("a") },
		func() (int, bool) { return c.Peek("a") },
		func() (int, bool) { return GetString(c, []byte("a")) },
		func() (int, bool) { return PeekString(c, []byte("a")) },
	} {
		if v, ok := get(); ok {
			t.Fatalf("removed front found: %v", v)
		}
	}
	c.Add("b", 3, 0)
	c.Add("c", 4, 0) // evicts "" (the oldest)
	if _, ok := c.Get(""); ok {
		t.Fatal("evicted zero key found")
	}
	if v, ok := c.Get("c"); !ok || v != 4 {
		t.Fatalf("Get(c) = %v, %v", v, ok)
	}
	c.Clear()
	if _, ok := PeekString(c, []byte("c")); ok {
		t.Fatal("front found after Clear")
	}
}
