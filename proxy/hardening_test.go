package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/pgwire"
)

// itForwarder relays TCP between the proxy and PostgreSQL so that a test can
// cut the server side under a live session, as a crashed server or a broken
// network does, without the server sending anything first.
type itForwarder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func itStartForwarder(t *testing.T, target string) *itForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &itForwarder{ln: ln}
	t.Cleanup(func() { ln.Close(); f.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, in, out)
			f.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return f
}

// cut closes every relayed connection at once.
func (f *itForwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

var itRelays = []string{RelayAuto, RelayGoroutines}

// TestServerLostIsReported: a server that goes away mid-statement, without
// a word, leaves the client with FATAL 08006, not a bare EOF, in both relay
// modes.
func TestServerLostIsReported(t *testing.T) {
	for _, relay := range itRelays {
		t.Run(relay, func(t *testing.T) {
			fw := itStartForwarder(t, itPG(t).Addr())
			p := itStartProxy(t, Config{Upstream: fw.ln.Addr().String(), Relay: relay})
			ctx := itCtx(t, 30*time.Second)
			c := itConnect(t, ctx, p.URL(pgtest.Superuser))
			errc := make(chan error, 1)
			go func() {
				_, err := c.Exec(ctx, "SELECT pg_sleep(20)")
				errc <- err
			}()
			time.Sleep(300 * time.Millisecond)
			fw.cut()
			select {
			case err := <-errc:
				pe := itWantCode(t, err, "08006")
				if pe != nil && !strings.Contains(pe.Message, "server closed the connection unexpectedly") {
					t.Errorf("got message %q", pe.Message)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the client heard nothing 10s after the server side was cut")
			}
		})
	}
}

// TestServerFatalIsNotDoubled: when the server says why it ends the session
// (pg_terminate_backend: FATAL 57P01), that is what the client gets.
func TestServerFatalIsNotDoubled(t *testing.T) {
	for _, relay := range itRelays {
		t.Run(relay, func(t *testing.T) {
			p := itStartProxy(t, Config{Relay: relay})
			ctx := itCtx(t, 30*time.Second)
			r := itRawSession(t, p.Addr, "terminated-"+relay)
			d := itDirect(t, ctx)
			if _, err := d.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", "terminated-"+relay); err != nil {
				t.Fatal(err)
			}
			b, closed := itReadUntilClosed(r.nc, 10*time.Second)
			if !closed {
				t.Fatal("the session was not closed")
			}
			if n := strings.Count(string(b), "SFATAL"); n != 1 {
				t.Errorf("got %d FATAL messages, want the server's one: %q", n, b)
			}
			if code, _, ok := itFirstError(b); !ok || code != "57P01" {
				t.Errorf("got %q (ok %v), want the server's 57P01", code, ok)
			}
		})
	}
}

// TestShutdownTellsBusyClients: a client still running a statement when
// --shutdown-timeout runs out gets FATAL 57P01, not EOF.
func TestShutdownTellsBusyClients(t *testing.T) {
	for _, relay := range itRelays {
		t.Run(relay, func(t *testing.T) {
			p := itStartProxy(t, Config{Relay: relay})
			ctx := itCtx(t, 30*time.Second)
			c := itConnect(t, ctx, p.URL(pgtest.Superuser))
			errc := make(chan error, 1)
			go func() {
				_, err := c.Exec(ctx, "SELECT pg_sleep(20)")
				errc <- err
			}()
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			if err, _ := p.shutdown(500 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown: got %v, want the deadline (a statement was running)", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Shutdown with a 500ms timeout took %s", d)
			}
			select {
			case err := <-errc:
				itWantCode(t, err, "57P01")
			case <-time.After(10 * time.Second):
				t.Fatal("the client heard nothing after Shutdown")
			}
		})
	}
}

// TestShutdownEndsWithNonReadingClient: a client that stops reading while
// notifications pour in (its socket buffers full, the server pump blocked in
// a write) cannot hold Shutdown past its timeout, over TLS or on goroutine
// pumps, and does not stall the other sessions' shutdown.
func TestShutdownEndsWithNonReadingClient(t *testing.T) {
	serverTLS, _, _ := itProxyTLS(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		tls  bool
	}{
		{"goroutines", Config{Relay: RelayGoroutines}, false},
		{"tls", Config{TLS: serverTLS}, true},
		{"loop", Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := itStartProxy(t, tc.cfg)
			ctx := itCtx(t, 60*time.Second)
			channel := "flood_" + tc.name

			// The non-reading listener: a raw session (TLS when asked).
			// A small receive buffer, so that the flood fills it and the
			// proxy's send buffer behind it quickly.
			dialer := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}}
			nc, err := dialer.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			raw := nc
			defer raw.Close()
			if tc.tls {
				nc = itStartTLS(t, nc)
			}
			r := &itRaw{t: t, nc: nc, fe: pgproto3.NewFrontend(nc, nc)}
			_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
			r.startup(map[string]string{"user": pgtest.Superuser, "database": pgtest.Database, "application_name": "listener"})
			r.query("LISTEN " + channel)
			// From here on the listener never reads.

			// An idle bystander, which Shutdown must close at once.
			by := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=bystander"))
			if _, err := by.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}

			d := itDirect(t, ctx)
			// 16 MB of distinct notifications, many times the socket buffers,
			// each message 4 KB, so that the relay's 32 KB reads can end
			// on a message boundary, where the session looks idle.
			pad := 4096 - (1 + 4 + 4 + len(channel) + 1 + 6 + 1)
			if _, err := d.Exec(ctx, fmt.Sprintf("SELECT pg_notify('%s', lpad(i::text, 6, '0') || repeat('x', %d)) FROM generate_series(1, 4000) i", channel, pad)); err != nil {
				t.Fatal(err)
			}
			itEventually(t, 10*time.Second, func() (bool, string) {
				var queued float64
				err := d.QueryRow(ctx, "SELECT pg_notification_queue_usage()").Scan(&queued)
				return err == nil && queued > 0, fmt.Sprintf("queue usage %v (err %v)", queued, err)
			})
			time.Sleep(300 * time.Millisecond) // the relay fills the buffers and blocks

			t.Logf("relayed from the server before Shutdown: %d bytes", p.Srv.Stats().BytesFromServer)
			start := time.Now()
			shut := make(chan error, 1)
			go func() { err, _ := p.shutdown(time.Second); shut <- err }()
			select {
			case <-shut:
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("Shutdown with a 1s timeout took %s", took.Round(time.Millisecond))
				}
			case <-time.After(6 * time.Second):
				raw.Close() // unblocks the relay, so the test can end
				<-shut
				t.Fatalf("Shutdown with a 1s timeout was still running after 6s")
			}
			if err := by.Ping(ctx); err == nil {
				t.Error("the idle bystander is still connected after Shutdown")
			}
		})
	}
}

// itStartTLS asks for TLS on nc and completes the handshake.
func itStartTLS(t *testing.T, nc net.Conn) net.Conn {
	t.Helper()
	if _, err := nc.Write(itRequest(itSSLRequest)); err != nil {
		t.Fatal(err)
	}
	if a := itAnswer(t, nc); a != 'S' {
		t.Fatalf("SSLRequest answered %q, want S", a)
	}
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestProtocol2Refused: a protocol 2.0 startup gets an 08P01 ErrorResponse
// that says why, instead of a silent close.
func TestProtocol2Refused(t *testing.T) {
	p := itStartProxy(t, Config{})
	nc := itDialRaw(t, p.Addr).nc
	if _, err := nc.Write(itStartupPacket(2<<16, "user", pgtest.Superuser, "database", pgtest.Database)); err != nil {
		t.Fatal(err)
	}
	b, closed := itReadUntilClosed(nc, 10*time.Second)
	if !closed {
		t.Fatal("the connection stayed open")
	}
	code, msg, ok := itFirstError(b)
	if !ok || code != "08P01" || !strings.Contains(msg, "unsupported frontend protocol 2.0") {
		t.Errorf("got %q %q (ok %v), want 08P01 unsupported frontend protocol 2.0", code, msg, ok)
	}
}

// TestUpstreamFailureNamesOnlyTheUpstream: a client (and /readyz) told that
// the upstream cannot be reached learns its address and the kind of
// failure, not the proxy's resolver or local addresses.
func TestUpstreamFailureNamesOnlyTheUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		upstream, reason string
	}{
		{"no-such-host.invalid:5432", "host name not found"},
		{closedAddr, "connection refused"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			var logs lockedBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			p := itStartProxy(t, Config{Upstream: tc.upstream, ConnectTimeout: 5 * time.Second, Logger: logger})
			want := "cannot connect to upstream " + tc.upstream + ": " + tc.reason
			ctx := itCtx(t, 20*time.Second)
			err := p.Srv.CheckUpstream(ctx)
			if err == nil || err.Error() != want {
				t.Errorf("CheckUpstream: got %v, want %q", err, want)
			}
			nc := itDialRaw(t, p.Addr).nc
			if _, err := nc.Write(itStartupPacket(3<<16, "user", pgtest.Superuser, "database", pgtest.Database)); err != nil {
				t.Fatal(err)
			}
			b, _ := itReadUntilClosed(nc, 10*time.Second)
			code, msg, ok := itFirstError(b)
			if !ok || code != "08006" || msg != "nplus1: "+want {
				t.Errorf("client got %q %q (ok %v), want 08006 %q", code, msg, ok, "nplus1: "+want)
			}
			// Logged at WARN (seen at --log-level warn), with the same
			// words: no resolver, no local address.
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), "cannot connect to upstream") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			line := logs.String()
			if !strings.Contains(line, "level=WARN msg=\"cannot connect to upstream\" ") ||
				!strings.Contains(line, "upstream="+tc.upstream) || !strings.Contains(line, "reason=\""+tc.reason+"\"") {
				t.Errorf("log at WARN:\n%s\nwant the upstream and %q", line, tc.reason)
			}
			if strings.Contains(line, "lookup") || strings.Contains(line, "dial tcp") {
				t.Errorf("the log names more than the upstream:\n%s", line)
			}
		})
	}
}

// TestShutdownDoesNotWaitForABlockedWrite: a session whose client write side
// is held (a relay write blocked on a client that does not read) is closed
// when Shutdown's time is up, without a notice, and Shutdown returns on
// time.
func TestShutdownDoesNotWaitForABlockedWrite(t *testing.T) {
	p := itStartProxy(t, Config{Relay: RelayGoroutines})
	ctx := itCtx(t, 30*time.Second)
	c := itConnect(t, ctx, p.URL(pgtest.Superuser))
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conns := p.Srv.connList()
	if len(conns) != 1 {
		t.Fatalf("got %d sessions, want 1", len(conns))
	}
	held := conns[0]
	held.wsem <- struct{}{} // what a blocked relay write holds
	start := time.Now()
	shut := make(chan error, 1)
	go func() { err, _ := p.shutdown(500 * time.Millisecond); shut <- err }()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: got %v, want the deadline", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Shutdown with a 500ms timeout took %s", took.Round(time.Millisecond))
		}
	case <-time.After(5 * time.Second):
		<-held.wsem
		<-shut
		t.Fatal("Shutdown with a 500ms timeout was still running after 5s")
	}
	<-held.wsem
}

// TestTerminateGetsNoNotice: a client that sends Terminate and keeps reading
// until the server closes (node-postgres does) hears nothing more: the close
// is the one it asked for.
func TestTerminateGetsNoNotice(t *testing.T) {
	for _, relay := range itRelays {
		t.Run(relay, func(t *testing.T) {
			p := itStartProxy(t, Config{Relay: relay})
			r := itRawSession(t, p.Addr, "terminate-"+relay)
			r.send(&pgproto3.Terminate{})
			b, closed := itReadUntilClosed(r.nc, 10*time.Second)
			if !closed {
				t.Fatal("the connection stayed open after Terminate")
			}
			if len(b) != 0 {
				t.Errorf("got %q after Terminate, want nothing", b)
			}
		})
	}
}

// TestServerEndsLogin: a server that closes or resets the connection right
// after the startup packet leaves the client with FATAL 08006, not a bare
// EOF, and the loss is counted.
func TestServerEndsLogin(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					nc, err := ln.Accept()
					if err != nil {
						return
					}
					_, _ = readStartup(nc)
					if tc, ok := nc.(*net.TCPConn); ok && reset {
						_ = tc.SetLinger(0)
					}
					nc.Close()
				}
			}()
			p := itStartProxy(t, Config{Upstream: ln.Addr().String()})
			nc := itDialRaw(t, p.Addr).nc
			if _, err := nc.Write(itStartupPacket(3<<16, "user", pgtest.Superuser, "database", pgtest.Database)); err != nil {
				t.Fatal(err)
			}
			b, _ := itReadUntilClosed(nc, 10*time.Second)
			code, msg, ok := itFirstError(b)
			if !ok || code != "08006" || !strings.Contains(msg, "during authentication") {
				t.Errorf("got %q %q (ok %v), want 08006 ... during authentication", code, msg, ok)
			}
			itEventually(t, 5*time.Second, func() (bool, string) {
				n := p.Srv.Stats().ServerLost
				return n == 1, fmt.Sprintf("ServerLost = %d, want 1", n)
			})
		})
	}
}

// TestStandardStringsFromLogin: the setting the server reports at login
// reaches every execution, so the analysis reads string literals as the
// server does from the first statement on.
func TestStandardStringsFromLogin(t *testing.T) {
	p := itStartProxy(t, Config{})
	ctx := itCtx(t, 30*time.Second)
	c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=strings-login"))
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	evs := p.WaitEvents(t, 1, itAppSQL("strings-login", "SELECT 1"))
	if got := evs[0].StandardStrings; got != pgwire.StandardStringsOn {
		t.Errorf("got StandardStrings %v, want on (reported at login)", got)
	}
}
