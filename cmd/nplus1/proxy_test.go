package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// writeCert writes a self-signed certificate for localhost and its key as PEM
// files; the certificate doubles as a CA file.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile
}

// proxyConfig parses args and env as the proxy command does and builds its
// configuration.
// Variables named PG* go to the process environment, where pgx's
// connection-string parser reads them as libpq does: the caller must be a
// test that is not parallel (t.Setenv).
func proxyConfig(t *testing.T, args []string, env map[string]string) (proxy.Config, *proxyOptions, error) {
	for k, v := range env {
		if strings.HasPrefix(k, "PG") {
			t.Setenv(k, v)
		}
	}
	fs := newFlagSet("proxy")
	o := newProxyOptions(fs)
	if _, err := fs.parse(args, mapEnv(env)); err != nil {
		return proxy.Config{}, o, err
	}
	cfg, err := o.config()
	return cfg, o, err
}

func TestProxyConfig(t *testing.T) {
	certFile, keyFile := writeCert(t)
	cfgFile := writeFile(t, "nplus1.yaml", "listen: 127.0.0.1:7000\nmax-connections: 100\nupstream: cfg-host:5433\nshutdown-timeout: 5s\n")
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, cfg proxy.Config, o *proxyOptions)
	}{
		{
			name: "defaults", args: []string{"--upstream", "db:5432"},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				if cfg.Upstream != "db:5432" || cfg.UpstreamSSLMode != "" || cfg.UpstreamTLS != nil || cfg.TLS != nil {
					t.Errorf("got upstream %q mode %q upstream TLS %v TLS %v, want db:5432 and no TLS", cfg.Upstream, cfg.UpstreamSSLMode, cfg.UpstreamTLS, cfg.TLS)
				}
				if cfg.MaxConnections != 1000 || cfg.ConnectTimeout != 10*time.Second || cfg.MaxMessageBytes != pgwire.DefaultMaxMessageBytes {
					t.Errorf("got max-connections %d connect-timeout %v max-message-bytes %d, want the defaults", cfg.MaxConnections, cfg.ConnectTimeout, cfg.MaxMessageBytes)
				}
				if *o.listen != "127.0.0.1:6432" || *o.http != "" || *o.queueSize != 10000 || *o.shutdownTimeout != 30*time.Second {
					t.Errorf("got listen %q http %q queue-size %d shutdown-timeout %v, want the defaults", *o.listen, *o.http, *o.queueSize, *o.shutdownTimeout)
				}
			},
		},
		{
			name: "bare host takes the default port", args: []string{"--upstream", "db.internal"},
			check: wantUpstream("db.internal:5432", "", ""),
		},
		{
			name: "bare IPv6 address", args: []string{"--upstream", "::1"},
			check: wantUpstream("[::1]:5432", "", ""),
		},
		{
			name: "URL", args: []string{"--upstream", "postgres://app:pw@db.example:6543/shop?application_name=x&sslmode=disable"},
			check: wantUpstream("db.example:6543", "disable", ""),
		},
		{
			name: "URL without port, with sslmode", args: []string{"--upstream", "postgresql://db.example/shop?sslmode=require"},
			check: wantUpstream("db.example:5432", "require", "db.example"),
		},
		{
			name: "URL host and port parameters", args: []string{"--upstream", "postgres:///shop?host=db.example&port=6000"},
			check: wantUpstream("db.example:6000", "prefer", "db.example"),
		},
		{
			name: "URL with IPv6 host", args: []string{"--upstream", "postgres://[::1]:5433/x?sslmode=prefer"},
			check: wantUpstream("[::1]:5433", "prefer", "::1"),
		},
		{
			name: "keyword/value, libpq's default sslmode", args: []string{"--upstream", "host=db.example port=6001 user=bob password=hunter2 dbname=shop"},
			check: wantUpstream("db.example:6001", "prefer", "db.example"),
		},
		{
			name: "keyword/value sslmode", args: []string{"--upstream", "host=h sslmode=require"},
			check: wantUpstream("h:5432", "require", "h"),
		},
		{
			name: "PGSSLMODE fills a connection string's gap, as in libpq", args: []string{"--upstream", "host=h"},
			env:   map[string]string{"PGSSLMODE": "disable"},
			check: wantUpstream("h:5432", "disable", ""),
		},
		{
			name: "URL sslmode verify-ca verifies the chain", args: []string{"--upstream", "postgres://h/x?sslmode=verify-ca&sslrootcert=" + certFile},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				if cfg.UpstreamSSLMode != proxy.SSLVerifyFull || cfg.UpstreamTLS == nil || cfg.UpstreamTLS.VerifyPeerCertificate == nil {
					t.Errorf("got sslmode %q TLS %+v, want verify-full with pgx's chain verifier", cfg.UpstreamSSLMode, cfg.UpstreamTLS)
				}
			},
		},
		{
			name: "flag overrides the URL's sslmode", args: []string{"--upstream", "postgres://h/x?sslmode=require", "--upstream-sslmode", "disable"},
			check: wantUpstream("h:5432", "disable", ""),
		},
		{
			name: "env sslmode overrides the URL's", args: []string{"--upstream", "postgres://h/x?sslmode=disable"},
			env:   map[string]string{"NPLUS1_UPSTREAM_SSLMODE": "verify-full"},
			check: wantUpstream("h:5432", "verify-full", "h"),
		},
		{
			name: "URL sslrootcert", args: []string{"--upstream", "postgres://localhost/x?sslmode=verify-full&sslrootcert=" + certFile},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				wantUpstream("localhost:5432", "verify-full", "localhost")(t, cfg, o)
				if cfg.UpstreamTLS.RootCAs == nil {
					t.Error("got no RootCAs, want the URL's sslrootcert")
				}
			},
		},
		{
			name: "sslrootcert flag", args: []string{"--upstream", "localhost", "--upstream-sslmode", "verify-full", "--upstream-sslrootcert", certFile},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				if cfg.UpstreamTLS == nil || cfg.UpstreamTLS.RootCAs == nil || cfg.UpstreamTLS.ServerName != "localhost" {
					t.Errorf("got upstream TLS %+v, want RootCAs and ServerName localhost", cfg.UpstreamTLS)
				}
			},
		},
		{
			name: "client TLS", args: []string{"--upstream", "h", "--tls-cert", certFile, "--tls-key", keyFile},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				if cfg.TLS == nil {
					t.Fatal("got no TLS config")
				}
				if len(cfg.TLS.Certificates) != 1 || cfg.TLS.MinVersion != tls.VersionTLS12 || !slices.Equal(cfg.TLS.NextProtos, []string{"postgresql"}) {
					t.Errorf("got %d certificates, MinVersion %x, NextProtos %q; want 1, TLS 1.2, [postgresql]",
						len(cfg.TLS.Certificates), cfg.TLS.MinVersion, cfg.TLS.NextProtos)
				}
			},
		},
		{
			name: "env", args: nil,
			env: map[string]string{"NPLUS1_UPSTREAM": "postgres://e:1/x", "NPLUS1_MAX_CONNECTIONS": "0", "NPLUS1_CONNECT_TIMEOUT": "3s", "NPLUS1_HTTP": ":9632"},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				if cfg.Upstream != "e:1" || cfg.MaxConnections != 0 || cfg.ConnectTimeout != 3*time.Second || *o.http != ":9632" {
					t.Errorf("got upstream %q max-connections %d connect-timeout %v http %q, want e:1 0 3s :9632", cfg.Upstream, cfg.MaxConnections, cfg.ConnectTimeout, *o.http)
				}
			},
		},
		{
			name: "config file, env and flags", args: []string{"--config", cfgFile, "--max-connections", "5"},
			env: map[string]string{"NPLUS1_UPSTREAM": "env-host:1", "NPLUS1_MAX_CONNECTIONS": "50"},
			check: func(t *testing.T, cfg proxy.Config, o *proxyOptions) {
				if cfg.Upstream != "env-host:1" || cfg.MaxConnections != 5 || *o.listen != "127.0.0.1:7000" || *o.shutdownTimeout != 5*time.Second {
					t.Errorf("got upstream %q max-connections %d listen %q shutdown-timeout %v, want env-host:1 5 127.0.0.1:7000 5s",
						cfg.Upstream, cfg.MaxConnections, *o.listen, *o.shutdownTimeout)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, o, err := proxyConfig(t, tt.args, tt.env)
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			tt.check(t, cfg, o)
			if _, err := proxy.New(cfg); err != nil {
				t.Errorf("proxy.New: %v", err)
			}
		})
	}
}

// wantUpstream checks the upstream address and SSL mode, and that upstream
// TLS is configured with serverName exactly when it is not "".
func wantUpstream(addr, mode, serverName string) func(*testing.T, proxy.Config, *proxyOptions) {
	return func(t *testing.T, cfg proxy.Config, _ *proxyOptions) {
		t.Helper()
		if cfg.Upstream != addr || cfg.UpstreamSSLMode != mode {
			t.Errorf("got upstream %q sslmode %q, want %q %q", cfg.Upstream, cfg.UpstreamSSLMode, addr, mode)
		}
		switch {
		case serverName == "" && cfg.UpstreamTLS != nil:
			t.Errorf("got upstream TLS config, want none")
		case serverName != "" && cfg.UpstreamTLS == nil:
			t.Errorf("got no upstream TLS config, want ServerName %q", serverName)
		case serverName != "" && (cfg.UpstreamTLS.ServerName != serverName || cfg.UpstreamTLS.MinVersion != tls.VersionTLS12):
			t.Errorf("got upstream ServerName %q MinVersion %x, want %q TLS 1.2", cfg.UpstreamTLS.ServerName, cfg.UpstreamTLS.MinVersion, serverName)
		}
	}
}

func TestProxyConfigErrors(t *testing.T) {
	certFile, keyFile := writeCert(t)
	notPEM := writeFile(t, "not.pem", "hello")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string // substring of the error
		notWant string // must not appear (secrets)
	}{
		{name: "no upstream", want: "--upstream is required (or NPLUS1_UPSTREAM, or upstream: in the config file)"},
		{name: "upstream scheme", args: []string{"--upstream", "mysql://h:1"}, want: "--upstream: want host:port, a postgres:// URL or a keyword/value list"},
		{name: "upstream user:password@host without scheme", args: []string{"--upstream", "bob:hunter2@db:5432"}, want: "--upstream: not a host name", notWant: "hunter2"},
		{name: "upstream keyword/value bad port, password kept secret", args: []string{"--upstream", "host=db port=x password=hunter2"}, want: "--upstream: cannot parse the connection string: invalid port", notWant: "hunter2"},
		{name: "upstream keyword/value syntax, password kept secret", args: []string{"--upstream", "host=db password='hunter2"}, want: "--upstream: cannot parse the connection string", notWant: "hunter2"},
		{name: "upstream bad port", args: []string{"--upstream", "h:http"}, want: `--upstream: invalid port`},
		{name: "upstream port out of range", args: []string{"--upstream", "h:70000"}, want: `invalid port`},
		{name: "upstream URL bad port, password kept secret", args: []string{"--upstream", "postgres://u:hunter2@h:x/db"}, want: "--upstream: cannot parse the connection string", notWant: "hunter2"},
		{name: "upstream URL without host", args: []string{"--upstream", "postgres:///db"}, env: map[string]string{"PGHOST": ""}, want: "--upstream: Unix-domain sockets are not supported"},
		{name: "upstream URL socket dir", args: []string{"--upstream", "postgres:///db?host=/var/run/postgresql"}, want: "Unix-domain sockets"},
		{name: "upstream URL several hosts", args: []string{"--upstream", "postgres://a:1,b:2/db"}, want: "several hosts"},
		{name: "upstream URL bad sslmode", args: []string{"--upstream", "postgres://h/db?sslmode=always"}, want: `--upstream: cannot parse the connection string`},
		{name: "upstream from env", env: map[string]string{"NPLUS1_UPSTREAM": "h:0"}, want: "--upstream (from NPLUS1_UPSTREAM): invalid port"},
		{name: "bad sslmode flag", args: []string{"--upstream", "h", "--upstream-sslmode", "verify-ca"}, want: `invalid value "verify-ca" for flag --upstream-sslmode: want one of disable, prefer, require, verify-full`},
		{name: "missing sslrootcert", args: []string{"--upstream", "h", "--upstream-sslmode", "verify-full", "--upstream-sslrootcert", "/nonexistent/ca.pem"}, want: "--upstream-sslrootcert: open /nonexistent/ca.pem"},
		{name: "sslrootcert not PEM", args: []string{"--upstream", "h", "--upstream-sslmode", "require", "--upstream-sslrootcert", notPEM}, want: "no PEM certificates found"},
		{name: "URL sslrootcert missing", args: []string{"--upstream", "postgres://h/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"}, want: "--upstream: cannot parse the connection string: failed to configure TLS (unable to read CA file"},
		{name: "tls-cert without key", args: []string{"--upstream", "h", "--tls-cert", certFile}, want: "--tls-cert needs --tls-key"},
		{name: "tls-key without cert", args: []string{"--upstream", "h", "--tls-key", keyFile}, want: "--tls-key needs --tls-cert"},
		{name: "tls cert and key mismatch", args: []string{"--upstream", "h", "--tls-cert", keyFile, "--tls-key", certFile}, want: "--tls-cert: load certificate and key"},
		{name: "listen not host:port", args: []string{"--upstream", "h", "--listen", "6432"}, want: "--listen: address 6432: missing port"},
		{name: "http not host:port", args: []string{"--upstream", "h", "--http", "localhost"}, want: "--http: address localhost: missing port"},
		{name: "negative max-connections from env", args: []string{"--upstream", "h"}, env: map[string]string{"NPLUS1_MAX_CONNECTIONS": "-1"}, want: "--max-connections (from NPLUS1_MAX_CONNECTIONS): must be 0 (unlimited) or more, got -1"},
		{name: "bad max-connections", args: []string{"--upstream", "h", "--max-connections", "lots"}, want: `invalid value "lots" for flag --max-connections`},
		{name: "negative shutdown-timeout", args: []string{"--upstream", "h", "--shutdown-timeout", "-1s"}, want: "--shutdown-timeout: must not be negative"},
		{name: "bad shutdown-timeout", args: []string{"--upstream", "h", "--shutdown-timeout", "30"}, want: `invalid value "30" for flag --shutdown-timeout`},
		{name: "zero connect-timeout", args: []string{"--upstream", "h", "--connect-timeout", "0s"}, want: "--connect-timeout: must be positive"},
		{name: "zero max-message-bytes", args: []string{"--upstream", "h", "--max-message-bytes", "0"}, want: "--max-message-bytes: must be positive"},
		{name: "zero queue-size", args: []string{"--upstream", "h", "--queue-size", "0"}, want: "--queue-size: must be positive"},
		{name: "bad log-level", args: []string{"--upstream", "h", "--log-level", "verbose"}, want: `invalid value "verbose" for flag --log-level`},
		{name: "bad log-format from env", args: []string{"--upstream", "h"}, env: map[string]string{"NPLUS1_LOG_FORMAT": "xml"}, want: `invalid value "xml" for NPLUS1_LOG_FORMAT (--log-format): want one of text, json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := proxyConfig(t, tt.args, tt.env)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("got error %v (%T), want a *usageError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("got error %q, which contains %q", err, tt.notWant)
			}
			if got := exitCode(err); got != exitUsage {
				t.Errorf("got exit code %d, want %d", got, exitUsage)
			}
		})
	}
}

func TestParseUpstreamKeepsCredentialsOut(t *testing.T) {
	for _, s := range []string{
		"postgres://app:hunter2@db:5432/shop?sslmode=require&password=x",
		"postgres://app:sec:hunter2@db:5432/shop?sslmode=require",
		"host=db port=5432 user=app password=hunter2 sslmode=require",
	} {
		up, err := parseUpstream(s)
		if err != nil {
			t.Fatal(err)
		}
		if up.addr != "db:5432" || up.host != "db" || up.sslmode != "require" {
			t.Errorf("%s: got %+v, want db:5432 require", s, up)
		}
		if strings.Contains(fmt.Sprintf("%+v", up), "hunter2") {
			t.Errorf("%s: the password is kept: %+v", s, up)
		}
	}
}

// TestExitCodes checks the documented mapping.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{&findingsError{Count: 3, FailOn: "warning"}, 1},
		{usageErrorf("bad"), 2},
		{errors.Join(errors.New("wrapped"), usageErrorf("bad")), 2},
		{errors.New("listen tcp: address already in use"), 3},
		{context.DeadlineExceeded, 3},
		{&net.OpError{Op: "listen", Err: errors.New("boom")}, 3},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
