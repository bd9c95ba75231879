package detector

import (
	"strings"
	"testing"
	"time"
)

// work is what a loop iteration does between two queries: formatting,
// validation, a cache call.
const work = 3 * time.Millisecond

func TestRules(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		build func(tl *timeline)
		want  []string
	}{
		// n_plus_one
		{
			name: "n+1 over the rows of a source query",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 10)
				tl.loop(qUser, 10, 1, work)
			},
			want: []string{"n_plus_one user n=10 d=10 src=orders/10 warning"},
		},
		{
			name: "n+1 with a few ms of work per iteration",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 20)
				tl.loop(qUser, 20, 1, 8*time.Millisecond)
			},
			want: []string{"n_plus_one user n=20 d=20 src=orders/20 warning"},
		},
		{
			name: "loop below the threshold is honest",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 4)
				tl.loop(qUser, 4, 1, work)
			},
		},
		{
			name: "loop at the threshold is flagged",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 5)
				tl.loop(qUser, 5, 1, work)
			},
			want: []string{"n_plus_one user n=5 d=5 src=orders/5 warning"},
		},
		{
			name: "threshold is configurable",
			cfg:  Config{NPlusOneThreshold: 10},
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 9)
				tl.loop(qUser, 9, 1, work)
			},
		},
		{
			name: "critical by count",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 50)
				tl.loop(qUser, 50, 1, 0)
			},
			want: []string{"n_plus_one user n=50 d=50 src=orders/50 critical"},
		},
		{
			name: "critical by summed duration",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 5)
				for i := range 5 {
					tl.qd(qUser, uint64(i+1), 1, 250*time.Millisecond)
				}
			},
			want: []string{"n_plus_one user n=5 d=5 src=orders/5 critical"},
		},
		{
			name: "interleaved A B A B: two n+1s over the same source",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 10)
				for i := range 10 {
					tl.q(qUser, uint64(100+i), 1)
					tl.q(qAddress, uint64(100+i), 1)
					tl.wait(work)
				}
			},
			want: []string{
				"n_plus_one user n=10 d=10 src=orders/10 warning",
				"n_plus_one address n=10 d=10 src=orders/10 warning",
			},
		},
		{
			name: "nested loops: items per order, product per item",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 5)
				for o := range 5 {
					tl.q(qItems, uint64(100+o), 2)
					for i := range 2 {
						tl.q(qProduct, uint64(1000+10*o+i), 1)
						tl.wait(work)
					}
				}
			},
			want: []string{
				"n_plus_one items n=5 d=5 src=orders/5 warning",
				"n_plus_one product n=10 d=10 src=items/10 warning",
			},
		},
		{
			name: "no earlier query returned enough rows",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 3)
				tl.loop(qUser, 10, 1, work)
			},
			want: []string{"n_plus_one user n=10 d=10 src=none warning"},
		},
		{
			name: "source is the nearest query with enough rows",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 10)
				tl.q(qSession, 1, 1)
				tl.loop(qUser, 10, 1, work)
			},
			want: []string{"n_plus_one user n=10 d=10 src=orders/10 warning"},
		},
		{
			name: "source can be a write with RETURNING",
			build: func(tl *timeline) {
				tl.q(qInsertRet, 0, 6)
				tl.loop(qUser, 6, 1, work)
			},
			want: []string{"n_plus_one user n=6 d=6 src=insert_returning/6 warning"},
		},
		{
			name: "a loop revisiting keys is one n+1, not a duplicate too",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 11)
				for _, k := range []uint64{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1} {
					tl.q(qUser, k, 1)
				}
			},
			want: []string{"n_plus_one user n=11 d=5 src=orders/11 warning"},
		},
		{
			name: "simple protocol: literals are the parameters",
			build: func(tl *timeline) {
				tl.simple(qOrders, 1, 6)
				for i := range 6 {
					tl.simple(qUser, uint64(50+i), 1)
				}
			},
			want: []string{"n_plus_one user n=6 d=6 src=orders/6 warning"},
		},
		{
			name: "Prisma findUnique in a loop despite LIMIT $2 OFFSET $3",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 8)
				tl.loop(qPrisma, 8, 1, work)
			},
			want: []string{"n_plus_one prisma_user n=8 d=8 src=orders/8 warning"},
		},
		{
			name: "count per row is an n+1",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 6)
				tl.loop(qCountPer, 6, 1, work)
			},
			want: []string{"n_plus_one count_per_user n=6 d=6 src=orders/6 warning"},
		},

		// duplicate_query
		{
			name: "same query, same parameters, three times",
			build: func(tl *timeline) {
				for range 3 {
					tl.q(qSession, 42, 1)
					tl.wait(work)
				}
			},
			want: []string{"duplicate_query session n=3 d=1 warning"},
		},
		{
			name: "twice is not a duplicate",
			build: func(tl *timeline) {
				tl.q(qSession, 42, 1)
				tl.q(qSession, 42, 1)
			},
		},
		{
			name: "repeats over too few keys are duplicates",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 6)
				for _, k := range []uint64{1, 1, 1, 2, 2, 2, 3} {
					tl.q(qUser, k, 1)
				}
			},
			want: []string{"duplicate_query user n=6 d=2 warning"},
		},
		{
			name: "duplicate critical",
			build: func(tl *timeline) {
				for range 30 {
					tl.q(qSession, 42, 1)
				}
			},
			want: []string{"duplicate_query session n=30 d=1 critical"},
		},
		{
			name: "simple protocol: same literals are a duplicate",
			build: func(tl *timeline) {
				for range 3 {
					tl.simple(qSession, 7, 1)
				}
			},
			want: []string{"duplicate_query session n=3 d=1 warning"},
		},

		// unpaginated
		{
			name: "unpaginated read",
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 5000)
			},
			want: []string{"unpaginated all_orders n=1 rows=5000 warning"},
		},
		{
			name: "unpaginated at the threshold",
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 1000)
			},
			want: []string{"unpaginated all_orders n=1 rows=1000 warning"},
		},
		{
			name: "unpaginated critical",
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 10000)
			},
			want: []string{"unpaginated all_orders n=1 rows=10000 critical"},
		},
		{
			name: "999 rows are fine",
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 999)
			},
		},
		{
			name: "unpaginated reports the largest row count",
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 1500)
				tl.q(qAllOrders, 0, 3000)
			},
			want: []string{"unpaginated all_orders n=2 rows=3000 warning"},
		},
		{
			name: "a LIMIT is pagination even when large",
			build: func(tl *timeline) {
				tl.q(qLimited, 1, 5000)
			},
		},
		{
			name: "row threshold is configurable",
			cfg:  Config{UnpaginatedRows: 100},
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 150)
			},
			want: []string{"unpaginated all_orders n=1 rows=150 warning"},
		},

		// select_star
		{
			name: "select star is info",
			build: func(tl *timeline) {
				tl.q(qStarUser, 1, 1)
			},
			want: []string{"select_star star_user n=1 info"},
		},
		{
			name: "select star in an n+1 is a warning",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 6)
				tl.loop(qStarUser, 6, 1, work)
			},
			want: []string{
				"n_plus_one star_user n=6 d=6 src=orders/6 warning",
				"select_star star_user n=6 warning",
			},
		},
		{
			name: "select star unpaginated is a warning",
			build: func(tl *timeline) {
				tl.q(qStarOrders, 0, 2000)
			},
			want: []string{
				"unpaginated star_orders n=1 rows=2000 warning",
				"select_star star_orders n=1 warning",
			},
		},
		{
			name: "select star once per fingerprint",
			build: func(tl *timeline) {
				tl.q(qStarUser, 1, 1)
				tl.wait(time.Second)
				tl.q(qStarUser, 2, 1)
				tl.wait(2 * time.Minute)
				tl.on(2).q(qStarUser, 3, 1)
			},
			want: []string{"select_star star_user n=1 info"},
		},

		// must not flag
		{
			name: "one lookup per request on a pooled connection",
			build: func(tl *timeline) {
				for i := range 20 {
					tl.on(uint64(1 + i%3))
					tl.q(qOne, 0, 1) // the pool's health check
					tl.q(qSession, uint64(500+i), 1)
					tl.q(qUser, uint64(100+i), 1)
					tl.wait(150 * time.Millisecond)
				}
			},
		},
		{
			name: "one lookup per request, all on one connection",
			build: func(tl *timeline) {
				for i := range 20 {
					tl.q(qSession, uint64(500+i), 1)
					tl.q(qUser, uint64(100+i), 1)
					tl.wait(250 * time.Millisecond)
				}
			},
		},
		{
			name: "batched = ANY($1)",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 10)
				tl.q(qUsersAny, 2, 10)
			},
		},
		{
			name: "JOIN",
			build: func(tl *timeline) {
				tl.q(qJoin, 1, 10)
			},
		},
		{
			name: "ORM eager load IN (...)",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 3)
				tl.q(qUsersIn, 2, 3)
			},
		},
		{
			name: "SELECT count(*)",
			build: func(tl *timeline) {
				tl.q(qCount, 0, 1)
			},
		},
		{
			name: "SELECT 1 health checks",
			build: func(tl *timeline) {
				for range 20 {
					tl.q(qOne, 0, 1)
					tl.wait(20 * time.Millisecond)
				}
			},
		},
		{
			name: "LIMIT 50 OFFSET n pages",
			build: func(tl *timeline) {
				for i := range 10 {
					tl.q(qPage, uint64(i+1), 50)
					tl.wait(work)
				}
			},
		},
		{
			name: "pages with literal offsets, simple protocol",
			build: func(tl *timeline) {
				for i := range 10 {
					tl.q(withOffset(qUserPage, int64(50*i)), 0, 50).Protocol = "simple"
				}
			},
		},
		{
			name: "pages of one user's orders, extended protocol",
			build: func(tl *timeline) {
				for i := range 6 {
					rows := int64(50)
					if i == 5 {
						rows = 20
					}
					tl.q(qUserPage, uint64(i+1), rows)
				}
			},
		},
		{
			name: "keyset pagination",
			build: func(tl *timeline) {
				for i := range 8 {
					tl.q(qKeyset, uint64(i+1), 100)
				}
			},
		},
		{
			name: "failed statements do not count",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 10)
				for i := range 10 {
					x := tl.q(qUser, uint64(i+1), -1)
					x.SQLState, x.Command = "57014", ""
				}
			},
		},
		{
			// Writes are judged for N+1s (writes_test.go), never as
			// duplicates: three identical UPDATEs are not redundant.
			name: "identical writes are not duplicates",
			build: func(tl *timeline) {
				for range 3 {
					tl.q(qUpdate, 9, 1)
				}
				for range 4 {
					tl.q(qInsert, 7, 1)
				}
			},
		},
		{
			name: "driver catalog lookups",
			build: func(tl *timeline) {
				tl.loop(qPgType, 10, 1, 0)
			},
		},
		{
			name: "catalog lookups judged on request",
			cfg:  Config{JudgeCatalogs: true},
			build: func(tl *timeline) {
				tl.loop(qPgType, 10, 1, 0)
			},
			want: []string{"n_plus_one pg_type n=10 d=10 src=none warning"},
		},
		{
			name: "statements without a fingerprint",
			build: func(tl *timeline) {
				tl.loop(qUser, 10, 1, 0)
				for i := range tl.events {
					tl.events[i].Stmt = nil
				}
			},
		},

		// windows
		{
			name: "transaction end closes the window",
			build: func(tl *timeline) {
				for tx := range 2 {
					tl.q(qBegin, 0, -1)
					for i := range 3 {
						tl.q(qUser, uint64(10*tx+i+1), 1)
					}
					tl.q(qCommit, 0, -1).TxEnd = true
				}
			},
		},
		{
			name: "same statements without transactions",
			build: func(tl *timeline) {
				for i := range 6 {
					tl.q(qUser, uint64(i+1), 1)
				}
			},
			want: []string{"n_plus_one user n=6 d=6 src=none warning"},
		},
		{
			name: "idle gap just under keeps one window",
			build: func(tl *timeline) {
				tl.loop(qUser, 6, 1, DefaultIdleGap-time.Nanosecond)
			},
			want: []string{"n_plus_one user n=6 d=6 src=none warning"},
		},
		{
			name: "idle gap reached splits windows",
			build: func(tl *timeline) {
				tl.loop(qUser, 6, 1, DefaultIdleGap)
			},
		},
		{
			name: "idle gap is configurable",
			cfg:  Config{IdleGap: time.Second},
			build: func(tl *timeline) {
				tl.loop(qUser, 6, 1, 500*time.Millisecond)
			},
			want: []string{"n_plus_one user n=6 d=6 src=none warning"},
		},
		{
			name: "max window splits a busy connection",
			cfg:  Config{MaxWindow: 200 * time.Millisecond},
			build: func(tl *timeline) {
				tl.loop(qUser, 8, 1, 49*time.Millisecond)
			},
		},
		{
			name: "same busy connection within the default max window",
			build: func(tl *timeline) {
				tl.loop(qUser, 8, 1, 49*time.Millisecond)
			},
			want: []string{"n_plus_one user n=8 d=8 src=none warning"},
		},
		{
			name: "max events closes the window early",
			cfg:  Config{MaxWindowEvents: 4},
			build: func(tl *timeline) {
				tl.loop(qUser, 8, 1, 0)
			},
		},
		{
			name: "a trace groups across pooled connections",
			build: func(tl *timeline) {
				tl.trace = "4bf92f3577b34da6a3ce929d0e0e4736"
				tl.q(qOrders, 1, 6)
				for i := range 6 {
					tl.on(uint64(1+i%3)).q(qUser, uint64(i+1), 1)
				}
			},
			want: []string{"n_plus_one user n=6 d=6 src=orders/6 warning"},
		},
		{
			name: "separate traces on one connection do not merge",
			build: func(tl *timeline) {
				for _, trace := range []string{"aaaa", "bbbb"} {
					tl.trace = trace
					for i := range 3 {
						tl.q(qUser, uint64(len(trace)+i), 1)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTimeline()
			tt.build(tl)
			checkSummaries(t, detect(tt.cfg, tl.events), tt.want)
		})
	}
}

func TestTraceFields(t *testing.T) {
	tl := newTimeline()
	tl.trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tl.tags = map[string]string{"route": "/orders/:id", "framework": "express"}
	tl.q(qOrders, 1, 6)
	tl.loop(qUser, 6, 1, work)
	got := detect(Config{}, tl.events)
	if len(got) != 1 {
		t.Fatalf("got %d findings, want 1", len(got))
	}
	f := got[0]
	if f.TraceID != tl.trace || f.Tags["route"] != "/orders/:id" {
		t.Errorf("got trace %q tags %v, want the sqlcommenter values", f.TraceID, f.Tags)
	}
	if f.Connection.ID != 1 || f.ApplicationName != "shop-api" || f.Connection.ApplicationName != "shop-api" {
		t.Errorf("got connection %+v, application_name %q", f.Connection, f.ApplicationName)
	}
	if !f.WindowStart.Equal(t0) || !f.WindowEnd.Equal(tl.now.Add(-work)) || !f.Time.Equal(f.WindowEnd) {
		t.Errorf("got window %v..%v time %v", f.WindowStart, f.WindowEnd, f.Time)
	}
	if f.DurationMS != 6 {
		t.Errorf("got duration_ms %v, want 6 (six 1ms lookups)", f.DurationMS)
	}
}

func TestSuggestions(t *testing.T) {
	tests := []struct {
		name  string
		build func(tl *timeline)
		want  []string // substrings of the first finding's suggestion
	}{
		{
			name: "n+1 with source names column, join and ORMs",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 6)
				tl.loop(qUser, 6, 1, work)
			},
			want: []string{"`WHERE id = ANY($1)`", "JOIN users into the source query on id", "Prisma include", "GORM Preload"},
		},
		{
			name: "n+1 without source says so",
			build: func(tl *timeline) {
				tl.loop(qItems, 6, 1, work)
			},
			want: []string{"No earlier query in this window returned 6 or more rows", "`WHERE order_id = ANY($1)`"},
		},
		{
			name: "count per row groups",
			build: func(tl *timeline) {
				tl.q(qOrders, 1, 6)
				tl.loop(qCountPer, 6, 1, work)
			},
			want: []string{"`WHERE user_id = ANY($1) GROUP BY user_id`"},
		},
		{
			name: "duplicate",
			build: func(tl *timeline) {
				for range 4 {
					tl.q(qSession, 1, 1)
				}
			},
			want: []string{"ran 4 times", "run it once and reuse"},
		},
		{
			name: "unpaginated",
			build: func(tl *timeline) {
				tl.q(qAllOrders, 0, 4000)
			},
			want: []string{"4000 rows", "keyset pagination", "LIMIT n"},
		},
		{
			name: "select star",
			build: func(tl *timeline) {
				tl.q(qStarUser, 1, 1)
			},
			want: []string{"Name the columns you use", "FROM users"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTimeline()
			tt.build(tl)
			got := detect(Config{}, tl.events)
			if len(got) == 0 {
				t.Fatal("got no finding")
			}
			s := got[0].Suggestion
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("suggestion %q does not contain %q", s, w)
				}
			}
			if n := strings.Count(strings.TrimSuffix(s, "."), ". "); n > 1 {
				t.Errorf("suggestion %q has %d sentences, want one or two", s, n+1)
			}
		})
	}
}
