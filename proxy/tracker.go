package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// ProtocolError is a malformed or oversized message. The relay answers it
// with ErrorResponse 08P01 to the client and ends that connection only.
type ProtocolError struct {
	Frontend bool   // true when the client sent it
	Msg      string // what is wrong, safe to log (no message contents)
}

func (e *ProtocolError) Error() string {
	side := "server"
	if e.Frontend {
		side = "client"
	}
	return fmt.Sprintf("protocol violation from %s: %s", side, e.Msg)
}

// TrackerOptions bound a Tracker's memory; zero values take the package defaults.
type TrackerOptions struct {
	MaxMessageBytes int // larger messages are a ProtocolError
	MaxSQLBytes     int // SQL text kept per statement; longer is Truncated
	MaxStatements   int // prepared statements and portals remembered
	MaxPending      int // client messages awaiting a reply

	// KeepParams makes the tracker keep the bound parameter values and
	// format codes of each Bind and hand them on in Execution.Params and
	// Execution.ParamFormats, for recording. Off by default: the values are
	// hashed and dropped, and nothing is allocated for them.
	KeepParams bool
	// MaxParamBytes bounds the parameter values kept for one Bind (their
	// summed length); a Bind with more keeps none and sets
	// Execution.ParamsTruncated. Only with KeepParams.
	MaxParamBytes int
}

func (o *TrackerOptions) setDefaults() {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxSQLBytes <= 0 {
		o.MaxSQLBytes = DefaultMaxSQLBytes
	}
	if o.MaxStatements <= 0 {
		o.MaxStatements = DefaultMaxStatements
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxParamBytes <= 0 {
		o.MaxParamBytes = DefaultMaxParamBytes
	}
}

// TrackerStats counts what a Tracker could not follow. Every field only grows.
type TrackerStats struct {
	// Desyncs counts server replies that did not match the requests the
	// tracker was waiting for. Each one makes the tracker drop its pending
	// requests and pause until the server has answered them (see Tracker).
	Desyncs uint64
	// Overflows counts the times MaxPending (or the byte budget for pending
	// SQL text) was reached and the tracker paused.
	Overflows uint64
	// Evictions counts prepared statements and portals forgotten because
	// MaxStatements (or the byte budget for statement text) was reached.
	Evictions uint64
}

// Limits of the tracker that are not options.
const (
	// maxNameBytes is how much of a statement or portal name is kept: the
	// server itself keys them by their first NAMEDATALEN-1 bytes
	// (src/include/pg_config_manual.h, NAMEDATALEN 64).
	maxNameBytes = 63
	// maxHeld bounds the executions held back until their ReadyForQuery.
	maxHeld = 256
	// minSQLBudget is the smallest byte budget for SQL text retained per
	// connection, once for pending requests and once for prepared
	// statements; the budget is max(minSQLBudget, 4*MaxSQLBytes).
	minSQLBudget = 16 << 20
	// resyncAfter bounds how many ReadyForQuery messages the tracker waits,
	// paused, for its count of unanswered requests to drain. The count can
	// only be wrong after a desync, and waiting forever would silence the
	// connection for good; giving up costs at most another desync.
	resyncAfter = 1000
	// frontendSmallCap and backendSmallCap bound the messages read whole:
	// Execute, Describe, Close; CommandComplete, ReadyForQuery, ParameterStatus.
	frontendSmallCap = 1 + maxNameBytes + 1 + 4
	backendSmallCap  = 256
	// keepBufferCap is the largest scratch buffer kept between messages.
	keepBufferCap = 64 << 10
)

// Protocol values of Execution.Protocol.
const (
	protocolSimple   = "simple"
	protocolExtended = "extended"
)

// Tracker follows one connection's protocol messages and emits an Execution
// for each statement the server executed. It is a plain value driven by
// bytes, so the live relay and an offline capture reader drive it alike.
//
// Concurrency: a Tracker is not safe for concurrent use. The relay calls
// Frontend and Backend from its two pumps under one mutex, and calls Frontend
// before it forwards the client's bytes, so a reply is never seen before its
// request.
//
// Framing: both directions are framed as a stream; messages and their headers
// may be split anywhere. Messages are never buffered whole: bodies that do not
// matter are skipped by counting, SQL text is kept up to MaxSQLBytes
// (Execution.Truncated), Bind parameters are hashed as they stream by and
// never stored. A message length under 4 or over MaxMessageBytes, or an
// unknown client message type, is a *ProtocolError; the tracker is then dead
// and returns the same error from every later call. Unknown server message
// types are skipped.
//
// Matching (PgBouncer's model): every client message that the server answers
// is queued; replies are matched to the head of the queue in order.
// NoticeResponse, NotificationResponse and ParameterStatus are never replies.
// State changes take effect when the server confirms them, because that is
// when the server applied them: a statement is remembered at ParseComplete,
// a portal at BindComplete, Close takes effect at CloseComplete, and the
// CommandComplete tags DEALLOCATE, DEALLOCATE ALL, DISCARD ALL and
// CLOSE CURSOR ALL clear what they name. A simple Query drops the unnamed
// statement and portal; every portal is dropped when the server reports
// an idle transaction status (portals live until the end of the transaction).
//
// What is emitted:
//   - a simple Query: one Execution per CommandComplete or ErrorResponse, with
//     SQL the whole query text and StatementIndex 0, 1, 2...; EmptyQueryResponse
//     emits nothing.
//   - Execute: one Execution at its CommandComplete, ErrorResponse or
//     PortalSuspended. A suspended portal (row limit reached) reports
//     Command "SELECT" and Rows = the DataRows of that Execute, as the real tag
//     is only known when the portal completes; each later Execute of the same
//     portal emits again.
//   - a Parse or Bind that fails emits an Execution with its SQLState (the
//     statement the application asked for failed); Describe, Close, Sync and
//     FunctionCall errors emit nothing.
//   - an Execute of a portal or statement the tracker does not know (never
//     seen, or evicted) emits with SQL "": the analyzer should not fingerprint
//     it, but it still counts and times a statement.
//   - FunctionCall emits nothing; it is tracked only to stay in step.
//
// Errors: after an ErrorResponse to an extended-protocol message the server
// skips every message until Sync; so does the tracker, dropping the pending
// requests up to that Sync without emitting them.
//
// Transactions: executions are held until the ReadyForQuery that ends their
// Sync or Query (at most maxHeld; beyond that the oldest are emitted early).
// InTransaction is set when the status before the group or the status of that
// ReadyForQuery is 'T' or 'E', when the command is a transaction-control
// command, or when a BEGIN completed earlier in the same group. TxEnd is set on
// the last execution before a ReadyForQuery that says 'I' when the status
// before the group was 'T' or 'E' or the group began a transaction ("BEGIN;
// ...; COMMIT" in one Query or one pipeline).
//
// COPY: CopyInResponse and CopyBothResponse start copy-in mode, in which the
// server ignores Sync and Flush until the client's CopyDone or CopyFail
// (libpq sends a Sync right after Execute, before it knows the statement is a
// COPY); the tracker drops those Syncs too. Copy data is skipped by counting.
//
// Bounds and recovery: at most MaxPending requests are queued, and their SQL
// text is within a byte budget (max(16 MB, 4*MaxSQLBytes)). When either is
// reached, the tracker pauses: it stops queueing (counting Overflows), keeps
// framing, counts the Sync, Query and FunctionCall messages sent meanwhile,
// ignores the replies that follow the queued ones, and resumes once the server
// has answered every one of them with ReadyForQuery. A reply that does not fit
// the queue (a desync, counted in Desyncs) pauses the tracker the same way,
// with every queued request moved to the count. Statements and portals are
// bounded by MaxStatements each (and statement text by the same byte budget).
// When the statements are full, the least recently bound named statement is
// evicted; when the portals are full, a new named portal is not remembered;
// both count in Evictions. Nothing depends on map order, so the same bytes
// always give the same executions.
//
// ParamsHash is FNV-1a 64 over the Bind message's parameter format codes and,
// for each parameter, its 4-byte length and its value bytes, all as sent; it
// is 0 when there are no parameters (HashParams computes it from values).
//
// With KeepParams, a Bind's format codes and values are also copied (one
// allocation per Bind, at most MaxParamBytes of values) and shared, read
// only, by the request, its portal and the Executions of that portal. Their
// bytes count against the budget for pending SQL text while the Bind awaits
// its reply, and against the statements' budget while its portal lives; a
// Bind that would exceed either keeps no values (ParamsTruncated).
//
// A Tracker created with a nil emit function only frames and validates
// (replication connections), and counts Sync/Query/FunctionCall against
// ReadyForQuery for Idle.
type Tracker struct {
	conn *ConnInfo        // current identity; copied on write, never mutated
	emit func(*Execution) // nil: framing and validation only
	err  error            // the first *ProtocolError; the tracker is dead after it

	maxMsg        uint32
	maxSQL        int
	maxStatements int
	maxPending    int
	sqlBudget     int
	keepParams    bool
	maxParams     int

	fe, be framer

	// Frontend message being read.
	name, name2 cstr // Parse: statement; Bind: portal (name) and statement (name2)
	sql         cstr // Query, Parse
	bind        bindState
	feSmall     []byte      // Execute, Describe, Close
	pv          paramValues // Bind values being read; only with keepParams

	// Backend message being read.
	beSmall []byte   // CommandComplete, ReadyForQuery, ParameterStatus
	errResp errState // ErrorResponse

	q          requestQueue
	pendingSQL int // bytes of SQL text held by queued requests

	// Pause (see the type comment).
	untracking    bool // new requests are counted, not queued
	untracked     int  // unanswered Sync/Query/FunctionCall sent while untracking
	untrackedTail bool // requests were sent after the last counted one
	untrackedRFQs int  // ReadyForQuery seen while paused
	stray         bool // a reply without request was seen; count it once per group

	skipTillSync bool // after an extended-protocol error: the server skips until Sync
	feCopy       bool // the server is in copy-in: it ignores Sync and Flush until CopyDone/CopyFail

	unnamedStmt   *stmt
	stmts         map[string]*stmt
	lruHead       *stmt // least recently used named statement
	lruTail       *stmt
	stmtBytes     int
	unnamedPortal portal
	hasUnnamed    bool
	portals       map[string]portal
	portalParams  int // bytes of parameter values held by portals

	lastSQL    string    // the last SQL text seen, reused when it repeats
	txStatus   byte      // from the last ReadyForQuery
	groupBegan bool      // a BEGIN completed since the last ReadyForQuery
	lastEnd    time.Time // End of the previous execution
	held       []*Execution

	bareSyncs int // without emit: Sync, Query and FunctionCall not yet answered

	stats TrackerStats
}

// stmt is a prepared statement the server confirmed. Its text is never
// changed: a new Parse of the same name makes a new stmt, so portals keep
// theirs.
type stmt struct {
	name  string
	sql   string
	trunc bool

	// The named statements form a list, least recently used first; only
	// the Tracker touches these links.
	prev, next *stmt
}

type portal struct {
	name     string
	stmtName string
	stmt     *stmt // nil when the statement was unknown at Bind
	hash     uint64
	nparams  int
	params   *boundParams // only with keepParams; shared, read only
}

// boundParams are the values of one Bind, kept only with KeepParams.
type boundParams struct {
	formats   []int16
	values    [][]byte // nil entries are NULL
	truncated bool
	size      int // bytes of values
}

// paramValues collects a Bind's format codes and values as they stream by.
type paramValues struct {
	fmts  []byte  // the format codes, 2 bytes each, as sent
	buf   []byte  // the values, concatenated
	ends  []int32 // per parameter: end offset in buf, or -1 for NULL
	trunc bool    // values beyond maxParams were dropped
}

func (v *paramValues) reset() {
	if cap(v.buf) > keepBufferCap {
		v.buf = nil
	}
	v.fmts, v.buf, v.ends, v.trunc = v.fmts[:0], v.buf[:0], v.ends[:0], false
}

// take copies the collected values out, in one allocation for the bytes.
func (v *paramValues) take(nparams int) *boundParams {
	bp := &boundParams{truncated: v.trunc}
	if len(v.fmts) > 0 {
		bp.formats = make([]int16, len(v.fmts)/2)
		for i := range bp.formats {
			bp.formats[i] = int16(binary.BigEndian.Uint16(v.fmts[2*i:]))
		}
	}
	short := len(v.ends) != nparams
	for _, end := range v.ends {
		short = short || int(end) > len(v.buf)
	}
	if v.trunc || short {
		// Over the bound, or the message ended inside a value (malformed:
		// the server rejects it).
		bp.truncated = true
		return bp
	}
	data := append(make([]byte, 0, len(v.buf)), v.buf...) // never nil: '' is not NULL
	bp.size = len(data)
	bp.values = make([][]byte, len(v.ends))
	start := int32(0)
	for i, end := range v.ends {
		if end < 0 {
			continue
		}
		bp.values[i] = data[start:end:end]
		start = end
	}
	return bp
}

// NewTracker returns a Tracker for a connection whose startup and
// authentication are over (transaction status idle). emit receives each
// Execution once; it may be nil to only frame and validate.
func NewTracker(conn *ConnInfo, emit func(*Execution), opts TrackerOptions) *Tracker {
	opts.setDefaults()
	if conn == nil {
		conn = &ConnInfo{}
	}
	maxMsg := uint32(math.MaxUint32)
	if uint64(opts.MaxMessageBytes) < math.MaxUint32 {
		maxMsg = uint32(opts.MaxMessageBytes)
	}
	return &Tracker{
		conn:          conn,
		emit:          emit,
		maxMsg:        maxMsg,
		maxSQL:        opts.MaxSQLBytes,
		maxStatements: opts.MaxStatements,
		maxPending:    opts.MaxPending,
		sqlBudget:     max(minSQLBudget, 4*opts.MaxSQLBytes),
		keepParams:    opts.KeepParams,
		maxParams:     opts.MaxParamBytes,
		txStatus:      'I',
	}
}

// Conn returns the connection's current identity. It changes (a new value,
// the old one untouched) when the server reports a new application_name.
func (t *Tracker) Conn() *ConnInfo { return t.conn }

// Idle reports whether the connection is between transactions with nothing
// in flight: the server's last ReadyForQuery said idle, every request was
// answered, and no message is half read in either direction. It errs towards
// false when the tracker is paused or lost count.
func (t *Tracker) Idle() bool {
	if t.err != nil || t.txStatus != 'I' || t.fe.inBody || t.fe.nhdr > 0 || t.be.inBody || t.be.nhdr > 0 {
		return false
	}
	if t.emit == nil {
		return t.bareSyncs == 0
	}
	for i := 0; i < t.q.n; i++ {
		if t.q.at(i).kind != reqCopyEnd {
			return false
		}
	}
	return !t.untracking && t.untracked == 0 && !t.skipTillSync && !t.feCopy
}

// Close emits the executions still held for a ReadyForQuery that will not
// come (the connection ended). The tracker is not used after it.
func (t *Tracker) Close() {
	if t.emit != nil {
		t.flushHeld(t.txStatus, false)
	}
}

// Stats returns the tracker's counters.
func (t *Tracker) Stats() TrackerStats { return t.stats }

// framer reads one direction's message headers and counts bodies.
type framer struct {
	hdr    [5]byte
	nhdr   int
	typ    byte
	left   int // body bytes still to come
	inBody bool
}

// header consumes header bytes from p. It returns the bytes left, and whether
// a new message header is complete (f.typ and f.left then describe it).
func (f *framer) header(p []byte, maxMsg uint32, frontend bool) ([]byte, bool, error) {
	var h []byte
	if f.nhdr == 0 && len(p) >= 5 {
		h, p = p[:5], p[5:]
	} else {
		n := copy(f.hdr[f.nhdr:], p)
		f.nhdr += n
		p = p[n:]
		if f.nhdr < 5 {
			return p, false, nil
		}
		f.nhdr = 0
		h = f.hdr[:]
	}
	typ := h[0]
	l := binary.BigEndian.Uint32(h[1:5])
	if l < 4 {
		return p, false, &ProtocolError{Frontend: frontend, Msg: fmt.Sprintf("message %q has invalid length %d", typ, int32(l))}
	}
	if l > maxMsg {
		return p, false, &ProtocolError{Frontend: frontend, Msg: fmt.Sprintf("message %q of %d bytes exceeds the limit of %d bytes", typ, l, maxMsg)}
	}
	if frontend && !knownFrontendType(typ) {
		return p, false, &ProtocolError{Frontend: true, Msg: fmt.Sprintf("unknown message type %q", typ)}
	}
	f.typ = typ
	f.left = int(l - 4)
	f.inBody = true
	return p, true, nil
}

// knownFrontendType reports the message types PostgreSQL accepts from a
// client after authentication (PostgresMain, src/backend/tcop/postgres.c).
func knownFrontendType(typ byte) bool {
	switch typ {
	case 'Q', 'P', 'B', 'E', 'D', 'C', 'S', 'H', 'F', 'd', 'c', 'f', 'X':
		return true
	}
	return false
}

// Frontend observes bytes the client sent, in order, in any chunking. p is
// not retained.
func (t *Tracker) Frontend(p []byte, now time.Time) error {
	if t.err != nil {
		return t.err
	}
	f := &t.fe
	for len(p) > 0 {
		if !f.inBody {
			var ok bool
			var err error
			p, ok, err = f.header(p, t.maxMsg, true)
			if err != nil {
				t.err = err
				return err
			}
			if !ok {
				return nil
			}
			if t.emit != nil {
				t.feStart()
			} else if frontendKind(f.typ).syncPoint() {
				t.bareSyncs++
			}
		}
		if f.left > 0 && len(p) > 0 {
			n := min(f.left, len(p))
			if t.emit != nil {
				t.feBody(p[:n])
			}
			p = p[n:]
			f.left -= n
		}
		if f.left == 0 {
			f.inBody = false
			if t.emit != nil {
				t.feEnd(now)
			}
		}
	}
	return nil
}

// Backend observes bytes the server sent, in order, in any chunking. p is not
// retained.
func (t *Tracker) Backend(p []byte, now time.Time) error {
	if t.err != nil {
		return t.err
	}
	f := &t.be
	observe := t.emit != nil || f.typ == 'Z'
	for len(p) > 0 {
		if !f.inBody {
			var ok bool
			var err error
			p, ok, err = f.header(p, t.maxMsg, false)
			if err != nil {
				t.err = err
				return err
			}
			if !ok {
				return nil
			}
			// Untracked, only ReadyForQuery is read (for Idle).
			observe = t.emit != nil || f.typ == 'Z'
			if observe {
				t.beStart()
			}
		}
		if f.left > 0 && len(p) > 0 {
			n := min(f.left, len(p))
			if observe {
				t.beBody(p[:n])
			}
			p = p[n:]
			f.left -= n
		}
		if f.left == 0 {
			f.inBody = false
			if observe {
				t.beEnd(now)
			}
		}
	}
	return nil
}

// cstr collects a NUL-terminated string as it streams by, up to a limit.
type cstr struct {
	buf   []byte
	done  bool // the NUL was seen
	trunc bool // bytes beyond the limit were dropped
}

func (c *cstr) reset() {
	if cap(c.buf) > keepBufferCap {
		c.buf = nil
	}
	c.buf = c.buf[:0]
	c.done = false
	c.trunc = false
}

// feed consumes p up to and including the NUL and returns how many bytes it
// consumed.
func (c *cstr) feed(p []byte, limit int) int {
	seg, n := p, len(p)
	if i := bytes.IndexByte(p, 0); i >= 0 {
		seg, n = p[:i], i+1
		c.done = true
	}
	if room := limit - len(c.buf); len(seg) > room {
		seg = seg[:max(room, 0)]
		c.trunc = true
	}
	c.buf = append(c.buf, seg...)
	return n
}

// Bind is read field by field so that its parameters are hashed, never kept.
type bindState struct {
	stage   uint8
	need    int    // bytes left in the current field
	num     uint32 // integer being read
	left    int    // parameters still to read
	nparams int
	h       uint64
}

const (
	bindPortal uint8 = iota
	bindStmt
	bindNFmt
	bindFmts
	bindNParams
	bindParamLen
	bindParamVal
	bindRest
)

// FNV-1a, 64 bit.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func fnvAdd(h uint64, p []byte) uint64 {
	for _, c := range p {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

func (b *bindState) nextParam() {
	if b.left > 0 {
		b.left--
		b.stage, b.need, b.num = bindParamLen, 4, 0
	} else {
		b.stage = bindRest
	}
}

func (t *Tracker) bindBody(p []byte) {
	b := &t.bind
	for len(p) > 0 {
		switch b.stage {
		case bindPortal:
			p = p[t.name.feed(p, maxNameBytes):]
			if t.name.done {
				b.stage = bindStmt
			}
		case bindStmt:
			p = p[t.name2.feed(p, maxNameBytes):]
			if t.name2.done {
				b.stage, b.need, b.num = bindNFmt, 2, 0
			}
		case bindNFmt, bindNParams, bindParamLen:
			for b.need > 0 && len(p) > 0 {
				b.num = b.num<<8 | uint32(p[0])
				if b.stage == bindParamLen {
					b.h = fnvAdd(b.h, p[:1])
				}
				p = p[1:]
				b.need--
			}
			if b.need > 0 {
				return
			}
			switch b.stage {
			case bindNFmt: // counts are unsigned 16-bit (pq_getmsgint(msg, 2))
				b.stage, b.need = bindFmts, 2*int(b.num)
			case bindNParams:
				b.nparams, b.left = int(b.num), int(b.num)
				b.nextParam()
			case bindParamLen:
				if t.keepParams {
					t.keepParamStart(int32(b.num))
				}
				if l := int32(b.num); l > 0 {
					b.stage, b.need = bindParamVal, int(l)
				} else { // NULL (-1) or empty
					b.nextParam()
				}
			}
		case bindFmts, bindParamVal:
			n := min(b.need, len(p))
			b.h = fnvAdd(b.h, p[:n])
			if t.keepParams {
				t.keepParamBytes(b.stage, p[:n])
			}
			p = p[n:]
			b.need -= n
			if b.need == 0 {
				if b.stage == bindFmts {
					b.stage, b.need, b.num = bindNParams, 2, 0
				} else {
					b.nextParam()
				}
			}
		default:
			return
		}
	}
}

// keepParamStart notes a parameter of length l (-1: NULL) about to stream by.
func (t *Tracker) keepParamStart(l int32) {
	v := &t.pv
	if v.trunc {
		return
	}
	if l < 0 {
		v.ends = append(v.ends, -1)
		return
	}
	if len(v.buf)+int(l) > t.maxParams {
		v.trunc = true
		return
	}
	v.ends = append(v.ends, int32(len(v.buf))+l)
}

// keepParamBytes keeps format code or value bytes of the Bind being read.
func (t *Tracker) keepParamBytes(stage uint8, p []byte) {
	v := &t.pv
	if stage == bindFmts {
		if len(v.fmts)+len(p) <= 2*math.MaxUint16 {
			v.fmts = append(v.fmts, p...)
		}
		return
	}
	if !v.trunc {
		v.buf = append(v.buf, p...)
	}
}

// HashParams returns the ParamsHash of a Bind with these format codes (as
// sent) and values (nil for NULL): what the Tracker computes as the message
// streams by. It is 0 when there are no values.
func HashParams(formats []int16, values [][]byte) uint64 {
	if len(values) == 0 {
		return 0
	}
	h := uint64(fnvOffset64)
	var b [4]byte
	for _, f := range formats {
		binary.BigEndian.PutUint16(b[:2], uint16(f))
		h = fnvAdd(h, b[:2])
	}
	for _, v := range values {
		l := int32(-1)
		if v != nil {
			l = int32(len(v))
		}
		binary.BigEndian.PutUint32(b[:], uint32(l))
		h = fnvAdd(h, b[:])
		h = fnvAdd(h, v)
	}
	return h
}

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
	case 'Q':
		t.sql.reset()
	case 'P':
		t.name.reset()
		t.sql.reset()
	case 'B':
		t.name.reset()
		t.name2.reset()
		t.bind = bindState{h: fnvOffset64}
		if t.keepParams {
			t.pv.reset()
		}
	case 'E', 'D', 'C':
		t.feSmall = t.feSmall[:0]
	}
}

func (t *Tracker) feBody(p []byte) {
	switch t.fe.typ {
	case 'Q':
		if !t.sql.done {
			t.sql.feed(p, t.maxSQL)
		}
	case 'P':
		if !t.name.done {
			p = p[t.name.feed(p, maxNameBytes):]
		}
		if len(p) > 0 && t.name.done && !t.sql.done {
			t.sql.feed(p, t.maxSQL)
		}
	case 'B':
		t.bindBody(p)
	case 'E', 'D', 'C':
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
	case 'Q':
		return reqQuery
	case 'P':
		return reqParse
	case 'B':
		return reqBind
	case 'E':
		return reqExecute
	case 'D':
		return reqDescribe
	case 'C':
		return reqClose
	case 'S':
		return reqSync
	case 'F':
		return reqFunc
	case 'c', 'f':
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
	params *boundParams // Bind, with keepParams
}

// requestQueue is a FIFO ring of requests; its size is a power of two.
type requestQueue struct {
	buf  []request
	head int
	n    int
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
	q.head, q.n = 0, 0
	if len(q.buf) > 1024 {
		q.buf = nil
	}
}

func (t *Tracker) pop() {
	if r := t.q.at(0); r.kind == reqQuery || r.kind == reqParse {
		t.pendingSQL -= len(r.sql)
	} else if r.params != nil {
		t.pendingSQL -= r.params.size
	}
	t.q.pop()
}

// feEnd handles a complete client message.
func (t *Tracker) feEnd(now time.Time) {
	typ := t.fe.typ
	if t.skipTillSync { // the server discards everything until Sync
		if typ != 'S' {
			return
		}
		t.skipTillSync = false
	}
	if t.feCopy { // the server reads these inside COPY
		switch typ {
		case 'S', 'H', 'd':
			return
		case 'c', 'f':
			t.feCopy = false
			return
		}
	}
	kind := frontendKind(typ)
	if kind == 0 {
		if typ == 'X' { // Terminate: no ReadyForQuery will come
			t.flushHeld(t.txStatus, false)
		}
		return
	}
	sqlLen := 0
	if kind == reqQuery || kind == reqParse {
		sqlLen = len(t.sql.buf)
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
	case reqBind:
		r.portal = t.portalName(t.name.buf)
		r.name = t.stmtName(t.name2.buf, t.stmtByName(t.name2.buf))
		if r.nparam = t.bind.nparams; r.nparam > 0 {
			r.hash = t.bind.h
		}
		if t.keepParams {
			r.params = t.pv.take(t.bind.nparams)
			if t.pendingSQL+r.params.size > t.sqlBudget {
				r.params.values, r.params.truncated, r.params.size = nil, true, 0
			}
			t.pendingSQL += r.params.size
		}
	case reqExecute:
		r.name = t.portalName(nameOf(t.feSmall))
	case reqDescribe:
		if len(t.feSmall) > 0 {
			r.sub = t.feSmall[0]
		}
	case reqClose:
		if len(t.feSmall) > 0 {
			r.sub = t.feSmall[0]
			name := nameOf(t.feSmall[1:])
			if r.sub == 'P' {
				r.name = t.portalName(name)
			} else {
				r.name = t.stmtName(name, t.stmtByName(name))
			}
		}
	}
	t.q.push(&r)
}

// nameOf returns the name at the start of p, cut as maxNameBytes says.
func nameOf(p []byte) []byte {
	p = untilNUL(p)
	return p[:min(len(p), maxNameBytes)]
}

// untilNUL returns p up to its first NUL.
func untilNUL(p []byte) []byte {
	if i := bytes.IndexByte(p, 0); i >= 0 {
		return p[:i]
	}
	return p
}

// sqlText returns the collected SQL as a string, reusing the text of cur or
// of the last SQL seen when it is the same, so repeated statements cost no
// allocation.
func (t *Tracker) sqlText(cur *stmt) string {
	b := t.sql.buf
	if cur != nil && cur.sql == string(b) {
		return cur.sql
	}
	if t.lastSQL == string(b) {
		return t.lastSQL
	}
	t.lastSQL = string(b)
	return t.lastSQL
}

func (t *Tracker) stmtByName(name []byte) *stmt {
	if len(name) == 0 {
		return t.unnamedStmt
	}
	return t.stmts[string(name)]
}

func (t *Tracker) lookupStmt(name string) *stmt {
	if name == "" {
		return t.unnamedStmt
	}
	return t.stmts[name]
}

// stmtName returns name as a string, sharing the remembered statement's.
func (t *Tracker) stmtName(name []byte, cur *stmt) string {
	if len(name) == 0 {
		return ""
	}
	if cur != nil {
		return cur.name
	}
	return string(name)
}

func (t *Tracker) portalName(name []byte) string {
	if len(name) == 0 {
		return ""
	}
	if p, ok := t.portals[string(name)]; ok {
		return p.name
	}
	return string(name)
}

func (t *Tracker) putStmt(st *stmt) {
	if st.name == "" {
		t.unnamedStmt = st
		return
	}
	if t.stmts == nil {
		t.stmts = make(map[string]*stmt)
	}
	t.dropStmt(st.name)
	// Evict the least recently used: deterministic, so that a replay of the
	// same traffic gives the same executions.
	for t.lruHead != nil && (len(t.stmts) >= t.maxStatements || t.stmtBytes+len(st.sql) > t.sqlBudget) {
		t.dropStmt(t.lruHead.name)
		t.stats.Evictions++
	}
	t.stmts[st.name] = st
	t.stmtBytes += len(st.sql)
	t.lruPush(st)
}

// touchStmt marks a named statement as just used.
func (t *Tracker) touchStmt(st *stmt) {
	if st == nil || st.name == "" || st == t.lruTail {
		return
	}
	t.lruUnlink(st)
	t.lruPush(st)
}

func (t *Tracker) lruPush(st *stmt) {
	st.prev, st.next = t.lruTail, nil
	if t.lruTail != nil {
		t.lruTail.next = st
	} else {
		t.lruHead = st
	}
	t.lruTail = st
}

func (t *Tracker) lruUnlink(st *stmt) {
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		t.lruHead = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	} else {
		t.lruTail = st.prev
	}
	st.prev, st.next = nil, nil
}

func (t *Tracker) dropStmt(name string) {
	if name == "" {
		t.unnamedStmt = nil
		return
	}
	if old, ok := t.stmts[name]; ok {
		t.stmtBytes -= len(old.sql)
		delete(t.stmts, name)
		t.lruUnlink(old)
	}
}

func (t *Tracker) clearStmts() {
	for t.lruHead != nil {
		t.lruUnlink(t.lruHead)
	}
	clear(t.stmts)
	t.stmtBytes = 0
}

func (t *Tracker) putPortal(p portal) {
	if p.params != nil {
		old, had := t.lookupPortal(p.name)
		if had && old.params != nil {
			t.portalParams -= old.params.size
		}
		if t.portalParams+p.params.size > t.sqlBudget {
			p.params = &boundParams{formats: p.params.formats, truncated: true}
		}
		t.portalParams += p.params.size
	}
	if p.name == "" {
		t.unnamedPortal, t.hasUnnamed = p, true
		return
	}
	if t.portals == nil {
		t.portals = make(map[string]portal)
	}
	if _, ok := t.portals[p.name]; !ok && len(t.portals) >= t.maxStatements {
		// Full: the new portal is not remembered (its Executes emit with
		// SQL ""). Portals end with their transaction, so this is short.
		t.stats.Evictions++
		if p.params != nil {
			t.portalParams -= p.params.size
		}
		return
	}
	t.portals[p.name] = p
}

func (t *Tracker) lookupPortal(name string) (portal, bool) {
	if name == "" {
		return t.unnamedPortal, t.hasUnnamed
	}
	p, ok := t.portals[name]
	return p, ok
}

func (t *Tracker) dropPortal(name string) {
	if p, ok := t.lookupPortal(name); ok && p.params != nil {
		t.portalParams -= p.params.size
	}
	if name == "" {
		t.unnamedPortal, t.hasUnnamed = portal{}, false
		return
	}
	delete(t.portals, name)
}

func (t *Tracker) clearPortals() {
	t.portalParams = 0
	t.unnamedPortal, t.hasUnnamed = portal{}, false
	if len(t.portals) > 0 {
		clear(t.portals)
	}
}

func (t *Tracker) beStart() {
	switch t.be.typ {
	case 'C', 'Z', 'S':
		t.beSmall = t.beSmall[:0]
	case 'E':
		t.errResp = errState{}
	}
}

func (t *Tracker) beBody(p []byte) {
	switch t.be.typ {
	case 'C', 'Z', 'S':
		if room := backendSmallCap - len(t.beSmall); room > 0 {
			t.beSmall = append(t.beSmall, p[:min(room, len(p))]...)
		}
	case 'E':
		t.errResp.feed(p)
	}
}

// beEnd handles a complete server message.
func (t *Tracker) beEnd(now time.Time) {
	switch typ := t.be.typ; typ {
	case 'Z':
		status := byte('I')
		if len(t.beSmall) > 0 {
			status = t.beSmall[0]
		}
		if t.emit == nil {
			t.bareSyncs = max(t.bareSyncs-1, 0)
			t.txStatus = status
			return
		}
		t.readyForQuery(status)
	case 'S':
		t.parameterStatus()
	case '1', '2', '3', 'C', 'D', 'E', 'G', 'H', 'I', 'T', 'V', 'W', 'n', 's', 't':
		t.reply(typ, now)
	}
	// NoticeResponse, NotificationResponse, copy-out CopyData/CopyDone and
	// unknown types are not replies.
}

func (t *Tracker) parameterStatus() {
	name := untilNUL(t.beSmall)
	if string(name) != "application_name" || len(name) == len(t.beSmall) {
		return
	}
	value := untilNUL(t.beSmall[len(name)+1:])
	if string(value) == t.conn.ApplicationName {
		return
	}
	c := *t.conn
	c.ApplicationName = string(value)
	t.conn = &c
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
			if typ == 'G' || typ == 'W' {
				t.feCopy = true
			}
		case typ == 'E':
			// FATAL errors (shutdown, idle timeouts) arrive unasked.
		case !t.stray:
			t.stray = true
			t.stats.Desyncs++
		}
		return
	}
	h := t.q.at(0)
	switch typ {
	case 'D':
		if h.kind == reqExecute || h.kind == reqQuery {
			h.rows++
			return
		}
	case 'T':
		switch h.kind {
		case reqDescribe:
			t.pop()
			return
		case reqQuery, reqExecute:
			return
		}
	case 'n':
		if h.kind == reqDescribe {
			t.pop()
			return
		}
	case 't':
		if h.kind == reqDescribe {
			return
		}
	case '1':
		if h.kind == reqParse {
			t.parseComplete(h)
			t.pop()
			return
		}
	case '2':
		if h.kind == reqBind {
			st := t.lookupStmt(h.name)
			t.touchStmt(st)
			t.putPortal(portal{name: h.portal, stmtName: h.name, stmt: st, hash: h.hash, nparams: h.nparam, params: h.params})
			t.pop()
			return
		}
	case '3':
		if h.kind == reqClose {
			if h.sub == 'P' {
				t.dropPortal(h.name)
			} else {
				t.dropStmt(h.name)
			}
			t.pop()
			return
		}
	case 'C':
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
	case 'I':
		switch h.kind {
		case reqQuery:
			return
		case reqExecute:
			t.pop()
			return
		}
	case 's':
		if h.kind == reqExecute {
			e := t.newExecution(h, now)
			e.Command, e.Rows = "SELECT", h.rows
			t.produce(e)
			t.pop()
			return
		}
	case 'E':
		t.errorResponse(h, now)
		return
	case 'G', 'W', 'H':
		if h.kind == reqQuery || h.kind == reqExecute {
			h.inCopy = true
			if typ != 'H' && !t.copyInStarted() {
				t.feCopy = true
			}
			return
		}
	case 'V':
		if h.kind == reqFunc {
			return
		}
	}
	t.desync()
}

func (t *Tracker) parseComplete(h *request) {
	cur := t.lookupStmt(h.name)
	if cur == nil || cur.sql != h.sql || cur.trunc != h.trunc {
		cur = &stmt{name: h.name, sql: h.sql, trunc: h.trunc}
	}
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
	e := &Execution{Conn: t.conn, Start: start, End: now, Rows: -1, Protocol: protocolExtended, InTransaction: t.groupBegan}
	switch h.kind {
	case reqQuery:
		e.Protocol = protocolSimple
		e.SQL, e.Truncated, e.StatementIndex = h.sql, h.trunc, h.idx
	case reqParse:
		e.SQL, e.Truncated, e.Prepared = h.sql, h.trunc, h.name
	case reqBind:
		if st := t.lookupStmt(h.name); st != nil {
			e.SQL, e.Truncated = st.sql, st.trunc
		}
		e.Prepared, e.ParamsHash, e.NumParams = h.name, h.hash, h.nparam
		e.setParams(h.params)
	case reqExecute:
		if p, ok := t.lookupPortal(h.name); ok {
			if p.stmt != nil {
				e.SQL, e.Truncated = p.stmt.sql, p.stmt.trunc
			}
			e.Prepared, e.ParamsHash, e.NumParams = p.stmtName, p.hash, p.nparams
			e.setParams(p.params)
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

func inTx(status byte) bool { return status == 'T' || status == 'E' }

// finishGroup completes the held executions with the ReadyForQuery status.
func (t *Tracker) finishGroup(status byte) {
	if len(t.held) > 0 && (inTx(t.txStatus) || t.groupBegan) && status == 'I' {
		t.held[len(t.held)-1].TxEnd = true
	}
	t.flushHeld(status, true)
	t.txStatus = status
	t.groupBegan = false
	if status == 'I' { // the transaction is over: so are its portals
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

// txCommand reports the tags of transaction-control commands.
func txCommand(cmd string) bool {
	switch cmd {
	case "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
		"PREPARE TRANSACTION":
		return true
	}
	return false
}

// parseTag splits a CommandComplete tag into its command words and the row
// count, its last number ("INSERT 0 5" is INSERT, 5; "BEGIN" is BEGIN, -1).
func parseTag(tag []byte) (string, int64) {
	rows := int64(-1)
	end := len(tag)
	for {
		i := bytes.LastIndexByte(tag[:end], ' ')
		if i < 0 {
			break
		}
		n, ok := parseCount(tag[i+1 : end])
		if !ok {
			break
		}
		if rows < 0 {
			rows = n
		}
		end = i
	}
	return internCommand(tag[:end]), rows
}

func parseCount(w []byte) (int64, bool) {
	if len(w) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range w {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-9)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// internCommand returns common tags without allocating.
func internCommand(b []byte) string {
	switch string(b) {
	case "SELECT":
		return "SELECT"
	case "INSERT":
		return "INSERT"
	case "UPDATE":
		return "UPDATE"
	case "DELETE":
		return "DELETE"
	case "MERGE":
		return "MERGE"
	case "COPY":
		return "COPY"
	case "FETCH":
		return "FETCH"
	case "MOVE":
		return "MOVE"
	case "BEGIN":
		return "BEGIN"
	case "COMMIT":
		return "COMMIT"
	case "ROLLBACK":
		return "ROLLBACK"
	case "SET":
		return "SET"
	case "SHOW":
		return "SHOW"
	case "SAVEPOINT":
		return "SAVEPOINT"
	case "RELEASE":
		return "RELEASE"
	case "DEALLOCATE":
		return "DEALLOCATE"
	case "DEALLOCATE ALL":
		return "DEALLOCATE ALL"
	case "DISCARD ALL":
		return "DISCARD ALL"
	case "LISTEN":
		return "LISTEN"
	case "NOTIFY":
		return "NOTIFY"
	case "CALL":
		return "CALL"
	case "DO":
		return "DO"
	case "LOCK TABLE":
		return "LOCK TABLE"
	case "RESET":
		return "RESET"
	}
	return string(b)
}

// deallocateTarget returns the statement named by SQL text that is exactly one
// DEALLOCATE [PREPARE] name statement. Other texts (several statements) are
// not understood: the stale entry is harmless, it is replaced by the next
// Parse of that name or evicted.
func deallocateTarget(sql string) (string, bool) {
	s := skipBlank(sql)
	if !hasPrefixFold(s, "deallocate") {
		return "", false
	}
	s = s[len("deallocate"):]
	if s == "" || !(isBlank(s[0]) || s[0] == '"' || s[0] == '/' || s[0] == '-') {
		return "", false
	}
	s = skipBlank(s)
	if hasPrefixFold(s, "prepare") {
		if rest := s[len("prepare"):]; rest == "" || isBlank(rest[0]) || rest[0] == '"' || rest[0] == '/' || rest[0] == '-' {
			if r := skipBlank(rest); r != "" && r[0] != ';' {
				s = r
			}
		}
	}
	var name []byte
	switch {
	case s == "":
		return "", false
	case s[0] == '"':
		i := 1
		for ; ; i++ {
			if i >= len(s) {
				return "", false
			}
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					name = append(name, '"')
					i++
					continue
				}
				break
			}
			name = append(name, s[i])
		}
		s = s[i+1:]
	default:
		i := 0
		for ; i < len(s) && isIdentByte(s[i]); i++ {
			c := s[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name = append(name, c)
		}
		if i == 0 {
			return "", false
		}
		s = s[i:]
	}
	s = skipBlank(s)
	if s != "" && s[0] == ';' {
		s = skipBlank(s[1:])
	}
	if s != "" || len(name) == 0 {
		return "", false
	}
	if len(name) > maxNameBytes {
		name = name[:maxNameBytes]
	}
	return string(name), true
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// skipBlank skips white space and comments (-- to end of line, nested /* */).
func skipBlank(s string) string {
	for {
		switch {
		case s != "" && isBlank(s[0]):
			s = s[1:]
		case len(s) >= 2 && s[0] == '-' && s[1] == '-':
			if i := indexByteString(s, '\n'); i >= 0 {
				s = s[i+1:]
			} else {
				s = ""
			}
		case len(s) >= 2 && s[0] == '/' && s[1] == '*':
			depth, i := 1, 2
			for i < len(s) && depth > 0 {
				switch {
				case i+1 < len(s) && s[i] == '/' && s[i+1] == '*':
					depth++
					i += 2
				case i+1 < len(s) && s[i] == '*' && s[i+1] == '/':
					depth--
					i += 2
				default:
					i++
				}
			}
			s = s[i:]
		default:
			return s
		}
	}
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}
