package detector

import (
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
//     on a trigram or full-text index, which the wire does not show: the
//     finding says the query may scan the table, with severity info.
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

// patterns reports leading_wildcard and deep_offset for shape s of w.
func (d *Detector) patterns(g *group, w *window, s *shape, out []candidate) []candidate {
	p := &s.pat
	if p.wild > 0 {
		f := d.base(g, w, s, KindLeadingWildcard)
		f.Count = p.wild
		f.DurationMS = millis(p.wildDur)
		f.Severity = SeverityInfo
		f.Suggestion = suggestLeadingWildcard(s.stmt)
		out = append(out, candidate{finding: f, id: s.stmt.ID})
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
