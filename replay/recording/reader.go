package recording

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nplus1/nplus1/internal/fileseq"
	"github.com/nplus1/nplus1/internal/intern"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// Bounds of a Reader.
const (
	// DefaultMaxLineBytes is the longest line read; longer lines are skipped
	// and counted (a statement of 64 KB with 1 MB of parameters, hex
	// encoded, fits).
	DefaultMaxLineBytes = 16 << 20
	// maxSessions bounds the sessions remembered; past it the least
	// recently used is forgotten, and rebuilt from its next item (every
	// item names its session).
	maxSessions = 1 << 16
)

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	// KeepParams fills Execution.Params and ParamFormats (for re-execution);
	// otherwise only ParamsHash and NumParams are set.
	KeepParams bool
	// MaxLineBytes bounds a line (DefaultMaxLineBytes when 0).
	MaxLineBytes int
	// Evidence restores the value evidence the recording holds
	// (Execution.ParamKeys and Result), taking its memory from
	// EvidenceBudget (nil: no bound but the line's), as a tracker does:
	// an execution whose evidence the budget refuses gets none, and its
	// consumer gives Execution.EvidenceSize back when done. Without
	// Evidence the digests are skipped unread.
	Evidence       bool
	EvidenceBudget *pgwire.EvidenceBudget
}

// ReaderStats count what a Reader read.
type ReaderStats struct {
	Lines      int64 // lines read
	Executions int64 // executions returned
	Skipped    int64 // lines that were not JSON items this package knows, or too long
	Bytes      int64 // bytes read, all files
	// Evidence counts the executions returned with value evidence, and
	// EvidenceDropped those whose evidence the EvidenceBudget refused
	// (with ReaderOptions.Evidence).
	Evidence, EvidenceDropped int64
}

// Reader reads executions from recordings (and from pgreplay-go's JSON
// files), in constant memory.
type Reader struct {
	opts ReaderOptions
	in   *fileseq.Seq
	br   *bufio.Reader // in.Buf()

	line     []byte
	sc       scanner
	it       item
	raw      []byte   // an item's digests, decoded from base64
	colLens  []int    // digests per result column in raw
	lastCols []string // the latest Result.Columns, shared while they repeat
	sessions *lru.Cache[string, *session]
	hd       headState // the head of the item being read
	noHeads  bool      // read every head (tests compare both ways)
	taken    int64     // heads taken from the sessions (for tests)
	nextID   uint64
	intern   intern.Table // SQL texts and names, shared

	stats   ReaderStats
	lastErr string // the first bad line's problem, for the caller's report
	// couldHaveEvidence counts the executions with rows or parameters,
	// which a recording made with evidence holds digests for.
	couldHaveEvidence int64
}

// Open returns a Reader over the files, read in order as one stream (the
// Writer's rotation splits one recording into several).
func Open(files []string, opts ReaderOptions) (*Reader, error) {
	r := newReader(opts)
	r.in = fileseq.New(files)
	if err := r.in.Next(); err != nil {
		return nil, err
	}
	r.br = r.in.Buf()
	return r, nil
}

// NewReader returns a Reader over one stream.
func NewReader(in io.Reader, opts ReaderOptions) *Reader {
	r := newReader(opts)
	r.in = fileseq.FromReader(in)
	r.br = r.in.Buf()
	return r
}

func newReader(opts ReaderOptions) *Reader {
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	return &Reader{
		opts:     opts,
		sessions: lru.New[string, *session](maxSessions, 0, nil),
	}
}

// Close closes the current file.
func (r *Reader) Close() error { return r.in.Close() }

// Stats returns the counters.
func (r *Reader) Stats() ReaderStats {
	s := r.stats
	s.Bytes = r.in.BytesRead()
	return s
}

// BytesRead is how far the Reader got; safe to call from another goroutine.
func (r *Reader) BytesRead() int64 { return r.in.BytesRead() }

// FirstProblem describes the first skipped line, "" when none was.
func (r *Reader) FirstProblem() string { return r.lastErr }

// Notes describe, for a person, what could not be read.
func (r *Reader) Notes() []string {
	var notes []string
	if r.stats.Skipped > 0 {
		notes = append(notes, fmt.Sprintf("recording: %d of %d lines skipped (first: %s)", r.stats.Skipped, r.stats.Lines, r.lastErr))
	}
	if r.opts.Evidence {
		switch st := &r.stats; {
		case st.Evidence == 0 && st.EvidenceDropped == 0 && r.couldHaveEvidence > 0:
			notes = append(notes, "recording: it holds no value evidence (recorded with --evidence=false, or by an nplus1 that did not record it): N+1s found in it are judged on repetition alone")
		case st.EvidenceDropped > 0:
			notes = append(notes, fmt.Sprintf("recording: the value evidence of %d executions was not restored, the evidence budget being full: their loops are judged on repetition alone", st.EvidenceDropped))
		}
	}
	return notes
}

// readLine returns the next line without its newline; a line longer than
// MaxLineBytes is skipped (counted). It returns io.EOF after the last file.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	tooLong := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.line)+len(chunk) > r.opts.MaxLineBytes {
				tooLong = true
				r.line = r.line[:0]
			} else if err == nil && len(r.line) == 0 {
				// The common case: the whole line is in the buffer.
				return r.finishLine(chunk, false)
			} else {
				r.line = append(r.line, chunk...)
			}
		}
		switch {
		case err == nil:
			return r.finishLine(r.line, tooLong)
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(r.line) > 0 || tooLong {
				return r.finishLine(r.line, tooLong)
			}
			if err := r.in.Next(); err != nil {
				return nil, err // io.EOF after the last file
			}
		default:
			return nil, fmt.Errorf("read %s: %w", r.in.Name(), err)
		}
	}
}

func (r *Reader) finishLine(line []byte, tooLong bool) ([]byte, error) {
	r.stats.Lines++
	if cap(r.line) > 4<<20 && !tooLong {
		defer func() { r.line = nil }()
	}
	if tooLong {
		r.skipped(fmt.Sprintf("line %d longer than %d bytes", r.stats.Lines, r.opts.MaxLineBytes))
		return nil, nil
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func (r *Reader) skipped(why string) {
	r.stats.Skipped++
	if r.lastErr == "" {
		if name := r.in.Name(); name != "" {
			why = name + ": " + why
		}
		r.lastErr = why
	}
}

// Next returns the next execution, io.EOF at the end of the last file. Lines
// that are not items are skipped and counted (Stats, FirstProblem).
func (r *Reader) Next() (*pgwire.Execution, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !r.parse(line) {
			r.skipped(fmt.Sprintf("line %d is not a recording item", r.stats.Lines))
			continue
		}
		e, ok := r.apply()
		if !ok {
			continue
		}
		r.stats.Executions++
		return e, nil
	}
}

// item is one line's fields, slices of the line or of the scanner's arena.
type item struct {
	typ, timestamp, sessionID, user, database, query []byte
	clientAddr, appName, prepared, command, sqlstate []byte
	paramsHash                                       []byte
	paramKeys                                        []byte // base64

	connID, duration, stmtIndex, rows, numParams int64
	hasConnID, hasDuration, hasRows              bool
	hasParams                                    bool
	paramsTruncated, sqlTruncated, inTx, txEnd   bool
	hasParamKeys, hasResult, resultTruncated     bool

	params    [][]byte // nil entries are NULL
	paramsStr []bool   // the value was a JSON string (not a number or bool)
	formats   []int16
	hexIdx    []int

	resultCols [][]byte // column names
	resultKeys [][]byte // base64, one per column
}

func (it *item) reset() {
	params, paramsStr, formats, hexIdx := it.params[:0], it.paramsStr[:0], it.formats[:0], it.hexIdx[:0]
	cols, keys := it.resultCols[:0], it.resultKeys[:0]
	*it = item{params: params, paramsStr: paramsStr, formats: formats, hexIdx: hexIdx, resultCols: cols, resultKeys: keys, rows: -1}
}

func (r *Reader) parse(line []byte) bool {
	s := &r.sc
	s.reset(line)
	it := &r.it
	it.reset()
	r.hd = headState{}
	if !s.expect('{') {
		return false
	}
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			v, ok := s.str()
			it.typ = v
			return ok
		case "item":
			if !s.expect('{') {
				return false
			}
			return s.object(r.field)
		}
		return s.skip()
	})
	return ok && s.peek() == 0
}

// field reads one member of an item.
func (r *Reader) field(key []byte) bool {
	s, it := &r.sc, &r.it
	var ok bool
	str := func(dst *[]byte) bool {
		if s.peek() == 'n' { // null
			_, ok := s.literal()
			return ok
		}
		*dst, ok = s.str()
		return ok
	}
	bit := headBit(key)
	if bit == 0 {
		r.hd.on = false
	}
	switch string(key) {
	case "timestamp":
		return str(&it.timestamp)
	case "session_id":
		if c := s.peek(); c != '"' && c != 'n' { // a number, in some writers
			it.sessionID, ok = s.literal()
		} else {
			ok = str(&it.sessionID)
		}
		if ok {
			r.hd = headState{start: s.i, on: true}
			r.takeHead()
		}
		return ok
	case "user":
		return str(&it.user) && r.headMember(bit)
	case "database":
		return str(&it.database) && r.headMember(bit)
	case "query":
		return str(&it.query)
	case "client_addr":
		return str(&it.clientAddr) && r.headMember(bit)
	case "application_name":
		return str(&it.appName) && r.headMember(bit)
	case "prepared":
		return str(&it.prepared)
	case "command":
		return str(&it.command)
	case "sqlstate":
		return str(&it.sqlstate)
	case "params_hash":
		return str(&it.paramsHash)
	case "conn_id":
		it.connID, ok = s.int()
		it.hasConnID = ok
		return ok && r.headMember(bit)
	case "duration_ns":
		it.duration, ok = s.int()
		it.hasDuration = ok
		return ok
	case "statement_index":
		it.stmtIndex, ok = s.int()
		return ok
	case "rows":
		it.rows, ok = s.int()
		it.hasRows = ok
		return ok
	case "num_params":
		it.numParams, ok = s.int()
		return ok
	case "params_truncated":
		it.paramsTruncated, ok = s.bool()
		return ok
	case "sql_truncated":
		it.sqlTruncated, ok = s.bool()
		return ok
	case "in_tx":
		it.inTx, ok = s.bool()
		return ok
	case "tx_end":
		it.txEnd, ok = s.bool()
		return ok
	case "parameters":
		return r.paramList()
	case "param_formats":
		return intList(s, func(v int64) { it.formats = append(it.formats, int16(v)) })
	case "param_hex":
		return intList(s, func(v int64) { it.hexIdx = append(it.hexIdx, int(v)) })
	case "param_keys":
		if !r.opts.Evidence {
			break
		}
		it.hasParamKeys = true
		return str(&it.paramKeys)
	case "result_columns":
		if !r.opts.Evidence {
			break
		}
		it.hasResult = true
		return strList(s, func(v []byte) { it.resultCols = append(it.resultCols, v) })
	case "result_keys":
		if !r.opts.Evidence {
			break
		}
		it.hasResult = true
		return strList(s, func(v []byte) { it.resultKeys = append(it.resultKeys, v) })
	case "result_truncated":
		it.resultTruncated, ok = s.bool()
		return ok
	}
	return s.skip()
}

// strList reads an array of strings (or null).
func strList(s *scanner, add func([]byte)) bool {
	return list(s, func() bool {
		v, ok := s.str()
		if ok {
			add(v)
		}
		return ok
	})
}

// intList reads an array of integers (or null).
func intList(s *scanner, add func(int64)) bool {
	return list(s, func() bool {
		v, ok := s.int()
		if ok {
			add(v)
		}
		return ok
	})
}

// list reads an array (or null), each element with elem.
func list(s *scanner, elem func() bool) bool {
	if s.peek() == 'n' {
		_, ok := s.literal()
		return ok
	}
	if !s.expect('[') {
		return false
	}
	if s.expect(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.expect(']') {
			return true
		}
		if !s.expect(',') {
			return false
		}
	}
}

func (r *Reader) paramList() bool {
	s, it := &r.sc, &r.it
	if s.peek() == 'n' {
		_, ok := s.literal()
		return ok
	}
	if !s.expect('[') {
		return false
	}
	it.hasParams = true
	if s.expect(']') {
		return true
	}
	for {
		var v []byte
		var ok, isStr bool
		switch s.peek() {
		case '"':
			v, ok = s.str()
			isStr = true
			if ok && v == nil {
				v = []byte{}
			}
		case '{', '[':
			// Not a parameter value this package writes; keep its text.
			start := s.i
			ok = s.skip()
			v = s.b[start:s.i]
		default:
			v, ok = s.literal()
			if ok && string(v) == "null" {
				v = nil
			}
		}
		if !ok {
			return false
		}
		it.params = append(it.params, v)
		it.paramsStr = append(it.paramsStr, isStr)
		if s.expect(']') {
			return true
		}
		if !s.expect(',') {
			return false
		}
	}
}

// apply turns the parsed item into an execution, or updates the sessions.
func (r *Reader) apply() (*pgwire.Execution, bool) {
	it := &r.it
	var proto string
	switch string(it.typ) {
	case TypeStatement, TypeStatementResult:
		proto = "simple"
	case TypeBoundExecute:
		proto = "extended"
	case TypeConnect:
		r.session(true)
		return nil, false
	case TypeDisconnect:
		r.sessions.Remove(string(it.sessionID))
		return nil, false
	default:
		r.skipped(fmt.Sprintf("line %d: unknown item type %q", r.stats.Lines, truncate(it.typ)))
		return nil, false
	}
	start, ok := parseTime(it.timestamp)
	if !ok {
		r.skipped(fmt.Sprintf("line %d: bad timestamp %q", r.stats.Lines, truncate(it.timestamp)))
		return nil, false
	}
	e := &pgwire.Execution{
		Conn:           r.session(false),
		Start:          start,
		End:            start,
		SQL:            r.intern.Str(it.query),
		StatementIndex: int(max(it.stmtIndex, 0)),
		Truncated:      it.sqlTruncated,
		Protocol:       proto,
		Prepared:       r.intern.Str(it.prepared),
		Command:        r.intern.Str(it.command),
		Rows:           -1,
		SQLState:       r.intern.Str(it.sqlstate),
		InTransaction:  it.inTx,
		TxEnd:          it.txEnd,
	}
	if it.hasDuration && it.duration > 0 {
		e.End = start.Add(time.Duration(it.duration))
	}
	if it.hasRows {
		e.Rows = it.rows
	}
	r.params(e)
	if r.opts.Evidence {
		if !r.evidence(e) {
			r.skipped(fmt.Sprintf("line %d: bad value evidence (param_keys, result_columns or result_keys)", r.stats.Lines))
			return nil, false
		}
		if e.Rows > 0 || e.NumParams > 0 {
			r.couldHaveEvidence++
		}
	}
	return e, true
}

// evidence restores e's value evidence, within the budget. It reports
// false when the item's digests are not what a Writer writes: strings of
// base64 (padded or not) of a whole number of 8-byte digests, and no more
// lists of digests than result columns.
func (r *Reader) evidence(e *pgwire.Execution) bool {
	it := &r.it
	if !it.hasParamKeys && !it.hasResult {
		return true
	}
	raw, ok := decodeDigests(r.raw[:0], it.paramKeys)
	if !ok {
		return false
	}
	nParams := len(raw) / 8
	size := 8 * nParams
	r.colLens = r.colLens[:0]
	if it.hasResult {
		if len(it.resultKeys) > len(it.resultCols) {
			return false
		}
		size += 64 + 16*len(it.resultCols)
		for _, k := range it.resultKeys {
			n0 := len(raw)
			if raw, ok = decodeDigests(raw, k); !ok {
				return false
			}
			r.colLens = append(r.colLens, (len(raw)-n0)/8)
		}
	}
	// A result's columns have the rows of the first, as a Writer writes
	// them; a shorter one is filled with None, a longer one cut
	// (pgwire.NewResultKeys).
	rows, even := 0, true
	for c, n := range r.colLens {
		if c == 0 {
			rows = n
		}
		even = even && n == rows
	}
	size += 8 * rows * len(r.colLens)
	r.raw = raw[:0]
	if cap(r.raw) > 4<<20 {
		r.raw = nil
	}
	// The budget first: a refused execution costs no allocation.
	if !r.opts.EvidenceBudget.Take(size) {
		r.stats.EvidenceDropped++
		return true
	}
	r.stats.Evidence++
	var keys []valuekey.Key
	var res *pgwire.ResultKeys
	switch {
	case it.hasResult && even && len(raw) <= 8*smallKeys:
		// A lookup's evidence, most of a recording's: one allocation.
		sm := new(smallEvidence)
		keys, res = sm.keys[:len(raw)/8], &sm.res
	case it.hasResult && even:
		keys, res = make([]valuekey.Key, len(raw)/8), new(pgwire.ResultKeys)
	default:
		keys = make([]valuekey.Key, len(raw)/8)
	}
	for i := range keys {
		keys[i] = valuekey.Key(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	if nParams > 0 {
		e.ParamKeys = keys[:nParams:nParams]
	}
	if !it.hasResult {
		return true
	}
	if !even {
		cols := make([][]valuekey.Key, len(r.colLens))
		at := nParams
		for c, n := range r.colLens {
			cols[c] = keys[at : at+n]
			at += n
		}
		e.Result = pgwire.NewResultKeys(r.columns(), cols, it.resultTruncated)
		return true
	}
	*res = *pgwire.ResultKeysOf(r.columns(), rows, keys[nParams:], it.resultTruncated)
	e.Result = res
	return true
}

// smallKeys bounds the digests of a smallEvidence.
const smallKeys = 5

// smallEvidence holds the evidence of an execution with few digests (a
// lookup by one key that reads one row) in one allocation.
type smallEvidence struct {
	res  pgwire.ResultKeys
	keys [smallKeys]valuekey.Key
}

// columns returns the item's result column names, the previous result's
// slice when they are the same (a loop's results share it, as the
// tracker's do; it is read only).
func (r *Reader) columns() []string {
	cols := r.it.resultCols
	if len(cols) == len(r.lastCols) && r.lastCols != nil {
		same := true
		for i, c := range cols {
			if string(c) != r.lastCols[i] {
				same = false
				break
			}
		}
		if same {
			return r.lastCols
		}
	}
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = r.intern.Str(c)
	}
	r.lastCols = out
	return out
}

// decodeDigests appends to dst the bytes of a list of digests written by
// the Writer: base64, padded or not, of a whole number of 8-byte digests.
func decodeDigests(dst, s []byte) ([]byte, bool) {
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	n0 := len(dst)
	out, err := enc.AppendDecode(dst, s)
	if err != nil || (len(out)-n0)%8 != 0 {
		return dst, false
	}
	return out, true
}

// params fills the parameter fields of e.
func (r *Reader) params(e *pgwire.Execution) {
	it := &r.it
	n := len(it.params)
	e.NumParams = n
	if n == 0 && it.numParams > 0 {
		e.NumParams = int(min(it.numParams, 1<<16))
	}
	e.ParamsTruncated = it.paramsTruncated
	// Decode hex values in place (into the arena).
	for _, i := range it.hexIdx {
		if i >= 0 && i < n && it.params[i] != nil {
			if v, ok := r.sc.decodeHexValue(it.params[i]); ok {
				it.params[i] = v
			}
		}
	}
	var formats []int16
	if len(it.formats) > 0 {
		formats = it.formats
	}
	if h, ok := parseHex64(it.paramsHash); ok {
		e.ParamsHash = h
	} else if n > 0 {
		e.ParamsHash = pgwire.HashParams(formats, it.params)
	}
	if n > 0 { // the bits the tracker passes live (LIKE patterns, OFFSETs)
		e.ParamWildcard, e.ParamLarge = pgwire.ParamBits(formats, it.params)
	}
	if !r.opts.KeepParams || n == 0 {
		return
	}
	size := 0
	for _, v := range it.params {
		size += len(v)
	}
	data := make([]byte, 0, size)
	e.Params = make([][]byte, n)
	for i, v := range it.params {
		if v == nil {
			continue
		}
		data = append(data, v...)
		e.Params[i] = data[len(data)-len(v) : len(data) : len(data)]
	}
	if formats != nil {
		e.ParamFormats = slices.Clone(formats)
	}
}

// session returns the connection of the current item, creating or updating
// it. Every item carries the connection's fields, so a forgotten session is
// rebuilt from the next one.
func (r *Reader) session(connect bool) *pgwire.ConnInfo {
	it := &r.it
	se, ok := lru.GetString(r.sessions, it.sessionID)
	var c *pgwire.ConnInfo
	if ok {
		c = se.conn
	}
	if ok && !connect && string(it.user) == c.User && string(it.database) == c.Database &&
		string(it.appName) == c.ApplicationName && (len(it.clientAddr) == 0 || string(it.clientAddr) == c.ClientAddr) {
		r.rememberHead(se)
		return c
	}
	nc := &pgwire.ConnInfo{
		User:            r.intern.Str(it.user),
		Database:        r.intern.Str(it.database),
		ApplicationName: r.intern.Str(it.appName),
		ClientAddr:      r.intern.Str(it.clientAddr),
	}
	switch {
	case ok:
		nc.ID = c.ID
		if nc.ClientAddr == "" {
			nc.ClientAddr = c.ClientAddr
		}
	case it.hasConnID && it.connID > 0:
		nc.ID = uint64(it.connID)
	default:
		r.nextID++
		nc.ID = r.nextID
	}
	se = &session{conn: nc}
	r.sessions.Add(string(it.sessionID), se, 0) // past maxSessions, forgets the least recently used
	r.rememberHead(se)

	return nc
}

// session is what a Reader remembers of a session: its connection, and the
// head of the latest item read whole for it. The Writer writes the same
// members after every item's session_id (user, database, conn_id,
// client_addr, application_name); an item whose bytes there are the head's
// takes the head's values without reading them (a sixth of a lookup's
// line), and gets what reading them would give, since they are the same
// bytes.
type session struct {
	conn *pgwire.ConnInfo
	head []byte // from just after the session_id's value to the end of the last head member's

	// The values read from head.
	user, database, clientAddr, appName []byte
	connID                              int64
	hasConnID                           bool
}

// The members of a head, as bits of headState.keys.
const (
	headUser = 1 << iota
	headDatabase
	headConnID
	headClientAddr
	headAppName
	headAll = headUser | headDatabase | headConnID | headClientAddr | headAppName
)

// headBit is key's bit when it is a member of a head, else 0.
func headBit(key []byte) uint8 {
	switch string(key) {
	case "user":
		return headUser
	case "database":
		return headDatabase
	case "conn_id":
		return headConnID
	case "client_addr":
		return headClientAddr
	case "application_name":
		return headAppName
	}
	return 0
}

// headState follows the head of the item being read: the members right
// after its session_id.
type headState struct {
	start int   // where it begins in the line: just after the session_id's value
	keys  uint8 // the head members read since, with no other member between
	on    bool  // only head members followed the session_id so far
	end   int   // where it ends, once all five were read in a row (0: not read whole)
}

// takeHead takes the head of the item from its session, when the line has
// the same bytes there: the scanner moves past them and the item gets
// their values.
func (r *Reader) takeHead() {
	if r.noHeads {
		return
	}
	se, ok := lru.PeekString(r.sessions, r.it.sessionID)
	s := &r.sc
	if !ok || len(se.head) == 0 || !bytes.HasPrefix(s.b[s.i:], se.head) {
		return
	}
	s.i += len(se.head)
	r.taken++
	it := &r.it
	it.user, it.database, it.clientAddr, it.appName = se.user, se.database, se.clientAddr, se.appName
	it.connID, it.hasConnID = se.connID, se.hasConnID
	r.hd.on = false
}

// headMember records that a member of the head (bit) was read; it always
// reports true.
func (r *Reader) headMember(bit uint8) bool {
	if h := &r.hd; h.on {
		h.keys |= bit
		if h.keys == headAll {
			h.end, h.on = r.sc.i, false
		}
	}
	return true
}

// rememberHead keeps the head of the item just read in se, when it was
// read whole and differs from the one se has.
func (r *Reader) rememberHead(se *session) {
	h := &r.hd
	if h.end == 0 {
		return
	}
	head := r.sc.b[h.start:h.end]
	if bytes.Equal(head, se.head) {
		return
	}
	it := &r.it
	se.head = bytes.Clone(head)
	se.user, se.database = bytes.Clone(it.user), bytes.Clone(it.database)
	se.clientAddr, se.appName = bytes.Clone(it.clientAddr), bytes.Clone(it.appName)
	se.connID, se.hasConnID = it.connID, it.hasConnID
}

// parseHex64 parses 1 to 16 hex digits, as strconv.ParseUint(s, 16, 64)
// does, without the error it allocates for the items that have none.
func parseHex64(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var h uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		h = h<<4 | uint64(c)
	}
	return h, true
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
