package proxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nplus1/nplus1/internal/pgtest"
)

// TestLoginFloodCannotLockOut: clients that send a startup packet for a
// password user and then say nothing, and clients that say nothing at all,
// hold at most MaxLoginConnections slots, each for at most LoginTimeout; a
// real client gets in, and every count returns to zero.
func TestLoginFloodCannotLockOut(t *testing.T) {
	const maxLogins, loginTimeout = 20, 1500 * time.Millisecond
	p := itStartProxy(t, Config{MaxConnections: 1000, MaxLoginConnections: maxLogins, LoginTimeout: loginTimeout})

	var flood []net.Conn
	defer func() {
		for _, nc := range flood {
			nc.Close()
		}
	}()
	for i := range 60 {
		nc, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, nc)
		if i%2 == 0 { // half send a startup packet and stop at the password challenge
			if _, err := nc.Write(itStartupPacket(3<<16, "user", pgtest.UserSCRAM, "database", pgtest.Database)); err != nil {
				t.Fatal(err)
			}
		}
	}
	itEventually(t, 5*time.Second, func() (bool, string) {
		st := p.Srv.Stats()
		return st.LoginsActive <= maxLogins && st.LoginsRejected >= 60-maxLogins,
			fmt.Sprintf("LoginsActive %d (want <= %d), LoginsRejected %d (want >= %d)", st.LoginsActive, maxLogins, st.LoginsRejected, 60-maxLogins)
	})
	// A client over the cap is told why at once.
	extra, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	b, closed := itReadUntilClosed(extra, 2*time.Second)
	extra.Close()
	if code, msg, ok := itFirstError(b); !closed || !ok || code != stateTooManyConnections {
		t.Errorf("connection over the login cap: closed %v, error %q %q, want 53300", closed, code, msg)
	}

	// The legitimate client gets in once the silent ones time out.
	start := time.Now()
	ctx := itCtx(t, 10*time.Second)
	var connected bool
	for time.Since(start) < 3*loginTimeout && !connected {
		conn, err := pgx.Connect(ctx, p.URL(pgtest.UserSCRAM, "connect_timeout=5"))
		if err == nil {
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("query after login: %v", err)
			}
			conn.Close(ctx)
			connected = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !connected {
		t.Fatalf("a real client could not log in within %s of a silent flood (stats %+v)", 3*loginTimeout, p.Srv.Stats())
	}
	t.Logf("real client in after %s", time.Since(start).Round(time.Millisecond))

	// The silent clients were closed: those past the startup packet with
	// 57014, the others without a word.
	timedOut := 0
	for i, nc := range flood {
		b, closed := itReadUntilClosed(nc, 3*loginTimeout)
		if !closed {
			t.Fatalf("flood connection %d still open after %s", i, 3*loginTimeout)
		}
		code, _, ok := itFirstError(b)
		switch {
		case ok && code == stateQueryCanceled:
			timedOut++
		case ok && code != stateTooManyConnections:
			t.Errorf("flood connection %d got %s", i, code)
		}
	}
	if timedOut == 0 {
		t.Error("no silent client past its startup packet was told 57014")
	}
	itWaitNoConns(t, p, 5*time.Second)
	itEventually(t, 5*time.Second, func() (bool, string) {
		st := p.Srv.Stats()
		return st.LoginsActive == 0 && st.LoginTimeouts >= maxLogins/2,
			fmt.Sprintf("LoginsActive %d (want 0), LoginTimeouts %d (want >= %d)", st.LoginsActive, st.LoginTimeouts, maxLogins/2)
	})
}

// TestLoginServerClosesDuringAuth: a server that gives up on the login
// while the client is silent (its authentication_timeout) ends the session
// at once: the client hears 08006 and the proxy holds no socket.
func TestLoginServerClosesDuringAuth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		say     func(nc net.Conn) // what the fake server does after its challenge
		wantErr string
	}{
		{"close", func(nc net.Conn) { nc.Close() }, stateConnectionFailure},
		{"fatal", func(nc net.Conn) {
			_, _ = nc.Write(errorResponse("08P01", "canceling authentication due to timeout"))
			nc.Close()
		}, "08P01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				br := bufio.NewReader(nc)
				var hdr [4]byte
				if _, err := br.Read(hdr[:]); err != nil {
					nc.Close()
					return
				}
				_, _ = br.Discard(int(binary.BigEndian.Uint32(hdr[:])) - 4)
				// AuthenticationCleartextPassword, then nothing from the client.
				_, _ = nc.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3})
				time.Sleep(200 * time.Millisecond)
				tc.say(nc)
			}()
			p := itStartProxy(t, Config{Upstream: ln.Addr().String(), LoginTimeout: time.Minute})
			nc, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(itStartupPacket(3<<16, "user", "bob")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			b, closed := itReadUntilClosed(nc, 10*time.Second)
			if !closed {
				t.Fatal("the proxy kept the client after the server closed")
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("the client was closed after %s, want at once", time.Since(start))
			}
			if code, msg, ok := itFirstError(b); !ok || code != tc.wantErr {
				t.Errorf("client got %q %q, want %s", code, msg, tc.wantErr)
			}
			itWaitNoConns(t, p, 5*time.Second)
			if st := p.Srv.Stats(); st.LoginsActive != 0 {
				t.Errorf("LoginsActive = %d after the session ended", st.LoginsActive)
			}
		})
	}
}
