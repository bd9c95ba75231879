package pgwire

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"slices"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// Value evidence: keyed digests of bound parameters (bind.go) and of the
// values of the first rows of results (here), read as the messages stream
// by. No value is kept: a value is hashed from the chunk it arrives in, or
// from a scratch buffer of valuekey.MaxValueBytes when a chunk ends inside
// it; longer values are not keys and are skipped by counting.
//
// Where a result's column types and formats come from:
//   - simple Query: the RowDescription before each statement's rows;
//   - Execute of a described portal: the RowDescription that answered
//     Describe of the portal (formats final);
//   - Execute of a portal not described (pgx's statement cache: Parse and
//     Describe of the statement once, then only Bind and Execute): the
//     statement's RowDescription, remembered on the statement, with the
//     Bind's result format codes.
//
// Without a RowDescription (NoData, an unknown statement) there is no
// Result.

// resultDesc is what the tracker keeps of a RowDescription: the names and type
// OIDs of the first MaxEvidenceColumns columns. It is never changed once
// built: statements, portals and ResultKeys.Columns share it.
type resultDesc struct {
	names []string
	oids  []uint32
	count int // columns in the message; more than len(names) when cut
	// sum and bin are the digest of the bytes read of the message it was
	// built from and that message's binary columns: the same message again
	// (a client that describes its portal before each Execute) is known by
	// its digest alone.
	sum uint64
	bin uint64
}

// rdSeed keys the digests of RowDescriptions (resultDesc.sum).
var rdSeed = maphash.MakeSeed()

// size is what a resultDesc costs in a statement's byte budget.
func (d *resultDesc) size() int {
	if d == nil {
		return 0
	}
	n := 80 + 20*len(d.names)
	for _, s := range d.names {
		n += len(s)
	}
	return n
}

// rdIter walks the fields of a RowDescription body that may be cut short.
type rdIter struct {
	b []byte
}

// next returns the next field's name, type OID and format code; ok is false
// when the body ends before the field does.
func (it *rdIter) next() (name []byte, oid uint32, format uint16, ok bool) {
	b := it.b
	i := 0
	for i < len(b) && b[i] != 0 {
		i++
	}
	if i+1+18 > len(b) {
		return nil, 0, 0, false
	}
	name, f := b[:i], b[i+1:]
	// table OID (4), attribute number (2), type OID (4), type size (2),
	// type modifier (4), format code (2)
	oid = binary.BigEndian.Uint32(f[6:10])
	format = binary.BigEndian.Uint16(f[16:18])
	it.b = f[18:]
	return name, oid, format, true
}

// rdCap is how much of a RowDescription is read: the first maxCols fields
// with names of up to NAMEDATALEN-1 bytes.
func rdCap(maxCols int) int { return 2 + maxCols*(maxNameBytes+1+18) }

// readDesc reads the RowDescription collected in t.rd: it returns the
// description (a, b or t.lastDesc when it has the same columns, so that a
// repeated statement allocates nothing) and the mask of the columns sent
// in binary format. It returns nil for a RowDescription without columns.
// The message a candidate was built from, met again, is known by its digest
// without being parsed or compared field by field.
func (t *Tracker) readDesc(a, b *resultDesc) (*resultDesc, uint64) {
	if len(t.rd) < 2 {
		return nil, 0
	}
	sum := maphash.Bytes(rdSeed, t.rd)
	cands := [3]*resultDesc{a, b, t.lastDesc}
	for _, c := range cands {
		if c != nil && c.sum == sum {
			t.lastDesc = c
			return c, c.bin
		}
	}
	count := int(binary.BigEndian.Uint16(t.rd))
	want := min(count, t.maxCols)
	var match [3]bool
	for i, c := range cands {
		match[i] = c != nil && c.count == count
	}
	it := rdIter{b: t.rd[2:]}
	var bin uint64
	n := 0
	for n < want {
		name, oid, format, ok := it.next()
		if !ok {
			break
		}
		if format != 0 {
			bin |= 1 << n
		}
		for i, c := range cands {
			match[i] = match[i] && n < len(c.names) && c.oids[n] == oid && c.names[n] == string(name)
		}
		n++
	}
	if n == 0 {
		return nil, 0
	}
	for i, c := range cands {
		if match[i] && len(c.names) == n {
			t.lastDesc = c
			return c, bin
		}
	}
	d := &resultDesc{names: make([]string, n), oids: make([]uint32, n), count: count, sum: sum, bin: bin}
	it = rdIter{b: t.rd[2:]}
	for i := range n {
		name, oid, _, _ := it.next()
		d.names[i], d.oids[i] = string(name), oid
	}
	t.lastDesc = d
	return d, bin
}

// bindEvidence is what a Bind carries, through its request, to its
// portal: its ParamKeys and result format codes, and later the answer to a
// Describe of the portal. It is held by value (in the Bind's request, then
// in its portal): a Bind allocates nothing for it. Its keys, and the
// digests of a lookup's row, come from the tracker's arena (see allocKeys).
type bindEvidence struct {
	keys      []valuekey.Key // ParamKeys; shared, read only, by the portal's executions
	resFmt    uint64         // result columns the Bind asked in binary format
	desc      *resultDesc    // the RowDescription that answered a Describe (nil: NoData)
	descBin   uint64         // and its binary columns
	cost      int32          // bytes counted in the portals' budget
	on        bool           // the Bind was read with evidence
	described bool           // a Describe of the portal was answered
}

// The tracker's arena: the evidence of the usual execution, a lookup (a
// few parameters, one row of a few columns), is a few digests and one
// ResultKeys. Allocated on their own they were a few dozen bytes of fresh
// memory each, written on the relay's core and read on the analyzer's,
// and the GC's work; in the Bind's block beside the Execution they made
// every lookup's one allocation 480 bytes instead of the Execution's 288
// (a larger block, measured alone, cost about half a percent of the
// proxy's CPU under pgbench per 100 bytes). From the arena, consecutive
// executions' digests and headers lie next to each other in memory taken
// a chunk at a time, and the Execution is the same 288 bytes as without
// evidence: a pgbench lookup's evidence is 72 bytes instead of 192.
//
// The arena only hands out: nothing in it is ever reused, so a slice of it
// stays valid as long as anything refers to it, and the GC frees a chunk
// when nothing does. What holds a piece of a chunk holds the whole chunk:
// only what the consumer drops soon comes from it (ParamKeys, and the
// result of one row: the detector keeps no execution, and copies the
// digests it keeps; it keeps the ResultKeys of results of several rows,
// which have allocations of their own). A connection holds at most one
// partly used chunk of each kind (1 KB in all).
const (
	arenaKeys    = 64 // digests in a chunk (512 bytes, no pointers)
	arenaMaxKeys = 16 // more digests than this take an allocation of their own
	arenaResults = 8  // ResultKeys in a chunk (448 bytes)
)

// allocKeys returns n (> 0) zero digests, from the arena when n is small.
func (t *Tracker) allocKeys(n int) []valuekey.Key {
	if n > arenaMaxKeys {
		return make([]valuekey.Key, n)
	}
	if len(t.arenaKeys) < n {
		t.arenaKeys = make([]valuekey.Key, arenaKeys)
	}
	k := t.arenaKeys[:n:n]
	t.arenaKeys = t.arenaKeys[n:]
	return k
}

// allocResult returns a zero ResultKeys from the arena.
func (t *Tracker) allocResult() *ResultKeys {
	if len(t.arenaResults) == 0 {
		t.arenaResults = make([]ResultKeys, arenaResults)
	}
	r := &t.arenaResults[0]
	t.arenaResults = t.arenaResults[1:]
	return r
}

// recost sets what the portal's evidence costs: its keys, and its
// description when it is its own (its statement is unknown).
func (b *bindEvidence) recost(ownDesc bool) {
	n := 8 * len(b.keys)
	if ownDesc {
		n += b.desc.size()
	}
	b.cost = int32(n)
}

// resultState is the result being hashed: the rows of the request at the
// head of the queue. Past on, its fields mean something only while on is
// set: endResult leaves them as they were.
type resultState struct {
	begun bool // the head request's description was looked up
	on    bool // its rows are hashed
	desc  *resultDesc
	bin   uint64 // columns in binary format
	ncols int    // columns hashed: len(desc.names)
	rows  int    // rows hashed
	trunc bool   // rows or columns past the bounds
	keys  []valuekey.Key
}

// rowState reads one DataRow: a column count, then per column a length
// (-1 for NULL) and the value.
type rowState struct {
	on    bool
	stage uint8
	need  int
	num   uint32
	n     int // columns in the message
	col   int
	vlen  int // length of the value being read
	nv    int // its bytes in t.rowVal
	base  int // index of the row's first key in res.keys
}

const (
	rowCount uint8 = iota
	rowLen
	rowVal
	rowSkip
	rowDone
)

// The evidence steps of the hot paths, out of line but for the smallest:
// without evidence they cost one test of t.evidence each. With it, each
// step is one call, one function entered: in the proxy, whose kernel work
// evicts the code of a transaction ago, entering a function costs more
// than most of what it runs, and a lookup's steps are a few functions
// (evBind, bindKeysStart, evidenceStart, evidenceBody, rowWhole,
// evComplete), not a call chain per step.

func (t *Tracker) evParseStart() { t.po = oidState{need: 2, oids: t.po.oids[:0]} }

func (t *Tracker) evBindStart() { t.bk = bindKeys{} }

// evParse returns the evidence of the Parse just read, about to be queued:
// its parameter types.
//
//go:noinline
func (t *Tracker) evParse(name string, cur *stmt) *paramTypes {
	types := t.parseTypes(cur)
	t.lastParse = parseSlot{seq: t.q.popped + uint64(t.q.n) + 1, name: name, types: types}
	t.pendingSQL += 4 * len(types.get())
	return types
}

// evBind returns the evidence of the Bind just read, about to be queued:
// what it carries to its portal. (t.bk is left as it is: evBindStart
// clears it for the next Bind.)
func (t *Tracker) evBind() bindEvidence {
	ev := t.bk.out // zero when the message ended early: the server rejects it
	ev.on = true
	if !t.bind.complete() || t.pendingSQL+8*len(ev.keys) > t.sqlBudget {
		ev.keys = nil
	}
	t.pendingSQL += 8 * len(ev.keys)
	return ev
}

// evDescribeName returns the name a Describe (of target sub) names.
//
//go:noinline
func (t *Tracker) evDescribeName(sub byte) string {
	if len(t.feSmall) > 1 && t.feSmall[1] == 0 { // the unnamed one
		return ""
	}
	name := nameOf(t.feSmall[1:])
	if sub == targetPortal {
		return t.portalName(name)
	}
	return t.stmtName(name, t.stmtByName(name))
}

// evComplete attaches the evidence of e, a statement that completed
// (result: its rows are e's) or failed, and ends the result.
//
//go:noinline
func (t *Tracker) evComplete(e *Execution, result bool) {
	// e's ParamKeys (newExecution set them), and the digests of the result
	// just completed when result is set, within the budget.
	r := &t.res
	rows := 0
	if result && r.on && r.rows > 0 {
		rows = r.rows
		if r.trunc {
			t.stats.EvidenceTruncated++
		}
	}
	size := 8 * len(e.ParamKeys)
	if rows > 0 {
		size += resultSize(r.ncols, rows)
	}
	switch {
	case size > 0 && !t.takeEvidence(size):
		t.stats.EvidenceDropped++
		e.ParamKeys = nil
	case rows > 0:
		if n := r.ncols; rows == 1 && n <= arenaMaxKeys { // a lookup's row, from the arena
			rk, back := t.allocResult(), t.allocKeys(n)
			copy(back, r.keys[:n])
			rk.Truncated = r.trunc
			rk.set(r.desc.names, 1, back)
			e.Result = rk
		} else {
			e.Result = r.build()
		}
		if rs := size - 8*len(e.ParamKeys); rs <= math.MaxInt32 {
			e.resSize, e.resRows = int32(rs), int32(rows)
		}
	}
	t.resetResult()
}

// head returns the request the next reply answers, nil when none is queued.
func (t *Tracker) head() *request {
	for i := 0; i < t.q.n; i++ {
		if r := t.q.at(i); r.kind != reqCopyEnd {
			return r
		}
	}
	return nil
}

// beginResult starts hashing a result described by d (nil: not hashed).
func (t *Tracker) beginResult(d *resultDesc, bin uint64) {
	r := &t.res
	*r = resultState{begun: true, keys: r.keys[:0]}
	if d == nil || len(d.names) == 0 {
		return
	}
	r.on, r.desc, r.bin, r.ncols = true, d, bin, len(d.names)
	r.trunc = d.count > len(d.names)
}

// endResult forgets the result being hashed (see resultState).
//
//go:noinline
func (t *Tracker) endResult() { t.resetResult() }

// resetResult is endResult, inlined where the result ends every time.
func (t *Tracker) resetResult() {
	r := &t.res
	r.begun, r.on, r.rows, r.keys = false, false, 0, r.keys[:0]
	if cap(r.keys) > keepKeysCap {
		r.keys = nil
	}
	t.row.on = false
}

// rowBody hashes the values of the DataRow being read.
func (t *Tracker) rowBody(p []byte) {
	w := &t.row
	for len(p) > 0 {
		switch w.stage {
		case rowCount, rowLen:
			if w.need == 4 && len(p) >= 4 { // the usual case: a whole length at once
				w.num, w.need, p = binary.BigEndian.Uint32(p), 0, p[4:]
			}
			for w.need > 0 && len(p) > 0 {
				w.num = w.num<<8 | uint32(p[0])
				p = p[1:]
				w.need--
			}
			if w.need > 0 {
				return
			}
			if w.stage == rowCount {
				w.n = int(w.num)
				w.nextCol(t.res.ncols)
				continue
			}
			switch l := int32(w.num); {
			case l > valuekey.MaxValueBytes:
				w.stage, w.need = rowSkip, int(l)
			case l > 0:
				w.stage, w.need, w.vlen, w.nv = rowVal, int(l), int(l), 0
			case l < -1: // malformed; the server never sends it
				w.stage = rowDone
			default: // NULL or empty: not a key
				w.col++
				w.nextCol(t.res.ncols)
			}
		case rowVal:
			n := min(w.need, len(p))
			if w.nv == 0 && n == w.vlen {
				t.rowKey(p[:n]) // whole in this chunk: no copy
			} else {
				w.nv += copy(t.rowVal[w.nv:], p[:n])
				if w.nv == w.vlen {
					t.rowKey(t.rowVal[:w.vlen])
				}
			}
			p = p[n:]
			if w.need -= n; w.need == 0 {
				w.col++
				w.nextCol(t.res.ncols)
			}
		case rowSkip:
			n := min(w.need, len(p))
			p = p[n:]
			if w.need -= n; w.need == 0 {
				w.col++
				w.nextCol(t.res.ncols)
			}
		default:
			return
		}
	}
}

// rowWhole is rowBody for a DataRow whose body p is whole in one chunk:
// the same keys, without the steps that wait for more bytes.
func (t *Tracker) rowWhole(p []byte) {
	w := &t.row
	n := min(int(binary.BigEndian.Uint16(p)), t.res.ncols)
	p = p[2:]
	w.stage = rowDone
	for w.col = 0; w.col < n && len(p) >= 4; w.col++ {
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		switch {
		case l > 0 && int(l) <= len(p):
			if l <= valuekey.MaxValueBytes {
				t.rowKey(p[:l])
			}
			p = p[l:]
		case l > 0, l < -1: // cut short, or malformed: the server never sends it
			return
		}
	}
}

func (w *rowState) nextCol(ncols int) {
	if w.col >= w.n || w.col >= ncols {
		w.stage = rowDone
		return
	}
	w.stage, w.need, w.num = rowLen, 4, 0
}

func (t *Tracker) rowKey(v []byte) {
	r, c := &t.res, t.row.col
	k := valuekey.Text(v)
	if r.bin>>c&1 != 0 {
		k = valuekey.Binary(v, r.desc.oids[c])
	}
	r.keys[t.row.base+c] = k
}

// evidenceStart is called when a DataRow or a RowDescription begins: it
// decides whether the DataRow's values or the RowDescription are read
// (evRead). A result's first DataRow looks up its description (a Query's
// came in its RowDescription), and each row takes its room in res.keys.
func (t *Tracker) evidenceStart() {
	t.evRead = false
	switch t.be.typ {
	case beDataRow:
		t.row.on = false
		h := t.head()
		if h == nil {
			return
		}
		r := &t.res
		switch h.kind {
		case reqExecute:
			if !r.begun { // the result's first row: look up its description
				var d *resultDesc
				var bin uint64
				var tmp portal
				if p := t.lookupPortal(h.name, &tmp); p != nil && p.ev.on {
					switch {
					case p.ev.described:
						d, bin = p.ev.desc, p.ev.descBin
					case p.stmt != nil:
						d, bin = p.stmt.desc, p.ev.resFmt
					}
				}
				t.beginResult(d, bin)
			}
		case reqQuery:
		default:
			return
		}
		if !r.on {
			return
		}
		if r.rows >= t.maxRows {
			r.trunc = true // counted, not read
			return
		}
		base := len(r.keys)
		r.keys = slices.Grow(r.keys, r.ncols)[:base+r.ncols]
		clear(r.keys[base:])
		t.row = rowState{on: true, need: 2, base: base}
		t.evRead = true
	case beRowDescription:
		h := t.head()
		t.rdOn = h != nil && (h.kind == reqQuery || h.kind == reqDescribe && !t.knownColumns(h))
		t.rd = t.rd[:0]
		t.evRead = t.rdOn
	}
}

// knownColumns tells whether the RowDescription that answers Describe h is
// known before it is read: h describes a portal of a named statement whose
// columns were read since its Parse. PostgreSQL never lets a prepared
// statement's result columns change (a new plan with other columns fails
// with "cached plan must not change result type"), and the formats are the
// Bind's: the portal's Execute takes both from the statement and the Bind
// (evidenceStart), as when the portal is not described. libpq
// describes its portal before every Execute.
func (t *Tracker) knownColumns(h *request) bool {
	if h.sub != targetPortal {
		return false
	}
	var tmp portal
	p := t.lookupPortal(h.name, &tmp)
	return p != nil && p.ev.on && !p.ev.described && p.stmt != nil &&
		p.stmt.name != "" && p.stmt.descRead && p.stmt.desc != nil
}

// evidenceBody reads the bytes p of the message evidenceStart chose.
func (t *Tracker) evidenceBody(p []byte) {
	switch t.be.typ {
	case beDataRow:
		if w := &t.row; w.stage == rowCount && w.need == 2 && len(p) >= 2 && len(p) == t.be.left {
			t.rowWhole(p) // the usual case: the whole row in one chunk
			return
		}
		t.rowBody(p)
	case beRowDescription:
		if room := rdCap(t.maxCols) - len(t.rd); room > 0 {
			t.rd = append(t.rd, p[:min(room, len(p))]...)
		}
	}
}

// rowEnd counts the DataRow just read. Columns it did not have, or cut
// short, are None.
func (t *Tracker) rowEnd() {
	t.row.on = false
	t.res.rows++
}

// build returns the digests hashed so far, column by column, of a result
// of several rows (or of one row wider than the arena serves; evComplete
// takes a lookup's row from the arena): a few digests in one allocation,
// more in two.
func (r *resultState) build() *ResultKeys {
	rows := r.rows
	n := r.ncols * rows
	var rk *ResultKeys
	var back []valuekey.Key
	switch {
	case n <= len(smallResult{}.keys):
		sm := new(smallResult)
		rk, back = &sm.rk, sm.keys[:n]
	default:
		rk, back = new(ResultKeys), make([]valuekey.Key, n)
	}
	rk.Truncated = r.trunc
	if r.ncols == 1 || rows == 1 { // row by row is column by column
		copy(back, r.keys[:n])
	} else {
		for c := range r.ncols {
			col := back[c*rows : (c+1)*rows]
			for i := range col {
				col[i] = r.keys[i*r.ncols+c]
			}
		}
	}
	rk.set(r.desc.names, rows, back)
	return rk
}

// smallResult holds a ResultKeys of a few rows of up to 5 digests, and
// them, in one allocation (96 bytes).
type smallResult struct {
	rk   ResultKeys
	keys [5]valuekey.Key
}

// evidenceCredit is how much of the EvidenceBudget a tracker takes at a
// time, to attach evidence from: the budget is one counter shared by every
// tracker and the consumer, each on its own core, and taking from it for
// every execution moved its cache line between cores every time. A tracker
// holds less than this, given back at Close or when its connection fails.
const evidenceCredit = 4 << 10

// takeEvidence takes n bytes for an execution's evidence: from the
// tracker's credit, topped up by evidenceCredit at a time, or from the
// budget itself for a large result or when the budget has no credit to
// spare.
func (t *Tracker) takeEvidence(n int) bool {
	if n <= t.credit {
		t.credit -= n
		return true
	}
	return t.takeEvidenceSlow(n)
}

// takeEvidenceSlow is takeEvidence when the credit is short.
func (t *Tracker) takeEvidenceSlow(n int) bool {
	if t.budget == nil {
		return true
	}
	if n < evidenceCredit && t.budget.take(evidenceCredit) {
		t.credit += evidenceCredit - n
		return true
	}
	return t.budget.Take(n)
}

// releaseCredit gives back what the tracker took and did not attach.
func (t *Tracker) releaseCredit() {
	t.budget.Give(t.credit)
	t.credit = 0
}

// describeRows handles the RowDescription that answers a Describe.
func (t *Tracker) describeRows(h *request) {
	switch h.sub {
	case targetStatement:
		if st := t.lookupStmt(h.name); st != nil {
			d, _ := t.readDesc(st.desc, nil)
			t.setStmtDesc(st, d)
		}
	case targetPortal:
		var tmp portal
		p := t.lookupPortal(h.name, &tmp)
		if p == nil || !p.ev.on {
			return
		}
		var cand *resultDesc
		if p.stmt != nil {
			cand = p.stmt.desc
		}
		d, bin := t.readDesc(cand, p.ev.desc)
		t.describePortal(p, d, bin)
		t.storePortal(p, &tmp)
		if p.stmt != nil && d != nil {
			// The statement's columns, for its portals that are not described.
			t.setStmtDesc(p.stmt, d)
		}
	}
}

// describePortal records the answer to a Describe of portal p: its
// description is the statement's, or else counts in the portals' budget.
func (t *Tracker) describePortal(p *portal, d *resultDesc, bin uint64) {
	if p.stmt != nil { // the statement's columns: they cost the portal nothing
		p.ev.described, p.ev.desc, p.ev.descBin = true, d, bin
		return
	}
	before := p.size()
	p.ev.described, p.ev.desc, p.ev.descBin = true, d, bin
	p.ev.recost(p.stmt == nil)
	if t.portalParams+p.size()-before > t.sqlBudget {
		p.ev.desc = nil // over the budget: as if NoData
		p.ev.recost(p.stmt == nil)
	}
	t.portalParams += p.size() - before
}

// describeNoData handles the NoData that answers a Describe.
func (t *Tracker) describeNoData(h *request) {
	switch h.sub {
	case targetStatement:
		if st := t.lookupStmt(h.name); st != nil {
			t.setStmtDesc(st, nil)
		}
	case targetPortal:
		var tmp portal
		if p := t.lookupPortal(h.name, &tmp); p != nil && p.ev.on {
			t.describePortal(p, nil, 0)
			t.storePortal(p, &tmp)
		}
	}
}

// setStmtDesc remembers d as the columns of st, in its byte budget.
func (t *Tracker) setStmtDesc(st *stmt, d *resultDesc) {
	st.descRead = true
	if st.desc == d {
		return
	}
	st.desc = d
	if st.name == "" || t.stmts == nil {
		return
	}
	if cur, ok := t.stmts.Peek(st.name); ok && cur == st {
		t.stats.Evictions += uint64(t.stmts.Add(st.name, st, st.cost()))
	}
}

// oidState reads the parameter type OIDs at the end of a Parse.
type oidState struct {
	stage   uint8 // 0: count; 1: OIDs; 2: done
	need    int
	num     uint32
	left    int
	oids    []uint32 // the first maxParamOIDs
	nonzero bool
}

// size is what the types read take in the budget for pending requests.
func (o *oidState) size() int {
	if !o.nonzero {
		return 0
	}
	return 4 * len(o.oids)
}

func (o *oidState) feed(p []byte) {
	for len(p) > 0 && o.stage < 2 {
		for o.need > 0 && len(p) > 0 {
			o.num = o.num<<8 | uint32(p[0])
			p = p[1:]
			o.need--
		}
		if o.need > 0 {
			return
		}
		if o.stage == 0 {
			o.left, o.stage = int(o.num), 1
		} else {
			o.oids = append(o.oids, o.num)
			o.nonzero = o.nonzero || o.num != 0
			o.left--
		}
		o.num, o.need = 0, 4
		if o.left == 0 || len(o.oids) >= maxParamOIDs {
			o.stage = 2
		}
	}
}

// paramTypes are the parameter type OIDs a Parse named, shared by its
// request, its statement and the Parses that repeat them.
type paramTypes struct {
	oids []uint32
}

func (p *paramTypes) get() []uint32 {
	if p == nil {
		return nil
	}
	return p.oids
}

// parseSlot is the latest Parse queued, while it awaits its reply (request
// number seq is still queued): a Bind sent in the same pipeline uses its
// parameter types before the server has confirmed the statement.
type parseSlot struct {
	seq   uint64
	name  string
	types *paramTypes
}

// pendingParse returns the latest Parse queued and whether it still awaits
// its reply.
func (t *Tracker) pendingParse() (parseSlot, bool) {
	s := t.lastParse
	return s, s.seq > t.q.popped
}

// parseTypes returns the parameter types of the Parse just read, sharing
// equal ones already held.
func (t *Tracker) parseTypes(cur *stmt) *paramTypes {
	o := &t.po
	if o.stage != 2 || !o.nonzero {
		return nil
	}
	if cur != nil && slices.Equal(cur.types.get(), o.oids) {
		return cur.types
	}
	if s, ok := t.pendingParse(); ok && slices.Equal(s.types.get(), o.oids) {
		return s.types
	}
	return &paramTypes{oids: slices.Clone(o.oids)}
}

// bindOIDs returns the parameter types of the statement a Bind names.
func (t *Tracker) bindOIDs(name []byte) []uint32 {
	if s, ok := t.pendingParse(); ok && s.name == string(name) {
		return s.types.get()
	}
	st := t.stmtByName(name)
	t.bk.st, t.bk.looked = st, true
	if st != nil {
		return st.types.get()
	}
	return nil
}
