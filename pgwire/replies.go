package pgwire

import "time"

func (t *Tracker) beStart() {
	switch t.be.typ {
	case beCommandComplete, beReadyForQuery, beParameterStatus:
		t.beSmall = t.beSmall[:0]
	case beErrorResponse:
		t.errResp = errState{}
	}
}

func (t *Tracker) beBody(p []byte) {
	switch t.be.typ {
	case beCommandComplete, beReadyForQuery, beParameterStatus:
		if room := backendSmallCap - len(t.beSmall); room > 0 {
			t.beSmall = append(t.beSmall, p[:min(room, len(p))]...)
		}
	case beErrorResponse:
		t.errResp.feed(p)
	default:
		if t.evRead {
			t.evidenceBody(p)
		}
	}
}

// beEnd handles a complete server message.
func (t *Tracker) beEnd(now time.Time) {
	switch typ := t.be.typ; typ {
	case beReadyForQuery:
		status := byte(txIdle)
		if len(t.beSmall) > 0 {
			status = t.beSmall[0]
		}
		if t.emit == nil {
			t.bareSyncs = max(t.bareSyncs-1, 0)
			t.txStatus = status
			return
		}
		t.readyForQuery(status)
	case beParameterStatus:
		t.parameterStatus()
	case beParseComplete, beBindComplete, beCloseComplete, beCommandComplete, beDataRow, beErrorResponse, beCopyInResponse, beCopyOutResponse, beEmptyQueryResponse, beRowDescription, beFunctionCallResponse, beCopyBothResponse, beNoData, bePortalSuspended, beParameterDescription:
		t.reply(typ, now)
	}
	// NoticeResponse, NotificationResponse, copy-out CopyData/CopyDone and
	// unknown types are not replies.
}

func (t *Tracker) parameterStatus() {
	if s, ok := StandardStringsStatus(t.beSmall); ok {
		t.reported = s
		if s != t.groupStrings {
			t.groupChanged = true
		}
		return
	}
	t.conn = WithParameterStatus(t.conn, t.beSmall)
}

// parseStrings is the standard_conforming_strings that a text the server
// parses now (a Parse or a Query) is read with, as far as the tracker can
// tell: see the Tracker comment.
func (t *Tracker) parseStrings() StandardStrings {
	if t.groupExecuted || t.groupChanged {
		return StandardStringsUnknown
	}
	return t.groupStrings
}

// endGroupStrings is called at the end of a group (a ReadyForQuery, or the
// end of the connection): when the setting changed in the group, what was
// read in it is marked unknown; then the next group starts with the value
// reported last.
func (t *Tracker) endGroupStrings() {
	if t.groupChanged {
		for _, e := range t.held {
			e.StandardStrings = StandardStringsUnknown
		}
		if st := t.unnamedStmt; st != nil && st.group == t.groupSeq {
			st.strs = StandardStringsUnknown
		}
		if t.stmts != nil {
			t.stmts.All(func(_ string, st *stmt) bool {
				if st.group == t.groupSeq {
					st.strs = StandardStringsUnknown
				}
				return true
			})
		}
	}
	t.groupStrings = t.reported
	t.groupExecuted, t.groupChanged = false, false
	t.groupSeq++
}

// reply matches a server reply to the head of the queue.
func (t *Tracker) reply(typ byte, now time.Time) {
	for t.q.n > 0 && t.q.at(0).kind == reqCopyEnd { // the server ignored them
		t.pop()
	}
	if t.q.n == 0 {
		switch {
		case t.untracking || t.untracked > 0:
			// A reply to a request sent while paused. Copy-in still makes
			// the server ignore the client's Syncs.
			if typ == beCopyInResponse || typ == beCopyBothResponse {
				t.feCopy = true
			}
		case typ == beErrorResponse:
			// FATAL errors (shutdown, idle timeouts) arrive unasked.
		case !t.stray:
			t.stray = true
			t.stats.Desyncs++
		}
		return
	}
	h := t.q.at(0)
	switch typ {
	case beDataRow:
		if h.kind == reqExecute || h.kind == reqQuery {
			h.rows++
			if t.row.on {
				t.rowEnd()
			}
			return
		}
	case beRowDescription:
		switch h.kind {
		case reqDescribe:
			if t.rdOn {
				t.describeRows(h)
			}
			t.pop()
			return
		case reqQuery:
			if t.rdOn {
				t.beginResult(t.readDesc(nil, nil))
			}
			return
		case reqExecute:
			return
		}
	case beNoData:
		if h.kind == reqDescribe {
			if t.evidence {
				t.describeNoData(h)
			}
			t.pop()
			return
		}
	case beParameterDescription:
		if h.kind == reqDescribe {
			return
		}
	case beParseComplete:
		if h.kind == reqParse {
			t.parseComplete(h)
			t.pop()
			return
		}
	case beBindComplete:
		if h.kind == reqBind {
			st := t.useStmt(h.name)
			p := portal{name: h.portal, stmtName: h.name, stmt: st, hash: h.hash, nparams: h.nparam, bits: h.bits, params: h.params}
			p.ev = h.ev
			t.putPortal(p)
			t.pop()
			return
		}
	case beCloseComplete:
		if h.kind == reqClose {
			if h.sub == targetPortal {
				t.dropPortal(h.name)
			} else {
				t.dropStmt(h.name)
			}
			t.pop()
			return
		}
	case beCommandComplete:
		switch h.kind {
		case reqQuery:
			t.commandComplete(h, now)
			h.idx++
			h.rows, h.inCopy, t.feCopy = 0, false, false
			return
		case reqExecute:
			t.commandComplete(h, now)
			t.feCopy = false
			t.pop()
			return
		}
	case beEmptyQueryResponse:
		if t.evidence {
			t.endResult()
		}
		switch h.kind {
		case reqQuery:
			return
		case reqExecute:
			t.pop()
			return
		}
	case bePortalSuspended:
		if h.kind == reqExecute {
			e := t.newExecution(h, now)
			e.Command, e.Rows = "SELECT", h.rows
			if t.evidence {
				t.evComplete(e, true)
			}
			t.produce(e)
			t.pop()
			return
		}
	case beErrorResponse:
		t.errorResponse(h, now)
		return
	case beCopyInResponse, beCopyBothResponse, beCopyOutResponse:
		if h.kind == reqQuery || h.kind == reqExecute {
			h.inCopy = true
			if typ != beCopyOutResponse && !t.copyInStarted() {
				t.feCopy = true
			}
			return
		}
	case beFunctionCallResponse:
		if h.kind == reqFunc {
			return
		}
	}
	t.desync()
}

func (t *Tracker) parseComplete(h *request) {
	cur := t.lookupStmt(h.name)
	types := h.types
	strs := t.parseStrings()
	if cur == nil || cur.sql != h.sql || cur.trunc != h.trunc || cur.types != types || cur.strs != strs {
		cur = &stmt{name: h.name, sql: h.sql, trunc: h.trunc, types: types, strs: strs}
	}
	cur.group, cur.descRead = t.groupSeq, false
	t.putStmt(cur)
}

// copyInStarted is called when the request at the head of the queue started
// copy-in: the server now reads the client's messages inside COPY, ignoring
// Sync (and Flush) until CopyDone or CopyFail. It drops the queued Syncs up to
// the queued CopyDone/CopyFail marker and reports whether there was one.
func (t *Tracker) copyInStarted() bool {
	q := &t.q
	w, found := 1, false
	for i := 1; i < q.n; i++ {
		r := q.at(i)
		if !found {
			if r.kind == reqSync {
				continue
			}
			if r.kind == reqCopyEnd {
				found = true
				continue
			}
		}
		if w != i {
			*q.at(w) = *r
		}
		w++
	}
	for i := w; i < q.n; i++ {
		*q.at(i) = request{}
	}
	q.n = w
	return found
}

func (t *Tracker) commandComplete(h *request, now time.Time) {
	cmd, rows := parseTag(untilNUL(t.beSmall))
	e := t.newExecution(h, now)
	e.Command, e.Rows = cmd, rows
	if t.evidence {
		t.evComplete(e, true)
	}
	switch cmd {
	case "BEGIN", "START TRANSACTION":
		t.groupBegan = true
	}
	if txCommand(cmd) {
		e.InTransaction = true
	}
	switch cmd {
	case "DEALLOCATE ALL":
		t.clearStmts()
	case "DISCARD ALL":
		t.clearStmts()
		t.clearPortals()
	case "CLOSE CURSOR ALL":
		t.clearPortals()
	case "DEALLOCATE":
		if name, ok := deallocateTarget(e.SQL); ok {
			t.dropStmt(name)
		}
	}
	t.produce(e)
}

func (t *Tracker) errorResponse(h *request, now time.Time) {
	if t.evidence {
		t.endResult()
	}
	switch h.kind {
	case reqQuery: // the rest of the query is skipped; ReadyForQuery follows
		e := t.newExecution(h, now)
		e.SQLState = string(t.errResp.code[:t.errResp.n])
		t.produce(e)
		h.idx++
		h.inCopy, t.feCopy = false, false
		return
	case reqSync, reqFunc: // e.g. a deferred constraint at the implicit commit; ReadyForQuery follows
		return
	case reqParse, reqBind, reqExecute:
		e := t.newExecution(h, now)
		e.SQLState = string(t.errResp.code[:t.errResp.n])
		if t.evidence {
			t.evComplete(e, false)
		}
		t.produce(e)
	}
	// The server now discards every message until Sync.
	t.feCopy = false
	t.pop()
	for t.q.n > 0 && t.q.at(0).kind != reqSync {
		t.pop()
	}
	if t.q.n == 0 {
		t.skipTillSync = true
	}
}

func (t *Tracker) readyForQuery(status byte) {
	if t.evidence {
		t.endResult()
	}
	dropped := false
	for t.q.n > 0 && !t.q.at(0).kind.syncPoint() {
		if t.q.at(0).kind != reqCopyEnd {
			dropped = true
		}
		t.pop()
	}
	switch {
	case t.q.n > 0:
		if t.q.at(0).kind == reqQuery {
			// exec_simple_query drops the unnamed statement and portal.
			t.unnamedStmt = nil
			t.dropPortal("")
		}
		t.pop()
		if dropped {
			t.stats.Desyncs++
		}
	case t.untracked > 0:
		t.untracked--
		t.untrackedRFQs++
		if t.untracked == 0 && !t.untrackedTail {
			t.untracking = false
		} else if t.untrackedRFQs > resyncAfter {
			t.untracking, t.untracked, t.untrackedTail = false, 0, false
			t.stats.Desyncs++
		}
	case dropped || !t.stray:
		t.stats.Desyncs++
	}
	t.stray = false
	t.feCopy = false // the server left COPY before it said ReadyForQuery
	t.finishGroup(status)
}

// desync handles a reply that does not fit the queue: every queued request
// is moved to the paused count, and tracking resumes when the server has
// answered them.
func (t *Tracker) desync() {
	t.stats.Desyncs++
	tail := false
	for i := 0; i < t.q.n; i++ {
		switch k := t.q.at(i).kind; {
		case k.syncPoint():
			t.untracked++
			tail = false
		case k != reqCopyEnd:
			tail = true
		}
	}
	if !t.untracking {
		t.untracking, t.untrackedTail, t.untrackedRFQs = true, tail, 0
	}
	t.q.clear()
	t.pendingSQL = 0
	if t.evidence {
		t.endResult()
	}
}

// newExecution starts an Execution for the request h completing now.
func (t *Tracker) newExecution(h *request, now time.Time) *Execution {
	start := h.seen
	if t.lastEnd.After(start) {
		start = t.lastEnd
	}
	if start.After(now) {
		start = now
	}
	t.lastEnd = now
	var tmp portal
	var p *portal
	if h.kind == reqExecute {
		p = t.lookupPortal(h.name, &tmp)
	}
	e := new(Execution)
	*e = Execution{Conn: t.conn, Start: start, End: now, Rows: -1, Protocol: protocolExtended, InTransaction: t.groupBegan}
	switch h.kind {
	case reqQuery:
		e.Protocol = protocolSimple
		e.SQL, e.Truncated, e.StatementIndex = h.sql, h.trunc, h.idx
		e.StandardStrings = t.parseStrings()
	case reqParse:
		e.SQL, e.Truncated, e.Prepared = h.sql, h.trunc, h.name
		e.StandardStrings = t.parseStrings()
	case reqBind:
		if st := t.lookupStmt(h.name); st != nil {
			e.SQL, e.Truncated, e.StandardStrings = st.sql, st.trunc, st.strs
		}
		e.Prepared, e.ParamsHash, e.NumParams = h.name, h.hash, h.nparam
		e.ParamWildcard, e.ParamLarge = h.bits.wild, h.bits.large
		e.setParams(h.params)
		e.ParamKeys = h.ev.keys
	case reqExecute:
		t.groupExecuted = true
		if p != nil {
			if p.stmt != nil {
				e.SQL, e.Truncated, e.StandardStrings = p.stmt.sql, p.stmt.trunc, p.stmt.strs
			}
			e.Prepared, e.ParamsHash, e.NumParams = p.stmtName, p.hash, p.nparams
			e.ParamWildcard, e.ParamLarge = p.bits.wild, p.bits.large
			e.setParams(p.params)
			e.ParamKeys = p.ev.keys
		}
	}
	return e
}

// produce holds e until the ReadyForQuery of its group.
func (t *Tracker) produce(e *Execution) {
	if len(t.held) >= maxHeld {
		t.flushHeld(t.txStatus, false)
	}
	t.held = append(t.held, e)
}

func inTx(status byte) bool { return status == txInBlock || status == txFailed }

// finishGroup completes the held executions with the ReadyForQuery status.
func (t *Tracker) finishGroup(status byte) {
	if len(t.held) > 0 && (inTx(t.txStatus) || t.groupBegan) && status == txIdle {
		t.held[len(t.held)-1].TxEnd = true
	}
	t.endGroupStrings()
	t.flushHeld(status, true)
	t.txStatus = status
	t.groupBegan = false
	if status == txIdle { // the transaction is over: so are its portals
		t.clearPortals()
	}
}

func (t *Tracker) flushHeld(status byte, final bool) {
	tx := inTx(t.txStatus) || (final && inTx(status))
	for i, e := range t.held {
		if tx {
			e.InTransaction = true
		}
		t.emit(e)
		t.held[i] = nil
	}
	t.held = t.held[:0]
}
