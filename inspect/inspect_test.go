package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// schema is a shop whose addresses table (20,000 rows) is looked up by
// user_id, a foreign key without an index, and by id (its primary key);
// notes is never analyzed, so its size comes from the planner.
const schema = `
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE nplus1 FROM PUBLIC, u_scram;
ALTER ROLE u_scram SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE nplus1 TO u_scram;
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE addresses (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), city text NOT NULL, street text NOT NULL);
CREATE INDEX addresses_city_idx ON addresses (city) WHERE city <> '';
CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO users SELECT i, 'zqplant-' || i || '@example.com' FROM generate_series(1, 2000) i;
INSERT INTO addresses SELECT i, 1 + i % 2000, 'zqplant-city-' || i % 50, 'zqplant-street-' || i FROM generate_series(1, 20000) i;
INSERT INTO notes SELECT i, 'zqplant-note-' || i FROM generate_series(1, 20000) i;
ANALYZE users;
ANALYZE addresses;
GRANT SELECT ON users, addresses, notes TO u_scram;
`

// server starts PostgreSQL logging every statement with its user, and
// loads schema.
func server(t *testing.T) *pgtest.Server {
	t.Helper()
	pg, err := pgtest.Start(pgtest.Options{Settings: []string{"log_statement = 'all'", "log_line_prefix = 'user=%u '", "autovacuum = off"}})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	return pg
}

// syncBuffer is a log destination safe for the inspector's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs an inspector on url until the test ends.
func start(t *testing.T, url string) (*Inspector, *syncBuffer) {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	in, err := New(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return in, logs
}

// request is the detector's request for sql, as the fingerprint package
// normalizes it.
func request(t *testing.T, sql string) detector.InspectionRequest {
	t.Helper()
	res := fingerprint.New(fingerprint.Options{}).Of(sql)
	if len(res.Statements) != 1 || res.Statements[0].Err != nil {
		t.Fatalf("fingerprint %q: %+v", sql, res)
	}
	st := res.Statements[0]
	return detector.InspectionRequest{Fingerprint: st.ID, Hex: st.Hex, Query: st.Normalized, Tables: st.Facts.TablesRead}
}

// ask inspects r and waits for the answer.
func ask(t *testing.T, in *Inspector, r detector.InspectionRequest) detector.Inspection {
	t.Helper()
	if ins, ok := in.Inspect(r); ok {
		return ins
	}
	for {
		select {
		case ins := <-in.Results():
			if ins.Fingerprint == r.Fingerprint {
				return ins
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no answer for %s after 20s", r.Query)
		}
	}
}

func TestInspectGenericPlanOnTheHarnessServer(t *testing.T) {
	pg := server(t)
	in, logs := start(t, pg.URL(pgtest.UserSCRAM))

	// An unindexed foreign key under a literal the client inlined.
	r := request(t, "SELECT street FROM addresses WHERE user_id = 42")
	if strings.Contains(r.Query, "42") {
		t.Fatalf("normalized query %q holds the literal", r.Query)
	}
	began := time.Now()
	ins := ask(t, in, r)
	t.Logf("first inspection (connection up, catalogs not cached): %v", time.Since(began))
	if ins.Err != "" {
		t.Fatalf("inspection failed: %s\nlogs:\n%s", ins.Err, logs)
	}
	if len(ins.Scans) != 1 {
		t.Fatalf("scans %+v, want the Seq Scan of addresses", ins.Scans)
	}
	sc := ins.Scans[0]
	if sc.Table != "addresses" || !slices.Equal(sc.FilterColumns, []string{"user_id"}) || sc.Rows < 19_000 || sc.Rows > 21_000 {
		t.Errorf("scan %+v, want addresses filtered on user_id, about 20000 rows", sc)
	}
	if !slices.Contains(sc.IndexedColumns, "id") || !slices.Contains(sc.IndexedColumns, "city") || slices.Contains(sc.IndexedColumns, "user_id") {
		t.Errorf("indexed columns %v, want id and city, not user_id", sc.IndexedColumns)
	}
	if sc.ForeignKeys["user_id"] != "users" {
		t.Errorf("foreign keys %v, want user_id → users", sc.ForeignKeys)
	}

	p, ok := in.Plan(r.Fingerprint)
	if !ok || p.Method != "prepared_generic_plan" || p.ServerVersion < 150000 || len(p.Plan) == 0 || p.TakenAt.IsZero() {
		t.Fatalf("plan %+v: want a prepared generic plan of PostgreSQL 15", p)
	}
	var idx []string
	for _, tb := range p.Tables {
		for _, ix := range tb.Indexes {
			idx = append(idx, tb.Name+":"+ix.Name+":"+ix.Method+":"+strings.Join(ix.Columns, ","))
		}
	}
	if want := []string{"addresses:addresses_city_idx:btree:city", "addresses:addresses_pkey:btree:id"}; !slices.Equal(idx, want) {
		t.Errorf("indexes %v, want %v", idx, want)
	}

	// The primary key lookup: an Index Scan, no Seq Scan.
	ins = ask(t, in, request(t, "SELECT street FROM addresses WHERE id = $1"))
	if ins.Err != "" || len(ins.Scans) != 0 {
		t.Errorf("lookup by primary key: %+v, want no Seq Scan", ins)
	}
	// A table never analyzed: its size is the planner's estimate.
	ins = ask(t, in, request(t, "SELECT id FROM notes WHERE body = $1 OR id > $2"))
	if ins.Err != "" || len(ins.Scans) != 1 || ins.Scans[0].Rows < 10_000 || !slices.Equal(ins.Scans[0].FilterColumns, []string{"body", "id"}) {
		t.Errorf("notes: %+v, want a Seq Scan on body and id of about 20000 estimated rows", ins)
	}
	// The answer is cached.
	if _, ok := in.Inspect(r); !ok {
		t.Error("a second request was not answered from the cache")
	}

	// Nothing of the data is in the plans, the answers or the logs.
	all, _ := json.Marshal([]any{p, ins})
	for _, out := range []string{string(all), logs.String()} {
		if strings.Contains(out, "zqplant") {
			t.Errorf("output holds a value of the data: %s", out)
		}
	}
	pg.Stop() // the log is whole, and no longer written
	onlyReads(t, pg.Log(), pgtest.UserSCRAM)
}

// onlyReads checks that the server logged only reads for user: the
// statements of the inspection transaction, nothing else.
func onlyReads(t *testing.T, serverLog, user string) {
	t.Helper()
	allowed := regexp.MustCompile(`^(begin read only|SET LOCAL (statement_timeout|lock_timeout) = \d+|SET LOCAL plan_cache_mode = force_generic_plan|` +
		`DEALLOCATE (ALL|nplus1_inspect)|PREPARE nplus1_inspect AS SELECT .*|EXPLAIN \((VERBOSE, )?FORMAT JSON\) .*|` +
		`SELECT coalesce\(cardinality\(parameter_types\), 0\) FROM pg_prepared_statements .*|SELECT (c\.oid|i\.relname|con\.conname), .*|commit|rollback)$`)
	n := 0
	for _, line := range strings.Split(serverLog, "\n") {
		_, stmt, ok := strings.Cut(line, "user="+user+" LOG:  statement: ")
		if !ok {
			continue
		}
		n++
		if !allowed.MatchString(stmt) {
			t.Errorf("the inspection role ran %q", stmt)
		}
	}
	if n == 0 {
		t.Errorf("the server logged no statement of %s:\n%s", user, serverLog)
	}
}

func TestInspectNeverWrites(t *testing.T) {
	pg := server(t)
	in, logs := start(t, pg.URL(pgtest.UserSCRAM))
	// Even asked (the detector never asks about writes), a write is only
	// planned inside a read-only transaction: EXPLAIN does not run it, and
	// the role may not write anyway.
	ins := ask(t, in, request(t, "DELETE FROM addresses WHERE user_id = $1"))
	if ins.Err == "" {
		t.Errorf("EXPLAIN of a DELETE by a role without DELETE: %+v, want a privilege error", ins)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM addresses").Scan(&n); err != nil || n != 20000 {
		t.Errorf("addresses has %d rows (%v), want 20000 untouched", n, err)
	}
	// The role cannot create anything either: the README's grants.
	uc, err := pgx.Connect(ctx, pg.URL(pgtest.UserSCRAM))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close(ctx)
	if _, err := uc.Exec(ctx, "CREATE TABLE x (a int)"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("CREATE TABLE in the role's default transaction: %v, want a read-only transaction error", err)
	}
	// Even in a read-write transaction: the README's grants allow no write.
	if _, err := uc.Exec(ctx, "BEGIN READ WRITE; CREATE TABLE x (a int)"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("CREATE TABLE in a read-write transaction: %v, want permission denied", err)
	}
	_, _ = uc.Exec(ctx, "ROLLBACK")
	if _, err := uc.Exec(ctx, "BEGIN READ WRITE; UPDATE addresses SET city = '' WHERE id = 1"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("UPDATE in a read-write transaction: %v, want permission denied", err)
	}
	_, _ = uc.Exec(ctx, "ROLLBACK")
	if !strings.Contains(logs.String(), "lacks a privilege") {
		t.Errorf("no log line about the missing privilege:\n%s", logs)
	}
}

func TestInspectMissingPrivilegeIsOneLine(t *testing.T) {
	pg := server(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "REVOKE SELECT ON addresses FROM u_scram"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	in, logs := start(t, pg.URL(pgtest.UserSCRAM))
	for _, q := range []string{"SELECT street FROM addresses WHERE user_id = $1", "SELECT city FROM addresses WHERE user_id = $1"} {
		ins := ask(t, in, request(t, q))
		if !strings.Contains(ins.Err, "permission denied for table addresses") || !strings.Contains(ins.Err, "42501") {
			t.Errorf("answer %+v, want permission denied (42501)", ins)
		}
	}
	if n := strings.Count(logs.String(), "lacks a privilege"); n != 1 {
		t.Errorf("%d privilege lines, want one:\n%s", n, logs)
	}
}

// TestInspectConnectionFailures: a refused login, a port nobody listens on
// and a server that never answers each give one clear line, without the
// password, and the inspector retries.
func TestInspectConnectionFailures(t *testing.T) {
	pg := server(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	closed.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	const secret = "wrong-pw-zq"
	cases := []struct{ name, url, reason string }{
		{"refused login", "postgres://" + pgtest.UserSCRAM + ":" + secret + "@" + pg.Addr() + "/nplus1?sslmode=disable", "login refused: password authentication failed (SQLSTATE 28P01)"},
		{"wrong address", "postgres://" + pgtest.UserSCRAM + ":" + secret + "@" + refusedAddr + "/nplus1?sslmode=disable", "connection refused"},
		{"timeout", "postgres://" + pgtest.UserSCRAM + ":" + secret + "@" + silent.Addr().String() + "/nplus1?sslmode=disable&connect_timeout=1", "timed out"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, logs := start(t, c.url)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(logs.String(), "inspection connection failed") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			out := logs.String()
			if strings.Count(out, "inspection connection failed") != 1 || !strings.Contains(out, `"reason":"`+c.reason+`"`) {
				t.Errorf("logs %s: want one failure line with reason %q", out, c.reason)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the password is in the logs: %s", out)
			}
			// Requests wait in the queue, or are dropped and counted: never a block.
			r := request(t, "SELECT street FROM addresses WHERE user_id = $1")
			for range DefaultQueueSize + 5 {
				r.Fingerprint++
				in.Inspect(r)
			}
			if st := in.Stats(); st.Dropped == 0 || st.Connected {
				t.Errorf("stats %+v: want requests dropped past the queue, not connected", st)
			}
		})
	}
	if _, err := ParseURL("postgres://u:" + secret + "@host:notaport/db"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("a bad URL: %v, want an error without the password", err)
	}
}

// likeSchema adds people (20,000 rows) searched by name with no index that
// serves a pattern, and people_trgm, the same rows with the fixed form: a
// pg_trgm GIN index on name, made after the rows as a migration on a
// table in use makes it (rows inserted after a GIN index wait in its
// pending list until a VACUUM, and the planner prices such an index high).
// pg_trgm is in the server's contrib, which the harness's PostgreSQL has; a
// server without it fails the test.
const likeSchema = `
CREATE EXTENSION pg_trgm;
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL);
CREATE INDEX people_name_idx ON people (name);
CREATE TABLE people_trgm (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO people SELECT i, 'zqplant ' || md5(i::text) FROM generate_series(1, 20000) i;
INSERT INTO people_trgm SELECT * FROM people;
CREATE INDEX people_trgm_name_idx ON people_trgm USING gin (name gin_trgm_ops);
ANALYZE people;
ANALYZE people_trgm;
GRANT SELECT ON people, people_trgm TO u_scram;
`

// TestInspectLeadingWildcardPlan: on the harness's PostgreSQL, the generic
// plan of a LIKE whose pattern is a parameter reads 20,000 rows with a Seq
// Scan that matches the column (a B-tree index on it does not serve the
// pattern), and with a pg_trgm GIN index it does not; the LIKE is not a
// compared column, so missing_index does not see it.
func TestInspectLeadingWildcardPlan(t *testing.T) {
	pg := server(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, likeSchema); err != nil {
		t.Fatalf("load the schema (pg_trgm must be available to the server): %v", err)
	}
	c.Close(ctx)
	in, logs := start(t, pg.URL(pgtest.UserSCRAM))

	for _, q := range []string{
		"SELECT id, name FROM people WHERE name LIKE $1",
		"SELECT id FROM people WHERE name ILIKE '%' || $1 || '%'", // contains(), the % in the text
	} {
		ins := ask(t, in, request(t, q))
		if ins.Err != "" || len(ins.Scans) != 1 {
			t.Fatalf("%s: %+v, want one Seq Scan\nlogs:\n%s", q, ins, logs)
		}
		sc := ins.Scans[0]
		if sc.Table != "people" || !slices.Equal(sc.LikeColumns, []string{"name"}) || len(sc.FilterColumns) != 0 || sc.Rows != 20_000 {
			t.Errorf("%s: scan %+v, want people read whole (20000 rows) to match name, no compared column", q, sc)
		}
		if !slices.Contains(sc.IndexedColumns, "name") {
			t.Errorf("%s: indexed columns %v: the B-tree index on name is there, and does not serve the pattern", q, sc.IndexedColumns)
		}
	}
	for _, q := range []string{
		"SELECT id, name FROM people_trgm WHERE name LIKE $1",
		"SELECT id FROM people_trgm WHERE name ILIKE '%' || $1 || '%'",
	} {
		r := request(t, q)
		ins := ask(t, in, r)
		if ins.Err != "" || len(ins.Scans) != 0 {
			t.Errorf("%s: %+v, want no Seq Scan: the trigram index serves it", q, ins)
		}
		if p, ok := in.Plan(r.Fingerprint); !ok || !strings.Contains(string(p.Plan), "people_trgm_name_idx") {
			t.Errorf("%s: the plan (kept: %v) does not use the trigram index", q, ok)
		}
	}
	pg.Stop()
	onlyReads(t, pg.Log(), pgtest.UserSCRAM)
	if strings.Contains(logs.String(), "zqplant") {
		t.Errorf("the logs hold a value of the data:\n%s", logs)
	}
}
