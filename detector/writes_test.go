package detector

import (
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

var (
	qAudit = stmt("audit", "INSERT INTO audit_log (order_id, note) VALUES ($1, $2)",
		fingerprint.Facts{Kind: "insert", TablesWritten: []string{"audit_log"}, ValuesRows: 1})
	qSetStatus = stmt("set_status", "UPDATE orders SET status = $2 WHERE id = $1",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"orders"}, EqualityColumns: []string{"id"}})
	qDelItem = stmt("del_item", "DELETE FROM order_items WHERE id = $1",
		fingerprint.Facts{Kind: "delete", TablesWritten: []string{"order_items"}, EqualityColumns: []string{"id"}})
	qTouchAll = stmt("touch_all", "UPDATE orders SET seen = now()",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"orders"}, NoWhere: true})
	qCatalogWrite = stmt("catalog_write", "UPDATE pg_catalog.pg_class SET relhasindex = $1 WHERE oid = $2",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"pg_catalog.pg_class"}, EqualityColumns: []string{"oid"}})

	// pgbench's tpcb-like transaction.
	qAcctUpd = stmt("acct_upd", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"pgbench_accounts"}, EqualityColumns: []string{"aid"}})
	qAcctSel = stmt("acct_sel", "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
		fingerprint.Facts{TablesRead: []string{"pgbench_accounts"}, EqualityColumns: []string{"aid"}})
	qTellerUpd = stmt("teller_upd", "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"pgbench_tellers"}, EqualityColumns: []string{"tid"}})
	qBranchUpd = stmt("branch_upd", "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"pgbench_branches"}, EqualityColumns: []string{"bid"}})
	qHistIns = stmt("hist_ins", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
		fingerprint.Facts{Kind: "insert", TablesWritten: []string{"pgbench_history"}, ValuesRows: 1})
)

// withFacts is st (same fingerprint) as another text of it would read:
// facts changed by fn.
func withFacts(st *fingerprint.Statement, fn func(*fingerprint.Facts)) *fingerprint.Statement {
	c := *st
	f := *st.Facts
	fn(&f)
	c.Facts = &f
	return &c
}

// tx runs fn inside BEGIN ... COMMIT: its executions are in a transaction
// block and COMMIT ends it. It returns COMMIT's execution.
func (tl *timeline) tx(fn func()) *pgwire.Execution {
	tl.q(qBegin, 0, -1).InTransaction = true
	from := len(tl.events)
	fn()
	for _, ev := range tl.events[from:] {
		ev.Exec.InTransaction = true
	}
	x := tl.q(qCommit, 0, -1)
	x.InTransaction, x.TxEnd = true, true
	return x
}

// write runs the write st with key k (its ParamKeys) writing rows rows.
func (tl *timeline) write(st *fingerprint.Statement, k int, rows int64) *pgwire.Execution {
	x := tl.q(st, uint64(2_000_000+k), rows)
	x.ParamKeys = key(k)
	return x
}

// tpcb is one pgbench tpcb-like transaction with random-looking keys.
func (tl *timeline) tpcb(i int) {
	tl.tx(func() {
		aid, tid, bid, delta := 1+(i*7919)%100000, 1+(i*31)%20, 1+i%2, (i*37)%10000-5000
		tl.write(qAcctUpd, aid, 1).ParamsHash = uint64(1+i)<<20 | uint64(aid)
		x := tl.q(qAcctSel, uint64(aid), 1)
		x.ParamKeys = key(aid)
		x.Result = result([]string{"abalance"}, []int{delta})
		tl.write(qTellerUpd, tid, 1).ParamsHash = uint64(1+i)<<20 | uint64(tid)
		tl.write(qBranchUpd, bid, 1).ParamsHash = uint64(1+i)<<20 | uint64(bid)
		tl.write(qHistIns, aid, 1).ParamsHash = uint64(1+i)<<20 | uint64(aid)
	})
}

// writeSummary is summary with the command and the evidence kind.
func writeSummary(f Finding) string {
	s := summary(f)
	if f.Command != "" {
		s += " " + f.Command
	}
	if f.Evidence != nil {
		s += " " + f.Evidence.Kind
	}
	return s
}

func TestWrites(t *testing.T) {
	orders := seq(500, 10)
	tests := []struct {
		name  string
		cfg   Config
		pool  int // connections of one pool scope; 0: independent connections
		build func(tl *timeline)
		want  []string
	}{
		// Flagged.
		{
			name: "create in a loop over a source's rows, autocommit",
			build: func(tl *timeline) {
				tl.source(qOrders, orders)
				for _, o := range orders {
					tl.write(qAudit, o, 1)
					tl.wait(work)
				}
			},
			want: []string{"n_plus_one audit n=10 d=10 src=orders/10 warning INSERT data_flow"},
		},
		{
			name: "create in a loop in one transaction, keys from the request",
			build: func(tl *timeline) {
				tl.tx(func() {
					for i := range 8 {
						tl.write(qAudit, 9000+i, 1)
					}
				})
			},
			want: []string{"n_plus_one audit n=8 d=8 src=none warning INSERT transaction"},
		},
		{
			name: "one transaction per create (GORM, TypeORM save, ActiveRecord create) over a source",
			build: func(tl *timeline) {
				tl.source(qOrders, orders)
				for _, o := range orders {
					tl.tx(func() { tl.write(qAudit, o, 1) })
					tl.wait(work)
				}
			},
			want: []string{"n_plus_one audit n=10 d=10 src=orders/10 warning INSERT data_flow"},
		},
		{
			name: "one transaction per create, keys from the request, quiet connection",
			build: func(tl *timeline) {
				for i := range 6 {
					tl.tx(func() { tl.write(qAudit, 7000+i, 1) })
				}
			},
			want: []string{"n_plus_one audit n=6 d=6 src=none warning INSERT repetition"},
		},
		{
			name: "update by key in a loop",
			build: func(tl *timeline) {
				tl.source(qOrders, orders)
				for _, o := range orders {
					tl.write(qSetStatus, o, 1)
				}
			},
			want: []string{"n_plus_one set_status n=10 d=10 src=orders/10 warning UPDATE data_flow"},
		},
		{
			name: "delete by key in a loop in a transaction",
			build: func(tl *timeline) {
				tl.tx(func() {
					for i := range 5 {
						tl.write(qDelItem, 300+i, 1)
					}
				})
			},
			want: []string{"n_plus_one del_item n=5 d=5 src=none warning DELETE transaction"},
		},
		{
			name: "an update that writes several rows per key is still one statement per key",
			build: func(tl *timeline) {
				tl.tx(func() {
					for i := range 5 {
						tl.write(qSetStatus, 300+i, 6)
					}
				})
			},
			want: []string{"n_plus_one set_status n=5 d=5 src=none warning UPDATE transaction"},
		},
		{
			name: "critical: 50 creates in one transaction",
			build: func(tl *timeline) {
				tl.tx(func() {
					for i := range 50 {
						tl.write(qAudit, 100+i, 1)
					}
				})
			},
			want: []string{"n_plus_one audit n=50 d=50 src=none critical INSERT transaction"},
		},
		{
			name: "one transaction is one unit of work even on a busy pool",
			pool: 3,
			build: func(tl *timeline) {
				tl.on(2).write(qAudit, 1, 1)
				tl.on(3).write(qAudit, 2, 1)
				tl.on(1).tx(func() {
					for i := range 6 {
						tl.write(qAudit, 10+i, 1)
					}
				})
			},
			want: []string{"n_plus_one audit n=6 d=6 src=none warning INSERT transaction"},
		},
		{
			name: "a trace is one request",
			pool: 3,
			build: func(tl *timeline) {
				tl.on(2).write(qAudit, 1, 1)
				tl.trace = "4bf92f3577b34da6a3ce929d0e0e4736"
				for i := range 6 {
					tl.on(1).write(qAudit, 10+i, 1)
				}
			},
			want: []string{"n_plus_one audit n=6 d=6 src=none warning INSERT repetition"},
		},
		{
			name: "proven on a busy pool",
			pool: 3,
			build: func(tl *timeline) {
				tl.on(2).write(qAudit, 1, 1)
				tl.on(1).source(qOrders, orders)
				for _, o := range orders {
					tl.tx(func() { tl.write(qAudit, o, 1) })
				}
			},
			want: []string{"n_plus_one audit n=10 d=10 src=orders/10 warning INSERT data_flow"},
		},
		{
			name: "simple protocol: literals are the keys",
			build: func(tl *timeline) {
				for i := range 5 {
					x := tl.simple(qAudit, uint64(40+i), 1)
					x.Command = "INSERT"
				}
			},
			want: []string{"n_plus_one audit n=5 d=5 src=none warning INSERT repetition"},
		},
		{
			name: "threshold is configurable",
			cfg:  Config{NPlusOneThreshold: 3},
			build: func(tl *timeline) {
				tl.tx(func() {
					for i := range 3 {
						tl.write(qAudit, i, 1)
					}
				})
			},
			want: []string{"n_plus_one audit n=3 d=3 src=none warning INSERT transaction"},
		},

		// Not flagged.
		{
			name: "four creates",
			build: func(tl *timeline) {
				tl.source(qOrders, orders[:4])
				for _, o := range orders[:4] {
					tl.write(qAudit, o, 1)
				}
			},
		},
		{
			name: "batches of a multi-row VALUES in a loop (CreateInBatches)",
			build: func(tl *timeline) {
				batch := withFacts(qAudit, func(f *fingerprint.Facts) { f.ValuesRows = 100 })
				tl.tx(func() {
					for i := range 10 {
						tl.write(batch, i, 100)
					}
				})
			},
		},
		{
			name: "an INSERT ... SELECT that writes many rows, in chunks",
			build: func(tl *timeline) {
				unnest := withFacts(qAudit, func(f *fingerprint.Facts) { f.ValuesRows = 0 })
				for i := range 6 {
					tl.write(unnest, i, 500)
				}
			},
		},
		{
			name: "UPDATE ... WHERE id = ANY($1) in chunks",
			build: func(tl *timeline) {
				anyOf := withFacts(qSetStatus, func(f *fingerprint.Facts) { f.KeyList = true })
				for i := range 6 {
					tl.write(anyOf, i, 1000)
				}
			},
		},
		{
			name: "an UPDATE without a key",
			build: func(tl *timeline) {
				for i := range 6 {
					tl.write(qTouchAll, i, 300)
				}
			},
		},
		{
			name: "the same write repeated is no loop, and writes are no duplicates",
			build: func(tl *timeline) {
				tl.tx(func() {
					for range 8 {
						tl.write(qSetStatus, 42, 1)
					}
				})
			},
		},
		{
			name: "independent single-row writes on a busy pool",
			pool: 4,
			build: func(tl *timeline) {
				for r := range 40 {
					tl.on(uint64(1+r%4)).write(qAudit, 6000+r, 1)
					tl.wait(300 * time.Microsecond)
				}
			},
		},
		{
			name: "independent one-write transactions on a busy pool",
			pool: 4,
			build: func(tl *timeline) {
				for r := range 40 {
					tl.on(uint64(1 + r%4)).tx(func() { tl.write(qAudit, 6000+r, 1) })
					tl.wait(300 * time.Microsecond)
				}
			},
		},
		{
			name: "pgbench tpcb-like on a busy pool",
			pool: 4,
			build: func(tl *timeline) {
				for i := range 200 {
					tl.on(uint64(1 + i%4)).tpcb(i)
				}
			},
		},
		{
			name: "pgbench tpcb-like on one connection: transactions that read end their window",
			build: func(tl *timeline) {
				for i := range 100 {
					tl.tpcb(i)
				}
			},
		},
		{
			name: "rolled back transactions end their window",
			build: func(tl *timeline) {
				for i := range 6 {
					tl.tx(func() { tl.write(qAudit, 100+i, 1) }).Command = "ROLLBACK"
				}
			},
		},
		{
			name: "writes of system catalogs are not judged",
			build: func(tl *timeline) {
				tl.tx(func() {
					for i := range 6 {
						tl.write(qCatalogWrite, i, 1)
					}
				})
			},
		},
		{
			name: "failed writes do not count",
			build: func(tl *timeline) {
				for i := range 6 {
					x := tl.write(qAudit, i, -1)
					x.SQLState, x.Command = "23505", ""
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTimeline()
			if tt.pool > 0 {
				tl = poolTimeline(tt.pool)
			}
			tt.build(tl)
			var got []string
			for _, f := range detect(tt.cfg, tl.events) {
				if f.Kind == KindNPlusOne || f.Kind == KindDuplicateQuery {
					got = append(got, writeSummary(f))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got findings\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// A transaction of writes alone keeps its window open until the idle gap
// (the next iteration of a loop may follow); one that also read closes it.
func TestWritesHoldTheWindowOverTransactions(t *testing.T) {
	tl := newTimeline()
	for i := range 3 {
		tl.tx(func() { tl.write(qAudit, i, 1) })
	}
	d := New(Config{})
	for _, ev := range tl.events {
		d.Observe(ev)
	}
	if s := d.Stats(); s.WindowsOpen != 1 || s.WindowsClosed[CloseTxEnd] != 0 {
		t.Fatalf("after three write transactions: %d windows open, %d closed at tx end; want 1 and 0", s.WindowsOpen, s.WindowsClosed[CloseTxEnd])
	}
	d.Advance(tl.now.Add(DefaultIdleGap))
	if s := d.Stats(); s.WindowsOpen != 0 || s.WindowsClosed[CloseIdleGap] != 1 {
		t.Errorf("after the idle gap: %d open, %d closed by it; want 0 and 1", s.WindowsOpen, s.WindowsClosed[CloseIdleGap])
	}

	tl = newTimeline()
	tl.tx(func() {
		tl.write(qAudit, 1, 1)
		tl.q(qUser, 1, 1)
	})
	d = New(Config{})
	for _, ev := range tl.events {
		d.Observe(ev)
	}
	if s := d.Stats(); s.WindowsOpen != 0 || s.WindowsClosed[CloseTxEnd] != 1 {
		t.Errorf("a transaction that read: %d open, %d closed at tx end; want 0 and 1", s.WindowsOpen, s.WindowsClosed[CloseTxEnd])
	}
}

func TestWriteSuggestions(t *testing.T) {
	tests := []struct {
		st   *fingerprint.Statement
		want []string
	}{
		{qAudit, []string{"10 rows were inserted one statement each", "INSERT INTO audit_log (...) VALUES (...), (...)", "unnest", "COPY", "createMany", "bulk_create", "insert_all", "CreateInBatches", "bulkCreate"}},
		{qSetStatus, []string{"UPDATE orders SET ... WHERE id = ANY($1)", "FROM unnest", "updateMany", "bulk_update", "update_all", "filter(id__in=ids)"}},
		{qDelItem, []string{"DELETE FROM order_items WHERE id = ANY($1)", "deleteMany", "delete_all", "destroy"}},
	}
	for _, tt := range tests {
		got := suggestNPlusOneWrite(tt.st, 10)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: suggestion %q lacks %q", tt.st.Normalized, got, w)
			}
		}
	}
}

// Writes and patterns as ORMs send them, through the real fingerprint
// package.
func TestRealSQLWritesAndPatterns(t *testing.T) {
	const (
		gormCreate  = `INSERT INTO "audit_logs" ("order_id","note") VALUES ($1,$2) RETURNING "id"`
		gormBatch   = `INSERT INTO "audit_logs" ("order_id","note") VALUES ($1,$2),($3,$4),($5,$6) RETURNING "id"`
		seqCreate   = `INSERT INTO "audit_log" ("id","order_id","note") VALUES (DEFAULT,$1,$2) RETURNING "id","order_id","note";`
		djangoSave  = `UPDATE "shop_order" SET "status" = 'open' WHERE "shop_order"."id" = 17`
		djangoBulk  = `UPDATE "shop_order" SET "status" = 'open' WHERE "shop_order"."id" IN (17, 18, 19)`
		prismaFind  = `SELECT "public"."User"."id" FROM "public"."User" WHERE "public"."User"."name"::text LIKE $1 OFFSET $2`
		railsSearch = `SELECT "users".* FROM "users" WHERE (name ILIKE '%ann%')`
		gormPage    = `SELECT * FROM "orders" ORDER BY id LIMIT 50 OFFSET 1500`
	)
	type step struct {
		sql    string
		params uint64
		rows   int64
		tx     bool
		wild   uint64
		large  uint64
	}
	tests := []struct {
		name   string
		atomic bool // every step in one transaction
		steps  func() []step
		want   []string
	}{
		{
			name: "GORM Create per row, each in its own transaction",
			steps: func() (s []step) {
				for i := range 6 {
					s = append(s, step{sql: gormCreate, params: uint64(i + 1), rows: 1, tx: true})
				}
				return s
			},
			want: []string{"n_plus_one sql:INSERT INTO \"audit_logs\" (\"order_id\",\"note\") VALUES ($1,$2) RETURNING \"id\" n=6 d=6 src=none warning INSERT repetition"},
		},
		{
			name: "GORM CreateInBatches: the same shape, three rows at a time",
			steps: func() (s []step) {
				for i := range 6 {
					s = append(s, step{sql: gormBatch, params: uint64(i + 1), rows: 3, tx: true})
				}
				return s
			},
		},
		{
			name: "Sequelize create in a loop",
			steps: func() (s []step) {
				for i := range 5 {
					s = append(s, step{sql: seqCreate, params: uint64(i + 1), rows: 1})
				}
				return s
			},
			want: []string{"n_plus_one sql:INSERT INTO \"audit_log\" (\"id\",\"order_id\",\"note\") VALUES (DEFAULT,$1,$2) RETURNING \"id\",\"order_id\",\"note\" n=5 d=5 src=none warning INSERT repetition"},
		},
		{
			name:   "Django save() per row in atomic(), literals inlined",
			atomic: true,
			steps: func() (s []step) {
				for i := range 5 {
					s = append(s, step{sql: strings.Replace(djangoSave, "17", string(rune('1'+i)), 1), rows: 1})
				}
				return s
			},
			want: []string{"n_plus_one sql:UPDATE \"shop_order\" SET \"status\" = $1 WHERE \"shop_order\".\"id\" = $2 n=5 d=5 src=none warning UPDATE transaction"},
		},
		{
			name:   "Django filter(id__in=...).update() in chunks: one shape with the loop's, batched",
			atomic: true,
			steps: func() (s []step) {
				for i := range 5 {
					s = append(s, step{sql: strings.Replace(djangoBulk, "17", string(rune('1'+i)), 1), rows: 3})
				}
				return s
			},
		},
		{
			name: "Prisma contains, skip 1500: a bound pattern and a bound offset",
			steps: func() []step {
				return []step{{sql: prismaFind, params: 1, rows: 3, wild: 1, large: 1 << 1}}
			},
			want: []string{
				"leading_wildcard sql:public.User n=1 info",
				"deep_offset sql:public.User n=1 warning",
			},
		},
		{
			name: "Prisma startsWith, first page",
			steps: func() []step {
				return []step{{sql: prismaFind, params: 1, rows: 3}}
			},
		},
		{
			name:  "ActiveRecord ILIKE with the pattern inlined",
			steps: func() []step { return []step{{sql: railsSearch, rows: 2}} },
			want:  []string{"select_star sql:users n=1 info", "leading_wildcard sql:users n=1 info"},
		},
		{
			name:  "GORM Offset(1500)",
			steps: func() []step { return []step{{sql: gormPage, rows: 50}} },
			want:  []string{"select_star sql:orders n=1 info", "deep_offset sql:orders n=1 warning"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newSQLTimeline()
			all := func(inner func()) { inner() }
			if tt.atomic {
				all = func(inner func()) { tl.tx(inner) }
			}
			all(func() {
				for _, s := range tt.steps() {
					run := func() {
						var x *pgwire.Execution
						if s.params == 0 {
							x = tl.simple(s.sql, s.rows)
						} else {
							x = tl.ext(s.sql, s.params, s.rows)
						}
						x.ParamWildcard, x.ParamLarge = s.wild, s.large
					}
					if s.tx {
						tl.tx(run)
					} else {
						run()
					}
				}
			})
			var got []string
			for _, f := range detect(Config{}, tl.events) {
				got = append(got, writeSummary(f))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got findings\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// An UPDATE by id of the rows a list of the same table returned is proven:
// ids of one table are no coincidence.
func TestWritesUpdateByIDOfTheSameTable(t *testing.T) {
	tl := newTimeline()
	ids := seq(40, 8)
	rows := make([][]int, len(ids))
	for i, id := range ids {
		rows[i] = []int{id, 7}
	}
	x := tl.q(qOrders, 1, int64(len(ids)))
	x.Result = result([]string{"id", "user_id"}, rows...)
	for _, id := range ids {
		tl.write(qSetStatus, id, 1)
	}
	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 1 || fs[0].Evidence == nil || fs[0].Evidence.Kind != EvidenceDataFlow || fs[0].Evidence.SourceColumn != "id" {
		t.Fatalf("got %v", fs)
	}
}
