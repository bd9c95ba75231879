package pglog

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nplus1/nplus1/internal/fileseq"
	"github.com/nplus1/nplus1/internal/intern"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/pgwire"
)

// Formats.
const (
	CSV  = "csvlog"
	JSON = "jsonlog"
)

// Defaults of Options.
const (
	DefaultMaxRecordBytes = 16 << 20
	DefaultMaxSessions    = 1 << 16
	DefaultMaxSQLBytes    = pgwire.DefaultMaxSQLBytes
)

// Options configure a Reader.
type Options struct {
	// KeepParams fills Execution.Params with the logged parameter values
	// (text), for re-execution.
	KeepParams bool
	// MaxRecordBytes bounds one log record; MaxSessions the sessions
	// remembered; MaxSQLBytes the statement text kept (longer is
	// Truncated). Zero takes the defaults.
	MaxRecordBytes int
	MaxSessions    int
	MaxSQLBytes    int
}

// Stats count what a Reader read.
type Stats struct {
	Records    int64 // log records read
	Executions int64 // executions returned
	Skipped    int64 // records that could not be read (malformed, too long)
	Sessions   int64 // sessions seen
	Forgotten  int64 // sessions forgotten at MaxSessions
}

// record is one log entry's fields that matter.
type record struct {
	time        time.Time
	user, db    []byte
	sessionID   []byte
	remote      []byte // host[:port]
	commandTag  []byte
	severity    []byte
	sqlState    []byte
	message     []byte
	detail      []byte
	query       []byte
	application []byte
}

// session is one connection's state.
type session struct {
	info    *pgwire.ConnInfo
	inTx    bool
	pending *pgwire.Execution // logged before it ran (log_statement), awaiting its duration
	order   uint64            // when it first appeared
}

// Reader turns csvlog or jsonlog records into executions.
type Reader struct {
	format string
	opts   Options

	in   *fileseq.Seq
	br   *bufio.Reader // in.Buf()
	csv  csvReader
	line []byte

	// sessions by session id, forgotten in the order they first appeared
	// (lookups use Peek and do not reorder) past MaxSessions.
	sessions *lru.Cache[string, *session]
	nextID   uint64
	order    uint64
	out      []*pgwire.Execution
	outHead  int
	intern   intern.Table // SQL texts and names, shared
	params   [][]byte
	tsCache  tsCache

	stats   Stats
	problem string
	done    bool
}

// Open returns a Reader over log files of one format, read in order as one
// log (the server's rotation splits one into several).
func Open(format string, files []string, opts Options) (*Reader, error) {
	r, err := newReader(format, opts)
	if err != nil {
		return nil, err
	}
	r.in = fileseq.New(files)
	if err := r.nextFile(); err != nil {
		return nil, err
	}
	return r, nil
}

// NewReader returns a Reader over one stream.
func NewReader(format string, in io.Reader, opts Options) (*Reader, error) {
	r, err := newReader(format, opts)
	if err != nil {
		return nil, err
	}
	r.in = fileseq.FromReader(in)
	r.br = r.in.Buf()
	r.csv.br = r.br
	return r, nil
}

func newReader(format string, opts Options) (*Reader, error) {
	if format != CSV && format != JSON {
		return nil, fmt.Errorf("pglog: unknown format %q", format)
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxSQLBytes <= 0 {
		opts.MaxSQLBytes = DefaultMaxSQLBytes
	}
	r := &Reader{format: format, opts: opts}
	r.sessions = lru.New(opts.MaxSessions, 0, r.forget)
	r.csv.max = opts.MaxRecordBytes
	return r, nil
}

func (r *Reader) nextFile() error {
	if err := r.in.Next(); err != nil {
		return err
	}
	r.br = r.in.Buf()
	r.csv.br = r.br
	return nil
}

// Close closes the current file.
func (r *Reader) Close() error { return r.in.Close() }

// BytesRead is how far the Reader got; safe from any goroutine.
func (r *Reader) BytesRead() int64 { return r.in.BytesRead() }

// Stats returns the counters.
func (r *Reader) Stats() Stats { return r.stats }

// Notes describe what could not be used.
func (r *Reader) Notes() []string {
	var notes []string
	if r.stats.Skipped > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d of %d records skipped (first: %s)", r.format, r.stats.Skipped, r.stats.Records, r.problem))
	}
	if r.stats.Records > 0 && r.stats.Executions == 0 {
		notes = append(notes, fmt.Sprintf("%s: no statements in %d records: log with log_min_duration_statement = 0 or log_statement = 'all'", r.format, r.stats.Records))
	}
	if r.stats.Forgotten > 0 {
		notes = append(notes, fmt.Sprintf("%s: %d sessions forgotten at the bound of %d (no disconnection lines?)", r.format, r.stats.Forgotten, r.opts.MaxSessions))
	}
	notes = append(notes, fmt.Sprintf("%s: logs carry no row counts: unpaginated reads and N+1 sources cannot be seen", r.format))
	return notes
}

func (r *Reader) skip(why string) {
	r.stats.Skipped++
	if r.problem == "" {
		if r.in.Name() != "" {
			why = r.in.Name() + ": " + why
		}
		r.problem = why
	}
}

// Next returns the next execution, io.EOF after the last record.
func (r *Reader) Next() (*pgwire.Execution, error) {
	for {
		if r.outHead < len(r.out) {
			e := r.out[r.outHead]
			r.out[r.outHead] = nil
			r.outHead++
			r.stats.Executions++
			return e, nil
		}
		r.out, r.outHead = r.out[:0], 0
		if r.done {
			return nil, io.EOF
		}
		var rec record
		skipped := r.stats.Skipped
		ok, err := r.read(&rec)
		if r.stats.Skipped > skipped {
			r.stats.Records++
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read %s: %w", r.in.Name(), err)
			}
			if err := r.nextFile(); err != nil {
				if !errors.Is(err, io.EOF) {
					return nil, err
				}
				r.finish()
			}
			continue
		}
		if ok {
			r.stats.Records++
			r.handle(&rec)
		}
	}
}

// finish emits what sessions still hold at the end of the log.
func (r *Reader) finish() {
	r.done = true
	// In session order, so the output is deterministic.
	var ss []*session
	r.sessions.All(func(_ string, s *session) bool {
		if s.pending != nil {
			ss = append(ss, s)
		}
		return true
	})
	slices.SortFunc(ss, func(a, b *session) int { return cmp.Compare(a.order, b.order) })
	for _, s := range ss {
		r.flush(s)
	}
	r.Close()
}

// read reads one record; ok is false for a record that was skipped.
func (r *Reader) read(rec *record) (ok bool, err error) {
	if r.format == CSV {
		return r.readCSV(rec)
	}
	return r.readJSON(rec)
}

func (r *Reader) readCSV(rec *record) (bool, error) {
	f, err := r.csv.read()
	if errors.Is(err, errTooLong) {
		r.skip(fmt.Sprintf("a record longer than %d bytes", r.opts.MaxRecordBytes))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(f) == 1 && len(f[0]) == 0 {
		return false, nil // a blank line
	}
	// log_time, user_name, database_name, process_id, connection_from,
	// session_id, session_line_num, command_tag, session_start_time,
	// virtual_transaction_id, transaction_id, error_severity,
	// sql_state_code, message, detail, hint, internal_query,
	// internal_query_pos, context, query, query_pos, location,
	// application_name[, backend_type, leader_pid, query_id]
	if len(f) < 23 {
		r.skip(fmt.Sprintf("a record of %d fields, not csvlog's 23 or more", len(f)))
		return false, nil
	}
	t, ok := r.tsCache.parse(f[0])
	if !ok {
		r.skip(fmt.Sprintf("bad log_time %q", clip(f[0])))
		return false, nil
	}
	*rec = record{time: t, user: f[1], db: f[2], remote: f[4], sessionID: f[5], commandTag: f[7],
		severity: f[11], sqlState: f[12], message: f[13], detail: f[14], query: f[19], application: f[22]}
	return true, nil
}

// jsonRecord is jsonlog's fields that matter.
type jsonRecord struct {
	Timestamp   string `json:"timestamp"`
	User        string `json:"user"`
	DBName      string `json:"dbname"`
	RemoteHost  string `json:"remote_host"`
	SessionID   string `json:"session_id"`
	PS          string `json:"ps"`
	Severity    string `json:"error_severity"`
	StateCode   string `json:"state_code"`
	Message     string `json:"message"`
	Detail      string `json:"detail"`
	Statement   string `json:"statement"`
	Application string `json:"application_name"`
}

func (r *Reader) readJSON(rec *record) (bool, error) {
	r.line = r.line[:0]
	tooLong := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.line)+len(chunk) > r.opts.MaxRecordBytes {
				tooLong, r.line = true, r.line[:0]
			} else {
				r.line = append(r.line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !(errors.Is(err, io.EOF) && (len(r.line) > 0 || tooLong)) {
			return false, err
		}
		break
	}
	if cap(r.line) > 1<<20 {
		defer func() { r.line = nil }()
	}
	if tooLong {
		r.skip(fmt.Sprintf("a record longer than %d bytes", r.opts.MaxRecordBytes))
		return false, nil
	}
	line := bytes.TrimSpace(r.line)
	if len(line) == 0 {
		return false, nil
	}
	var j jsonRecord
	if err := json.Unmarshal(line, &j); err != nil {
		r.skip("a line that is not a JSON object: " + clip(line))
		return false, nil
	}
	t, ok := r.tsCache.parse([]byte(j.Timestamp))
	if !ok {
		r.skip(fmt.Sprintf("bad timestamp %q", clip([]byte(j.Timestamp))))
		return false, nil
	}
	*rec = record{time: t, user: []byte(j.User), db: []byte(j.DBName), remote: []byte(j.RemoteHost),
		sessionID: []byte(j.SessionID), commandTag: []byte(j.PS), severity: []byte(j.Severity),
		sqlState: []byte(j.StateCode), message: []byte(j.Message), detail: []byte(j.Detail),
		query: []byte(j.Statement), application: []byte(j.Application)}
	return true, nil
}

func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// session returns the record's session, creating it on first sight.
func (r *Reader) session(rec *record) *session {
	s, _ := r.sessions.Peek(string(rec.sessionID))
	if s == nil {
		r.nextID++
		r.order++
		r.stats.Sessions++
		s = &session{info: &pgwire.ConnInfo{ID: r.nextID}, order: r.order}
		r.sessions.Add(string(rec.sessionID), s, 0) // past MaxSessions, forgets the oldest
	}
	// Identity: the latest the log says (application_name may change).
	c := s.info
	host := hostOf(rec.remote)
	if (len(rec.user) > 0 && string(rec.user) != c.User) || (len(rec.db) > 0 && string(rec.db) != c.Database) ||
		string(rec.application) != c.ApplicationName || (len(host) > 0 && string(host) != c.ClientAddr) {
		nc := *c
		if len(rec.user) > 0 {
			nc.User = r.intern.Str(rec.user)
		}
		if len(rec.db) > 0 {
			nc.Database = r.intern.Str(rec.db)
		}
		if len(host) > 0 {
			nc.ClientAddr = r.intern.Str(host)
		}
		nc.ApplicationName = r.intern.Str(rec.application)
		s.info = &nc
	}
	return s
}

// forget is called for the oldest session, which the table dropped past
// MaxSessions: what it holds is emitted.
func (r *Reader) forget(_ string, s *session) {
	r.flush(s)
	r.stats.Forgotten++
}

// hostOf strips the port from csvlog's connection_from ("host:port").
func hostOf(remote []byte) []byte {
	if i := bytes.LastIndexByte(remote, ':'); i > 0 && bytes.Count(remote, []byte(":")) == 1 {
		return remote[:i]
	}
	if len(remote) > 0 && remote[0] == '[' { // [v6]:port
		if i := bytes.IndexByte(remote, ']'); i > 0 {
			return remote[1:i]
		}
	}
	return remote
}

var (
	prefixDuration   = []byte("duration: ")
	prefixStatement  = []byte("statement: ")
	prefixExecute    = []byte("execute ")
	prefixParse      = []byte("parse ")
	prefixBind       = []byte("bind ")
	prefixParameters = []byte("parameters: ")
	prefixDisconnect = []byte("disconnection: ")
	prefixAuthorized = []byte("connection authorized: ")
)

// handle applies one record.
func (r *Reader) handle(rec *record) {
	if len(rec.sessionID) == 0 {
		return
	}
	sev := string(rec.severity)
	switch sev {
	case "ERROR", "FATAL", "PANIC":
		if len(rec.query) > 0 {
			r.failed(r.session(rec), rec)
		}
		return
	case "LOG":
	default:
		return
	}
	msg := rec.message
	var dur time.Duration
	hasDur := false
	if bytes.HasPrefix(msg, prefixDuration) {
		rest := msg[len(prefixDuration):]
		i := bytes.Index(rest, []byte(" ms"))
		if i < 0 {
			return
		}
		ms, err := strconv.ParseFloat(string(rest[:i]), 64)
		if err != nil || ms < 0 || ms > 1e12 {
			r.skip("bad duration " + clip(rest))
			return
		}
		dur, hasDur = time.Duration(ms*float64(time.Millisecond)), true
		msg = bytes.TrimLeft(rest[i+len(" ms"):], " ")
		if len(msg) == 0 {
			// The duration of a statement logged before it ran.
			if s, _ := r.sessions.Peek(string(rec.sessionID)); s != nil && s.pending != nil {
				p := s.pending
				p.End = rec.time
				p.Start = rec.time.Add(-dur)
				r.flush(s)
			}
			return
		}
	}
	switch {
	case bytes.HasPrefix(msg, prefixStatement):
		s := r.session(rec)
		r.statement(s, rec, "simple", "", msg[len(prefixStatement):], dur, hasDur)
	case bytes.HasPrefix(msg, prefixExecute):
		s := r.session(rec)
		rest := msg[len(prefixExecute):]
		rest = bytes.TrimPrefix(rest, []byte("fetch from "))
		i := bytes.Index(rest, []byte(": "))
		if i < 0 {
			return
		}
		name := rest[:i]
		if j := bytes.IndexByte(name, '/'); j >= 0 { // statement/portal
			name = name[:j]
		}
		prepared := ""
		if string(name) != "<unnamed>" {
			prepared = r.intern.Str(name)
		}
		r.statement(s, rec, "extended", prepared, rest[i+2:], dur, hasDur)
	case bytes.HasPrefix(msg, prefixParse), bytes.HasPrefix(msg, prefixBind):
		// The three-line form's first two lines: not executions.
		r.session(rec)
	case bytes.HasPrefix(msg, prefixAuthorized):
		r.session(rec)
	case bytes.HasPrefix(msg, prefixDisconnect):
		if s, ok := r.sessions.Remove(string(rec.sessionID)); ok {
			r.flush(s)
		}
	}
}

// statement records one statement of session s.
func (r *Reader) statement(s *session, rec *record, proto, prepared string, sql []byte, dur time.Duration, hasDur bool) {
	if s.pending != nil {
		r.flush(s) // its duration never came
	}
	e := &pgwire.Execution{
		Conn:     s.info,
		Start:    rec.time.Add(-dur),
		End:      rec.time,
		Protocol: proto,
		Prepared: prepared,
		Rows:     -1,
	}
	if len(sql) > r.opts.MaxSQLBytes {
		sql, e.Truncated = sql[:r.opts.MaxSQLBytes], true
	}
	e.SQL = r.intern.Str(sql)
	if tag := string(rec.commandTag); tag != "" && tag != "idle" && tag != "PARSE" && tag != "BIND" && tag != "idle in transaction" {
		e.Command = internTag(tag)
	}
	if proto == "extended" && bytes.HasPrefix(rec.detail, prefixParameters) {
		r.parseParams(e, rec.detail[len(prefixParameters):])
	}
	r.transaction(s, e)
	if hasDur {
		s.pending = e
		r.flush(s)
		return
	}
	s.pending = e
}

// failed records an error. When the failing statement is the one logged
// before it ran, that one failed; otherwise it is an execution of its own.
func (r *Reader) failed(s *session, rec *record) {
	sql := rec.query
	if len(sql) > r.opts.MaxSQLBytes {
		sql = sql[:r.opts.MaxSQLBytes]
	}
	if p := s.pending; p != nil && p.SQL == string(sql) {
		p.SQLState, p.End = r.intern.Str(rec.sqlState), rec.time
		p.Command = ""
		r.flush(s)
		return
	}
	r.flush(s)
	e := &pgwire.Execution{Conn: s.info, Start: rec.time, End: rec.time, Protocol: "simple", Rows: -1,
		SQL: r.intern.Str(sql), SQLState: r.intern.Str(rec.sqlState), Truncated: len(rec.query) > len(sql)}
	r.transaction(s, e)
	s.pending = e
	r.flush(s)
}

// transaction sets InTransaction and TxEnd from transaction control.
func (r *Reader) transaction(s *session, e *pgwire.Execution) {
	word := strings.ToUpper(e.Command)
	if word == "" || word == "SELECT" || e.SQLState != "" {
		word = strings.ToUpper(firstWord(e.SQL))
	}
	switch word {
	case "BEGIN", "START", "START TRANSACTION":
		s.inTx = true
		e.InTransaction = true
	case "COMMIT", "END", "ROLLBACK", "ABORT":
		if s.inTx || e.Command != "" {
			e.TxEnd = true
		}
		e.InTransaction = true
		s.inTx = false
	default:
		e.InTransaction = s.inTx
	}
	if word == "ROLLBACK" && strings.Contains(strings.ToUpper(e.SQL), " TO ") { // ROLLBACK TO SAVEPOINT
		e.TxEnd = false
		s.inTx = true
	}
}

// firstWord returns the first keyword of sql, after blanks and comments.
func firstWord(sql string) string {
	s := sql
	for {
		s = strings.TrimLeft(s, " \t\r\n\f(")
		switch {
		case strings.HasPrefix(s, "--"):
			if i := strings.IndexByte(s, '\n'); i >= 0 {
				s = s[i+1:]
				continue
			}
			return ""
		case strings.HasPrefix(s, "/*"):
			if i := strings.Index(s, "*/"); i >= 0 {
				s = s[i+2:]
				continue
			}
			return ""
		}
		break
	}
	end := 0
	for end < len(s) && (s[end] >= 'a' && s[end] <= 'z' || s[end] >= 'A' && s[end] <= 'Z' || s[end] == '_') {
		end++
	}
	return s[:end]
}

// flush emits the session's pending statement.
func (r *Reader) flush(s *session) {
	if s.pending != nil {
		r.out = append(r.out, s.pending)
		s.pending = nil
	}
}

// parseParams reads "$1 = 'a', $2 = NULL, $3 = 'it”s'" and sets the
// parameter hash (and values, with KeepParams).
func (r *Reader) parseParams(e *pgwire.Execution, d []byte) {
	r.params = r.params[:0]
	var buf []byte
	for len(d) > 0 {
		d = bytes.TrimLeft(d, ", ")
		if len(d) == 0 || d[0] != '$' {
			break
		}
		i := bytes.Index(d, []byte(" = "))
		if i < 0 {
			break
		}
		d = d[i+3:]
		if bytes.HasPrefix(d, []byte("NULL")) {
			r.params = append(r.params, nil)
			d = d[4:]
			continue
		}
		if len(d) == 0 || d[0] != '\'' {
			break
		}
		d = d[1:]
		start := len(buf)
		closed := false
		for len(d) > 0 {
			c := d[0]
			d = d[1:]
			if c == '\'' {
				if len(d) > 0 && d[0] == '\'' {
					buf = append(buf, '\'')
					d = d[1:]
					continue
				}
				closed = true
				break
			}
			buf = append(buf, c)
		}
		if !closed {
			break
		}
		r.params = append(r.params, buf[start:len(buf):len(buf)])
	}
	// Values appended to buf may have moved it: rebuild the slices.
	if len(r.params) == 0 {
		return
	}
	off := 0
	vals := make([][]byte, len(r.params))
	for i, p := range r.params {
		if p == nil {
			continue
		}
		vals[i] = buf[off : off+len(p) : off+len(p)]
		off += len(p)
	}
	e.NumParams = len(vals)
	e.ParamsHash = pgwire.HashParams(nil, vals)
	e.ParamWildcard, e.ParamLarge = pgwire.ParamBits(nil, vals) // as the tracker passes them live
	if r.opts.KeepParams {
		e.Params = vals
	}
}

func internTag(tag string) string {
	switch tag {
	case "SELECT":
		return "SELECT"
	case "INSERT":
		return "INSERT"
	case "UPDATE":
		return "UPDATE"
	case "DELETE":
		return "DELETE"
	case "BEGIN":
		return "BEGIN"
	case "COMMIT":
		return "COMMIT"
	case "ROLLBACK":
		return "ROLLBACK"
	}
	return tag
}

// tsCache parses log timestamps ("2026-03-14 15:09:26.123 UTC"), reusing
// the parse of the last second seen.
type tsCache struct {
	prefix [19]byte
	zone   string
	base   time.Time
	ok     bool
}

func (c *tsCache) parse(b []byte) (time.Time, bool) {
	// YYYY-MM-DD HH:MM:SS[.fff] ZONE
	if len(b) < 19 {
		return time.Time{}, false
	}
	rest := b[19:]
	var frac time.Duration
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		scale := time.Duration(100 * time.Millisecond)
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			frac += time.Duration(rest[i]-'0') * scale
			scale /= 10
			i++
		}
		rest = rest[i:]
	}
	zone := strings.TrimSpace(string(rest))
	if c.ok && string(b[:19]) == string(c.prefix[:]) && zone == c.zone {
		return c.base.Add(frac), true
	}
	base, err := parseBase(string(b[:19]), zone)
	if err != nil {
		return time.Time{}, false
	}
	copy(c.prefix[:], b[:19])
	c.zone, c.base, c.ok = zone, base, true
	return base.Add(frac), true
}

func parseBase(s, zone string) (time.Time, error) {
	const layout = "2006-01-02 15:04:05"
	switch {
	case zone == "" || zone == "UTC" || zone == "GMT" || zone == "Z":
		return time.ParseInLocation(layout, s, time.UTC)
	case zone[0] == '+' || zone[0] == '-':
		for _, zl := range []string{"-07", "-0700", "-07:00", "-07:00:00"} {
			if t, err := time.Parse(layout+" "+zl, s+" "+zone); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("zone %q", zone)
	}
	// A zone abbreviation: its offset cannot be known from the log.
	return time.ParseInLocation(layout, s, time.UTC)
}
