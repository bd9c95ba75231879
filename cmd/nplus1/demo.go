package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

var demoCmd = command{
	name:    "demo",
	summary: "show what nplus1 finds, on a throwaway PostgreSQL and a built-in workload",
	about: `
Start a throwaway PostgreSQL (initdb into a temporary directory, from the
server binaries on PATH, pg_config --bindir or /usr/lib/postgresql/*/bin),
load a small shop schema (users, products, orders, order_items), start the
proxy in-process, and run a workload through it with pgx: an N+1, a nested
N+1, a duplicate query, an unpaginated read and a SELECT *, each first as
ORMs commonly write it and then fixed. The findings are printed as they are
made (on stdout), then a table of what each half produced. Everything is
removed at the end.

Exit code 0 when every pattern was found and no fixed version was flagged.`,
	setup: demoFlags,
}

func demoFlags(fs *flagSet) runFunc {
	analysis := newAnalysisOptions(fs)
	return func(ctx context.Context, inv *invocation) error {
		return runDemo(ctx, inv, analysis)
	}
}

// demoFinding records which scenario half a finding came from.
type demoFinding struct {
	scenario string
	fixed    bool
	kind     detector.Kind
}

func runDemo(ctx context.Context, inv *invocation, analysis *analysisOptions) error {
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
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Stop()

	setup, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		return err
	}
	if err := shop.Load(ctx, setup); err != nil {
		setup.Close(ctx)
		return fmt.Errorf("load the shop schema: %w", err)
	}
	setup.Close(ctx)

	// What the scenario being run produced; the console prints as we go.
	var mu sync.Mutex
	current := demoFinding{}
	var got []demoFinding
	record := analyzer.SinkFunc(func(f *detector.Finding) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, demoFinding{scenario: current.scenario, fixed: current.fixed, kind: f.Kind})
	})
	// The demo prints findings on stdout, readable, whatever --log-format says.
	sinks := []analyzer.Sink{analyzer.NewConsole(w, inv.getenv), record}
	for _, s := range outs.sinks {
		if _, isConsole := s.(*analyzer.Console); !isConsole {
			if _, isLog := s.(analyzer.LogSink); !isLog {
				sinks = append(sinks, s)
			}
		}
	}
	an := analyzer.New(analyzer.Config{
		Detector:     dcfg,
		Fingerprints: fingerprint.New(fingerprint.Options{MaxTexts: *analysis.cacheSize}),
		Sinks:        sinks,
		Logger:       inv.logger.With("component", "analyzer"),
		Tick:         10 * time.Millisecond,
		Lag:          20 * time.Millisecond,
	})
	events := make(chan *pgwire.Execution, 10000)
	srv, err := proxy.New(proxy.Config{Upstream: pg.Addr(), Events: events, Logger: inv.logger.With("component", "proxy")})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	serveDone := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(serveDone) }()
	anDone := make(chan struct{})
	go func() { an.Run(context.WithoutCancel(ctx), events); close(anDone) }()
	stopAll := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-serveDone
		close(events)
		<-anDone
	}

	url := pgtest.URLFor(ln.Addr().String(), pgtest.Superuser, "application_name=shop-demo")
	fmt.Fprintf(w, "nplus1 demo: PostgreSQL on %s, proxy on %s; running the workload through the proxy\n\n", pg.Addr(), ln.Addr())
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		stopAll()
		return err
	}
	scenarios := shop.Scenarios()
	var runErr error
	for _, sc := range scenarios {
		for _, fixed := range []bool{false, true} {
			mu.Lock()
			current = demoFinding{scenario: sc.Name, fixed: fixed}
			mu.Unlock()
			how, fn := "as commonly written", sc.Bad
			if fixed {
				how, fn = "fixed", sc.Fixed
			}
			fmt.Fprintf(w, "── %s: %s (%s)\n", sc.Name, sc.Title, how)
			if err := fn(ctx, c); err != nil {
				runErr = fmt.Errorf("scenario %s (%s): %w", sc.Name, how, err)
				break
			}
			// A pause longer than the idle gap ends the window, like the
			// time between two requests; the findings print meanwhile.
			time.Sleep(max(shop.Pause, dcfg.IdleGap+150*time.Millisecond))
		}
		if runErr != nil || ctx.Err() != nil {
			break
		}
	}
	c.Close(ctx)
	stopAll()
	if runErr != nil {
		return runErr
	}
	if ctx.Err() != nil {
		return nil
	}

	// The table: what each half produced against what it should.
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tAS WRITTEN\tFIXED\tEXPECTED\tOK")
	ok := true
	for _, sc := range scenarios {
		var bad, good []string
		for _, g := range got {
			if g.scenario == sc.Name {
				if g.fixed {
					good = append(good, string(g.kind))
				} else {
					bad = append(bad, string(g.kind))
				}
			}
		}
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
	fmt.Fprintf(w, "\nnplus1 demo: done in %.1fs; the throwaway PostgreSQL is removed.\n", time.Since(began).Seconds())
	if err := analysis.finish(inv, outs); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the demo's findings differ from what each scenario expects (see the table)")
	}
	return nil
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
