package replay

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/pglog"
)

// logRecord is one csvlog record (PostgreSQL 15's 26 columns) of session
// s: a statement logged with its duration.
func logRecord(ms int, s, sql string) string {
	q := func(v string) string { return `"` + strings.ReplaceAll(v, `"`, `""`) + `"` }
	ts := fmt.Sprintf("2026-03-14 15:09:26.%03d UTC", ms)
	return strings.Join([]string{ts, q("shop"), q("shopdb"), "4711", q("127.0.0.1:51000"), s, "1", q("SELECT"),
		"2026-03-14 15:09:00 UTC", "3/1", "0", "LOG", "00000", q("duration: 0.100 ms  statement: " + sql), "", "", "", "", "",
		"", "", "", q("api"), q("client backend"), "", "0"}, ",") + "\n"
}

// TestReplayServerLogHoldsNoLiteral replays a server log of a session that
// ran with standard_conforming_strings off: the log does not say so, the
// executions' setting is unknown, and neither the findings nor the report's
// summary of query shapes may hold the text inside the string constants.
func TestReplayServerLogHoldsNoLiteral(t *testing.T) {
	var log strings.Builder
	ms := 0
	next := func(sql string) {
		log.WriteString(logRecord(ms, "6b05689d.52bc", sql))
		ms += 2
	}
	next("SELECT code FROM accounts ORDER BY code")
	for i := range 8 {
		next(fmt.Sprintf(`SELECT owner FROM accounts WHERE code = 'acct-%d\' OR SECRETLEAK = ''' --'`, i))
	}
	r, err := pglog.NewReader(pglog.CSV, strings.NewReader(log.String()), pglog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var execs []*pgwire.Execution
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		if e.StandardStrings != pgwire.StandardStringsUnknown {
			t.Fatalf("a server log gives the setting %v", e.StandardStrings)
		}
		execs = append(execs, e)
	}
	if len(execs) != 9 {
		t.Fatalf("%d executions from the log", len(execs))
	}
	rep, jsonl := run(t, execs)
	var text, js bytes.Buffer
	if err := WriteText(&text, rep, 10); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(jsonl, `"query":"SELECT owner FROM accounts WHERE code = $1"`) {
		t.Errorf("want the N+1 with its constant masked, got %s", jsonl)
	}
	for name, out := range map[string]string{"findings": jsonl, "text": text.String(), "json": js.String()} {
		if i := strings.Index(strings.ToLower(out), "secretleak"); i >= 0 {
			t.Errorf("%s holds a planted literal: %s", name, out[max(0, i-200):min(len(out), i+100)])
		}
	}
}

// TestReexecReadOnlyEither: a text that is one string constant with the
// setting on and a write with it off is not read-only.
func TestReexecReadOnlyEither(t *testing.T) {
	fp := fingerprint.New(fingerprint.Options{})
	for sql, want := range map[string]bool{
		`SELECT 'x\''; DELETE FROM t; --'`: false, // on: one constant; off: a DELETE
		`SELECT 'x\'; DELETE FROM t; --'`:  false, // on: a DELETE; off: one constant
		`SELECT a FROM t WHERE b = 'c\d'`:  true,
		"SELECT a FROM t WHERE b = 'c'":    true,
	} {
		if got := readOnlyEither(fp, sql); got != want {
			t.Errorf("readOnlyEither(%q) = %v, want %v", sql, got, want)
		}
	}
	if !ReadOnly(fp.OfStrings(`SELECT 'x\''; DELETE FROM t; --'`, fingerprint.StringsStandard)) {
		t.Error("the first text is not read-only with the setting on: the test tests nothing")
	}
}
