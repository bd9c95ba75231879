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
	"time"

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
	httpToken           *string
	httpTokenFile       *string
	maxConnections      *int
	shutdownTimeout     *time.Duration
	connectTimeout      *time.Duration
	loginTimeout        *time.Duration
	maxLoginConnections *int
	maxMessageBytes     *int
	queueSize           *int
	maxProcs            *int
	relayLoops          *int
	pprof               *bool
	relay               *string

	analysis *analysisOptions
	metrics  *metricsOptions
	record   *recordOptions
	otlp     *otlpOptions
	inspect  *inspectOptions
}

// proxyFlags is the proxy command's setup.
func proxyFlags(fs *flagSet) runFunc {
	o := newProxyOptions(fs)
	o.analysis = newAnalysisOptions(fs)
	o.metrics = newMetricsOptions(fs)
	o.record = newRecordOptions(fs)
	o.otlp = newOTLPOptions(fs)
	o.inspect = newInspectOptions(fs)
	return o.run
}

// newProxyOptions defines the proxy command's flags on fs.
func newProxyOptions(fs *flagSet) *proxyOptions {
	return &proxyOptions{
		fs:     fs,
		listen: fs.String("listen", "127.0.0.1:6432", "listen on `ADDR` (host:port) for PostgreSQL clients"),
		upstream: fs.String("upstream", "", "the PostgreSQL server (required): host:port, or a libpq connection string (a\n"+
			"postgres:// `URL` or host=db port=5432 ...) read as libpq reads it, from which\n"+
			"host, port and TLS settings are taken; its user, password and database are\n"+
			"ignored and never printed"),
		upstreamSSLMode: fs.Choice("upstream-sslmode", "", []string{proxy.SSLDisable, proxy.SSLPrefer, proxy.SSLRequire, proxy.SSLVerifyFull},
			"TLS to the upstream; overrides the connection string's sslmode (default: the\n"+
				"connection string's, libpq's prefer if it has none; disable for host:port)"),
		upstreamSSLRootCert: fs.String("upstream-sslrootcert", "", "PEM `FILE` of the CAs that verify the upstream's certificate with\n"+
			"verify-full (default: the connection string's sslrootcert, else the system's CAs)"),
		tlsCert: fs.String("tls-cert", "", "PEM certificate `FILE` for client connections (with --tls-key); without it\n"+
			"clients that ask for TLS are told no"),
		tlsKey:          fs.String("tls-key", "", "PEM private key `FILE` for --tls-cert"),
		http:            fs.String("http", "", "serve /healthz, /readyz, /metrics and the findings API over HTTP on `ADDR`\n(host:port); empty: no HTTP. Beyond loopback, anyone who can connect may\nread and clear the findings: set --http-token"),
		httpToken:       fs.String("http-token", "", "require `TOKEN` as \"Authorization: Bearer TOKEN\" on every HTTP route but\n/healthz and /readyz; better set by NPLUS1_HTTP_TOKEN or --http-token-file,\nwhich other users' process lists do not show"),
		httpTokenFile:   fs.String("http-token-file", "", "read the --http-token from `FILE` (surrounding whitespace trimmed)"),
		maxConnections:  fs.Int("max-connections", 1000, "most client connections open at once; 0: unlimited"),
		shutdownTimeout: fs.Duration("shutdown-timeout", 30*time.Second, "how long (e.g. 30s, 1m) a shutdown waits for open connections before closing them"),
		connectTimeout:  fs.Duration("connect-timeout", 10*time.Second, "bound on dialing the upstream and on each TLS handshake"),
		loginTimeout: fs.Duration("login-timeout", proxy.DefaultLoginTimeout, "bound on a client's whole login (startup, TLS, authentication);\n"+
			"a client still logging in then gets SQLSTATE 57014 and is closed"),
		maxLoginConnections: fs.Int("max-login-connections", proxy.DefaultMaxLoginConnections, "most connections logging in at once; past it a new connection gets\n"+
			"SQLSTATE 53300 at once, so silent clients cannot hold every slot"),
		maxMessageBytes: fs.Int("max-message-bytes", pgwire.DefaultMaxMessageBytes, "largest protocol message accepted from either side; larger ends\n"+
			"the connection with SQLSTATE 08P01"),
		queueSize: fs.Int("queue-size", 10000, "executions queued for analysis; when full, more are dropped (and\n"+
			"counted), never waited for"),
		maxProcs: fs.Int("max-procs", 0, "CPUs that run Go code at once (GOMAXPROCS); 0: those the process may use\n"+
			"(its CPU affinity and cgroup CPU limit). A sidecar that should stay small:\n"+
			"2. The GOMAXPROCS environment variable, when set, wins"),
		pprof: fs.Bool("pprof", false, "also serve Go's profiler at /debug/pprof/ on --http (guarded as /metrics is),\n"+
			"to see what the proxy itself spends CPU on: go tool pprof http://ADDR/debug/pprof/profile"),
		relayLoops: fs.Int("relay-loops", 0, "event loops (threads) that relay sessions, started as sessions need them;\n"+
			"0: one per two of --max-procs (at least one)"),
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
	if err := o.upstreamConfig(&cfg); err != nil {
		return cfg, err
	}
	var err error
	if cfg.TLS, err = o.clientTLS(); err != nil {
		return cfg, err
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
	if *o.loginTimeout <= 0 {
		return cfg, fs.errorf("login-timeout", "must be positive (e.g. 30s, 1m), got %v", *o.loginTimeout)
	}
	cfg.LoginTimeout = *o.loginTimeout
	if *o.maxLoginConnections <= 0 {
		return cfg, fs.errorf("max-login-connections", "must be positive, got %d", *o.maxLoginConnections)
	}
	cfg.MaxLoginConnections = *o.maxLoginConnections
	o.analysis.evidenceConfig(&cfg)
	if *o.maxMessageBytes <= 0 {
		return cfg, fs.errorf("max-message-bytes", "must be positive, got %d", *o.maxMessageBytes)
	}
	cfg.MaxMessageBytes = *o.maxMessageBytes
	if *o.queueSize <= 0 {
		return cfg, fs.errorf("queue-size", "must be positive, got %d", *o.queueSize)
	}
	if *o.pprof && *o.http == "" {
		return cfg, fs.errorf("pprof", "needs --http: the profiler is served there")
	}
	if *o.relayLoops < 0 || *o.relayLoops > proxy.MaxRelayLoops {
		return cfg, fs.errorf("relay-loops", "must be 0 (one per two of --max-procs) to %d, got %d", proxy.MaxRelayLoops, *o.relayLoops)
	}
	cfg.RelayLoops = *o.relayLoops
	switch *o.relay {
	case proxy.RelayAuto, proxy.RelayGoroutines:
		cfg.Relay = *o.relay
	default:
		return cfg, fs.errorf("relay", "want %s or %s, got %q", proxy.RelayAuto, proxy.RelayGoroutines, *o.relay)
	}
	return cfg, nil
}

// upstreamConfig sets the upstream's address and TLS from --upstream and
// the flags that override its sslmode and sslrootcert. Every error is a
// *usageError, and none repeats --upstream, which may hold a password.
func (o *proxyOptions) upstreamConfig(cfg *proxy.Config) error {
	fs := o.fs
	if *o.upstream == "" {
		return usageErrorf("--upstream is required (or %s, or upstream: in the config file)", envName("upstream"))
	}
	up, err := parseUpstream(*o.upstream)
	if err != nil {
		return fs.errorf("upstream", "%v", err)
	}
	cfg.Upstream = up.addr
	cfg.UpstreamSSLMode = up.sslmode
	var tcfg *tls.Config
	if up.tls != nil {
		tcfg = up.tls.Clone()
	}
	if mode := *o.upstreamSSLMode; mode != "" {
		cfg.UpstreamSSLMode = mode
		if tcfg != nil {
			// The flag's mode replaces the connection string's, verifier included.
			tcfg.VerifyPeerCertificate = nil
			tcfg.InsecureSkipVerify = mode != proxy.SSLVerifyFull
		}
	}
	if cfg.UpstreamSSLMode == "" || cfg.UpstreamSSLMode == proxy.SSLDisable {
		cfg.UpstreamTLS = nil
		return nil
	}
	if tcfg == nil {
		tcfg = &tls.Config{}
	}
	if tcfg.ServerName == "" {
		tcfg.ServerName = up.host
	}
	tcfg.MinVersion = max(tcfg.MinVersion, tls.VersionTLS12)
	if *o.upstreamSSLRootCert != "" {
		pool, err := loadCAs(*o.upstreamSSLRootCert)
		if err != nil {
			return fs.errorf("upstream-sslrootcert", "%v", err)
		}
		tcfg.RootCAs = pool
		if tcfg.VerifyPeerCertificate != nil {
			// pgx's verify-ca verifier holds the string's CAs: verify
			// the chain with the flag's CAs instead.
			tcfg.VerifyPeerCertificate = nil
			tcfg.InsecureSkipVerify = false
		}
	}
	cfg.UpstreamTLS = tcfg
	return nil
}

// clientTLS loads --tls-cert and --tls-key for client connections; nil
// without them. Every error is a *usageError.
func (o *proxyOptions) clientTLS() (*tls.Config, error) {
	switch {
	case *o.tlsCert != "" && *o.tlsKey == "":
		return nil, usageErrorf("--tls-cert needs --tls-key: give both or neither")
	case *o.tlsCert == "" && *o.tlsKey != "":
		return nil, usageErrorf("--tls-key needs --tls-cert: give both or neither")
	case *o.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(*o.tlsCert, *o.tlsKey)
		if err != nil {
			return nil, o.fs.errorf("tls-cert", "load certificate and key: %v", err)
		}
		return &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"postgresql"}, // ALPN for direct TLS (PostgreSQL 17+ clients)
		}, nil
	}
	return nil, nil
}

// checkAddr reports whether addr is host:port, for an early usage error
// that says what a valid address looks like.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil && port == "" {
		err = errors.New("missing port")
	}
	if err != nil {
		return fmt.Errorf("%v; want host:port, such as 127.0.0.1:6432 or [::1]:6432 (port 0: any free port)", err)
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

// run wires the proxy (see pipeline): it returns when ctx is cancelled and
// everything has stopped, or when serving fails.
func (o *proxyOptions) run(ctx context.Context, inv *invocation) error {
	if *o.maxProcs < 0 {
		return o.fs.errorf("max-procs", "must be 0 (all CPUs) or more")
	}
	if inv.getenv("GOMAXPROCS") == "" && *o.maxProcs > 0 {
		// Fewer Ps mean fewer idle threads woken to look for work; two is
		// the fewest the relay loop works with by default. Restored when
		// run returns, for tests that call run in-process.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(*o.maxProcs))
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	token, err := httpToken(o.fs, *o.http, *o.httpToken, *o.httpTokenFile)
	if err != nil {
		return err
	}
	dcfg, err := o.analysis.detectorConfig()
	if err != nil {
		return err
	}
	ins, err := o.inspect.inspector(inv)
	if err != nil {
		return err
	}
	dcfg.Inspect = ins != nil
	outs, err := o.analysis.openOutputs(inv)
	if err != nil {
		return err
	}
	pm, err := o.metrics.start(*o.http != "")
	if err != nil {
		return err
	}
	otlp, err := o.otlp.start(ctx, inv)
	if err != nil {
		return err
	}
	defer otlp.stop(ctx) // after Run: the analyzer has flushed its last findings
	if err := otlp.watch(pm); err != nil {
		return err
	}
	p, err := newPipeline(ctx, inv, pipelineConfig{
		proxy:           cfg,
		listen:          *o.listen,
		queueSize:       *o.queueSize,
		shutdownTimeout: *o.shutdownTimeout,
		analyzer:        o.analysis.analyzerConfig(inv, dcfg, otlp.sinks(outs.sinks), pm),
		analysis:        o.analysis,
		outs:            outs,
		record:          o.record,
		metrics:         pm,
		http:            *o.http,
		httpToken:       token,
		pprof:           *o.pprof,
		inspector:       ins,
	})
	if err != nil {
		return err
	}
	stop := checkUpstreamAtStartup(ctx, p.srv.CheckUpstream, cfg.Upstream, min(*o.connectTimeout, startupCheckTimeout), inv.logger)
	defer stop()
	return p.Run(ctx)
}
