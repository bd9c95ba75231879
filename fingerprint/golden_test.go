package fingerprint

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/internal/valuekey"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenCase is one "-- name:" section of a testdata/*.sql file.
type goldenCase struct {
	Name string
	SQL  string
}

// readCases splits a .sql file at lines starting with "-- name: ". Lines
// before the first such line are a description.
func readCases(t *testing.T, path string) []goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "-- name: "); ok {
			cases = append(cases, goldenCase{Name: strings.TrimSpace(name)})
			continue
		}
		if len(cases) > 0 {
			cases[len(cases)-1].SQL += line
		}
	}
	for i := range cases {
		cases[i].SQL = strings.TrimSpace(cases[i].SQL)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return cases
}

// goldenResult is what a golden file records per case.
type goldenResult struct {
	Name       string            `json:"name"`
	SQL        string            `json:"sql"`
	TraceID    string            `json:"trace_id,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Statements []goldenStatement `json:"statements"`
}

type goldenStatement struct {
	Fingerprint  string   `json:"fingerprint"`
	Normalized   string   `json:"normalized"`
	LiteralsHash string   `json:"literals_hash,omitempty"`
	LiteralKeys  string   `json:"literal_keys,omitempty"` // per literal: k a key, - none (keys are per process)
	Error        string   `json:"error,omitempty"`
	Kind         Kind     `json:"kind"`
	TablesRead   []string `json:"tables_read,omitempty"`
	TablesWrite  []string `json:"tables_written,omitempty"`
	Flags        []string `json:"flags,omitempty"`
	Offset       int64    `json:"offset,omitempty"`
	OffsetParam  int      `json:"offset_param,omitempty"`
	Equality     []string `json:"equality_columns,omitempty"`
	LikeParams   uint64   `json:"like_params,omitempty"`
	LikeColumns  []string `json:"like_columns,omitempty"`
	ValuesRows   int      `json:"values_rows,omitempty"`
}

func toGolden(c goldenCase, r *Result) goldenResult {
	g := goldenResult{Name: c.Name, SQL: c.SQL, TraceID: r.TraceID, Tags: r.Tags}
	for _, st := range r.Statements {
		f := st.Facts
		gs := goldenStatement{
			Fingerprint: st.Hex,
			Normalized:  st.Normalized,
			Kind:        f.Kind,
			TablesRead:  f.TablesRead,
			TablesWrite: f.TablesWritten,
			Offset:      f.Offset,
			OffsetParam: f.OffsetParam,
			Equality:    f.EqualityColumns,
			LikeParams:  f.LikeParams,
			LikeColumns: f.LikeColumns,
			ValuesRows:  f.ValuesRows,
		}
		if st.LiteralsHash != 0 {
			gs.LiteralsHash = hex16(st.LiteralsHash)
		}
		for _, k := range st.LiteralKeys {
			if k != valuekey.None {
				gs.LiteralKeys += "k"
			} else {
				gs.LiteralKeys += "-"
			}
		}
		if st.Err != nil {
			gs.Error = st.Err.Error()
		}
		for _, flag := range []struct {
			on   bool
			name string
		}{
			{f.SelectStar, "select_star"},
			{f.HasLimit, "limit"},
			{f.HasOffset, "offset"},
			{f.AggregateOnly, "aggregate_only"},
			{f.LeadingWildcardLike, "leading_wildcard_like"},
			{f.KeyList, "key_list"},
			{f.Locking, "locking"},
			{f.NoWhere, "no_where"},
		} {
			if flag.on {
				gs.Flags = append(gs.Flags, flag.name)
			}
		}
		g.Statements = append(g.Statements, gs)
	}
	return g
}

// TestGolden runs every testdata/*.sql case through a Cache and through Of
// and compares with testdata/*.golden. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	cache := New(Options{})
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".sql"), func(t *testing.T) {
			var got []goldenResult
			for _, c := range readCases(t, file) {
				r := ofOn(c.SQL)
				if cr := cache.ofOn(c.SQL); !sameResult(r, cr) {
					t.Errorf("%s: Cache.Of and Of disagree:\n%s\n%s", c.Name, dump(cr), dump(r))
				}
				got = append(got, toGolden(c, r))
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(got); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".sql") + ".golden"
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s differs from the output; run go test -run TestGolden -update and review the diff\n%s",
					golden, firstDiff(string(want), buf.String()))
			}
		})
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return ""
}

// sameResult compares two Results by value.
func sameResult(a, b *Result) bool {
	return dump(a) == dump(b)
}

func dump(r *Result) string {
	b, err := json.Marshal(r)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
