package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/inspect"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
	"github.com/nplus1/nplus1/proxy"
)

var demoCmd = command{
	name:    "demo",
	summary: "show what nplus1 finds, on a throwaway PostgreSQL and a built-in workload",
	about: `
Start a throwaway PostgreSQL (initdb into a temporary directory, from the
server binaries on PATH, pg_config --bindir or /usr/lib/postgresql/*/bin),
load a small shop schema (users, products, orders, order_items, reviews),
start the proxy in-process with an inspection connection of a read-only role
(as --inspect-url makes one), and run a workload through it with pgx: an N+1,
a nested N+1, a duplicate query, an unpaginated read, a SELECT *, a leading
wildcard, a deep OFFSET, a lost update and an N+1 over a foreign key that no
index serves (a missing index), each first as ORMs commonly write it and then
fixed. The findings are printed as they are made (on stdout), then a table of
what each half produced. Everything is removed at the end. With --serve, the
proxy and the web page (see the README's "Look at it") stay up after the
table, until Ctrl-C.

Exit code 0 when every pattern was found and no fixed version was flagged.`,
	setup: demoFlags,
}

func demoFlags(fs *flagSet) runFunc {
	analysis := newAnalysisOptions(fs)
	serve := fs.String("serve", "", "after the workload, keep the proxy and the web page up, the page on `ADDR`\n"+
		"(host:port, port 0: any), until Ctrl-C")
	return func(ctx context.Context, inv *invocation) error {
		if *serve != "" {
			if err := checkAddr(*serve); err != nil {
				return fs.errorf("serve", "%v", err)
			}
		}
		return runDemo(ctx, inv, analysis, *serve)
	}
}

// demoFinding records which scenario half a finding came from.
type demoFinding struct {
	scenario string
	fixed    bool
	kind     detector.Kind
}

// demoApp is the application_name of a scenario half's connection: findings
// are filed under the half whose connection they name, not by when they
// arrive, so a slow machine cannot move one into the next half.
func demoApp(scenario string, fixed bool) string {
	if fixed {
		return "shop-demo/" + scenario + "/fixed"
	}
	return "shop-demo/" + scenario + "/as-written"
}

// demoTally is what each scenario half produced: a sink that files each
// finding under the half its application_name names.
type demoTally struct {
	mu  sync.Mutex
	got []demoFinding
}

func (t *demoTally) add(f *detector.Finding) {
	rest, ok := strings.CutPrefix(f.Connection.ApplicationName, "shop-demo/")
	if !ok {
		return
	}
	scenario, half, _ := strings.Cut(rest, "/")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.got = append(t.got, demoFinding{scenario: scenario, fixed: half == "fixed", kind: f.Kind})
}

// kinds returns the kinds of scenario's findings, as written and fixed.
func (t *demoTally) kinds(scenario string) (bad, good []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range t.got {
		if g.scenario == scenario {
			if g.fixed {
				good = append(good, string(g.kind))
			} else {
				bad = append(bad, string(g.kind))
			}
		}
	}
	return bad, good
}

func runDemo(ctx context.Context, inv *invocation, analysis *analysisOptions, serve string) error {
	dcfg, err := analysis.detectorConfig()
	if err != nil {
		return err
	}
	outs, err := analysis.openOutputs(inv)
	if err != nil {
		return err
	}
	// The console sink prints findings from the analyzer's goroutine while
	// the demo prints its progress from this one.
	w := &lockedWriter{w: inv.stdout}
	if _, err := pgtest.FindBinDir(); err != nil {
		return fmt.Errorf("the demo needs a local PostgreSQL server: %w", err)
	}
	fmt.Fprintln(w, "nplus1 demo: starting a throwaway PostgreSQL ...")
	began := time.Now()
	pg, err := startDemoPostgres(ctx)
	if err != nil {
		return err
	}
	defer pg.Stop()

	ins, err := demoInspector(inv, pg)
	if err != nil {
		return err
	}
	dcfg.Inspect = true
	tally := &demoTally{}
	var pm *proxyMetrics // the web page's queries table reads the metrics' ranking
	if serve != "" {
		if pm, err = newMetricsOptions(newFlagSet("demo")).start(true); err != nil {
			return err
		}
	}
	acfg := analysis.analyzerConfig(inv, dcfg, demoSinks(w, inv, outs, tally), pm)
	acfg.Tick, acfg.Lag = 10*time.Millisecond, 20*time.Millisecond
	// The proxy's inspector answers later, on the analyzer's loop, and
	// Shutdown does not wait for answers still to come: a missing_index
	// would then be in the table or not depending on the machine's speed.
	// The demo's analyzer waits for each answer where the detector asks
	// (at most demoInspectTimeout), as a replay's does: the finding is made
	// when its window closes, before the pause that ends its half.
	acfg.Inspector = ins.Blocking(demoInspectTimeout)
	p, err := newPipeline(ctx, inv, pipelineConfig{
		proxy:           demoProxyConfig(pg.Addr(), analysis),
		listen:          "127.0.0.1:0",
		queueSize:       10000,
		shutdownTimeout: 5 * time.Second,
		analyzer:        acfg,
		analysis:        analysis,
		outs:            outs,
		quiet:           true,
		http:            serve,
		metrics:         pm,
		inspector:       ins,
	})
	if err != nil {
		return err
	}
	p.Start(ctx)
	fmt.Fprintf(w, "nplus1 demo: PostgreSQL on %s, proxy on %s, inspection connection as %s (read-only); running the workload through the proxy\n\n",
		pg.Addr(), p.Addr(), shop.InspectionRole)
	scenarios := shop.Scenarios()
	runErr := runDemoWorkload(ctx, w, p.Addr().String(), scenarios, dcfg.IdleGap, detector.New(dcfg).Config().StallGap)
	if serve != "" && runErr == nil && ctx.Err() == nil {
		// A flush is a barrier: every execution relayed so far is judged
		// and every window closed, so the tally is complete while the
		// proxy stays up.
		if _, err := p.flush(ctx, analyzer.Filter{}); err == nil {
			ok := printDemoTable(w, scenarios, tally)
			fmt.Fprintf(w, "\nnplus1 demo: the findings are on the page at http://%s/\n", p.hs.ln.Addr())
			fmt.Fprintf(w, "nplus1 demo: the proxy stays up on %s (psql %q); Ctrl-C to stop\n",
				p.Addr(), pgtest.URLFor(p.Addr().String(), pgtest.Superuser))
			<-ctx.Done()
			_ = p.Shutdown(context.Background(), nil)
			if err := p.Close(); err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("the demo's findings differ from what each scenario expects (see the table)")
			}
			return nil
		}
	}
	// Shutdown drains the queue and judges every open window before it
	// returns: the tally is complete, however slow the machine.
	_ = p.Shutdown(ctx, nil) // the demo reports the workload's errors, not the proxy's
	if runErr != nil {
		return runErr
	}
	if ctx.Err() != nil {
		return nil
	}

	ok := printDemoTable(w, scenarios, tally)
	fmt.Fprintf(w, "\nnplus1 demo: done in %.1fs; the throwaway PostgreSQL is removed.\n", time.Since(began).Seconds())
	if err := p.Close(); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the demo's findings differ from what each scenario expects (see the table)")
	}
	return nil
}

// startDemoPostgres starts the throwaway PostgreSQL and loads the shop
// schema into it.
func startDemoPostgres(ctx context.Context) (*pgtest.Server, error) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	setup, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		pg.Stop()
		return nil, err
	}
	if err := shop.Load(ctx, setup); err != nil {
		setup.Close(ctx)
		pg.Stop()
		return nil, fmt.Errorf("load the shop schema: %w", err)
	}
	if err := shop.CreateInspectionRole(ctx, setup); err != nil {
		setup.Close(ctx)
		pg.Stop()
		return nil, fmt.Errorf("create the inspection role: %w", err)
	}
	setup.Close(ctx)
	return pg, nil
}

// demoInspectTimeout bounds how long the demo's analyzer waits for one
// answer of the inspection connection (a few statements on a local server).
const demoInspectTimeout = 10 * time.Second

// demoInspector is the demo's inspection connection: the read-only role
// shop.CreateInspectionRole made, over the throwaway server's Unix socket,
// where it logs in without a password.
func demoInspector(inv *invocation, pg *pgtest.Server) (*inspect.Inspector, error) {
	cfg, err := inspect.ParseURL(fmt.Sprintf("host='%s' port=%d user=%s dbname=%s", pg.Dir, pg.Port, shop.InspectionRole, pgtest.Database))
	if err != nil {
		return nil, err
	}
	return inspect.New(inspect.Options{Config: cfg, Logger: inv.logger.With("component", "inspect")})
}

// demoSinks are where the demo's findings go: readable on w (stdout),
// whatever --log-format says, to the tally, and to the outputs but for the
// console and the log.
func demoSinks(w io.Writer, inv *invocation, outs *outputs, tally *demoTally) []analyzer.Sink {
	sinks := []analyzer.Sink{analyzer.NewColorConsole(w, inv.useColor(inv.stdout)), analyzer.SinkFunc(tally.add)}
	for _, s := range outs.sinks {
		if _, isConsole := s.(*analyzer.Console); !isConsole {
			if _, isLog := s.(analyzer.LogSink); !isLog {
				sinks = append(sinks, s)
			}
		}
	}
	return sinks
}

// runDemoWorkload runs each scenario through the proxy at addr, as commonly
// written and then fixed, each half on its own connection (named by
// demoApp), with a pause longer than idleGap after each half.
func runDemoWorkload(ctx context.Context, w io.Writer, addr string, scenarios []shop.Scenario, idleGap, stallGap time.Duration) error {
	for _, sc := range scenarios {
		for _, fixed := range []bool{false, true} {
			how, fn := "as commonly written", sc.Bad
			if fixed {
				how, fn = "fixed", sc.Fixed
			}
			fmt.Fprintf(w, "── %s: %s (%s)\n", sc.Name, sc.Title, how)
			c, err := pgx.Connect(ctx, pgtest.URLFor(addr, pgtest.Superuser, "application_name="+demoApp(sc.Name, fixed)))
			if err != nil {
				return err
			}
			err = fn(ctx, c)
			c.Close(ctx) // ends the connection's window: its findings follow
			if err != nil {
				return fmt.Errorf("scenario %s (%s): %w", sc.Name, how, err)
			}
			// A pause, so that the findings print under their scenario
			// (a window that ends in a loop is held for the stall gap);
			// which half a finding belongs to does not depend on it.
			time.Sleep(max(shop.Pause, idleGap+150*time.Millisecond, stallGap+100*time.Millisecond))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil
}

// printDemoTable prints what each half produced against what it should,
// and reports whether every scenario passed.
func printDemoTable(w io.Writer, scenarios []shop.Scenario, tally *demoTally) bool {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tAS WRITTEN\tFIXED\tEXPECTED\tOK")
	ok := true
	for _, sc := range scenarios {
		bad, good := tally.kinds(sc.Name)
		sort.Strings(bad)
		want := slices.Clone(sc.Expect)
		sort.Strings(want)
		pass := slices.Equal(bad, want) && len(good) == 0
		ok = ok && pass
		mark := "yes"
		if !pass {
			mark = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sc.Name, list(bad), list(good), list(want), mark)
	}
	tw.Flush()
	return ok
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

// lockedWriter serializes writes from several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// demoProxyConfig is the demo's proxy: the throwaway server upstream, value
// evidence as the flags say.
func demoProxyConfig(upstream string, analysis *analysisOptions) proxy.Config {
	cfg := proxy.Config{Upstream: upstream}
	analysis.evidenceConfig(&cfg)
	return cfg
}
