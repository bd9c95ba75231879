package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/detector"
)

// want is one finding a case must produce.
type want struct {
	Kind  detector.Kind
	Table string // the finding's first table
	// Source, for n_plus_one, is the table the source query reads; "" does
	// not check it, noSource wants none.
	Source string
}

// noSource is want.Source for an N+1 over keys that no query in the window
// returned.
const noSource = "(none)"

func (w want) String() string {
	s := string(w.Kind) + "(" + w.Table
	if w.Source != "" {
		s += " ← " + w.Source
	}
	return s + ")"
}

func nPlusOne(table, source string) want {
	return want{Kind: detector.KindNPlusOne, Table: table, Source: source}
}
func duplicate(table string) want   { return want{Kind: detector.KindDuplicateQuery, Table: table} }
func unpaginated(table string) want { return want{Kind: detector.KindUnpaginated, Table: table} }
func selectStar(table string) want  { return want{Kind: detector.KindSelectStar, Table: table} }

// matches reports whether f is the finding w describes.
func (w want) matches(f detector.Finding) bool {
	if f.Kind != w.Kind || tableOf(f) != w.Table {
		return false
	}
	switch w.Source {
	case "":
		return true
	case noSource:
		return f.Source == nil
	}
	return f.Source != nil && sourceReads(f.Source.Query, w.Source)
}

// sourceReads reports whether a normalized query reads table (after FROM or
// JOIN, quoted or not).
func sourceReads(query, table string) bool {
	q := strings.ToLower(strings.ReplaceAll(query, `"`, ""))
	for _, kw := range []string{"from ", "join "} {
		for rest := q; ; {
			i := strings.Index(rest, kw)
			if i < 0 {
				break
			}
			rest = rest[i+len(kw):]
			name := strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == ',' || r == '(' || r == ')' })
			if len(name) > 0 && bareTable(name[0]) == table {
				return true
			}
		}
	}
	return false
}

// corpusCase is one code path run once by a real client. An N+1 version and
// its fixed version are two cases.
type corpusCase struct {
	Name string // client/path/version, e.g. "pgx/orders_with_user/n+1"
	// Want is the truth: the findings a correct detector makes for this code
	// path, no more and no fewer. Empty for fixed and benign code.
	Want []want
	// Known is set when the detector today makes something else than Want (a
	// known weakness, explained in Note): the test then asserts Known, so a
	// change in either direction is noticed, while precision and recall are
	// measured against Want.
	Known *[]want
	Note  string
	// Paced is set when the code pauses longer than the idle gap on
	// purpose (requests spaced apart); see stallAttempts.
	Paced bool
	Run   func(ctx context.Context) error
}

// stallAttempts is how often a case that never pauses is run when its result
// differs from what it must be and its executions show a gap longer than the
// detector's idle gap: the machine stalled mid-case (a loaded CI machine
// running packages in parallel under -race), and the detector, as designed,
// judged the two halves as two windows. The retry is logged; a case whose
// every attempt stalled fails with the last result.
const stallAttempts = 3

// client is the name's first element ("database/sql" counts as one).
func (c corpusCase) client() string {
	if strings.HasPrefix(c.Name, "database/sql/") {
		return "database/sql"
	}
	client, _, _ := strings.Cut(c.Name, "/")
	return client
}

// corpus is every case, Go clients first.
func corpus() []corpusCase {
	return slices.Concat(goCases(), nodeCases())
}

// outcome is what one case produced, matched against its truth.
type outcome struct {
	c        corpusCase
	produced []detector.Finding
	tp, fn   []want             // expected findings produced, and missing
	fp       []detector.Finding // produced but not expected
	reruns   int                // runs discarded after a machine stall
}

// match pairs wants with findings, each finding used once.
func match(ws []want, fs []detector.Finding) (tp, fn []want, fp []detector.Finding) {
	used := make([]bool, len(fs))
	for _, w := range ws {
		found := false
		for i, f := range fs {
			if !used[i] && w.matches(f) {
				used[i], found = true, true
				break
			}
		}
		if found {
			tp = append(tp, w)
		} else {
			fn = append(fn, w)
		}
	}
	for i, f := range fs {
		if !used[i] {
			fp = append(fp, f)
		}
	}
	return tp, fn, fp
}

// TestCorpus runs every case through the proxy, checks that it produced
// exactly what it must (or, for a known weakness, exactly what it is known
// to produce), and measures precision and recall over the corpus against the
// truth: TP is an expected finding produced, FP a finding produced but not
// expected, FN an expected finding missing. The table is logged, and written
// as markdown to the file named by NPLUS1_CORPUS_REPORT when it is set (a
// relative path is relative to this package's directory).
func TestCorpus(t *testing.T) {
	ensureNode(t)
	var outcomes []outcome
	for _, c := range corpus() {
		t.Run(c.Name, func(t *testing.T) {
			expect := c.Want
			if c.Known != nil {
				expect = *c.Known
				t.Logf("known weakness: %s", c.Note)
			}
			var fs, extra []detector.Finding
			var missing []want
			reruns := 0
			for attempt := 1; ; attempt++ {
				var gap time.Duration
				fs, gap = runCaseGap(t, c.Name, c.Run)
				_, missing, extra = match(expect, fs)
				stalled := !c.Paced && gap > detector.DefaultIdleGap
				if len(missing)+len(extra) == 0 || !stalled || attempt == stallAttempts {
					if stalled && len(missing)+len(extra) > 0 {
						t.Logf("every attempt stalled longer than the idle gap (%s, last %s)", detector.DefaultIdleGap, gap.Round(time.Millisecond))
					}
					break
				}
				reruns++
				t.Logf("attempt %d: the machine stalled %s between two statements (idle gap %s) and the result differs; running the case again", attempt, gap.Round(time.Millisecond), detector.DefaultIdleGap)
			}
			for _, f := range fs {
				checkFinding(t, f)
			}
			o := outcome{c: c, produced: fs, reruns: reruns}
			o.tp, o.fn, o.fp = match(c.Want, fs)
			outcomes = append(outcomes, o)
			for _, w := range missing {
				t.Errorf("missing %s", w)
			}
			for _, f := range extra {
				t.Errorf("unexpected %s on %q (source %v)", f.Kind, f.Query, f.Source)
			}
		})
	}
	report := corpusReport(outcomes)
	t.Log("\n" + report)
	if path := os.Getenv("NPLUS1_CORPUS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Errorf("write corpus report: %v", err)
		}
	}
}

// checkFinding checks what every finding must hold whatever the case: the
// documented fields are set and no literal leaks into the query texts.
func checkFinding(t *testing.T, f detector.Finding) {
	t.Helper()
	if len(f.Fingerprint) != 16 {
		t.Errorf("%s: fingerprint %q, want 16 hex digits", f.Kind, f.Fingerprint)
	}
	if f.Suggestion == "" {
		t.Errorf("%s on %q: no suggestion", f.Kind, f.Query)
	}
	if f.Count < 1 || f.Severity == "" || f.Connection.ID == 0 || f.WindowEnd.Before(f.WindowStart) {
		t.Errorf("%s on %q: count %d, severity %q, connection %d, window %s..%s", f.Kind, f.Query, f.Count, f.Severity, f.Connection.ID, f.WindowStart, f.WindowEnd)
	}
	queries := []string{f.Query}
	if f.Source != nil {
		queries = append(queries, f.Source.Query)
	}
	for _, q := range queries {
		// The cases' string literals are all quoted ('open', 'viewed'); a
		// normalized query keeps no quoted literal.
		if strings.Contains(q, "'") {
			t.Errorf("%s: a literal leaked into %q", f.Kind, q)
		}
	}
	if strings.Contains(f.Suggestion, "open") || strings.Contains(f.Suggestion, "viewed") {
		t.Errorf("%s: a literal leaked into the suggestion %q", f.Kind, f.Suggestion)
	}
}

// rate is n/d, or "n/a" when d is 0.
func rate(n, d int) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", float64(n)/float64(d))
}

// corpusReport is the measured table in markdown: per kind and overall, then
// per case.
func corpusReport(outs []outcome) string {
	type tally struct{ tp, fp, fn int }
	per := map[detector.Kind]*tally{}
	for _, k := range detector.Kinds() {
		per[k] = &tally{}
	}
	var all tally
	clients := map[string]int{}
	for _, o := range outs {
		clients[o.c.client()]++
		for _, w := range o.tp {
			per[w.Kind].tp++
			all.tp++
		}
		for _, w := range o.fn {
			per[w.Kind].fn++
			all.fn++
		}
		for _, f := range o.fp {
			if per[f.Kind] == nil {
				per[f.Kind] = &tally{}
			}
			per[f.Kind].fp++
			all.fp++
		}
	}
	var b strings.Builder
	names := make([]string, 0, len(clients))
	for c := range clients {
		names = append(names, c)
	}
	slices.Sort(names)
	var byClient []string
	for _, c := range names {
		byClient = append(byClient, fmt.Sprintf("%s %d", c, clients[c]))
	}
	fmt.Fprintf(&b, "Corpus: %d cases (%s).\n\n", len(outs), strings.Join(byClient, ", "))
	b.WriteString("| kind | expected | produced | TP | FP | FN | precision | recall |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, x tally) {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s |\n", name, x.tp+x.fn, x.tp+x.fp, x.tp, x.fp, x.fn, rate(x.tp, x.tp+x.fp), rate(x.tp, x.tp+x.fn))
	}
	for _, k := range detector.Kinds() {
		row(string(k), *per[k])
	}
	row("**all**", all)

	b.WriteString("\n| case | expected | produced | result |\n|---|---|---|---|\n")
	for _, o := range outs {
		var exp, got []string
		for _, w := range o.c.Want {
			exp = append(exp, w.String())
		}
		for _, f := range o.produced {
			g := string(f.Kind) + "(" + tableOf(f)
			if f.Source != nil {
				for _, tbl := range []string{"users", "orders", "order_items", "products"} {
					if sourceReads(f.Source.Query, tbl) {
						g += " ← " + tbl
						break
					}
				}
			}
			got = append(got, g+")")
		}
		result := "ok"
		switch {
		case len(o.fn) > 0 && len(o.fp) > 0:
			result = "missed and extra"
		case len(o.fn) > 0:
			result = "missed"
		case len(o.fp) > 0:
			result = "extra"
		}
		if o.c.Known != nil {
			result = "known: " + result + " (" + o.c.Note + ")"
		}
		if o.reruns > 0 {
			result += fmt.Sprintf(" (run %d times: the machine stalled past the idle gap)", o.reruns+1)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", o.c.Name, orNone(exp), orNone(got), result)
	}
	return b.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
