package pgwire

import (
	"math"
	"time"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// ConnInfo identifies one client connection. It is shared, read-only, by every
// Execution of that connection: the tracker fills it from the startup packet and
// never changes it after the first Execution is emitted.
type ConnInfo struct {
	ID              uint64 `json:"id"`
	ClientAddr      string `json:"client_addr"`
	User            string `json:"user"`
	Database        string `json:"database"`
	ApplicationName string `json:"application_name"`
}

// StandardStrings is a session's standard_conforming_strings setting: how
// the server reads backslashes in '...' string constants. Its values are
// those of fingerprint.Strings, so that one converts to the other.
type StandardStrings uint8

const (
	// StandardStringsUnknown: not known (the zero value). Readers that
	// cannot see the setting (server logs, recordings, a tracker before
	// the server reports it) leave it so, and the analysis then reads the
	// text in a way that holds under either setting.
	StandardStringsUnknown StandardStrings = iota
	// StandardStringsOn: a backslash is an ordinary character in '...'
	// (PostgreSQL's default).
	StandardStringsOn
	// StandardStringsOff: a backslash escapes in '...' as in E'...'.
	StandardStringsOff
)

// String returns "on", "off" or "unknown".
func (s StandardStrings) String() string {
	switch s {
	case StandardStringsOn:
		return "on"
	case StandardStringsOff:
		return "off"
	}
	return "unknown"
}

// Execution is one statement executed by the server: the contract between the
// protocol tracker (live proxy or offline replay) and the analyzer.
//
// It never holds parameter values: ParamsHash is a hash of the bound values, so
// that two executions with the same values can be told apart from two with
// different values without keeping either.
type Execution struct {
	Conn *ConnInfo // never nil; shared by all executions of a connection

	// Start is when the server began the statement as far as the wire shows:
	// when the message that ran it was sent, or, in a pipeline, when the
	// previous statement on the connection completed, whichever is later.
	Start time.Time
	// End is when its CommandComplete, EmptyQueryResponse, PortalSuspended or
	// ErrorResponse arrived.
	End time.Time

	// SQL is the statement text as the client sent it. For a simple query with
	// several statements it is the whole text and StatementIndex tells which one
	// this is (0-based); the fingerprint package splits the text.
	SQL            string
	StatementIndex int
	// Truncated is set when the SQL text was longer than the tracker keeps.
	Truncated bool
	// StandardStrings is the session's standard_conforming_strings when the
	// server parsed SQL (for a prepared statement, at its Parse), which
	// decides where its string constants end; StandardStringsUnknown when
	// the reader cannot tell. See Tracker for how the tracker knows.
	StandardStrings StandardStrings
	// resSize and resRows (below) are Result.Size() and Result.Rows() when
	// the tracker attached Result: its consumers learn them from the
	// execution they read anyway, without reading the digests' memory
	// (written by another goroutine, on another core). 0: not known. They
	// sit in what would be padding.
	resSize int32

	// Protocol is "simple" or "extended".
	Protocol string
	// Prepared is the statement name for a named prepared statement, "" for
	// unnamed statements and simple queries.
	Prepared string
	// ParamsHash is a 64-bit FNV-1a hash over the bound parameter formats and
	// values (0 when there are no parameters). Values themselves are never kept.
	ParamsHash uint64
	// NumParams is the number of bound parameters.
	NumParams int
	// ParamWildcard and ParamLarge are one bit per bound parameter, bit i
	// for $i+1 (the first 64), never the values: ParamWildcard that the
	// value's first byte is % or _ (a LIKE pattern that starts with a
	// wildcard, where the statement uses the parameter as one);
	// ParamLarge that the value is an integer of at least LargeParam,
	// decimal text or a binary int2, int4 or int8 (an OFFSET that deep,
	// where the statement uses it as one). 0 without parameters, and from
	// readers that cannot see the values (server logs, recordings).
	ParamWildcard uint64
	ParamLarge    uint64

	// Params and ParamFormats are the bound values (nil for NULL) and the
	// Bind's format codes as sent (none: all text; one: for all; else one
	// per value), filled only when the tracker runs with KeepParams (for
	// recording and re-execution; never for analysis). They are shared by
	// the executions of one portal: read only. ParamsTruncated says the
	// values were not kept because they exceeded the tracker's bound.
	Params          [][]byte
	ParamFormats    []int16
	ParamsTruncated bool
	resRows         int32

	// ParamKeys and Result are the value evidence (see internal/valuekey):
	// keyed digests of each bound parameter, in order (valuekey.None for a
	// NULL or a value too long to be a key), and of the column values of the
	// first rows the statement returned. They let the detector prove that a
	// loop's keys were read from an earlier result. Filled only when the
	// tracker runs with TrackerOptions.Evidence; digests, never values. Read
	// only: ParamKeys is shared by the executions of one portal.
	//
	// ParamKeys has one key per parameter, at most the first 64 (a wider
	// Bind is a bulk write, not a lookup); it is nil without parameters and
	// for a Bind the server rejects as malformed. Result is nil when the
	// statement returned no row, failed, or its columns were never
	// described on the wire. The memory both take was taken from
	// TrackerOptions.EvidenceBudget: give EvidenceSize back when done.
	ParamKeys []valuekey.Key
	Result    *ResultKeys

	// Command is the CommandComplete tag's command word (SELECT, INSERT, ...),
	// empty when the statement failed.
	Command string
	// Rows is the row count from the CommandComplete tag, or the number of
	// DataRow messages for a suspended portal; -1 when the tag has none.
	Rows int64
	// SQLState is the error code when the statement failed, "" otherwise.
	SQLState string
	// InTransaction is true when the statement ran inside an explicit
	// transaction block (the ReadyForQuery status before or after it was 'T'
	// or 'E', or it was itself BEGIN/COMMIT/ROLLBACK).
	InTransaction bool
	// TxEnd is true when the connection returned to idle (ReadyForQuery 'I')
	// right after this statement while it had been in a transaction block: the
	// detector closes its window there.
	TxEnd bool
}

// setParams fills the parameter fields from what the tracker kept.
func (e *Execution) setParams(p *boundParams) {
	if p != nil {
		e.Params, e.ParamFormats, e.ParamsTruncated = p.values, p.formats, p.truncated
	}
}

// Duration is End - Start.
func (e *Execution) Duration() time.Duration { return e.End.Sub(e.Start) }

// EvidenceSize is the memory e's evidence takes, in bytes: what the tracker
// took from its EvidenceBudget when it attached ParamKeys and Result, and
// what the consumer gives back (EvidenceBudget.Give) when done with them.
// ParamKeys is counted once per execution even when a portal's executions
// share it.
func (e *Execution) EvidenceSize() int {
	return e.ResultSize() + 8*len(e.ParamKeys)
}

// ResultSize is e.Result.Size().
func (e *Execution) ResultSize() int {
	if e.resSize > 0 {
		return int(e.resSize)
	}
	return e.Result.Size()
}

// ResultRows is e.Result.Rows().
func (e *Execution) ResultRows() int {
	if e.resSize > 0 {
		return int(e.resRows)
	}
	return e.Result.Rows()
}

// ResultKeys are the digests of the values of a statement's result, column
// by column, for the first rows (TrackerOptions.MaxEvidenceRows) and columns
// (MaxEvidenceColumns): Column(c)[r] is the digest of column c in row r,
// valuekey.None for a NULL or a value longer than valuekey.MaxValueBytes.
// The digests lie in one slice, column after column, so that a result is
// one header and its digests: for a lookup's row the tracker takes both
// from its arena, next to those of the connection's previous lookups (see
// allocKeys), and a reader on another core reads them in a cache line or
// two. Read only.
type ResultKeys struct {
	// Columns are the column names from the RowDescription: the first
	// Width() name the columns hashed (the tracker gives exactly those; a
	// recording may name more).
	Columns []string
	keys    []valuekey.Key // column after column, rows each
	rows    int32
	// Truncated is set when rows or columns past the bounds were not hashed.
	Truncated bool
}

// NewResultKeys returns the ResultKeys of the digests cols, column by
// column (cols[c][r]: column c, row r), in one slice of its own. Every
// column has the rows of the first: a shorter one is filled with
// valuekey.None, a longer one cut.
func NewResultKeys(columns []string, cols [][]valuekey.Key, truncated bool) *ResultKeys {
	rows := 0
	if len(cols) > 0 {
		rows = len(cols[0])
	}
	keys := make([]valuekey.Key, len(cols)*rows)
	for c, col := range cols {
		copy(keys[c*rows:(c+1)*rows], col)
	}
	return ResultKeysOf(columns, rows, keys, truncated)
}

// ResultKeysOf returns the ResultKeys whose digests are keys, column after
// column, rows each (len(keys) is a multiple of rows); it keeps keys, which
// the caller must not change after.
func ResultKeysOf(columns []string, rows int, keys []valuekey.Key, truncated bool) *ResultKeys {
	r := &ResultKeys{Truncated: truncated}
	r.set(columns, rows, keys)
	return r
}

// set fills r with keys, column after column, rows each.
func (r *ResultKeys) set(columns []string, rows int, keys []valuekey.Key) {
	if rows <= 0 || rows > math.MaxInt32 || len(keys)%rows != 0 {
		rows, keys = 0, nil
	}
	r.Columns, r.rows, r.keys = columns, int32(rows), keys[:len(keys):len(keys)]
}

// Rows is the number of rows hashed.
func (r *ResultKeys) Rows() int {
	if r == nil {
		return 0
	}
	return int(r.rows)
}

// Width is the number of columns hashed.
func (r *ResultKeys) Width() int {
	if r == nil || r.rows == 0 {
		return 0
	}
	return len(r.keys) / int(r.rows)
}

// Column returns the digests of column c, row by row; nil past the
// columns hashed.
func (r *ResultKeys) Column(c int) []valuekey.Key {
	if c < 0 || c >= r.Width() {
		return nil
	}
	lo, hi := c*int(r.rows), (c+1)*int(r.rows)
	return r.keys[lo:hi:hi]
}

// Digests returns every digest, column after column (Column(0), then
// Column(1), ...).
func (r *ResultKeys) Digests() []valuekey.Key {
	if r == nil {
		return nil
	}
	return r.keys
}

// Size is the memory the digests take, in bytes, for the budgets.
func (r *ResultKeys) Size() int {
	if r == nil {
		return 0
	}
	return 64 + 16*len(r.Columns) + 8*cap(r.keys)
}

// resultSize is the Size of the ResultKeys the tracker builds for cols
// columns of rows rows.
func resultSize(cols, rows int) int {
	return 64 + 16*cols + 8*cols*rows
}
