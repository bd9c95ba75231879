package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// TestSlowQueryThroughTheProxy: with --slow-threshold, a statement that
// takes longer is a slow_query with its count, slowest time and rows; a
// fast one is not; without the flag nothing is.
func TestSlowQueryThroughTheProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgres(t, ctx, "")
	for _, threshold := range []string{"150ms", ""} {
		rctx, stop := context.WithCancel(ctx)
		env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
		args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s"}
		if threshold != "" {
			args = append(args, "--slow-threshold", threshold)
		}
		addrs, _, done := startCommand(t, rctx, args, env, &bytes.Buffer{}, "proxy", "http")
		c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=slow"))
		if err != nil {
			t.Fatal(err)
		}
		for _, sec := range []float64{0.2, 0.3} {
			if _, err := c.Exec(ctx, "SELECT pg_sleep($1), 1 AS one", sec); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Exec(ctx, "SELECT 1 AS fast"); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)

		api := "http://" + addrs["http"] + "/api/findings?kind=slow_query&application=slow"
		var fs []detector.Finding
		if threshold != "" {
			fs = []detector.Finding{waitFinding(t, api, "slow")}
		} else {
			time.Sleep(time.Second) // the idle gap, the analyzer's lag and more
			res, err := http.Get(api)
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(res.Body).Decode(&fs)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		stop()
		<-done
		if threshold == "" {
			if len(fs) != 0 {
				t.Errorf("without --slow-threshold: %+v", fs)
			}
			continue
		}
		f := fs[0]
		if f.Query != "SELECT pg_sleep($1), $2 AS one" || f.Count != 2 || f.MaxDurationMS < 300 || f.DurationMS < 500 || f.Rows != 1 {
			t.Errorf("slow_query %q count %d, %.1f ms (slowest %.1f), rows %d; want the pg_sleep query, 2 runs, 500+ ms, slowest 300+, 1 row",
				f.Query, f.Count, f.DurationMS, f.MaxDurationMS, f.Rows)
		}
	}
}
