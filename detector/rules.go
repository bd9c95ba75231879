package detector

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
)

// candidate is a finding before the safelist and the cooldown.
type candidate struct {
	finding Finding
	id      uint64 // fingerprint ID
	source  uint64 // source fingerprint ID, 0 when none
	// loop and loopSrc, for an N+1 of a read, are the statements its
	// suggestion names: it is written by report, for the findings that
	// pass the cooldown (most of a busy loop's do not).
	loop, loopSrc *fingerprint.Statement
}

// evaluate applies the rules to a closed window. Findings come in the order
// of each shape's first execution, and per shape n_plus_one or
// duplicate_query, then unpaginated, then select_star, then
// leading_wildcard and deep_offset: deterministic.
func (d *Detector) evaluate(g *group, w *window) []candidate {
	var out []candidate
	d.loopsOf(g, w) // outer loops can source inner ones, whatever ran first
	for _, s := range w.shapes {
		if s.slowCount > 0 { // any statement, judged or not
			out = append(out, d.slow(g, w, s))
		}
		if !s.judged {
			continue
		}
		if isWrite(s.stmt.Facts) { // writes have rules of their own (writes.go)
			out = d.judgeWrite(g, w, s, out)
			continue
		}
		facts := s.stmt.Facts
		loud := false // in an N+1 or unpaginated: select_star gets louder
		// Independent requests over a pool: another connection of the same
		// scope ran this shape since the window began. Only a trace id or
		// the data flow can then tell a loop from a busy pool.
		busy := g.traceID == "" && d.concurrent(s.conn, s.stmt.ID, w.start.add(-d.cfg.IdleGap))

		reported := false
		if s.count >= d.cfg.NPlusOneThreshold && s.params.len() >= d.cfg.NPlusOneThreshold && !s.paged() {
			if c, ok := d.nPlusOne(g, w, s, busy); ok {
				out = append(out, c)
				loud, reported = true, true
			}
		}
		if !reported {
			if c, ok := d.duplicate(g, w, s, busy); ok {
				out = append(out, c)
			}
		}
		// A loop whose lookups hopped over the pool's connections: this
		// window holds a piece of it (see hop.go).
		d.hop(g, w, s, reported)
		d.noteMissingIndex(g, w, s, reported) // missingindex.go

		if !facts.HasLimit && !facts.AggregateOnly && s.maxRows >= d.cfg.UnpaginatedRows {
			f := d.base(g, w, s, KindUnpaginated)
			f.Count = s.bigCount
			f.DurationMS = millis(s.bigDur)
			f.Rows = s.maxRows
			f.Severity = SeverityWarning
			if s.maxRows >= 10*d.cfg.UnpaginatedRows {
				f.Severity = SeverityCritical
			}
			f.Suggestion = suggestUnpaginated(s.maxRows)
			out = append(out, candidate{finding: f, id: s.stmt.ID})
			loud = true
		}

		if facts.SelectStar {
			f := d.base(g, w, s, KindSelectStar)
			f.Count = s.count
			f.DurationMS = millis(s.dur)
			f.Severity = SeverityInfo
			if loud {
				f.Severity = SeverityWarning
			}
			f.Suggestion = suggestSelectStar(s.stmt)
			out = append(out, candidate{finding: f, id: s.stmt.ID})
		}
		out = d.patterns(g, w, s, out) // leading_wildcard, deep_offset
	}
	return out
}

// base fills the fields every finding about shape s has. Its Tags are the
// shape's own, shared, and it has no Location yet: report writes both for
// the findings that pass the cooldown (ownTags), and what holds a
// candidate past its window owns them first.
func (d *Detector) base(g *group, w *window, s *shape, kind Kind) Finding {
	conn := connectionOf(s.conn)
	return Finding{
		Time:            w.endAt,
		Kind:            kind,
		Fingerprint:     hexOf(s.stmt),
		Query:           s.stmt.Normalized,
		Tables:          tablesOf(s.stmt),
		WindowStart:     w.startAt,
		WindowEnd:       w.endAt,
		ApplicationName: conn.ApplicationName,
		Connection:      conn,
		TraceID:         g.traceID,
		Tags:            s.tags,
	}
}

// ownTags gives f a copy of its Tags and the Location they name.
func (f *Finding) ownTags() {
	f.Location = locationOf(f.Tags)
	f.Tags = maps.Clone(f.Tags)
}

// paged reports whether the repeats of s look like someone walking pages of
// one result (LIMIT n OFFSET k, keyset pagination) rather than an N+1: it has
// a LIMIT and either an execution used a constant OFFSET > 0, or it filters
// on no column by equality (WHERE id > $1 LIMIT n), or every execution but
// the last returned the same number (≥ 2) of rows and either the last
// returned fewer (a walk stops at a short or empty page) or the query has an
// OFFSET. A loop without OFFSET whose every run fills its LIMIT ("the 3
// latest items of each order") shows neither, and is an N+1.
func (s *shape) paged() bool {
	f := s.stmt.Facts
	if !f.HasLimit {
		return false
	}
	if s.offsetSeen || len(f.EqualityColumns) == 0 {
		return true
	}
	// Steady full pages: a walk with an OFFSET (bound, so its value is not
	// seen) may end on a full page; without one, only a short last page
	// tells a walk from a loop.
	return s.pageRows >= 2 && s.pageSteady && (s.lastRows < s.pageRows || f.HasOffset)
}

// loopsOf finds the shapes of w that are N+1s, to a fixed point, and marks
// them (shape.loop, window.loops): a loop proven by the union of another
// loop's results (a nested loop) is found even when its shape first ran
// before the outer loop's (another request ran it earlier on the
// connection). Each search's outcome is kept for the rules (evidenceOf).
func (d *Detector) loopsOf(g *group, w *window) {
	w.loops = 0
	for _, s := range w.shapes {
		s.loop = false
		if s.search != nil {
			*s.search = loopSearch{}
		}
	}
	for changed := true; changed; {
		changed = false
		for _, s := range w.shapes {
			if s.loop || !s.judged || s.count < d.cfg.NPlusOneThreshold || s.params.len() < d.cfg.NPlusOneThreshold || s.paged() {
				continue
			}
			busy := g.traceID == "" && d.concurrent(s.conn, s.stmt.ID, w.start.add(-d.cfg.IdleGap))
			if d.search(w, s).ok || !busy {
				s.loop, changed = true, true
				w.loops++
			}
		}
	}
}

// loopSearch is the outcome of loopEvidence for a shape, and how many
// other shapes of its window were loops when it ran: the search depends on
// the loops only through that set, which only grows while loopsOf runs, so
// the same count means the same outcome.
type loopSearch struct {
	done   bool
	others int
	ev     Evidence
	src    *fingerprint.Statement
	rows   int64
	ok     bool
}

// search runs loopEvidence for a in w and keeps its outcome.
func (d *Detector) search(w *window, a *shape) *loopSearch {
	if a.search == nil {
		a.search = &loopSearch{}
	}
	r := a.search
	r.others = w.otherLoops(a)
	r.ev, r.src, r.rows, r.ok = d.loopEvidence(w, a)
	r.done = true
	return r
}

// evidenceOf is loopEvidence for a once loopsOf has run: the outcome
// loopsOf kept when the loops it searched with are the final ones, else a
// new search.
func (d *Detector) evidenceOf(w *window, a *shape) (Evidence, *fingerprint.Statement, int64, bool) {
	r := a.search
	if r == nil || !r.done || r.others != w.otherLoops(a) {
		r = d.search(w, a)
	}
	return r.ev, r.src, r.rows, r.ok
}

// otherLoops counts the loops of w other than a.
func (w *window) otherLoops(a *shape) int {
	if a.loop {
		return w.loops - 1
	}
	return w.loops
}

// nPlusOne judges a shape that repeated with distinct parameters. With its
// keys found in an earlier result it is an N+1 proven by the data flow
// (severity as the counts say). Without that proof it is an N+1 on
// repetition alone when its group is one request (a trace id) or its
// connection's pool served nothing concurrently (severity at most warning:
// keys from the request itself, or no evidence on the wire); when the pool
// was busy (busy) it is not reported: independent requests look like this.
func (d *Detector) nPlusOne(g *group, w *window, s *shape, busy bool) (candidate, bool) {
	ev, proven, provenRows, ok := d.evidenceOf(w, s)
	if !ok && busy {
		d.stats.Concurrent++
		return candidate{}, false
	}
	f := d.base(g, w, s, KindNPlusOne)
	f.Count = s.count
	f.DistinctParams = s.params.len()
	f.DurationMS = millis(s.dur)
	f.Severity = SeverityWarning
	c := candidate{id: s.stmt.ID}
	var src *fingerprint.Statement
	var rows int64
	if ok {
		d.stats.Proven++
		f.Evidence = &ev
		src, rows = proven, provenRows
	} else {
		d.stats.Unproven++
		f.Evidence = &Evidence{Kind: EvidenceRepetition}
		if sh, r := w.source(s); sh != nil {
			src, rows = sh.stmt, r
		}
	}
	// Critical when the loop is long or slow and it is known what it looped
	// over (proven, or a source by row count); keys from the request alone
	// stay a warning.
	if src != nil && (s.count >= 10*d.cfg.NPlusOneThreshold || s.dur >= time.Second) {
		f.Severity = SeverityCritical
	}
	if src != nil {
		c.source = src.ID
		f.Source = &Source{Fingerprint: hexOf(src), Query: src.Normalized, Rows: rows}
	}
	c.finding, c.loop, c.loopSrc = f, s.stmt, src
	return c, true
}

// source finds the query an N+1 of shape a iterated over: walking back from
// a's first execution, the nearest statement of another shape that returned
// at least as many rows as a was repeated. A shape that itself repeats
// qualifies with its summed rows, and only when a ran more often than it (a
// loop nested in its loop, like a product per item per order); a loop beside
// a (A B A B over the same rows) does not qualify and the search goes on.
func (w *window) source(a *shape) (*shape, int64) {
	need := int64(a.count)
	for i := a.first - 1; i >= 0; i-- {
		st := w.seq[i]
		s := w.shapes[st.shape]
		if s == a {
			continue
		}
		if s.count == 1 {
			if st.rows >= need {
				return s, st.rows
			}
			continue
		}
		if s.rowsTotal >= need && a.count > s.count {
			return s, s.rowsTotal
		}
	}
	return nil, 0
}

// duplicate finds the parameter sets of s that ran DuplicateThreshold times
// or more.
//
// When the pool was busy (busy), a parameter set counts only for the
// executions it had in a row: independent requests repeat a popular key by
// chance, spread among other keys; one request that repeats a query runs it
// again and again on its connection.
func (d *Detector) duplicate(g *group, w *window, s *shape, busy bool) (candidate, bool) {
	var count, sets, most int
	var dur time.Duration
	for _, p := range s.params.all() {
		n := int(p.count)
		if busy {
			n = int(p.maxRun)
		}
		if n >= d.cfg.DuplicateThreshold {
			count += n
			sets++
			dur += p.dur
			most = max(most, n)
		}
	}
	if sets == 0 {
		return candidate{}, false
	}
	f := d.base(g, w, s, KindDuplicateQuery)
	f.Count = count
	f.DistinctParams = sets
	f.DurationMS = millis(dur)
	f.Severity = SeverityWarning
	if count >= 10*d.cfg.DuplicateThreshold {
		f.Severity = SeverityCritical
	}
	f.Suggestion = suggestDuplicate(most)
	return candidate{finding: f, id: s.stmt.ID}, true
}

// hexOf is the statement's fingerprint as 16 hex digits.
func hexOf(st *fingerprint.Statement) string {
	if len(st.Hex) == 16 {
		return st.Hex
	}
	return fmt.Sprintf("%016x", st.ID)
}

// tablesOf lists the tables read, then those written, without repeats;
// nil when there are none.
func tablesOf(st *fingerprint.Statement) []string {
	if st.Facts == nil {
		return nil
	}
	r, w := st.Facts.TablesRead, st.Facts.TablesWritten
	if len(r)+len(w) == 0 {
		return nil
	}
	ts := make([]string, 0, len(r)+len(w))
	for _, list := range [...][]string{r, w} {
		for _, t := range list {
			if !slices.Contains(ts, t) {
				ts = append(ts, t)
			}
		}
	}
	return ts
}

// slow is the slow_query finding of a shape with executions that reached
// SlowThreshold: a warning, critical from ten times the threshold.
func (d *Detector) slow(g *group, w *window, s *shape) candidate {
	f := d.base(g, w, s, KindSlowQuery)
	f.Count = s.slowCount
	f.DurationMS = millis(s.slowDur)
	f.MaxDurationMS = millis(s.slowMax)
	f.Rows = s.slowRows
	f.Severity = SeverityWarning
	if s.slowMax >= 10*d.cfg.SlowThreshold {
		f.Severity = SeverityCritical
	}
	f.Suggestion = suggestSlow(s.stmt, s.slowMax, s.slowRows)
	return candidate{finding: f, id: s.stmt.ID}
}
