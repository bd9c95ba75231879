package pgwire

import (
	"fmt"
	"math"
	"time"

	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/internal/valuekey"
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

	// Evidence makes the tracker hash the values that can prove an N+1
	// and attach the digests: Execution.ParamKeys (the bound parameters)
	// and Execution.Result (the first MaxEvidenceRows rows and
	// MaxEvidenceColumns columns of a result). Digests only: values are
	// hashed as they stream by and never kept. Off by default.
	Evidence bool
	// MaxEvidenceRows and MaxEvidenceColumns bound the digests of one
	// result (DefaultMaxEvidenceRows, DefaultMaxEvidenceColumns when 0;
	// columns at most MaxEvidenceColumnsLimit). While a result streams its
	// digests take 8*rows*columns bytes of the connection's memory.
	MaxEvidenceRows    int
	MaxEvidenceColumns int
	// EvidenceBudget bounds the memory of the evidence attached by all the
	// trackers that share it, until its consumer gives it back (see
	// EvidenceBudget). Nil: no bound beyond the per-result ones.
	EvidenceBudget *EvidenceBudget
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
	if o.MaxEvidenceRows <= 0 {
		o.MaxEvidenceRows = DefaultMaxEvidenceRows
	}
	if o.MaxEvidenceColumns <= 0 {
		o.MaxEvidenceColumns = DefaultMaxEvidenceColumns
	}
	o.MaxEvidenceColumns = min(o.MaxEvidenceColumns, MaxEvidenceColumnsLimit)
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
	// EvidenceTruncated counts the results whose digests were cut by
	// MaxEvidenceRows or MaxEvidenceColumns (Result.Truncated).
	EvidenceTruncated uint64
	// EvidenceDropped counts the executions that got no evidence because
	// the EvidenceBudget was exhausted.
	EvidenceDropped uint64
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
// standard_conforming_strings: decides where the string constants of a text
// end, so each Execution carries the setting its SQL was parsed with
// (Execution.StandardStrings). The server reports the setting in
// ParameterStatus at startup (a reader that saw it passes it with
// StartStandardStrings) and whenever it changes, but PostgreSQL 14 and
// later report a change only just before the next ReadyForQuery, and a
// change undone within one group is never reported. So the tracker trusts
// the reported value only at the start of a group (the messages since the
// last ReadyForQuery): a simple Query is parsed whole when it starts, and
// gets the value reported when its group began; a Parse gets it too unless
// an Execute completed earlier in the group (a SET, RESET, set_config, a
// transaction end or a function may have changed the setting meanwhile),
// and then gets StandardStringsUnknown. A prepared statement keeps what its
// Parse got. When a ParameterStatus in a group reports another value than
// the group began with (a configuration reload may have changed the
// setting before anything in the group ran), every execution held for that
// group and every statement parsed in it are marked unknown at its
// ReadyForQuery (executions emitted early, past maxHeld, are not). Before
// the first report the setting is unknown.
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
// is 0 when there are no parameters (HashParams computes it from values). A
// negative length other than -1 (NULL) ends the hashing there: the server
// rejects such a Bind (08P01), and no values or keys are kept for it.
//
// With KeepParams, a Bind's format codes and values are also copied (one
// allocation per Bind, at most MaxParamBytes of values) and shared, read
// only, by the request, its portal and the Executions of that portal. Their
// bytes count against the budget for pending SQL text while the Bind awaits
// its reply, and against the statements' budget while its portal lives; a
// Bind that would exceed either keeps no values (ParamsTruncated).
//
// Value evidence (Evidence): each Bind's values are hashed into
// Execution.ParamKeys as they stream by (valuekey.Text or valuekey.Binary by
// the Bind's format codes, with the type the Parse named), as are the values
// of a result's first MaxEvidenceRows rows and MaxEvidenceColumns columns
// into Execution.Result (by the RowDescription's types and the result's
// formats: see evidence.go for where they come from). A value is hashed
// from the chunk it arrives in, or from a scratch buffer of
// valuekey.MaxValueBytes when it is split; longer values and the rows and
// columns past the bounds are counted, never read. A result's digests are
// gathered in a per-connection scratch buffer (8 bytes a value) and copied
// into one allocation when its CommandComplete or PortalSuspended arrives;
// its description is kept on its statement, in the statements' byte budget,
// and shared. Before attaching evidence the tracker takes its size
// (Execution.EvidenceSize) from EvidenceBudget, and attaches none when the
// budget refuses (TrackerStats.EvidenceDropped).
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
	evidence      bool

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
	stmts         *lru.Cache[string, *stmt] // named, by name; cost: len(sql); nil until the first
	unnamedPortal portal
	hasUnnamed    bool
	portals       map[string]portal
	portalParams  int // bytes of parameter values held by portals

	lastSQL    string    // the last SQL text seen, reused when it repeats
	txStatus   byte      // from the last ReadyForQuery
	groupBegan bool      // a BEGIN completed since the last ReadyForQuery
	lastEnd    time.Time // End of the previous execution
	held       []*Execution

	// standard_conforming_strings (see the type comment). The group is
	// what the server did since the last ReadyForQuery.
	reported      StandardStrings // the last value reported
	groupStrings  StandardStrings // reported when the group began
	groupExecuted bool            // an Execute completed in the group
	groupChanged  bool            // a ParameterStatus in the group reported another value
	groupSeq      uint32          // counts groups, for stmt.group

	bareSyncs int // without emit: Sync, Query and FunctionCall not yet answered

	stats TrackerStats

	// Value evidence (only with evidence), last: the fields above are the
	// hot path of every connection.
	maxRows  int // MaxEvidenceRows
	maxCols  int // MaxEvidenceColumns
	budget   *EvidenceBudget
	credit   int         // bytes taken from budget and not yet attached (takeEvidence)
	evRead   bool        // the current server message is read for evidence
	rdOn     bool        // the RowDescription being read answers a Describe or a Query
	rd       []byte      // that RowDescription: its first maxCols columns
	lastDesc *resultDesc // the last description read, reused when it repeats
	// The arena's chunks in use: the digests and ResultKeys not yet
	// handed out (see allocKeys).
	arenaKeys    []valuekey.Key
	arenaResults []ResultKeys
	res          resultState
	row          rowState
	bk           bindKeys                     // the Bind being read
	po           oidState                     // the Parse being read: its parameter types
	lastParse    parseSlot                    // the latest Parse queued
	bindVal      [valuekey.MaxValueBytes]byte // a Bind value split across chunks
	rowVal       [valuekey.MaxValueBytes]byte // a DataRow value split across chunks
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
		evidence:      opts.Evidence && emit != nil,
		maxRows:       opts.MaxEvidenceRows,
		maxCols:       opts.MaxEvidenceColumns,
		budget:        opts.EvidenceBudget,
		txStatus:      txIdle,
	}
}

// StartStandardStrings tells the tracker the standard_conforming_strings
// the server reported during the connection's startup (read with
// StandardStringsStatus), before the first call to Frontend or Backend. Only
// for a tracker that follows the connection from its first ReadyForQuery:
// one that joins it mid-way (a capture resynchronized after lost bytes)
// must not be told, as the session may have changed the setting since.
// Without it the setting is unknown until the server reports it.
func (t *Tracker) StartStandardStrings(s StandardStrings) {
	t.reported, t.groupStrings = s, s
}

// Conn returns the connection's current identity. It changes (a new value,
// the old one untouched) when the server reports a new application_name.
func (t *Tracker) Conn() *ConnInfo { return t.conn }

// Idle reports whether the connection is between transactions with nothing
// in flight: the server's last ReadyForQuery said idle, every request was
// answered, and no message is half read in either direction. It errs towards
// false when the tracker is paused or lost count.
func (t *Tracker) Idle() bool {
	if t.err != nil || t.txStatus != txIdle || t.fe.inBody || t.fe.nhdr > 0 || t.be.inBody || t.be.nhdr > 0 {
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
		t.endGroupStrings()
		t.flushHeld(t.txStatus, false)
	}
	t.releaseCredit()
}

// Stats returns the tracker's counters.
func (t *Tracker) Stats() TrackerStats { return t.stats }
