package replay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/pgwire"
)

func TestReadOnly(t *testing.T) {
	fp := fingerprint.New(fingerprint.Options{})
	for sql, want := range map[string]bool{
		"SELECT name FROM users WHERE id = $1": true,
		"select 1; select 2":                   true,
		"BEGIN":                                true,
		"begin read only":                      true,
		"COMMIT":                               true,
		"SET search_path = public":             true,
		"SHOW server_version":                  true,
		"EXPLAIN SELECT * FROM t":              true,
		"INSERT INTO t VALUES (1)":             false,
		"UPDATE t SET a = 1":                   false,
		"DELETE FROM t":                        false,
		"WITH x AS (DELETE FROM t RETURNING *) SELECT 1":        false,
		"SELECT * FROM t FOR UPDATE":                            false,
		"SELECT * INTO t2 FROM t":                               false,
		"CREATE TABLE t (a int)":                                false,
		"TRUNCATE t":                                            false,
		"EXPLAIN ANALYZE DELETE FROM t":                         false,
		"BEGIN READ WRITE":                                      false,
		"SET default_transaction_read_only = off":               false,
		"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE": false,
		"CALL do_things()":                                      false,
		"DO $$ BEGIN END $$":                                    false,
		"select 1; delete from t":                               false,
		"COPY t FROM STDIN":                                     false,
		"not sql at all":                                        false,
	} {
		if got := ReadOnly(fp.Of(sql)); got != want {
			t.Errorf("ReadOnly(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestReexecute(t *testing.T) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 20) i; CREATE SEQUENCE s"); err != nil {
		t.Fatal(err)
	}

	conn1 := &pgwire.ConnInfo{ID: 1, User: "app", Database: "app", ApplicationName: "rec"}
	conn2 := &pgwire.ConnInfo{ID: 2, User: "app", Database: "app", ApplicationName: "rec"}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var execs []*pgwire.Execution
	execs = append(execs, &pgwire.Execution{Conn: conn1, Start: at(0), End: at(1), Protocol: "simple", SQL: "SELECT id FROM items ORDER BY id LIMIT 6", Rows: 6})
	for i := 1; i <= 6; i++ {
		v := []byte{byte('0' + i)}
		execs = append(execs, &pgwire.Execution{Conn: conn1, Start: at(2 + i), End: at(3 + i), Protocol: "extended",
			SQL: "SELECT name FROM items WHERE id = $1", Params: [][]byte{v}, NumParams: 1, ParamsHash: pgwire.HashParams(nil, [][]byte{v}), Rows: 1})
	}
	// Binary parameters, as pgx sends an int8.
	execs = append(execs, &pgwire.Execution{Conn: conn2, Start: at(5), End: at(6), Protocol: "extended",
		SQL: "SELECT name FROM items WHERE id = $1::int8", Params: [][]byte{{0, 0, 0, 0, 0, 0, 0, 9}}, ParamFormats: []int16{1}, NumParams: 1})
	execs = append(execs,
		&pgwire.Execution{Conn: conn2, Start: at(20), End: at(21), Protocol: "simple", SQL: "DELETE FROM items"},
		&pgwire.Execution{Conn: conn2, Start: at(22), End: at(23), Protocol: "simple", SQL: "SELECT nextval('s')"},
		&pgwire.Execution{Conn: conn2, Start: at(24), End: at(25), Protocol: "extended", SQL: "SELECT name FROM items WHERE id = $1", NumParams: 1, ParamsHash: 5},
		&pgwire.Execution{Conn: conn2, Start: at(26), End: at(27), Protocol: "extended", SQL: ""},
		&pgwire.Execution{Conn: conn2, Start: at(28), End: at(29), Protocol: "simple", SQL: "SELECT 1; SELECT 2"},
		&pgwire.Execution{Conn: conn2, Start: at(29), End: at(30), Protocol: "simple", SQL: "SELECT 1; SELECT 2", StatementIndex: 1},
	)
	col := NewCollector(0)
	src := SliceSource(execs)
	began := time.Now()
	res, err := Reexecute(ctx, &src, ReexecConfig{Target: pg.URL(pgtest.Superuser), Speed: 2, Analyzer: analyzer.Config{Sinks: []analyzer.Sink{col}}})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(began); el < 10*time.Millisecond {
		t.Errorf("re-execution took %v: the recorded pacing (30ms at speed 2) was not kept", el)
	}
	if res.Skipped[SkipWrite] != 1 || res.Skipped[SkipNoParams] != 1 || res.Skipped[SkipNoSQL] != 1 {
		t.Errorf("skipped %v", res.Skipped)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 20 {
		t.Fatalf("items: %d, %v: the DELETE must not have run", n, err)
	}
	s := res.Summary
	// 1 + 6 + 1 + nextval (refused by the read-only session) + 2 statements
	// of one query. The binary-parameter lookup has the same fingerprint as
	// the others (pg_query's ignores the cast).
	if s.Statements != 11 || s.Errors != 1 {
		for _, f := range s.Fingerprints {
			t.Logf("%+v", *f)
		}
		t.Fatalf("summary: %d statements, %d errors", s.Statements, s.Errors)
	}
	byQuery := map[string]*FingerprintStats{}
	for _, f := range s.Fingerprints {
		// The int8 lookup shares the others' fingerprint; which text names
		// it depends on which connection ran first.
		byQuery[strings.TrimSuffix(f.Query, "::int8")] = f
	}
	if f := byQuery["SELECT name FROM items WHERE id = $1"]; f == nil || f.Calls != 7 || f.Rows != 7 || f.Errors != 0 {
		t.Errorf("lookups: %+v", f)
	}
	if f := byQuery["SELECT nextval($1)"]; f == nil || f.ErrorCodes["25006"] != 1 {
		t.Errorf("nextval in a read-only session: %+v", f)
	}
	fs, _ := col.Findings()
	if len(fs) != 1 || fs[0].Kind != "n_plus_one" || fs[0].Source == nil {
		t.Errorf("findings of the re-execution: %+v", fs)
	}
}

func TestReexecSchedule(t *testing.T) {
	r := &reexec{cfg: ReexecConfig{Speed: 2, MaxIdle: time.Second}}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	first := r.due(at(0))
	for _, tc := range []struct{ orig, want float64 }{
		{0.5, 0.25}, // half speed... twice as fast: 0.5 s recorded is 0.25 s
		{1.5, 0.75},
		{11.5, 1.25}, // a 10 s pause is cut to MaxIdle (1 s), then halved
		{12, 1.5},
		{11.9, 1.45}, // another connection's statement a little earlier
	} {
		got := r.due(at(tc.orig)).Sub(first).Seconds()
		if got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("recorded %.1fs: due after %.3fs, want %.3fs", tc.orig, got, tc.want)
		}
	}
}
