package replay

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/recording"
)

// pcapFixture is package pcap's committed capture: one connection running
// an N+1 (a source query and six lookups).
var pcapFixture = filepath.Join("pcap", "testdata", "basic.pcap")

const csvRecord = `2026-03-14 15:09:26.010 UTC,"u","d",4711,"127.0.0.1:51000",6b05689d.52bc,1,"SELECT",2026-03-14 15:09:00 UTC,3/1,0,LOG,00000,"duration: 1.000 ms  statement: SELECT 1",,,,,,,,,"app","client backend",,0` + "\n"

func TestSniff(t *testing.T) {
	for _, tc := range []struct{ head, want string }{
		{"\xd4\xc3\xb2\xa1rest", FormatPcap},
		{"\xa1\xb2\xc3\xd4rest", FormatPcap},
		{"\x4d\x3c\xb2\xa1rest", FormatPcap},
		{"\xa1\xb2\x3c\x4drest", FormatPcap},
		{"\x0a\x0d\x0d\x0arest", FormatPcap},
		{`{"type":"Statement","item":{"timestamp":"2019-02-25T15:08:27Z"}}` + "\n", FormatRecording},
		{`{"timestamp":"2026-03-14 15:09:26.010 UTC","error_severity":"LOG"}` + "\n", FormatJSONLog},
		{`{"timestamp":"2026-03-14 15:09:26.010 UTC","session_id":"6b05689d.52bc"}`, FormatJSONLog},
		{csvRecord, FormatCSVLog},
	} {
		if got, err := sniff("f", []byte(tc.head)); got != tc.want || err != nil {
			t.Errorf("%q: got %q, %v; want %s", tc.head, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ head, want string }{
		{"", "f: empty, or not a format nplus1 reads; --input-format names one"},
		{" \n\n", "f: empty, or not a format nplus1 reads; --input-format names one"},
		{"hello\n", "f: not a pcap, pcapng, nplus1 recording, csvlog or jsonlog file; --input-format names one"},
		{`{"a":1}`, "f: not a pcap, pcapng, nplus1 recording, csvlog or jsonlog file; --input-format names one"},
	} {
		if got, err := sniff("f", []byte(tc.head)); err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %q, %v; want the error %q", tc.head, got, err, tc.want)
		}
	}
}

// writeRecording writes a recording of n statements on one connection.
func writeRecording(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := recording.NewWriter(f, recording.WriterOptions{})
	c := &pgwire.ConnInfo{ID: 9, User: "u", Database: "d"}
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if err := w.Write(&pgwire.Execution{Conn: c, Start: at, End: at, SQL: "SELECT 1", Protocol: "simple", Command: "SELECT", Rows: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func readInput(t *testing.T, in Input) []*pgwire.Execution {
	t.Helper()
	var out []*pgwire.Execution
	for {
		e, err := in.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

// Files of several formats: a directory stands for its files in name
// order; each format is one stream, the formats in the order they first
// appear; sizes, notes and the report's stats come from every reader.
func TestOpenMixed(t *testing.T) {
	dir := t.TempDir()
	recs := filepath.Join(dir, "recs")
	os.Mkdir(recs, 0o755)
	writeRecording(t, filepath.Join(recs, "b.jsonl"), 2)
	writeRecording(t, filepath.Join(recs, "a.jsonl"), 3)
	capture, err := os.ReadFile(pcapFixture)
	if err != nil {
		t.Fatal(err)
	}
	pcapFile := filepath.Join(dir, "x.pcap")
	os.WriteFile(pcapFile, capture, 0o644)
	csvFile := filepath.Join(dir, "pg.csv")
	os.WriteFile(csvFile, []byte(csvRecord), 0o644)

	in, err := Open([]string{recs, pcapFile, csvFile}, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	want := []File{{filepath.Join(recs, "a.jsonl"), FormatRecording}, {filepath.Join(recs, "b.jsonl"), FormatRecording},
		{pcapFile, FormatPcap}, {csvFile, FormatCSVLog}}
	if got := in.Files(); !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	var total int64
	for _, f := range want {
		st, _ := os.Stat(f.Path)
		total += st.Size()
	}
	if in.TotalBytes() != total {
		t.Errorf("total %d, want %d", in.TotalBytes(), total)
	}
	execs := readInput(t, in)
	var conns []uint64
	for _, e := range execs {
		conns = append(conns, e.Conn.ID)
	}
	// 5 recorded (connection 9), 7 captured, 1 logged.
	if len(execs) != 13 || conns[0] != 9 || conns[4] != 9 || execs[5].SQL != "SELECT id, user_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 20" ||
		execs[12].SQL != "SELECT 1" || execs[12].Rows != -1 {
		t.Fatalf("%d executions, connections %v", len(execs), conns)
	}
	if in.BytesRead() != total {
		t.Errorf("read %d bytes, want %d", in.BytesRead(), total)
	}
	st := NewInputStats(in)
	if len(st.Files) != 4 || st.Formats[pcapFile] != FormatPcap || st.Bytes != total ||
		!slices.Contains(st.Notes, "csvlog: logs carry no row counts: unpaginated reads and N+1 sources cannot be seen") {
		t.Errorf("stats %+v", st)
	}
}

func TestOpenForcedFormatAndNotes(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec.txt")
	writeRecording(t, rec, 2)
	data, _ := os.ReadFile(rec)
	os.WriteFile(rec, append([]byte("garbage first\n"), data...), 0o644) // not detected; then a Connect and 2 Statements
	if _, err := Open([]string{rec}, OpenOptions{}); err == nil || !strings.Contains(err.Error(), "--input-format names one") {
		t.Fatalf("detected: %v", err)
	}
	in, err := Open([]string{rec}, OpenOptions{Format: FormatRecording})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if n := len(readInput(t, in)); n != 2 {
		t.Errorf("%d executions, want 2", n)
	}
	want := []string{"recording: 1 of 4 lines skipped (first: " + rec + ": line 1 is not a recording item)"}
	if got := in.Notes(); !slices.Equal(got, want) {
		t.Errorf("notes %q, want %q", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hello\n"), 0o644)
	for _, tc := range []struct {
		paths []string
		opts  OpenOptions
		want  string
	}{
		{[]string{filepath.Join(dir, "missing.pcap")}, OpenOptions{}, "no such file"},
		{[]string{empty}, OpenOptions{}, "no input files in " + empty},
		{[]string{junk}, OpenOptions{}, junk + ": not a pcap, pcapng, nplus1 recording, csvlog or jsonlog file; --input-format names one"},
		{[]string{junk}, OpenOptions{Format: FormatPcap}, junk + ": "},
		{[]string{junk}, OpenOptions{Format: "xml"}, "unknown input format xml"},
	} {
		in, err := Open(tc.paths, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %+v: got %v; want an error with %q", tc.paths, tc.opts, err, tc.want)
		}
		if in != nil {
			t.Errorf("%v: an input with the error", tc.paths)
		}
	}
}

// Evidence reaches the pcap reader's trackers; the other formats have none.
func TestOpenEvidence(t *testing.T) {
	dir := t.TempDir()
	writeRecording(t, filepath.Join(dir, "a.jsonl"), 1)
	for _, on := range []bool{false, true} {
		in, err := Open([]string{pcapFixture, filepath.Join(dir, "a.jsonl")}, OpenOptions{Evidence: on})
		if err != nil {
			t.Fatal(err)
		}
		execs := readInput(t, in)
		in.Close()
		if len(execs) != 8 {
			t.Fatalf("got %d executions", len(execs))
		}
		for i, e := range execs {
			has := e.Result != nil || e.ParamKeys != nil
			if want := on && i < 7; has != want {
				t.Errorf("evidence %v: execution %d (%s) has evidence %v", on, i, e.SQL, has)
			}
		}
	}
}
