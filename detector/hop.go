package detector

import (
	"cmp"
	"slices"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// Loops that hop connections: a loop that asks the pool for a connection at
// every lookup (pool.query in node-postgres, a Sequelize getter, a
// database/sql call per row) is served by whichever connection is free. On a
// busy pool each connection then runs a few of its lookups among other
// requests' lookups of the same shape, and no connection's window holds
// enough of them to prove anything: the loop is in pieces.
//
// So the pieces are joined in the pool scope. When a connection's window
// closes, each judged shape whose keys include values of a recent result of
// the scope (one big enough to drive a loop: 2×NPlusOneThreshold rows or
// more) adds those keys, with when they were used and the row they came
// from, to the scope's record of that (source result, shape). The union is an
// N+1 proven by the data flow when it walked the source, as a loop does: at
// least NPlusOneThreshold keys and at least half of the source column's
// distinct values, and taken in the order of the source's rows (see
// inRowOrder). Independent requests that look up some of a list's values by
// chance do neither: they hit a few of its values, in no order of its rows.
//
// The union is reported once it has settled: when no window of the scope
// that opened before its latest lookup is still open (one may hold more of
// its lookups), so that the finding counts the whole loop. It goes through
// the scope's cooldown like any connection's finding.
//
// Limits: a list of fewer than 2×NPlusOneThreshold distinct values is not
// joined across connections (a chance match of a short list is too easy);
// the record is kept per scope for the 64 latest (source, shape) pairs.

// maxHops bounds the (source result, shape) records kept per pool scope.
const maxHops = 64

// hopKey is one candidate loop across a scope's connections: the loop's shape
// over one recent result.
type hopKey struct {
	srcConn uint64
	srcEnd  nanos // the source's end
	srcFP   uint64
	loopFP  uint64
	col     string
	param   int
}

// hopLoop is the union of a hopKey's pieces. Once reported it is kept only
// to say so: what it held is let go.
type hopLoop struct {
	// uses are the loop's keys found in the source, first use each, in
	// the order they were found; used indexes them by key.
	uses     []hopUse
	used     keyTable[int32]
	conns    []uint64      // connections that ran a piece (at most maxCooldownConns)
	srcVals  int           // distinct values of the source column
	dur      time.Duration // the pieces' share of their shapes' time
	lastUse  nanos         // the latest first use of a key in uses; noTime before any
	reported bool          // reported, or part of a loop reported on one connection
	// pending is the finding of a union that walked its source, held
	// until it settles (Detector.hopsPending), and rebuilt as pieces come.
	pending *candidate
}

// pendingHop is a union waiting to settle.
type pendingHop struct {
	scope *scopeState
	h     *hopLoop
}

type hopUse struct {
	at  nanos
	row int
}

// hopsOf returns the scope's hop records, made on first use.
func (sc *scopeState) hopsOf() *lru.Cache[hopKey, *hopLoop] {
	if sc.hops == nil {
		sc.hops = lru.New[hopKey, *hopLoop](maxHops, 0, nil)
	}
	return sc.hops
}

// hop adds the pieces of loops that hopped connections that shape s of g's
// closing window holds to its scope's records, and holds a finding for a
// union that became a proven N+1 until it settles (settleHops). reported
// tells that s was reported as an N+1 in this window: the records it joins
// are marked reported, so the loop is not reported twice.
func (d *Detector) hop(g *group, w *window, s *shape, reported bool) {
	if g.traceID != "" || s.keys == nil || len(s.keys.pos) == 0 || s.paged() {
		return
	}
	threshold := d.cfg.NPlusOneThreshold
	scope, conn := scopeOf(s.conn), connID(s.conn)
	sc := d.scopeFor(g, s.conn)
	var srcStmt *fingerprint.Statement
	reject := func(col string) bool { return idCoincidence(s.stmt, srcStmt, col) }
	oldest := s.keys.first.add(-d.cfg.MaxWindow)
	d.seqs = d.recent.candidates(s.keys, oldest.add(-ringSlack), d.seqs)
	for _, q := range d.seqs {
		r := d.recent.bySeq(q)
		if r == nil || r.end < oldest.add(-ringSlack) {
			continue
		}
		if r.fp == s.stmt.ID || r.catalog || r.scope != scope || r.res == nil || r.res.Rows() < 2*threshold ||
			r.end > s.keys.last || s.keys.first.sub(r.end) > d.cfg.MaxWindow {
			continue
		}
		if !s.keys.usedIn(r.res, r.end, s.keys.last) {
			continue
		}
		srcStmt = r.stmt
		ks := keySource{fingerprint: r.stmt.ID, conn: r.conn, results: resultSet{one: r.res}, after: r.end}
		col, param, matched, _, srcVals := s.keys.match(&ks, reject, &d.scratch)
		if param < 0 || matched == 0 || srcVals < 2*threshold {
			continue
		}
		k := hopKey{srcConn: r.conn, srcEnd: r.end, srcFP: r.stmt.ID, loopFP: s.stmt.ID, col: col, param: param}
		h, ok := sc.hopsOf().Get(k)
		switch {
		case ok && h.reported:
			continue // nothing it holds is read again
		case !ok && reported:
			// A new union, all of whose keys (matched of them: at least
			// one) this reported loop holds: it is reported with it.
			sc.hopsOf().Add(k, &hopLoop{reported: true}, 0)
			continue
		case !ok:
			h = &hopLoop{srcVals: srcVals, lastUse: noTime}
			sc.hopsOf().Add(k, h, 0)
		}
		added := h.add(s.keys, param, r.res, col, r.end)
		if added == 0 {
			continue
		}
		if reported {
			h.markReported()
			continue
		}
		if len(h.conns) < maxCooldownConns && !slices.Contains(h.conns, conn) {
			h.conns = append(h.conns, conn)
		}
		if s.count > 0 {
			h.dur += s.dur * time.Duration(added) / time.Duration(s.count)
		}
		if !h.walked(threshold) {
			continue
		}
		if h.pending == nil {
			d.hopsPending = append(d.hopsPending, pendingHop{scope: sc, h: h})
		}
		c := d.hopFinding(g, w, s, r, h, col, param)
		c.finding.ownTags() // held past the window (see Event)
		h.pending = &c
	}
}

// settleHops reports, through their scopes' cooldowns, the held unions that
// settled: no window of their scope that opened before their latest lookup is
// still open.
func (d *Detector) settleHops(out []Finding) []Finding {
	if len(d.hopsPending) == 0 {
		return out
	}
	keep := d.hopsPending[:0]
	for _, p := range d.hopsPending {
		if p.h.pending == nil {
			continue // reported on one connection meanwhile
		}
		if d.scopeBusyBefore(p.scope, p.h.lastUse) {
			keep = append(keep, p)
			continue
		}
		c := *p.h.pending
		p.h.markReported()
		d.stats.Proven++
		d.stats.Hopped++
		out = d.report(out, &p.scope.cooldown, c)
	}
	clear(d.hopsPending[len(keep):])
	d.hopsPending = keep
	return out
}

// scopeBusyBefore reports whether a connection window of scope sc that
// opened at or before t is still open.
func (d *Detector) scopeBusyBefore(sc *scopeState, t nanos) bool {
	for _, g := range d.groups.All {
		if g.win != nil && g.scope == sc && g.traceID == "" && g.win.start <= t {
			return true
		}
	}
	return false
}

// markReported marks the union reported and lets go of what it held.
func (h *hopLoop) markReported() {
	*h = hopLoop{reported: true}
}

// add adds to the union the keys of l at position param that are values of
// column col of res, used at or after after, with their first use and row;
// it returns how many were new.
func (h *hopLoop) add(l *loopKeys, param int, res *pgwire.ResultKeys, col string, after nanos) int {
	c := slices.Index(res.Columns, col)
	if param >= len(l.pos) || c < 0 || c >= res.Width() {
		return 0
	}
	added := 0
	for row, v := range res.Column(c) {
		if v == valuekey.None {
			continue
		}
		at, ok := l.firstUse(param, v)
		if !ok || at < after {
			continue
		}
		i, isNew := h.used.put(v)
		if !isNew {
			if u := &h.uses[*i]; at < u.at {
				u.at = at
			}
			continue
		}
		*i = int32(len(h.uses))
		h.uses = append(h.uses, hopUse{at, row})
		if at > h.lastUse {
			h.lastUse = at
		}
		added++
	}
	return added
}

// walked reports whether the union is a loop over its source: it walked
// the source column (see walks) in the order of its rows.
func (h *hopLoop) walked(threshold int) bool {
	if !walks(len(h.uses), h.srcVals, threshold) {
		return false
	}
	uses := slices.Clone(h.uses)
	slices.SortStableFunc(uses, func(a, b hopUse) int { return cmp.Compare(a.at, b.at) })
	rows := make([]int, len(uses))
	for i, u := range uses {
		rows[i] = u.row
	}
	run := longestIncreasing(rows)
	return run >= threshold && float64(run) >= minRowOrder*float64(len(uses))
}

// hopFinding is the N+1 of a union of pieces, reported with the window that
// completed it.
func (d *Detector) hopFinding(g *group, w *window, s *shape, r *recentSource, h *hopLoop, col string, param int) candidate {
	n := len(h.uses)
	f := d.base(g, w, s, KindNPlusOne)
	f.Count = n
	f.DistinctParams = n
	f.DurationMS = millis(h.dur)
	f.Severity = SeverityWarning
	if n >= 10*d.cfg.NPlusOneThreshold || h.dur >= time.Second {
		f.Severity = SeverityCritical
	}
	f.Evidence = &Evidence{Kind: EvidenceDataFlow, SourceFingerprint: hexOf(r.stmt), SourceColumn: col,
		Param: param + 1, Matched: n, Of: n, Hops: len(h.conns)}
	if r.conn != connID(s.conn) {
		f.Evidence.SourceConnection = r.conn
	}
	f.Source = &Source{Fingerprint: hexOf(r.stmt), Query: r.stmt.Normalized, Rows: r.rows}
	return candidate{finding: f, id: s.stmt.ID, source: r.stmt.ID, loop: s.stmt, loopSrc: r.stmt}
}

// longestIncreasing is the length of the longest strictly increasing
// subsequence of rows (patience sorting).
func longestIncreasing(rows []int) int {
	var tails []int
	for _, row := range rows {
		i, _ := slices.BinarySearch(tails, row)
		if i == len(tails) {
			tails = append(tails, row)
		} else {
			tails[i] = row
		}
	}
	return len(tails)
}
