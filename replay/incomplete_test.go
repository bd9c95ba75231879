package replay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nplus1/nplus1/detector"
)

// openAll opens paths, reads every execution and returns the input's stats.
func openAll(t *testing.T, paths []string, opts OpenOptions) InputStats {
	t.Helper()
	in, err := Open(paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if n := int64(len(readInput(t, in))); n != in.Executions() {
		t.Errorf("Executions() = %d, Next returned %d", in.Executions(), n)
	}
	return NewInputStats(in)
}

// What of the files could not be read is a problem, and makes the input
// incomplete; an input read to its end is not, whatever its notes.
func TestInputProblems(t *testing.T) {
	dir := t.TempDir()
	capture, err := os.ReadFile(pcapFixture)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cut, capture[:len(capture)-10], 0o644) // the last packet cut short
	rec := filepath.Join(dir, "rec.jsonl")
	writeRecording(t, rec, 4)
	data, _ := os.ReadFile(rec)
	cutRec := filepath.Join(dir, "cut.jsonl")
	os.WriteFile(cutRec, data[:len(data)-20], 0o644) // the last line cut short
	garbage := filepath.Join(dir, "garbage.txt")
	os.WriteFile(garbage, []byte("garbage\nmore garbage\n"), 0o644)

	for _, tc := range []struct {
		name    string
		paths   []string
		format  string
		execs   int64
		problem string // "" for none
		err     string
	}{
		{"intact pcap", []string{pcapFixture}, "", 7, "", ""},
		{"intact recording", []string{rec}, "", 4, "", ""},
		// Joined mid-way is a note, not a problem.
		{"midstream pcap", []string{filepath.Join("pcap", "testdata", "midstream.pcap")}, "", -1, "", ""},
		{"cut pcap", []string{cut}, "", -1, "pcap: " + cut + ": corrupt capture file: truncated packet",
			"incomplete input: the report covers only the "},
		{"cut recording", []string{cutRec}, "", 3, "recording: 1 of 5 lines skipped (first: " + cutRec + ": line 5 is not a recording item)",
			"incomplete input: the report covers only the 3 statements that could be read: recording: 1 of 5 lines skipped"},
		{"garbage as a recording", []string{garbage}, FormatRecording, 0, "recording: 2 of 2 lines skipped (first: " + garbage + ": line 1 is not a recording item)",
			"incomplete input: nothing could be read: recording: 2 of 2 lines skipped"},
		{"garbage as csvlog", []string{garbage}, FormatCSVLog, 0, "csvlog: 2 of 2 records skipped (first: " + garbage + ": ",
			"incomplete input: nothing could be read: csvlog: 2 of 2 records skipped (first: "},
		{"garbage as jsonlog", []string{garbage}, FormatJSONLog, 0, "jsonlog: 2 of 2 records skipped (first: " + garbage + ": a line that is not a JSON object: garbage)",
			"incomplete input: nothing could be read: jsonlog: 2 of 2 records skipped"},
		{"a cut pcap among intact files", []string{rec, cut, pcapFixture}, "", -1, "pcap: " + cut + ": corrupt capture file: truncated packet",
			"incomplete input: the report covers only the "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openAll(t, tc.paths, OpenOptions{Format: tc.format})
			if tc.execs >= 0 && st.Executions != tc.execs || tc.execs < 0 && st.Executions == 0 {
				t.Errorf("%d executions read, want %d", st.Executions, tc.execs)
			}
			err := st.Err()
			if tc.problem == "" {
				if len(st.Problems) != 0 || err != nil {
					t.Errorf("problems %q, err %v; want none (notes %q)", st.Problems, err, st.Notes)
				}
				return
			}
			if len(st.Problems) != 1 || !strings.HasPrefix(st.Problems[0], tc.problem) {
				t.Errorf("problems %q, want one starting %q", st.Problems, tc.problem)
			}
			for _, p := range st.Problems {
				if !containsString(st.Notes, p) {
					t.Errorf("problem %q is not among the notes %q", p, st.Notes)
				}
			}
			if !errors.Is(err, ErrIncompleteInput) || err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("err %v, want ErrIncompleteInput starting %q", err, tc.err)
			}
		})
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rawControl returns the first byte or character of out that a terminal
// could take as a control (a newline excepted), or "".
func rawControl(out []byte) string {
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRune(out[i:])
		switch {
		case r == utf8.RuneError && n == 1, r < 0x20 && r != '\n', r == 0x7f, r >= 0x80 && r < 0xa0,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return fmt.Sprintf("%q at byte %d", out[i:i+n], i)
		}
		i += n
	}
	return ""
}

const evil = "\x1b]0;pwned\x07\x1b[2J\r\u009b31m\x9b\x7f\xff\u202e"

// The text and JUnit reports escape what came from the input: notes (a
// log's first bad record is quoted in one), queries, and every field of a
// finding.
func TestReportsEscapeInputText(t *testing.T) {
	sum := NewSummary(0)
	sum.Statements = 1
	sum.Fingerprints = []*FingerprintStats{{Fingerprint: "0123456789abcdef", Query: `SELECT * FROM "t` + evil + `"`, Calls: 1}}
	f := &detector.Finding{Kind: detector.KindNPlusOne, Severity: detector.SeverityWarning, Fingerprint: "0123456789abcdef",
		Query: `SELECT * FROM "t` + evil + `" WHERE id = $1`, Count: 6,
		Connection:      detector.Connection{ID: 1, User: "u" + evil, Database: "d" + evil, ApplicationName: "app" + evil},
		ApplicationName: "app" + evil, TraceID: "trace" + evil,
		Source:     &detector.Source{Query: `SELECT id FROM "s` + evil + `"`, Rows: 6},
		Suggestion: `JOIN "t` + evil + `"`}
	r := &Report{Mode: "analysis", Summary: sum, Findings: []*detector.Finding{f},
		Input:   InputStats{Notes: []string{"jsonlog: 1 of 1 records skipped (first: x.log: a line that is not a JSON object: " + evil + ")"}},
		Skipped: map[string]int64{"reason" + evil: 1}}
	var text, junit bytes.Buffer
	if err := WriteText(&text, r, 0); err != nil {
		t.Fatal(err)
	}
	if err := WriteJUnit(&junit, r, nil, nil); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"text": text.Bytes(), "junit": junit.Bytes()} {
		if c := rawControl(out); c != "" {
			t.Errorf("%s report: raw %s:\n%q", name, c, out)
		}
	}
	for _, want := range []string{`note: jsonlog: 1 of 1 records skipped (first: x.log: a line that is not a JSON object: \x1b]0;pwned\x07\x1b[2J\x0d\u009b31m\x9b\x7f\xff\u202e)`,
		`SELECT * FROM "t\x1b]0;pwned\x07\x1b[2J \u009b31m`, `not re-executed: 1 reason\x1b]0;pwned`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{`user u\x1b]0;pwned`, `application app\x1b]0;pwned`, `trace trace\x1b]0;pwned`, `source: SELECT id FROM &#34;s\x1b]0;pwned`} {
		if !strings.Contains(junit.String(), want) {
			t.Errorf("junit report lacks %q:\n%s", want, junit.String())
		}
	}
}
