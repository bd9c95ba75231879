package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/promtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// TestPrometheusSeesNPlusOne runs the whole chain: a real PostgreSQL, the
// proxy command (in process, as main runs it) with --http, a real Prometheus
// (Debian's) scraping its /metrics every second and evaluating the
// repository's rule files every second, and pgx running the shop's N+1
// through the proxy. Through Prometheus's HTTP API it asserts that the
// findings counter rose, with the finding's severity, that NPlusOneDetected
// became pending or firing and CriticalFindingDetected did not, and, once
// the proxy is stopped, that NPlus1ProxyDown becomes pending; it also lints
// the live scrape with promtool. The scrape job is not called nplus1: no
// rule depends on its name.
func TestPrometheusSeesNPlusOne(t *testing.T) {
	promtool := promtest.Promtool(t) // fail early, naming the package, when Prometheus is missing
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s"}
	addrs, _, done := startCommand(t, ctx, args, env, io.Discard, "proxy", "http")
	proxyAddr, httpAddr := addrs["proxy"], addrs["http"]
	stopped := false
	stopProxy := func() {
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after cancel, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not return 20s after cancel")
		}
	}
	defer func() {
		if !stopped {
			stopProxy()
		}
	}()

	var rules []string
	for _, f := range []string{"alerts.yml", "recording.yml"} {
		p, err := filepath.Abs(filepath.Join("..", "..", "dashboards", "prometheus", f))
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, p)
	}
	prom := promtest.Start(t, promtest.Options{Job: "shop-db", Targets: []string{httpAddr}, RuleFiles: rules, Interval: time.Second})

	// poll evaluates cond every 250 ms until it holds or the time is up.
	poll := func(what string, limit time.Duration, cond func(ctx context.Context) (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(limit)
		var last string
		for {
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			ok, state := cond(qctx)
			qcancel()
			if ok {
				return
			}
			last = state
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %v; last: %s\nprometheus log:\n%s", what, limit, last, prom.Log())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	query := func(ctx context.Context, expr string) ([]promtest.Sample, string) {
		s, err := prom.Query(ctx, expr)
		if err != nil {
			return nil, err.Error()
		}
		return s, fmt.Sprintf("%s = %v", expr, s)
	}

	// Prometheus scrapes the proxy and holds the findings counters at 0
	// (every kind and severity is exported from the start, so the first
	// finding is an increase).
	poll("the findings counters at 0 in Prometheus", 30*time.Second, func(ctx context.Context) (bool, string) {
		s, state := query(ctx, `nplus1_findings_total{job="shop-db", kind="n_plus_one"} == 0`)
		return len(s) == 3, state
	})
	if err := prom.RuleGroupHealth(ctx); err != nil {
		t.Errorf("rules: %v", err)
	}

	// The application: the shop's N+1 through the proxy.
	conn, err := pgx.Connect(ctx, pgtest.URLFor(proxyAddr, pgtest.Superuser, "application_name=shop-e2e"))
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer conn.Close(context.Background())
	if err := shop.Load(ctx, conn); err != nil {
		t.Fatalf("load the shop: %v", err)
	}
	time.Sleep(shop.Pause)
	sc := shop.Scenarios()[0]
	if sc.Name != "n_plus_one" {
		t.Fatalf("got scenario %s first, want n_plus_one", sc.Name)
	}
	if err := sc.Bad(ctx, conn); err != nil {
		t.Fatalf("run the N+1: %v", err)
	}

	// The finding reaches Prometheus, the counter has increased, and the
	// alert is pending or firing.
	// The shop's loop is 20 lookups: a warning.
	poll("increase of the findings counter", 30*time.Second, func(ctx context.Context) (bool, string) {
		s, state := query(ctx, `increase(nplus1_findings_total{job="shop-db", kind="n_plus_one"}[5m]) > 0`)
		return len(s) == 1 && s[0].Metric["severity"] == "warning", state
	})
	poll("NPlusOneDetected pending or firing", 30*time.Second, func(ctx context.Context) (bool, string) {
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "NPlusOneDetected" && (a.State == "pending" || a.State == "firing") {
				if a.Labels["job"] != "shop-db" || a.Labels["instance"] != httpAddr || a.Labels["severity"] != "warning" {
					return false, fmt.Sprintf("alert with labels %v, want job shop-db, instance %s, severity warning", a.Labels, httpAddr)
				}
				return true, ""
			}
		}
		return false, fmt.Sprintf("alerts: %+v", alerts)
	})

	// The per-fingerprint series: the looped lookup is in the top-K, with its
	// normalized query, and its finding is counted on it or in __other__.
	poll("the looped query's fingerprint series", 30*time.Second, func(ctx context.Context) (bool, string) {
		s, state := query(ctx, `nplus1_fingerprint_info{job="shop-db", query="SELECT name, email FROM users WHERE id = $1", tables="users"}`)
		return len(s) == 1, state
	})
	poll("the finding in the per-fingerprint series", 30*time.Second, func(ctx context.Context) (bool, string) {
		s, state := query(ctx, `sum(nplus1_fingerprint_findings_total{job="shop-db", kind="n_plus_one"})`)
		return len(s) == 1 && s[0].Value == 1, state
	})
	for expr, want := range map[string]float64{
		`up{job="shop-db"}`:                                                 1,
		`count(nplus1_build_info{job="shop-db"})`:                           1,
		`sum(nplus1_queries_total{job="shop-db", command="select"}) >= 21`:  -1, // 1 list + 20 lookups, at least
		`sum(nplus1_relayed_bytes_total{job="shop-db"}) > 0`:                -1,
		`sum(nplus1_executions_dropped_total{job="shop-db"})`:               0,
		`count(job_kind:nplus1_findings:increase1h{kind="n_plus_one"} > 0)`: 1, // recording rule
		`sum(nplus1_query_duration_seconds_count{job="shop-db"}) > 0`:       -1,
		`sum(nplus1_client_connections_active{job="shop-db"})`:              1,
		`sum(nplus1_upstream_connections_active{job="shop-db"})`:            1,
	} {
		poll(expr, 15*time.Second, func(ctx context.Context) (bool, string) {
			s, state := query(ctx, expr)
			return len(s) == 1 && (want < 0 || s[0].Value == want), state
		})
	}

	// promtool lints the live scrape.
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d, %v", res.StatusCode, err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the live scrape: %v\n%s", err, out)
	}
	if strings.Contains(string(body), "'open'") {
		t.Error("the scrape holds a literal from the workload")
	}

	alerts, err := prom.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if a.Labels["alertname"] == "CriticalFindingDetected" {
			t.Errorf("a warning N+1 made %v %s", a.Labels, a.State)
		}
	}

	conn.Close(context.Background())
	stopProxy()

	// The proxy is gone: Prometheus cannot scrape it, and knows it was an
	// nplus1, whatever its job is called.
	ctx = context.Background()
	poll("NPlus1ProxyDown pending", 30*time.Second, func(ctx context.Context) (bool, string) {
		alerts, err := prom.Alerts(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "NPlus1ProxyDown" && a.Labels["job"] == "shop-db" && a.Labels["instance"] == httpAddr && a.Labels["severity"] == "critical" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("alerts: %+v", alerts)
	})
}
