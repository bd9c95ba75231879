package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// inspectSchema: orders (20,000 rows) reference customers through
// customer_id, a foreign key without an index; invoices are the fixed
// form, indexed on customer_id. The inspection role (u_scram) gets the
// README's grants: CONNECT, and SELECT on the tables; nothing else. ledger,
// made after the grants, is a table it may not read: its inspection fails.
const inspectSchema = `
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE nplus1 FROM PUBLIC, u_scram;
ALTER ROLE u_scram SET default_transaction_read_only = on;
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id), status text NOT NULL);
CREATE TABLE invoices (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id), total int NOT NULL);
CREATE INDEX invoices_customer_id_idx ON invoices (customer_id);
INSERT INTO customers SELECT i, 'zqplant-' || i || '@example.com' FROM generate_series(1, 2000) i;
INSERT INTO orders SELECT i, 1 + i % 2000, 'zqplant-status-' || i % 7 FROM generate_series(1, 20000) i;
INSERT INTO invoices SELECT i, 1 + i % 2000, i FROM generate_series(1, 20000) i;
ANALYZE;
GRANT CONNECT ON DATABASE nplus1 TO u_scram;
GRANT USAGE ON SCHEMA public TO u_scram;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO u_scram;
CREATE TABLE ledger (id int PRIMARY KEY, customer_id int NOT NULL, amount int NOT NULL);
INSERT INTO ledger SELECT i, 1 + i % 2000, i FROM generate_series(1, 20000) i;
ANALYZE ledger;
`

// TestMissingIndexThroughTheProxy runs N+1s over an unindexed foreign key
// through the real proxy with pgx and database/sql, with an inspection
// connection: each is a missing_index with the CREATE INDEX and the foreign
// key called out; the same loop over the indexed table is not; the plan is
// served; the inspection metrics count what the connection did (ok, failed
// on a table the role may not read, answered from the cache); and no value
// of the data is in any output.
func TestMissingIndexThroughTheProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startLoggingPostgres(t, ctx, inspectSchema)

	ip := startInspectingProxy(t, ctx, pg)
	defer ip.stop()
	out, console, stop, logs, done, addrs, api := ip.out, ip.console, ip.stop, ip.logs, ip.done, ip.addrs, ip.api
	// The inspection metrics, before the workload: the connection is made
	// (within seconds), nothing inspected yet.
	var before string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, before = httpCall(t, "GET", api+"/metrics")
		if seriesValue(t, before, "nplus1_inspection_connection_up") == 1 || time.Now().After(deadline) {
			break
		}
	}
	for _, series := range []string{`nplus1_inspections_total{result="ok"}`, `nplus1_inspections_total{result="failed"}`,
		`nplus1_inspection_cache_hits_total`, `nplus1_inspections_dropped_total{reason="queue_full"}`} {
		if v := seriesValue(t, before, series); v != 0 {
			t.Errorf("before the workload: %s %v, want 0", series, v)
		}
	}
	if v := seriesValue(t, before, "nplus1_inspection_connection_up"); v != 1 {
		t.Errorf("nplus1_inspection_connection_up %v, want 1 once the connection is made", v)
	}

	// pgx: the customers, then each one's orders, one query each.
	c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=mi-pgx"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	ids := customerIDs(t, ctx, func(q string) (pgx.Rows, error) { return c.Query(ctx, q) })
	for _, table := range []string{"orders", "invoices", "ledger"} {
		for _, id := range ids {
			if _, err := c.Exec(ctx, "SELECT id FROM "+table+" WHERE customer_id = $1", id); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Writes in a loop, over a filter no index serves: never asked about,
	// never EXPLAINed (the server's log shows it below).
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec(ctx, "UPDATE orders SET status = $2 WHERE customer_id = $1", id, "zqplant-shipped"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// database/sql with the pgx driver, inlined by the simple protocol.
	db := openSimpleSQL(t, addrs["proxy"], "mi-sql")
	rows, err := db.QueryContext(ctx, "SELECT id FROM customers ORDER BY id LIMIT 10")
	if err != nil {
		t.Fatal(err)
	}
	var sqlIDs []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		sqlIDs = append(sqlIDs, id)
	}
	rows.Close()
	for _, id := range sqlIDs {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders WHERE customer_id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}

	found, miBody := flushAndFind(t, api, []string{"mi-pgx", "mi-sql"}, detector.KindMissingIndex, 2)
	if len(found) != 2 {
		t.Fatalf("%d missing_index findings, want one per client; logs:\n%s", len(found), logs)
	}
	for _, f := range found {
		if f.Index == nil || f.Index.Table != "orders" || f.Index.ForeignKey != "customers" || f.Severity != detector.SeverityCritical ||
			f.Index.Create != "CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id)" ||
			!strings.Contains(f.Suggestion, "customer_id is a foreign key to customers without an index") {
			t.Errorf("finding %+v %+v: want orders (customer_id), a foreign key to customers, critical", f, f.Index)
		}
		if f.Index != nil && (f.Index.Rows < 19_000 || f.Index.Rows > 21_000) {
			t.Errorf("rows %d, want about 20000", f.Index.Rows)
		}
	}

	// The fixed form: the loop over invoices is an N+1, but its plan uses
	// the index; it was inspected, and is not a missing_index.
	var invoices string
	_, body := httpCall(t, "GET", api+"/api/findings?kind=n_plus_one&application=mi-pgx")
	var loops []detector.Finding
	if err := json.Unmarshal([]byte(body), &loops); err != nil {
		t.Fatal(err)
	}
	for _, f := range loops {
		if strings.Contains(f.Query, "invoices") {
			invoices = f.Fingerprint
		}
	}
	if invoices == "" {
		t.Fatalf("no N+1 over invoices: %s", body)
	}
	var plan struct {
		Fingerprint string          `json:"fingerprint"`
		TakenAt     time.Time       `json:"taken_at"`
		Plan        json.RawMessage `json:"plan"`
		Tables      []struct {
			Name    string `json:"name"`
			Indexes []struct {
				Name string `json:"name"`
			} `json:"indexes"`
		} `json:"tables"`
	}
	var planBody string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var code int
		if code, planBody = httpCall(t, "GET", api+"/api/fingerprints/"+invoices+"/plan"); code == 200 {
			break
		}
	}
	if err := json.Unmarshal([]byte(planBody), &plan); err != nil || plan.Fingerprint != invoices || plan.TakenAt.IsZero() || len(plan.Plan) == 0 ||
		len(plan.Tables) != 1 || len(plan.Tables[0].Indexes) != 2 {
		t.Errorf("plan of the invoices loop: %v %s", err, planBody)
	}
	for _, f := range found {
		if f.Fingerprint == invoices {
			t.Errorf("the indexed loop is a missing_index: %+v", f)
		}
	}
	if code, _ := httpCall(t, "GET", api+"/api/fingerprints/0123456789abcdef/plan"); code != 404 {
		t.Errorf("an unknown fingerprint's plan: %d, want 404", code)
	}
	if code, _ := httpCall(t, "GET", api+"/api/fingerprints/nothex/plan"); code != 400 {
		t.Errorf("a bad fingerprint: %d, want 400", code)
	}
	_, ordersPlan := httpCall(t, "GET", api+"/api/fingerprints/"+found[0].Fingerprint+"/plan")

	// The orders loop again, in a window of its own: its shape is asked
	// about again and answered from the cache (the finding is held back by
	// the report cooldown).
	for _, id := range ids {
		if _, err := c.Exec(ctx, "SELECT id FROM orders WHERE customer_id = $1", id); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := httpCall(t, "POST", api+"/api/flush?application=mi-pgx"); code != 200 {
		t.Fatalf("flush: %d %s", code, body)
	}
	_, after := httpCall(t, "GET", api+"/metrics")
	// Inspected: orders and invoices (pgx), the count over orders
	// (database/sql); the ledger, which the role may not read, failed.
	for series, want := range map[string]float64{`nplus1_inspections_total{result="ok"}`: 3, `nplus1_inspections_total{result="failed"}`: 1,
		`nplus1_inspection_cache_hits_total`: 1, `nplus1_inspections_dropped_total{reason="queue_full"}`: 0, "nplus1_inspection_connection_up": 1} {
		if v := seriesValue(t, after, series); v != want {
			t.Errorf("after the workload: %s %v, want %v", series, v, want)
		}
	}

	outputs := map[string]string{"api": body + miBody, "plan": planBody + ordersPlan, "metrics": after}
	stopCommand(t, stop, done, logs, console, out, outputs)
	noPlant(t, outputs, "zqplant", "value")
	noPlant(t, outputs, pgtest.Password, "inspection password")
	if !strings.Contains(outputs["metrics"], `nplus1_findings_total{kind="missing_index",severity="critical"} 2`) {
		t.Errorf("metrics do not count the two findings")
	}
	if n := strings.Count(outputs["findings-out"], `"kind":"missing_index"`); n != 2 {
		t.Errorf("%d missing_index findings in the file, want 2", n)
	}
	pg.Stop() // the server's log is whole
	inspectionRanOnlyReads(t, pg.Log(), pgtest.UserSCRAM)
}

// seriesValue is the value of one series (its name and labels exactly as
// the text format writes them) in a scrape of /metrics; the test fails
// when the scrape lacks it.
func seriesValue(t *testing.T, scrape, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("the scrape has no series %s:\n%s", series, scrape)
	return 0
}

// startLoggingPostgres is startPostgres with every statement logged with
// its user (log_statement = 'all').
// inspectingProxy is `nplus1 proxy` in front of a test server with an
// inspection connection (startInspectingProxy).
type inspectingProxy struct {
	out     string // its --findings-out
	console *bytes.Buffer
	stop    context.CancelFunc // ends it; stopCommand waits for done
	logs    *logWatcher
	done    chan error
	addrs   map[string]string // "proxy" and "http"
	api     string            // the HTTP server's URL
}

// startInspectingProxy runs `nplus1 proxy` in front of pg with an
// inspection connection as the role the README advises (pgtest.UserSCRAM),
// its findings written to a file, logging JSON at debug level.
func startInspectingProxy(t *testing.T, ctx context.Context, pg *pgtest.Server) *inspectingProxy {
	t.Helper()
	ip := &inspectingProxy{out: filepath.Join(t.TempDir(), "findings.jsonl"), console: &bytes.Buffer{}}
	var rctx context.Context
	rctx, ip.stop = context.WithCancel(ctx)
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser),
		"NPLUS1_INSPECT_URL": pg.URL(pgtest.UserSCRAM)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--findings-out", ip.out,
		"--log-level", "debug", "--shutdown-timeout", "5s"}
	ip.addrs, ip.logs, ip.done = startCommand(t, rctx, args, env, ip.console, "proxy", "http")
	ip.api = "http://" + ip.addrs["http"]
	return ip
}

func startLoggingPostgres(t *testing.T, ctx context.Context, schema string) *pgtest.Server {
	t.Helper()
	return startPostgresWith(t, ctx, schema, pgtest.Options{Settings: []string{"log_statement = 'all'", "log_line_prefix = 'user=%u '"}})
}

// inspectionRanOnlyReads checks in the server's log that user ran the
// inspection's statements and nothing else: no write, no EXPLAIN of one.
func inspectionRanOnlyReads(t *testing.T, serverLog, user string) {
	t.Helper()
	allowed := regexp.MustCompile(`^(begin read only|SET LOCAL (statement_timeout|lock_timeout) = \d+|SET LOCAL plan_cache_mode = force_generic_plan|` +
		`DEALLOCATE (ALL|nplus1_inspect)|PREPARE nplus1_inspect AS SELECT .*|EXPLAIN \((VERBOSE, )?FORMAT JSON\) (EXECUTE nplus1_inspect.*|SELECT FROM .*)|` +
		`SELECT coalesce\(cardinality\(parameter_types\), 0\) FROM pg_prepared_statements .*|SELECT (c\.oid|i\.relname|con\.conname), .*|commit|rollback)$`)
	n, explained := 0, 0
	for _, line := range strings.Split(serverLog, "\n") {
		_, stmt, ok := strings.Cut(line, "user="+user+" LOG:  statement: ")
		if !ok {
			continue
		}
		n++
		if !allowed.MatchString(stmt) {
			t.Errorf("the inspection role ran %q", stmt)
		}
		if strings.HasPrefix(stmt, "PREPARE") {
			explained++
		}
	}
	if n == 0 || explained == 0 {
		t.Errorf("the server logged %d statements and %d plans of %s, want some:\n%s", n, explained, user, serverLog)
	}
}

// customerIDs reads the first ten customers' ids.
func customerIDs(t *testing.T, ctx context.Context, query func(string) (pgx.Rows, error)) []int {
	t.Helper()
	rows, err := query("SELECT id FROM customers ORDER BY id LIMIT 10")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// httpCall makes one request and returns the status and body.
func httpCall(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestInspectURLFailuresKeepRelaying: with an inspection URL that is
// refused (wrong password) or goes nowhere, the proxy relays, one log line
// says why, without the password, and /metrics says the connection is down.
func TestInspectURLFailuresKeepRelaying(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := startPostgres(t, ctx, "CREATE TABLE t (id int)")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := ln.Addr().String()
	ln.Close()
	const secret = "zq-wrong-secret"
	for _, c := range []struct{ name, url, reason string }{
		{"refused login", "postgres://" + pgtest.UserSCRAM + ":" + secret + "@" + pg.Addr() + "/nplus1?sslmode=disable", "password authentication failed"},
		{"nowhere", "postgres://" + pgtest.UserSCRAM + ":" + secret + "@" + nowhere + "/nplus1?sslmode=disable", "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			var console bytes.Buffer
			env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser), "NPLUS1_INSPECT_URL": c.url}
			args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s"}
			addrs, logs, done := startCommand(t, rctx, args, env, &console, "proxy", "http")
			conn, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser))
			if err != nil {
				t.Fatalf("the proxy does not relay: %v", err)
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
				t.Fatalf("the proxy does not relay: %v", err)
			}
			conn.Close(ctx)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(logs.records(t, "inspection connection failed; the proxy relays on, without missing_index")) == 0; {
				time.Sleep(20 * time.Millisecond)
			}
			recs := logs.records(t, "inspection connection failed; the proxy relays on, without missing_index")
			if len(recs) != 1 || !strings.Contains(recs[0]["reason"].(string), c.reason) || recs[0]["server"] == nil {
				t.Errorf("failure lines %v, want one with reason %q", recs, c.reason)
			}
			_, scrape := httpCall(t, "GET", "http://"+addrs["http"]+"/metrics")
			if up, ok := seriesValue(t, scrape, "nplus1_inspection_connection_up"), seriesValue(t, scrape, `nplus1_inspections_total{result="ok"}`); up != 0 || ok != 0 {
				t.Errorf("nplus1_inspection_connection_up %v, inspections ok %v; want 0 and 0", up, ok)
			}
			outputs := map[string]string{"metrics": scrape}
			stopCommand(t, stop, done, logs, &console, "", outputs)
			noPlant(t, outputs, secret, "password")
		})
	}
}

// TestMissingIndexInReplay records the N+1 over the unindexed foreign key
// through the proxy (no inspection), then replays the recording with an
// inspection connection: the replay reports the missing_index, and without
// one it does not.
func TestMissingIndexInReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgres(t, ctx, inspectSchema)
	rec := filepath.Join(t.TempDir(), "rec")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var console bytes.Buffer
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	addrs, logs, done := startCommand(t, rctx, []string{"proxy", "--listen", "127.0.0.1:0", "--record", rec, "--shutdown-timeout", "5s"}, env, &console, "proxy")
	c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=mi-replay"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range customerIDs(t, ctx, func(q string) (pgx.Rows, error) { return c.Query(ctx, q) }) {
		if _, err := c.Exec(ctx, "SELECT id FROM orders WHERE customer_id = $1", id); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx)
	stopCommand(t, stop, done, logs, &console, "", map[string]string{})

	out, stderr, err := runArgs(t, map[string]string{"NPLUS1_INSPECT_URL": pg.URL(pgtest.UserSCRAM)}, "replay", "--progress", "off", "--format", "json", rec)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, `"kind": "missing_index"`) || !strings.Contains(out, "CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id)") {
		t.Errorf("the replay with --inspect-url has no missing_index on orders (customer_id):\n%s\n%s", out, stderr)
	}
	out, stderr, err = runArgs(t, nil, "replay", "--progress", "off", "--format", "json", rec)
	if err != nil || strings.Contains(out, `"kind": "missing_index"`) || !strings.Contains(out, `"kind": "n_plus_one"`) {
		t.Errorf("the replay without --inspect-url: %v, want the N+1 and no missing_index:\n%s\n%s", err, out, stderr)
	}
}

// TestInspectURLFlagErrors: a bad --inspect-url is a usage error that names
// the flag and what a valid value looks like, never the value.
func TestInspectURLFlagErrors(t *testing.T) {
	const secret = "zqFlagSecret"
	file := filepath.Join(t.TempDir(), "inspect-url")
	if err := os.WriteFile(file, []byte("postgres://u:"+secret+"@h:bad/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--inspect-url", "postgres://u:" + secret + "@h:bad/db"}, nil, "--inspect-url: not a connection string (invalid port); want postgres://USER@HOST:5432/DATABASE"},
		{nil, map[string]string{"NPLUS1_INSPECT_URL_FILE": file}, "--inspect-url-file (from NPLUS1_INSPECT_URL_FILE): not a connection string"},
		{[]string{"--inspect-url", "postgres://h/db", "--inspect-url-file", file}, nil, "--inspect-url and --inspect-url-file: give one or the other"},
	} {
		args := append([]string{"proxy", "--upstream", "127.0.0.1:1"}, c.args...)
		_, stderr, err := runArgs(t, c.env, args...)
		if code := exitCode(err); code != 2 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, secret) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q, without the password", c.args, code, stderr, c.want)
		}
	}
}

// wildcardSchema: people (20,000 rows) has a B-tree index on name, which
// does not serve a pattern that starts with a wildcard; people_trgm holds
// the same rows with the fixed form, a pg_trgm GIN index on name (made
// after the rows, so that none wait in its pending list). The inspection
// role (u_scram) gets the README's grants.
const wildcardSchema = `
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE nplus1 FROM PUBLIC, u_scram;
ALTER ROLE u_scram SET default_transaction_read_only = on;
CREATE EXTENSION pg_trgm;
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL);
CREATE INDEX people_name_idx ON people (name);
CREATE TABLE people_trgm (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO people SELECT i, 'zqplant ' || md5(i::text) FROM generate_series(1, 20000) i;
INSERT INTO people_trgm SELECT * FROM people;
CREATE INDEX people_trgm_name_idx ON people_trgm USING gin (name gin_trgm_ops);
ANALYZE;
GRANT CONNECT ON DATABASE nplus1 TO u_scram;
GRANT USAGE ON SCHEMA public TO u_scram;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO u_scram;
`

// TestLeadingWildcardThroughTheProxy: a contains search (a pattern that
// starts with %) through the real proxy with an inspection connection, from
// pgx (the pattern bound) and database/sql (SQLAlchemy's '%' || $1 || '%',
// inlined by the simple protocol): on 20,000 rows that no trigram index
// serves it is a definite leading_wildcard (warning) that names the table's
// size and the pg_trgm index; over the table with the index it is not
// reported; no missing_index is made of the LIKE; the inspection ran only
// reads; and no value of the data or of the pattern is in any output.
func TestLeadingWildcardThroughTheProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startLoggingPostgres(t, ctx, wildcardSchema)

	ip := startInspectingProxy(t, ctx, pg)
	defer ip.stop()
	out, console, stop, logs, done, addrs, api := ip.out, ip.console, ip.stop, ip.logs, ip.done, ip.addrs, ip.api

	// Each client searches the indexed table first, then the other, in one
	// window: the inspector answers in the order asked, so once the
	// findings on people are there, the answers on people_trgm were judged.
	const pgxTrgm, pgxPeople = "SELECT id, name FROM people_trgm WHERE name LIKE $1", "SELECT id, name FROM people WHERE name LIKE $1"
	c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=lw-pgx"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []string{pgxTrgm, pgxPeople} {
		if _, err := c.Exec(ctx, q, "%zqplant ab%"); err != nil {
			t.Fatal(err)
		}
	}
	db := openSimpleSQL(t, addrs["proxy"], "lw-sql")
	for _, table := range []string{"people_trgm", "people"} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE name ILIKE '%' || $1 || '%'", "ZQPLANT AB").Scan(&n); err != nil || n == 0 {
			t.Fatalf("contains on %s: %d rows, %v; want some", table, n, err)
		}
	}
	found, body := flushAndFind(t, api, []string{"lw-pgx", "lw-sql"}, detector.KindLeadingWildcard, 2)
	apps := map[string]bool{}
	for _, f := range found {
		apps[f.ApplicationName] = true
		if strings.Contains(f.Query, "people_trgm") {
			t.Errorf("the search the trigram index serves is reported: %+v", f)
			continue
		}
		if f.Severity != detector.SeverityWarning || len(f.Tables) != 1 || f.Tables[0] != "people" ||
			!strings.Contains(f.Suggestion, "its plan reads every row of people (about 20000 rows) with a Seq Scan to match name") ||
			!strings.Contains(f.Suggestion, "CREATE INDEX CONCURRENTLY ON people USING gin (name gin_trgm_ops)") || strings.Contains(f.Suggestion, "may") {
			t.Errorf("finding %s %s on %v: %s; want a warning that people is read whole, with the trigram index", f.Kind, f.Severity, f.Tables, f.Suggestion)
		}
	}
	if len(found) != 2 || !apps["lw-pgx"] || !apps["lw-sql"] {
		t.Fatalf("%d leading_wildcard findings (%v), want one on people per client:\n%s\nlogs:\n%s", len(found), apps, body, logs)
	}

	// The plan behind pgx's finding: the Seq Scan matches name with LIKE,
	// and compares no column, so it is no missing_index.
	var peopleFP string
	for _, f := range found {
		if f.ApplicationName == "lw-pgx" {
			peopleFP = f.Fingerprint
		}
	}
	code, planBody := httpCall(t, "GET", api+"/api/fingerprints/"+peopleFP+"/plan")
	var plan struct {
		SeqScans []detector.ScanFacts `json:"seq_scans"`
	}
	if err := json.Unmarshal([]byte(planBody), &plan); err != nil || code != 200 || len(plan.SeqScans) != 1 ||
		!slices.Equal(plan.SeqScans[0].LikeColumns, []string{"name"}) || len(plan.SeqScans[0].FilterColumns) != 0 {
		t.Errorf("plan of the search (%d, %v): %s; want one Seq Scan matching name, comparing nothing", code, err, planBody)
	}
	_, miBody := httpCall(t, "GET", api+"/api/findings?kind=missing_index")
	var mi []detector.Finding
	if err := json.Unmarshal([]byte(miBody), &mi); err != nil || len(mi) != 0 {
		t.Errorf("missing_index findings %s (%v), want none", miBody, err)
	}
	_, scrape := httpCall(t, "GET", api+"/metrics")
	if v := seriesValue(t, scrape, `nplus1_findings_total{kind="leading_wildcard",severity="warning"}`); v != 2 {
		t.Errorf("leading_wildcard warnings counted %v, want 2", v)
	}
	_, body = httpCall(t, "GET", api+"/api/findings?kind=leading_wildcard")

	outputs := map[string]string{"api": body + miBody, "plan": planBody, "metrics": scrape}
	stopCommand(t, stop, done, logs, console, out, outputs)
	noPlant(t, outputs, "zqplant", "value")
	if n := strings.Count(outputs["findings-out"], `"kind":"leading_wildcard"`); n != 2 {
		t.Errorf("%d leading_wildcard findings in the file, want 2", n)
	}
	pg.Stop() // the server's log is whole
	inspectionRanOnlyReads(t, pg.Log(), pgtest.UserSCRAM)
}

// flushAndFind closes the windows of each application in apps through the
// API, then polls for up to 20 s until it lists want findings of kind (they
// wait for the inspection's answers); it returns them and the last body.
func flushAndFind(t *testing.T, api string, apps []string, kind detector.Kind, want int) ([]detector.Finding, string) {
	t.Helper()
	for _, app := range apps {
		if code, body := httpCall(t, "POST", api+"/api/flush?application="+app); code != 200 {
			t.Fatalf("flush %s: %d %s", app, code, body)
		}
	}
	var found []detector.Finding
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(found) < want; time.Sleep(50 * time.Millisecond) {
		_, body = httpCall(t, "GET", api+"/api/findings?kind="+string(kind))
		found = nil
		if err := json.Unmarshal([]byte(body), &found); err != nil {
			t.Fatalf("findings: %v: %s", err, body)
		}
	}
	return found, body
}

// openSimpleSQL opens database/sql with the pgx driver through addr as
// application app, one connection, statements inlined by the simple
// protocol; closed when the test ends.
func openSimpleSQL(t *testing.T, addr, app string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", pgtest.URLFor(addr, pgtest.Superuser, "application_name="+app, "default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	return db
}
