package detector

import (
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/fnv1a"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// group is the state kept per group key (trace id or connection).
type group struct {
	traceID string

	lastSeen nanos   // latest statement end observed
	win      *window // nil between windows
	// prev is the window that closed while a loop ran, kept in case the
	// loop goes on after a long stall (see stall.go); nil otherwise.
	prev *window

	// cooldown holds, per (kind, fingerprint, source), when it was last
	// reported; entries unseen for a whole cooldown are pruned. Only trace
	// groups use their own; a connection's group uses its pool scope's.
	cooldown cooldowns

	// scope is the pool scope of scopeConn, kept so that a judged
	// execution costs no scope-key lookup (sawShape).
	scopeConn *pgwire.ConnInfo
	scope     *scopeState
}

// window is the statements of one group between two boundaries.
type window struct {
	start  nanos // start of the first statement
	end    nanos // latest end of a statement
	events int   // every execution added, judged or not
	// startAt and endAt are start and end as the events gave them, for the
	// findings' times.
	startAt, endAt time.Time

	// seq is every successful, fingerprinted execution in order: the
	// material for finding an N+1's source.
	seq []step
	// evBytes is the ResultKeys memory its shapes keep (Detector.evBytes).
	evBytes int
	// sources counts its shapes that kept a result: the candidate sources
	// of a loop's keys in the window.
	sources int
	shapes  []*shape         // in order of first execution
	loops   int              // its shapes with loop set (loopsOf)
	byID    map[uint64]int32 // fingerprint ID → index in shapes
	// found are the findings of its first close, for a window kept for
	// reopening (see stall.go): not reported again.
	found map[cooldownKey]struct{}
	// held are the N+1s on repetition alone of a window kept for
	// reopening, reported when it is forgotten (see stall.go).
	held []candidate
	// tx follows the window's transaction blocks (writes.go).
	tx txState
}

type step struct {
	shape int32
	rows  int64 // this execution's rows, ≥ 0
}

// shape aggregates the executions of one fingerprint in one window.
type shape struct {
	stmt  *fingerprint.Statement // of the first execution
	conn  *pgwire.ConnInfo       // of the first execution
	tags  map[string]string      // of the first execution
	first int                    // index in window.seq of the first execution

	count     int
	dur       time.Duration
	rowsTotal int64
	start     nanos // start of the first execution
	firstEnd  nanos // end of the first execution
	last      int   // index in window.seq of the latest execution
	lastStart nanos // start of the latest execution

	// Value evidence: the results of its executions (candidate sources of
	// a later loop, while MaxEvidenceBytes allows) and, for judged shapes,
	// the distinct keys per parameter position.
	results resultLog
	keys    *loopKeys
	// ring is the outcome of its search of the recent results, once done.
	ring *ringResult
	// loop is set by loopsOf when the shape is an N+1 of the window being
	// evaluated, and search is the outcome of its latest evidence search
	// there (see evidenceOf).
	loop   bool
	search *loopSearch
	// sawAt is when the shape's run was last recorded in its pool scope
	// (sawShape), which is done at most every scopeSawEvery; noTime: never.
	sawAt nanos

	// The rest is kept only for shapes the rules judge.
	judged     bool
	params     keyTable[paramStat] // parameter-set key (paramsKey) → its executions
	paramsFull bool
	maxRows    int64
	bigCount   int           // executions returning ≥ UnpaginatedRows
	bigDur     time.Duration // their duration
	offsetSeen bool          // an execution had a constant OFFSET > 0
	pageRows   int64         // rows of the first execution
	pageSteady bool          // every execution but the latest returned pageRows
	lastRows   int64         // rows of the latest execution
	lastKey    valuekey.Key  // parameter set of the latest execution
	run        int           // executions in a row with lastKey

	// slow_query, for every shape: the executions that reached
	// SlowThreshold, their time, and the slowest one's time and rows.
	slowCount int
	slowDur   time.Duration
	slowMax   time.Duration
	slowRows  int64
	pat       shapePatterns // what writes.go and patterns.go count
	lost      []lostStat    // lost_update, per read shape (lostupdate.go)
}

// paramStat is one parameter set's executions in a shape. The counts are
// of one window's executions (MaxWindowEvents): 32 bits, so that a slot of
// shape.params takes 24 bytes.
type paramStat struct {
	dur    time.Duration
	count  int32
	maxRun int32 // most executions with this set in a row, no other set of the shape between
}

// newWindow opens a window at start; at is that instant as the event gave
// it.
func newWindow(start nanos, at time.Time) *window {
	return &window{start: start, end: start, startAt: at, endAt: at, byID: make(map[uint64]int32)}
}

// instants are an execution's times, converted once as it enters
// (Observe).
type instants struct {
	start nanos // its start, or its end when the start is unset or later
	end   nanos
	began nanos // x.Start itself, unset or not: when its keys were used
}

// instantsOf converts x's times.
func instantsOf(x *pgwire.Execution) instants {
	t := instants{start: nanosOf(x.Start), end: nanosOf(x.End)}
	t.began = t.start
	if t.start.isZero() || t.end < t.start {
		t.start = t.end
	}
	return t
}

// startAt is the time.Time that t.start stands for: x.Start, or x.End
// where the start was replaced by the end.
func (t instants) startAt(x *pgwire.Execution) time.Time {
	if t.began.isZero() || t.end < t.began {
		return x.End
	}
	return x.Start
}

// add records one execution in w.
func (d *Detector) add(g *group, ev Event, t instants) {
	w := g.win
	w.events++
	start, end := t.start, t.end
	if end > w.end {
		w.end, w.endAt = end, ev.Exec.End
	}
	x, st := ev.Exec, ev.Stmt
	d.noteTx(w, ev)
	if st == nil || st.Err != nil {
		d.stats.Unfingerprinted++
		return
	}
	if x.SQLState != "" {
		d.stats.Failed++
		return
	}
	idx, ok := w.byID[st.ID]
	if !ok {
		idx = int32(len(w.shapes))
		w.byID[st.ID] = idx
		s := &shape{stmt: st, conn: x.Conn, tags: ev.Tags, first: len(w.seq), start: start, firstEnd: end, sawAt: noTime}
		s.judged = d.judges(st)
		w.shapes = append(w.shapes, s)
	}
	s := w.shapes[idx]
	rows := max(x.Rows, 0)
	dur := max(end.sub(start), 0)
	s.last, s.lastStart = len(w.seq), start
	w.seq = append(w.seq, step{shape: idx, rows: rows})
	if t := d.cfg.SlowThreshold; t > 0 && dur >= t {
		s.slowCount++
		s.slowDur += dur
		if dur > s.slowMax {
			s.slowMax, s.slowRows = dur, rows
		}
	}

	d.addEvidence(g, s, ev, t)

	if s.judged {
		key := paramsKey(x, st)
		if s.count > 0 && key == s.lastKey {
			s.run++
		} else {
			s.lastKey, s.run = key, 1
		}
		if p := s.params.get(key); p != nil || s.params.len() < d.cfg.MaxParamsPerShape {
			if p == nil {
				p, _ = s.params.put(key)
			}
			p.count++
			p.dur += dur
			p.maxRun = max(p.maxRun, int32(s.run))
		} else {
			s.paramsFull = true
			d.stats.ParamsDropped++
		}
		s.maxRows = max(s.maxRows, rows)
		if rows >= d.cfg.UnpaginatedRows {
			s.bigCount++
			s.bigDur += dur
		}
		if f := st.Facts; f.HasOffset && f.Offset > 0 {
			s.offsetSeen = true
		}
		if s.count == 0 {
			s.pageRows, s.pageSteady = rows, true
		} else if s.lastRows != s.pageRows {
			s.pageSteady = false
		}
		s.lastRows = rows
		d.notePatterns(w, s, x, st, dur)
	}
	s.count++
	s.dur += dur
	s.rowsTotal += rows
}

// judges reports whether the rules look at statements of this shape: parsed
// SELECTs that read a table (so not SELECT 1, SELECT now(), nextval()), and,
// unless JudgeCatalogs, not only system catalogs; and the writes writes.go
// judges.
func (d *Detector) judges(st *fingerprint.Statement) bool {
	f := st.Facts
	if isWrite(f) {
		return d.judgesWrite(f)
	}
	if f == nil || f.Kind != "select" || len(f.TablesRead) == 0 {
		return false
	}
	if d.cfg.JudgeCatalogs {
		return true
	}
	for _, t := range f.TablesRead {
		if !isCatalog(t) {
			return true
		}
	}
	return false
}

// isCatalog reports whether a table name is a system catalog or view. It
// reads the name as normTable writes it, without writing it: it runs for
// every judged shape and keyed read.
func isCatalog(name string) bool {
	if !plainASCII(name) {
		return isCatalogNorm(normTable(name))
	}
	if foldedPrefix(name, "pg_catalog.") || foldedPrefix(name, "information_schema.") {
		return true
	}
	// Dropping quotes and folding ASCII case move no '.'.
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return foldedPrefix(name, "pg_")
}

// isCatalogNorm is isCatalog of a name normTable wrote.
func isCatalogNorm(n string) bool {
	if strings.HasPrefix(n, "pg_catalog.") || strings.HasPrefix(n, "information_schema.") {
		return true
	}
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	return strings.HasPrefix(n, "pg_")
}

// paramsKey identifies the execution's parameter set: the bound values
// (extended protocol) and the literals in the text (simple protocol, or
// literals inlined by the client), hashed together. It is a key of
// shape.params, so never valuekey.None: the one hash that would be (2^-64)
// shares the key of 1.
func paramsKey(x *pgwire.Execution, st *fingerprint.Statement) valuekey.Key {
	h := x.ParamsHash
	h ^= st.LiteralsHash + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
	if k := valuekey.Key(h * fnv1a.Prime); k != valuekey.None {
		return k
	}
	return 1
}

// addEvidence keeps what the value evidence needs of one execution of s:
// its result as a candidate source (in the window, and among the recent
// results of its pool scope when it has rows enough to drive a loop), its
// keys when s is judged, and that its connection ran s (concurrency).
func (d *Detector) addEvidence(g *group, s *shape, ev Event, t instants) {
	w, x, end := g.win, ev.Exec, t.end
	if r, rows := x.Result, x.ResultRows(); r != nil && rows > 0 {
		if n := logCost(r); d.evBytes+n <= d.cfg.MaxEvidenceBytes && s.results.add(r) {
			if s.results.len() == 1 {
				w.sources++
			}
			d.evBytes += n
			w.evBytes += n
			if rows >= d.cfg.NPlusOneThreshold {
				d.recent.add(recentSource{scope: scopeOf(x.Conn), conn: connID(x.Conn), end: end,
					stmt: s.stmt, rows: max(x.Rows, int64(rows)), res: keepable(r)})
				d.scopeFor(g, x.Conn).lastSource = end
			}
		} else {
			d.stats.EvidenceDropped++
		}
	}
	if !s.judged {
		return
	}
	if keys := keysOf(x, ev.Stmt); len(keys) > 0 {
		if s.keys == nil {
			s.keys = newLoopKeys()
		}
		if s.keys.pos == nil && !d.sourceKnown(g, s, x, t.began) {
			// No result its keys could come from yet, and a key used
			// before its source was known never counts: only count it.
			s.keys.skipped++
		} else {
			s.keys.add(keys, t.began, d.cfg.MaxParamsPerShape)
		}
	}
	if ev.TraceID == "" && (s.sawAt.isZero() || end.sub(s.sawAt) >= scopeSawEvery) {
		s.sawAt = end
		d.sawShape(g, x.Conn, s.stmt.ID, end)
	}
}

// keepable returns r, or a copy of it when it is one row: the tracker
// takes a lookup's row from memory it shares with the connection's other
// lookups (pgwire's arena), which a recent source would keep alive. Only a
// threshold of 1 makes a one-row result a recent source.
func keepable(r *pgwire.ResultKeys) *pgwire.ResultKeys {
	if r.Rows() != 1 {
		return r
	}
	return pgwire.ResultKeysOf(r.Columns, 1, slices.Clone(r.Digests()), r.Truncated)
}

// keysOf is the execution's keys: its bound parameters, or the literals of
// its text (simple protocol, or values inlined by the client).
func keysOf(x *pgwire.Execution, st *fingerprint.Statement) []valuekey.Key {
	if len(x.ParamKeys) > 0 {
		return x.ParamKeys
	}
	return literalKeys(st)
}
