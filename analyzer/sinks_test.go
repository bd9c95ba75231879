package analyzer

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/pgwire"
)

// evil holds what a client can put in its identifiers, application_name,
// user, database and sqlcommenter tags to drive the operator's terminal: an
// OSC that retitles it, a clear screen, a bell, a carriage return that
// overwrites the line, C1 CSI (U+009B) and a lone C1 byte, DEL, bytes that
// are not UTF-8, and a bidi override that reorders the line.
const evil = "a\x1b]0;pwned\x07b\x1b[2Jc\rd\u009b31me\x9bf\x7fg\xff\xfeh\u202ei"

// rawControl returns the first thing in out that Printable escapes (a
// newline, which ends the lines, excepted), and its byte offset; ok is
// false when there is none.
func rawControl(out string) (what string, at int, ok bool) {
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		if r != '\n' && escapedRune(r, n) {
			return fmt.Sprintf("%q", out[i:i+n]), i, true
		}
		i += n
	}
	return "", 0, false
}

func assertNoRawControl(t *testing.T, where, out string) {
	t.Helper()
	if what, at, ok := rawControl(out); ok {
		t.Errorf("%s: raw %s at byte %d reaches the terminal:\n%q", where, what, at, out)
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"SELECT * FROM users WHERE id = $1", "SELECT * FROM users WHERE id = $1"},
		// Letters of any script, symbols, U+00A0 and up, and U+FFFD as text stay.
		{"пользователи, 注文, مستخدم, Ñandú, naïve\u00a0café ✓ \ufffd", "пользователи, 注文, مستخدم, Ñandú, naïve\u00a0café ✓ \ufffd"},
		{"a\\x1b", "a\\x1b"}, // a backslash stays
		{"\x1b]0;title\x07", `\x1b]0;title\x07`},
		{"\x1b[2J", `\x1b[2J`},
		{"x\ry\nz\t", `x\x0dy\x0az\x09`},
		{"\x00\x7f", `\x00\x7f`},
		{"\u009b31m", `\u009b31m`},                   // C1 CSI, as UTF-8
		{"\u0085\u0080\u009f", `\u0085\u0080\u009f`}, // the C1 range, ends included
		{"\x9b31m", `\x9b31m`},                       // a lone C1 byte: not UTF-8
		{"\xff\xfe", `\xff\xfe`},
		{"\xe6\x97", `\xe6\x97`},                 // a cut sequence
		{"ab\u202ecd\u2066", `ab\u202ecd\u2066`}, // bidi override, isolate
		{"日本\x1b語", `日本\x1b語`},
	} {
		got := Printable(tc.in)
		if got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		assertNoRawControl(t, fmt.Sprintf("Printable(%q)", tc.in), got)
	}
	if s := "plain text"; Printable(s) != s || testing.AllocsPerRun(10, func() { Printable(s) }) != 0 {
		t.Error("a text with nothing to escape is copied")
	}
}

func TestOneLineCutsOnACharacterBoundary(t *testing.T) {
	got := oneLine(strings.Repeat("é", 200)) // 400 bytes
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "...") || len(got) > 300 {
		t.Errorf("oneLine cut %q", got)
	}
}

// Every client-controlled field of a finding block is escaped: what the
// detector copied from the traffic (query, source query, user, database,
// application_name, trace id, route, controller and action tags, the source
// column) and what it built from it (the suggestion names tables and
// columns).
func TestConsoleEscapesClientText(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out, func(string) string { return "" })
	base := detector.Finding{
		Kind: detector.KindNPlusOne, Severity: detector.SeverityWarning, Fingerprint: "0123456789abcdef",
		Query: "SELECT * FROM \"" + evil + "\" WHERE id = $1", Count: 6, DistinctParams: 6,
		ApplicationName: "app" + evil,
		Connection:      detector.Connection{ID: 3, User: "user" + evil, Database: "db" + evil, ApplicationName: "app" + evil},
		TraceID:         "trace" + evil,
		Tags:            map[string]string{"route": "/route" + evil},
		Location:        &detector.Location{Route: "/route" + evil},
		Source:          &detector.Source{Fingerprint: "fedcba9876543210", Query: "SELECT id FROM \"" + evil + "\"", Rows: 6},
		Evidence:        &detector.Evidence{Kind: detector.EvidenceDataFlow, SourceColumn: "col" + evil, Param: 1, Matched: 6, Of: 6},
		Suggestion:      "JOIN \"" + evil + "\" on " + evil,
		Occurrences:     1,
	}
	c.Finding(&base)
	ctl := base
	ctl.Tags = map[string]string{"controller": "ctl" + evil, "action": "act" + evil}
	ctl.Location = &detector.Location{Controller: "ctl" + evil, Action: "act" + evil}
	ctl.Evidence = &detector.Evidence{Kind: "kind" + evil}
	c.Finding(&ctl)
	odd := base
	odd.Kind, odd.Severity = detector.Kind("kind"+evil), detector.Severity("sev"+evil)
	c.Finding(&odd)

	got := out.String()
	assertNoRawControl(t, "console", got)
	for _, want := range []string{
		`user usera\x1b]0;pwned\x07b\x1b[2Jc\x0dd\u009b31me\x9bf\x7fg\xff\xfeh\u202ei, database dba\x1b]0;pwned`,
		`application appa\x1b]0;pwned`, `trace tracea\x1b]0;pwned`, `route /routea\x1b]0;pwned`,
		`controller ctla\x1b]0;pwned`, `#acta\x1b]0;pwned`, `column cola\x1b]0;pwned`, `proof:  kinda\x1b]0;pwned`,
		`query:  SELECT * FROM "a\x1b]0;pwned`, `source: SELECT id FROM "a\x1b]0;pwned`, `fix:    JOIN "a\x1b]0;pwned`,
		`nplus1: kinda\x1b]0;pwned`, `[seva\x1b]0;pwned`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("console lacks %q:\n%s", want, got)
		}
	}
}

// Through the real analyzer: identifiers and application_name with control
// bytes, an N+1 on them, and the console block the detector's finding
// makes.
func TestConsoleEscapesThroughTheAnalyzer(t *testing.T) {
	var out bytes.Buffer
	a := New(Config{Sinks: []Sink{NewConsole(&out, func(string) string { return "" })}})
	conn := &pgwire.ConnInfo{ID: 7, User: "u\x1b[2J", Database: "d\u009b2J", ApplicationName: "api\x1b]0;pwned\x07\xff"}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := start
	exec := func(sql string, rows int64) {
		a.Process(&pgwire.Execution{Conn: conn, Start: at, End: at.Add(time.Millisecond), SQL: sql, Protocol: "simple", Command: "SELECT", Rows: rows})
		at = at.Add(2 * time.Millisecond)
	}
	comment := " /*route='%2Forders%1B%5D0%3Bpwned%07'*/"
	exec(`SELECT "id`+"\x1b[2J"+`", user_id FROM "orders`+"\x1b]0;x\x07"+`" WHERE status = 'open'`+comment, 8)
	for i := range 8 {
		exec(fmt.Sprintf(`SELECT name FROM "users`+"\u009b31m\r"+`" WHERE "id`+"\x07"+`" = %d`, 1000+i)+comment, 1)
	}
	a.Advance(start.Add(10 * time.Second))
	got := out.String()
	if !strings.Contains(got, "N+1 query") {
		t.Fatalf("no N+1 block:\n%s", got)
	}
	assertNoRawControl(t, "console", got)
	for _, want := range []string{`users\u009b31m\x0d`, `orders\x1b]0;x\x07`, `application api\x1b]0;pwned\x07\xff`,
		`user u\x1b[2J`, `database d\u009b2J`, `route /orders\x1b]0;pwned\x07`} {
		if !strings.Contains(got, want) {
			t.Errorf("console lacks %q:\n%s", want, got)
		}
	}
}
