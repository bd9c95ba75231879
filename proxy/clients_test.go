package proxy

// Integration tests with the stock PostgreSQL client programs through the
// proxy: psql (a script with \copy, several statements, \gset) and pgbench
// (-i, then -M simple|extended|prepared). A missing program is a failure.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/pgwire"
)

// TestClientPsqlScript runs a psql script through the proxy.
func TestClientPsqlScript(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 60*time.Second)
	p := itStartProxy(t, Config{})
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
	var csv strings.Builder
	for i := 3; i <= 1002; i++ {
		fmt.Fprintf(&csv, "%d,n%d\n", i, i)
	}
	if err := os.WriteFile(in, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	script := strings.Join([]string{
		"CREATE TEMP TABLE it_psql (id int, name text);",
		"INSERT INTO it_psql VALUES (1, 'one'), (2, 'two');",
		`\copy it_psql FROM '` + in + `' WITH (FORMAT csv)`,
		`SELECT count(*) AS n, max(id) AS maxid FROM it_psql \gset`,
		`\echo rows=:n max=:maxid`,
		`\copy (SELECT id, name FROM it_psql ORDER BY id) TO '` + out + `' WITH (FORMAT csv)`,
		"SELECT 1 AS a; SELECT 2 AS b;",
		"BEGIN;",
		"UPDATE it_psql SET name = upper(name) WHERE id <= 2;",
		"COMMIT;",
		`SELECT name AS first FROM it_psql WHERE id = 1 \gset`,
		`\echo first=:first`,
		"",
	}, "\n")
	file := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	const app = "it_psql_script"
	stdout, stderr, err := itExec(t, ctx, "psql", "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-f", file, p.URL(pgtest.Superuser, "application_name="+app))
	if err != nil {
		t.Fatalf("psql: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	for _, want := range []string{"rows=1002 max=1002", "first=ONE"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("psql output lacks %q:\n%s", want, stdout)
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1,one\n2,two\n" + csv.String(); string(got) != want {
		t.Errorf("\\copy TO wrote %d bytes, want %d (the rows written by \\copy FROM)", len(got), len(want))
	}

	evs := p.WaitEvents(t, 1, func(e *pgwire.Execution) bool {
		return e.Conn.ApplicationName == app && strings.HasPrefix(e.SQL, "SELECT name AS first")
	})
	if len(evs) == 0 {
		return
	}
	all := p.Events(itApp(app))
	count := func(cmd string, rows int64) int {
		n := 0
		for _, e := range all {
			if e.Command == cmd && e.Rows == rows {
				n++
			}
		}
		return n
	}
	for _, w := range []struct {
		cmd  string
		rows int64
	}{{"INSERT", 2}, {"COPY", 1000}, {"COPY", 1002}, {"SELECT", 1}, {"UPDATE", 2}} {
		if count(w.cmd, w.rows) == 0 {
			t.Errorf("no event %s with %d rows:\n%s", w.cmd, w.rows, itDump(all))
		}
	}
	for _, e := range all {
		if strings.HasPrefix(e.SQL, "UPDATE it_psql") && !e.InTransaction {
			t.Errorf("UPDATE inside BEGIN/COMMIT: InTransaction false")
		}
		if strings.EqualFold(strings.TrimSuffix(e.SQL, ";"), "COMMIT") && !e.TxEnd {
			t.Errorf("COMMIT: TxEnd false")
		}
		if e.SQLState != "" {
			t.Errorf("unexpected error event: %s", itDump([]*pgwire.Execution{e}))
		}
	}
	// Statements run: CREATE, INSERT, COPY, SELECT, COPY, SELECT, SELECT,
	// BEGIN, UPDATE, COMMIT, SELECT.
	if len(all) != 11 {
		t.Errorf("got %d events for the psql script, want 11:\n%s", len(all), itDump(all))
	}
}

// TestClientPgbench initializes pgbench tables through the proxy and runs the
// TPC-B-like script with each query mode; the events must count 7 statements
// per transaction.
func TestClientPgbench(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 150*time.Second)
	direct := itDirect(t, ctx)
	if _, err := direct.Exec(ctx, "CREATE DATABASE it_pgbench"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := direct.Exec(ctx, "DROP DATABASE it_pgbench WITH (FORCE)"); err != nil {
			t.Logf("drop database: %v", err)
		}
	})
	p := itStartProxy(t, Config{})
	url := func(app string) string {
		return fmt.Sprintf("postgres://%s@%s/it_pgbench?sslmode=disable&application_name=%s", pgtest.Superuser, p.Addr, app)
	}
	stdout, stderr, err := itExec(t, ctx, "pgbench", "-i", "-s", "1", "-q", url("it_pgbench_init"))
	if err != nil {
		t.Fatalf("pgbench -i: %v\n%s\n%s", err, stdout, stderr)
	}
	var copied bool
	for _, e := range p.WaitEvents(t, 1, func(e *pgwire.Execution) bool { return e.Command == "COPY" }) {
		if e.Rows == 100000 && strings.Contains(e.SQL, "pgbench_accounts") {
			copied = true
		}
	}
	if !copied {
		t.Errorf("no COPY event with 100000 rows for pgbench_accounts:\n%s", itDump(p.Events(itApp("it_pgbench_init"))))
	}

	const clients, perClient = 4, 200
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 120*time.Second)
			app := "it_pgbench_" + mode
			stdout, stderr, err := itExec(t, ctx, "pgbench", "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", "2", "-t", strconv.Itoa(perClient), url(app))
			if err != nil {
				t.Fatalf("pgbench -M %s: %v\n%s\n%s", mode, err, stdout, stderr)
			}
			m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(stdout)
			if m == nil {
				t.Fatalf("pgbench output has no transaction count:\n%s", stdout)
			}
			txs, _ := strconv.Atoi(m[1])
			if txs != clients*perClient {
				t.Errorf("pgbench processed %d transactions, want %d", txs, clients*perClient)
			}
			if tps := regexp.MustCompile(`tps = [0-9.]+`).FindString(stdout); tps != "" {
				t.Logf("pgbench -M %s: %s", mode, tps)
			}
			isUpdate := func(e *pgwire.Execution) bool {
				return e.Conn.ApplicationName == app && strings.Contains(e.SQL, "UPDATE pgbench_accounts")
			}
			updates := p.WaitEvents(t, txs, isUpdate)
			if len(updates) != txs {
				t.Errorf("got %d UPDATE pgbench_accounts events, want %d (one per transaction)", len(updates), txs)
			}
			time.Sleep(100 * time.Millisecond)
			all := p.Events(itApp(app))
			const perTx = 7 // BEGIN, UPDATE, SELECT, UPDATE, UPDATE, INSERT, END
			if len(all) < txs*perTx || len(all) > txs*perTx+20 {
				t.Errorf("got %d events, want %d transactions × %d statements = %d (+ a few setup queries)", len(all), txs, perTx, txs*perTx)
			}
			wantProto := map[string]string{"simple": "simple", "extended": "extended", "prepared": "extended"}[mode]
			for _, e := range updates {
				if e.Protocol != wantProto || (mode == "prepared") != (e.Prepared != "") || e.Rows != 1 || e.Command != "UPDATE" || !e.InTransaction {
					t.Errorf("pgbench -M %s UPDATE event: %s want protocol %s, prepared %v, UPDATE 1 in a transaction",
						mode, itDump([]*pgwire.Execution{e}), wantProto, mode == "prepared")
					break
				}
				if mode != "simple" && (e.NumParams != 2 || e.ParamsHash == 0) {
					t.Errorf("pgbench -M %s UPDATE event: NumParams %d, ParamsHash %x; want 2 and non-zero", mode, e.NumParams, e.ParamsHash)
					break
				}
			}
			for _, e := range all {
				if e.SQLState != "" {
					t.Errorf("error event: %s", itDump([]*pgwire.Execution{e}))
					break
				}
			}
		})
	}
}
