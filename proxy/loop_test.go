package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/pgtest"
)

// The event loop (loop_linux.go) relays plaintext sessions on Linux; the
// whole relay suite runs through it. These tests pin down what is particular
// to it: which sessions it takes, hand-off of bytes already buffered by the
// handshake, backpressure, and that one slow client does not hold up the
// others on the same loop.

// itLoopProcs makes sure GOMAXPROCS allows the loop (it needs 2) for the
// rest of the test.
func itLoopProcs(t *testing.T) {
	if n := runtime.GOMAXPROCS(0); n < 2 {
		runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(n) })
	}
}

func TestLoopTakesPlaintextSessions(t *testing.T) {
	if !loopSupported {
		t.Skip("no event loop on " + runtime.GOOS)
	}
	itLoopProcs(t)
	ctx := itCtx(t, 30*time.Second)
	for _, tc := range []struct {
		name      string
		cfg       Config
		url       func(p *itProxy) string
		wantLoops uint64
		procs     int // GOMAXPROCS for the case; 0: leave it
	}{
		{"plaintext", Config{}, func(p *itProxy) string { return p.URL(pgtest.Superuser) }, 1, 0},
		{"one CPU", Config{}, func(p *itProxy) string { return p.URL(pgtest.Superuser) }, 1, 1},
		{"goroutines", Config{Relay: RelayGoroutines}, func(p *itProxy) string { return p.URL(pgtest.Superuser) }, 0, 0},
		{"client TLS", Config{}, nil, 0, 0},
		{"upstream TLS", Config{UpstreamSSLMode: SSLRequire}, func(p *itProxy) string { return p.URL(pgtest.Superuser) }, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.procs > 0 {
				// One P: the loop waits in epoll_wait, sysmon hands
				// the P to the rest (the handshakes, the analyzer).
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tc.procs))
			}
			cfg := tc.cfg
			url := tc.url
			if url == nil {
				tlsCfg, _, _ := itProxyTLS(t)
				cfg.TLS = tlsCfg
				url = func(p *itProxy) string { return p.URL(pgtest.Superuser, "sslmode=require") }
			}
			if cfg.UpstreamSSLMode == SSLRequire {
				cfg.UpstreamTLS = itUpstreamTLS(t)
			}
			p := itStartProxy(t, cfg)
			c := itConnect(t, ctx, url(p))
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 1000)").Scan(&n); err != nil || n != 1000 {
				t.Fatalf("count: %d, %v", n, err)
			}
			if got := p.Srv.Stats().LoopSessions; got != tc.wantLoops {
				t.Errorf("LoopSessions = %d, want %d", got, tc.wantLoops)
			}
		})
	}
}

// A client may send its first query in the same packet as the startup
// message; those bytes sit in the handshake's buffer when the session is
// handed to the loop, and must reach the server first, in order.
func TestLoopHandoffBufferedBytes(t *testing.T) {
	itLoopProcs(t)
	for _, relay := range []string{RelayAuto, RelayGoroutines} {
		t.Run(relay, func(t *testing.T) {
			p := itStartProxy(t, Config{Relay: relay})
			r := itDialRaw(t, p.Addr)
			var pkt []byte
			pkt = append(pkt, itStartupPacket(3<<16, "user", pgtest.Superuser, "database", pgtest.Database,
				"application_name", "it_handoff")...)
			for _, sql := range []string{"SELECT 'first'", "SELECT 'second'"} {
				q, err := (&pgproto3.Query{String: sql}).Encode(nil)
				if err != nil {
					t.Fatal(err)
				}
				pkt = append(pkt, q...)
			}
			if _, err := r.nc.Write(pkt); err != nil {
				t.Fatal(err)
			}
			var got []string
			for len(got) < 2 {
				switch m := r.recv().(type) {
				case *pgproto3.DataRow:
					got = append(got, string(m.Values[0]))
				case *pgproto3.ErrorResponse:
					t.Fatalf("ErrorResponse %s: %s", m.Code, m.Message)
				}
			}
			if strings.Join(got, ",") != "first,second" {
				t.Fatalf("rows %q, want first, second", got)
			}
			r.expect("after the second query", &pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})
			if vals, _ := r.query("SELECT 'third'"); len(vals) != 1 || vals[0] != "third" {
				t.Fatalf("third query: %q", vals)
			}
			p.WaitEvents(t, 3, itApp("it_handoff"))
		})
	}
}

// A client that stops reading a large result makes the proxy stop reading
// the server (nothing is buffered beyond one chunk), while other sessions
// carry on; when it reads again, every byte arrives.
func TestLoopBackpressure(t *testing.T) {
	itLoopProcs(t)
	ctx := itCtx(t, 60*time.Second)
	p := itStartProxy(t, Config{})
	const rows, width = 64, 1 << 20
	slow := itRawSession(t, p.Addr, "it_slow")
	slow.send(&pgproto3.Query{String: "SELECT repeat('x', 1048576) FROM generate_series(1, 64)"})

	// The slow client reads nothing while another session runs queries on
	// the same loop.
	var heapAfter uint64
	other := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_other"))
	start := time.Now()
	for i := range 200 {
		var n int
		if err := other.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
			t.Fatalf("query %d on the other session: %d, %v", i, n, err)
		}
	}
	t.Logf("200 queries on another session while the slow client read nothing: %s", time.Since(start).Round(time.Millisecond))
	if loopSupported && p.Srv.Stats().LoopSessions != 2 {
		t.Fatalf("LoopSessions = %d, want 2", p.Srv.Stats().LoopSessions)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapAfter = ms.HeapAlloc
	// The proxy held the rest back: far less than the result has crossed.
	if st := p.Srv.Stats(); st.BytesFromServer > rows*width/2 {
		t.Errorf("%d bytes came from the server while the client read nothing; want the proxy to stop reading it", st.BytesFromServer)
	}
	if heapAfter > 256<<20 {
		t.Errorf("heap is %d MB while the result waits; want the proxy to hold no more than a chunk", heapAfter>>20)
	}

	want := bytes.Repeat([]byte("x"), width)
	n := 0
	for {
		switch m := slow.recv().(type) {
		case *pgproto3.DataRow:
			if len(m.Values) != 1 || !bytes.Equal(m.Values[0], want) {
				t.Fatalf("row %d: %d bytes, not %d x's", n, len(m.Values[0]), width)
			}
			n++
		case *pgproto3.CommandComplete:
			if string(m.CommandTag) != "SELECT 64" {
				t.Errorf("tag %q", m.CommandTag)
			}
		case *pgproto3.ErrorResponse:
			t.Fatalf("ErrorResponse %s: %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			if n != rows {
				t.Fatalf("%d rows, want %d", n, rows)
			}
			if st := p.Srv.Stats(); st.BytesFromServer < rows*width {
				t.Errorf("BytesFromServer %d, want at least %d", st.BytesFromServer, rows*width)
			}
			return
		}
	}
}

// A session busy on the loop is closed when Shutdown's deadline passes, and
// its statement is cancelled, not left running for a client that is gone.
func TestLoopShutdownForcesBusySession(t *testing.T) {
	itLoopProcs(t)
	p := itStartProxy(t, Config{})
	r := itRawSession(t, p.Addr, "it_loop_busy")
	r.send(&pgproto3.Query{String: "SELECT pg_sleep(20)"})
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err, _ := p.shutdown(300 * time.Millisecond); err == nil {
		t.Fatalf("Shutdown returned nil with a statement in flight; want the context's error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %s", d)
	}
	b, closed := itReadUntilClosed(r.nc, 5*time.Second)
	if !closed {
		t.Fatalf("client still open after Shutdown forced it (read %d bytes)", len(b))
	}
	if p.Srv.Stats().ConnsActive != 0 {
		t.Errorf("ConnsActive = %d after Shutdown", p.Srv.Stats().ConnsActive)
	}
	// The statement was cancelled rather than left to run for its client.
	direct := itDirect(t, itCtx(t, 30*time.Second))
	itEventually(t, 10*time.Second, func() (bool, string) {
		var n int
		err := direct.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'it_loop_busy' AND state = 'active'").Scan(&n)
		return err == nil && n == 0, fmt.Sprintf("%d active backends of the closed client (err %v)", n, err)
	})
}

// wrapListener hands out conns that hide their descriptor.
type wrapListener struct{ net.Listener }

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

// A listener whose conns have no file descriptor gets goroutine pumps.
func TestLoopNeedsDescriptors(t *testing.T) {
	itLoopProcs(t)
	ctx := itCtx(t, 30*time.Second)
	srv, err := New(Config{Upstream: itPG(t).Addr()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(wrapListener{ln}) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-served
	})
	c := itConnect(t, ctx, pgtest.URLFor(ln.Addr().String(), pgtest.Superuser))
	var n int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("query: %d, %v", n, err)
	}
	if got := srv.Stats().LoopSessions; got != 0 {
		t.Errorf("LoopSessions = %d, want 0", got)
	}
}

// loopCounts is how many sessions each started loop holds.
func loopCounts(s *Server) []int64 {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	n := make([]int64, len(s.loops))
	for i, l := range s.loops {
		n[i] = l.sessions.Load()
	}
	return n
}

func sum64(v []int64) (n int64) {
	for _, x := range v {
		n += x
	}
	return n
}

// waitLoopCounts waits until the loops hold want sessions in all, and
// returns their counts.
func waitLoopCounts(t *testing.T, s *Server, want int64) []int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := loopCounts(s)
		if sum64(n) == want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("loops hold %v sessions, want %d in all", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Loops start as sessions need them, up to RelayLoops, and each session
// goes to the loop with the fewest: after sessions on one loop end, the
// next ones fill it rather than following the accept order.
func TestLoopPlacementLeastLoaded(t *testing.T) {
	if !loopSupported {
		t.Skip("no event loop on " + runtime.GOOS)
	}
	itLoopProcs(t)
	ctx := itCtx(t, 60*time.Second)
	p := itStartProxy(t, Config{RelayLoops: 3})
	url := p.URL(pgtest.Superuser)

	var conns []*pgx.Conn
	open := func() {
		t.Helper()
		c := itConnect(t, ctx, url)
		conns = append(conns, c)
		waitLoopCounts(t, p.Srv, int64(len(conns)))
	}
	open()
	if n := loopCounts(p.Srv); len(n) != 1 {
		t.Fatalf("one session started %d loops (%v), want 1", len(n), n)
	}
	for range 5 {
		open()
	}
	if n := loopCounts(p.Srv); len(n) != 3 || n[0] != 2 || n[1] != 2 || n[2] != 2 {
		t.Fatalf("6 sessions on RelayLoops 3: %v, want [2 2 2]", n)
	}

	// End the sessions of one loop: find them by their loop.
	var emptied *eventLoop
	p.Srv.mu.Lock()
	for c := range p.Srv.conns {
		if sess := c.sess.Load(); sess != nil {
			emptied = sess.l
			break
		}
	}
	p.Srv.mu.Unlock()
	kept := conns[:0]
	for _, c := range conns {
		var on *eventLoop
		pid := c.PgConn().PID()
		p.Srv.mu.Lock()
		for sc := range p.Srv.conns {
			if sess := sc.sess.Load(); sess != nil && len(sc.cancelPkt) == 16 && binary.BigEndian.Uint32(sc.cancelPkt[8:12]) == pid {
				on = sess.l
			}
		}
		p.Srv.mu.Unlock()
		if on == emptied {
			c.Close(ctx)
			continue
		}
		kept = append(kept, c)
	}
	conns = kept
	before := waitLoopCounts(t, p.Srv, 4)
	if emptied.sessions.Load() != 0 {
		t.Fatalf("counts %v after closing the 2 sessions of one loop: it still holds %d", before, emptied.sessions.Load())
	}
	for range 2 {
		open()
	}
	if got := emptied.sessions.Load(); got != 2 {
		t.Errorf("the next 2 sessions went elsewhere: the emptied loop holds %d (counts %v), want 2", got, loopCounts(p.Srv))
	}
	if n := loopCounts(p.Srv); len(n) != 3 {
		t.Errorf("%d loops, want RelayLoops 3", len(n))
	}
}
