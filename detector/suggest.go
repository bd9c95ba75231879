package detector

import (
	"fmt"
	"strings"

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
