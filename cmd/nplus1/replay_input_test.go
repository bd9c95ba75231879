package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/recording"
)

// writeTestRecording writes a recording of an N+1 on one connection: a
// list query, then lookups with literal ids. Its identifiers and
// application_name are given; "<INVALID>" in them becomes bytes that are
// not UTF-8 (the writer would replace them).
func writeTestRecording(t *testing.T, path, table, column, app string) {
	t.Helper()
	var buf bytes.Buffer
	w := recording.NewWriter(&buf, recording.WriterOptions{})
	c := &pgwire.ConnInfo{ID: 4, User: "shop", Database: "shopdb", ApplicationName: app}
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	write := func(sql string, rows int64) {
		if err := w.Write(&pgwire.Execution{Conn: c, Start: at, End: at.Add(300 * time.Microsecond), SQL: sql,
			Protocol: "simple", Command: "SELECT", Rows: rows}); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Millisecond)
	}
	write(fmt.Sprintf(`SELECT id FROM orders WHERE status = 'open'`), 6)
	for i := range 6 {
		write(fmt.Sprintf(`SELECT name FROM "%s" WHERE "%s" = %d`, table, column, 1000+i), 1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := bytes.ReplaceAll(buf.Bytes(), []byte("<INVALID>"), []byte("\xff\xfe\x9b"))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rawControl returns the first byte or character of out that a terminal
// could take as a control: C0 (a newline excepted), DEL, C1, a byte that is
// not UTF-8, a bidi override or isolate; "" when there is none.
func rawControl(out string) string {
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		switch {
		case r == utf8.RuneError && n == 1, r < 0x20 && r != '\n', r == 0x7f, r >= 0x80 && r < 0xa0,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return fmt.Sprintf("%q at byte %d", out[i:i+n], i)
		}
		i += n
	}
	return ""
}

// Control bytes in a recording's identifiers and application_name, and in
// the bad record of a log that the first-problem note quotes, reach the
// terminal escaped: in the console's finding block, the summary, the notes,
// the JUnit report and the log lines on stderr.
func TestReplayEscapesClientText(t *testing.T) {
	const evil = "\x1b]0;pwned\x07\x1b[2J\r\u009b31m\x7f<INVALID>\u202e"
	dir := t.TempDir()
	rec := filepath.Join(dir, "evil.jsonl")
	writeTestRecording(t, rec, "users"+evil, "id"+evil, "api"+evil+"ünïcødé-日本")
	badLog := filepath.Join(dir, "evil.json")
	os.WriteFile(badLog, []byte("not json "+strings.ReplaceAll(evil, "<INVALID>", "\xff")+"\n"), 0o600)

	stdout, stderr, err := runArgs(t, nil, "replay", "--progress", "off", rec)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "N+1 query") {
		t.Fatalf("no N+1 found:\n%s", stdout)
	}
	for _, want := range []string{`query:  SELECT name FROM "users\x1b]0;pwned\x07\x1b[2J \u009b31m\x7f\xff\xfe\x9b\u202e" WHERE`,
		`application api\x1b]0;pwned\x07\x1b[2J\x0d\u009b31m\x7f\xff\xfe\x9b\u202eünïcødé-日本`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	outputs := map[string]string{"text stdout": stdout, "text stderr": stderr}

	stdout, stderr, _ = runArgs(t, nil, "replay", "--progress", "off", "--format", "junit", rec)
	outputs["junit stdout"], outputs["junit stderr"] = stdout, stderr

	// The log's one record is bad: its note quotes it, on stdout and in the
	// error on stderr, in text and in JSON logs.
	stdout, stderr, err = runArgs(t, nil, "replay", "--progress", "off", "--input-format", "jsonlog", badLog)
	if exitCode(err) != exitFailure || !strings.Contains(stdout, `a line that is not a JSON object: not json \x1b]0;pwned`) {
		t.Errorf("bad log: exit %d\n%s\n%s", exitCode(err), stdout, stderr)
	}
	outputs["bad log stdout"], outputs["bad log stderr"] = stdout, stderr
	stdout, stderr, _ = runArgs(t, nil, "replay", "--progress", "off", "--log-format", "json", "--input-format", "jsonlog", badLog)
	outputs["bad log stdout, json logs"], outputs["bad log stderr, json logs"] = stdout, stderr

	for name, out := range outputs {
		if c := rawControl(out); c != "" {
			t.Errorf("%s: raw %s reaches the terminal:\n%q", name, c, out)
		}
	}
}

// The exit code says whether the input was read completely: 0 when it was,
// 3 when a file was cut short or corrupt, records were skipped, or nothing
// at all could be read (whatever --fail-on), 2 when a file is not the
// format it is said to be.
func TestReplayExitCodesForIncompleteInput(t *testing.T) {
	dir := t.TempDir()
	capture, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	cutPcap := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cutPcap, capture[:len(capture)-200], 0o600) // tcpdump killed mid-write
	rec := filepath.Join(dir, "rec.jsonl")
	writeTestRecording(t, rec, "users", "id", "api")
	data, _ := os.ReadFile(rec)
	cutRec := filepath.Join(dir, "cut.jsonl")
	os.WriteFile(cutRec, data[:len(data)-30], 0o600) // the last line cut short
	garbage := filepath.Join(dir, "garbage.txt")
	os.WriteFile(garbage, []byte("garbage\nmore garbage\nand more\n"), 0o600)

	for _, tc := range []struct {
		name   string
		args   []string
		exit   int
		stderr []string // each must be on stderr
		stdout []string // each must be on stdout
	}{
		{"intact pcap", []string{fixture}, exitOK, nil, []string{"7 statements on 1 connection,"}},
		{"intact pcap, --fail-on select_star", []string{"--fail-on", "select_star", fixture}, exitOK, nil, nil},
		{"intact recording", []string{rec}, exitOK, nil, []string{"7 statements on 1 connection,"}},
		{"cut pcap", []string{cutPcap}, exitFailure,
			[]string{"incomplete input: the report covers only the ", "corrupt capture file: truncated packet"},
			[]string{"note: pcap: " + cutPcap + ": corrupt capture file: truncated packet", "FINGERPRINT"}},
		{"cut pcap, --fail-on all", []string{"--fail-on", "all", cutPcap}, exitFailure,
			[]string{"incomplete input", "truncated packet", "(and 1 finding matched --fail-on", "findings summary"}, nil},
		{"cut recording", []string{cutRec}, exitFailure,
			[]string{"incomplete input: the report covers only the 6 statements that could be read: recording: 1 of 8 lines skipped (first: " + cutRec + ": line 8 is not a recording item)"},
			[]string{"6 statements on 1 connection,", "note: recording: 1 of 8 lines skipped"}},
		{"garbage as a recording", []string{"--input-format", "recording", garbage}, exitFailure,
			[]string{"incomplete input: nothing could be read: recording: 3 of 3 lines skipped (first: " + garbage + ": line 1 is not a recording item)"},
			[]string{"0 statements on 0 connections"}},
		{"garbage as csvlog", []string{"--input-format", "csvlog", garbage}, exitFailure,
			[]string{"incomplete input: nothing could be read: csvlog: 3 of 3 records skipped (first: " + garbage}, nil},
		{"garbage as jsonlog, --fail-on all", []string{"--fail-on", "all", "--input-format", "jsonlog", garbage}, exitFailure,
			[]string{"incomplete input: nothing could be read: jsonlog: 3 of 3 records skipped (first: " + garbage}, nil},
		{"a capture read as a recording", []string{"--input-format", "recording", fixture}, exitFailure,
			[]string{"incomplete input: nothing could be read: recording: "}, nil},
		{"garbage as pcap", []string{"--input-format", "pcap", garbage}, exitUsage,
			[]string{"not a pcap or pcapng file", "Run 'nplus1 help replay' for usage."}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runArgs(t, nil, append([]string{"replay", "--progress", "off"}, tc.args...)...)
			if got := exitCode(err); got != tc.exit {
				t.Errorf("exit %d (%v), want %d\nstderr:\n%s", got, err, tc.exit, stderr)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
		})
	}

	if help, _, _ := runArgs(t, nil, "help", "replay"); !strings.Contains(help, "Exit codes: 0 when the input was read completely") ||
		!strings.Contains(help, "3 when the\ninput could not be read completely") {
		t.Errorf("help replay does not give the exit codes:\n%s", help)
	}

	// The report is written, and its JSON names the problems.
	out := filepath.Join(dir, "report.json")
	_, _, err = runArgs(t, nil, "replay", "--progress", "off", "--format", "json", "--output", out, cutPcap)
	if exitCode(err) != exitFailure {
		t.Errorf("json: exit %d, want %d", exitCode(err), exitFailure)
	}
	var doc struct {
		Summary struct {
			Statements int `json:"statements"`
		} `json:"summary"`
		Input struct {
			Executions int      `json:"executions"`
			Problems   []string `json:"problems"`
		} `json:"input"`
	}
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(b, &doc); err != nil || doc.Summary.Statements == 0 || doc.Input.Executions != doc.Summary.Statements ||
		len(doc.Input.Problems) != 1 || !strings.Contains(doc.Input.Problems[0], "truncated packet") {
		t.Errorf("json report: %+v, %v\n%s", doc, err, b)
	}
}
