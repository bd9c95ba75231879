package analyzer

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// The analyzer converts the execution's setting to the fingerprint's by
// value: the two types must keep the same values.
func TestStandardStringsValues(t *testing.T) {
	for _, c := range []struct {
		wire pgwire.StandardStrings
		fp   fingerprint.Strings
	}{
		{pgwire.StandardStringsUnknown, fingerprint.StringsUnknown},
		{pgwire.StandardStringsOn, fingerprint.StringsStandard},
		{pgwire.StandardStringsOff, fingerprint.StringsEscape},
	} {
		if fingerprint.Strings(c.wire) != c.fp {
			t.Errorf("pgwire %v is fingerprint %d, want %d", c.wire, fingerprint.Strings(c.wire), c.fp)
		}
	}
}

// TestProcessReadsStringsAsTheSessionDid: a loop over a query whose string
// constant holds a backslash-escaped quote, from a session with
// standard_conforming_strings off, and the same with the setting unknown.
// Read with the setting on, the text inside the constant would stand in
// the normalized query of the findings; it must appear in no finding.
func TestProcessReadsStringsAsTheSessionDid(t *testing.T) {
	for _, strs := range []pgwire.StandardStrings{pgwire.StandardStringsOff, pgwire.StandardStringsUnknown} {
		store := NewStore(10)
		var jsonl, console bytes.Buffer
		a := New(Config{Sinks: []Sink{store, NewJSONL(&jsonl), NewConsole(&console, func(string) string { return "" })}})
		conn := &pgwire.ConnInfo{ID: 7, User: "app", Database: "shop", ApplicationName: "api"}
		start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		at := start
		next := func(sql string, rows int64) {
			a.Process(&pgwire.Execution{Conn: conn, Start: at, End: at.Add(time.Millisecond), SQL: sql,
				StandardStrings: strs, Protocol: "simple", Command: "SELECT", Rows: rows})
			at = at.Add(2 * time.Millisecond)
		}
		next("SELECT id FROM orders WHERE status = 'open'", 8)
		for i := range 8 {
			next(fmt.Sprintf(`SELECT name FROM users WHERE code = 'u%d\' OR SECRETLEAK = ''' --'`, i), 1)
		}
		a.Advance(start.Add(10 * time.Second))
		got := store.List(detector.KindNPlusOne, time.Time{})
		if len(got) != 1 || got[0].Query != "SELECT name FROM users WHERE code = $1" {
			t.Fatalf("%v: want one N+1 on the lookup, got %+v", strs, store.List("", time.Time{}))
		}
		for name, out := range map[string]string{"jsonl": jsonl.String(), "console": console.String()} {
			if strings.Contains(strings.ToLower(out), "secretleak") {
				t.Errorf("%v: %s holds the literal:\n%s", strs, name, out)
			}
		}
	}
}
