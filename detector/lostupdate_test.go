package detector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// The read-modify-write of the seed article's Mistake 8, as drivers and ORMs
// send it, through the real fingerprint package.
const (
	luRead        = "SELECT id, stock FROM products WHERE id = $1"
	luReadStar    = "SELECT * FROM products WHERE id = $1"
	luReadLocked  = "SELECT id, stock FROM products WHERE id = $1 FOR UPDATE"
	luReadShare   = "SELECT id, stock FROM products WHERE id = $1 FOR NO KEY UPDATE"
	luReadMany    = "SELECT id, stock FROM products WHERE id = ANY($1)"
	luReadTenant  = "SELECT id, stock FROM products WHERE tenant_id = $1 AND id = $2"
	luReadUser    = "SELECT id, stock FROM users WHERE id = $1"
	luReadLogin   = "SELECT id, email FROM users WHERE id = $1"
	luUpdate      = "UPDATE products SET stock = $1 WHERE id = $2"
	luUpdateLogin = "UPDATE users SET last_login = $1 WHERE id = $2"
	luAtomic      = "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1"
	luVersion     = "UPDATE products SET stock = $1, version = version + 1 WHERE id = $2 AND version = $3"
	luOldValue    = "UPDATE products SET stock = $1 WHERE id = $2 AND stock = $3"
	luLockVersion = "UPDATE products SET stock = $1 WHERE id = $2 AND lock_version = $3"

	luGormRead   = `SELECT * FROM "products" WHERE "products"."id" = $1 AND "products"."deleted_at" IS NULL ORDER BY "products"."id" LIMIT $2`
	luGormSave   = `UPDATE "products" SET "name"=$1,"stock"=$2,"updated_at"=$3,"deleted_at"=$4 WHERE "products"."deleted_at" IS NULL AND "id" = $5`
	luPrismaRead = `SELECT "public"."Product"."id", "public"."Product"."stock" FROM "public"."Product" WHERE ("public"."Product"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`
	luPrismaSave = `UPDATE "public"."Product" SET "stock" = $1 WHERE ("public"."Product"."id" = $2 AND 1=1) RETURNING "public"."Product"."id", "public"."Product"."stock"`
)

// The read-modify-write by hand, for the mixed traffic of detector_test.go.
var (
	qStockRead = stmt("stock_read", "SELECT id, stock FROM products WHERE id = $1",
		fingerprint.Facts{TablesRead: []string{"products"}, EqualityColumns: []string{"id"}, ReadColumns: []string{"id", "stock"},
			KeyValues: []fingerprint.KeyValue{{Column: "id", Param: 1}}})
	qStockWrite = stmt("stock_write", "UPDATE products SET stock = $1 WHERE id = $2",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"products"}, EqualityColumns: []string{"id"}, SetValues: []string{"stock"},
			KeyValues: []fingerprint.KeyValue{{Column: "id", Param: 2}}})
)

// lostUpdateRequest appends a read of product 7 and the write of its stock
// computed from it: one lost_update.
func lostUpdateRequest(tl *timeline) {
	tl.q(qStockRead, 1, 1).ParamKeys = []valuekey.Key{vkey(7)}
	tl.q(qStockWrite, 2, 1).ParamKeys = []valuekey.Key{vkey(4), vkey(7)}
}

// vkey is the digest of a value, as the tracker computes it.
func vkey(v int) valuekey.Key { return valuekey.String(fmt.Sprint(v)) }

// keyed runs sql over the extended protocol with these bound values (as
// digests), returning rows.
func (tl *sqlTimeline) keyed(sql string, rows int64, vals ...int) *pgwire.Execution {
	x := tl.ext(sql, uint64(1+len(tl.events)), rows)
	x.NumParams = len(vals)
	for _, v := range vals {
		x.ParamKeys = append(x.ParamKeys, vkey(v))
	}
	return x
}

// inTx runs body as one transaction block: BEGIN (or begin), body, COMMIT.
func (tl *sqlTimeline) inTx(begin string, body func()) {
	from := len(tl.events)
	tl.simple(begin, -1)
	body()
	tl.simple("COMMIT", -1).TxEnd = true
	for _, ev := range tl.events[from:] {
		ev.Exec.InTransaction = true
	}
}

// rmw is the read-modify-write of product 7: read its stock, write it back
// less one.
func (tl *sqlTimeline) rmw(read, update string) {
	tl.keyed(read, 1, 7)
	tl.wait(2 * time.Millisecond)
	tl.keyed(update, 1, 4, 7)
}

// lostUpdates lists the lost_update findings in one line each: the
// UPDATE's normalized text, its count and its source's text.
func lostUpdates(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Kind != KindLostUpdate {
			continue
		}
		src := "none"
		if f.Source != nil {
			src = f.Source.Query
		}
		out = append(out, fmt.Sprintf("%s n=%d src=%s %s", f.Query, f.Count, src, f.Severity))
	}
	return out
}

func TestLostUpdate(t *testing.T) {
	norm := func(sql string) string { return fingerprint.Of(sql).Statements[0].Normalized }
	flagged := func(update, read string, n int) []string {
		return []string{fmt.Sprintf("%s n=%d src=%s warning", norm(update), n, norm(read))}
	}
	tests := []struct {
		name  string
		build func(tl *sqlTimeline)
		want  []string
	}{
		{
			name:  "read then write back, autocommit",
			build: func(tl *sqlTimeline) { tl.rmw(luRead, luUpdate) },
			want:  flagged(luUpdate, luRead, 1),
		},
		{
			// The read's keys are told apart by their column: 7 is the
			// read's id, its second key.
			name: "read by two keys, written back by the second",
			build: func(tl *sqlTimeline) {
				tl.keyed(luReadTenant, 1, 3, 7)
				tl.keyed(luUpdate, 1, 4, 7)
			},
			want: flagged(luUpdate, luReadTenant, 1),
		},
		{
			// 7 is the tenant the read named, not the row's id.
			name: "read by two keys, a write of another row with the same value",
			build: func(tl *sqlTimeline) {
				tl.keyed(luReadTenant, 1, 7, 3)
				tl.keyed(luUpdate, 1, 4, 7)
			},
		},
		{
			name:  "SELECT * then write back",
			build: func(tl *sqlTimeline) { tl.rmw(luReadStar, luUpdate) },
			want:  flagged(luUpdate, luReadStar, 1),
		},
		{
			name:  "GORM First then Save",
			build: func(tl *sqlTimeline) { tl.keyed(luGormRead, 1, 7, 1); tl.keyed(luGormSave, 1, 1, 4, 2, 0, 7) },
			want:  flagged(luGormSave, luGormRead, 1),
		},
		{
			name:  "Prisma findUnique then update with a computed value",
			build: func(tl *sqlTimeline) { tl.keyed(luPrismaRead, 1, 7, 1, 0); tl.keyed(luPrismaSave, 1, 4, 7) },
			want:  flagged(luPrismaSave, luPrismaRead, 1),
		},
		{
			name: "literals inline (simple protocol)",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT id, stock FROM products WHERE id = 7", 1)
				tl.simple("UPDATE products SET stock = 4 WHERE id = 7", 1)
			},
			want: flagged(luUpdate, luRead, 1),
		},
		{
			name: "inside a READ COMMITTED transaction",
			build: func(tl *sqlTimeline) {
				tl.inTx("BEGIN ISOLATION LEVEL READ COMMITTED", func() { tl.rmw(luRead, luUpdate) })
			},
			want: flagged(luUpdate, luRead, 1),
		},
		{
			name: "two read-modify-writes in one window",
			build: func(tl *sqlTimeline) {
				tl.rmw(luRead, luUpdate)
				tl.keyed(luRead, 1, 8)
				tl.keyed(luUpdate, 1, 2, 8)
			},
			want: flagged(luUpdate, luRead, 2),
		},
		{
			name: "one UPDATE shape writing back two read shapes: one finding each",
			build: func(tl *sqlTimeline) {
				tl.rmw(luRead, luUpdate)
				tl.rmw(luReadStar, luUpdate)
			},
			want: append(flagged(luUpdate, luRead, 1), flagged(luUpdate, luReadStar, 1)...),
		},
		{
			name: "one read, two writes: the read counts once",
			build: func(tl *sqlTimeline) {
				tl.rmw(luRead, luUpdate)
				tl.keyed(luUpdate, 1, 3, 7)
			},
			want: flagged(luUpdate, luRead, 1),
		},
		{
			name: "a read in autocommit, the write in a SERIALIZABLE block: two transactions",
			build: func(tl *sqlTimeline) {
				tl.keyed(luRead, 1, 7)
				tl.inTx("BEGIN ISOLATION LEVEL SERIALIZABLE", func() { tl.keyed(luUpdate, 1, 4, 7) })
			},
			want: flagged(luUpdate, luRead, 1),
		},
		{
			name: "a SERIALIZABLE session default does not join autocommit statements",
			build: func(tl *sqlTimeline) {
				tl.simple("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", -1)
				tl.rmw(luRead, luUpdate)
			},
			want: flagged(luUpdate, luRead, 1),
		},
		{
			name: "RESET ALL ends a REPEATABLE READ default",
			build: func(tl *sqlTimeline) {
				tl.simple("SET default_transaction_isolation = 'repeatable read'", -1)
				tl.simple("RESET ALL", -1)
				tl.inTx("BEGIN", func() { tl.rmw(luRead, luUpdate) })
			},
			want: flagged(luUpdate, luRead, 1),
		},

		// must not flag
		{
			name:  "SELECT ... FOR UPDATE",
			build: func(tl *sqlTimeline) { tl.inTx("BEGIN", func() { tl.rmw(luReadLocked, luUpdate) }) },
		},
		{
			name:  "SELECT ... FOR NO KEY UPDATE",
			build: func(tl *sqlTimeline) { tl.inTx("BEGIN", func() { tl.rmw(luReadShare, luUpdate) }) },
		},
		{
			name:  "the atomic update",
			build: func(tl *sqlTimeline) { tl.keyed(luRead, 1, 7); tl.keyed(luAtomic, 1, 1, 7) },
		},
		{
			name:  "a version guard",
			build: func(tl *sqlTimeline) { tl.keyed(luRead, 1, 7); tl.keyed(luVersion, 1, 4, 7, 3) },
		},
		{
			name:  "a lock_version guard",
			build: func(tl *sqlTimeline) { tl.keyed(luRead, 1, 7); tl.keyed(luLockVersion, 1, 4, 7, 3) },
		},
		{
			name:  "a guard on the old value",
			build: func(tl *sqlTimeline) { tl.keyed(luRead, 1, 7); tl.keyed(luOldValue, 1, 4, 7, 5) },
		},
		{
			name:  "another key",
			build: func(tl *sqlTimeline) { tl.keyed(luRead, 1, 7); tl.keyed(luUpdate, 1, 4, 8) },
		},
		{
			name: "another key, literals inline",
			build: func(tl *sqlTimeline) {
				tl.simple("SELECT id, stock FROM products WHERE id = 7", 1)
				tl.simple("UPDATE products SET stock = 7 WHERE id = 8", 1)
			},
		},
		{
			name: "a SERIALIZABLE transaction",
			build: func(tl *sqlTimeline) {
				tl.inTx("BEGIN ISOLATION LEVEL SERIALIZABLE", func() { tl.rmw(luRead, luUpdate) })
			},
		},
		{
			name: "START TRANSACTION at REPEATABLE READ",
			build: func(tl *sqlTimeline) {
				tl.inTx("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", func() { tl.rmw(luRead, luUpdate) })
			},
		},
		{
			name: "REPEATABLE READ by SET TRANSACTION",
			build: func(tl *sqlTimeline) {
				tl.inTx("BEGIN", func() {
					tl.simple("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", -1)
					tl.rmw(luRead, luUpdate)
				})
			},
		},
		{
			name: "a SERIALIZABLE session default and a transaction",
			build: func(tl *sqlTimeline) {
				tl.simple("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", -1)
				tl.inTx("BEGIN", func() { tl.rmw(luRead, luUpdate) })
			},
		},
		{
			name: "default_transaction_isolation and a transaction",
			build: func(tl *sqlTimeline) {
				tl.simple("SET default_transaction_isolation TO 'serializable'", -1)
				tl.inTx("BEGIN", func() { tl.rmw(luRead, luUpdate) })
			},
		},
		{
			name:  "a read of another table",
			build: func(tl *sqlTimeline) { tl.rmw(luReadUser, luUpdate) },
		},
		{
			name:  "a write of a column the read did not return",
			build: func(tl *sqlTimeline) { tl.rmw(luReadLogin, luUpdateLogin) },
		},
		{
			name:  "a read of many keys",
			build: func(tl *sqlTimeline) { tl.keyed(luReadMany, 3, 7); tl.keyed(luUpdate, 1, 4, 7) },
		},
		{
			name: "an unlocked read, then a locked read of the row before the write",
			build: func(tl *sqlTimeline) {
				tl.keyed(luRead, 1, 7)
				tl.inTx("BEGIN", func() { tl.rmw(luReadLocked, luUpdate) })
			},
		},
		{
			name: "a read of many rows by a column they share",
			build: func(tl *sqlTimeline) {
				tl.keyed("SELECT id, stock FROM products WHERE shelf = $1", 12, 3)
				tl.keyed("UPDATE products SET stock = $1 WHERE shelf = $2", 12, 0, 3)
			},
		},
		{
			name:  "a read that found no row",
			build: func(tl *sqlTimeline) { tl.keyed(luRead, 0, 7); tl.keyed(luUpdate, 1, 4, 7) },
		},
		{
			name: "the write long after the read",
			build: func(tl *sqlTimeline) {
				tl.keyed(luRead, 1, 7)
				tl.wait(DefaultLostUpdateWindow + time.Millisecond)
				tl.keyed(luUpdate, 1, 4, 7)
			},
		},
		{
			name: "the read on one connection, the write on another",
			build: func(tl *sqlTimeline) {
				tl.keyed(luRead, 1, 7)
				tl.on(2)
				tl.keyed(luUpdate, 1, 4, 7)
			},
		},
		{
			name: "no value evidence: the key is not seen",
			build: func(tl *sqlTimeline) {
				tl.ext(luRead, 1, 1)
				tl.ext(luUpdate, 2, 1)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newSQLTimeline()
			tt.build(tl)
			got := lostUpdates(detect(Config{}, tl.events))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// TestLostUpdateFinding checks the finding's fields and that it holds no
// value: neither the key nor the value written appears in it.
func TestLostUpdateFinding(t *testing.T) {
	tl := newSQLTimeline()
	tl.simple("SELECT id, stock FROM products WHERE id = 48151623", 1)
	tl.simple("UPDATE products SET stock = 42424242 WHERE id = 48151623", 1)
	fs := detect(Config{}, tl.events)
	var f *Finding
	for i := range fs {
		if fs[i].Kind == KindLostUpdate {
			f = &fs[i]
		}
	}
	if f == nil {
		t.Fatalf("no lost_update among %v", summaries(fs))
	}
	if f.Severity != SeverityWarning || f.Count != 1 || f.Source == nil || f.Source.Rows != 1 ||
		!strings.Contains(f.Query, "UPDATE products") || f.Tables[0] != "products" {
		t.Errorf("finding: %+v", *f)
	}
	for _, want := range []string{"`UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1`", "FOR UPDATE", "version",
		"decrement", "setLock", "gorm.Expr(\"stock - ?\", n)", "F(\"stock\")", "select_for_update", "with_lock"} {
		if !strings.Contains(f.Suggestion, want) {
			t.Errorf("suggestion lacks %q: %s", want, f.Suggestion)
		}
	}
	all := fmt.Sprintf("%+v %+v", *f, *f.Source)
	for _, v := range []string{"48151623", "42424242"} {
		if strings.Contains(all, v) {
			t.Errorf("the finding holds the value %s: %s", v, all)
		}
	}
}

// TestLostUpdateCooldown checks the cooldown: the same race in the next
// request of the pool is held back and counted.
func TestLostUpdateCooldown(t *testing.T) {
	tl := newSQLTimeline()
	tl.rmw(luRead, luUpdate)
	tl.wait(time.Second)
	tl.rmw(luRead, luUpdate)
	d := New(Config{})
	var got []Finding
	for _, ev := range tl.events {
		got = append(got, d.Observe(ev)...)
	}
	got = append(got, d.Flush()...)
	if n := len(lostUpdates(got)); n != 1 {
		t.Fatalf("got %d lost_update findings, want 1: %v", n, lostUpdates(got))
	}
	s := d.Stats()
	if s.Found[KindLostUpdate] != 2 || s.Reported[KindLostUpdate] != 1 || s.Suppressed[KindLostUpdate] != 1 {
		t.Errorf("stats: found %d reported %d suppressed %d", s.Found[KindLostUpdate], s.Reported[KindLostUpdate], s.Suppressed[KindLostUpdate])
	}
}

// TestLostUpdateColumn checks that the suggestion names the columns written
// back, not the timestamps an ORM sets on every save, and that with
// several it does not guess which one the code computed.
func TestLostUpdateColumn(t *testing.T) {
	tl := newSQLTimeline()
	tl.keyed(luGormRead, 1, 7, 1)
	tl.keyed(luGormSave, 1, 1, 4, 2, 0, 7)
	for _, f := range detect(Config{}, tl.events) {
		if f.Kind == KindLostUpdate {
			if !strings.HasPrefix(f.Suggestion, "This UPDATE writes back name, stock of a row") ||
				!strings.Contains(f.Suggestion, "`UPDATE products SET col = col - $1 WHERE id = $2 AND col >= $1`") {
				t.Errorf("suggestion: %s", f.Suggestion)
			}
			return
		}
	}
	t.Error("no lost_update")
}
