package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// TestEvidenceHoldsNoValue plants distinctive keys, loops over them (bound
// and, in the simple protocol, inlined), so that the N+1 is proven from the
// data flow, writes them back one row at a time (an N+1 of writes), searches
// with a planted pattern that starts with a wildcard (leading_wildcard) and
// pages deep (deep_offset), writes back an account it read
// (lost_update), and greps every output for them: the findings
// file, the API, the metrics, the logs at debug level and the console.
func TestEvidenceHoldsNoValue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const plant = "zqplant"
	pg := startPostgres(t, ctx, `CREATE TABLE accounts (code text PRIMARY KEY, owner text NOT NULL);
		CREATE TABLE orders (id serial PRIMARY KEY, account_code text NOT NULL);
		INSERT INTO accounts SELECT '`+plant+`-' || i, '`+plant+`-owner-' || i FROM generate_series(1, 12) i;
		INSERT INTO orders (account_code) SELECT '`+plant+`-' || i FROM generate_series(1, 12) i;`)

	out := filepath.Join(t.TempDir(), "findings.jsonl")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var console bytes.Buffer
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--findings-out", out,
		"--log-level", "debug", "--shutdown-timeout", "5s"}
	addrs, logs, done := startCommand(t, rctx, args, env, &console, "proxy", "http")

	for _, mode := range []string{"cache_statement", "simple_protocol"} {
		c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=leak-"+mode, "default_query_exec_mode="+mode))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, "SELECT id, account_code FROM orders ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		for rows.Next() {
			var id int
			var code string
			if err := rows.Scan(&id, &code); err != nil {
				t.Fatal(err)
			}
			codes = append(codes, code)
		}
		rows.Close()
		for _, code := range codes {
			var owner string
			if err := c.QueryRow(ctx, "SELECT owner FROM accounts WHERE code = $1", code).Scan(&owner); err != nil {
				t.Fatal(err)
			}
		}
		err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			for _, code := range codes {
				if _, err := tx.Exec(ctx, "UPDATE accounts SET owner = $2 WHERE code = $1", code, code+"-owner"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT code FROM accounts WHERE owner LIKE $1", "%"+plant+"-owner%"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT code FROM accounts ORDER BY code LIMIT 5 OFFSET $1", int64(7654321)); err != nil {
			t.Fatal(err)
		}
		// A read-modify-write of one account (lost_update): its key and
		// the value written back are planted.
		var code, owner string
		if err := c.QueryRow(ctx, qLeakRead, plant+"-5").Scan(&code, &owner); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "UPDATE accounts SET owner = $1 WHERE code = $2", owner+"-lost", code); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
		time.Sleep(200 * time.Millisecond) // the next mode's findings in windows of their own
	}

	get := func(path string) string {
		res, err := http.Get("http://" + addrs["http"] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	var api string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if api = get("/api/findings?kind=n_plus_one"); strings.Count(api, `"data_flow"`) >= 2 {
			break
		}
	}
	if strings.Count(api, `"data_flow"`) < 2 || !strings.Contains(api, `"source_column":"account_code"`) {
		t.Fatalf("want two N+1s proven from orders.account_code (bound and inlined keys), got %s", api)
	}
	outputs := map[string]string{"api": api, "metrics": get("/metrics")}
	stopCommand(t, stop, done, logs, &console, out, outputs)
	noPlant(t, outputs, plant, "value")
	// The planted values went through the rules that read values: each
	// mode (bound and inlined) made each of these findings.
	found := outputs["findings-out"]
	for _, want := range []string{`"kind":"leading_wildcard"`, `"kind":"deep_offset"`, `"command":"UPDATE"`} {
		if n := strings.Count(found, want); n != 2 {
			t.Errorf("%d findings with %s, want one per mode:\n%s", n, want, found)
		}
	}
	// The read-modify-write's read is the source of a lost_update in each
	// mode, and of no other finding.
	if n := strings.Count(found, `"query":"`+qLeakRead+`"`); n != 2 || strings.Count(found, `"kind":"lost_update"`) < 2 {
		t.Errorf("%d lost_update findings from the planted read, want one per mode:\n%s", n, found)
	}
}

// qLeakRead is the read of TestEvidenceHoldsNoValue's read-modify-write.
const qLeakRead = "SELECT code, owner FROM accounts WHERE code = $1"
