package detector

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// result builds the ResultKeys of rows of integer columns.
func result(cols []string, rows ...[]int) *pgwire.ResultKeys {
	keys := make([][]valuekey.Key, len(cols))
	for _, row := range rows {
		for c, v := range row {
			keys[c] = append(keys[c], valuekey.String(strconv.Itoa(v)))
		}
	}
	return pgwire.NewResultKeys(cols, keys, false)
}

func key(v int) []valuekey.Key { return []valuekey.Key{valuekey.String(strconv.Itoa(v))} }

// source runs st returning rows (id, user_id) with user_id = keys.
func (tl *timeline) source(st *fingerprint.Statement, keys []int) *pgwire.Execution {
	rows := make([][]int, len(keys))
	for i, k := range keys {
		rows[i] = []int{100 + i, k}
	}
	x := tl.q(st, 1, int64(len(keys)))
	x.Result = result([]string{"id", "user_id"}, rows...)
	return x
}

// lookup runs st once with one key, returning one row (id, name-less).
func (tl *timeline) lookup(st *fingerprint.Statement, k int) *pgwire.Execution {
	x := tl.q(st, uint64(1_000_000+k), 1)
	x.ParamKeys = key(k)
	x.Result = result([]string{"id"}, []int{k})
	return x
}

// poolTimeline is a timeline whose connections 1..n are one pool's: same
// user, database, application and client address.
func poolTimeline(n int) *timeline {
	tl := newTimeline()
	for id := 1; id <= n; id++ {
		tl.on(uint64(id)).conn.ClientAddr = "10.0.0.1"
	}
	return tl.on(1)
}

func seq(from, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = from + i
	}
	return s
}

func nPlusOnes(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Kind == KindNPlusOne {
			out = append(out, f)
		}
	}
	return out
}

func TestEvidenceDataFlow(t *testing.T) {
	tl := poolTimeline(4)
	tl.source(qOrders, seq(1, 30))
	for _, k := range seq(1, 30) {
		tl.lookup(qUser, k)
		tl.wait(time.Millisecond)
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 1 {
		t.Fatalf("got %v", summaries(fs))
	}
	ev := fs[0].Evidence
	if ev == nil || ev.Kind != EvidenceDataFlow || ev.SourceColumn != "user_id" || ev.Param != 1 || ev.Matched != 30 || ev.Of != 30 ||
		ev.SourceFingerprint != qOrders.Hex || ev.SourceConnection != 0 {
		t.Errorf("evidence %+v", ev)
	}
	if fs[0].Source == nil || fs[0].Source.Fingerprint != qOrders.Hex {
		t.Errorf("source %+v", fs[0].Source)
	}
}

func TestEvidencePartialOverlap(t *testing.T) {
	tl := poolTimeline(4)
	tl.source(qOrders, seq(1, 25))
	for _, k := range append(seq(1, 25), seq(500, 5)...) { // 5 keys from elsewhere (a cache, the request)
		tl.lookup(qUser, k)
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 1 || fs[0].Evidence == nil || fs[0].Evidence.Kind != EvidenceDataFlow ||
		fs[0].Evidence.Matched != 25 || fs[0].Evidence.Of != 30 {
		t.Fatalf("got %v, evidence %+v", summaries(fs), fs[0].Evidence)
	}
	// Duplicated keys in the source and in the loop count once.
	tl = newTimeline()
	tl.source(qOrders, append(seq(1, 10), seq(1, 10)...))
	for _, k := range append(seq(1, 10), seq(1, 10)...) {
		tl.lookup(qUser, k)
	}
	fs = nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 1 || fs[0].Evidence.Matched != 10 || fs[0].Evidence.Of != 10 {
		t.Fatalf("duplicates: got %v, evidence %+v", summaries(fs), fs[0].Evidence)
	}
}

func TestEvidenceChanceMatchesDoNotProve(t *testing.T) {
	// Small integers are everywhere: 4 of 30 keys found in an unrelated
	// column prove nothing, and a busy pool then reports nothing.
	tl := poolTimeline(4)
	tl.on(2).lookup(qUser, 9000)
	tl.on(1).source(qOrders, append(seq(1, 4), seq(700, 26)...))
	for _, k := range append(seq(1, 4), seq(2000, 26)...) {
		tl.on(1).lookup(qUser, k)
		tl.on(2).lookup(qUser, k+10000)
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 0 {
		t.Fatalf("got %v", summaries(fs))
	}
}

func TestEvidenceBusyPoolNotFlagged(t *testing.T) {
	// 40 independent requests over a pool of 4, each a lookup by an id from
	// the request, and a dependent lookup by a column of its row.
	tl := poolTimeline(4)
	for r := range 40 {
		tl.on(uint64(1 + r%4))
		order := 5000 + r
		x := tl.q(qOrders, uint64(order), 1)
		x.ParamKeys = key(order)
		x.Result = result([]string{"id", "user_id"}, []int{order, 70 + r})
		tl.lookup(qUser, 70+r)
		tl.wait(200 * time.Microsecond)
	}
	d := New(Config{})
	var fs []Finding
	for _, ev := range tl.events {
		fs = append(fs, d.Observe(ev)...)
	}
	fs = append(fs, d.Flush()...)
	for _, f := range fs {
		if f.Kind == KindNPlusOne || f.Kind == KindDuplicateQuery {
			t.Errorf("flagged %s (evidence %+v)", summary(f), f.Evidence)
		}
	}
	if d.Stats().Concurrent == 0 {
		t.Error("Stats.Concurrent = 0")
	}
}

func TestEvidenceBusyPoolDuplicates(t *testing.T) {
	// pgbench -S over 4 connections: popular keys repeat by chance, spread
	// among others: no duplicate_query. One request that runs the same
	// query three times in a row is one.
	tl := poolTimeline(4)
	for r := range 200 {
		tl.on(uint64(1 + r%4))
		k := r % 37
		tl.q(qUser, uint64(1+k), 1).ParamKeys = key(k)
	}
	tl.on(3)
	for range 3 {
		tl.q(qUser, 999, 1).ParamKeys = key(999)
	}
	var dups []string
	for _, f := range detect(Config{}, tl.events) {
		if f.Kind == KindDuplicateQuery || f.Kind == KindNPlusOne {
			dups = append(dups, summary(f)+" conn "+strconv.FormatUint(f.Connection.ID, 10))
		}
	}
	if len(dups) != 1 || dups[0] != "duplicate_query user n=3 d=1 warning conn 3" {
		t.Errorf("got %v", dups)
	}
}

func TestEvidenceRealLoopUnderLoad(t *testing.T) {
	// The same busy pool, and one request among them that lists 30 orders
	// and looks up each user: flagged, proven, on its own connection.
	tl := poolTimeline(4)
	for r := range 20 {
		tl.on(uint64(1 + r%4))
		tl.lookup(qUser, 9000+r)
	}
	tl.on(2).source(qOrders, seq(1, 30))
	for _, k := range seq(1, 30) {
		tl.on(2).lookup(qUser, k)
		tl.on(uint64(1+k%2*2)).lookup(qUser, 8000+k) // conns 1 and 3 stay busy
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 1 || fs[0].Connection.ID != 2 || fs[0].Evidence.Kind != EvidenceDataFlow || fs[0].Evidence.Matched != 30 {
		t.Fatalf("got %v", summaries(fs))
	}
}

func TestEvidencePooledLoopHopsConnections(t *testing.T) {
	// The source ran on connection 1; its lookups went out over 2, 3 and 4.
	tl := poolTimeline(4)
	tl.on(1).source(qOrders, seq(1, 30))
	for _, k := range seq(1, 30) {
		tl.on(uint64(2+k%3)).lookup(qUser, k)
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) == 0 {
		t.Fatal("not flagged")
	}
	for _, f := range fs {
		ev := f.Evidence
		if ev.Kind != EvidenceDataFlow || ev.SourceConnection != 1 || ev.SourceColumn != "user_id" || ev.Matched != 10 || ev.Of != 10 {
			t.Errorf("%s: evidence %+v", summary(f), ev)
		}
	}
}

func TestEvidenceNestedLoop(t *testing.T) {
	// orders → items per order → product per item: the products' keys are
	// in the union of the items' results.
	tl := poolTimeline(4)
	ordersItemsProducts(tl)
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 2 {
		t.Fatalf("got %v", summaries(fs))
	}
	items, products := fs[0].Evidence, fs[1].Evidence
	if items.Kind != EvidenceDataFlow || items.SourceFingerprint != qOrders.Hex || items.SourceColumn != "id" || items.Matched != 6 {
		t.Errorf("items evidence %+v", items)
	}
	if products.Kind != EvidenceDataFlow || products.SourceFingerprint != qItems.Hex || products.SourceColumn != "product_id" || products.Matched != 18 {
		t.Errorf("products evidence %+v", products)
	}
}

// ordersItemsProducts adds a nested loop to tl: 6 orders, the 3 items of
// each, the product of each item.
func ordersItemsProducts(tl *timeline) {
	x := tl.q(qOrders, 1, 6)
	x.Result = result([]string{"id", "user_id"}, []int{1, 50}, []int{2, 51}, []int{3, 52}, []int{4, 53}, []int{5, 54}, []int{6, 55})
	for o := 1; o <= 6; o++ {
		items := tl.q(qItems, uint64(o), 3)
		items.ParamKeys = key(o)
		items.Result = result([]string{"id", "product_id"}, []int{10 * o, 100*o + 1}, []int{10*o + 1, 100*o + 2}, []int{10*o + 2, 100*o + 3})
		for i := 1; i <= 3; i++ {
			tl.lookup(qProduct, 100*o+i)
		}
	}
}

func TestEvidenceKeysFromRequest(t *testing.T) {
	// A loop over ids from a form on a quiet connection: repetition, a
	// warning however long.
	tl := poolTimeline(4)
	for _, k := range seq(1, 60) {
		tl.lookup(qUser, k)
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 1 || fs[0].Evidence == nil || fs[0].Evidence.Kind != EvidenceRepetition || fs[0].Severity != SeverityWarning {
		t.Fatalf("got %v, evidence %+v", summaries(fs), fs[0].Evidence)
	}
}

func TestEvidenceBudget(t *testing.T) {
	tl := poolTimeline(4)
	tl.source(qOrders, seq(1, 30))
	for _, k := range seq(1, 30) {
		tl.lookup(qUser, k)
	}
	d := New(Config{MaxEvidenceBytes: 100})
	var fs []Finding
	for _, ev := range tl.events {
		fs = append(fs, d.Observe(ev)...)
	}
	fs = nPlusOnes(append(fs, d.Flush()...))
	if len(fs) != 1 || fs[0].Evidence.Kind != EvidenceRepetition {
		t.Fatalf("over the budget: got %v, evidence %+v", summaries(fs), fs[0].Evidence)
	}
	if d.Stats().EvidenceDropped == 0 {
		t.Error("EvidenceDropped = 0")
	}
	if d.evBytes != 0 {
		t.Errorf("evBytes = %d after every window closed", d.evBytes)
	}
}

func TestEvidenceIDsOfAnotherTableProveNothing(t *testing.T) {
	// users looked up by id, with keys equal to the ids (not the user_ids)
	// of a list of orders: serial ids overlap by chance. On a busy pool that
	// is no N+1.
	tl := poolTimeline(4)
	tl.on(2).lookup(qUser, 9000)
	x := tl.on(1).q(qOrders, 1, 30)
	rows := make([][]int, 30)
	for i := range rows {
		rows[i] = []int{1 + i, 500 + i}
	}
	x.Result = result([]string{"id", "user_id"}, rows...)
	for _, k := range seq(1, 30) {
		tl.on(1).lookup(qUser, k)
		tl.on(2).lookup(qUser, 9100+k)
	}
	if fs := nPlusOnes(detect(Config{}, tl.events)); len(fs) != 0 {
		t.Fatalf("got %v, evidence %+v", summaries(fs), fs[0].Evidence)
	}
}

func TestEvidenceCatalogsAreNoSource(t *testing.T) {
	// A driver's type lookup returns oids, small integers like user ids:
	// it proves nothing, and the busy pool then reports nothing.
	tl := poolTimeline(4)
	tl.on(2).lookup(qUser, 9000)
	x := tl.on(1).q(qPgType, 1, 30)
	rows := make([][]int, 30)
	for i := range rows {
		rows[i] = []int{1 + i}
	}
	x.Result = result([]string{"oid"}, rows...)
	for _, k := range seq(1, 30) {
		tl.on(1).lookup(qUser, k)
		tl.on(2).lookup(qUser, 9100+k)
	}
	if fs := nPlusOnes(detect(Config{}, tl.events)); len(fs) != 0 {
		t.Fatalf("got %v, evidence %+v", summaries(fs), fs[0].Evidence)
	}
}

// BenchmarkObservePgbench is pgbench -S through the proxy: 8 connections,
// each one primary-key lookup after another with its key and one-row
// result (value evidence on), a window per connection until MaxWindowEvents.
func BenchmarkObservePgbench(b *testing.B) {
	tl := poolTimeline(8)
	for i := range 4000 {
		tl.on(uint64(1 + i%8))
		tl.lookup(qUser, 1+i%100000)
		tl.wait(20 * time.Microsecond)
	}
	events := tl.events
	b.ReportAllocs()
	for b.Loop() {
		d := New(Config{})
		for _, ev := range events {
			d.Observe(ev)
		}
		d.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// TestEvidenceOtherConnectionNeedsRowOrder: lookups on one connection whose
// keys are values of a list another connection of the pool just read are
// its loop when they walk the list in order (a loop through a pool); in no
// order of it, they are independent requests that hit some of its values by
// chance (a small table), and not proven from it.
func TestEvidenceOtherConnectionNeedsRowOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keys   []int
		proven bool
	}{
		{"in order", seq(1, 12), true},
		{"in order with one out of place", []int{1, 2, 3, 4, 5, 6, 12, 7, 8, 9, 10, 11}, true},
		{"in no order", []int{7, 2, 11, 4, 9, 1, 12, 5, 3, 10, 6, 8}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := poolTimeline(2)
			tl.source(qOrders, seq(1, 12))
			tl.on(2)
			for _, k := range tc.keys {
				tl.lookup(qUser, k)
				tl.wait(time.Millisecond)
			}
			var proven bool
			for _, f := range nPlusOnes(detect(Config{}, tl.events)) {
				if f.Evidence != nil && f.Evidence.Kind == EvidenceDataFlow {
					proven = true
				}
			}
			if proven != tc.proven {
				t.Errorf("proven from the other connection's list: %v, want %v", proven, tc.proven)
			}
		})
	}
}

func TestEvidenceLoopHopsThinlyOverABusyPool(t *testing.T) {
	// The list ran on connection 1; its 30 lookups went out one by one to
	// whichever of 8 busy connections was free: 3 or 4 on each, among other
	// requests' lookups of the same shape. No connection holds enough to
	// prove anything; the pieces joined in the pool scope do.
	tl := poolTimeline(8)
	for r := range 16 {
		tl.on(uint64(1+r%8)).lookup(qUser, 9000+r)
	}
	tl.on(1).source(qOrders, seq(1, 30))
	for i, k := range seq(1, 30) {
		tl.on(uint64(1+(i*3)%8)).lookup(qUser, k)
		tl.on(uint64(1+(i*5+1)%8)).lookup(qUser, 8000+i) // other requests
		tl.wait(500 * time.Microsecond)
	}
	d := New(Config{})
	var fs []Finding
	for _, ev := range tl.events {
		fs = append(fs, d.Observe(ev)...)
	}
	fs = nPlusOnes(append(fs, d.Flush()...))
	if len(fs) != 1 {
		t.Fatalf("got %v, want one n_plus_one", summaries(fs))
	}
	ev := fs[0].Evidence
	if ev == nil || ev.Kind != EvidenceDataFlow || ev.Matched != 30 || ev.SourceColumn != "user_id" || ev.Hops < 7 {
		t.Errorf("%s: evidence %+v, want data_flow over user_id, 30 matched, 7+ hops", summary(fs[0]), ev)
	}
	if fs[0].Source == nil || names[fs[0].Source.Fingerprint] != "orders" {
		t.Errorf("source %+v, want orders", fs[0].Source)
	}
	if got := d.Stats().Hopped; got != 1 {
		t.Errorf("Stats.Hopped = %d, want 1", got)
	}
}

func TestEvidenceChanceHitsOfAListAcrossAPoolDoNotJoin(t *testing.T) {
	// A list of 30 orders on connection 1, and independent requests over the
	// pool's 8 connections that look up users, 20 of them users of that list
	// by chance (a small table), in no order of its rows: not an N+1.
	tl := poolTimeline(8)
	tl.on(1).source(qOrders, seq(1, 30))
	chance := []int{17, 3, 28, 9, 22, 1, 14, 30, 6, 19, 11, 25, 2, 27, 8, 20, 13, 5, 24, 16}
	for i, k := range chance {
		tl.on(uint64(1+(i*3)%8)).lookup(qUser, k)
		tl.on(uint64(1+(i*5+1)%8)).lookup(qUser, 8000+i)
		tl.wait(500 * time.Microsecond)
	}
	for _, f := range nPlusOnes(detect(Config{}, tl.events)) {
		t.Errorf("flagged %s (evidence %+v)", summary(f), f.Evidence)
	}
}

func TestEvidenceHopsReportedOnceWithItsConnection(t *testing.T) {
	// The same loop proven on one connection (10 of its lookups there) and
	// present in pieces on two others: one report, not two.
	tl := poolTimeline(3)
	tl.on(1).source(qOrders, seq(1, 30))
	for i, k := range seq(1, 30) {
		tl.on(uint64(1+i%3)).lookup(qUser, k)
	}
	d := New(Config{})
	var fs []Finding
	for _, ev := range tl.events {
		fs = append(fs, d.Observe(ev)...)
	}
	fs = nPlusOnes(append(fs, d.Flush()...))
	if len(fs) != 1 {
		t.Fatalf("got %v, want one n_plus_one", summaries(fs))
	}
	st := d.Stats()
	if st.Found[KindNPlusOne] != st.Reported[KindNPlusOne]+st.Suppressed[KindNPlusOne] {
		t.Errorf("found %d, reported %d, suppressed %d", st.Found[KindNPlusOne], st.Reported[KindNPlusOne], st.Suppressed[KindNPlusOne])
	}
}

// TestRecentSourcesIndex checks the ring's value index against a search of
// every result in the ring, as results come and go: values repeated in a
// result and across results, results past the index's bound (searched one
// by one), and keys used before a result ended (not searched for).
func TestRecentSourcesIndex(t *testing.T) {
	for _, maxPostings := range []int{0, 12} {
		t.Run(fmt.Sprintf("bound %d", maxPostings), func(t *testing.T) {
			r := recentSources{max: 5, maxPostings: maxPostings}
			at := func(i int) nanos { return nanosOf(t0.Add(time.Duration(i) * time.Millisecond)) }
			for i := range 40 {
				// Rows (i, i%3, 7): a value of its own, one shared with
				// every third result, one in all, and i%3 twice.
				r.add(recentSource{stmt: qOrders, end: at(i), res: result([]string{"id", "kind", "all"}, []int{100 + i, i % 3, 7}, []int{200 + i, i % 3, 7})})
				if got, want := r.index.postings, indexedPostings(&r); got != want {
					t.Fatalf("after %d results: %d postings counted, %d in the index", i+1, got, want)
				}
				for _, v := range []int{100 + i, 100 + i - 3, 100 + i - 5, 0, 1, 2, 7, 999} {
					l := newLoopKeys()
					l.add(key(v), at(i), 100)
					l.add(key(v+1000), at(i), 100) // in no result
					got := r.candidates(l, noTime, nil)
					if want := scanRing(&r, v); !slices.Equal(got, want) {
						t.Fatalf("after %d results, key %d: candidates %v, want %v", i+1, v, got, want)
					}
				}
				l := newLoopKeys()
				l.add(key(7), at(i-1), 100)
				if got := r.candidates(l, at(i), nil); maxPostings == 0 && len(got) != 0 {
					t.Fatalf("a key used before since was searched for: %v", got)
				}
			}
			if maxPostings != 0 && len(r.unindexed) == 0 {
				t.Fatal("no result went past the index's bound")
			}
		})
	}
}

// scanRing is what candidates must return for a key used at any time: the
// seqs of the results in the ring that hold v, and of those not indexed,
// newest first.
func scanRing(r *recentSources, v int) []uint64 {
	k := key(v)[0]
	var out []uint64
	for q := r.added; q > 0; q-- {
		s := r.bySeq(q - 1)
		if s == nil {
			break
		}
		hit := !s.indexed
		hit = hit || slices.Contains(s.res.Digests(), k)
		if hit {
			out = append(out, s.seq)
		}
	}
	return out
}

// indexedPostings counts the ids the ring's index holds, value by value.
func indexedPostings(r *recentSources) int {
	n := 0
	for k := range r.index.keys.all() {
		for range r.index.ids(k) {
			n++
		}
	}
	return n
}

// BenchmarkObserveBusyScope is a busy service's N+1 through a pool: 50
// connections of one scope, interleaved, each request a list of 10 orders
// and a lookup of each order's user by the user_id it returned. Every
// closing window searches the scope's recent results for its loop's source
// (the ring holds its 1024 latest lists).
func BenchmarkObserveBusyScope(b *testing.B) {
	tl := poolTimeline(50)
	for req := range 2000 {
		tl.on(uint64(1 + req%50))
		users := make([]int, 10)
		for i := range users {
			users[i] = 1 + (req*7919+i*104729)%1000000
		}
		tl.source(qOrders, users)
		for _, u := range users {
			tl.lookup(qUser, u)
		}
		tl.wait(time.Millisecond)
	}
	events := tl.events
	b.ReportAllocs()
	for b.Loop() {
		d := New(Config{})
		for _, ev := range events {
			d.Observe(ev)
		}
		d.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// A recent source keeps a one-row result (possible with a threshold of 1)
// as a copy of its own, and a result of several rows as it is.
func TestKeepableRecentSource(t *testing.T) {
	one := result([]string{"id", "user_id"}, []int{7, 42})
	got := keepable(one)
	if got == one || &got.Digests()[0] == &one.Digests()[0] {
		t.Errorf("a one-row result was kept as it is, not copied")
	}
	if !slices.Equal(got.Digests(), one.Digests()) || !slices.Equal(got.Columns, one.Columns) ||
		got.Rows() != 1 || got.Truncated != one.Truncated {
		t.Errorf("copy %+v differs from %+v", got, one)
	}
	two := result([]string{"id"}, []int{7}, []int{8})
	if keepable(two) != two {
		t.Errorf("a result of two rows was copied")
	}
}
