package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// TestUpstreamPasswordNeverPrinted starts the proxy with a password planted
// in --upstream (keyword/value and URL forms), against a reachable server
// and an unreachable one, and greps everything it says for it: the logs at
// debug level, the console, /readyz, the metrics, and what clients are told.
func TestUpstreamPasswordNeverPrinted(t *testing.T) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	const plant = "zqUpstreamSecret"
	for _, tc := range []struct {
		name, upstream string
		reachable      bool
	}{
		{"keyword/value", "host=" + pg.Host + " port=" + strconv.Itoa(pg.Port) + " user=bob password=" + plant + " sslmode=disable", true},
		{"URL", "postgres://bob:" + plant + "@" + pg.Addr() + "/db?sslmode=disable", true},
		{"unreachable keyword/value", "host=127.0.0.1 port=" + strconv.Itoa(closedPort) + " password=" + plant + " sslmode=disable", false},
		{"unresolvable URL", "postgresql://bob:" + plant + "@no-such-host.invalid:5432/db?sslmode=disable", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			var console bytes.Buffer
			args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--upstream", tc.upstream,
				"--log-level", "debug", "--shutdown-timeout", "5s"}
			addrs, logs, done := startCommand(t, rctx, args, map[string]string{"NPLUS1_LOG_FORMAT": "json"}, &console, "proxy", "http")

			outputs := map[string]string{}
			c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser))
			if tc.reachable {
				if err != nil {
					t.Fatalf("connect through the proxy: %v", err)
				}
				if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
					t.Fatal(err)
				}
				c.Close(ctx)
			} else {
				if err == nil {
					t.Fatal("connected through a proxy whose upstream is unreachable")
				}
				outputs["client error"] = err.Error()
			}
			for _, path := range []string{"/readyz", "/metrics"} {
				res, err := http.Get("http://" + addrs["http"] + path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				outputs[path] = string(b)
				if path == "/readyz" && (res.StatusCode == http.StatusOK) != tc.reachable {
					t.Errorf("/readyz: %d %s", res.StatusCode, b)
				}
			}
			stopCommand(t, stop, done, logs, &console, "", outputs)
			if !strings.Contains(outputs["logs"], "upstream") {
				t.Errorf("the logs never name the upstream:\n%s", outputs["logs"])
			}
			noPlant(t, outputs, plant, "password")
		})
	}
}
