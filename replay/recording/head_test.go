package recording

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/pgwire"
)

// readHeads reads every execution of in, with the heads taken from the
// sessions (the default) or read on every line (noHeads).
func readHeads(t testing.TB, in []byte, noHeads bool) ([]*pgwire.Execution, ReaderStats, int64) {
	t.Helper()
	r := NewReader(bytes.NewReader(in), ReaderOptions{KeepParams: true, Evidence: true})
	r.noHeads = noHeads
	var es []*pgwire.Execution
	for {
		e, err := r.Next()
		if err == io.EOF {
			return es, r.Stats(), r.taken
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		es = append(es, e)
	}
}

// sameReading fails unless in reads the same with heads taken and read; it
// returns the executions read and the heads taken.
func sameReading(t testing.TB, in []byte) (int, int64) {
	t.Helper()
	fast, fs, taken := readHeads(t, in, false)
	slow, ss, none := readHeads(t, in, true)
	if none != 0 {
		t.Fatalf("%d heads taken with noHeads", none)
	}
	if fs != ss {
		t.Fatalf("stats: heads taken %+v, read %+v", fs, ss)
	}
	if len(fast) != len(slow) {
		t.Fatalf("%d executions with heads taken, %d read", len(fast), len(slow))
	}
	for i := range fast {
		if !reflect.DeepEqual(fast[i], slow[i]) {
			t.Fatalf("execution %d: heads taken %+v (conn %+v), read %+v (conn %+v)", i, fast[i], *fast[i].Conn, slow[i], *slow[i].Conn)
		}
	}
	return len(fast), taken
}

// TestHeadTakenReadsTheSame: an item whose head (the members after its
// session_id) repeats its session's last one takes its values; everything
// read must be what reading the head gives, whatever changes between the
// items of a session, and whatever order or form the members take.
func TestHeadTakenReadsTheSame(t *testing.T) {
	rec := evidenceRecording()
	line := func(sess, head, rest string) string {
		return `{"type":"Statement","item":{"timestamp":"2026-03-14T15:00:00.5Z","session_id":` + sess + head + rest + "}}\n"
	}
	const q = `,"query":"SELECT 1","command":"SELECT","rows":1`
	a := `,"user":"shop","database":"shop","conn_id":1,"client_addr":"127.0.0.1","application_name":"web"`
	lines := []string{
		line(`"a.1"`, a, q),
		line(`"b.2"`, `,"user":"shop","database":"shop","conn_id":2,"client_addr":"127.0.0.2","application_name":"web"`, q),
		line(`"a.1"`, a, q), // taken
		line(`"a.1"`, strings.Replace(a, `"web"`, `"worker"`, 1), q), // the application changes
		line(`"a.1"`, a, q), // and back
		line(`"a.1"`, `,"database":"shop","user":"shop","conn_id":1,"client_addr":"127.0.0.1","application_name":"web"`, q), // reordered
		line(`"a.1"`, `,"user":"sh\"op","database":"shop","conn_id":1,"client_addr":"127.0.0.1","application_name":"w\u00e9b"`, q),
		line(`"a.1"`, `,"user":"sh\"op","database":"shop","conn_id":1,"client_addr":"127.0.0.1","application_name":"w\u00e9b"`, q), // escaped, taken
		line(`"a.1"`, `,"user":null,"database":"shop","conn_id":1,"client_addr":"","application_name":"web"`, q),
		line(`"a.1"`, `,"user":"shop","database":"shop","query":"SELECT 2","conn_id":1,"client_addr":"127.0.0.1","application_name":"web"`, ``), // not a head: a member between
		line(`"a.1"`, `,"user":"shop","database":"shop","conn_id":1,"client_addr":"127.0.0.1"`, q),                                              // short of one member
		line(`"a.1"`, a+`,"user":"other"`, q), // a member repeated after the head
		line(`"a.1"`, a+`}`, ``)[:0] + `{"type":"Disconnect","item":{"timestamp":"2026-03-14T15:00:01Z","session_id":"a.1"` + a + "}}\n",
		line(`"a.1"`, a, q), // the session again, after its Disconnect
		`{"type":"Connect","item":{"timestamp":"2026-03-14T15:00:02Z","session_id":"b.2"` + strings.Replace(a, `"conn_id":1`, `"conn_id":2`, 1) + "}}\n",
		line(`"b.2"`, strings.Replace(a, `"conn_id":1`, `"conn_id":2`, 1), q),
		line(`7`, a, q), // a numeric session_id
		line(`7`, a, q),
		line(`"a.1"`, strings.Replace(a, `,"user"`, `, "user"`, 1), q), // blanks
	}
	in := append(rec, strings.Join(lines, "")...)
	if n, taken := sameReading(t, in); n < len(lines)-3 || taken < 5 {
		t.Fatalf("read %d executions (want at least %d), %d heads taken (want at least 5)", n, len(lines)-3, taken)
	}
	// And the workload the replay benchmark reads: 50 sessions interleaved.
	var big strings.Builder
	for i := range 500 {
		id := i % 50
		fmt.Fprintf(&big, `{"type":"BoundExecute","item":{"timestamp":"2026-03-14T15:00:00.%06dZ","session_id":"s.%d","user":"shop","database":"shop","conn_id":%d,"client_addr":"127.0.0.1","application_name":"bench","query":"SELECT name FROM users WHERE id = $1","parameters":["%d"],"duration_ns":80000,"prepared":"s1","command":"SELECT","rows":1}}`+"\n", i, id, id+1, i)
	}
	if n, taken := sameReading(t, []byte(big.String())); n != 500 || taken != 450 {
		t.Fatalf("read %d of 500, %d heads taken (want 450: all but each session's first)", n, taken)
	}
}
