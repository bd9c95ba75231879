package pglog

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/pgwire"
)

func readAll(t testing.TB, format, in string, opts Options) ([]*pgwire.Execution, *Reader) {
	t.Helper()
	r, err := NewReader(format, strings.NewReader(in), opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []*pgwire.Execution
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, r
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

func dump(es []*pgwire.Execution) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "conn=%d %s/%s/%s/%s %s %q prep=%q cmd=%q state=%q params=%d start=%s end=%s tx=%v end=%v\n",
			e.Conn.ID, e.Conn.User, e.Conn.Database, e.Conn.ApplicationName, e.Conn.ClientAddr, e.Protocol, e.SQL, e.Prepared, e.Command,
			e.SQLState, e.NumParams, e.Start.Format("15:04:05.000000"), e.End.Format("15:04:05.000"), e.InTransaction, e.TxEnd)
	}
	return b.String()
}

// csvLine builds a csvlog record (PostgreSQL 15's 26 columns).
func csvLine(ts, user, db, session, tag, sev, state, msg, detail, query, app string) string {
	q := func(s string) string {
		if s == "" {
			return ""
		}
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return strings.Join([]string{ts + " UTC", q(user), q(db), "4711", q("127.0.0.1:51000"), session, "1", q(tag),
		"2026-03-14 15:09:00 UTC", "3/1", "0", sev, state, q(msg), q(detail), "", "", "", "", q(query), "", "", q(app),
		q("client backend"), "", "0"}, ",") + "\n"
}

const sessA, sessB = "6b05689d.52bc", "6b05689d.52bd"

var csvSample = csvLine("2026-03-14 15:09:26.000", "", "", sessA, "", "LOG", "00000", "connection received: host=127.0.0.1 port=51000", "", "", "") +
	csvLine("2026-03-14 15:09:26.001", "shop", "shopdb", sessA, "authentication", "LOG", "00000", "connection authorized: user=shop database=shopdb application_name=api", "", "", "api") +
	// The three-line form: parse, bind, execute.
	csvLine("2026-03-14 15:09:26.010", "shop", "shopdb", sessA, "PARSE", "LOG", "00000", "duration: 0.100 ms  parse stmt_1: SELECT name\nFROM users WHERE id = $1", "", "", "api") +
	csvLine("2026-03-14 15:09:26.011", "shop", "shopdb", sessA, "BIND", "LOG", "00000", "duration: 0.050 ms  bind stmt_1: SELECT name\nFROM users WHERE id = $1", "parameters: $1 = '1'", "", "api") +
	csvLine("2026-03-14 15:09:26.012", "shop", "shopdb", sessA, "SELECT", "LOG", "00000", "duration: 0.250 ms  execute stmt_1: SELECT name\nFROM users WHERE id = $1", "parameters: $1 = '1'", "", "api") +
	csvLine("2026-03-14 15:09:26.013", "shop", "shopdb", sessA, "SELECT", "LOG", "00000", "duration: 0.250 ms  execute stmt_1/C_1: SELECT name\nFROM users WHERE id = $1", "parameters: $1 = 'it''s', $2 = NULL", "", "api") +
	csvLine("2026-03-14 15:09:26.020", "shop", "shopdb", sessA, "BEGIN", "LOG", "00000", "duration: 0.010 ms  statement: begin", "", "", "api") +
	csvLine("2026-03-14 15:09:26.021", "shop", "shopdb", sessA, "SELECT", "ERROR", "42703", `column "nope" does not exist`, "", "SELECT nope", "api") +
	csvLine("2026-03-14 15:09:26.022", "shop", "shopdb", sessA, "ROLLBACK", "LOG", "00000", "duration: 0.010 ms  statement: rollback", "", "", "api") +
	// log_statement = all: the statement first, its duration after.
	csvLine("2026-03-14 15:09:27.000", "u2", "d2", sessB, "idle", "LOG", "00000", "statement: SELECT 1", "", "", "") +
	csvLine("2026-03-14 15:09:27.002", "u2", "d2", sessB, "SELECT", "LOG", "00000", "duration: 2.000 ms", "", "", "") +
	csvLine("2026-03-14 15:09:27.003", "u2", "d2", sessB, "idle", "LOG", "00000", "execute <unnamed>: SELECT $1", "parameters: $1 = '5'", "", "") +
	csvLine("2026-03-14 15:09:27.004", "u2", "d2", sessB, "idle", "LOG", "00000", "statement: SELECT broken", "", "", "") +
	csvLine("2026-03-14 15:09:27.005", "u2", "d2", sessB, "SELECT", "ERROR", "42601", "syntax error", "", "SELECT broken", "") +
	csvLine("2026-03-14 15:09:27.006", "u2", "d2", sessB, "idle", "LOG", "00000", "statement: SELECT 2", "", "", "") +
	csvLine("2026-03-14 15:09:28.000", "u2", "d2", sessB, "idle", "LOG", "00000", "disconnection: session time: 0:00:01.000 user=u2 database=d2 host=127.0.0.1 port=51000", "", "", "")

const wantSample = `conn=1 shop/shopdb/api/127.0.0.1 extended "SELECT name\nFROM users WHERE id = $1" prep="stmt_1" cmd="SELECT" state="" params=1 start=15:09:26.011750 end=15:09:26.012 tx=false end=false
conn=1 shop/shopdb/api/127.0.0.1 extended "SELECT name\nFROM users WHERE id = $1" prep="stmt_1" cmd="SELECT" state="" params=2 start=15:09:26.012750 end=15:09:26.013 tx=false end=false
conn=1 shop/shopdb/api/127.0.0.1 simple "begin" prep="" cmd="BEGIN" state="" params=0 start=15:09:26.019990 end=15:09:26.020 tx=true end=false
conn=1 shop/shopdb/api/127.0.0.1 simple "SELECT nope" prep="" cmd="" state="42703" params=0 start=15:09:26.021000 end=15:09:26.021 tx=true end=false
conn=1 shop/shopdb/api/127.0.0.1 simple "rollback" prep="" cmd="ROLLBACK" state="" params=0 start=15:09:26.021990 end=15:09:26.022 tx=true end=true
conn=2 u2/d2//127.0.0.1 simple "SELECT 1" prep="" cmd="" state="" params=0 start=15:09:27.000000 end=15:09:27.002 tx=false end=false
conn=2 u2/d2//127.0.0.1 extended "SELECT $1" prep="" cmd="" state="" params=1 start=15:09:27.003000 end=15:09:27.003 tx=false end=false
conn=2 u2/d2//127.0.0.1 simple "SELECT broken" prep="" cmd="" state="42601" params=0 start=15:09:27.004000 end=15:09:27.005 tx=false end=false
conn=2 u2/d2//127.0.0.1 simple "SELECT 2" prep="" cmd="" state="" params=0 start=15:09:27.006000 end=15:09:27.006 tx=false end=false
`

// jsonOf turns the csv sample into the equivalent jsonlog.
func jsonOf(t testing.TB, csv string) string {
	var b strings.Builder
	r := csvReader{br: bufioReader(csv), max: 1 << 20}
	for {
		f, err := r.read()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := strings.Cut(string(f[4]), ":")
		fmt.Fprintf(&b, `{"timestamp":%q,"user":%q,"dbname":%q,"pid":4711,"remote_host":%q,"remote_port":%s,"session_id":%q,"line_num":1,"ps":%q,"error_severity":%q,"state_code":%q,"message":%q,"detail":%q,"statement":%q,"application_name":%q,"backend_type":"client backend","query_id":0}`+"\n",
			f[0], f[1], f[2], host, port, f[5], f[7], f[11], f[12], f[13], f[14], f[19], f[22])
	}
}

func TestCSVAndJSON(t *testing.T) {
	for _, format := range []string{CSV, JSON} {
		t.Run(format, func(t *testing.T) {
			in := csvSample
			if format == JSON {
				in = jsonOf(t, csvSample)
			}
			got, r := readAll(t, format, in, Options{KeepParams: true})
			if d := dump(got); d != wantSample {
				t.Errorf("got:\n%s\nwant:\n%s", d, wantSample)
			}
			if st := r.Stats(); st.Skipped != 0 || st.Sessions != 2 {
				t.Errorf("stats %+v (%s)", st, r.problem)
			}
			if p := got[1].Params; len(p) != 2 || string(p[0]) != "it's" || p[1] != nil {
				t.Errorf("params %q", p)
			}
			if got[0].ParamsHash != pgwire.HashParams(nil, [][]byte{[]byte("1")}) || got[0].Rows != -1 {
				t.Errorf("hash %x rows %d", got[0].ParamsHash, got[0].Rows)
			}
		})
	}
}

func TestBadRecords(t *testing.T) {
	in := "garbage,line\n" + csvLine("not a time", "u", "d", sessA, "", "LOG", "00000", "statement: SELECT 1", "", "", "") +
		csvLine("2026-03-14 15:09:26.000", "u", "d", sessA, "", "LOG", "00000", "statement: SELECT "+strings.Repeat("x", 3000), "", "", "") +
		csvLine("2026-03-14 15:09:26.001", "u", "d", sessA, "SELECT", "LOG", "00000", "duration: 1.000 ms  statement: SELECT 1", "", "", "")
	got, r := readAll(t, CSV, in, Options{MaxRecordBytes: 1000})
	if len(got) != 1 || got[0].SQL != "SELECT 1" || r.Stats().Skipped != 3 {
		t.Errorf("got %s stats %+v", dump(got), r.Stats())
	}
	if n := strings.Join(r.Notes(), " "); !strings.Contains(n, "3 of 4 records skipped") {
		t.Errorf("notes %q", r.Notes())
	}
}

func TestTimestamps(t *testing.T) {
	var c tsCache
	for _, tc := range []struct{ in, want string }{
		{"2026-03-14 15:09:26.123 UTC", "2026-03-14T15:09:26.123Z"},
		{"2026-03-14 15:09:26.124 UTC", "2026-03-14T15:09:26.124Z"},
		{"2026-03-14 17:09:26.123 +02", "2026-03-14T15:09:26.123Z"},
		{"2026-03-14 20:39:26 +0530", "2026-03-14T15:09:26Z"},
		{"2026-03-14 15:09:26.5 CET", "2026-03-14T15:09:26.5Z"},
	} {
		got, ok := c.parse([]byte(tc.in))
		if !ok || got.UTC().Format("2006-01-02T15:04:05.999Z") != tc.want {
			t.Errorf("%s: got %v %v, want %s", tc.in, got.UTC(), ok, tc.want)
		}
	}
	if _, ok := c.parse([]byte("yesterday")); ok {
		t.Error("parsed yesterday")
	}
}

// Past MaxSessions the session that appeared first is forgotten (counted),
// even when it was used since: its pending statement is emitted then, and
// its next line starts a new session.
func TestSessionBound(t *testing.T) {
	line := func(ms int, session, msg string) string {
		return csvLine(fmt.Sprintf("2026-03-14 15:09:26.%03d", ms), "u", "d", session, "", "LOG", "00000", msg, "", "", "")
	}
	in := line(1, "s.1", "statement: SELECT 1") +
		line(2, "s.2", "statement: SELECT 2") +
		line(3, "s.1", "duration: 1.000 ms") + // s.1 is used again
		line(4, "s.1", "statement: SELECT 11") +
		line(5, "s.3", "statement: SELECT 3") + // forgets s.1, the first to appear
		line(6, "s.1", "statement: SELECT 12")
	got, r := readAll(t, CSV, in, Options{MaxSessions: 2})
	var seq []string
	for _, e := range got {
		seq = append(seq, fmt.Sprintf("%d:%s", e.Conn.ID, e.SQL))
	}
	want := "1:SELECT 1 1:SELECT 11 2:SELECT 2 3:SELECT 3 4:SELECT 12"
	if s := strings.Join(seq, " "); s != want {
		t.Errorf("got  %s\nwant %s", s, want)
	}
	if st := r.Stats(); st.Sessions != 4 || st.Forgotten != 2 {
		t.Errorf("stats %+v; want 4 sessions, 2 forgotten", st)
	}
	if n := strings.Join(r.Notes(), " "); !strings.Contains(n, "2 sessions forgotten at the bound of 2") {
		t.Errorf("notes %q", r.Notes())
	}
}
