package detector

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
)

var (
	// name ILIKE $1: the pattern is bound.
	qSearch = stmt("search", "SELECT id, name FROM users WHERE name ILIKE $1",
		fingerprint.Facts{TablesRead: []string{"users"}, LikeParams: 1, LikeColumns: []string{"name"}})
	// name LIKE '%...%' written in the text (normalized to $1).
	qSearchLit = stmt("search_lit", "SELECT id, name FROM users WHERE name LIKE $1",
		fingerprint.Facts{TablesRead: []string{"users"}, LeadingWildcardLike: true, LikeColumns: []string{"name"}})
	// the same shape with a prefix pattern ('abc%').
	qSearchPrefix = withFacts(qSearchLit, func(f *fingerprint.Facts) { f.LeadingWildcardLike = false })
	// status = $1 AND name LIKE $2: the pattern is $2.
	qSearchSecond = stmt("search_second", "SELECT id FROM users WHERE status = $1 AND name LIKE $2",
		fingerprint.Facts{TablesRead: []string{"users"}, EqualityColumns: []string{"status"}, LikeParams: 1 << 1, LikeColumns: []string{"name"}})
	qDeleteLike = stmt("delete_like", "DELETE FROM sessions WHERE token LIKE $1",
		fingerprint.Facts{Kind: "delete", TablesWritten: []string{"sessions"}, LeadingWildcardLike: true, LikeColumns: []string{"token"}})
	qCatalogLike = stmt("catalog_like", "SELECT relname FROM pg_catalog.pg_class WHERE relname LIKE $1",
		fingerprint.Facts{TablesRead: []string{"pg_catalog.pg_class"}, LeadingWildcardLike: true, LikeColumns: []string{"relname"}})
	// LIMIT 50 OFFSET $2: the offset is bound.
	qPageBound = withFacts(qPage, func(f *fingerprint.Facts) { f.Offset, f.OffsetParam = -1, 2 })
)

// boundPage runs the page query with a bound OFFSET the tracker saw be
// large (deep) or not.
func (tl *timeline) boundPage(i int, deep bool) {
	x := tl.q(qPageBound, uint64(3000+i), 50)
	if deep {
		x.ParamLarge = 1 << 1
	}
}

// patternsRequest appends a request with a leading-wildcard search and a
// deep page: one finding of each kind.
func patternsRequest(tl *timeline) {
	tl.q(qSearch, 11, 3).ParamWildcard = 1
	tl.q(withOffset(qPage, 4000), 0, 50)
}

func TestPatterns(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		build func(tl *timeline)
		want  []string
	}{
		// leading_wildcard
		{
			name:  "a literal pattern that starts with %",
			build: func(tl *timeline) { tl.simple(qSearchLit, 1, 3) },
			want:  []string{"leading_wildcard search_lit n=1 info"},
		},
		{
			name:  "a bound pattern the tracker saw start with a wildcard",
			build: func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			want:  []string{"leading_wildcard search n=1 info"},
		},
		{
			name: "counted over the window",
			build: func(tl *timeline) {
				for i := range 3 {
					tl.q(qSearch, uint64(i+1), 3).ParamWildcard = 1
				}
				tl.q(qSearch, 9, 3) // a prefix search of the same shape
			},
			want: []string{"leading_wildcard search n=3 info"},
		},
		{
			name:  "a DELETE with a leading wildcard",
			build: func(tl *timeline) { tl.q(qDeleteLike, 1, 0) },
			want:  []string{"leading_wildcard delete_like n=1 info"},
		},
		{
			name:  "a prefix pattern is served by a B-tree index",
			build: func(tl *timeline) { tl.simple(qSearchPrefix, 1, 3) },
		},
		{
			name:  "a bound pattern without the bit",
			build: func(tl *timeline) { tl.q(qSearch, 1, 3) },
		},
		{
			name:  "the wildcard bit of another parameter than the pattern",
			build: func(tl *timeline) { tl.q(qSearchSecond, 1, 3).ParamWildcard = 1 },
		},
		{
			name:  "the bit of the pattern's parameter",
			build: func(tl *timeline) { tl.q(qSearchSecond, 1, 3).ParamWildcard = 1 << 1 },
			want:  []string{"leading_wildcard search_second n=1 info"},
		},
		{
			name:  "driver catalog queries are not judged",
			build: func(tl *timeline) { tl.simple(qCatalogLike, 1, 3) },
		},

		// deep_offset
		{
			name:  "a literal OFFSET at the threshold",
			build: func(tl *timeline) { tl.q(withOffset(qPage, 1000), 0, 50) },
			want:  []string{"deep_offset page n=1 warning"},
		},
		{
			name:  "a literal OFFSET below the threshold",
			build: func(tl *timeline) { tl.q(withOffset(qPage, 999), 0, 50) },
		},
		{
			name:  "critical at ten times the threshold",
			build: func(tl *timeline) { tl.q(withOffset(qPage, 10000), 0, 50) },
			want:  []string{"deep_offset page n=1 critical"},
		},
		{
			name:  "a bound OFFSET the tracker saw be large",
			build: func(tl *timeline) { tl.boundPage(0, true) },
			want:  []string{"deep_offset page n=1 warning"},
		},
		{
			name:  "a bound OFFSET that is not",
			build: func(tl *timeline) { tl.boundPage(0, false) },
		},
		{
			name: "a walk of 50-row pages into the table: the deep pages, critical when many",
			build: func(tl *timeline) {
				for off := int64(0); off < 2000; off += 50 {
					tl.q(withOffset(qPage, off), 0, 50)
				}
			},
			want: []string{"deep_offset page n=20 critical"},
		},
		{
			name: "a walk of bound pages",
			build: func(tl *timeline) {
				for i := range 24 {
					tl.boundPage(i, i*50 >= 1000)
				}
			},
			want: []string{"deep_offset page n=4 warning"},
		},
		{
			name: "a walk that stays shallow",
			build: func(tl *timeline) {
				for off := int64(0); off < 1000; off += 50 {
					tl.q(withOffset(qPage, off), 0, 50)
				}
			},
		},
		{
			name:  "the threshold is configurable for literals",
			cfg:   Config{DeepOffset: 5000},
			build: func(tl *timeline) { tl.q(withOffset(qPage, 4000), 0, 50); tl.q(withOffset(qPage, 6000), 0, 50) },
			want:  []string{"deep_offset page n=1 warning"},
		},
		{
			name:  "above the tracker's bound a bound OFFSET is not judged",
			cfg:   Config{DeepOffset: 5000},
			build: func(tl *timeline) { tl.boundPage(0, true) },
		},
		{
			name:  "keyset pagination",
			build: func(tl *timeline) { tl.q(qKeyset, 5000, 50) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTimeline()
			tt.build(tl)
			var got []Finding
			for _, f := range detect(tt.cfg, tl.events) {
				if f.Kind == KindLeadingWildcard || f.Kind == KindDeepOffset {
					got = append(got, f)
				}
			}
			checkSummaries(t, got, tt.want)
		})
	}
}

func TestPatternSuggestions(t *testing.T) {
	got := suggestLeadingWildcard(qSearch)
	for _, w := range []string{"may read every row of users", "CREATE INDEX CONCURRENTLY ON users USING gin (name gin_trgm_ops)",
		"pg_trgm", "to_tsvector(name)", "GinIndex", "@@index([name"} {
		if !strings.Contains(got, w) {
			t.Errorf("leading_wildcard suggestion %q lacks %q", got, w)
		}
	}
	got = suggestDeepOffset(qPage, 1000)
	for _, w := range []string{"OFFSET of 1000 or more", "every page of orders", "WHERE id > $last ORDER BY id LIMIT n",
		"cursor", "MoreThan", "Op.gt", "id__gt", "FindInBatches"} {
		if !strings.Contains(got, w) {
			t.Errorf("deep_offset suggestion %q lacks %q", got, w)
		}
	}
}

// qSearchAlias matches u.name, qualified as written.
var qSearchAlias = stmt("search_alias", "SELECT u.id FROM users u WHERE u.name ILIKE $1",
	fingerprint.Facts{TablesRead: []string{"users"}, LikeParams: 1, LikeColumns: []string{"u.name"}})

// scanUsersLike is the Seq Scan of users, a table of rows rows, under a
// filter that matches name with LIKE.
func scanUsersLike(rows int64) ScanFacts {
	return ScanFacts{Table: "users", Rows: rows, FilterColumns: []string{}, LikeColumns: []string{"name"}, IndexedColumns: []string{"id"}}
}

// runWildcards runs events through a detector with Inspect on, hands each
// request to answer (ok false: no answer ever comes), closes every window,
// gives up on what is left unanswered, and returns the requests and the
// findings of kind.
func runWildcards(t *testing.T, events []Event, kind Kind, answer func(InspectionRequest) (Inspection, bool)) ([]InspectionRequest, []Finding) {
	t.Helper()
	d := New(Config{Inspect: true})
	var out []Finding
	var asked []InspectionRequest
	serve := func() {
		for _, r := range d.Wants() {
			asked = append(asked, r)
			if ins, ok := answer(r); ok {
				out = append(out, d.Inspected(ins)...)
			}
		}
	}
	for _, ev := range events {
		out = append(out, d.Observe(ev)...)
		serve()
	}
	out = append(out, d.Flush()...)
	serve()
	out = append(out, d.Unanswered()...)
	var got []Finding
	for _, f := range out {
		if f.Kind == kind {
			got = append(got, f)
		}
	}
	return asked, got
}

// TestLeadingWildcardInspected: with an inspection connection a leading
// wildcard is judged on its generic plan: definite (warning) when a large
// table is read whole to match the LIKE, not reported when an index serves
// it or the table is small, and "may" (info) when no plan could say.
func TestLeadingWildcardInspected(t *testing.T) {
	definite := func(t *testing.T, f Finding) {
		for _, w := range []string{"its plan reads every row of users (about 20000 rows) with a Seq Scan to match name",
			"CREATE INDEX CONCURRENTLY ON users USING gin (name gin_trgm_ops)", "CREATE EXTENSION IF NOT EXISTS pg_trgm", "to_tsvector(name)"} {
			if !strings.Contains(f.Suggestion, w) {
				t.Errorf("suggestion %q lacks %q", f.Suggestion, w)
			}
		}
		if strings.Contains(f.Suggestion, "may") {
			t.Errorf("a definite finding says may: %s", f.Suggestion)
		}
	}
	may := func(t *testing.T, f Finding) {
		if !strings.Contains(f.Suggestion, "may read every row of users") {
			t.Errorf("a finding without a plan does not say may: %s", f.Suggestion)
		}
	}
	answered := func(scans ...ScanFacts) func(InspectionRequest) (Inspection, bool) {
		return func(r InspectionRequest) (Inspection, bool) {
			return Inspection{Fingerprint: r.Fingerprint, Scans: scans}, true
		}
	}
	cases := []struct {
		name   string
		build  func(tl *timeline)
		answer func(InspectionRequest) (Inspection, bool)
		asked  []string
		want   []string
		check  func(t *testing.T, f Finding)
	}{
		{
			name:   "a bound pattern on a large table read whole",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: answered(scanUsersLike(20_000)),
			asked:  []string{"search"},
			want:   []string{"leading_wildcard search n=1 warning"},
			check:  definite,
		},
		{
			name:   "a literal pattern, inlined by the client",
			build:  func(tl *timeline) { tl.simple(qSearchLit, 1, 3) },
			answer: answered(scanUsersLike(20_000)),
			asked:  []string{"search_lit"},
			want:   []string{"leading_wildcard search_lit n=1 warning"},
			check:  definite,
		},
		{
			name:   "a column qualified as written",
			build:  func(tl *timeline) { tl.q(qSearchAlias, 1, 3).ParamWildcard = 1 },
			answer: answered(scanUsersLike(20_000)),
			asked:  []string{"search_alias"},
			want:   []string{"leading_wildcard search_alias n=1 warning"},
			check:  definite,
		},
		{
			name: "counted over the window",
			build: func(tl *timeline) {
				for i := range 3 {
					tl.q(qSearch, uint64(i+1), 3).ParamWildcard = 1
				}
			},
			answer: answered(scanUsersLike(20_000)),
			asked:  []string{"search"},
			want:   []string{"leading_wildcard search n=3 warning"},
		},
		{
			name:   "a trigram index serves it: no Seq Scan in the plan",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: answered(),
			asked:  []string{"search"},
		},
		{
			name:   "a small table",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: answered(scanUsersLike(9_999)),
			asked:  []string{"search"},
		},
		{
			name:   "the Seq Scan matches another column",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: answered(ScanFacts{Table: "users", Rows: 20_000, LikeColumns: []string{"email"}}),
			asked:  []string{"search"},
		},
		{
			name:   "the Seq Scan compares the column, no LIKE (NOT LIKE, which no index serves)",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: answered(ScanFacts{Table: "users", Rows: 20_000, FilterColumns: []string{"status"}}),
			asked:  []string{"search"},
		},
		{
			name:  "the inspection failed: may",
			build: func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: func(r InspectionRequest) (Inspection, bool) {
				return Inspection{Fingerprint: r.Fingerprint, Err: "permission denied for table users (SQLSTATE 42501)", Scans: []ScanFacts{scanUsersLike(20_000)}}, true
			},
			asked: []string{"search"},
			want:  []string{"leading_wildcard search n=1 info"},
			check: may,
		},
		{
			name:   "never answered: may, at the end",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3).ParamWildcard = 1 },
			answer: func(InspectionRequest) (Inspection, bool) { return Inspection{}, false },
			asked:  []string{"search"},
			want:   []string{"leading_wildcard search n=1 info"},
			check:  may,
		},
		{
			name:   "a write is never planned: may, at once",
			build:  func(tl *timeline) { tl.q(qDeleteLike, 1, 0) },
			answer: answered(ScanFacts{Table: "sessions", Rows: 20_000, LikeColumns: []string{"token"}}),
			want:   []string{"leading_wildcard delete_like n=1 info"},
		},
		{
			name:   "a prefix pattern is not asked about",
			build:  func(tl *timeline) { tl.q(qSearch, 1, 3) },
			answer: answered(scanUsersLike(20_000)),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := newTimeline()
			c.build(tl)
			asked, got := runWildcards(t, tl.events, KindLeadingWildcard, c.answer)
			var names []string
			for _, r := range asked {
				names = append(names, nameOf(r.Hex))
			}
			if !slices.Equal(names, c.asked) {
				t.Errorf("asked for %v, want %v", names, c.asked)
			}
			checkSummaries(t, got, c.want)
			if c.check != nil && len(got) == 1 {
				c.check(t, got[0])
			}
		})
	}
}

// TestLeadingWildcardWithoutInspect: without an inspection connection the
// finding is the "may" one at once, and nothing is asked.
func TestLeadingWildcardWithoutInspect(t *testing.T) {
	tl := newTimeline()
	tl.q(qSearch, 1, 3).ParamWildcard = 1
	d := New(Config{})
	var got []Finding
	for _, ev := range tl.events {
		got = append(got, d.Observe(ev)...)
	}
	got = append(got, d.Flush()...)
	checkSummaries(t, got, []string{"leading_wildcard search n=1 info"})
	if len(got) == 1 && !strings.Contains(got[0].Suggestion, "may read every row of users") {
		t.Errorf("suggestion %q does not say may", got[0].Suggestion)
	}
	if w := d.Wants(); w != nil {
		t.Errorf("asked for %v without Inspect", w)
	}
	if fs := d.Unanswered(); fs != nil {
		t.Errorf("Unanswered reported %v without Inspect", summaries(fs))
	}
}

// TestLeadingWildcardUnansweredExpires: an occurrence whose inspection never
// answers is reported as "may" once 30s of event time passed since its
// window, by Advance; an answer that comes later reports nothing more.
func TestLeadingWildcardUnansweredExpires(t *testing.T) {
	tl := newTimeline()
	tl.q(qSearch, 1, 3).ParamWildcard = 1
	end := tl.now
	d := New(Config{Inspect: true})
	for _, ev := range tl.events {
		d.Observe(ev)
	}
	if fs := d.Advance(end.Add(time.Second)); len(fs) != 0 {
		t.Fatalf("reported %v before the answer", summaries(fs))
	}
	if w := d.Wants(); len(w) != 1 || w[0].Fingerprint != qSearch.ID || strings.Contains(w[0].Query, "%") {
		t.Fatalf("wants %+v, want the search's normalized text", w)
	}
	if fs := d.Advance(end.Add(29 * time.Second)); len(fs) != 0 {
		t.Errorf("reported %v before 30s", summaries(fs))
	}
	fs := d.Advance(end.Add(30*time.Second + DefaultIdleGap))
	checkSummaries(t, fs, []string{"leading_wildcard search n=1 info"})
	if fs := d.Inspected(Inspection{Fingerprint: qSearch.ID, Scans: []ScanFacts{scanUsersLike(20_000)}}); len(fs) != 0 {
		t.Errorf("a late answer reported %v", summaries(fs))
	}
	if fs := d.Unanswered(); len(fs) != 0 {
		t.Errorf("Unanswered reported %v again", summaries(fs))
	}
	if st := d.Stats(); st.Found[KindLeadingWildcard] != 1 || st.Reported[KindLeadingWildcard] != 1 {
		t.Errorf("found %d reported %d, want 1 and 1", st.Found[KindLeadingWildcard], st.Reported[KindLeadingWildcard])
	}
}

// TestLeadingWildcardWaitsThroughTheCooldown: occurrences of two windows
// wait for one answer, which reports the first and counts the second as
// held back by the cooldown, as without an inspection.
func TestLeadingWildcardWaitsThroughTheCooldown(t *testing.T) {
	tl := newTimeline()
	tl.q(qSearch, 1, 3).ParamWildcard = 1
	tl.wait(2 * time.Second)
	tl.q(qSearch, 2, 3).ParamWildcard = 1
	tl.q(qSearch, 3, 3).ParamWildcard = 1
	d := New(Config{Inspect: true})
	for _, ev := range tl.events {
		d.Observe(ev)
	}
	d.Flush()
	if w := d.Wants(); len(w) != 1 {
		t.Fatalf("wants %+v, want one request for both windows", w)
	}
	fs := d.Inspected(Inspection{Fingerprint: qSearch.ID, Scans: []ScanFacts{scanUsersLike(20_000)}})
	checkSummaries(t, fs, []string{"leading_wildcard search n=1 warning"})
	if st := d.Stats(); st.Found[KindLeadingWildcard] != 2 || st.Suppressed[KindLeadingWildcard] != 1 {
		t.Errorf("found %d suppressed %d, want 2 and 1", st.Found[KindLeadingWildcard], st.Suppressed[KindLeadingWildcard])
	}
}

// TestLeadingWildcardDeterministic: the same events and answers give the
// same findings, byte for byte in JSON, with no value of the pattern.
func TestLeadingWildcardDeterministic(t *testing.T) {
	run := func() string {
		tl := newTimeline()
		tl.q(qSearch, 1, 3).ParamWildcard = 1
		tl.wait(time.Second)
		tl.simple(qSearchLit, 2, 3)
		_, got := runWildcards(t, tl.events, KindLeadingWildcard, func(r InspectionRequest) (Inspection, bool) {
			return Inspection{Fingerprint: r.Fingerprint, Scans: []ScanFacts{scanUsersLike(20_000)}}, true
		})
		return strings.Join(jsonLines(got), "\n")
	}
	a, b := run(), run()
	if a == "" || a != b || strings.Count(a, `"severity":"warning"`) != 2 {
		t.Errorf("two runs differ or did not find both searches:\n%s\n---\n%s", a, b)
	}
}
