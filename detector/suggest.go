package detector

import (
	"fmt"
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
)

// The suggestions name the fix in SQL terms, from the names of tables and
// columns in the query's facts and from counts: never from literal values.

// eagerLoad names the eager-loading feature of the common ORMs.
const eagerLoad = "eager-load the relation (Prisma include, TypeORM relations, Sequelize include, GORM Preload, ActiveRecord includes)"

func suggestNPlusOne(rep, src *fingerprint.Statement, count int) string {
	table := ident(first(rep.Facts.TablesRead))
	col := keyColumn(rep.Facts.EqualityColumns)

	var noSource string
	if src == nil {
		noSource = fmt.Sprintf("No earlier query in this window returned %d or more rows, so the loop's source is unknown. ", count)
	}
	var fix string
	switch {
	case rep.Facts.AggregateOnly && col != "":
		fix = fmt.Sprintf("compute it for every key in one query with `WHERE %s = ANY($1) GROUP BY %s` instead of once per row", col, col)
		if src != nil {
			fix += fmt.Sprintf(", or JOIN %s into the source query and GROUP BY", table)
		}
		return noSource + capitalize(fix) + "."
	case col != "" && src != nil:
		fix = fmt.Sprintf("fetch these rows in one query with `WHERE %s = ANY($1)` over the keys the source query returned, or JOIN %s into the source query on %s", col, table, col)
	case col != "":
		fix = fmt.Sprintf("fetch these rows in one query with `WHERE %s = ANY($1)` over all the keys instead of one query per key", col)
	case src != nil:
		fix = fmt.Sprintf("fetch these rows in one query instead of one per row: batch the keys with `= ANY($1)` or JOIN %s into the source query", table)
	default:
		fix = "fetch these rows in one query instead of one per row, batching the keys with `= ANY($1)`"
	}
	return noSource + capitalize(fix) + "; in an ORM, " + eagerLoad + "."
}

func suggestDuplicate(most int) string {
	return fmt.Sprintf("The same query with the same parameters ran %d times in one window: run it once and reuse the rows (keep them in a variable or a per-request cache).", most)
}

func suggestUnpaginated(rows int64) string {
	return fmt.Sprintf("This read returned %d rows with no LIMIT: add LIMIT with keyset pagination (`WHERE id > $last ORDER BY id LIMIT n`), or aggregate in SQL if you only need totals.", rows)
}

func suggestSelectStar(st *fingerprint.Statement) string {
	table := ident(first(st.Facts.TablesRead))
	return fmt.Sprintf("Name the columns you use instead of `*` (`SELECT col_a, col_b FROM %s`, or select/attributes in an ORM): the query then reads and sends only what the code needs.", table)
}

// keyColumn picks, among the columns the WHERE clause compares by equality,
// the one the loop most likely varies: a key (id, user_id, userId), else the
// first. The name is unqualified and quoted where SQL needs it.
func keyColumn(cols []string) string {
	pick := first(cols)
	for _, c := range cols {
		base := c[strings.LastIndexByte(c, '.')+1:]
		if strings.EqualFold(base, "id") || strings.HasSuffix(base, "_id") || strings.HasSuffix(base, "Id") || strings.HasSuffix(base, "ID") {
			pick = c
			break
		}
	}
	if pick == "" {
		return ""
	}
	return ident(pick[strings.LastIndexByte(pick, '.')+1:])
}

// ident writes a possibly qualified name as SQL, quoting each part that is
// not a plain lower-case identifier ("public.User" → public."User").
func ident(name string) string {
	if name == "" {
		return ""
	}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if !plainIdent(p) {
			parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
	}
	return strings.Join(parts, ".")
}

func plainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '$'):
		default:
			return false
		}
	}
	return true
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// suggestNPlusOneWrite names the one-statement form of a write run once per
// row, in SQL and in the common ORMs.
func suggestNPlusOneWrite(st *fingerprint.Statement, count int) string {
	table := ident(first(st.Facts.TablesWritten))
	col := keyColumn(st.Facts.EqualityColumns)
	if col == "" {
		col = "id"
	}
	name := strings.ReplaceAll(strings.Trim(col, `"`), `""`, `"`) // as the ORM spells it
	switch st.Facts.Kind {
	case fingerprint.KindUpdate:
		return fmt.Sprintf("%d rows were updated one statement each: update them in one, "+
			"`UPDATE %s SET ... WHERE %s = ANY($1)` when they get the same values, or "+
			"`UPDATE %s AS t SET ... FROM unnest($1::bigint[], $2::text[]) AS v(%s, val) WHERE t.%s = v.%s` when each gets its own; "+
			"in an ORM, the bulk update (Prisma updateMany, TypeORM update with In(ids), Sequelize update with where: {%s: ids}, "+
			"Django filter(%s__in=ids).update() or bulk_update, SQLAlchemy update() with a list of rows, "+
			"ActiveRecord where(%s: ids).update_all or upsert_all, GORM Where(\"%s IN ?\", ids).Updates).",
			count, table, col, table, col, col, col, name, name, name, name)
	case fingerprint.KindDelete:
		return fmt.Sprintf("%d rows were deleted one statement each: delete them in one, "+
			"`DELETE FROM %s WHERE %s = ANY($1)`; in an ORM, the bulk delete (Prisma deleteMany, TypeORM delete(ids), "+
			"Sequelize destroy with where: {%s: ids}, Django filter(%s__in=ids).delete(), SQLAlchemy delete() with in_(ids), "+
			"ActiveRecord where(%s: ids).delete_all, GORM Delete with a slice of keys).",
			count, table, col, name, name, name)
	}
	return fmt.Sprintf("%d rows were inserted one statement each: insert them in one, "+
		"a multi-row `INSERT INTO %s (...) VALUES (...), (...)`, `INSERT INTO %s (...) SELECT * FROM unnest($1::bigint[], $2::text[])`, "+
		"or COPY for thousands; in an ORM, the bulk insert (Prisma createMany, TypeORM insert or save with an array, "+
		"Sequelize bulkCreate, Django bulk_create, SQLAlchemy insert() with a list of rows, ActiveRecord insert_all, "+
		"GORM Create with a slice or CreateInBatches).", count, table, table)
}

// suggestLeadingWildcard names the indexes that serve a LIKE '%...', for a
// query whose plan nplus1 has not seen: it may read every row.
func suggestLeadingWildcard(st *fingerprint.Statement) string {
	table := ident(first(st.Facts.TablesRead))
	if table == "" {
		table = ident(first(st.Facts.TablesWritten))
	}
	col := first(st.Facts.LikeColumns)
	if col != "" {
		col = ident(col[strings.LastIndexByte(col, '.')+1:])
	} else {
		col = "col"
	}
	return fmt.Sprintf("A LIKE pattern that starts with %% or _ cannot use a B-tree index, so this query may read every row of %s "+
		"(nplus1 sees neither the size nor the indexes of the table from the wire). If the table is large, add %s",
		table, trigramFix(table, col))
}

// suggestLeadingWildcardScan is suggestLeadingWildcard once the plan showed
// a Seq Scan of table (rows estimated rows) matching col with the LIKE.
func suggestLeadingWildcardScan(table string, rows int64, col string) string {
	table, col = ident(table), ident(col)
	return fmt.Sprintf("A LIKE pattern that starts with %% or _ cannot use a B-tree index, and no trigram or full-text index serves this one: "+
		"its plan reads every row of %s (about %d rows) with a Seq Scan to match %s, on every run. Add %s",
		table, rows, col, trigramFix(table, col))
}

// trigramFix is the end of both leading_wildcard suggestions: the pg_trgm
// index on table (col), full-text search, the ORMs' declarations and a
// prefix match.
func trigramFix(table, col string) string {
	return fmt.Sprintf("a trigram index, which serves "+
		"LIKE and ILIKE whatever the pattern: `CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX CONCURRENTLY ON %s USING gin (%s gin_trgm_ops)`, "+
		"or search whole words with full-text search (`to_tsvector(%s) @@ plainto_tsquery($1)` over a GIN index); "+
		"in an ORM, declare the index (Prisma @@index([%s(ops: raw(\"gin_trgm_ops\"))], type: Gin), Django GinIndex with opclasses=[\"gin_trgm_ops\"] "+
		"or SearchVector, ActiveRecord add_index using: :gin, opclass: :gin_trgm_ops, or the SQL above in a TypeORM, Sequelize, "+
		"SQLAlchemy or GORM migration), or match a prefix (a pattern that ends with %% only) where a prefix is enough.",
		table, col, col, col)
}

// suggestDeepOffset names keyset pagination.
func suggestDeepOffset(st *fingerprint.Statement, threshold int64) string {
	table := ident(first(st.Facts.TablesRead))
	return fmt.Sprintf("An OFFSET of %d or more makes the server read and throw away that many rows before the page, "+
		"so every page of %s costs more than the last: paginate by key instead (keyset pagination), "+
		"`WHERE id > $last ORDER BY id LIMIT n` with an index on the ORDER BY columns; in an ORM, "+
		"Prisma cursor: {id: last}, skip: 1, take: n; TypeORM where: {id: MoreThan(last)}, order, take; "+
		"Sequelize where: {id: {[Op.gt]: last}}, order, limit; Django filter(id__gt=last).order_by(\"id\")[:n]; "+
		"SQLAlchemy where(T.id > last).order_by(T.id).limit(n); ActiveRecord where(\"id > ?\", last).order(:id).limit(n); "+
		"GORM Where(\"id > ?\", last).Order(\"id\").Limit(n) (FindInBatches walks a table so).", threshold, table)
}

// suggestSlow names what to look at for a slow statement: its plan, and
// what the shape says (a filter that wants an index, a read without LIMIT).
func suggestSlow(st *fingerprint.Statement, max time.Duration, rows int64) string {
	f := st.Facts
	msg := fmt.Sprintf("Its slowest run took %s and returned %d rows. Look at its plan with `EXPLAIN (ANALYZE, BUFFERS)` on a copy of the data", max.Round(time.Millisecond), rows)
	switch {
	case f != nil && len(f.EqualityColumns) > 0 && len(f.TablesRead) > 0:
		msg += fmt.Sprintf(": a Seq Scan under the filter on %s wants an index (`CREATE INDEX CONCURRENTLY ON %s (%s)`)",
			keyColumn(f.EqualityColumns), ident(first(f.TablesRead)), keyColumn(f.EqualityColumns))
	case f != nil && f.Kind == "select" && !f.HasLimit && !f.AggregateOnly:
		msg += ": a read without LIMIT may be returning far more than the page needs"
	}
	return msg + "; in an ORM, log the generated SQL and check the query it builds."
}

// suggestLostUpdate names the three fixes of a read-modify-write race: the
// atomic update, a locking read in a transaction, an optimistic version
// column; in SQL and in the common ORMs.
func suggestLostUpdate(st *fingerprint.Statement, cols []string) string {
	table := ident(first(st.Facts.TablesWritten))
	key := keyColumn(st.Facts.EqualityColumns)
	if key == "" {
		key = "id"
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = ident(c)
	}
	what := strings.Join(names, ", ")
	c := "col" // which of several the code computed is not seen
	if len(names) == 1 {
		c = names[0]
	}
	name := strings.ReplaceAll(strings.Trim(c, `"`), `""`, `"`) // as the ORM spells it
	return fmt.Sprintf("This UPDATE writes back %s of a row the connection read just before: two requests that read the row at once "+
		"both write, and the first write is lost. Let the server change it in one statement, "+
		"`UPDATE %s SET %s = %s - $1 WHERE %s = $2 AND %s >= $1` (0 rows: the check failed), or lock the row as you read it, "+
		"`SELECT ... FOR UPDATE` in the same transaction as the UPDATE, or guard the write with a version column, "+
		"`UPDATE %s SET %s = $1, version = version + 1 WHERE %s = $2 AND version = $3` (0 rows: reload and retry); "+
		"in an ORM, Prisma update({ data: { %s: { decrement: n } } }) or a $transaction, TypeORM decrement/increment "+
		"or setLock(\"pessimistic_write\"), GORM Update(\"%s\", gorm.Expr(\"%s - ?\", n)) or clause.Locking{Strength: \"UPDATE\"}, "+
		"Django F(\"%s\") - n or select_for_update(), ActiveRecord decrement!/increment!, with_lock or lock_version.",
		what, table, c, c, key, c, table, c, key, name, name, name, name)
}
