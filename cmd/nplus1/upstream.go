package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nplus1/nplus1/proxy"
)

// defaultPGPort is PostgreSQL's default port (DEF_PGPORT).
const defaultPGPort = "5432"

// upstream is where the proxy connects, from --upstream.
type upstream struct {
	host string // without brackets for IPv6
	addr string // host:port
	// sslmode is the proxy's mode for the connection string's sslmode (as
	// libpq reads it, default prefer); "" for the host:port form.
	sslmode string
	// tls is the TLS configuration pgx built from the connection string
	// (sslrootcert, client certificates); nil for the host:port form and
	// for sslmode disable.
	tls *tls.Config
}

// parseUpstream reads "host:port", "host" (port 5432), or a libpq connection
// string: a postgres:// or postgresql:// URL or a keyword/value list
// ("host=db port=5432 sslmode=require"), parsed by pgx as libpq parses it
// (PG* environment variables fill what it leaves out; sslmode defaults to
// prefer). Only host, port and the TLS settings are used: the user, password
// and database are each client's to give, so they are ignored, and no error
// repeats the string, since it may hold a password.
func parseUpstream(s string) (upstream, error) {
	if isConnString(s) {
		return parseConnString(s)
	}
	if strings.Contains(s, "://") {
		return upstream{}, errors.New("want host:port, a postgres:// URL or a keyword/value list (host=db port=5432)")
	}
	if strings.ContainsAny(s, "@ \t") {
		// "user:password@db:5432" without a scheme: never echo it.
		return upstream{}, errors.New("not a host name: want host:port, or a postgres:// URL (which may not be shortened to user:password@host)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host name or IP address: the default port.
		if strings.Contains(s, ":") && net.ParseIP(s) == nil {
			return upstream{}, errors.New("want host:port, a postgres:// URL or a keyword/value list (host=db port=5432)")
		}
		host, port = s, defaultPGPort
	}
	return newUpstream(host, port)
}

// isConnString reports whether s is a URL or a keyword/value connection
// string rather than host[:port].
func isConnString(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.Contains(s, "=")
}

func parseConnString(s string) (upstream, error) {
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		return upstream{}, connStringError(err)
	}
	for _, fb := range cfg.Fallbacks {
		if fb.Host != cfg.Host || fb.Port != cfg.Port {
			return upstream{}, errors.New("connection strings with several hosts are not supported: give one host")
		}
	}
	up, err := newUpstream(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if err != nil {
		return upstream{}, err
	}
	up.sslmode, up.tls = sslModeOf(cfg)
	return up, nil
}

// connStringError is pgx's parse error without the connection string, which
// pgx quotes with passwords redacted on a best-effort basis only.
func connStringError(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return errors.New("cannot parse the connection string")
	}
	bare := *pe
	bare.ConnString = ""
	msg := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	return fmt.Errorf("cannot parse the connection string: %s", msg)
}

// sslModeOf maps the TLS configuration pgx built back to the proxy's modes:
// a TLS attempt with a plain-text fallback is prefer (allow, a plain attempt
// with a TLS fallback, too), a TLS configuration that skips verification
// without a verifier is require, and one that verifies (verify-ca,
// verify-full) is verify-full with pgx's configuration kept.
func sslModeOf(cfg *pgconn.Config) (string, *tls.Config) {
	var fallbackTLS *tls.Config
	plainFallback := false
	for _, fb := range cfg.Fallbacks {
		if fb.TLSConfig == nil {
			plainFallback = true
		} else if fallbackTLS == nil {
			fallbackTLS = fb.TLSConfig
		}
	}
	switch t := cfg.TLSConfig; {
	case t == nil && fallbackTLS == nil:
		return proxy.SSLDisable, nil
	case t == nil:
		return proxy.SSLPrefer, fallbackTLS
	case plainFallback:
		return proxy.SSLPrefer, t
	case t.InsecureSkipVerify && t.VerifyPeerCertificate == nil:
		return proxy.SSLRequire, t
	default:
		return proxy.SSLVerifyFull, t
	}
}

func newUpstream(host, port string) (upstream, error) {
	if host == "" {
		return upstream{}, errors.New("no host: the proxy connects over TCP, give a host name or address")
	}
	if strings.HasPrefix(host, "/") {
		return upstream{}, errors.New("Unix-domain sockets are not supported: give a host name or address")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return upstream{}, errors.New("invalid port: want a number from 1 to 65535")
	}
	return upstream{host: host, addr: net.JoinHostPort(host, port)}, nil
}

// startupCheckTimeout bounds the one dial the proxy makes at startup to see
// whether its upstream answers (--connect-timeout, when shorter).
const startupCheckTimeout = 3 * time.Second

// upstreamDownMsg is the warning logged when the upstream does not answer at
// startup.
const upstreamDownMsg = "the upstream does not answer; listening anyway, each client connection will dial it"

// checkUpstreamAtStartup dials the upstream once in the background, with
// check (proxy.Server.CheckUpstream: TCP, and TLS per the SSL mode) bounded
// by timeout, and logs a warning when it fails: the upstream as host:port
// and the kind of failure (connection refused, host name not found, timed
// out, ...), never the --upstream string, which may hold a password. It is
// not a refusal: the proxy serves anyway, and the database may come up
// later. The returned stop ends the check (without a warning) and waits for
// it.
func checkUpstreamAtStartup(ctx context.Context, check func(context.Context) error, addr string, timeout time.Duration, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := check(ctx)
		switch {
		case err == nil:
			logger.Debug("the upstream answers", "component", "proxy", "upstream", addr)
		case ctx.Err() == context.Canceled:
			// Stopped: the proxy is shutting down.
		default:
			// err is the proxy's upstream error: "cannot connect to
			// upstream HOST:PORT: REASON", without the resolver's or the
			// local address.
			logger.Warn(upstreamDownMsg, "component", "proxy", "upstream", addr, "err", err.Error())
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
