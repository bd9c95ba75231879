package analyzer

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/detector"
)

// The console's counts agree with their nouns: "1 execution", "2
// executions", for every count it prints.
func TestConsolePlurals(t *testing.T) {
	finding := func(n int) *detector.Finding {
		return &detector.Finding{
			Kind: detector.KindNPlusOne, Severity: detector.SeverityWarning, Query: "SELECT name FROM users WHERE id = $1",
			Count: n, DistinctParams: n, Rows: int64(n),
			Source:   &detector.Source{Query: "SELECT id FROM users", Rows: int64(n)},
			Evidence: &detector.Evidence{Kind: detector.EvidenceDataFlow, SourceColumn: "id", Param: 1, Matched: n, Of: n},
		}
	}
	for _, tc := range []struct {
		f         *detector.Finding
		want, not []string
	}{
		{finding(1),
			[]string{"1 execution with 1 distinct parameter set,", "(1 row)", "1 of its 1 key ($1) was read"},
			[]string{"executions", "sets", "rows", "keys", "were"}},
		{finding(2),
			[]string{"2 executions with 2 distinct parameter sets,", "(2 rows)", "2 of its 2 keys ($1) were read"},
			[]string{"1 execution", " set,", "(2 row)", "was"}},
		{&detector.Finding{Kind: detector.KindDuplicateQuery, Count: 1},
			[]string{"1 execution with identical parameters"}, []string{"executions"}},
		{&detector.Finding{Kind: detector.KindUnpaginated, Rows: 1},
			[]string{"up to 1 row without LIMIT"}, []string{"rows"}},
		{&detector.Finding{Kind: detector.KindSelectStar, Count: 1},
			[]string{"[] 1 execution\n"}, []string{"executions"}},
		{&detector.Finding{Kind: detector.KindSelectStar, Count: 3},
			[]string{"[] 3 executions\n"}, nil},
	} {
		var out bytes.Buffer
		NewColorConsole(&out, false).Finding(tc.f)
		got := out.String()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("console lacks %q:\n%s", w, got)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("console holds %q:\n%s", n, got)
			}
		}
	}
}

// Color: NewColorConsole colors the title as it is told; NewConsole only on
// a terminal, and /dev/null, a character device, is not one.
func TestConsoleColor(t *testing.T) {
	f := &detector.Finding{Kind: detector.KindNPlusOne, Severity: detector.SeverityCritical, Count: 50}
	var on, off bytes.Buffer
	NewColorConsole(&on, true).Finding(f)
	NewColorConsole(&off, false).Finding(f)
	if !strings.Contains(on.String(), "\x1b[1;31mN+1 query\x1b[0m") {
		t.Errorf("color on: no red title in %q", on.String())
	}
	if strings.Contains(off.String(), "\x1b[") {
		t.Errorf("color off: escape in %q", off.String())
	}

	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	st, err := null.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is not a character device (%v): the test means nothing here", os.DevNull, err)
	}
	if IsTerminal(null) {
		t.Errorf("IsTerminal(%s) = true, want false", os.DevNull)
	}
	if c := NewConsole(null, func(string) string { return "" }); c.color {
		t.Errorf("NewConsole(%s) colors", os.DevNull)
	}
	if IsTerminal(&on) {
		t.Error("IsTerminal(a buffer) = true")
	}
}
