package pgwire

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func scs(v string) *pgproto3.ParameterStatus {
	return &pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: v}
}

// strsOf runs script on a tracker told start as the startup's setting
// (none when unknown) and returns each execution as "SQL: setting".
func strsOf(t *testing.T, start StandardStrings, script []trStep, split chunker) []string {
	t.Helper()
	var got []string
	tr := NewTracker(&ConnInfo{ID: 1}, func(e *Execution) { got = append(got, e.SQL+": "+e.StandardStrings.String()) }, TrackerOptions{})
	if start != StandardStringsUnknown {
		tr.StartStandardStrings(start)
	}
	for i, s := range script {
		for _, c := range split(s.bytes(t)) {
			var err error
			if s.backend {
				err = tr.Backend(c, trAt(i))
			} else {
				err = tr.Frontend(c, trAt(i))
			}
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
	}
	tr.Close()
	return got
}

// TestTrackerStandardStrings follows standard_conforming_strings from
// ParameterStatus, at startup and when a SET changes it mid-connection, and
// checks which setting each execution's text was read with.
func TestTrackerStandardStrings(t *testing.T) {
	set := func(v string) string { return "SET standard_conforming_strings = " + v }
	script := []trStep{
		// 0: nothing reported yet (a proxy that did not see the startup).
		fe(query("SELECT 1")),
		be(rowDesc(), dataRow("1"), cc("SELECT 1"), rfq('I')),
		// 2: SET in a simple query: reported before its ReadyForQuery. The
		// SET itself is marked unknown: its group changed the setting.
		fe(query(set("off"))),
		be(cc("SET"), scs("off"), rfq('I')),
		// 4: from now on, off.
		fe(query(`SELECT 'a\'b'`)),
		be(rowDesc(), dataRow("1"), cc("SELECT 1"), rfq('I')),
		// 6: a named statement prepared with the setting off.
		fe(parse("s1", `SELECT 'x\''`), sync_),
		be(parseComplete, rfq('I')),
		// 8: one pipeline: SET on, then a Parse after it (PostgreSQL 14+
		// reports the change only before the ReadyForQuery).
		fe(parse("", set("on")), bind("", ""), execute("", 0),
			parse("s2", "SELECT 'after'"), bind("", "s2"), execute("", 0), sync_),
		be(parseComplete, bindComplete, cc("SET"), parseComplete, bindComplete, rowDesc(), dataRow("1"), cc("SELECT 1"), scs("on"), rfq('I')),
		// 10: s1 keeps the setting of its Parse; s2, parsed after an
		// Execute in its group, stays unknown; a new query reads on.
		fe(bind("", "s1"), execute("", 0), bind("", "s2"), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 1"), bindComplete, cc("SELECT 1"), rfq('I')),
		fe(query("SELECT 2")),
		be(cc("SELECT 1"), rfq('I')),
		// 14: a change undone within one group is never reported: the
		// Parse between the two SETs is unknown.
		fe(parse("", set("off")), bind("", ""), execute("", 0),
			parse("s3", `SELECT 'y\''`), bind("", "s3"), execute("", 0),
			parse("", set("on")), bind("", ""), execute("", 0), sync_),
		be(parseComplete, bindComplete, cc("SET"), parseComplete, bindComplete, cc("SELECT 1"),
			parseComplete, bindComplete, cc("SET"), rfq('I')),
		// 16: a report in the middle of a group (an older server, or a
		// configuration reload): the whole group is unknown, s4 included.
		fe(parse("s4", "SELECT 'z'"), bind("", "s4"), execute("", 0), sync_),
		be(parseComplete, scs("off"), bindComplete, cc("SELECT 1"), rfq('I')),
		fe(bind("", "s4"), execute("", 0), sync_),
		be(bindComplete, cc("SELECT 1"), rfq('I')),
		// 20: the next group reads off; a failed Parse too.
		fe(query("SELECT 3")),
		be(cc("SELECT 1"), rfq('I')),
		fe(parse("", "SELEC 'x'"), sync_),
		be(errResp("42601"), rfq('I')),
		// 24: a value the tracker does not know is unknown.
		fe(query("SELECT 4")),
		be(cc("SELECT 1"), scs("maybe"), rfq('I')),
		fe(query("SELECT 5")),
		be(cc("SELECT 1"), rfq('I')),
	}
	want := []string{
		"SELECT 1: unknown",
		set("off") + ": unknown",
		`SELECT 'a\'b': off`,
		set("on") + ": unknown", // its group changed the setting
		"SELECT 'after': unknown",
		`SELECT 'x\'': off`,
		"SELECT 'after': unknown",
		"SELECT 2: on",
		set("off") + ": on",
		`SELECT 'y\'': unknown`,
		set("on") + ": unknown",
		"SELECT 'z': unknown",
		"SELECT 'z': unknown",
		"SELECT 3: off",
		"SELEC 'x': off",
		"SELECT 4: unknown",
		"SELECT 5: unknown",
	}
	for name, split := range map[string]chunker{"whole": whole, "bytes": byteByByte, "random": randomChunks(3)} {
		if got := strsOf(t, StandardStringsUnknown, script, split); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\n got  %q\n want %q", name, got, want)
		}
	}
}

// TestTrackerStandardStringsFromStartup: a reader that saw the startup's
// ParameterStatus (the pcap reader, the proxy) passes the setting on.
func TestTrackerStandardStringsFromStartup(t *testing.T) {
	start, ok := StandardStringsStatus([]byte("standard_conforming_strings\x00off\x00"))
	if !ok || start != StandardStringsOff {
		t.Fatalf("StandardStringsStatus: %v %v", start, ok)
	}
	got := strsOf(t, start, []trStep{
		fe(query(`SELECT 'a\'b'`)),
		be(cc("SELECT 1"), &pgproto3.ParameterStatus{Name: "application_name", Value: "w"}, rfq('I')),
		fe(query("SET standard_conforming_strings = on")),
		be(cc("SET"), scs("on"), rfq('I')),
		fe(query(`SELECT 'a\'`)),
		be(cc("SELECT 1"), rfq('I')),
	}, whole)
	want := []string{`SELECT 'a\'b': off`, "SET standard_conforming_strings = on: unknown", `SELECT 'a\': on`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestStandardStringsStatus(t *testing.T) {
	for body, want := range map[string]string{
		"standard_conforming_strings\x00on\x00":  "on true",
		"standard_conforming_strings\x00off\x00": "off true",
		"standard_conforming_strings\x00yes\x00": "unknown true",
		"standard_conforming_strings\x00":        "unknown true",
		"standard_conforming_strings":            "unknown false",
		"application_name\x00off\x00":            "unknown false",
	} {
		s, ok := StandardStringsStatus([]byte(body))
		if got := fmt.Sprint(s, ok); got != want {
			t.Errorf("%q: %s, want %s", body, got, want)
		}
	}
	if got := fmt.Sprint(StandardStringsUnknown, StandardStringsOn, StandardStringsOff, StandardStrings(9)); got != "unknown on off unknown" {
		t.Errorf("String: %s", got)
	}
}
