package detector

import (
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// N+1 writes: the same INSERT, UPDATE or DELETE run once per row (a create in
// a loop) where one statement could write them all. The rule is the N+1
// rule's, with what tells a loop from independent writes adapted to writes:
//
//   - Only single-row writes count: an INSERT that wrote at most one row
//     (the CommandComplete count; unknown counts as one) from a VALUES list
//     of at most one row, an UPDATE or DELETE that picks its rows by
//     equality on a value (WHERE id = $1), not by a list (= ANY, IN) and not
//     without a key. A multi-row VALUES, INSERT ... SELECT of many rows, an
//     UPDATE ... WHERE id = ANY($1) are the fix, however often they run
//     (CreateInBatches writes batches of a hundred in a loop, rightly).
//   - The keys may come from a result (the loop's keys found in an earlier
//     result: data_flow, as for reads), and then it is an N+1 wherever it
//     runs.
//   - Otherwise its writes ran in one transaction block (evidence
//     "transaction"): a transaction is one unit of the application's work,
//     which a pool never shares between requests, so it is an N+1 whatever
//     the rest of the pool does.
//   - Otherwise (autocommit writes, or one transaction per write) it is
//     judged as a read loop on repetition: reported when its group is a
//     trace or no other connection of its pool scope ran the shape since
//     the window began, and not when the pool was busy: independent
//     requests that each write a row (pgbench's tpcb-like script, a web
//     handler that logs a visit) look like this on a busy pool.
//
// A window normally ends with its transaction. ORMs that wrap each save in a
// transaction of its own (GORM's default, TypeORM's save, ActiveRecord's
// create) write a loop as a run of transactions that each hold nothing but
// the write: BEGIN; INSERT ...; COMMIT. So a transaction block that ran
// only writes (and transaction control: BEGIN, SAVEPOINT, SET) does not end
// its window (txState.hold); the idle gap does, as it does for autocommit
// statements, so the next loop iteration within the idle gap joins it. A
// transaction that also read (pgbench's: UPDATE, SELECT, UPDATE, UPDATE,
// INSERT) or rolled back ends its window as before.

// txState follows the transaction blocks of a window.
type txState struct {
	writes, others int  // statements of the block running now: judged writes, and all but control
	seq            int  // blocks ended in the window
	cur            int  // the block of the latest execution, from 1; 0 outside blocks
	hold           bool // the latest execution ended a block of writes alone
}

// shapePatterns is what the rules of writes.go and patterns.go count of one
// judged shape in a window.
type shapePatterns struct {
	// writes: executions that wrote one row, their time, and the
	// executions in a transaction block and how many blocks.
	single    int
	singleDur time.Duration
	inTx      int
	txs       int
	lastTx    int
	// leading_wildcard: executions whose LIKE pattern started with a
	// wildcard, and their time.
	wild    int
	wildDur time.Duration
	// deep_offset: executions whose OFFSET was deep, their time, and the
	// deepest literal OFFSET.
	deep    int
	deepDur time.Duration
	deepest int64
}

// EvidenceTransaction is Evidence.Kind for an N+1 of writes whose repeats all
// ran in one transaction block: one unit of work, whatever else its pool ran.
const EvidenceTransaction = "transaction"

// isWrite reports whether f is an INSERT, UPDATE or DELETE.
func isWrite(f *fingerprint.Facts) bool {
	if f == nil {
		return false
	}
	switch f.Kind {
	case fingerprint.KindInsert, fingerprint.KindUpdate, fingerprint.KindDelete:
		return true
	}
	return false
}

// judgesWrite reports whether the rules look at a write: one that writes a
// table and, unless JudgeCatalogs, not only system catalogs.
func (d *Detector) judgesWrite(f *fingerprint.Facts) bool {
	if len(f.TablesWritten) == 0 {
		return false
	}
	if d.cfg.JudgeCatalogs {
		return true
	}
	for _, t := range f.TablesWritten {
		if !isCatalog(t) {
			return true
		}
	}
	return false
}

// noteTx follows the transaction blocks of w with one more execution: what
// the block running now has run, and, at its end, whether the window stays
// open (hold).
func (d *Detector) noteTx(w *window, ev Event) {
	t, x := &w.tx, ev.Exec
	t.hold, t.cur = false, 0
	if !x.InTransaction {
		return
	}
	t.cur = t.seq + 1
	st := ev.Stmt
	switch {
	case st == nil || st.Err != nil || st.Facts == nil || x.SQLState != "":
		t.others++
	case st.Facts.Kind == fingerprint.KindUtility:
		// BEGIN, COMMIT, SAVEPOINT, SET: transaction control.
	case isWrite(st.Facts) && d.judgesWrite(st.Facts):
		t.writes++
	default:
		t.others++
	}
	if x.TxEnd {
		t.hold = t.writes > 0 && t.others == 0 && !strings.EqualFold(x.Command, "ROLLBACK")
		t.writes, t.others = 0, 0
		t.seq++
	}
}

// singleRow reports whether an execution of a write wrote one row at a time
// (see the comment at the top).
func singleRow(x *pgwire.Execution, f *fingerprint.Facts) bool {
	switch f.Kind {
	case fingerprint.KindInsert:
		return x.Rows <= 1 && f.ValuesRows <= 1
	case fingerprint.KindUpdate, fingerprint.KindDelete:
		return !f.KeyList && len(f.EqualityColumns) > 0
	}
	return false
}

// noteWrite counts one execution of the judged write s.
func (d *Detector) noteWrite(w *window, s *shape, x *pgwire.Execution, st *fingerprint.Statement, dur time.Duration) {
	p := &s.pat
	if singleRow(x, st.Facts) {
		p.single++
		p.singleDur += dur
	}
	if x.InTransaction && w.tx.cur > 0 {
		p.inTx++
		if p.lastTx != w.tx.cur {
			p.txs++
			p.lastTx = w.tx.cur
		}
	}
}

// judgeWrite applies the N+1 rule to the judged write s of w (see the
// comment at the top), then lost_update (lostupdate.go), then
// leading_wildcard (a DELETE ... WHERE name LIKE '%x' scans as a SELECT
// does).
func (d *Detector) judgeWrite(g *group, w *window, s *shape, out []candidate) []candidate {
	if c, ok := d.nPlusOneWrite(g, w, s); ok {
		out = append(out, c)
	}
	out = d.lostUpdate(g, w, s, out)
	return d.patterns(g, w, s, out)
}

func (d *Detector) nPlusOneWrite(g *group, w *window, s *shape) (candidate, bool) {
	p := &s.pat
	if p.single < d.cfg.NPlusOneThreshold || s.params.len() < d.cfg.NPlusOneThreshold {
		return candidate{}, false
	}
	oneTx := p.inTx == s.count && p.txs == 1
	busy := g.traceID == "" && d.concurrent(s.conn, s.stmt.ID, w.start.add(-d.cfg.IdleGap))
	ev, proven, provenRows, ok := d.evidenceOf(w, s)
	if !ok && !oneTx && busy {
		d.stats.Concurrent++
		return candidate{}, false
	}
	f := d.base(g, w, s, KindNPlusOne)
	f.Command = strings.ToUpper(string(s.stmt.Facts.Kind))
	f.Count = p.single
	f.DistinctParams = s.params.len()
	f.DurationMS = millis(p.singleDur)
	f.Severity = SeverityWarning
	c := candidate{id: s.stmt.ID}
	var src *fingerprint.Statement
	var rows int64
	switch {
	case ok:
		d.stats.Proven++
		f.Evidence = &ev
		src, rows = proven, provenRows
	case oneTx:
		d.stats.Unproven++
		f.Evidence = &Evidence{Kind: EvidenceTransaction}
	default:
		d.stats.Unproven++
		f.Evidence = &Evidence{Kind: EvidenceRepetition}
	}
	if src == nil {
		if sh, r := w.source(s); sh != nil {
			src, rows = sh.stmt, r
		}
	}
	// Critical when long or slow and known to be one loop: proven, or in
	// one transaction.
	if (ok || oneTx) && (p.single >= 10*d.cfg.NPlusOneThreshold || p.singleDur >= time.Second) {
		f.Severity = SeverityCritical
	}
	if src != nil {
		c.source = src.ID
		f.Source = &Source{Fingerprint: hexOf(src), Query: src.Normalized, Rows: rows}
	}
	f.Suggestion = suggestNPlusOneWrite(s.stmt, p.single)
	c.finding = f
	return c, true
}
