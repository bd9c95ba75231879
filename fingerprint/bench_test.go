package fingerprint

import (
	"strconv"
	"strings"
	"testing"
)

// benchSelect is a typical ORM find-by-id (Prisma).
const benchSelect = `SELECT "public"."User"."id", "public"."User"."email", "public"."User"."name", ` +
	`"public"."User"."createdAt" FROM "public"."User" WHERE ("public"."User"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`

// benchSelectLiteral is the same query as an ORM that inlines values sends
// it: every execution is a new text.
func benchSelectLiteral(i int) string {
	return `SELECT "User"."id", "User"."email", "User"."name", "User"."createdAt" FROM "User" AS "User" ` +
		`WHERE "User"."id" = ` + strconv.Itoa(i) + ` LIMIT 1;`
}

func bench200Params() string {
	var b strings.Builder
	b.WriteString(`SELECT "posts".* FROM "posts" WHERE "posts"."user_id" IN (`)
	for i := 1; i <= 200; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i))
	}
	b.WriteString(")")
	return b.String()
}

const benchMulti = `BEGIN; SELECT "users".* FROM "users" WHERE "users"."id" = 1 LIMIT 1; ` +
	`UPDATE "users" SET "last_seen_at" = '2024-01-01 10:00:00' WHERE "users"."id" = 1; COMMIT`

func BenchmarkCacheHit(b *testing.B) {
	c := New(Options{})
	c.Of(benchSelect)
	b.ReportAllocs()
	for b.Loop() {
		c.Of(benchSelect)
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	c := New(Options{})
	c.Of(benchSelect)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Of(benchSelect)
		}
	})
}

// missTexts returns n distinct texts made by f.
func missTexts(n int, f func(int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// benchMiss runs Of over more distinct texts than the text cache holds, so
// every call misses the text cache; the fingerprint cache holds their shape.
// It warms the caches up with other texts of the same shapes, enough that
// those shapes are volatile: the texts it runs are then never kept (the
// steady state of a shape that comes with new literals every time) and no
// text the warm-up kept comes round again.
func benchMiss(b *testing.B, n int, f func(int) string) {
	c := New(Options{MaxTexts: 64})
	for _, t := range missTexts(volatileAfter+1, func(i int) string { return f(n + i) }) {
		c.Of(t)
	}
	texts := missTexts(n, f)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Of(texts[i%len(texts)])
		i++
	}
	if s := c.Stats(); s.Hits > 0 {
		b.Fatalf("got %d text cache hits, want none", s.Hits)
	}
}

// BenchmarkCacheMiss: a new text of a known shape, the steady state for
// ORMs that inline values or add a traceparent comment.
func BenchmarkCacheMiss(b *testing.B) {
	benchMiss(b, 1024, benchSelectLiteral)
}

// BenchmarkCacheMissStrings: a new text of a known shape with string
// literals inlined (Sequelize's update), whose values are unquoted for
// their keys.
func BenchmarkCacheMissStrings(b *testing.B) {
	benchMiss(b, 1024, func(i int) string {
		return `UPDATE "Users" SET "name"='Ada ` + strconv.Itoa(i) + `',"email"='o''hara` + strconv.Itoa(i) + `@example.com',` +
			`"updatedAt"='2024-05-01 10:00:00.000 +00:00' WHERE "id" = ` + strconv.Itoa(i)
	})
}

// BenchmarkCacheMissTraceparent: a prepared statement text whose only change
// is a sqlcommenter traceparent.
func BenchmarkCacheMissTraceparent(b *testing.B) {
	benchMiss(b, 1024, func(i int) string {
		return benchSelect + ` /*traceparent='00-` + strings.Repeat("0", 24) + strconv.FormatInt(int64(1e7+i), 16) +
			`-00f067aa0ba902b7-01'*/`
	})
}

// BenchmarkCacheMiss200Params: a new eager-load text with 200 parameters.
func BenchmarkCacheMiss200Params(b *testing.B) {
	q := bench200Params()
	benchMiss(b, 1024, func(i int) string { return q + " /* " + strconv.Itoa(i) + " */" })
}

// BenchmarkCacheMissMulti: a new text of four statements.
func BenchmarkCacheMissMulti(b *testing.B) {
	benchMiss(b, 1024, func(i int) string { return benchMulti + " -- " + strconv.Itoa(i) })
}

// BenchmarkCold: a text of a new shape: fingerprint, parse, facts.
func BenchmarkCold(b *testing.B) {
	b.Run("select", func(b *testing.B) { benchCold(b, benchSelect) })
	b.Run("select-literal", func(b *testing.B) { benchCold(b, benchSelectLiteral(42)) })
	b.Run("200-params", func(b *testing.B) { benchCold(b, bench200Params()) })
	b.Run("multi", func(b *testing.B) { benchCold(b, benchMulti) })
}

func benchCold(b *testing.B, q string) {
	b.ReportAllocs()
	for b.Loop() {
		Of(q)
	}
}

func BenchmarkLex(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchSelect)))
	var toks []token
	for b.Loop() {
		toks = lex(benchSelect, toks[:0])
	}
}
