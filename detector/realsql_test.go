package detector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// These tests feed SQL as drivers and ORMs send it through the real
// fingerprint package, so the rules are checked against the facts it really
// produces, not against hand-made ones.

// sqlTimeline is a timeline of SQL texts.
type sqlTimeline struct {
	*timeline
	cache *fingerprint.Cache
}

func newSQLTimeline() *sqlTimeline {
	return &sqlTimeline{timeline: newTimeline(), cache: fingerprint.New(fingerprint.Options{})}
}

// ext runs sql over the extended protocol with parameters hashing to params.
func (tl *sqlTimeline) ext(sql string, params uint64, rows int64) *pgwire.Execution {
	return tl.run(sql, 0, "extended", params, rows)
}

// simple runs sql (literals inline) over the simple protocol.
func (tl *sqlTimeline) simple(sql string, rows int64) *pgwire.Execution {
	return tl.run(sql, 0, "simple", 0, rows)
}

func (tl *sqlTimeline) run(sql string, index int, protocol string, params uint64, rows int64) *pgwire.Execution {
	r := tl.cache.Of(sql)
	st := &r.Statements[index]
	names[st.Hex] = shortName(st)
	x := &pgwire.Execution{
		Conn: tl.conn, Start: tl.now, End: tl.now.Add(time.Millisecond),
		SQL: sql, StatementIndex: index, Protocol: protocol,
		ParamsHash: params, Command: strings.ToUpper(string(st.Facts.Kind)), Rows: rows,
	}
	if params != 0 {
		x.NumParams = 1
	}
	tl.now = x.End
	tl.events = append(tl.events, Event{Exec: x, Stmt: st, TraceID: r.TraceID, Tags: r.Tags})
	return x
}

// shortName names a real statement in summaries: its first table, or its
// text when it has none.
func shortName(st *fingerprint.Statement) string {
	if t := first(st.Facts.TablesRead); t != "" {
		return "sql:" + t
	}
	return "sql:" + st.Normalized
}

func TestRealSQL(t *testing.T) {
	const prismaUser = `SELECT "public"."User"."id", "public"."User"."email", "public"."User"."name" FROM "public"."User" WHERE ("public"."User"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`
	const prismaOrders = `SELECT "public"."Order"."id", "public"."Order"."userId" FROM "public"."Order" WHERE 1=1 OFFSET $1`
	tests := []struct {
		name       string
		build      func(tl *sqlTimeline)
		want       []string
		suggestion string // substring of the first finding's suggestion
	}{
		{
			name: "Prisma findUnique per order",
			build: func(tl *sqlTimeline) {
				tl.ext(prismaOrders, 1, 12)
				for i := range 12 {
					tl.ext(prismaUser, uint64(100+i), 1)
					tl.wait(work)
				}
			},
			want:       []string{"n_plus_one sql:public.User n=12 d=12 src=sql:public.Order/12 warning"},
			suggestion: "Fetch these rows in one query with `WHERE id = ANY($1)` over the keys the source query returned, or JOIN public.\"User\" into the source query on id",
		},
		{
			name: "Prisma include: one IN query",
			build: func(tl *sqlTimeline) {
				tl.ext(prismaOrders, 1, 12)
				tl.ext(`SELECT "public"."User"."id", "public"."User"."name" FROM "public"."User" WHERE "public"."User"."id" IN ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) OFFSET $13`, 2, 12)
			},
		},
		{
			name: "node-postgres with inline literals, SELECT *",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT id, user_id FROM orders WHERE status = 'paid'", 6)
				for i := range 6 {
					tl.simple(fmt.Sprintf("SELECT * FROM users WHERE id = %d", 40+i), 1)
				}
			},
			want: []string{
				"n_plus_one sql:users n=6 d=6 src=sql:orders/6 warning",
				"select_star sql:users n=6 warning",
			},
			suggestion: "`WHERE id = ANY($1)`",
		},
		{
			name: "TypeORM-style camelCase foreign key",
			build: func(tl *sqlTimeline) {
				tl.ext(`SELECT "Order"."id" AS "Order_id" FROM "order" "Order"`, 0, 7)
				for i := range 7 {
					tl.ext(`SELECT "Item"."id" AS "Item_id" FROM "order_item" "Item" WHERE "Item"."orderId" = $1`, uint64(i+1), 2)
				}
			},
			want:       []string{"n_plus_one sql:order_item n=7 d=7 src=sql:order/7 warning"},
			suggestion: "`WHERE \"orderId\" = ANY($1)`",
		},
		{
			name: "nested: items per order, product per item",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT id FROM orders WHERE user_id = 7", 5)
				for o := range 5 {
					tl.simple(fmt.Sprintf("SELECT id, product_id FROM order_items WHERE order_id = %d", o+1), 3)
					for i := range 3 {
						tl.simple(fmt.Sprintf("SELECT name, price FROM products WHERE id = %d", 100+3*o+i), 1)
					}
				}
			},
			want: []string{
				"n_plus_one sql:order_items n=5 d=5 src=sql:orders/5 warning",
				"n_plus_one sql:products n=15 d=15 src=sql:order_items/15 warning",
			},
			suggestion: "`WHERE order_id = ANY($1)`",
		},
		{
			name: "status and user_id: the key column is named",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT id FROM users WHERE active", 5)
				for i := range 5 {
					tl.simple(fmt.Sprintf("SELECT id FROM orders WHERE status = 'paid' AND user_id = %d", i), 2)
				}
			},
			want:       []string{"n_plus_one sql:orders n=5 d=5 src=sql:users/5 warning"},
			suggestion: "`WHERE user_id = ANY($1)`",
		},
		{
			name: "= ANY($1) batch",
			build: func(tl *sqlTimeline) {
				tl.ext("SELECT id, user_id FROM orders WHERE status = $1", 1, 30)
				tl.ext("SELECT id, name FROM users WHERE id = ANY($1)", 2, 30)
			},
		},
		{
			name: "JOIN",
			build: func(tl *sqlTimeline) {
				tl.ext("SELECT o.id, u.name FROM orders o JOIN users u ON u.id = o.user_id WHERE o.status = $1", 1, 30)
			},
		},
		{
			name: "SELECT count(*) over many rows",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT count(*) FROM orders", 1)
				tl.simple("SELECT count(*) FROM orders WHERE status = 'paid'", 1)
			},
		},
		{
			name: "SELECT 1 health checks",
			build: func(tl *sqlTimeline) {
				for range 10 {
					tl.simple("SELECT 1", 1)
					tl.ext("SELECT 1", 0, 1)
				}
			},
		},
		{
			name: "LIMIT 50 OFFSET n pages, literals",
			build: func(tl *sqlTimeline) {
				for i := range 10 {
					tl.simple(fmt.Sprintf("SELECT id, total FROM orders WHERE user_id = 7 ORDER BY id LIMIT 50 OFFSET %d", 50*i), 50)
				}
			},
		},
		{
			name: "LIMIT $1 OFFSET $2 pages, parameters",
			build: func(tl *sqlTimeline) {
				for i := range 10 {
					tl.ext("SELECT id, total FROM orders ORDER BY id LIMIT $1 OFFSET $2", uint64(i+1), 50)
				}
			},
		},
		{
			name: "FETCH FIRST pages of one user",
			build: func(tl *sqlTimeline) {
				for i := range 6 {
					tl.ext("SELECT id FROM orders WHERE user_id = $1 ORDER BY id OFFSET $2 ROWS FETCH FIRST 50 ROWS ONLY", uint64(i+1), 50)
				}
			},
		},
		{
			// Every run fills its LIMIT and there is no OFFSET: a loop over
			// parents, not a page walk (which ends on a short page).
			name: "latest 3 items of each order",
			build: func(tl *sqlTimeline) {
				tl.ext("SELECT id FROM orders WHERE user_id = $1", 7, 6)
				for i := range 6 {
					tl.ext("SELECT id, product_id FROM order_items WHERE order_id = $1 ORDER BY id DESC LIMIT 3", uint64(i+1), 3)
				}
			},
			want: []string{"n_plus_one sql:order_items n=6 d=6 src=sql:orders/6 warning"},
		},
		{
			name: "keyset pages of one user's orders end on a short page",
			build: func(tl *sqlTimeline) {
				for i := range 6 {
					rows := int64(50)
					if i == 5 {
						rows = 12
					}
					tl.ext("SELECT id FROM orders WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT 50", uint64(i+1), rows)
				}
			},
		},
		{
			name: "driver and ORM introspection",
			build: func(tl *sqlTimeline) {
				for i := range 8 {
					tl.ext("SELECT typname, typtype FROM pg_type WHERE oid = $1", uint64(i+1), 1)
					tl.ext("SELECT column_name FROM information_schema.columns WHERE table_name = $1", uint64(i+1), 5)
				}
			},
		},
		{
			name: "unpaginated SELECT *",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT * FROM orders", 4200)
			},
			want: []string{
				"unpaginated sql:orders n=1 rows=4200 warning",
				"select_star sql:orders n=1 warning",
			},
			suggestion: "keyset pagination",
		},
		{
			name: "a multi-statement simple query",
			build: func(tl *sqlTimeline) {
				for i := range 3 {
					text := fmt.Sprintf("SELECT id FROM users WHERE id = %d; SELECT id FROM sessions WHERE user_id = %d", i, i)
					tl.run(text, 0, "simple", 0, 1)
					tl.run(text, 1, "simple", 0, 1)
				}
				for range 3 {
					tl.run("SELECT id FROM users WHERE id = 9; SELECT id FROM sessions WHERE user_id = 9", 1, "simple", 0, 1)
				}
			},
			want: []string{"duplicate_query sql:sessions n=3 d=1 warning"},
		},
		{
			name: "sqlcommenter trace across pooled connections",
			build: func(tl *sqlTimeline) {
				const c = "/*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',route='%2Fusers'*/"
				tl.simple("SELECT id FROM users WHERE active "+c, 6)
				for i := range 6 {
					tl.on(uint64(1 + i%3))
					tl.simple(fmt.Sprintf("SELECT street FROM addresses WHERE user_id = %d %s", i, c), 1)
				}
			},
			want: []string{"n_plus_one sql:addresses n=6 d=6 src=sql:users/6 warning"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newSQLTimeline()
			tt.build(tl)
			got := detect(Config{}, tl.events)
			checkSummaries(t, got, tt.want)
			if tt.suggestion != "" && len(got) > 0 && !strings.Contains(got[0].Suggestion, tt.suggestion) {
				t.Errorf("suggestion %q does not contain %q", got[0].Suggestion, tt.suggestion)
			}
		})
	}
}

// TestRealSQLNoLiterals: literal values in the SQL never reach a finding.
func TestRealSQLNoLiterals(t *testing.T) {
	secrets := []string{"alice@example.com", "4111111111111111", "hunter2", "98765"}
	tl := newSQLTimeline()
	tl.simple("SELECT * FROM orders WHERE status = 'hunter2' /* app='shop' */", 5000)
	for i := range 6 {
		tl.simple(fmt.Sprintf("SELECT * FROM users WHERE email = 'alice@example.com' AND card = '4111111111111111' AND id = %d", 98765+i), 1)
	}
	for range 3 {
		tl.simple("SELECT token FROM sessions WHERE secret = 'hunter2' LIMIT 1", 1)
	}
	got := detect(Config{}, tl.events)
	kinds := map[Kind]bool{}
	for _, f := range got {
		kinds[f.Kind] = true
	}
	if len(kinds) != 4 {
		t.Fatalf("got %v, want one finding of each kind", summaries(got))
	}
	for _, line := range jsonLines(got) {
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("finding contains the literal %q: %s", s, line)
			}
		}
	}
}
