package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/inspect"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// pipelineConfig is what the proxy and demo commands put together: the
// proxy, the analyzer behind its events queue, and what is optional.
type pipelineConfig struct {
	proxy           proxy.Config    // checked; newPipeline sets Events and Logger
	listen          string          // the proxy's address (host:port; port 0: any)
	queueSize       int             // executions queued for analysis
	shutdownTimeout time.Duration   // how long Shutdown waits for open connections
	analyzer        analyzer.Config // from analysisOptions.analyzerConfig
	analysis        *analysisOptions
	outs            *outputs       // from analysis.openOutputs; Close closes them
	record          *recordOptions // nil: no recording
	metrics         *proxyMetrics  // nil: no metrics
	http            string         // --http; "": no HTTP server
	httpToken       string         // --http-token or --http-token-file; "": none
	pprof           bool           // --pprof: Go's profiler on the HTTP server

	inspector *inspect.Inspector // --inspect-url; nil: none
	// quiet drops the lifecycle log lines (listening, shutting down,
	// stopped): the demo prints its own progress.
	quiet bool
}

// pipeline is the proxy server, its events queue, the optional recording
// tee, the analyzer and its sinks, and the optional HTTP server. newPipeline
// listens; Start serves; Shutdown stops it all in order (stop accepting,
// drain the connections, close the tee, flush the analyzer); Close then
// closes the sinks. Run does all of it, until ctx is cancelled.
type pipeline struct {
	inv             *invocation
	analysis        *analysisOptions
	outs            *outputs
	shutdownTimeout time.Duration
	logger          *slog.Logger // component=main
	listenLog       *slog.Logger // component=proxy, for the "listening" line

	cfg    proxy.Config
	srv    *proxy.Server
	an     *analyzer.Analyzer
	events chan *pgwire.Execution
	rec    *recorder // nil without --record
	ln     net.Listener
	hs     *httpServer // nil without --http

	ins           *inspect.Inspector // nil without --inspect-url
	stopInspector func()             // stops ins's goroutine (Start, Shutdown)

	consumers                 sync.WaitGroup // the tee and the analyzer
	serveErr, httpErr         chan error
	started                   bool
	proxyServing, httpServing bool // their serve error is still to be read
}

// newPipeline builds the pipeline and listens; nothing is served until
// Start. Errors in the configuration are *usageError.
func newPipeline(ctx context.Context, inv *invocation, pc pipelineConfig) (_ *pipeline, err error) {
	pc.analyzer.EvidenceBudget = pc.proxy.EvidenceBudget
	if pc.inspector != nil && pc.analyzer.Inspector == nil { // the demo's waits for answers
		pc.analyzer.Inspector = pc.inspector
	}
	p := &pipeline{
		inv:             inv,
		analysis:        pc.analysis,
		outs:            pc.outs,
		shutdownTimeout: pc.shutdownTimeout,
		logger:          inv.logger.With("component", "main"),
		listenLog:       inv.logger.With("component", "proxy"),
		an:              analyzer.New(pc.analyzer),
		events:          make(chan *pgwire.Execution, pc.queueSize),
		ins:             pc.inspector,
	}
	if pc.quiet {
		p.logger = slog.New(slog.DiscardHandler)
		p.listenLog = p.logger
	}
	p.cfg = pc.proxy
	p.cfg.Events = p.events
	if p.rec, err = pc.record.open(&p.cfg, inv.logger); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	p.cfg.Logger = inv.logger.With("component", "proxy")
	if p.srv, err = proxy.New(p.cfg); err != nil {
		return nil, usageErrorf("%v", err)
	}
	if err = pc.metrics.watch(p.srv, p.an, p.events); err != nil {
		return nil, err
	}
	if err = pc.metrics.watchInspector(pc.inspector); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	if p.ln, err = lc.Listen(ctx, "tcp", pc.listen); err != nil {
		return nil, err // "listen tcp 127.0.0.1:6432: bind: address already in use"
	}
	if pc.http != "" {
		p.hs, err = listenHTTP(ctx, pc.http, httpDeps{
			checkUpstream: p.srv.CheckUpstream,
			findings:      pc.outs.store,
			analyzer:      p.an,
			flush:         p.flush,
			metrics:       pc.metrics.handler(inv.logger.With("component", "http")),
			web:           pc.metrics.webDeps(),
			logger:        inv.logger.With("component", "http"),
			token:         pc.httpToken,
			pprof:         pc.pprof,
			plan:          inspectorPlans(pc.inspector),
		})
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// release frees what newPipeline took, for a pipeline that never started.
func (p *pipeline) release() {
	if p.ln != nil {
		p.ln.Close()
	}
	if p.hs != nil {
		p.hs.stop()
		p.hs.ln.Close()
	}
	p.rec.abandon()
}

// flush is POST /api/flush: a barrier through the analyzer's loop for
// every execution the proxy has handed to the events queue so far. It holds
// for every execution whose ReadyForQuery a client has read: both relays
// show a chunk of the server's bytes to the connection's tracker before
// they write it to the client, the tracker emits a group's executions when
// it sees the group's ReadyForQuery, and the proxy counts an execution
// (Stats.Events) right after its send into the queue succeeded. So a client
// that has its answer and then asks for a flush is counted in the total
// read here; the recording tee forwards every execution, in order, and the
// analyzer takes that many before it closes the scope's windows. An
// execution dropped because the queue was full is not counted, and not
// waited for.
func (p *pipeline) flush(ctx context.Context, f analyzer.Filter) (analyzer.FlushResult, error) {
	return p.an.FlushWhere(ctx, p.srv.Stats().Events, f)
}

// Addr is the address the proxy listens on.
func (p *pipeline) Addr() net.Addr { return p.ln.Addr() }

// Start serves: the proxy, the HTTP server, the tee and the analyzer, until
// Shutdown.
func (p *pipeline) Start(ctx context.Context) {
	p.started = true
	p.stopInspector = startInspector(ctx, p.ins)
	// The analyzer flushes its open windows when events is closed.
	analyzed := p.rec.tee(p.events, &p.consumers) // events itself without --record
	p.consumers.Go(func() { p.an.Run(context.WithoutCancel(ctx), analyzed) })

	p.serveErr = make(chan error, 1)
	go func() { p.serveErr <- p.srv.Serve(p.ln) }()
	p.proxyServing = true
	p.httpErr = make(chan error, 1)
	if p.hs != nil {
		go func() { p.httpErr <- p.hs.serve() }()
		p.httpServing = true
	}
	// Scripts and tests wait for this line (msg=listening component=proxy).
	p.listenLog.Info("listening", "addr", p.ln.Addr().String(), "upstream", p.cfg.Upstream,
		"upstream_sslmode", sslModeOrDisable(p.cfg.UpstreamSSLMode), "tls", p.cfg.TLS != nil)
}

// Run serves until ctx is cancelled or serving fails, then shuts down and
// closes the sinks. It returns the first failure: serving, then the sinks
// (a *findingsError with --fail-on).
func (p *pipeline) Run(ctx context.Context) error {
	p.Start(ctx)
	failure := p.Shutdown(ctx, p.wait(ctx))
	if err := p.Close(); err != nil && failure == nil {
		failure = err
	}
	return failure
}

// wait returns nil when ctx is cancelled, or the failure of the proxy or
// the HTTP server.
func (p *pipeline) wait(ctx context.Context) error {
	var failure error
	select {
	case <-ctx.Done():
		p.logger.Info("shutting down", "timeout", p.shutdownTimeout)
	case err := <-p.serveErr:
		p.proxyServing = false
		failure = fmt.Errorf("proxy: %w", err)
	case err := <-p.httpErr:
		p.httpServing = false
		failure = fmt.Errorf("http: %w", err)
	}
	if failure != nil {
		p.logger.Info("shutting down after a failure", "timeout", p.shutdownTimeout)
	}
	return failure
}

// Shutdown stops the HTTP server, stops accepting, lets open connections
// finish until the shutdown timeout and then closes them, and closes the
// events queue: the tee closes the recording and the analyzer flushes its
// open windows into the sinks. It returns failure, or else the proxy's
// serving error.
func (p *pipeline) Shutdown(ctx context.Context, failure error) error {
	if !p.started {
		p.release()
		return failure
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.shutdownTimeout)
	defer cancel()
	if p.hs != nil {
		if err := p.hs.shutdown(sctx); err != nil {
			p.logger.Warn("HTTP server shutdown", "err", err)
		}
		if p.httpServing {
			<-p.httpErr // http.ErrServerClosed
		}
	}
	if err := p.srv.Shutdown(sctx); err != nil {
		p.logger.Warn("shutdown timeout reached; closed the remaining connections", "timeout", p.shutdownTimeout)
	}
	if p.proxyServing {
		if err := <-p.serveErr; err != nil && !errors.Is(err, proxy.ErrServerClosed) && failure == nil {
			failure = fmt.Errorf("proxy: %w", err)
		}
	}
	// Shutdown has waited for every connection handler: nothing sends on
	// events any more.
	close(p.events)
	p.consumers.Wait()
	p.stopInspector()
	st := p.srv.Stats()
	p.logger.Info("stopped", "connections", st.ConnsAccepted, "events", st.Events, "events_dropped", st.EventsDropped)
	return failure
}

// Close closes the sinks, after Shutdown: the findings file, and with
// --fail-on the summary and the gate (see analysisOptions.finish).
func (p *pipeline) Close() error {
	return p.analysis.finish(p.inv, p.outs)
}

func sslModeOrDisable(mode string) string {
	if mode == "" {
		return proxy.SSLDisable
	}
	return mode
}
