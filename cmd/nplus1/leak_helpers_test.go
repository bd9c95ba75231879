package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// startPostgres starts a PostgreSQL for the test and runs schema in it.
func startPostgres(t *testing.T, ctx context.Context, schema string) *pgtest.Server {
	t.Helper()
	return startPostgresWith(t, ctx, schema, pgtest.Options{})
}

// startPostgresWith is startPostgres with the server's options.
func startPostgresWith(t *testing.T, ctx context.Context, schema string, opts pgtest.Options) *pgtest.Server {
	t.Helper()
	pg, err := pgtest.Start(opts)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	setup, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	return pg
}

// stopCommand stops a command started by startCommand (stop cancels its
// context), waits for run to return, and adds what it wrote to outputs:
// the findings file (when findingsFile is set), the logs and the console.
func stopCommand(t *testing.T, stop func(), done chan error, logs *logWatcher, console *bytes.Buffer, findingsFile string, outputs map[string]string) {
	t.Helper()
	stop()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return 30s after it was stopped")
	}
	if findingsFile != "" {
		data, err := os.ReadFile(findingsFile)
		if err != nil {
			t.Fatal(err)
		}
		outputs["findings-out"] = string(data)
	}
	outputs["logs"] = logs.String()
	outputs["console"] = console.String()
}

// noPlant fails the test for each output that holds plant (in any case),
// showing where.
func noPlant(t *testing.T, outputs map[string]string, plant, what string) {
	t.Helper()
	for name, o := range outputs {
		if i := strings.Index(strings.ToLower(o), strings.ToLower(plant)); i >= 0 {
			t.Errorf("%s holds the planted %s: %s", name, what, o[max(0, i-200):min(len(o), i+100)])
		}
	}
}
