package recording

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/nplus1/nplus1/internal/fileseq"
	"github.com/nplus1/nplus1/internal/intern"
	"github.com/nplus1/nplus1/internal/lru"
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
}

// ReaderStats count what a Reader read.
type ReaderStats struct {
	Lines      int64 // lines read
	Executions int64 // executions returned
	Skipped    int64 // lines that were not JSON items this package knows, or too long
	Bytes      int64 // bytes read, all files
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
	sessions *lru.Cache[string, *pgwire.ConnInfo]
	nextID   uint64
	intern   intern.Table // SQL texts and names, shared

	stats   ReaderStats
	lastErr string // the first bad line's problem, for the caller's report
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
		sessions: lru.New[string, *pgwire.ConnInfo](maxSessions, 0, nil),
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
	if r.stats.Skipped == 0 {
		return nil
	}
	return []string{fmt.Sprintf("recording: %d of %d lines skipped (first: %s)", r.stats.Skipped, r.stats.Lines, r.lastErr)}
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

	connID, duration, stmtIndex, rows, numParams int64
	hasConnID, hasDuration, hasRows              bool
	hasParams                                    bool
	paramsTruncated, sqlTruncated, inTx, txEnd   bool

	params    [][]byte // nil entries are NULL
	paramsStr []bool   // the value was a JSON string (not a number or bool)
	formats   []int16
	hexIdx    []int
}

func (it *item) reset() {
	params, paramsStr, formats, hexIdx := it.params[:0], it.paramsStr[:0], it.formats[:0], it.hexIdx[:0]
	*it = item{params: params, paramsStr: paramsStr, formats: formats, hexIdx: hexIdx, rows: -1}
}

func (r *Reader) parse(line []byte) bool {
	s := &r.sc
	s.reset(line)
	it := &r.it
	it.reset()
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
	switch string(key) {
	case "timestamp":
		return str(&it.timestamp)
	case "session_id":
		if c := s.peek(); c != '"' && c != 'n' { // a number, in some writers
			it.sessionID, ok = s.literal()
			return ok
		}
		return str(&it.sessionID)
	case "user":
		return str(&it.user)
	case "database":
		return str(&it.database)
	case "query":
		return str(&it.query)
	case "client_addr":
		return str(&it.clientAddr)
	case "application_name":
		return str(&it.appName)
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
		return ok
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
	}
	return s.skip()
}

func intList(s *scanner, add func(int64)) bool {
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
		v, ok := s.int()
		if !ok {
			return false
		}
		add(v)
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
	return e, true
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
	if h, err := strconv.ParseUint(string(it.paramsHash), 16, 64); err == nil && len(it.paramsHash) > 0 {
		e.ParamsHash = h
	} else if n > 0 {
		e.ParamsHash = pgwire.HashParams(formats, it.params)
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
	c, ok := lru.GetString(r.sessions, it.sessionID)
	if ok && !connect && string(it.user) == c.User && string(it.database) == c.Database &&
		string(it.appName) == c.ApplicationName && (len(it.clientAddr) == 0 || string(it.clientAddr) == c.ClientAddr) {
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
	r.sessions.Add(string(it.sessionID), nc, 0) // past maxSessions, forgets the least recently used

	return nc
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
