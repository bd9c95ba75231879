package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// pgbenchBinary finds pgbench on PATH or beside the server binaries.
func pgbenchBinary(t *testing.T, pg *pgtest.Server) string {
	t.Helper()
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	p := filepath.Join(pg.BinDir, "pgbench")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pgbench not found on PATH or in %s (scripts/deps.sh installs it)", pg.BinDir)
	}
	return p
}

// TestPgbenchIsNotAnNPlusOne: pgbench -S is thousands of independent
// lookups by random keys, over 8 and 32 connections of one pool scope. It
// has the shape of an N+1 on every connection and the random keys repeat,
// yet no loop read its keys from a result: no n_plus_one, no
// duplicate_query. The same holds for its default script, tpcb-like, whose
// transactions each UPDATE three tables, read one row and INSERT a history
// row, on 1 and 8 connections: independent single-row writes, not N+1s of
// writes. NPLUS1_PGBENCH_SECONDS sets each run's length (default 5; the
// issue's measurement used 60).
func TestPgbenchIsNotAnNPlusOne(t *testing.T) {
	secs := 5
	if v := os.Getenv("NPLUS1_PGBENCH_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("NPLUS1_PGBENCH_SECONDS=%q: want a positive number of seconds", v)
		}
		secs = n
	}
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	pgbench := pgbenchBinary(t, pg)
	bench := func(ctx context.Context, addr string, args ...string) string {
		host, port, _ := strings.Cut(addr, ":")
		cmd := exec.CommandContext(ctx, pgbench, append([]string{"-h", host, "-p", port, "-U", pgtest.Superuser}, append(args, pgtest.Database)...)...)
		cmd.Env = append(os.Environ(), "PGAPPNAME=pgbench")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bench(ctx, pg.Addr(), "-i", "-q", "-s", "2")

	out := filepath.Join(t.TempDir(), "findings.jsonl")
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--findings-out", out, "--max-connections", "200", "--shutdown-timeout", "5s"}
	addrs, logs, done := startCommand(t, ctx, args, env, &bytes.Buffer{}, "proxy")

	var txns int
	for _, run := range []struct {
		script  string
		clients []int
	}{{"select-only", []int{8, 32}}, {"tpcb-like", []int{1, 8}}} {
		for _, mode := range []string{"simple", "prepared"} {
			for _, clients := range run.clients {
				o := bench(ctx, addrs["proxy"], "-b", run.script, "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(secs))
				for line := range strings.Lines(o) {
					if n, ok := strings.CutPrefix(line, "number of transactions actually processed: "); ok {
						v, _ := strconv.Atoi(strings.Fields(n)[0])
						txns += v
						t.Logf("pgbench -b %s -M %s -c %d -T %d: %d transactions", run.script, mode, clients, secs, v)
					}
				}
			}
		}
	}
	cancel() // SIGTERM: the analyzer flushes every window before run returns
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return 30s after cancel")
	}
	if txns < 1000 {
		t.Fatalf("only %d transactions: the load did not run", txns)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for line := range strings.Lines(string(data)) {
		var f struct{ Kind, Query, Severity string }
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("findings line %q: %v", line, err)
		}
		if f.Kind == "n_plus_one" || f.Kind == "duplicate_query" {
			bad = append(bad, fmt.Sprintf("%s %s %s", f.Kind, f.Severity, f.Query))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d transactions of independent lookups and writes gave %d findings:\n%s\nstderr:\n%s", txns, len(bad), strings.Join(bad, "\n"), tail(logs.String(), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
