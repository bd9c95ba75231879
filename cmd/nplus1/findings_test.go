package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// TestProxyFindingsEndToEnd runs the proxy command against a real
// PostgreSQL, drives an N+1 through it with pgx, and checks every place a
// finding goes: the JSON log, --findings-out, GET /api/findings, the event
// stream, DELETE /api/findings, and the --fail-on exit code with its summary.
func TestProxyFindingsEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgresWith(t, ctx, shop.Schema, pgtest.Options{})

	out := filepath.Join(t.TempDir(), "findings.jsonl")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--findings-out", out,
		"--fail-on", "n_plus_one,unpaginated", "--ignore", "table:products", "--shutdown-timeout", "5s"}
	addrs, logs, done := startCommand(t, rctx, args, env, &bytes.Buffer{}, "proxy", "http")
	api := "http://" + addrs["http"] + "/api/findings"
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	stream := &http.Client{Transport: tr}

	// Subscribe to the stream before the workload.
	sreq, _ := http.NewRequestWithContext(ctx, "GET", api+"/stream", nil)
	sres, err := stream.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer sres.Body.Close()
	if ct := sres.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("stream Content-Type %q", ct)
	}
	streamed := make(chan detector.Finding, 16)
	go func() {
		sc := bufio.NewScanner(sres.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var f detector.Finding
				if json.Unmarshal([]byte(data), &f) == nil {
					streamed <- f
				}
			}
		}
	}()

	c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=shop-api"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	byName := map[string]shop.Scenario{}
	for _, sc := range shop.Scenarios() {
		byName[sc.Name] = sc
	}
	if err := byName["n_plus_one"].Bad(ctx, c); err != nil {
		t.Fatal(err)
	}

	get := func(query string) []detector.Finding {
		t.Helper()
		res, err := client.Get(api + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: status %d", query, res.StatusCode)
		}
		var fs []detector.Finding
		if err := json.NewDecoder(res.Body).Decode(&fs); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	var fs []detector.Finding
	for deadline := time.Now().Add(10 * time.Second); len(fs) == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		fs = get("?kind=n_plus_one")
	}
	if len(fs) != 1 || fs[0].Connection.ApplicationName != "shop-api" || fs[0].Source == nil {
		t.Fatalf("GET ?kind=n_plus_one: %+v, want one finding of shop-api with a source", fs)
	}
	if got := get("?kind=select_star"); len(got) != 0 {
		t.Errorf("?kind=select_star: %d findings, want 0", len(got))
	}
	if got := get("?since=2999-01-01T00:00:00Z"); len(got) != 0 {
		t.Errorf("?since in the future: %d findings, want 0", len(got))
	}
	if got := get("?since=1h"); len(got) != 1 {
		t.Errorf("?since=1h: %d findings, want 1", len(got))
	}
	if res, err := client.Get(api + "?kind=bogus"); err != nil || res.StatusCode != 400 {
		t.Errorf("?kind=bogus: %v %v, want 400", res, err)
	} else {
		res.Body.Close()
	}
	select {
	case f := <-streamed:
		if f.Kind != detector.KindNPlusOne || f.Fingerprint != fs[0].Fingerprint {
			t.Errorf("streamed %s %s, want the n_plus_one %s", f.Kind, f.Fingerprint, fs[0].Fingerprint)
		}
	case <-time.After(5 * time.Second):
		t.Error("no finding on the event stream")
	}

	// select_star on products is safelisted by --ignore table:products.
	if err := byName["select_star"].Bad(ctx, c); err != nil {
		t.Fatal(err)
	}
	// DELETE clears the store and the cooldown: the same N+1 is reported again.
	dreq, _ := http.NewRequest("DELETE", api, nil)
	if res, err := client.Do(dreq); err != nil || res.StatusCode != 204 {
		t.Fatalf("DELETE: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if got := get(""); len(got) != 0 {
		t.Fatalf("after DELETE: %d findings, want 0", len(got))
	}
	time.Sleep(shop.Pause)
	if err := byName["n_plus_one"].Bad(ctx, c); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if fs = get(""); len(fs) > 0 {
			break
		}
	}
	if len(fs) != 1 || fs[0].Kind != detector.KindNPlusOne {
		t.Errorf("after DELETE and the same N+1 again: %+v, want one n_plus_one (no select_star: ignored)", fs)
	}
	c.Close(ctx)

	stop()
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	var fe *findingsError
	if !errors.As(runErr, &fe) || exitCode(runErr) != exitFindings || fe.Count != 2 {
		t.Errorf("run returned %v (exit %d), want 2 findings matching --fail-on (exit 1)", runErr, exitCode(runErr))
	}
	if recs := logs.records(t, "findings summary"); len(recs) != 1 || recs[0]["failed"] != 2.0 {
		t.Errorf("summary records %v, want one with failed=2; stderr:\n%s", recs, logs)
	}
	if n := len(logs.records(t, "finding")); n != 2 {
		t.Errorf("%d finding log records, want 2", n)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Errorf("--findings-out has %d lines, want 2:\n%s", len(lines), data)
	}
	for _, l := range lines {
		var f detector.Finding
		if err := json.Unmarshal([]byte(l), &f); err != nil || f.Kind != detector.KindNPlusOne {
			t.Errorf("--findings-out line %q: %v", l, err)
		}
	}
	if strings.Contains(string(data), "'open'") || strings.Contains(logs.String(), "'open'") {
		t.Error("a literal reached the findings output")
	}
}

func TestAnalysisFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--fail-on", "n_plus_two"},
		{"--ignore", "tabel:x"},
		{"--ignore", "query:("},
		{"--nplus1-threshold", "0"},
		{"--idle-gap", "-1s"},
		{"--max-procs", "-1"},
		{"--relay-loops", "-1"},
		{"--relay-loops", "100000"},
		{"--pprof"}, // without --http
		{"--relay", "threads"},
	} {
		var stderr bytes.Buffer
		full := append([]string{"proxy", "--upstream", "127.0.0.1:1"}, args...)
		err := run(context.Background(), full, mapEnv(nil), &bytes.Buffer{}, &stderr)
		if exitCode(err) != exitUsage || !strings.Contains(stderr.String(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: exit %d, stderr %q; want a usage error naming the flag", args, exitCode(err), stderr.String())
		}
	}
}
