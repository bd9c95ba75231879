package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

var proxyCmd = command{
	name:    "proxy",
	summary: "relay PostgreSQL connections and observe every statement",
	about: `
Listen for PostgreSQL clients on --listen and relay each connection, byte for
byte, to --upstream. Point the application's connection string at the proxy;
user, password and database are the client's and pass through unchanged.

Logs go to stderr; "listening" (with addr) is logged once clients can connect.
SIGINT or SIGTERM stops accepting, lets open connections finish until
--shutdown-timeout, then closes them; a second signal exits at once.`,
	setup: proxyFlags,
}

// proxyOptions are the proxy command's flag values.
type proxyOptions struct {
	fs *flagSet // for errors that name the flag and its source

	listen              *string
	upstream            *string
	upstreamSSLMode     *string
	upstreamSSLRootCert *string
	tlsCert, tlsKey     *string
	http                *string
	maxConnections      *int
	shutdownTimeout     *time.Duration
	connectTimeout      *time.Duration
	maxMessageBytes     *int
	queueSize           *int
	maxProcs            *int
	relay               *string

	analysis *analysisOptions
	metrics  *metricsOptions
	record   *recordOptions
}

// proxyFlags is the proxy command's setup.
func proxyFlags(fs *flagSet) runFunc {
	o := newProxyOptions(fs)
	o.analysis = newAnalysisOptions(fs)
	o.metrics = newMetricsOptions(fs)
	o.record = newRecordOptions(fs)
	return o.run
}

// newProxyOptions defines the proxy command's flags on fs.
func newProxyOptions(fs *flagSet) *proxyOptions {
	return &proxyOptions{
		fs:     fs,
		listen: fs.String("listen", "127.0.0.1:6432", "listen on `ADDR` (host:port) for PostgreSQL clients"),
		upstream: fs.String("upstream", "", "the PostgreSQL server (required): host:port or a postgres:// `URL`, from which\n"+
			"host, port (default 5432) and the sslmode and sslrootcert parameters are\n"+
			"taken; a user, password or database in the URL is ignored"),
		upstreamSSLMode: fs.Choice("upstream-sslmode", "", []string{proxy.SSLDisable, proxy.SSLPrefer, proxy.SSLRequire, proxy.SSLVerifyFull},
			"TLS to the upstream; overrides the URL's sslmode (default: the URL's, else disable)"),
		upstreamSSLRootCert: fs.String("upstream-sslrootcert", "", "PEM `FILE` of the CAs that verify the upstream's certificate with\n"+
			"verify-full (default: the URL's sslrootcert, else the system's CAs)"),
		tlsCert: fs.String("tls-cert", "", "PEM certificate `FILE` for client connections (with --tls-key); without it\n"+
			"clients that ask for TLS are told no"),
		tlsKey:          fs.String("tls-key", "", "PEM private key `FILE` for --tls-cert"),
		http:            fs.String("http", "", "serve /healthz, /readyz, /metrics and the findings API over HTTP on `ADDR`\n(host:port); empty: no HTTP"),
		maxConnections:  fs.Int("max-connections", 1000, "most client connections open at once; 0: unlimited"),
		shutdownTimeout: fs.Duration("shutdown-timeout", 30*time.Second, "how long (e.g. 30s, 1m) a shutdown waits for open connections before closing them"),
		connectTimeout:  fs.Duration("connect-timeout", 10*time.Second, "bound on dialing the upstream and on each TLS handshake"),
		maxMessageBytes: fs.Int("max-message-bytes", pgwire.DefaultMaxMessageBytes, "largest protocol message accepted from either side; larger ends\n"+
			"the connection with SQLSTATE 08P01"),
		queueSize: fs.Int("queue-size", 10000, "executions queued for analysis; when full, more are dropped (and\n"+
			"counted), never waited for"),
		maxProcs: fs.Int("max-procs", 2, "CPUs that run Go code at once (GOMAXPROCS); 0: all. The relay loop keeps\n"+
			"one of them waiting on its sockets (one loop per two); below 2 every session\n"+
			"runs on goroutines. The GOMAXPROCS environment variable, when set, wins"),
		relay: fs.String("relay", proxy.RelayAuto, "how established sessions are relayed: auto (an epoll event loop on\n"+
			"Linux for plaintext sessions, goroutines for TLS and elsewhere) or goroutines"),
	}
}

// config checks the options and builds the proxy configuration. Every error
// is a *usageError.
func (o *proxyOptions) config() (proxy.Config, error) {
	var cfg proxy.Config
	fs := o.fs
	if err := checkAddr(*o.listen); err != nil {
		return cfg, fs.errorf("listen", "%v", err)
	}
	if *o.http != "" {
		if err := checkAddr(*o.http); err != nil {
			return cfg, fs.errorf("http", "%v", err)
		}
	}
	if *o.upstream == "" {
		return cfg, usageErrorf("--upstream is required (or %s, or upstream: in the config file)", envName("upstream"))
	}
	up, err := parseUpstream(*o.upstream)
	if err != nil {
		return cfg, fs.errorf("upstream", "%v", err)
	}
	cfg.Upstream = up.addr
	cfg.UpstreamSSLMode = up.sslmode
	if *o.upstreamSSLMode != "" {
		cfg.UpstreamSSLMode = *o.upstreamSSLMode
	}
	rootCert := up.sslrootcert
	if *o.upstreamSSLRootCert != "" {
		rootCert = *o.upstreamSSLRootCert
	}
	if cfg.UpstreamSSLMode != "" && cfg.UpstreamSSLMode != proxy.SSLDisable {
		cfg.UpstreamTLS = &tls.Config{ServerName: up.host, MinVersion: tls.VersionTLS12}
		if rootCert != "" {
			pool, err := loadCAs(rootCert)
			if err != nil {
				if *o.upstreamSSLRootCert != "" {
					return cfg, fs.errorf("upstream-sslrootcert", "%v", err)
				}
				return cfg, fs.errorf("upstream", "sslrootcert: %v", err)
			}
			cfg.UpstreamTLS.RootCAs = pool
		}
	}

	switch {
	case *o.tlsCert != "" && *o.tlsKey == "":
		return cfg, usageErrorf("--tls-cert needs --tls-key: give both or neither")
	case *o.tlsCert == "" && *o.tlsKey != "":
		return cfg, usageErrorf("--tls-key needs --tls-cert: give both or neither")
	case *o.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(*o.tlsCert, *o.tlsKey)
		if err != nil {
			return cfg, fs.errorf("tls-cert", "load certificate and key: %v", err)
		}
		cfg.TLS = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"postgresql"}, // ALPN for direct TLS (PostgreSQL 17+ clients)
		}
	}

	if *o.maxConnections < 0 {
		return cfg, fs.errorf("max-connections", "must be 0 (unlimited) or more, got %d", *o.maxConnections)
	}
	cfg.MaxConnections = *o.maxConnections
	if *o.shutdownTimeout < 0 {
		return cfg, fs.errorf("shutdown-timeout", "must not be negative, got %v", *o.shutdownTimeout)
	}
	if *o.connectTimeout <= 0 {
		return cfg, fs.errorf("connect-timeout", "must be positive, got %v", *o.connectTimeout)
	}
	cfg.ConnectTimeout = *o.connectTimeout
	if *o.maxMessageBytes <= 0 {
		return cfg, fs.errorf("max-message-bytes", "must be positive, got %d", *o.maxMessageBytes)
	}
	cfg.MaxMessageBytes = *o.maxMessageBytes
	if *o.queueSize <= 0 {
		return cfg, fs.errorf("queue-size", "must be positive, got %d", *o.queueSize)
	}
	switch *o.relay {
	case proxy.RelayAuto, proxy.RelayGoroutines:
		cfg.Relay = *o.relay
	default:
		return cfg, fs.errorf("relay", "want %s or %s, got %q", proxy.RelayAuto, proxy.RelayGoroutines, *o.relay)
	}
	return cfg, nil
}

// checkAddr reports whether addr is host:port, for an early usage error.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return errors.New("missing port")
	}
	return nil
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New(file + ": no PEM certificates found")
	}
	return pool, nil
}

// run wires the proxy: listener, server, events consumer, HTTP server; it
// returns when ctx is cancelled and everything has stopped, or when serving
// fails.
func (o *proxyOptions) run(ctx context.Context, inv *invocation) error {
	if *o.maxProcs < 0 {
		return o.fs.errorf("max-procs", "must be 0 (all CPUs) or more")
	}
	if inv.getenv("GOMAXPROCS") == "" && *o.maxProcs > 0 {
		// Fewer Ps mean fewer idle threads woken to look for work. Two is
		// the fewest the relay loop works with: it keeps one P in
		// epoll_wait. Restored when run returns, for tests that call run
		// in-process.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(*o.maxProcs))
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	dcfg, err := o.analysis.detectorConfig()
	if err != nil {
		return err
	}
	outs, err := o.analysis.openOutputs(inv)
	if err != nil {
		return err
	}
	pm, err := o.metrics.start(*o.http != "")
	if err != nil {
		return err
	}
	acfg := analyzer.Config{
		Detector:     dcfg,
		Fingerprints: fingerprint.New(fingerprint.Options{MaxTexts: *o.analysis.cacheSize}),
		Sinks:        outs.sinks,
		Logger:       inv.logger.With("component", "analyzer"),
	}
	pm.observe(&acfg)
	an := analyzer.New(acfg)
	logger := inv.logger.With("component", "main")
	events := make(chan *pgwire.Execution, *o.queueSize)
	cfg.Events = events
	rec, err := o.record.open(&cfg, inv.logger)
	if err != nil {
		return err
	}
	defer rec.abandon()
	cfg.Logger = inv.logger.With("component", "proxy")
	srv, err := proxy.New(cfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if err := pm.watch(srv, an, events); err != nil {
		return err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *o.listen)
	if err != nil {
		return err // "listen tcp 127.0.0.1:6432: bind: address already in use"
	}
	var hs *httpServer
	if *o.http != "" {
		hs, err = listenHTTP(ctx, *o.http, httpDeps{
			checkUpstream: srv.CheckUpstream,
			findings:      outs.store,
			analyzer:      an,
			metrics:       pm.handler(inv.logger.With("component", "http")),
			logger:        inv.logger.With("component", "http"),
		})
		if err != nil {
			ln.Close()
			return err
		}
	}

	var consumers sync.WaitGroup
	// The analyzer flushes its open windows when events is closed.
	analyzed := rec.tee(events, &consumers) // events itself without --record
	consumers.Go(func() { an.Run(context.WithoutCancel(ctx), analyzed) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	httpErr := make(chan error, 1)
	if hs != nil {
		go func() { httpErr <- hs.serve() }()
	}
	// Scripts and tests wait for this line (msg=listening component=proxy).
	cfg.Logger.Info("listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream,
		"upstream_sslmode", sslModeOrDisable(cfg.UpstreamSSLMode), "tls", cfg.TLS != nil)

	var failure error
	proxyServing, httpServing := true, hs != nil
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", *o.shutdownTimeout)
	case err := <-serveErr:
		proxyServing = false
		failure = fmt.Errorf("proxy: %w", err)
	case err := <-httpErr:
		httpServing = false
		failure = fmt.Errorf("http: %w", err)
	}
	if failure != nil {
		logger.Info("shutting down after a failure", "timeout", *o.shutdownTimeout)
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *o.shutdownTimeout)
	defer cancel()
	if hs != nil {
		if err := hs.shutdown(sctx); err != nil {
			logger.Warn("HTTP server shutdown", "err", err)
		}
		if httpServing {
			<-httpErr // http.ErrServerClosed
		}
	}
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown timeout reached; closed the remaining connections", "timeout", *o.shutdownTimeout)
	}
	if proxyServing {
		if err := <-serveErr; err != nil && !errors.Is(err, proxy.ErrServerClosed) && failure == nil {
			failure = fmt.Errorf("proxy: %w", err)
		}
	}
	// Shutdown has waited for every connection handler: nothing sends on
	// events any more.
	close(events)
	consumers.Wait()
	st := srv.Stats()
	logger.Info("stopped", "connections", st.ConnsAccepted, "events", st.Events, "events_dropped", st.EventsDropped)
	if err := o.analysis.finish(inv, outs); err != nil && failure == nil {
		failure = err
	}
	return failure
}

func sslModeOrDisable(mode string) string {
	if mode == "" {
		return proxy.SSLDisable
	}
	return mode
}
