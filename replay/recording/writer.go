package recording

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// DefaultMaxFileBytes is the size at which a Writer starts a new file.
const DefaultMaxFileBytes = 100 << 20

// maxConnectsRemembered bounds the connections a Writer remembers having
// written a Connect for; past it, it forgets them all (a second Connect for
// a connection is harmless).
const maxConnectsRemembered = 1 << 16

// Item types, as pgreplay-go names them where it has them.
const (
	TypeConnect         = "Connect"
	TypeDisconnect      = "Disconnect"
	TypeStatement       = "Statement"
	TypeStatementResult = "StatementResult"
	TypeBoundExecute    = "BoundExecute"
)

// WriterOptions configure a Writer. Zero values take the defaults.
type WriterOptions struct {
	// MaxFileBytes is the size from which the next item goes to a new file.
	MaxFileBytes int64
	// Now names the files in a directory and the sessions (time.Now when nil).
	Now func() time.Time
}

// WriterStats count what a Writer wrote.
type WriterStats struct {
	Files      int   // files opened
	Executions int64 // executions written
	Bytes      int64 // bytes written, all files
}

// Writer writes executions as JSON lines, rotating files by size.
type Writer struct {
	opts    WriterOptions
	dir     string // write numbered files in dir; "" with path
	path    string // write path, then path.0001, ...; "" with dir
	prefix  string // session ids: hex seconds of the Writer's start
	started time.Time

	out   io.Writer // the current file, or the io.Writer of NewWriter
	file  *os.File  // nil with NewWriter
	bw    *bufio.Writer
	size  int64 // bytes in the current file
	index int   // files opened so far

	seen  map[uint64]struct{} // connections with a Connect in the current file
	buf   []byte
	raw   []byte // digests as bytes, before base64
	stats WriterStats
	err   error // sticky
}

// Create returns a Writer to path: a directory (existing, or named with a
// trailing slash) gets numbered files; anything else is a file name, and
// rotation continues in path.0001, path.0002, ...
func Create(path string, opts WriterOptions) (*Writer, error) {
	w := newWriter(opts)
	if st, err := os.Stat(path); (err == nil && st.IsDir()) || strings.HasSuffix(path, "/") || strings.HasSuffix(path, string(filepath.Separator)) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, err
		}
		w.dir = path
	} else {
		w.path = path
	}
	if err := w.rotate(); err != nil {
		return nil, err
	}
	return w, nil
}

// NewWriter returns a Writer to out, without rotation.
func NewWriter(out io.Writer, opts WriterOptions) *Writer {
	w := newWriter(opts)
	w.out = out
	w.bw = bufio.NewWriterSize(out, 64<<10)
	w.stats.Files = 1
	return w
}

func newWriter(opts WriterOptions) *Writer {
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now()
	return &Writer{
		opts:    opts,
		started: now,
		prefix:  strconv.FormatInt(now.Unix(), 16),
		seen:    make(map[uint64]struct{}),
	}
}

// rotate closes the current file and opens the next.
func (w *Writer) rotate() error {
	if err := w.closeFile(); err != nil {
		return err
	}
	var name string
	switch {
	case w.dir != "":
		name = filepath.Join(w.dir, fmt.Sprintf("nplus1-%s-%04d.jsonl", w.started.UTC().Format("20060102T150405Z"), w.index+1))
	case w.index == 0:
		name = w.path
	default:
		name = fmt.Sprintf("%s.%04d", w.path, w.index)
	}
	// 0600: a recording holds parameter values.
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w.index++
	w.stats.Files++
	w.file, w.out, w.size = f, f, 0
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, 256<<10)
	} else {
		w.bw.Reset(f)
	}
	clear(w.seen)
	return nil
}

func (w *Writer) closeFile() error {
	if w.file == nil {
		return nil
	}
	err := w.bw.Flush()
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	w.file = nil
	return err
}

// Write appends one execution (preceded by a Connect the first time its
// connection is seen in the current file). After an error every call
// returns it.
func (w *Writer) Write(e *pgwire.Execution) error {
	if w.err != nil {
		return w.err
	}
	if e == nil || e.Conn == nil {
		return nil
	}
	if w.file != nil && w.size >= w.opts.MaxFileBytes {
		if err := w.rotate(); err != nil {
			w.err = err
			return err
		}
	}
	b := w.buf[:0]
	if _, ok := w.seen[e.Conn.ID]; !ok {
		if len(w.seen) >= maxConnectsRemembered {
			clear(w.seen)
		}
		w.seen[e.Conn.ID] = struct{}{}
		b = w.appendConnect(b, e)
	}
	b = w.appendExecution(b, e)
	w.buf = b[:0]
	if cap(w.buf) > 1<<20 {
		w.buf = nil
	}
	if cap(w.raw) > 1<<20 {
		w.raw = nil
	}
	n, err := w.bw.Write(b)
	w.size += int64(n)
	w.stats.Bytes += int64(n)
	if err != nil {
		w.err = err
		return err
	}
	w.stats.Executions++
	return nil
}

// Flush writes buffered lines to the file.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// Close flushes and closes the current file.
func (w *Writer) Close() error {
	if w.file == nil {
		if w.bw != nil && w.err == nil {
			return w.bw.Flush()
		}
		return w.err
	}
	err := w.closeFile()
	if w.err == nil {
		w.err = errors.New("recording: writer closed")
	}
	return err
}

// Stats returns the counters.
func (w *Writer) Stats() WriterStats { return w.stats }

// SessionID is the session_id written for connection id.
func (w *Writer) SessionID(id uint64) string {
	return w.prefix + "." + strconv.FormatUint(id, 16)
}

func (w *Writer) appendDetails(b []byte, typ string, ts time.Time, c *pgwire.ConnInfo) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","item":{"timestamp":`...)
	b = appendTime(b, ts)
	b = append(b, `,"session_id":"`...)
	b = append(b, w.prefix...)
	b = append(b, '.')
	b = strconv.AppendUint(b, c.ID, 16)
	b = append(b, '"')
	b = appendStr(b, "user", c.User)
	b = appendStr(b, "database", c.Database)
	b = appendInt(b, "conn_id", int64(c.ID))
	if c.ClientAddr != "" {
		b = appendStr(b, "client_addr", c.ClientAddr)
	}
	if c.ApplicationName != "" {
		b = appendStr(b, "application_name", c.ApplicationName)
	}
	return b
}

func (w *Writer) appendConnect(b []byte, e *pgwire.Execution) []byte {
	b = w.appendDetails(b, TypeConnect, e.Start, e.Conn)
	return append(b, "}}\n"...)
}

func (w *Writer) appendExecution(b []byte, e *pgwire.Execution) []byte {
	typ := TypeBoundExecute
	if e.Protocol == "simple" {
		typ = TypeStatement
		if e.StatementIndex > 0 {
			typ = TypeStatementResult
		}
	}
	b = w.appendDetails(b, typ, e.Start, e.Conn)
	b = appendStr(b, "query", e.SQL)
	if typ == TypeBoundExecute {
		b = appendParams(b, e)
	}
	b = appendInt(b, "duration_ns", int64(e.Duration()))
	if e.StatementIndex > 0 {
		b = appendInt(b, "statement_index", int64(e.StatementIndex))
	}
	if e.Prepared != "" {
		b = appendStr(b, "prepared", e.Prepared)
	}
	if e.ParamsHash != 0 {
		b = appendKey(b, "params_hash")
		b = append(b, '"')
		b = appendHex16(b, e.ParamsHash)
		b = append(b, '"')
	}
	if e.NumParams > 0 && e.Params == nil {
		b = appendInt(b, "num_params", int64(e.NumParams))
	}
	if e.ParamsTruncated {
		b = append(b, `,"params_truncated":true`...)
	}
	if e.Truncated {
		b = append(b, `,"sql_truncated":true`...)
	}
	if e.Command != "" {
		b = appendStr(b, "command", e.Command)
	}
	if e.Rows >= 0 {
		b = appendInt(b, "rows", e.Rows)
	}
	if e.SQLState != "" {
		b = appendStr(b, "sqlstate", e.SQLState)
	}
	if e.InTransaction {
		b = append(b, `,"in_tx":true`...)
	}
	if e.TxEnd {
		b = append(b, `,"tx_end":true`...)
	}
	return append(w.appendEvidence(b, e), "}}\n"...)
}

// appendEvidence writes the value evidence, when e has some: param_keys,
// and result_columns, result_keys and result_truncated. Each list of
// digests is one base64 string (standard alphabet, padded) of the digests
// as little-endian uint64s: about 11 bytes per digest where 16 hex digits
// in a JSON array take 19, and one decode per list.
func (w *Writer) appendEvidence(b []byte, e *pgwire.Execution) []byte {
	if len(e.ParamKeys) > 0 {
		b = appendKey(b, "param_keys")
		b = w.appendDigests(b, e.ParamKeys)
	}
	r := e.Result
	if r == nil {
		return b
	}
	b = appendKey(b, "result_columns")
	b = append(b, '[')
	for i, c := range r.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, c)
	}
	b = append(b, ']')
	b = appendKey(b, "result_keys")
	b = append(b, '[')
	for c := range r.Width() {
		if c > 0 {
			b = append(b, ',')
		}
		b = w.appendDigests(b, r.Column(c))
	}
	b = append(b, ']')
	if r.Truncated {
		b = append(b, `,"result_truncated":true`...)
	}
	return b
}

// appendDigests appends keys, sealed (valuekey.Seal: a digest leaves the
// process only sealed), as a JSON string: base64 of their little-endian
// bytes.
func (w *Writer) appendDigests(b []byte, keys []valuekey.Key) []byte {
	raw := w.raw[:0]
	for _, k := range keys {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(valuekey.Seal(k)))
	}
	w.raw = raw[:0]
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"')
}

func appendHex16(b []byte, v uint64) []byte {
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexDigits[(v>>uint(i))&0xf])
	}
	return b
}

// appendParams writes "parameters" (always, as pgreplay-go expects), and
// param_formats and param_hex when they say something.
func appendParams(b []byte, e *pgwire.Execution) []byte {
	b = appendKey(b, "parameters")
	b = append(b, '[')
	var hexIdx []int
	for i, v := range e.Params {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case v == nil:
			b = append(b, "null"...)
		case formatOf(e.ParamFormats, i) == 0 && utf8.Valid(v) && !hasNUL(v):
			b = appendString(b, v)
		default:
			b = appendHexValue(b, v)
			hexIdx = append(hexIdx, i)
		}
	}
	b = append(b, ']')
	if len(e.ParamFormats) > 0 {
		b = appendKey(b, "param_formats")
		b = appendInts(b, e.ParamFormats)
	}
	if len(hexIdx) > 0 {
		b = appendKey(b, "param_hex")
		b = appendInts(b, hexIdx)
	}
	return b
}

func appendInts[T int | int16](b []byte, vs []T) []byte {
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(v), 10)
	}
	return append(b, ']')
}

func hasNUL(v []byte) bool {
	for _, c := range v {
		if c == 0 {
			return true
		}
	}
	return false
}

// formatOf is the format code of parameter i given a Bind's format codes.
func formatOf(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return 0
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 0
}
