package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/lru"
)

// Plan is what one inspection found, as GET /api/fingerprints/{id}/plan
// serves it: the generic plan of the normalized query, when it was taken, and
// the tables the plan reads with their size, indexes and foreign keys. It
// holds the normalized text, names and estimates: no value.
type Plan struct {
	Fingerprint string    `json:"fingerprint"`
	Query       string    `json:"query"`
	TakenAt     time.Time `json:"taken_at"`
	// Method is how the generic plan was made: "explain_generic_plan"
	// (PostgreSQL 16+) or "prepared_generic_plan" (a prepared statement
	// with plan_cache_mode = force_generic_plan).
	Method        string `json:"method,omitempty"`
	ServerVersion int    `json:"server_version,omitempty"`
	// Plan is EXPLAIN's JSON; omitted when it was larger than 256 KB.
	Plan   json.RawMessage `json:"plan,omitempty"`
	Tables []Table         `json:"tables"`
	// SeqScans are the plan's Seq Scans under a filter: what the
	// missing_index and leading_wildcard rules judge.
	SeqScans []detector.ScanFacts `json:"seq_scans"`
	// Error says why the shape could not be inspected.
	Error string `json:"error,omitempty"`

	id         uint64
	ttl        time.Duration
	inspection detector.Inspection
}

// Table is what the catalogs say of one table a plan reads.
type Table struct {
	Name string `json:"name"` // schema-qualified unless in public
	// Rows is the estimated row count: pg_class.reltuples, or the
	// planner's estimate for a table never analyzed (RowsEstimated).
	Rows          int64        `json:"rows"`
	RowsEstimated bool         `json:"rows_planner_estimate,omitempty"`
	Indexes       []Index      `json:"indexes"`
	ForeignKeys   []ForeignKey `json:"foreign_keys"`
}

// Index is one index of a table.
type Index struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"` // key columns (or expressions), in order
	Method  string   `json:"method"`  // btree, hash, gin, gist, brin, ...
	Unique  bool     `json:"unique,omitempty"`
	Valid   bool     `json:"valid"`
	// Partial is true for an index with a predicate (WHERE ...).
	Partial bool `json:"partial,omitempty"`
}

// ForeignKey is one foreign key of a table.
type ForeignKey struct {
	Name       string   `json:"name"`
	Columns    []string `json:"columns"`
	References string   `json:"references"`
}

// tableEntry is a table's catalog facts, cached per connection.
type tableEntry struct {
	t     Table
	taken time.Time
}

// preparedName is the prepared statement of the generic plan on servers
// before 16.
const preparedName = "nplus1_inspect"

// inspect runs one inspection of r on conn (server version version) in a
// read-only transaction. Its failures are the Plan's Error.
func (in *Inspector) inspect(ctx context.Context, conn *pgx.Conn, version int, tables *lru.Cache[string, *tableEntry], r detector.InspectionRequest) *Plan {
	p := &Plan{Fingerprint: r.Hex, Query: r.Query, TakenAt: in.opts.Now(), ServerVersion: version, id: r.Fingerprint, Tables: []Table{}}
	p.inspection.Fingerprint = r.Fingerprint
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		ms := strconv.FormatInt(in.opts.StatementTimeout.Milliseconds(), 10)
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = "+ms); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = "+ms); err != nil {
			return err
		}
		raw, err := in.explain(ctx, tx, version, p)
		if err != nil {
			return err
		}
		scans, rels, err := readPlan(raw)
		if err != nil {
			return err
		}
		if len(raw) <= maxPlanBytes {
			p.Plan = raw
		}
		byName := map[string]Table{}
		for _, rel := range rels {
			t, err := in.table(ctx, tx, tables, rel)
			if err != nil {
				return err
			}
			if t != nil {
				byName[rel.key()] = *t
				p.Tables = append(p.Tables, *t)
			}
		}
		p.SeqScans = []detector.ScanFacts{}
		for _, sc := range scans {
			t, ok := byName[sc.rel.key()]
			if !ok {
				continue
			}
			p.SeqScans = append(p.SeqScans, scanFacts(t, sc.columns, sc.likes))
		}
		return nil
	})
	if err != nil {
		p.Error = in.inspectionError(r, err)
		p.inspection.Err = p.Error
		return p
	}
	p.inspection.Scans = p.SeqScans
	return p
}

// explain returns the JSON of the generic plan of p.Query.
func (in *Inspector) explain(ctx context.Context, tx pgx.Tx, version int, p *Plan) ([]byte, error) {
	var raw []byte
	if version >= 160000 {
		p.Method = "explain_generic_plan"
		err := tx.QueryRow(ctx, "EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) "+p.Query).Scan(&raw)
		return raw, err
	}
	p.Method = "prepared_generic_plan"
	if _, err := tx.Exec(ctx, "DEALLOCATE ALL"); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "PREPARE "+preparedName+" AS "+p.Query); err != nil {
		return nil, err
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT coalesce(cardinality(parameter_types), 0) FROM pg_prepared_statements WHERE name = $1", preparedName).Scan(&n); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		return nil, err
	}
	args := ""
	if n > 0 {
		args = "(" + strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ") + ")"
	}
	if err := tx.QueryRow(ctx, "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE "+preparedName+args).Scan(&raw); err != nil {
		return nil, err
	}
	_, err := tx.Exec(ctx, "DEALLOCATE "+preparedName)
	return raw, err
}

// scanFacts is what the detector needs of one Seq Scan of t under a filter
// that compares cols and matches likes with LIKE.
func scanFacts(t Table, cols, likes []string) detector.ScanFacts {
	sf := detector.ScanFacts{Table: t.Name, Rows: t.Rows, FilterColumns: cols, LikeColumns: likes}
	for _, ix := range t.Indexes {
		if ix.Valid && len(ix.Columns) > 0 {
			sf.IndexedColumns = append(sf.IndexedColumns, ix.Columns[0])
		}
	}
	for _, fk := range t.ForeignKeys {
		if len(fk.Columns) > 0 {
			if sf.ForeignKeys == nil {
				sf.ForeignKeys = map[string]string{}
			}
			sf.ForeignKeys[fk.Columns[0]] = fk.References
		}
	}
	return sf
}

// inspectionError says in one line why an inspection failed, and logs the
// failures an operator can fix once (missing privileges, timeouts).
func (in *Inspector) inspectionError(r detector.InspectionRequest, err error) string {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		if errors.Is(err, context.Canceled) {
			return "stopped"
		}
		return connectReason(err)
	}
	msg := fmt.Sprintf("%s (SQLSTATE %s)", pg.Message, pg.Code)
	switch pg.Code {
	case "42501": // insufficient_privilege
		in.warnOnce("privilege:"+pg.Message, "the inspection role lacks a privilege: grant it SELECT on the tables it inspects (see the README's inspection section)",
			"server", in.target, "user", in.opts.Config.User, "fingerprint", r.Hex, "error", msg)
	case "57014", "55P03": // statement or lock timeout
		in.warnOnce("timeout:"+r.Hex, "an inspection ran into its timeout", "server", in.target, "fingerprint", r.Hex,
			"timeout", in.opts.StatementTimeout, "error", msg)
	default:
		in.log.Debug("inspection failed", "fingerprint", r.Hex, "error", msg)
	}
	return msg
}
