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

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/valuekey"
)

// stringsLeakQueries are lookups whose string constant holds a
// backslash-escaped quote: with standard_conforming_strings off each is one
// constant (the server finds no row), but read with the setting on, the
// planted text would stand outside it, as code.
var stringsLeakQueries = []string{
	`SELECT owner FROM accounts WHERE code = '%s\' OR SECRETLEAK = ''' --'`,
	`SELECT owner FROM accounts WHERE code = '%s\' OR token = ''SECRETLEAK'' --'`,
	`SELECT * FROM accounts WHERE code = '%s\'' AND owner = 'SECRETLEAK' --'`,
}

// TestStandardStringsOffHoldsNoLiteral runs N+1 loops of those lookups
// through the proxy on a session that did SET standard_conforming_strings =
// off (the tracker follows the server's ParameterStatus), and on one that
// set it in its startup packet (the server reports it at login, and the
// proxy hands that to the tracker).
// The planted text must be in no output: the findings file, the API, the
// metrics, the debug logs, the console.
func TestStandardStringsOffHoldsNoLiteral(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgres(t, ctx, `CREATE TABLE accounts (code text PRIMARY KEY, owner text NOT NULL);
		INSERT INTO accounts SELECT 'acct-' || i, 'owner-' || i FROM generate_series(1, 12) i;`)

	out := filepath.Join(t.TempDir(), "findings.jsonl")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var console bytes.Buffer
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--findings-out", out,
		"--log-level", "debug", "--shutdown-timeout", "5s"}
	addrs, logs, done := startCommand(t, rctx, args, env, &console, "proxy", "http")

	sessions := []struct {
		name, params, set string
	}{
		{"set", "application_name=scs-set", "SET standard_conforming_strings = off"},
		{"startup", "application_name=scs-startup&standard_conforming_strings=off", ""},
	}
	for _, s := range sessions {
		c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, s.params))
		if err != nil {
			t.Fatal(err)
		}
		pc := c.PgConn()
		if s.set != "" {
			if _, err := pc.Exec(ctx, s.set).ReadAll(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if v := pc.ParameterStatus("standard_conforming_strings"); v != "off" {
			t.Fatalf("%s: standard_conforming_strings is %q", s.name, v)
		}
		for _, q := range stringsLeakQueries {
			// The source query, then one lookup per row, in the simple
			// protocol with the value inline (pgconn: pgx refuses to
			// inline values with the setting off).
			res, err := pc.Exec(ctx, "SELECT code FROM accounts ORDER BY code").ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range res[0].Rows {
				sql := strings.Replace(q, "%s", string(row[0]), 1)
				r, err := pc.Exec(ctx, sql).ReadAll()
				if err != nil {
					t.Fatalf("%s: %q: %v", s.name, sql, err)
				}
				if len(r[0].Rows) != 0 {
					t.Fatalf("%s: %q found a row: the server did not read one constant", s.name, sql)
				}
			}
			time.Sleep(300 * time.Millisecond) // one window per loop
		}
		c.Close(ctx)
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
	want := []string{
		`"query":"SELECT owner FROM accounts WHERE code = $1"`,
		`"query":"SELECT * FROM accounts WHERE code = $1 AND owner = $2"`,
	}
	var api string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		api = get("/api/findings?kind=n_plus_one")
		if strings.Count(api, want[0]) >= 2 && strings.Count(api, want[1]) >= 2 {
			break
		}
	}
	if strings.Count(api, want[0]) < 2 || strings.Count(api, want[1]) < 2 {
		t.Errorf("want the lookups' N+1s with their constants masked, got %s", api)
	}
	outputs := map[string]string{"api": api, "metrics": get("/metrics")}
	stopCommand(t, stop, done, logs, &console, out, outputs)
	noPlant(t, outputs, "secretleak", "literal")
}

// TestStandardStringsOffKeysMatchServer holds the fingerprint package's
// reading of string constants with standard_conforming_strings off to the
// server's: each constant of a SELECT list is one column of its row, and
// its literal key is the key of the value the server returns (or none,
// for a value the server rejects).
func TestStandardStringsOffKeysMatchServer(t *testing.T) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser, "standard_conforming_strings=off"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	pc := c.PgConn()
	for _, sql := range []string{
		`SELECT 'a\'b', 'c\\d', 'e''f', '\x41\101\u00e9\U0001F600', '\n\t\q', 'g\'h' AS "x\'"`,
		`SELECT N'n\'1', 'p'` + "\n" + `'q\'r', E'\'', $$\'$$, 'C:\\'`,
		`SELECT 'x\' OR token = ''abc'' --'`,
		`SELECT 'O\'' AS a, 1 --'`,
		`SELECT '\0'`,
		`SELECT '\uD83D\uDE00', 'ab'` + "\n" + `'c\''`,
	} {
		st := fingerprint.OfStrings(sql, fingerprint.StringsEscape).Statements[0]
		res, err := pc.Exec(ctx, sql).ReadAll()
		if err != nil {
			if st.Err == nil && !containsNone(st.LiteralKeys) {
				t.Errorf("%q: the server rejects it (%v), but every literal has a key", sql, err)
			}
			continue
		}
		row := res[0].Rows[0]
		var values []valuekey.Key
		for _, v := range row {
			if !bytes.Equal(v, []byte("1")) { // the number column
				values = append(values, valuekey.Text(v))
			}
		}
		var keys []valuekey.Key
		for _, k := range st.LiteralKeys {
			if k != valuekey.String("1") {
				keys = append(keys, k)
			}
		}
		if len(keys) != len(values) {
			t.Errorf("%q: %d string literals, the server returned %d values", sql, len(keys), len(values))
			continue
		}
		for i := range keys {
			if keys[i] != values[i] {
				t.Errorf("%q: literal %d has key %x, the server's value %q has %x", sql, i, keys[i], row[i], values[i])
			}
		}
	}
}

func containsNone(keys []valuekey.Key) bool {
	for _, k := range keys {
		if k == valuekey.None {
			return true
		}
	}
	return false
}
