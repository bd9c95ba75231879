package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/syncbuf"
)

// TestDemo runs the demo command as a user does and checks its table: every
// pattern found as written, nothing flagged once fixed; the missing index
// through the demo's own inspection connection.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"demo"}, mapEnv(nil), &stdout, &stderr); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		"n_plus_one         n_plus_one                 -      n_plus_one                 yes",
		"nested_n_plus_one  n_plus_one, n_plus_one     -      n_plus_one, n_plus_one     yes",
		"duplicate_query    duplicate_query            -      duplicate_query            yes",
		"unpaginated        unpaginated                -      unpaginated                yes",
		"select_star        select_star                -      select_star                yes",
		"leading_wildcard   leading_wildcard           -      leading_wildcard           yes",
		"deep_offset        deep_offset                -      deep_offset                yes",
		"lost_update        lost_update                -      lost_update                yes",
		"missing_index      missing_index, n_plus_one  -      missing_index, n_plus_one  yes",
		"source: SELECT id FROM orders WHERE user_id = $1 ORDER BY id (6 rows)",
		"Add the index: `CREATE INDEX CONCURRENTLY reviews_product_id_idx ON reviews (product_id)`",
		"product_id is a foreign key to products without an index",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "'open'") || strings.Contains(out, "example.com") {
		t.Errorf("demo output holds a literal:\n%s", out)
	}
}

// TestDemoServe: with --serve the demo prints its table, then keeps the
// page and the proxy up until it is stopped; the page's findings and
// queries are there, and the proxy still relays.
func TestDemoServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	stdout := &syncbuf.Buffer{}
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(rctx, []string{"demo", "--serve", "127.0.0.1:0"}, mapEnv(nil), stdout, &stderr) }()
	page := regexp.MustCompile(`the findings are on the page at (http://\S+/)\n`)
	proxyAt := regexp.MustCompile(`the proxy stays up on \S+ \(psql "(\S+)"\)`)
	var url, dsn string
	for deadline := time.Now().Add(90 * time.Second); url == "" || dsn == ""; time.Sleep(50 * time.Millisecond) {
		if m := page.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		}
		if m := proxyAt.FindStringSubmatch(stdout.String()); m != nil {
			dsn = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("demo returned %v before serving\nstdout:\n%s\nstderr:\n%s", err, stdout, &stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page URL printed\nstdout:\n%s", stdout)
		}
	}
	if !strings.Contains(stdout.String(), "missing_index      missing_index, n_plus_one  -      missing_index, n_plus_one  yes") {
		t.Errorf("no table before serving:\n%s", stdout)
	}
	get := func(path string) string {
		t.Helper()
		res, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
		}
		return string(b)
	}
	if body := get(""); !strings.Contains(body, "<title>") {
		t.Errorf("GET / is not the page:\n%.300s", body)
	}
	if body := get("api/findings?kind=n_plus_one"); strings.Count(body, `"kind":"n_plus_one"`) < 3 {
		t.Errorf("the page's API lacks the demo's N+1s:\n%.500s", body)
	}
	if body := get("api/fingerprints"); !strings.Contains(body, "FROM users WHERE id = $1") {
		t.Errorf("the queries table lacks the loop's query:\n%.500s", body)
	}
	// The missing_index's EXPLAIN: the plan the demo's inspection
	// connection took, a Seq Scan of reviews; and its metrics.
	var mi []detector.Finding
	if err := json.Unmarshal([]byte(get("api/findings?kind=missing_index")), &mi); err != nil || len(mi) != 1 {
		t.Fatalf("missing_index findings %+v (%v), want one", mi, err)
	}
	var plan struct {
		Query    string `json:"query"`
		SeqScans []struct {
			Table string `json:"table"`
		} `json:"seq_scans"`
	}
	if err := json.Unmarshal([]byte(get("api/fingerprints/"+mi[0].Fingerprint+"/plan")), &plan); err != nil ||
		!strings.Contains(plan.Query, "FROM reviews WHERE product_id = $1") || len(plan.SeqScans) != 1 || plan.SeqScans[0].Table != "reviews" {
		t.Errorf("the missing_index's plan: %+v (%v), want its Seq Scan of reviews", plan, err)
	}
	metrics := get("metrics")
	if seriesValue(t, metrics, "nplus1_inspection_connection_up") != 1 || seriesValue(t, metrics, `nplus1_inspections_total{result="ok"}`) < 1 ||
		seriesValue(t, metrics, `nplus1_inspections_total{result="failed"}`) != 0 {
		t.Errorf("the inspection metrics do not show the demo's inspections:\n%s", grepLines([]byte(metrics), "inspection"))
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("the proxy is not up: %v", err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Error(err)
	}
	c.Close(ctx)
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo returned %v after Ctrl-C\nstderr:\n%s", err, &stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
}
