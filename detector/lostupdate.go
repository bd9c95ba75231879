package detector

import (
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// lost_update: a read-modify-write done in the application. The code reads
// a row by its key, computes a new value and writes it back:
//
//	SELECT stock FROM products WHERE id = $1           -- 5
//	UPDATE products SET stock = $1 WHERE id = $2       -- 5 - 1
//
// Two requests that run this at once both read 5 and both write 4: one
// sale is lost. The rule follows each connection (not its group: the
// race is between the statements of one session):
//
//   - The read: a SELECT of one table by key (fingerprint.Facts.KeyValues:
//     col = $n or col = literal) that returned one row (or an unknown
//     count), without a list of keys (= ANY, IN). Its key values are the
//     keyed digests the tracker gives (pgwire.Execution.ParamKeys, so with
//     --evidence, the default) or the fingerprint reads from literals
//     (Statement.LiteralKeys): digests, never values.
//   - The write: within LostUpdateWindow (1s) after the read ended, an
//     UPDATE of the same table that wrote a row (or an unknown count) by the
//     same key value, on a column in common with the read's, and that SETs
//     a column the read returned (any, for SELECT *) to a value the client
//     sent (Facts.SetValues: a bare $n or literal). The window is short
//     because a read-modify-write in code writes right after it reads; an
//     update long after a read on a pooled connection belongs to another
//     request.
//   - Not when the write is guarded: its WHERE compares a column it SETs
//     (AND stock = $3, the old value) or a version column (version,
//     lock_version, *_version, xmin) by equality, so a concurrent change
//     makes it update nothing; an expression of the column itself (SET
//     stock = stock - $1) is done atomically by the server and is no
//     client-sent value.
//   - Not when the latest read of the row locked it (FOR UPDATE, FOR NO KEY
//     UPDATE, FOR SHARE, FOR KEY SHARE): the code reads it safely now, and
//     the unlocked reads before are another request's.
//   - Not when the read and the write ran in one transaction block at
//     REPEATABLE READ or SERIALIZABLE, where the server fails the second
//     writer (40001) instead of losing its write. The level is followed from
//     the statements: BEGIN / START TRANSACTION ISOLATION LEVEL, SET
//     TRANSACTION, SET transaction_isolation, and the session's default
//     (SET SESSION CHARACTERISTICS, SET default_transaction_isolation,
//     RESET, DISCARD ALL); a default set in the server's configuration is
//     not seen and taken for READ COMMITTED. READ COMMITTED blocks, and
//     statements that each run in their own transaction, still race.
//
// Each read is used by one write at most. Severity warning; the finding's
// source is the read.

// DefaultLostUpdateWindow is the default of Config.LostUpdateWindow.
const DefaultLostUpdateWindow = time.Second

// maxKeyedReads bounds the reads by key remembered per connection: the
// latest maxKeyedReads/2 to maxKeyedReads.
const maxKeyedReads = 8

// rmwConn is what lost_update follows of one connection.
type rmwConn struct {
	session fingerprint.Isolation // the session's default, as statements set it
	txIso   fingerprint.Isolation // the level the block running now set
	txOpen  bool
	txSeq   uint64      // transaction blocks begun, the running one's number
	reads   []keyedRead // oldest first
}

// keyedRead is one read of a row by key. Every lookup by key of a busy
// connection is one (pgbench -S: every transaction), so it is small and
// holds one pointer: a key's column is its index in the statement's
// Facts.KeyValues, not the name.
type keyedRead struct {
	end  nanos
	stmt *fingerprint.Statement
	rows int64
	keys [fingerprint.MaxKeyValues]valuekey.Key
	cols [fingerprint.MaxKeyValues]uint8 // keys[i] is of stmt.Facts.KeyValues[cols[i]]
	n    uint8
	// locked: FOR UPDATE, FOR SHARE and the like; it ends the race of
	// the reads before it, and starts none.
	locked bool
	tx     uint64 // the transaction block it ran in, 0 outside one
}

// column is the column of key i.
func (r *keyedRead) column(i int) string { return r.stmt.Facts.KeyValues[r.cols[i]].Column }

// lostStat is what a judged UPDATE shape counts of lost_update in a
// window, per shape of the read it wrote back.
type lostStat struct {
	count int
	dur   time.Duration
	read  *fingerprint.Statement // the read of the first one
	rows  int64                  // its rows
	cols  []string               // the columns it wrote back
}

// maxLostSources bounds the read shapes one UPDATE shape counts in a
// window; later ones are counted with the last.
const maxLostSources = 8

// rmwConnOf returns the state of connection c, made on first use.
func (d *Detector) rmwConnOf(c *pgwire.ConnInfo) *rmwConn {
	if d.rmw == nil {
		d.rmw = lru.New[uint64, *rmwConn](d.cfg.MaxGroups, 0, nil)
	}
	id := connID(c)
	rc, ok := d.rmw.Get(id)
	if !ok {
		rc = &rmwConn{}
		d.rmw.Add(id, rc, 0)
	}
	return rc
}

// noteLostUpdate follows one execution on its connection and counts, on
// its shape in w, an UPDATE that wrote back what the connection read.
func (d *Detector) noteLostUpdate(w *window, ev Event, start, end nanos) {
	x, st := ev.Exec, ev.Stmt
	rc := d.rmwConnOf(x.Conn)
	if x.InTransaction && !rc.txOpen {
		rc.txOpen, rc.txIso = true, fingerprint.IsolationNone
		rc.txSeq++
	}
	if st != nil && st.Err == nil && st.Facts != nil && x.SQLState == "" {
		f := st.Facts
		switch {
		case f.Isolation != fingerprint.IsolationNone:
			lvl := f.Isolation
			if lvl == fingerprint.IsolationDefault {
				lvl = fingerprint.IsolationNone
			}
			if f.IsolationSession {
				rc.session = lvl
			} else if rc.txOpen {
				rc.txIso = lvl
			}
		case f.Kind == fingerprint.KindSelect:
			d.noteKeyedRead(rc, x, st, end)
		case f.Kind == fingerprint.KindUpdate:
			if r, cols, ok := d.writesBack(rc, x, st, start); ok && w != nil {
				if i, ok := w.byID[st.ID]; ok && w.shapes[i].judged {
					l := w.shapes[i].lostFrom(r, cols)
					l.count++
					l.dur += max(end.sub(start), 0)
				}
			}
		}
	}
	if x.TxEnd || !x.InTransaction {
		rc.txOpen, rc.txIso = false, fingerprint.IsolationNone
	}
}

// lostFrom returns the count of s's lost updates of reads of r's shape.
func (s *shape) lostFrom(r keyedRead, cols []string) *lostStat {
	for i := range s.lost {
		if s.lost[i].read.ID == r.stmt.ID {
			return &s.lost[i]
		}
	}
	if len(s.lost) >= maxLostSources {
		return &s.lost[len(s.lost)-1]
	}
	s.lost = append(s.lost, lostStat{read: r.stmt, rows: r.rows, cols: cols})
	return &s.lost[len(s.lost)-1]
}

// noteKeyedRead remembers a SELECT of one row by key (see the top).
func (d *Detector) noteKeyedRead(rc *rmwConn, x *pgwire.Execution, st *fingerprint.Statement, end nanos) {
	f := st.Facts
	if x.Rows == 0 || x.Rows > 1 || f.KeyList || len(f.TablesRead) != 1 || len(f.KeyValues) == 0 || !d.judges(st) ||
		!f.SelectStar && len(f.ReadColumns) == 0 && !f.Locking {
		return
	}
	r := keyedRead{end: end, stmt: st, rows: x.Rows, locked: f.Locking}
	if rc.txOpen {
		r.tx = rc.txSeq
	}
	for i, kv := range f.KeyValues { // at most MaxKeyValues
		if k := valueOf(x, st, kv); k != valuekey.None && int(r.n) < len(r.keys) {
			r.keys[r.n], r.cols[r.n] = k, uint8(i)
			r.n++
		}
	}
	if r.n == 0 {
		return
	}
	rc.forget(end.add(-d.cfg.LostUpdateWindow))
	if rc.reads == nil {
		rc.reads = make([]keyedRead, 0, maxKeyedReads)
	}
	if len(rc.reads) >= maxKeyedReads {
		// Full: keep the newer half. Dropping one read per new one moved
		// the other seven on every read of a busy connection (pgbench -S:
		// every transaction is a read by key).
		rc.reads = append(rc.reads[:0], rc.reads[maxKeyedReads/2:]...)
	}
	rc.reads = append(rc.reads, r)
}

// forget drops the reads that ended before t.
func (rc *rmwConn) forget(t nanos) {
	i := 0
	for i < len(rc.reads) && rc.reads[i].end < t {
		i++
	}
	if i > 0 {
		rc.reads = append(rc.reads[:0], rc.reads[i:]...)
	}
}

// valueOf is the digest of the value a key column is compared with.
func valueOf(x *pgwire.Execution, st *fingerprint.Statement, kv fingerprint.KeyValue) valuekey.Key {
	if kv.Param > 0 {
		if kv.Param <= len(x.ParamKeys) {
			return x.ParamKeys[kv.Param-1]
		}
		return valuekey.None
	}
	if kv.Literal < len(st.LiteralKeys) {
		return st.LiteralKeys[kv.Literal]
	}
	return valuekey.None
}

// writesBack finds the read an UPDATE writes back (see the top), which it
// uses up, and the column written. The reads of the row are looked at from
// the latest: a locking read, or one in this REPEATABLE READ or
// SERIALIZABLE block, ends the search (the code reads the row safely now);
// one that returned none of the columns set is passed over.
func (d *Detector) writesBack(rc *rmwConn, x *pgwire.Execution, st *fingerprint.Statement, start nanos) (keyedRead, []string, bool) {
	f := st.Facts
	if len(rc.reads) == 0 || x.Rows == 0 || f.KeyList || len(f.TablesWritten) != 1 || len(f.SetValues) == 0 ||
		len(f.KeyValues) == 0 || guarded(f) || !d.judges(st) {
		return keyedRead{}, nil, false
	}
	rc.forget(start.add(-d.cfg.LostUpdateWindow))
	iso := rc.txIso
	if iso == fingerprint.IsolationNone {
		iso = rc.session
	}
	for i := len(rc.reads) - 1; i >= 0; i-- {
		r := rc.reads[i]
		if !sameTable(r.stmt.Facts.TablesRead[0], f.TablesWritten[0]) || !sameKey(r, x, st) {
			continue
		}
		if r.locked || r.tx != 0 && rc.txOpen && r.tx == rc.txSeq && iso >= fingerprint.IsolationRepeatableRead {
			break // a safe read of the row, or one block that fails the second writer
		}
		cols, ok := writtenBack(r.stmt.Facts, f)
		if !ok {
			continue
		}
		rc.reads = append(rc.reads[:i], rc.reads[i+1:]...)
		return r, cols, true
	}
	return keyedRead{}, nil, false
}

// sameKey reports whether the UPDATE compares a key column of the read
// with the same value.
func sameKey(r keyedRead, x *pgwire.Execution, st *fingerprint.Statement) bool {
	for _, kv := range st.Facts.KeyValues {
		k := valueOf(x, st, kv)
		if k == valuekey.None {
			continue
		}
		for i, rk := range r.keys[:r.n] {
			if rk == k && strings.EqualFold(r.column(i), kv.Column) {
				return true
			}
		}
	}
	return false
}

// writtenBack returns the columns the UPDATE sets to a client-sent value
// that the read returned, leaving out timestamps (updated_at, deletedAt),
// which an ORM sets on every save, unless there is nothing else.
func writtenBack(read, upd *fingerprint.Facts) ([]string, bool) {
	var cols, stamps []string
	for _, c := range upd.SetValues {
		if !read.SelectStar && !slices.ContainsFunc(read.ReadColumns, func(r string) bool { return strings.EqualFold(r, c) }) {
			continue
		}
		if timestamp(c) {
			stamps = append(stamps, c)
		} else {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		cols = stamps
	}
	return cols, len(cols) > 0
}

// timestamp reports whether a column's name says it holds when the row
// changed: *_at, *At.
func timestamp(c string) bool {
	return strings.HasSuffix(c, "_at") || strings.HasSuffix(c, "At")
}

// guarded reports whether an UPDATE's WHERE checks the old value: an
// equality on a column it sets, or on a version column.
func guarded(f *fingerprint.Facts) bool {
	for _, c := range f.EqualityColumns {
		c = lastPart(c)
		if versionColumn(c) {
			return true
		}
		for _, s := range f.SetValues {
			if strings.EqualFold(s, c) {
				return true
			}
		}
		for _, s := range f.SetSelf {
			if strings.EqualFold(s, c) {
				return true
			}
		}
	}
	return false
}

// versionColumn reports whether a column's name says it holds a row
// version: version, lock_version, row_version, *_version, *Version, xmin.
func versionColumn(c string) bool {
	l := strings.ToLower(c)
	return l == "version" || l == "xmin" || l == "rowversion" || strings.HasSuffix(l, "_version") || strings.HasSuffix(c, "Version")
}

// sameTable compares two table names as written, quotes and case aside and
// the public schema implied.
func sameTable(a, b string) bool {
	a, b = normTable(a), normTable(b)
	return strings.TrimPrefix(a, "public.") == strings.TrimPrefix(b, "public.")
}

// lostUpdate reports lost_update for the UPDATE shape s of w: one finding
// per shape of the reads it wrote back.
func (d *Detector) lostUpdate(g *group, w *window, s *shape, out []candidate) []candidate {
	for _, l := range s.lost {
		f := d.base(g, w, s, KindLostUpdate)
		f.Count = l.count
		f.DurationMS = millis(l.dur)
		f.Severity = SeverityWarning
		f.Source = &Source{Fingerprint: hexOf(l.read), Query: l.read.Normalized, Rows: max(l.rows, 0)}
		f.Suggestion = suggestLostUpdate(s.stmt, l.cols)
		out = append(out, candidate{finding: f, id: s.stmt.ID, source: l.read.ID})
	}
	return out
}
