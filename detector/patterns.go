package detector

import (
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// Patterns of one statement, seen at the wire without the schema:
//
//   - leading_wildcard: a LIKE or ILIKE (~~, ~~*) whose pattern starts with
//     % or _ cannot use a B-tree index on the column: PostgreSQL reads every
//     row (or every index entry) and tests each. The pattern is known from
//     the text when it is a literal (fingerprint.Facts.LeadingWildcardLike:
//     '%john%', '%' || $1) and, when it is a bound parameter
//     (Facts.LikeParams), from the one bit per parameter the tracker passes
//     (pgwire.Execution.ParamWildcard): whether the value's first byte is %
//     or _, never the value. Whether it hurts depends on the table's size and
//     on a trigram or full-text index, which the wire does not show. Without
//     an inspection connection the finding says the query may scan the
//     table, with severity info. With one (Config.Inspect), an occurrence on
//     a read is held back and its shape asked for through the missing_index
//     rule's requests (Wants, Inspected, missingindex.go), and judged on the
//     generic plan: a pattern bound as $n (or '%' || $n) has no constant
//     prefix, so the plan shows what serves the LIKE whatever its value. A
//     Seq Scan of a table of at least MissingIndexRows rows whose filter
//     matches one of the statement's LIKE columns with ~~ or ~~*
//     (ScanFacts.LikeColumns) reads every row: a warning that says so, with
//     the table's size and the pg_trgm index for the column. Anything else
//     (a trigram or full-text index serves it, the table is small, or the
//     filter is not a LIKE of the column: a NOT LIKE, which no index
//     serves) is not reported. When no plan can say (the inspection
//     failed: at its answer; no answer within reaskAfter, 30s of event time
//     after the window, when the request was dropped or the connection is
//     down: at the next Advance; the detector's end: Unanswered) the
//     occurrence is reported as without an inspection, "may" at info. A
//     write or a locking read is never planned, so its occurrence is the
//     "may" finding at once.
//   - deep_offset: OFFSET n makes the server read and throw away n rows
//     before the page, so each page of a walk costs more than the last. An
//     OFFSET of at least DeepOffset (1000) is reported, as a literal
//     (Facts.Offset) or as a bound parameter (Facts.OffsetParam) whose value
//     the tracker saw be an integer of at least pgwire.LargeParam (one bit,
//     Execution.ParamLarge; judged only while DeepOffset is at most
//     pgwire.LargeParam). Warning; critical when a window walked
//     NPlusOneThreshold deep pages, or a literal OFFSET reached 10 ×
//     DeepOffset.

// notePatterns counts what one execution of the judged shape s shows.
func (d *Detector) notePatterns(w *window, s *shape, x *pgwire.Execution, st *fingerprint.Statement, dur time.Duration) {
	f := st.Facts
	if isWrite(f) {
		d.noteWrite(w, s, x, st, dur)
	}
	p := &s.pat
	if f.LeadingWildcardLike || f.LikeParams&x.ParamWildcard != 0 {
		p.wild++
		p.wildDur += dur
	}
	if f.HasOffset && d.deepOffset(x, f) {
		p.deep++
		p.deepDur += dur
		p.deepest = max(p.deepest, f.Offset)
	}
}

// deepOffset reports whether the OFFSET of an execution is deep.
func (d *Detector) deepOffset(x *pgwire.Execution, f *fingerprint.Facts) bool {
	if f.Offset >= d.cfg.DeepOffset {
		return true
	}
	n := f.OffsetParam
	return n > 0 && d.cfg.DeepOffset <= pgwire.LargeParam && x.ParamLarge>>(n-1)&1 != 0
}

// patterns reports leading_wildcard and deep_offset for shape s of w; a
// leading_wildcard that waits for its inspection is held back instead.
func (d *Detector) patterns(g *group, w *window, s *shape, out []candidate) []candidate {
	p := &s.pat
	if p.wild > 0 {
		f := d.base(g, w, s, KindLeadingWildcard)
		f.Count = p.wild
		f.DurationMS = millis(p.wildDur)
		f.Severity = SeverityInfo
		f.Suggestion = suggestLeadingWildcard(s.stmt)
		if c := (candidate{finding: f, id: s.stmt.ID}); !d.awaitInspection(g, w, s, c) {
			out = append(out, c)
		}
	}
	if p.deep > 0 {
		f := d.base(g, w, s, KindDeepOffset)
		f.Count = p.deep
		f.DurationMS = millis(p.deepDur)
		f.Severity = SeverityWarning
		if p.deep >= d.cfg.NPlusOneThreshold || p.deepest >= 10*d.cfg.DeepOffset {
			f.Severity = SeverityCritical
		}
		f.Suggestion = suggestDeepOffset(s.stmt, d.cfg.DeepOffset)
		out = append(out, candidate{finding: f, id: s.stmt.ID})
	}
	return out
}

// Bounds of the leading_wildcard occurrences that wait for an inspection.
const (
	// maxWildOccurrences bounds the occurrences held per shape; past it an
	// occurrence's executions are added to the latest one held.
	maxWildOccurrences = 8
	// maxOrphans bounds the occurrences of forgotten shapes kept until the
	// next Advance reports them; past it they are dropped.
	maxOrphans = 64
)

// wildOccurrence is one window's leading_wildcard waiting for its shape's
// inspection: the "may" finding as the rule made it, and the cooldown table
// it goes through.
type wildOccurrence struct {
	c    candidate
	cool *cooldowns
}

// pendingWild is what a shape's leading_wildcard occurrences wait with.
type pendingWild struct {
	columns []string // the statement's LIKE columns (Facts.LikeColumns)
	occ     []wildOccurrence
}

// awaitInspection holds the leading_wildcard candidate c of shape s back
// until the shape's inspection answers, and asks for it; it reports whether
// it did: only with Config.Inspect and for a read that may be planned.
func (d *Detector) awaitInspection(g *group, w *window, s *shape, c candidate) bool {
	if !d.cfg.Inspect || !inspectable(s.stmt) {
		return false
	}
	// A window opened again after a stall holds back only once, as close
	// reports only once (stall.go).
	k := cooldownKey{KindLeadingWildcard, c.id, 0}
	if _, again := w.found[k]; again {
		return true
	}
	if g.prev == w {
		if w.found == nil {
			w.found = make(map[cooldownKey]struct{})
		}
		w.found[k] = struct{}{}
	}
	h := d.hotShapeOf(c.id, w.start)
	if h.wild == nil {
		h.wild = &pendingWild{columns: s.stmt.Facts.LikeColumns}
		d.mi.waiting = append(d.mi.waiting, c.id)
	}
	c.finding.ownTags() // held past the window (see Event)
	h.wild.hold(wildOccurrence{c: c, cool: d.cooldownsOf(g)})
	d.ask(h, w, s)
	return true
}

// hold adds o, or past maxWildOccurrences its executions to the latest
// occurrence held.
func (p *pendingWild) hold(o wildOccurrence) {
	if len(p.occ) < maxWildOccurrences {
		p.occ = append(p.occ, o)
		return
	}
	last := &p.occ[len(p.occ)-1].c.finding
	last.Count += o.c.finding.Count
	last.DurationMS += o.c.finding.DurationMS
}

// unwait takes id off the fingerprints whose leading_wildcard occurrences
// wait.
func (mi *missingIndexState) unwait(id uint64) {
	if i := slices.Index(mi.waiting, id); i >= 0 {
		mi.waiting = slices.Delete(mi.waiting, i, i+1)
	}
}

// judgeWildcard reports the occurrences of p on the answer ins: each "may"
// finding as it is when the inspection failed; turned into a warning when
// the plan reads a large table whole to match the LIKE; nothing otherwise.
func (d *Detector) judgeWildcard(out []Finding, p *pendingWild, ins Inspection) []Finding {
	var sc ScanFacts
	var col string
	if ins.Err == "" {
		var ok bool
		if sc, col, ok = d.wildcardScan(ins.Scans, p.columns); !ok {
			return out // served by an index, or a small table
		}
	}
	for _, o := range p.occ {
		c := o.c
		if ins.Err == "" {
			c.finding.Severity = SeverityWarning
			c.finding.Suggestion = suggestLeadingWildcardScan(sc.Table, sc.Rows, col)
		}
		out = d.report(out, o.cool, c)
	}
	return out
}

// wildcardScan finds the first Seq Scan of a table of at least
// MissingIndexRows rows whose filter matches one of columns (the
// statement's LIKE columns, as written; any LIKE column when it names
// none) with LIKE, and the column.
func (d *Detector) wildcardScan(scans []ScanFacts, columns []string) (ScanFacts, string, bool) {
	for _, sc := range scans {
		if sc.Rows < d.cfg.MissingIndexRows {
			continue
		}
		for _, c := range sc.LikeColumns {
			if len(columns) == 0 || slices.ContainsFunc(columns, func(w string) bool { return w[strings.LastIndexByte(w, '.')+1:] == c }) {
				return sc, c, true
			}
		}
	}
	return ScanFacts{}, "", false
}

// expireWildcards reports as "may" the leading_wildcard occurrences that
// waited reaskAfter by now without an answer (the request was dropped, or
// the connection is down), and those of shapes forgotten while waiting.
func (d *Detector) expireWildcards(out []Finding, now nanos) []Finding {
	if d.mi == nil {
		return out
	}
	out = d.reportOrphans(out)
	for i := 0; i < len(d.mi.waiting); {
		id := d.mi.waiting[i]
		h, ok := d.mi.hot.Peek(id)
		if !ok || h.wild == nil { // cannot happen: forget and Inspected unwait
			d.mi.waiting = slices.Delete(d.mi.waiting, i, i+1)
			continue
		}
		occ := h.wild.occ
		n := 0
		for n < len(occ) && now.sub(nanosOf(occ[n].c.finding.WindowEnd)) >= reaskAfter {
			out = d.report(out, occ[n].cool, occ[n].c)
			n++
		}
		if h.wild.occ = occ[n:]; len(h.wild.occ) > 0 {
			i++
			continue
		}
		h.wild = nil
		d.mi.waiting = slices.Delete(d.mi.waiting, i, i+1)
	}
	return out
}

// reportOrphans reports the occurrences of shapes forgotten while they
// waited, as "may".
func (d *Detector) reportOrphans(out []Finding) []Finding {
	for _, o := range d.mi.orphans {
		out = d.report(out, o.cool, o.c)
	}
	d.mi.orphans = d.mi.orphans[:0]
	return out
}

// Unanswered gives up waiting for inspections: every leading_wildcard
// occurrence still held back is reported as it is without an inspection
// connection ("may", info), through the safelist and the cooldown. The
// caller calls it when no answer will come any more: at the end, after
// Flush and after handing what Wants returns to its inspector, so that one
// that answers at once (a replay's) has answered. A missing_index still
// pending is not reported: it needs the plan.
func (d *Detector) Unanswered() []Finding {
	if d.mi == nil {
		return nil
	}
	out := d.reportOrphans(nil)
	for _, id := range d.mi.waiting {
		h, ok := d.mi.hot.Peek(id)
		if !ok || h.wild == nil {
			continue
		}
		for _, o := range h.wild.occ {
			out = d.report(out, o.cool, o.c)
		}
		h.wild = nil
	}
	d.mi.waiting = d.mi.waiting[:0]
	return out
}
