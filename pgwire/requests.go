package pgwire

import (
	"bytes"
	"time"

	"github.com/nplus1/nplus1/internal/fnv1a"
)

// errState picks the SQLSTATE ('C' field) out of a streaming ErrorResponse.
type errState struct {
	stage uint8 // 0: field type next; 1: skipping a value; 2: reading the code; 3: done
	code  [8]byte
	n     int
}

func (e *errState) feed(p []byte) {
	for len(p) > 0 {
		switch e.stage {
		case 0:
			switch p[0] {
			case 0:
				e.stage = 3
			case 'C':
				e.stage, e.n = 2, 0
			default:
				e.stage = 1
			}
			p = p[1:]
		case 1:
			i := bytes.IndexByte(p, 0)
			if i < 0 {
				return
			}
			p = p[i+1:]
			e.stage = 0
		case 2:
			c := p[0]
			p = p[1:]
			if c == 0 {
				e.stage = 0
			} else if e.n < len(e.code) {
				e.code[e.n] = c
				e.n++
			}
		default:
			return
		}
	}
}

func (t *Tracker) feStart() {
	switch t.fe.typ {
	case feQuery:
		t.sql.reset()
	case feParse:
		t.name.reset()
		t.sql.reset()
		if t.evidence {
			t.evParseStart()
		}
	case feBind:
		t.name.reset()
		t.name2.reset()
		t.bind = bindState{h: fnv1a.Offset, ev: t.evidence}
		if t.evidence {
			t.evBindStart()
		}
		if t.keepParams {
			t.pv.reset()
		}
	case feExecute, feDescribe, feClose:
		t.feSmall = t.feSmall[:0]
	}
}

func (t *Tracker) feBody(p []byte) {
	switch t.fe.typ {
	case feQuery:
		if !t.sql.done {
			t.sql.feed(p, t.maxSQL)
		}
	case feParse:
		if !t.name.done {
			p = p[t.name.feed(p, maxNameBytes):]
		}
		if len(p) > 0 && t.name.done && !t.sql.done {
			p = p[t.sql.feed(p, t.maxSQL):]
		}
		if len(p) > 0 && t.sql.done && t.evidence {
			t.po.feed(p)
		}
	case feBind:
		t.bindBody(p)
	case feExecute, feDescribe, feClose:
		if room := frontendSmallCap - len(t.feSmall); room > 0 {
			t.feSmall = append(t.feSmall, p[:min(room, len(p))]...)
		}
	}
}

// reqKind is what a queued request waits for.
type reqKind uint8

const (
	reqQuery    reqKind = iota + 1 // results, then ReadyForQuery
	reqParse                       // ParseComplete
	reqBind                        // BindComplete
	reqExecute                     // CommandComplete, EmptyQueryResponse or PortalSuspended
	reqDescribe                    // [ParameterDescription,] RowDescription or NoData
	reqClose                       // CloseComplete
	reqSync                        // ReadyForQuery
	reqFunc                        // FunctionCallResponse, then ReadyForQuery
	reqCopyEnd                     // a CopyDone/CopyFail marker; no reply of its own
)

// syncPoint reports the requests the server answers with ReadyForQuery.
func (k reqKind) syncPoint() bool { return k == reqQuery || k == reqSync || k == reqFunc }

func frontendKind(typ byte) reqKind {
	switch typ {
	case feQuery:
		return reqQuery
	case feParse:
		return reqParse
	case feBind:
		return reqBind
	case feExecute:
		return reqExecute
	case feDescribe:
		return reqDescribe
	case feClose:
		return reqClose
	case feSync:
		return reqSync
	case feFunctionCall:
		return reqFunc
	case feCopyDone, feCopyFail:
		return reqCopyEnd
	}
	return 0 // Flush, CopyData, Terminate: no reply
}

// request is a queued client message awaiting its reply.
type request struct {
	kind   reqKind
	sub    byte // Describe, Close: 'S' or 'P'
	trunc  bool // sql was truncated
	inCopy bool
	idx    int   // Query: index of the next statement
	rows   int64 // DataRows seen
	seen   time.Time
	sql    string       // Query, Parse
	name   string       // Parse, Bind: statement; Execute: portal; Close: statement or portal
	portal string       // Bind
	hash   uint64       // Bind
	nparam int          // Bind
	bits   paramBits    // Bind
	params *boundParams // Bind, with keepParams
	// With evidence: the parameter types a Parse named, and what a Bind
	// carries to its portal (ev.on for a queued Bind).
	types *paramTypes
	ev    bindEvidence
}

// evSize is what r's evidence holds against the budget for pending
// requests.
func (r *request) evSize() int {
	return 4*len(r.types.get()) + 8*len(r.ev.keys)
}

// requestQueue is a FIFO ring of requests; its size is a power of two.
type requestQueue struct {
	buf    []request
	head   int
	n      int
	popped uint64 // requests popped or cleared so far: the next one pushed is number popped+n+1
}

func (q *requestQueue) at(i int) *request { return &q.buf[(q.head+i)&(len(q.buf)-1)] }

func (q *requestQueue) push(r *request) {
	if q.n == len(q.buf) {
		nb := make([]request, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = *q.at(i)
		}
		q.buf, q.head = nb, 0
	}
	*q.at(q.n) = *r
	q.n++
}

func (q *requestQueue) pop() {
	*q.at(0) = request{}
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	q.popped++
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 1024 {
			q.buf = nil
		}
	}
}

func (q *requestQueue) clear() {
	for i := 0; i < q.n; i++ {
		*q.at(i) = request{}
	}
	q.popped += uint64(q.n)
	q.head, q.n = 0, 0
	if len(q.buf) > 1024 {
		q.buf = nil
	}
}

func (t *Tracker) pop() {
	r := t.q.at(0)
	if r.kind == reqQuery || r.kind == reqParse {
		t.pendingSQL -= len(r.sql)
	} else if r.params != nil {
		t.pendingSQL -= r.params.size
	}
	if t.evidence && (r.kind == reqParse || r.kind == reqBind) {
		t.pendingSQL -= r.evSize()
	}
	t.q.pop()
}

// feEnd handles a complete client message.
func (t *Tracker) feEnd(now time.Time) {
	typ := t.fe.typ
	if t.skipTillSync { // the server discards everything until Sync
		if typ != feSync {
			return
		}
		t.skipTillSync = false
	}
	if t.feCopy { // the server reads these inside COPY
		switch typ {
		case feSync, feFlush, feCopyData:
			return
		case feCopyDone, feCopyFail:
			t.feCopy = false
			return
		}
	}
	kind := frontendKind(typ)
	if kind == 0 {
		if typ == feTerminate { // Terminate: no ReadyForQuery will come
			t.flushHeld(t.txStatus, false)
		}
		return
	}
	sqlLen := 0
	if kind == reqQuery || kind == reqParse {
		sqlLen = len(t.sql.buf)
	}
	if kind == reqParse && t.evidence {
		sqlLen += t.po.size()
	}
	if !t.untracking && (t.q.n >= t.maxPending || t.pendingSQL+sqlLen > t.sqlBudget) {
		t.untracking, t.untrackedTail, t.untrackedRFQs = true, false, 0
		t.stats.Overflows++
	}
	if t.untracking {
		switch {
		case kind.syncPoint():
			t.untracked++
			t.untrackedTail = false
		case kind != reqCopyEnd:
			t.untrackedTail = true
		}
		return
	}

	r := request{kind: kind, seen: now}
	switch kind {
	case reqQuery:
		r.sql, r.trunc = t.sqlText(nil), t.sql.trunc
		t.pendingSQL += len(r.sql)
	case reqParse:
		cur := t.stmtByName(t.name.buf)
		r.name = t.stmtName(t.name.buf, cur)
		r.sql, r.trunc = t.sqlText(cur), t.sql.trunc
		t.pendingSQL += len(r.sql)
		if t.evidence {
			r.types = t.evParse(r.name, cur)
		}
	case reqBind:
		r.portal = t.portalName(t.name.buf)
		cur := t.bk.st // bindOIDs' lookup, with the evidence
		if !t.bk.looked {
			cur = t.stmtByName(t.name2.buf)
		}
		r.name = t.stmtName(t.name2.buf, cur)
		if r.nparam = t.bind.nparams; r.nparam > 0 {
			r.hash, r.bits = t.bind.h, t.bind.bits
		}
		if t.keepParams {
			r.params = t.pv.take(t.bind.nparams)
			if t.pendingSQL+r.params.size > t.sqlBudget {
				r.params.values, r.params.truncated, r.params.size = nil, true, 0
			}
			t.pendingSQL += r.params.size
		}
		if t.evidence {
			r.ev = t.evBind()
		}
	case reqExecute:
		r.name = t.portalName(nameOf(t.feSmall))
	case reqDescribe:
		if len(t.feSmall) > 0 {
			r.sub = t.feSmall[0]
			if t.evidence {
				r.name = t.evDescribeName(r.sub)
			}
		}
	case reqClose:
		if len(t.feSmall) > 0 {
			r.sub = t.feSmall[0]
			name := nameOf(t.feSmall[1:])
			if r.sub == targetPortal {
				r.name = t.portalName(name)
			} else {
				r.name = t.stmtName(name, t.stmtByName(name))
			}
		}
	}
	t.q.push(&r)
}
