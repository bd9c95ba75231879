package recording

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 123456789, time.UTC)

func sampleExecutions() []*pgwire.Execution {
	c1 := &pgwire.ConnInfo{ID: 1, ClientAddr: "10.0.0.1", User: "shop", Database: "shopdb", ApplicationName: "api"}
	c2 := &pgwire.ConnInfo{ID: 2, User: "u\"ser", Database: "d"}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	bin := []byte{0, 0, 0, 0, 0, 0, 0, 7}
	params := [][]byte{[]byte("open"), bin, nil, {}, []byte("caf\xe9"), []byte("ünï\n\"q\"")}
	return []*pgwire.Execution{
		{Conn: c1, Start: at(0), End: at(1), SQL: "SELECT id, user_id FROM orders WHERE status = $1 LIMIT $2", Protocol: "extended",
			Params: [][]byte{[]byte("open"), []byte("20")}, ParamsHash: pgwire.HashParams(nil, [][]byte{[]byte("open"), []byte("20")}), NumParams: 2,
			Command: "SELECT", Rows: 20},
		{Conn: c1, Start: at(2), End: at(3), SQL: "SELECT $1::text, $2::int8, $3::text, $4::text, $5::bytea, $6::text", Protocol: "extended", Prepared: "stmtcache_1",
			Params: params, ParamFormats: []int16{0, 1, 0, 0, 0, 0}, ParamsHash: pgwire.HashParams([]int16{0, 1, 0, 0, 0, 0}, params), NumParams: 6,
			Command: "SELECT", Rows: 1, InTransaction: true},
		{Conn: c2, Start: at(4), End: at(5), SQL: "BEGIN; SELECT 1;\nCOMMIT", Protocol: "simple", Command: "BEGIN", Rows: -1, InTransaction: true},
		{Conn: c2, Start: at(5), End: at(6), SQL: "BEGIN; SELECT 1;\nCOMMIT", StatementIndex: 1, Protocol: "simple", Command: "SELECT", Rows: 1, InTransaction: true},
		{Conn: c2, Start: at(6), End: at(7), SQL: "BEGIN; SELECT 1;\nCOMMIT", StatementIndex: 2, Protocol: "simple", Command: "COMMIT", Rows: -1, InTransaction: true, TxEnd: true},
		{Conn: c1, Start: at(8), End: at(9), SQL: "SELECT broken", Protocol: "simple", Rows: -1, SQLState: "42703", Truncated: true},
		{Conn: c1, Start: at(10), End: at(12), SQL: "SELECT big($1)", Protocol: "extended", NumParams: 1, ParamsHash: 42, ParamsTruncated: true, Command: "SELECT", Rows: 0},
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{Now: func() time.Time { return t0 }})
	want := sampleExecutions()
	for _, e := range want {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Every line is valid JSON in pgreplay-go's envelope.
	for i, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var env struct {
			Type string `json:"type"`
			Item struct {
				Timestamp time.Time `json:"timestamp"`
				SessionID string    `json:"session_id"`
				User      string    `json:"user"`
				Database  string    `json:"database"`
				Query     *string   `json:"query"`
				Params    []any     `json:"parameters"`
			} `json:"item"`
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		if env.Item.SessionID == "" || env.Item.Timestamp.IsZero() || env.Item.User == "" {
			t.Errorf("line %d lacks pgreplay-go's fields: %s", i+1, line)
		}
		if env.Type == TypeBoundExecute && env.Item.Params == nil {
			t.Errorf("line %d: BoundExecute without parameters: %s", i+1, line)
		}
	}
	for _, keep := range []bool{false, true} {
		r := NewReader(bytes.NewReader(buf.Bytes()), ReaderOptions{KeepParams: keep})
		var got []*pgwire.Execution
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e)
		}
		if st := r.Stats(); st.Skipped != 0 || st.Executions != int64(len(want)) {
			t.Fatalf("stats %+v (%s)", st, r.FirstProblem())
		}
		for i := range want {
			w := *want[i]
			if !keep {
				w.Params, w.ParamFormats = nil, nil
			}
			g := *got[i]
			if !reflect.DeepEqual(*g.Conn, *w.Conn) {
				t.Errorf("#%d conn: got %+v, want %+v", i, *g.Conn, *w.Conn)
			}
			g.Conn, w.Conn = nil, nil
			if !reflect.DeepEqual(g, w) {
				t.Errorf("#%d (keep %v):\n got  %+v\n want %+v", i, keep, g, w)
			}
		}
		if got[0].Conn != got[1].Conn {
			t.Errorf("executions of one connection do not share its ConnInfo")
		}
	}
}

// pgreplay-go's own files (from its log parser) read as executions.
func TestReadPgreplayFile(t *testing.T) {
	in := `{"type":"Connect","item":{"timestamp":"2019-02-25T15:08:27.233Z","session_id":"5c7404eb.d6bd","user":"alice","database":"app"}}
{"type":"BoundExecute","item":{"timestamp":"2019-02-25T15:08:27.24Z","session_id":"5c7404eb.d6bd","user":"alice","database":"app","query":"select $1","parameters":["bob",null]}}
{"type":"Statement","item":{"timestamp":"2019-02-25T15:08:27.239Z","session_id":"5c7404eb.d6bd","user":"alice","database":"app","query":"insert into logs values ('x');"}}
{"type":"Disconnect","item":{"timestamp":"2019-02-25T15:08:27.241Z","session_id":"5c7404eb.d6bd","user":"alice","database":"app"}}
not json
`
	r := NewReader(strings.NewReader(in), ReaderOptions{KeepParams: true})
	var got []*pgwire.Execution
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != 2 || r.Stats().Skipped != 1 {
		t.Fatalf("got %d executions, stats %+v; want 2 and 1 skipped", len(got), r.Stats())
	}
	b := got[0]
	if b.Protocol != "extended" || b.SQL != "select $1" || b.NumParams != 2 || string(b.Params[0]) != "bob" || b.Params[1] != nil ||
		b.ParamsHash != pgwire.HashParams(nil, [][]byte{[]byte("bob"), nil}) || b.Conn.User != "alice" || b.Conn.ID != 1 || b.Rows != -1 {
		t.Errorf("BoundExecute: got %+v", b)
	}
	if s := got[1]; s.Protocol != "simple" || s.Conn != b.Conn || !s.End.Equal(s.Start) {
		t.Errorf("Statement: got %+v", s)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, WriterOptions{MaxFileBytes: 600, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	want := sampleExecutions()
	for range 10 {
		for _, e := range want {
			if err := w.Write(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(files) < 5 || w.Stats().Files != len(files) {
		t.Fatalf("got %d files (stats %+v), want several", len(files), w.Stats())
	}
	st, _ := os.Stat(files[0])
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600 (recordings hold parameter values)", st.Mode().Perm())
	}
	if !strings.HasPrefix(filepath.Base(files[0]), "nplus1-20260314T150926Z-0001") {
		t.Errorf("file name %s", files[0])
	}
	r, err := Open(files, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var size int64
	for _, f := range files {
		st, _ := os.Stat(f)
		size += st.Size()
	}
	n := 0
	var ids []uint64
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.Conn.ID)
		n++
	}
	if st := r.Stats(); n != 10*len(want) || st.Skipped != 0 || st.Bytes != size || r.BytesRead() != size {
		t.Fatalf("read %d executions (stats %+v), want %d and %d bytes", n, st, 10*len(want), size)
	}
	for i, id := range ids {
		if id != want[i%len(want)].Conn.ID {
			t.Fatalf("#%d: conn id %d, want %d", i, id, want[i%len(want)].Conn.ID)
		}
	}

	// A file name: NAME, then NAME.0001, ...
	name := filepath.Join(t.TempDir(), "rec.jsonl")
	w, err = Create(name, WriterOptions{MaxFileBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range want {
		w.Write(e)
	}
	w.Close()
	if _, err := os.Stat(name + ".0001"); err != nil {
		t.Errorf("no rotated file: %v", err)
	}
}

// Past maxSessions the least recently used session is forgotten: a session
// still in use keeps its connection id; a forgotten one gets a new id when
// it comes back (items without conn_id, as pgreplay-go writes them).
func TestSessionBound(t *testing.T) {
	var b strings.Builder
	item := func(session int) {
		fmt.Fprintf(&b, `{"type":"Statement","item":{"timestamp":"2019-02-25T15:08:27Z","session_id":"s%d","user":"u","database":"d","query":"SELECT 1"}}`+"\n", session)
	}
	for i := range maxSessions {
		item(i)
	}
	item(0)           // session 0 is used again: session 1 is now the least recently used
	item(maxSessions) // one too many: forgets session 1
	item(0)
	item(1)
	r := NewReader(strings.NewReader(b.String()), ReaderOptions{})
	var ids []uint64
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.Conn.ID)
	}
	if n := len(ids); n != maxSessions+4 || ids[n-3] != maxSessions+1 || ids[n-2] != 1 || ids[n-1] != maxSessions+2 {
		t.Fatalf("%d executions, last ids %v; want %d, then %d, 1 (kept), %d (session 1 forgotten)", n, ids[n-4:], maxSessions+4, maxSessions+1, maxSessions+2)
	}
	if r.sessions.Len() != maxSessions {
		t.Errorf("%d sessions remembered, want %d", r.sessions.Len(), maxSessions)
	}
}

func TestLongLineSkipped(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{})
	e := sampleExecutions()[0]
	w.Write(e)
	big := *e
	big.SQL = strings.Repeat("x", 5000)
	w.Write(&big)
	w.Write(e)
	w.Close()
	r := NewReader(&buf, ReaderOptions{MaxLineBytes: 1000})
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		n++
	}
	if n != 2 || r.Stats().Skipped != 1 {
		t.Errorf("got %d executions, stats %+v; want 2, 1 skipped", n, r.Stats())
	}
}

func TestParseTime(t *testing.T) {
	for _, s := range []string{"2026-03-14T15:09:26.123456789Z", "2019-02-25T15:08:27.24Z", "2019-02-25T15:08:27Z", "1969-12-31T23:59:59.5Z", "2026-03-14T15:09:26.1+02:00", "2400-02-29T00:00:00Z"} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseTime([]byte(s))
		if !ok || !got.Equal(want) {
			t.Errorf("%s: got %v %v, want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "2026-13-14T15:09:26Z", "2026-03-14T15:09:26.Z", "yesterday"} {
		if _, ok := parseTime([]byte(s)); ok {
			t.Errorf("%q parsed", s)
		}
	}
}
