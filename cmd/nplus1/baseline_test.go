package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/replay/recording"
)

// writeLoops writes a recording with one connection per table, each
// running an N+1: a list of 6 rows, then a lookup in table per row, with
// literal ids (values the baseline must not keep).
func writeLoops(t *testing.T, path string, tables ...string) {
	t.Helper()
	var buf bytes.Buffer
	w := recording.NewWriter(&buf, recording.WriterOptions{})
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for i, table := range tables {
		c := &pgwire.ConnInfo{ID: uint64(10 + i), User: "shop", Database: "shopdb", ApplicationName: "api"}
		write := func(sql string, rows int64) {
			if err := w.Write(&pgwire.Execution{Conn: c, Start: at, End: at.Add(300 * time.Microsecond), SQL: sql,
				Protocol: "simple", Command: "SELECT", Rows: rows}); err != nil {
				t.Fatal(err)
			}
			at = at.Add(time.Millisecond)
		}
		write(`SELECT id FROM orders WHERE status = 'open'`, 6)
		for k := range 6 {
			write(fmt.Sprintf(`SELECT name FROM %s WHERE id = %d`, table, 424242+k), 1)
		}
		at = at.Add(time.Second) // the next connection's loop is another request
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBaselineRoundTrip(t *testing.T) {
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before.nplus1"), filepath.Join(dir, "after.nplus1")
	writeLoops(t, before, "users", "products")
	writeLoops(t, after, "products", "addresses") // users fixed, addresses new
	base := filepath.Join(dir, "nplus1-baseline.json")

	// 1. Today's findings become the baseline.
	_, stderr, err := runArgs(t, nil, "replay", "--progress", "off", "--write-baseline", base, before)
	if err != nil {
		t.Fatalf("write baseline: %v\n%s", err, stderr)
	}
	data, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Version  int                      `json:"version"`
		Findings []analyzer.BaselineEntry `json:"findings"`
	}
	if err := json.Unmarshal(data, &file); err != nil || file.Version != 1 || len(file.Findings) != 2 {
		t.Fatalf("baseline file: %v\n%s", err, data)
	}
	for _, e := range file.Findings {
		if e.Kind != "n_plus_one" || e.Source == "" || !strings.Contains(e.Query, "WHERE id = $1") {
			t.Errorf("entry %+v", e)
		}
	}
	if bytes.Contains(data, []byte("424242")) || bytes.Contains(data, []byte("'open'")) {
		t.Errorf("the baseline holds a value:\n%s", data)
	}

	// 2. The same run against it passes the gate.
	_, stderr, err = runArgs(t, nil, "replay", "--progress", "off", "--baseline", base, "--fail-on", "all", before)
	if err != nil {
		t.Fatalf("same findings against their baseline: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "2 entries seen, 0 entries not seen") {
		t.Errorf("stderr lacks the baseline line:\n%s", stderr)
	}

	// 3. One fixed, one new: the new one fails, the fixed one is listed.
	junit := filepath.Join(dir, "report.xml")
	_, stderr, err = runArgs(t, nil, "replay", "--progress", "off", "--baseline", base, "--fail-on", "n_plus_one",
		"--format", "junit", "--output", junit, after)
	var fe *findingsError
	if !errors.As(err, &fe) || fe.Count != 1 || exitCode(err) != exitFindings {
		t.Fatalf("got %v (exit %d), want 1 new finding failing\n%s", err, exitCode(err), stderr)
	}
	if !strings.Contains(err.Error(), "1 new finding (not in --baseline)") {
		t.Errorf("error %q does not say the finding is new", err)
	}
	var gone []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "  gone: ") {
			gone = append(gone, line)
		}
	}
	if len(gone) != 1 || !strings.Contains(gone[0], "FROM users WHERE id = $1") {
		t.Errorf("gone entries %q, want the users loop\n%s", gone, stderr)
	}
	if !strings.Contains(stderr, "1 entry seen, 1 entry not seen") {
		t.Errorf("stderr lacks the baseline line:\n%s", stderr)
	}
	xmlData, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(xmlData, &doc); err != nil || doc.Tests != 2 || doc.Failures != 1 {
		t.Errorf("junit: %+v, %v (want 2 tests, the known one passing)", doc, err)
	}

	// 4. Rewriting the baseline drops the fixed entry and adds the new one.
	_, stderr, err = runArgs(t, nil, "replay", "--progress", "off", "--baseline", base, "--write-baseline", base, after)
	if err != nil {
		t.Fatalf("rewrite: %v\n%s", err, stderr)
	}
	data, _ = os.ReadFile(base)
	if bytes.Contains(data, []byte("FROM users")) || !bytes.Contains(data, []byte("FROM addresses")) || !bytes.Contains(data, []byte("FROM products")) {
		t.Errorf("rewritten baseline:\n%s", data)
	}
}

func TestBaselineBadFile(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "in.nplus1")
	writeLoops(t, rec, "users")
	for _, tc := range []struct{ content, want string }{
		{"", "not a baseline file"},
		{`{"version": 2, "findings": []}`, "baseline version 2; this nplus1 reads version 1"},
		{`{"version": 1, "findings": [{"kind": "n_plus_two", "fingerprint": "0123456789abcdef"}]}`, `finding 1: unknown kind "n_plus_two"`},
		{`{"version": 1, "findings": [{"kind": "n_plus_one", "fingerprint": "xyz"}]}`, "want 16 hex digits"},
		{`{"version": 1, "findings": [], "extra": 1}`, "unknown field"},
	} {
		path := filepath.Join(dir, "b.json")
		os.WriteFile(path, []byte(tc.content), 0o600)
		_, stderr, err := runArgs(t, nil, "replay", "--progress", "off", "--baseline", path, rec)
		if exitCode(err) != exitUsage || !strings.Contains(stderr, "--baseline") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.content, exitCode(err), stderr, tc.want)
		}
	}
	_, stderr, err := runArgs(t, nil, "replay", "--progress", "off", "--baseline", filepath.Join(dir, "missing.json"), rec)
	if exitCode(err) != exitUsage || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", exitCode(err), stderr)
	}
}

// TestBaselineProxy is the round trip through the live proxy: the
// n_plus_one scenario's findings become the baseline; the next run, with
// the duplicate_query scenario too, fails on the new finding only; a run
// without the n_plus_one scenario lists its entries as not seen.
func TestBaselineProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgres(t, ctx, shop.Schema)
	byName := map[string]shop.Scenario{}
	for _, sc := range shop.Scenarios() {
		byName[sc.Name] = sc
	}
	base := filepath.Join(t.TempDir(), "baseline.json")

	// proxy runs the scenarios through a proxy started with extra flags,
	// stops it, and returns its error and log.
	proxy := func(scenarios []string, extra ...string) (error, *logWatcher) {
		t.Helper()
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
		args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--shutdown-timeout", "5s"}, extra...)
		addrs, logs, done := startCommand(t, rctx, args, env, &bytes.Buffer{}, "proxy")
		for _, name := range scenarios {
			c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name="+name))
			if err != nil {
				t.Fatal(err)
			}
			if err := byName[name].Bad(ctx, c); err != nil {
				t.Fatal(err)
			}
			c.Close(ctx)
		}
		stop()
		select {
		case err := <-done:
			return err, logs
		case <-time.After(20 * time.Second):
			t.Fatal("run did not return after cancel")
		}
		return nil, nil
	}

	err, logs := proxy([]string{"n_plus_one"}, "--write-baseline", base)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, logs)
	}
	recs := logs.records(t, "baseline written")
	if len(recs) != 1 || recs[0]["findings"].(float64) < 1 {
		t.Fatalf("baseline written records %v\n%s", recs, logs)
	}
	known := recs[0]["findings"].(float64)

	err, logs = proxy([]string{"n_plus_one", "duplicate_query"}, "--baseline", base, "--fail-on", "all")
	var fe *findingsError
	if !errors.As(err, &fe) || fe.Count < 1 || !fe.Baseline {
		t.Fatalf("second run returned %v, want the new findings to fail\n%s", err, logs)
	}
	sum := logs.records(t, "findings summary")
	if len(sum) != 1 || sum[0]["in_baseline"] != known || sum[0]["failed"] != float64(fe.Count) {
		t.Errorf("summary %v, want in_baseline %v and failed %d", sum, known, fe.Count)
	}
	if recs := logs.records(t, "baseline entry not seen"); len(recs) != 0 {
		t.Errorf("entries not seen %v, want none", recs)
	}

	err, logs = proxy([]string{"duplicate_query"}, "--baseline", base)
	if err != nil {
		t.Fatalf("third run: %v\n%s", err, logs)
	}
	if recs := logs.records(t, "baseline entry not seen"); float64(len(recs)) != known {
		t.Errorf("%d entries not seen, want %v (the n_plus_one scenario's)\n%s", len(recs), known, logs)
	}
}
