package proxy

// Integration tests of the startup phase: SSLRequest, GSSENCRequest, direct
// TLS, upstream TLS modes, the authentication relay for every method, SCRAM
// channel binding, and CancelRequest over TLS.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// itRequest is an 8-byte SSLRequest or GSSENCRequest.
func itRequest(code uint32) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, 8)
	binary.BigEndian.PutUint32(b[4:], code)
	return b
}

const (
	itSSLRequest    = 80877103
	itGSSENCRequest = 80877104
)

// itAnswer reads the one-byte answer to an SSLRequest or GSSENCRequest.
func itAnswer(t testing.TB, nc net.Conn) byte {
	t.Helper()
	var b [1]byte
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Read(b[:]); err != nil {
		t.Fatalf("read the answer to the request: %v", err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	return b[0]
}

// itUpstreamSSL reports whether the session's backend uses TLS.
func itUpstreamSSL(t testing.TB, ctx context.Context, c *pgx.Conn) bool {
	t.Helper()
	var ssl bool
	if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatalf("pg_stat_ssl: %v", err)
	}
	return ssl
}

// itClientTLS reports whether the pgx connection to the proxy is TLS.
func itClientTLS(c *pgx.Conn) (*tls.Conn, bool) {
	tc, ok := c.PgConn().Conn().(*tls.Conn)
	return tc, ok
}

// TestTLSSSLRequest answers SSLRequest with 'N' without a certificate and
// with 'S' and a TLS session with one.
func TestTLSSSLRequest(t *testing.T) {
	t.Parallel()
	plain := itStartProxy(t, Config{})
	tlsCfg, caFile, _ := itProxyTLS(t)
	secure := itStartProxy(t, Config{TLS: tlsCfg})

	t.Run("no TLS: N then plaintext startup", func(t *testing.T) {
		t.Parallel()
		r := itDialRaw(t, plain.Addr)
		if _, err := r.nc.Write(itRequest(itSSLRequest)); err != nil {
			t.Fatal(err)
		}
		if b := itAnswer(t, r.nc); b != 'N' {
			t.Fatalf("answer to SSLRequest without TLS configured: %q, want 'N'", b)
		}
		r.startup(map[string]string{"user": pgtest.Superuser, "database": pgtest.Database})
		if vals, _ := r.query("SELECT 'plain'"); len(vals) != 1 || vals[0] != "plain" {
			t.Fatalf("query: %v", vals)
		}
	})
	t.Run("no TLS: sslmode=require fails, prefer falls back", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 20*time.Second)
		if c, err := pgx.Connect(ctx, plain.URL(pgtest.Superuser, "sslmode=require")); err == nil {
			c.Close(ctx)
			t.Errorf("sslmode=require against a proxy without TLS: connected")
		}
		c := itConnect(t, ctx, plain.URL(pgtest.Superuser, "sslmode=prefer"))
		if _, ok := itClientTLS(c); ok {
			t.Errorf("sslmode=prefer without TLS on the proxy: the connection is TLS")
		}
	})
	for _, mode := range [][]string{{"sslmode=require"}, {"sslmode=verify-full", "sslrootcert=" + caFile}} {
		t.Run("TLS: "+mode[0], func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 20*time.Second)
			c := itConnect(t, ctx, secure.URL(pgtest.Superuser, mode...))
			if _, ok := itClientTLS(c); !ok {
				t.Errorf("%s: the connection to the proxy is not TLS", mode[0])
			}
			if itUpstreamSSL(t, ctx, c) {
				t.Errorf("upstream sslmode disable: the backend reports TLS")
			}
		})
	}
	t.Run("TLS: verify-full with the wrong CA fails", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 20*time.Second)
		c, err := pgx.Connect(ctx, secure.URL(pgtest.Superuser, "sslmode=verify-full", "sslrootcert="+itPG(t).CAFile))
		if err == nil {
			c.Close(ctx)
			t.Fatal("verify-full with a CA that did not sign the proxy's certificate: connected")
		}
	})
}

// TestTLSBufferedAfterSSLRequest sends a startup packet in the same write as
// the SSLRequest: such bytes were not protected by TLS and must be refused,
// as PostgreSQL refuses them (CVE-2021-23222).
func TestTLSBufferedAfterSSLRequest(t *testing.T) {
	t.Parallel()
	tlsCfg, _, _ := itProxyTLS(t)
	for _, withTLS := range []bool{true, false} {
		name := map[bool]string{true: "TLS configured", false: "no TLS"}[withTLS]
		cfg := Config{}
		if withTLS {
			cfg.TLS = tlsCfg
		}
		p := itStartProxy(t, cfg)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := itDialRaw(t, p.Addr)
			pkt := append(itRequest(itSSLRequest), itStartupPacket(0x00030000, "user", pgtest.Superuser, "database", pgtest.Database)...)
			if _, err := r.nc.Write(pkt); err != nil {
				t.Fatal(err)
			}
			b, closed := itReadUntilClosed(r.nc, 5*time.Second)
			if !closed {
				t.Errorf("connection still open 5s after a startup packet buffered behind the SSLRequest; got %q", b)
			}
			authOK := []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}
			if bytes.Contains(b, authOK) || bytes.Contains(b, []byte{'Z', 0, 0, 0, 5}) {
				t.Fatalf("the buffered startup packet was accepted (got %q); want the connection refused", b)
			}
			if code, msg, ok := itFirstError(b); ok && code != "08P01" {
				t.Errorf("ErrorResponse %s %q, want 08P01", code, msg)
			}
			t.Logf("got %q", b)
		})
	}
}

// TestTLSGSSENCRequest answers GSSENCRequest with 'N'; the client then goes
// on in plaintext, or with an SSLRequest.
func TestTLSGSSENCRequest(t *testing.T) {
	t.Parallel()
	plain := itStartProxy(t, Config{})
	tlsCfg, _, pool := itProxyTLS(t)
	secure := itStartProxy(t, Config{TLS: tlsCfg})
	t.Run("then plaintext", func(t *testing.T) {
		t.Parallel()
		r := itDialRaw(t, plain.Addr)
		if _, err := r.nc.Write(itRequest(itGSSENCRequest)); err != nil {
			t.Fatal(err)
		}
		if b := itAnswer(t, r.nc); b != 'N' {
			t.Fatalf("answer to GSSENCRequest: %q, want 'N'", b)
		}
		r.startup(map[string]string{"user": pgtest.Superuser, "database": pgtest.Database})
		if vals, _ := r.query("SELECT 'gss'"); len(vals) != 1 || vals[0] != "gss" {
			t.Fatalf("query: %v", vals)
		}
	})
	t.Run("then SSLRequest", func(t *testing.T) {
		t.Parallel()
		r := itDialRaw(t, secure.Addr)
		if _, err := r.nc.Write(itRequest(itGSSENCRequest)); err != nil {
			t.Fatal(err)
		}
		if b := itAnswer(t, r.nc); b != 'N' {
			t.Fatalf("answer to GSSENCRequest: %q, want 'N'", b)
		}
		if _, err := r.nc.Write(itRequest(itSSLRequest)); err != nil {
			t.Fatal(err)
		}
		if b := itAnswer(t, r.nc); b != 'S' {
			t.Fatalf("answer to SSLRequest after GSSENCRequest: %q, want 'S'", b)
		}
		tc := tls.Client(r.nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		s := &itRaw{t: t, nc: tc, fe: pgproto3.NewFrontend(tc, tc)}
		s.startup(map[string]string{"user": pgtest.Superuser, "database": pgtest.Database})
		if vals, _ := s.query("SELECT 'gss then ssl'"); len(vals) != 1 {
			t.Fatalf("query: %v", vals)
		}
	})
}

// TestTLSDirect connects with direct TLS (no SSLRequest, ALPN "postgresql").
func TestTLSDirect(t *testing.T) {
	t.Parallel()
	tlsCfg, caFile, pool := itProxyTLS(t)
	secure := itStartProxy(t, Config{TLS: tlsCfg})
	plain := itStartProxy(t, Config{})
	for _, mode := range [][]string{{"sslmode=require"}, {"sslmode=verify-full", "sslrootcert=" + caFile}} {
		t.Run("pgx "+mode[0], func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 20*time.Second)
			c := itConnect(t, ctx, secure.URL(pgtest.Superuser, append(mode, "sslnegotiation=direct")...))
			tc, ok := itClientTLS(c)
			if !ok {
				t.Fatal("direct TLS: the connection is not TLS")
			}
			if p := tc.ConnectionState().NegotiatedProtocol; p != "postgresql" {
				t.Errorf("ALPN protocol %q, want postgresql", p)
			}
			var n int
			if err := c.QueryRow(ctx, "SELECT 16").Scan(&n); err != nil || n != 16 {
				t.Errorf("query: %d, %v", n, err)
			}
		})
	}
	t.Run("without ALPN refused", func(t *testing.T) {
		t.Parallel()
		nc, err := net.DialTimeout("tcp", secure.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			return // refused in the handshake: fine
		}
		if _, err := tc.Write(itStartupPacket(0x00030000, "user", pgtest.Superuser, "database", pgtest.Database)); err != nil {
			return
		}
		b, closed := itReadUntilClosed(tc, 5*time.Second)
		if !closed || bytes.Contains(b, []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}) {
			t.Errorf("direct TLS without ALPN: got %q (closed %v); want the connection refused", b, closed)
		}
	})
	t.Run("no certificate configured", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 20*time.Second)
		c, err := pgx.Connect(ctx, plain.URL(pgtest.Superuser, "sslmode=require", "sslnegotiation=direct"))
		if err == nil {
			c.Close(ctx)
			t.Fatal("direct TLS to a proxy without a certificate: connected")
		}
		if ctx.Err() != nil {
			t.Fatalf("direct TLS to a proxy without a certificate hung: %v", err)
		}
	})
}

// TestTLSUpstream checks every upstream sslmode, and that verify-full with
// the wrong CA fails with a clear error to the client.
func TestTLSUpstream(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode    string
		tls     *tls.Config
		wantSSL bool
	}{
		{SSLDisable, nil, false},
		{SSLPrefer, nil, true},
		{SSLRequire, nil, true},
		{SSLVerifyFull, itUpstreamTLS(t), true},
		{"verify-ca", itUpstreamTLS(t), true},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 20*time.Second)
			p := itStartProxy(t, Config{UpstreamSSLMode: tc.mode, UpstreamTLS: tc.tls})
			c := itConnect(t, ctx, p.URL(pgtest.Superuser))
			if got := itUpstreamSSL(t, ctx, c); got != tc.wantSSL {
				t.Errorf("upstream sslmode %s: backend ssl = %v, want %v", tc.mode, got, tc.wantSSL)
			}
			if err := p.Srv.CheckUpstream(ctx); err != nil {
				t.Errorf("CheckUpstream: %v", err)
			}
		})
	}
	t.Run("verify-full with the wrong CA", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 20*time.Second)
		_, otherCA, err := pgtest.SelfSignedTLS()
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(otherCA)
		p := itStartProxy(t, Config{UpstreamSSLMode: SSLVerifyFull, UpstreamTLS: &tls.Config{RootCAs: pool}})
		c, err := pgx.Connect(ctx, p.URL(pgtest.Superuser))
		if err == nil {
			c.Close(ctx)
			t.Fatal("upstream verify-full with a CA that did not sign the server's certificate: connected")
		}
		if pe := itWantCode(t, err, "08006"); pe != nil {
			low := strings.ToLower(pe.Message)
			if !strings.Contains(pe.Message, itPG(t).Addr()) || !(strings.Contains(low, "certificate") || strings.Contains(low, "x509")) {
				t.Errorf("error %q: want it to name the upstream %s and say the certificate is not trusted", pe.Message, itPG(t).Addr())
			}
		}
		if err := p.Srv.CheckUpstream(ctx); err == nil {
			t.Errorf("CheckUpstream with the wrong CA: nil")
		}
	})
}

var itAuthUsers = []struct{ user, method string }{
	{pgtest.Superuser, "trust"},
	{pgtest.UserPassword, "password"},
	{pgtest.UserMD5, "md5"},
	{pgtest.UserSCRAM, "scram-sha-256"},
}

// itWrongURL is a URL for user with a wrong password.
func itWrongURL(addr, user string, extra ...string) string {
	q := "sslmode=disable"
	if len(extra) > 0 {
		q = strings.Join(extra, "&")
	}
	return fmt.Sprintf("postgres://%s:wrong-pw@%s/%s?%s", user, addr, pgtest.Database, q)
}

// TestAuthMethods relays every authentication method for pgx and psql, with
// TLS on neither side, on the client side only, and on the upstream side
// only (SCRAM-SHA-256-PLUS must then be withheld from the plaintext client:
// libpq refuses a server that offers it without TLS). A wrong password gives
// 28P01.
func TestAuthMethods(t *testing.T) {
	t.Parallel()
	tlsCfg, caFile, _ := itProxyTLS(t)
	setups := []struct {
		name      string
		cfg       Config
		client    []string
		clientTLS bool
		upTLS     bool
	}{
		{"plain-plain", Config{}, nil, false, false},
		{"tls-plain", Config{TLS: tlsCfg}, []string{"sslmode=verify-full", "sslrootcert=" + caFile}, true, false},
		{"plain-tls", Config{UpstreamSSLMode: SSLVerifyFull, UpstreamTLS: itUpstreamTLS(t)}, nil, false, true},
	}
	for _, s := range setups {
		p := itStartProxy(t, s.cfg)
		for _, u := range itAuthUsers {
			t.Run(s.name+"/"+u.method+"/pgx", func(t *testing.T) {
				t.Parallel()
				ctx := itCtx(t, 30*time.Second)
				c := itConnect(t, ctx, p.URL(u.user, s.client...))
				var who string
				if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != u.user {
					t.Errorf("current_user = %q, %v; want %s", who, err, u.user)
				}
				if _, ok := itClientTLS(c); ok != s.clientTLS {
					t.Errorf("client side TLS = %v, want %v", ok, s.clientTLS)
				}
				if got := itUpstreamSSL(t, ctx, c); got != s.upTLS {
					t.Errorf("upstream TLS = %v, want %v", got, s.upTLS)
				}
				if u.method == "trust" {
					return
				}
				_, err := pgx.Connect(ctx, itWrongURL(p.Addr, u.user, s.client...))
				itWantCode(t, err, "28P01")
			})
			t.Run(s.name+"/"+u.method+"/psql", func(t *testing.T) {
				t.Parallel()
				ctx := itCtx(t, 30*time.Second)
				url := p.URL(u.user, append(slices.Clone(s.client), "application_name=it_psql_auth")...)
				out, errOut, err := itExec(t, ctx, "psql", "-X", "-w", "-At", "-c", "SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())", url)
				if err != nil {
					t.Fatalf("psql: %v\n%s", err, errOut)
				}
				want := u.user + "|" + map[bool]string{true: "t", false: "f"}[s.upTLS]
				if strings.TrimSpace(out) != want {
					t.Errorf("psql printed %q, want %q", out, want)
				}
				if u.method == "trust" {
					return
				}
				_, errOut, err = itExec(t, ctx, "psql", "-X", "-w", "-At", "-c", "SELECT 1", itWrongURL(p.Addr, u.user, s.client...))
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(errOut, "password authentication failed") {
					t.Errorf("psql with a wrong password: %v, stderr %q; want exit status 2 and \"password authentication failed\"", err, errOut)
				}
			})
		}
	}
}

// TestAuthSCRAMPlusWithheld reads the server's SASL mechanisms through a
// proxy that talks TLS upstream to a plaintext client: SCRAM-SHA-256-PLUS
// must not be offered (the client has no TLS channel to bind to).
func TestAuthSCRAMPlusWithheld(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{UpstreamSSLMode: SSLRequire})
	r := itDialRaw(t, p.Addr)
	r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": pgtest.UserSCRAM, "database": pgtest.Database}})
	r.flush()
	m, ok := r.recv().(*pgproto3.AuthenticationSASL)
	if !ok {
		t.Fatalf("first message %T, want AuthenticationSASL", m)
	}
	if !slices.Contains(m.AuthMechanisms, "SCRAM-SHA-256") || slices.Contains(m.AuthMechanisms, "SCRAM-SHA-256-PLUS") {
		t.Errorf("mechanisms %q: want SCRAM-SHA-256 and not SCRAM-SHA-256-PLUS", m.AuthMechanisms)
	}
}

// TestAuthChannelBinding: TLS on both sides of the proxy, SCRAM user.
//
// The proxy terminates TLS, so it must withhold SCRAM-SHA-256-PLUS; a client
// that demands channel binding must then get an error that says so. A client
// that merely prefers channel binding (the default of libpq and pgx) cannot
// get in either: seeing TLS but no -PLUS it sends the gs2 flag "y", and a
// server that itself runs TLS (the upstream side) refuses that as a downgrade
// ("SCRAM channel binding negotiation error"); the flag is covered by the
// client's proof, so no proxy can rewrite it. The proxy catches that flag
// and answers with its own error, which must name the setting to change;
// channel_binding=disable connects.
func TestAuthChannelBinding(t *testing.T) {
	t.Parallel()
	tlsCfg, caFile, _ := itProxyTLS(t)
	p := itStartProxy(t, Config{TLS: tlsCfg, UpstreamSSLMode: SSLVerifyFull, UpstreamTLS: itUpstreamTLS(t)})
	ssl := []string{"sslmode=verify-full", "sslrootcert=" + caFile}
	for _, cb := range []string{"require", "prefer", "disable"} {
		extra := append(slices.Clone(ssl), "channel_binding="+cb)
		mustConnect := cb == "disable"
		t.Run("psql/"+cb, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 30*time.Second)
			out, errOut, err := itExec(t, ctx, "psql", "-X", "-w", "-At", "-c", "SELECT current_user", p.URL(pgtest.UserSCRAM, extra...))
			switch {
			case err == nil && strings.TrimSpace(out) == pgtest.UserSCRAM:
				if cb == "require" {
					t.Fatalf("channel_binding=require through a TLS-terminating proxy: connected")
				}
			case mustConnect:
				t.Errorf("channel_binding=%s: %v, stdout %q, stderr %q; want it to connect", cb, err, out, errOut)
			default:
				if !strings.Contains(strings.ToLower(errOut), "channel binding") {
					t.Errorf("channel_binding=%s: stderr %q does not mention channel binding", cb, errOut)
				}
				if cb == "prefer" && !strings.Contains(errOut, "channel_binding=disable") {
					t.Errorf("channel_binding=prefer: stderr %q does not say to set channel_binding=disable", errOut)
				}
				t.Logf("psql channel_binding=%s: %s", cb, strings.TrimSpace(errOut))
			}
		})
		t.Run("pgx/"+cb, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 30*time.Second)
			c, err := pgx.Connect(ctx, p.URL(pgtest.UserSCRAM, extra...))
			switch {
			case err == nil:
				defer c.Close(ctx)
				if cb == "require" {
					t.Fatal("channel_binding=require through a TLS-terminating proxy: connected")
				}
				var who string
				if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != pgtest.UserSCRAM {
					t.Errorf("current_user %q, %v", who, err)
				}
			case mustConnect:
				t.Errorf("channel_binding=%s: %v; want it to connect", cb, err)
			default:
				if !strings.Contains(strings.ToLower(err.Error()), "channel binding") {
					t.Errorf("channel_binding=%s: error %q does not mention channel binding", cb, err)
				}
				if cb == "prefer" && !strings.Contains(err.Error(), "channel_binding=disable") {
					t.Errorf("channel_binding=prefer: error %q does not say to set channel_binding=disable", err)
				}
				t.Logf("pgx channel_binding=%s: %v", cb, err)
			}
		})
	}
}

// TestTLSCancel cancels a query of a TLS client: pgx sends its CancelRequest
// over TLS too (after an SSLRequest, or with direct TLS).
func TestTLSCancel(t *testing.T) {
	t.Parallel()
	tlsCfg, _, _ := itProxyTLS(t)
	p := itStartProxy(t, Config{TLS: tlsCfg})
	for _, neg := range []string{"postgres", "direct"} {
		t.Run(neg, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 30*time.Second)
			app := "it_tls_cancel_" + neg
			direct := itDirect(t, ctx)
			c := itConnect(t, ctx, p.URL(pgtest.Superuser, "sslmode=require", "sslnegotiation="+neg, "application_name="+app))
			done := make(chan error, 1)
			go func() {
				_, err := c.Exec(ctx, "SELECT pg_sleep(10)")
				done <- err
			}()
			itWaitRunning(t, ctx, direct, "SELECT pg_sleep", app)
			if err := c.PgConn().CancelRequest(ctx); err != nil {
				t.Fatalf("CancelRequest over TLS: %v", err)
			}
			select {
			case err := <-done:
				itWantCode(t, err, "57014")
			case <-time.After(8 * time.Second):
				t.Fatal("query not cancelled 8s after a CancelRequest over TLS")
			}
		})
	}
}
