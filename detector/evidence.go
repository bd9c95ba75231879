package detector

import (
	"cmp"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// Evidence says why a repeated query is called an N+1.
type Evidence struct {
	// Kind is EvidenceDataFlow when the loop's keys were found in the
	// values of one earlier result, EvidenceRepetition when only the
	// repetition was seen (keys from the request itself, or no value
	// evidence on the wire: a server log, the evidence turned off).
	Kind string `json:"kind"`
	// SourceFingerprint and SourceColumn name the result the keys came
	// from; Param is the loop's parameter (or literal) position, from 1.
	SourceFingerprint string `json:"source_fingerprint,omitempty"`
	SourceColumn      string `json:"source_column,omitempty"`
	Param             int    `json:"param,omitempty"`
	// Matched of Of distinct keys of the loop were found in the source.
	Matched int `json:"matched,omitempty"`
	Of      int `json:"of,omitempty"`
	// SourceConnection is the connection the source ran on, when it is not
	// the loop's own (a loop through a pool).
	SourceConnection uint64 `json:"source_connection,omitempty"`
	// Hops is the number of connections the loop's lookups ran on, when
	// they hopped over a pool's connections and were joined in its scope
	// (see hop.go); 0 for a loop judged on one connection or trace.
	Hops int `json:"hops,omitempty"`
}

// Evidence kinds.
const (
	EvidenceDataFlow   = "data_flow"
	EvidenceRepetition = "repetition"
)

// Bounds of the evidence kept per window shape.
const (
	// maxKeyPositions is how many parameter positions of a shape are
	// followed: lookups have one or two; a wide insert is not a loop.
	maxKeyPositions = 8
)

// loopKeysHint is how many keys a position's table, and the first uses,
// first have room for: a judged shape gets them at its first execution with
// keys, and a loop's worth of keys (tens) then costs no growth.
const loopKeysHint = 16

// loopKeys are the distinct keys a repeated shape used, per parameter
// position.
type loopKeys struct {
	// pos holds, per position, each key's first use there: its index in
	// uses.
	pos  []keyTable[int32]
	full bool // a position reached the detector's MaxParamsPerShape
	// skipped counts the executions with keys before any source was
	// known (see sourceKnown): their keys are not kept, since a key used
	// before its source cannot come from it, but count in each position's
	// "of" as if distinct, so that the proof stays as hard to reach.
	skipped int
	// first and last are the earliest and latest first uses of a key;
	// noTime before any.
	first, last nanos
	// uses are the first uses, in the order they were added: by time
	// unless unsorted (executions of a trace's connections, reordered),
	// when byTime sorts a copy (sortedUses) for usedIn.
	uses       []keyUse
	unsorted   bool
	sortedUses []keyUse
}

type keyUse struct {
	at  nanos
	key valuekey.Key
}

// newLoopKeys returns an empty loopKeys.
func newLoopKeys() *loopKeys {
	return &loopKeys{first: noTime, last: noTime}
}

// sourceKnown reports whether a result that could be the source of s's
// keys is known when x starts (at: x.Start as it came): one of another
// shape in the window, or a recent result of the pool scope (see
// loopEvidence). Until then a loop's keys cost nothing: pgbench -S, one
// lookup after another with no list anywhere, keeps none.
func (d *Detector) sourceKnown(g *group, s *shape, x *pgwire.Execution, at nanos) bool {
	w := g.win
	if w.sources > 1 || w.sources == 1 && s.results.len() == 0 {
		return true
	}
	last := d.scopeFor(g, x.Conn).lastSource
	return !last.isZero() && at.sub(last) <= d.cfg.MaxWindow
}

// add records one execution's keys.
func (l *loopKeys) add(keys []valuekey.Key, at nanos, max int) {
	if len(keys) > maxKeyPositions {
		keys = keys[:maxKeyPositions]
	}
	if len(l.pos) < len(keys) {
		l.pos = append(l.pos, make([]keyTable[int32], len(keys)-len(l.pos))...)
	}
	for i, k := range keys {
		if k == valuekey.None {
			continue
		}
		t := &l.pos[i]
		if t.len() >= max {
			if t.get(k) == nil {
				l.full = true
			}
			continue
		}
		if t.len() == 0 {
			// Sized for a loop's worth of keys: a shape repeated that
			// often grows its table less often.
			t.reserve(loopKeysHint)
			if l.uses == nil {
				l.uses = make([]keyUse, 0, loopKeysHint)
			}
		}
		use, added := t.put(k)
		if !added {
			continue
		}
		*use = int32(len(l.uses))
		if n := len(l.uses); n > 0 && at < l.uses[n-1].at {
			l.unsorted = true // executions of a trace's connections, reordered
		}
		l.uses = append(l.uses, keyUse{at, k})
		if l.first.isZero() || at < l.first {
			l.first = at
		}
		if at > l.last {
			l.last = at
		}
	}
}

// firstUse returns the start of the first use of k at position p.
func (l *loopKeys) firstUse(p int, k valuekey.Key) (nanos, bool) {
	if i := l.pos[p].get(k); i != nil {
		return l.uses[*i].at, true
	}
	return noTime, false
}

// byTime returns the first uses in the order of their times.
func (l *loopKeys) byTime() []keyUse {
	if !l.unsorted {
		return l.uses
	}
	if len(l.sortedUses) != len(l.uses) {
		l.sortedUses = append(l.sortedUses[:0], l.uses...)
		slices.SortFunc(l.sortedUses, func(a, b keyUse) int { return cmp.Compare(a.at, b.at) })
	}
	return l.sortedUses
}

// positionUses yields the first uses at position p, in the order they were
// added.
func (l *loopKeys) positionUses(p int) iter.Seq[keyUse] {
	return func(yield func(keyUse) bool) {
		t := &l.pos[p]
		for i, u := range l.uses {
			if j := t.get(u.key); j != nil && int(*j) == i && !yield(u) {
				return
			}
		}
	}
}

// keySource is a candidate source of a loop's keys: the values of one
// execution's result, or the union of the results of all executions of a
// shape in the window (the outer loop of a nested loop).
type keySource struct {
	fingerprint uint64
	conn        uint64
	results     resultSet
	// after is when the source's values were first known: a key used
	// before it cannot have been read from it. within, when set, is how soon
	// after that the loop's first matched key must be used: a loop reads
	// its source's keys right away.
	after  nanos
	within time.Duration
}

// match finds, over every parameter position of the loop and every column
// of the source (the union of its results, column by column: the columns of
// one shape are the same in every result), the pair that shares the most
// distinct keys used after the source was known; it returns the column, the
// position (0-based), matched, of (the distinct keys at that position) and
// srcVals (the distinct values of that column). sc is its working memory.
func (l *loopKeys) match(src *keySource, reject func(col string) bool, sc *matchScratch) (col string, param, matched, of, srcVals int) {
	order := sc.cols[:0] // the source's columns, in order of first appearance
	set := src.results
	for i := range set.len() {
		for _, name := range set.columns(i) {
			if !slices.Contains(order, name) {
				order = append(order, name)
			}
		}
	}
	param = -1
	vals, found := sc.vals[:0], sc.found[:0]
	if words := (len(l.uses) + 63) / 64; len(sc.seen) < words {
		sc.seen = make([]uint64, words)
	}
	for _, name := range order {
		if reject(name) {
			continue
		}
		vals = vals[:0]
		for i := range set.len() {
			for _, v := range set.column(i, slices.Index(set.columns(i), name)) {
				if v != valuekey.None {
					vals = append(vals, v)
				}
			}
		}
		distinct := -1 // the column's distinct values, counted when needed
		for p := range l.pos {
			keys := &l.pos[p]
			found = found[:0] // the keys found, once each, by their index in uses
			first := noTime
			for _, v := range vals {
				if i := keys.get(v); i != nil {
					if at := l.uses[*i].at; at >= src.after {
						if w, bit := *i/64, uint64(1)<<(*i%64); sc.seen[w]&bit == 0 {
							sc.seen[w] |= bit
							found = append(found, *i)
						}
						if first.isZero() || at < first {
							first = at
						}
					}
				}
			}
			for _, i := range found {
				sc.seen[i/64] = 0
			}
			n := len(found)
			if src.within > 0 && first.sub(src.after) > src.within {
				continue
			}
			total := keys.len() + l.skipped
			if n > matched || n == matched && n > 0 && total < of {
				if distinct < 0 {
					sc.distinct = append(sc.distinct[:0], vals...)
					distinct = countDistinct(sc.distinct)
				}
				col, param, matched, of, srcVals = name, p, n, total, distinct
			}
		}
	}
	clear(order) // the names are the results': keep none alive
	sc.cols, sc.vals, sc.found = order[:0], vals, found
	return col, param, matched, of, srcVals
}

// matchScratch is match's working memory, kept from one call to the next
// (Detector.scratch): the columns, a column's values, a copy of them to
// count them, and the keys found (by their index in loopKeys.uses, each
// marked in seen, a bit per index, while it is counted).
type matchScratch struct {
	cols           []string
	vals, distinct []valuekey.Key
	found          []int32
	seen           []uint64
}

// countDistinct sorts ks and returns how many distinct keys it holds.
func countDistinct(ks []valuekey.Key) int {
	slices.Sort(ks)
	return len(slices.Compact(ks))
}

// proves reports whether matched of of keys prove the data flow: at least
// threshold keys (as many as make a loop: a parameter that takes one value,
// a LIMIT, proves nothing) and at least half of the loop's keys. Digests of
// small integers match by chance across unrelated columns; half of a
// loop's keys do not.
func proves(matched, of, threshold int) bool {
	return matched >= max(threshold, 1) && 2*matched >= of
}

// walks reports whether the loop read at least half of the distinct values
// of a source column that has at least twice threshold of them: a loop that
// walked the source, even on a connection that also served other requests
// of the same shape (whose keys then make "of" large). Used only for
// sources on the loop's own connection, in its window.
func walks(matched, srcVals, threshold int) bool {
	return matched >= max(threshold, 1) && srcVals >= 2*threshold && 2*matched >= srcVals
}

// maxScopes bounds the pool scopes whose concurrency is followed, and
// maxScopeShapes the shapes per scope: the least recently active go first.
const (
	maxScopes      = 1024
	maxScopeShapes = 4096
)

// scopeKey is a pool scope: the connections one connection pool opens look
// alike in all of these.
type scopeKey struct {
	user, database, application, client string
}

func scopeOf(c *pgwire.ConnInfo) scopeKey {
	if c == nil {
		return scopeKey{}
	}
	return scopeKey{c.User, c.Database, c.ApplicationName, c.ClientAddr}
}

// scopeState remembers, per shape, the connections of the scope that ran it
// lately.
type scopeState struct {
	shapes  *lru.Cache[uint64, *shapeConns]
	evicted bool // dropped from Detector.scopes: groups holding it look again
	// lastSource is when the scope's latest result went into the recent
	// sources (Detector.recent); noTime before any.
	lastSource nanos
	// cooldown is the report cooldown of the scope's connection groups: one
	// loop served by a pool of ten is reported once, not once per
	// connection (see cooldownReport).
	cooldown cooldowns
	// hops are the pieces of loops that hopped over the scope's
	// connections (see hop.go), made on first use.
	hops *lru.Cache[hopKey, *hopLoop]
}

// shapeConns are the last few connections that ran a shape, with when they
// last did (noTime: a free slot).
type shapeConns struct {
	conn [4]uint64
	last [4]nanos
}

// newShapeConns returns a shapeConns with every slot free.
func newShapeConns() *shapeConns {
	return &shapeConns{last: [4]nanos{noTime, noTime, noTime, noTime}}
}

func (s *shapeConns) saw(conn uint64, t nanos) {
	oldest := 0
	for i := range s.conn {
		if s.conn[i] == conn {
			if t > s.last[i] {
				s.last[i] = t
			}
			return
		}
		if s.last[i] < s.last[oldest] {
			oldest = i
		}
	}
	s.conn[oldest], s.last[oldest] = conn, t
}

// others reports whether a connection other than conn ran the shape at or
// after since.
func (s *shapeConns) others(conn uint64, since nanos) bool {
	for i := range s.conn {
		if s.conn[i] != conn && !s.last[i].isZero() && s.last[i] >= since {
			return true
		}
	}
	return false
}

// scopeSawEvery is how often a shape that keeps running in a window is
// recorded in its pool scope: the concurrency test looks an idle gap back,
// so a record a few milliseconds old serves as well as a fresh one, and a
// pgbench-like stream of one shape costs one scope lookup per interval, not
// one per execution.
const scopeSawEvery = 5 * time.Millisecond

// sawShape records that conn ran shape fp at t.
// The group remembers its connection's scope, so the scope key (four
// strings) is hashed once per connection, not per execution.
func (d *Detector) sawShape(g *group, c *pgwire.ConnInfo, fp uint64, t nanos) {
	sc := d.scopeFor(g, c)
	sh, ok := sc.shapes.Get(fp)
	if !ok {
		sh = newShapeConns()
		sc.shapes.Add(fp, sh, 0)
	}
	sh.saw(connID(c), t)
}

// scopeFor returns the state of c's pool scope, through g's cache.
func (d *Detector) scopeFor(g *group, c *pgwire.ConnInfo) *scopeState {
	sc := g.scope
	if sc == nil || sc.evicted || g.scopeConn != c {
		k := scopeOf(c)
		var ok bool
		if sc, ok = d.scopes.Get(k); !ok {
			sc = &scopeState{shapes: lru.New[uint64, *shapeConns](maxScopeShapes, 0, nil), lastSource: noTime}
			d.scopes.Add(k, sc, 0)
		}
		g.scope, g.scopeConn = sc, c
	}
	return sc
}

// concurrent reports whether another connection of c's pool scope ran shape
// fp at or after since: the sign of independent requests served
// concurrently over a pool.
func (d *Detector) concurrent(c *pgwire.ConnInfo, fp uint64, since nanos) bool {
	sc, ok := d.scopes.Peek(scopeOf(c))
	if !ok {
		return false
	}
	sh, ok := sc.shapes.Peek(fp)
	return ok && sh.others(connID(c), since)
}

func connID(c *pgwire.ConnInfo) uint64 {
	if c == nil {
		return 0
	}
	return c.ID
}

// recentSource is one result kept as a candidate source for loops on other
// connections of its scope.
type recentSource struct {
	scope scopeKey
	conn  uint64
	end   nanos
	stmt  *fingerprint.Statement
	rows  int64
	res   *pgwire.ResultKeys
	seq   uint64 // its place in the order results were added
	fp    uint64 // stmt.ID, read without following stmt
	// catalog tells that stmt reads only system catalogs (catalogOnly):
	// never a loop's source.
	catalog bool
	// indexed tells that its values are in recentSources.index; when the
	// index was full it is in recentSources.unindexed instead.
	indexed bool
}

// recentSources is a ring of the latest results with enough rows to be the
// source of a loop, with an index from each value to the results that hold
// it: a loop's keys name its candidate sources, so that the search costs the
// keys looked up, not the ring's length (a busy service fills the ring with
// lists in well under MaxWindow, and every closing window searches it).
type recentSources struct {
	buf  []recentSource
	next int
	max  int
	// added counts the results added: the seq of the next one. The ring
	// holds seqs added-len(buf) to added-1, the one of seq q at q%max.
	added uint64
	// index maps each value of an indexed result to the seqs of the
	// results that hold it (modulo 2^32: the ring holds fewer results than
	// that), oldest first: results leave in the order they came, so the
	// oldest is the first to go (see keyIndex).
	index keyIndex
	// unindexed are the seqs, oldest first, of the results in the ring
	// that did not fit in the index (maxPostings, maxRingPostings when 0):
	// every search considers them.
	unindexed   []uint64
	maxPostings int
}

// maxRingPostings bounds the index of the recent results: at most 5 MB in
// all (keyIndex: at most 2^18 slots of 16 bytes for as many distinct values,
// 8 bytes for each further result holding a value). A ring of lists of tens
// of rows fits many times over; past it results are searched one by one, as
// they all were before the index.
const maxRingPostings = 1 << 17

// bySeq returns the result of seq q, or nil once it has left the ring.
func (r *recentSources) bySeq(q uint64) *recentSource {
	if q >= r.added || r.added-q > uint64(len(r.buf)) {
		return nil
	}
	return &r.buf[q%uint64(r.max)]
}

// ringSlack is how far out of the order of their ends results may reach the
// ring (see loopEvidence).
const ringSlack = 250 * time.Millisecond

func (r *recentSources) add(s recentSource) {
	s.seq, s.fp, s.catalog = r.added, s.stmt.ID, catalogOnly(s.stmt)
	r.added++
	limit := r.maxPostings
	if limit == 0 {
		limit = maxRingPostings
	}
	if n := resultKeyCount(s.res); r.index.postings+n <= limit {
		r.indexResult(&s)
	} else {
		r.unindexed = append(r.unindexed, s.seq)
	}
	if len(r.buf) < r.max {
		r.buf = append(r.buf, s)
		return
	}
	r.evict(&r.buf[r.next])
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
}

// resultKeyCount is how many values of res the index would take at most.
func resultKeyCount(res *pgwire.ResultKeys) int {
	if res == nil {
		return 0
	}
	return len(res.Digests())
}

// runValues yields the values of res that the index holds: each column's
// values but None, a value repeated in the rows right after it (a status, a
// tenant) once. indexResult and evict walk the same ones.
func runValues(res *pgwire.ResultKeys) iter.Seq[valuekey.Key] {
	return func(yield func(valuekey.Key) bool) {
		for c := range res.Width() {
			prev := valuekey.None
			for _, v := range res.Column(c) {
				if v == valuekey.None || v == prev {
					continue
				}
				prev = v
				if !yield(v) {
					return
				}
			}
		}
	}
}

// indexResult adds s's values to the index.
func (r *recentSources) indexResult(s *recentSource) {
	s.indexed = true
	id := uint32(s.seq)
	for v := range runValues(s.res) {
		r.index.add(v, id) // a value repeated in the result is added once
	}
}

// evict takes the oldest result, s, out of the index.
func (r *recentSources) evict(s *recentSource) {
	if !s.indexed {
		if len(r.unindexed) > 0 && r.unindexed[0] == s.seq {
			r.unindexed = r.unindexed[1:]
		}
		return
	}
	id := uint32(s.seq)
	for v := range runValues(s.res) {
		r.index.dropOldest(v, id) // false for a repeated value already taken out
	}
}

// seqOf is the seq of a result in the ring from its id in the index: the
// seqs the ring holds are the added ones, less than 2^32 back.
func (r *recentSources) seqOf(id uint32) uint64 {
	return r.added - uint64(uint32(r.added)-id)
}

// candidates appends to out the seqs of the results in the ring that hold
// one of the keys l used at or after since, and of those not indexed,
// newest first and each once: the only results that can be the source of
// l's keys.
func (r *recentSources) candidates(l *loopKeys, since nanos, out []uint64) []uint64 {
	out = out[:0]
	if len(r.buf) == 0 {
		return out
	}
	for _, u := range l.uses {
		if u.at < since {
			continue
		}
		for id := range r.index.ids(u.key) {
			out = append(out, r.seqOf(id))
		}
	}
	out = append(out, r.unindexed...)
	slices.Sort(out) // ordered: faster than a comparison function
	out = slices.Compact(out)
	slices.Reverse(out)
	return out
}

// loopEvidence looks for the source of shape a's keys: first among the
// results of the window (single executions that started before the loop,
// and the union of the results of an earlier shape that is itself a loop in
// this window), then among the recent results of a's pool scope on other
// connections. A source must have run before the loop's latest execution
// (a loop's shape may have run before, for another request), and at most
// MaxWindow before its first.
// It returns the evidence and the source statement, or ok false.
func (d *Detector) loopEvidence(w *window, a *shape) (ev Evidence, src *fingerprint.Statement, rows int64, ok bool) {
	if a.keys == nil || len(a.keys.pos) == 0 {
		return Evidence{}, nil, 0, false
	}
	best := Evidence{Kind: EvidenceDataFlow}
	local := true                      // sources in the window: the connection's own recent past
	var srcStmt *fingerprint.Statement // the candidate being tried
	reject := func(col string) bool { return idCoincidence(a.stmt, srcStmt, col) }
	try := func(col string, param, matched, of, srcVals int) bool {
		if param < 0 {
			return false
		}
		if !proves(matched, of, d.cfg.NPlusOneThreshold) &&
			!(local && walks(matched, srcVals, d.cfg.NPlusOneThreshold)) {
			return false
		}
		if matched > best.Matched || matched == best.Matched && of < best.Of {
			best.SourceColumn, best.Param, best.Matched, best.Of = col, param+1, matched, of
			return true
		}
		return false
	}
	for _, s := range w.shapes {
		if s == a || s.first >= a.last || s.results.len() == 0 {
			continue
		}
		if s.count > 1 && !s.loop {
			continue // a repeated shape is a source only as an outer loop
		}
		if catalogOnly(s.stmt) {
			continue
		}
		ks := keySource{fingerprint: s.stmt.ID, results: resultSet{log: &s.results}, after: s.firstEnd}
		srcStmt = s.stmt
		col, param, matched, of, srcVals := a.keys.match(&ks, reject, &d.scratch)
		if param >= 0 && !strongMatch(matched, of) && !a.keys.inRowOrder(param, ks.results, col, ks.after, d.cfg.NPlusOneThreshold) {
			continue // some of the keys of a busy connection's lookups, in no order of the list: chance
		}
		if try(col, param, matched, of, srcVals) {
			src, rows = s.stmt, s.rowsTotal
			best.SourceFingerprint, best.SourceConnection = hexOf(s.stmt), 0
		}
	}
	if src == nil {
		if a.ring != nil { // searched already: the recent results do not depend on loops
			return a.ring.ev, a.ring.src, a.ring.rows, a.ring.src != nil
		}
		defer func() { a.ring = &ringResult{ev: ev, src: src, rows: rows} }()
		local = false
		scope, conn := scopeOf(a.conn), connID(a.conn)
		// Newest first: the ring is in the order results arrived, which is
		// the order of their ends but for the analysis queue's reordering
		// across connections (milliseconds; ringSlack allows for it), so
		// the search stops at the first result too old to be the source.
		oldest := a.keys.first.add(-d.cfg.IdleGap - ringSlack)
		d.seqs = d.recent.candidates(a.keys, oldest, d.seqs)
		for _, q := range d.seqs {
			r := d.recent.bySeq(q)
			if r == nil || r.end < oldest {
				continue
			}
			if r.scope != scope || r.end > a.lastStart || a.start.sub(r.end) > d.cfg.MaxWindow {
				continue
			}
			// Its keys must be read within the idle gap after it ended
			// (see within below): skip the results no key use is near,
			// and those holding none of the keys used then.
			if r.end > a.keys.last || a.keys.first.sub(r.end) > d.cfg.IdleGap || !a.keys.usedIn(r.res, r.end, r.end.add(d.cfg.IdleGap)) {
				continue
			}
			if r.conn == conn && r.end >= w.start {
				continue // in this window: judged above
			}
			if r.catalog {
				continue
			}
			// A loop reads its source's keys right away: within the idle
			// gap. (Not the stall gap: half a second after another
			// request's list, independent lookups of some of its ids are
			// too common to be taken for its loop.)
			ks := keySource{fingerprint: r.stmt.ID, conn: r.conn, results: resultSet{one: r.res}, after: r.end, within: d.cfg.IdleGap}
			srcStmt = r.stmt
			col, param, matched, of, srcVals := a.keys.match(&ks, reject, &d.scratch)
			if param >= 0 && (r.conn != conn || !strongMatch(matched, of)) && !a.keys.inRowOrder(param, ks.results, col, r.end, d.cfg.NPlusOneThreshold) {
				continue // another connection's list, and lookups in no order of it: chance
			}
			if try(col, param, matched, of, srcVals) {
				src, rows = r.stmt, r.rows
				best.SourceFingerprint = hexOf(r.stmt)
				best.SourceConnection = 0
				if r.conn != conn {
					best.SourceConnection = r.conn
				}
			}
		}
	}
	if src == nil {
		return Evidence{}, nil, 0, false
	}
	return best, src, rows, true
}

// ringResult is the outcome of a shape's search of the recent results, kept
// for the window's evaluation: loopsOf and nPlusOne both ask. A window
// opened again after a stall forgets it (forgetRingSearches): its next
// evaluation has more keys to search for.
type ringResult struct {
	ev   Evidence
	src  *fingerprint.Statement
	rows int64
}

// usedIn reports whether a key first used between from and to is a value
// of res: the cheap test that rules out most recent results.
func (l *loopKeys) usedIn(res *pgwire.ResultKeys, from, to nanos) bool {
	var near [8]valuekey.Key
	n := 0
	uses := l.byTime()
	i, _ := slices.BinarySearchFunc(uses, from, func(u keyUse, t nanos) int { return cmp.Compare(u.at, t) })
	for ; i < len(uses) && uses[i].at <= to; i++ {
		if u := uses[i]; u.at >= from {
			if n == len(near) {
				return true // many keys used then: let match decide
			}
			near[n] = u.key
			n++
		}
	}
	if n == 0 || res == nil {
		return false
	}
	for _, v := range res.Digests() {
		for _, k := range near[:n] {
			if v == k {
				return true
			}
		}
	}
	return false
}

// literalKeys are the digests of the statement's literals.
func literalKeys(st *fingerprint.Statement) []valuekey.Key {
	if st == nil {
		return nil
	}
	return st.LiteralKeys
}

// idCoincidence reports a match that means nothing: a loop that looks rows
// up by their own primary key ("id") whose keys were found in the "id"
// column of another table. Serial ids of different tables overlap, so
// users.id = orders.id is chance, while users.id = orders.user_id, or
// order_items.order_id = orders.id, is a reference.
func idCoincidence(loop, src *fingerprint.Statement, col string) bool {
	if src == nil || !strings.EqualFold(col, "id") || loop.Facts == nil || src.Facts == nil {
		return false
	}
	for _, c := range loop.Facts.EqualityColumns {
		if !strings.EqualFold(lastPart(c), "id") {
			return false
		}
	}
	for _, ts := range [...][]string{loop.Facts.TablesRead, loop.Facts.TablesWritten} { // a write's table is written, not read
		for _, t := range ts {
			for _, u := range src.Facts.TablesRead {
				if sameNorm(t, u) {
					return false
				}
			}
		}
	}
	return len(loop.Facts.EqualityColumns) > 0
}

func lastPart(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// catalogOnly reports a statement that reads only system catalogs: a
// driver's type lookup (oids are small integers, like application ids), never
// the source of an application's loop.
func catalogOnly(st *fingerprint.Statement) bool {
	if st.Facts == nil || len(st.Facts.TablesRead) == 0 {
		return false
	}
	for _, t := range st.Facts.TablesRead {
		if !isCatalog(t) {
			return false
		}
	}
	return true
}

// minRowOrder is the share of a loop's matched keys that must follow the
// order of the source's rows when the match alone could be chance: a loop
// walks its list in order (a pool hands each connection an ordered part of
// it), while independent lookups that happen to hit some of a list's values
// (a small table, a busy connection) come in any order. It is asked of
// every source on another connection, and of a source on the loop's own
// connection when the match is not strong (see strongMatch).
const minRowOrder = 0.8

// strongMatch reports a match that chance does not make: nine in ten of the
// loop's keys are the source's values. A loop over a set or a hash map
// walks its list in no order, and keeps this.
func strongMatch(matched, of int) bool { return 10*matched >= 9*of }

// inRowOrder reports whether the keys at position param that are values of
// the column col of results (in the order they ran, their rows numbered on
// from one to the next), taken in the order of their first use after after,
// follow those rows: the longest run of them in increasing row order covers
// at least minRowOrder of them, and at least threshold (so a short loop must
// be in order throughout: one random order in 120 puts 5 keys in order, one
// in 7 puts 4 of them).
func (l *loopKeys) inRowOrder(param int, results resultSet, col string, after nanos, threshold int) bool {
	if param >= len(l.pos) {
		return false
	}
	rowOf := make(map[valuekey.Key]int)
	base := 0
	for i := range results.len() {
		for row, v := range results.column(i, slices.Index(results.columns(i), col)) {
			if _, dup := rowOf[v]; !dup && v != valuekey.None {
				rowOf[v] = base + row
			}
		}
		base += results.rows(i)
	}
	type use struct {
		at  nanos
		row int
	}
	var uses []use
	for u := range l.positionUses(param) {
		if row, ok := rowOf[u.key]; ok && u.at >= after {
			uses = append(uses, use{u.at, row})
		}
	}
	if len(uses) == 0 {
		return false
	}
	slices.SortStableFunc(uses, func(a, b use) int { return cmp.Compare(a.at, b.at) })
	rows := make([]int, len(uses))
	for i, u := range uses {
		rows[i] = u.row
	}
	run := longestIncreasing(rows)
	return run >= threshold && float64(run) >= minRowOrder*float64(len(uses))
}
