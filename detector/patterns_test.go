package detector

import (
	"strings"
	"testing"

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
