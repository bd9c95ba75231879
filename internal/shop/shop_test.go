package shop

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/inspect"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// TestScenariosThroughProxy runs every scenario through the real proxy to a
// real PostgreSQL, with pgx in each of its query modes and an inspection
// connection of InspectionRole (as the demo runs it), and checks that the
// bad half yields exactly the expected finding kinds and the fixed half none.
func TestScenariosThroughProxy(t *testing.T) {
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	events := make(chan *pgwire.Execution, 10000)
	p, err := proxy.New(proxy.Config{Upstream: srv.Addr(), Events: events, Evidence: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	defer p.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	setup, err := pgx.Connect(ctx, srv.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	if err := Load(ctx, setup); err != nil {
		t.Fatal(err)
	}
	if err := CreateInspectionRole(ctx, setup); err != nil {
		t.Fatal(err)
	}
	setup.Close(ctx)

	ins := startInspector(t, srv)
	store := analyzer.NewStore(1000)
	// The analyzer waits for each inspection's answer, as the demo's does,
	// so that a missing_index is made when its window closes.
	a := analyzer.New(analyzer.Config{Sinks: []analyzer.Sink{store}, Tick: 10 * time.Millisecond, Lag: 20 * time.Millisecond,
		Detector: detector.Config{Inspect: true}, Inspector: ins.Blocking(10 * time.Second)})
	actx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(actx, events); close(done) }()
	defer func() { stop(); <-done }()

	// wait returns the findings made since the last call, once the
	// scenario's window is closed and judged: a barrier on the analyzer (no
	// execution queued, no window open), not a guess of how long that takes.
	seen := 0
	wait := func() []detector.Finding {
		time.Sleep(detector.DefaultIdleGap)
		for deadline := time.Now().Add(10 * time.Second); len(events) > 0 || a.Stats().WindowsOpen > 0; {
			if time.Now().After(deadline) {
				t.Fatalf("windows still open 10s after the scenario")
			}
			time.Sleep(10 * time.Millisecond)
		}
		all := store.List("", time.Time{})
		fs := all[seen:]
		seen = len(all)
		return fs
	}
	for _, mode := range []string{"cache_statement", "exec", "simple_protocol"} {
		c, err := pgx.Connect(ctx, pgtest.URLFor(ln.Addr().String(), pgtest.Superuser, "default_query_exec_mode="+mode, "application_name=shop-"+mode))
		if err != nil {
			t.Fatal(err)
		}
		a.ResetReported()
		wait()
		for _, sc := range Scenarios() {
			if err := sc.Bad(ctx, c); err != nil {
				t.Fatalf("%s %s bad: %v", mode, sc.Name, err)
			}
			var kinds []string
			for _, f := range wait() {
				kinds = append(kinds, string(f.Kind))
				if f.Kind == detector.KindMissingIndex {
					checkMissingIndex(t, mode, &f)
				}
			}
			want := slices.Clone(sc.Expect)
			// A SELECT * is also an N+1's or unpaginated read's select_star
			// only where the scenario says so; compare as sorted lists.
			sort.Strings(kinds)
			sort.Strings(want)
			if !slices.Equal(kinds, want) {
				t.Errorf("%s %s (bad): findings %v, want %v", mode, sc.Name, kinds, want)
			}
			if err := sc.Fixed(ctx, c); err != nil {
				t.Fatalf("%s %s fixed: %v", mode, sc.Name, err)
			}
			if fs := wait(); len(fs) > 0 {
				for _, f := range fs {
					t.Errorf("%s %s (fixed): unexpected %s on %s", mode, sc.Name, f.Kind, f.Query)
				}
			}
		}
		c.Close(ctx)
	}
}

// startInspector runs an inspection connection of InspectionRole to srv,
// over its Unix socket (the role has no password), until the test ends.
func startInspector(t *testing.T, srv *pgtest.Server) *inspect.Inspector {
	t.Helper()
	cfg, err := inspect.ParseURL(fmt.Sprintf("host='%s' port=%d user=%s dbname=%s", srv.Dir, srv.Port, InspectionRole, pgtest.Database))
	if err != nil {
		t.Fatal(err)
	}
	ins, err := inspect.New(inspect.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ins.Run(ctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return ins
}

// checkMissingIndex checks the missing_index scenario's finding: the
// unindexed foreign key of reviews, and the statement that indexes it.
func checkMissingIndex(t *testing.T, mode string, f *detector.Finding) {
	t.Helper()
	ix := f.Index
	if ix == nil || ix.Table != "reviews" || !slices.Equal(ix.Columns, []string{"product_id"}) || ix.ForeignKey != "products" ||
		ix.Rows < 19_000 || ix.Rows > 21_000 || ix.Create != "CREATE INDEX CONCURRENTLY reviews_product_id_idx ON reviews (product_id)" ||
		f.Severity != detector.SeverityCritical {
		t.Errorf("%s: missing_index %+v (%s), want reviews (product_id), a foreign key to products, about 20000 rows, critical", mode, ix, f.Severity)
	}
}
