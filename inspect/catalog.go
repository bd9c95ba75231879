package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/lru"
)

// The catalog reads. Each takes the table's oid; every role may read these
// catalogs.
const (
	qRelation = `SELECT c.oid, n.nspname, c.reltuples::float8
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1 AND n.nspname = coalesce(nullif($2, ''), n.nspname) AND c.relkind IN ('r', 'p', 'm')
ORDER BY n.nspname = 'public' DESC, n.nspname LIMIT 1`
	qIndexes = `SELECT i.relname, am.amname, x.indisunique, x.indisvalid, x.indpred IS NOT NULL,
  array(SELECT pg_catalog.pg_get_indexdef(x.indexrelid, k, true) FROM generate_series(1, x.indnkeyatts) k ORDER BY k)
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = i.relam
WHERE x.indrelid = $1 ORDER BY i.relname`
	qForeignKeys = `SELECT con.conname, con.confrelid::pg_catalog.regclass::text,
  array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_catalog.pg_constraint con
WHERE con.conrelid = $1 AND con.contype = 'f' ORDER BY con.conname`
)

// table reads the catalog facts of rel, from the cache while fresh; nil
// when the relation is not a table (a view's, a function's scan).
func (in *Inspector) table(ctx context.Context, tx pgx.Tx, cache *lru.Cache[string, *tableEntry], rel relation) (*Table, error) {
	now := in.opts.Now()
	if e, ok := cache.Get(rel.key()); ok && now.Sub(e.taken) < in.opts.TTL {
		t := e.t
		return &t, nil
	}
	var oid uint32
	var schema string
	var reltuples float64
	err := tx.QueryRow(ctx, qRelation, rel.name, rel.schema).Scan(&oid, &schema, &reltuples)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t := Table{Name: relation{schema: schema, name: rel.name}.key(), Rows: int64(reltuples), Indexes: []Index{}, ForeignKeys: []ForeignKey{}}
	if reltuples < 0 { // never vacuumed nor analyzed: ask the planner
		if t.Rows, err = plannerRows(ctx, tx, schema, rel.name); err != nil {
			return nil, err
		}
		t.RowsEstimated = true
	}
	if t.Indexes, err = indexes(ctx, tx, oid); err != nil {
		return nil, err
	}
	if t.ForeignKeys, err = foreignKeys(ctx, tx, oid); err != nil {
		return nil, err
	}
	cache.Add(rel.key(), &tableEntry{t: t, taken: now}, 0)
	return &t, nil
}

// plannerRows is the planner's estimate of a table's rows: for a table
// never analyzed, from its size on disk.
func plannerRows(ctx context.Context, tx pgx.Tx, schema, name string) (int64, error) {
	var raw []byte
	q := "EXPLAIN (FORMAT JSON) SELECT FROM " + pgx.Identifier{schema, name}.Sanitize()
	if err := tx.QueryRow(ctx, q).Scan(&raw); err != nil {
		return 0, err
	}
	var doc []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) == 0 {
		return 0, errors.New("EXPLAIN of the table gave no row estimate")
	}
	return int64(math.Round(doc[0].Plan.Rows)), nil
}

func indexes(ctx context.Context, tx pgx.Tx, oid uint32) ([]Index, error) {
	rows, err := tx.Query(ctx, qIndexes, oid)
	if err != nil {
		return nil, err
	}
	out := []Index{}
	for rows.Next() {
		var ix Index
		if err := rows.Scan(&ix.Name, &ix.Method, &ix.Unique, &ix.Valid, &ix.Partial, &ix.Columns); err != nil {
			rows.Close()
			return nil, err
		}
		for i, c := range ix.Columns {
			ix.Columns[i] = unquote(c)
		}
		out = append(out, ix)
	}
	return out, rows.Err()
}

func foreignKeys(ctx context.Context, tx pgx.Tx, oid uint32) ([]ForeignKey, error) {
	rows, err := tx.Query(ctx, qForeignKeys, oid)
	if err != nil {
		return nil, err
	}
	out := []ForeignKey{}
	for rows.Next() {
		var fk ForeignKey
		if err := rows.Scan(&fk.Name, &fk.References, &fk.Columns); err != nil {
			rows.Close()
			return nil, err
		}
		fk.References = unquote(fk.References)
		out = append(out, fk)
	}
	return out, rows.Err()
}

// unquote turns a name as PostgreSQL prints it ("User", public."User") into
// the name itself, part by part; an expression is kept as printed.
func unquote(s string) string {
	if !strings.Contains(s, `"`) {
		return s
	}
	var parts []string
	for rest := s; rest != ""; {
		if rest[0] != '"' {
			p, r, _ := strings.Cut(rest, ".")
			parts, rest = append(parts, p), r
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(rest); i++ {
			if rest[i] == '"' {
				if i+1 < len(rest) && rest[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			b.WriteByte(rest[i])
		}
		if i >= len(rest) { // no closing quote: not a name
			return s
		}
		parts = append(parts, b.String())
		rest = rest[i+1:]
		if rest != "" {
			if rest[0] != '.' {
				return s
			}
			rest = rest[1:]
		}
	}
	return strings.Join(parts, ".")
}
