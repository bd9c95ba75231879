package proxy

// Helpers of the integration tests: a proxy started in-process in front of
// the shared PostgreSQL (itPG), an event collector, pgx connections that close
// themselves, and a raw wire-protocol client for what no driver will send.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/pgwire"
)

// itProxy is a proxy serving on a loopback port for one test.
type itProxy struct {
	Srv  *Server
	Addr string // host:port the clients dial

	mu     sync.Mutex
	events []*pgwire.Execution // guarded by mu; filled by the collector

	stop      chan struct{} // closed to stop the collector
	collected chan struct{} // closed when the collector has returned
	served    chan error    // Serve's result
	shutOnce  sync.Once
	shutErr   error
}

// itStartProxy starts a proxy for the test with cfg. An empty Upstream is the
// shared server; a nil Events gets a large channel drained into p.events
// (tests that want their own channel pass it and read it themselves). The
// proxy is shut down when the test ends.
func itStartProxy(t *testing.T, cfg Config) *itProxy {
	t.Helper()
	if cfg.Upstream == "" {
		cfg.Upstream = itPG(t).Addr()
	}
	p := &itProxy{stop: make(chan struct{}), collected: make(chan struct{}), served: make(chan error, 1)}
	var events chan *pgwire.Execution
	if cfg.Events == nil {
		events = make(chan *pgwire.Execution, 1<<16)
		cfg.Events = events
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Srv, p.Addr = srv, ln.Addr().String()
	go func() { p.served <- srv.Serve(ln) }()
	if events != nil {
		go func() {
			defer close(p.collected)
			for {
				select {
				case e := <-events:
					p.mu.Lock()
					p.events = append(p.events, e)
					p.mu.Unlock()
				case <-p.stop:
					return
				}
			}
		}()
	} else {
		close(p.collected)
	}
	t.Cleanup(func() {
		before, start := srv.Stats(), time.Now()
		if err, first := p.shutdown(10 * time.Second); err != nil && first {
			t.Errorf("proxy Shutdown at the end of the test: %v (connections still open after 10s: %+v)", err, srv.Stats())
		}
		if d := time.Since(start); d > time.Second {
			t.Logf("proxy Shutdown at the end of the test took %s; stats before: %+v", d.Round(time.Millisecond), before)
		}
		select {
		case err := <-p.served:
			if err != nil && !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want nil or ErrServerClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of Shutdown")
		}
		close(p.stop)
		<-p.collected
	})
	return p
}

// shutdown calls Shutdown once with a timeout and returns its result, and
// whether this call was the one that ran it.
func (p *itProxy) shutdown(timeout time.Duration) (err error, first bool) {
	p.shutOnce.Do(func() {
		first = true
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		p.shutErr = p.Srv.Shutdown(ctx)
	})
	return p.shutErr, first
}

// URL is a connection URL for user through the proxy (see pgtest.URLFor).
func (p *itProxy) URL(user string, extra ...string) string {
	return pgtest.URLFor(p.Addr, user, extra...)
}

// Events returns the events collected so far that match keep (all when nil).
func (p *itProxy) Events(keep func(*pgwire.Execution) bool) []*pgwire.Execution {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*pgwire.Execution
	for _, e := range p.events {
		if keep == nil || keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// WaitEvents waits until at least n collected events match keep and returns
// all that match. Events are emitted as replies pass through the proxy, so
// they may arrive a moment after the client saw its result. On timeout it
// reports an error (not fatal) and returns what it has.
func (p *itProxy) WaitEvents(t testing.TB, n int, keep func(*pgwire.Execution) bool) []*pgwire.Execution {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := p.Events(keep)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Errorf("got %d matching events after 5s, want at least %d; all events:\n%s", len(evs), n, itDump(p.Events(nil)))
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// itApp keeps the events of connections with this application_name.
func itApp(name string) func(*pgwire.Execution) bool {
	return func(e *pgwire.Execution) bool { return e.Conn != nil && e.Conn.ApplicationName == name }
}

// itAppSQL keeps the events of application name with exactly this SQL.
func itAppSQL(name, sql string) func(*pgwire.Execution) bool {
	return func(e *pgwire.Execution) bool {
		return e.Conn != nil && e.Conn.ApplicationName == name && e.SQL == sql
	}
}

// itDump formats events for failure messages.
func itDump(evs []*pgwire.Execution) string {
	var b strings.Builder
	for i, e := range evs {
		if i == 50 {
			fmt.Fprintf(&b, "  ... %d more\n", len(evs)-50)
			break
		}
		app := ""
		if e.Conn != nil {
			app = e.Conn.ApplicationName
		}
		sql := e.SQL
		if len(sql) > 100 {
			sql = sql[:100] + "..."
		}
		fmt.Fprintf(&b, "  app=%q sql=%q idx=%d proto=%s prepared=%q params=%d hash=%x cmd=%q rows=%d state=%q tx=%v txend=%v\n",
			app, sql, e.StatementIndex, e.Protocol, e.Prepared, e.NumParams, e.ParamsHash, e.Command, e.Rows, e.SQLState, e.InTransaction, e.TxEnd)
	}
	return b.String()
}

// itCheckEvent reports every field of got that differs from want; only the
// fields set in want (non-zero, or Rows != 0) are compared, plus SQLState.
func itCheckEvent(t testing.TB, got *pgwire.Execution, want itWant) {
	t.Helper()
	var diffs []string
	if want.SQL != "" && got.SQL != want.SQL {
		diffs = append(diffs, fmt.Sprintf("SQL %q, want %q", got.SQL, want.SQL))
	}
	if want.Protocol != "" && got.Protocol != want.Protocol {
		diffs = append(diffs, fmt.Sprintf("Protocol %q, want %q", got.Protocol, want.Protocol))
	}
	if want.Command != "" && got.Command != want.Command {
		diffs = append(diffs, fmt.Sprintf("Command %q, want %q", got.Command, want.Command))
	}
	if want.Rows != nil && got.Rows != *want.Rows {
		diffs = append(diffs, fmt.Sprintf("Rows %d, want %d", got.Rows, *want.Rows))
	}
	if got.SQLState != want.SQLState {
		diffs = append(diffs, fmt.Sprintf("SQLState %q, want %q", got.SQLState, want.SQLState))
	}
	if want.NumParams != nil && got.NumParams != *want.NumParams {
		diffs = append(diffs, fmt.Sprintf("NumParams %d, want %d", got.NumParams, *want.NumParams))
	}
	if want.InTx != nil && got.InTransaction != *want.InTx {
		diffs = append(diffs, fmt.Sprintf("InTransaction %v, want %v", got.InTransaction, *want.InTx))
	}
	if got.Conn == nil {
		diffs = append(diffs, "Conn is nil")
	}
	if got.End.Before(got.Start) || got.Start.IsZero() {
		diffs = append(diffs, fmt.Sprintf("Start %v, End %v: want 0 < Start <= End", got.Start, got.End))
	}
	if len(diffs) > 0 {
		t.Errorf("event %s:\n  %s", itDump([]*pgwire.Execution{got}), strings.Join(diffs, "\n  "))
	}
}

// itWant is what itCheckEvent compares; nil pointers are not compared.
type itWant struct {
	SQL, Protocol, Command, SQLState string
	Rows                             *int64
	NumParams                        *int
	InTx                             *bool
}

func itI64(v int64) *int64 { return &v }
func itInt(v int) *int     { return &v }
func itBool(v bool) *bool  { return &v }

// itCtx is a context that ends with the test or after d.
func itCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// itConnect opens a pgx connection that is closed when the test ends.
func itConnect(t testing.TB, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", itRedact(url), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// itRedact hides the password in a URL for messages.
func itRedact(url string) string { return strings.ReplaceAll(url, pgtest.Password, "***") }

// itDirect is a superuser pgx connection straight to the server, bypassing
// the proxy, for looking at pg_stat_activity and friends.
func itDirect(t testing.TB, ctx context.Context) *pgx.Conn {
	t.Helper()
	return itConnect(t, ctx, itPG(t).URL(pgtest.Superuser, "application_name=it_direct"))
}

// itPgErr returns err's SQLSTATE and message when it is a server error.
func itPgErr(err error) (code, msg string, ok bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message, true
	}
	return "", "", false
}

// itWantCode fails unless err is a PgError with SQLSTATE code.
func itWantCode(t testing.TB, err error, code string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("got error %v (%T), want a server error with SQLSTATE %s", err, err, code)
		return nil
	}
	if pe.Code != code {
		t.Errorf("got SQLSTATE %s (%s), want %s", pe.Code, pe.Message, code)
	}
	return pe
}

// itEventually polls cond until it holds or timeout passes, then fails with
// what cond last said.
func itEventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after %s: %s", timeout, why)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// itWaitNoConns waits until the proxy has no open connection.
func itWaitNoConns(t testing.TB, p *itProxy, timeout time.Duration) {
	t.Helper()
	itEventually(t, timeout, func() (bool, string) {
		st := p.Srv.Stats()
		return st.ConnsActive == 0 && st.UpstreamActive == 0,
			fmt.Sprintf("Stats().ConnsActive = %d, UpstreamActive = %d, want 0", st.ConnsActive, st.UpstreamActive)
	})
}

// itProxyTLS is a client-facing TLS configuration for the proxy, the file
// holding the CA that signed its certificate, and that CA as a pool.
func itProxyTLS(t testing.TB) (*tls.Config, string, *x509.CertPool) {
	t.Helper()
	cert, caPEM, err := pgtest.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "proxy-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"postgresql"}}, caFile, pool
}

// itUpstreamTLS trusts the shared server's CA.
func itUpstreamTLS(t testing.TB) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(itPG(t).CACert) {
		t.Fatal("server CA: no certificate in PEM")
	}
	return &tls.Config{RootCAs: pool}
}

// ---- raw wire protocol ----

// itRaw is a client speaking the wire protocol by hand through pgproto3.
type itRaw struct {
	t  testing.TB
	nc net.Conn
	fe *pgproto3.Frontend
}

// itDialRaw dials addr; every read and write must finish within 30s.
func itDialRaw(t testing.TB, addr string) *itRaw {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &itRaw{t: t, nc: nc, fe: pgproto3.NewFrontend(nc, nc)}
}

// itRawSession dials addr and completes startup as the trust superuser.
func itRawSession(t testing.TB, addr, app string) *itRaw {
	t.Helper()
	r := itDialRaw(t, addr)
	r.startup(map[string]string{"user": pgtest.Superuser, "database": pgtest.Database, "application_name": app})
	return r
}

// startup sends a protocol 3.0 StartupMessage and reads until ReadyForQuery.
func (r *itRaw) startup(params map[string]string) {
	r.t.Helper()
	r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	r.flush()
	for {
		switch m := r.recv().(type) {
		case *pgproto3.AuthenticationOk, *pgproto3.ParameterStatus, *pgproto3.BackendKeyData:
		case *pgproto3.ReadyForQuery:
			return
		case *pgproto3.ErrorResponse:
			r.t.Fatalf("startup: ErrorResponse %s: %s", m.Code, m.Message)
		default:
			r.t.Fatalf("startup: unexpected %T", m)
		}
	}
}

func (r *itRaw) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	r.flush()
}

func (r *itRaw) flush() {
	r.t.Helper()
	if err := r.fe.Flush(); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// recv returns the next backend message; it is valid until the next recv.
func (r *itRaw) recv() pgproto3.BackendMessage {
	r.t.Helper()
	m, err := r.fe.Receive()
	if err != nil {
		r.t.Fatalf("receive: %v", err)
	}
	return m
}

// expect receives len(types) messages and fails unless each has the type of
// the corresponding example; it returns them (only the last stays valid).
func (r *itRaw) expect(what string, types ...pgproto3.BackendMessage) []pgproto3.BackendMessage {
	r.t.Helper()
	out := make([]pgproto3.BackendMessage, 0, len(types))
	for i, want := range types {
		m := r.recv()
		if fmt.Sprintf("%T", m) != fmt.Sprintf("%T", want) {
			extra := ""
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				extra = fmt.Sprintf(" (%s: %s)", e.Code, e.Message)
			}
			r.t.Fatalf("%s: message %d is %T%s, want %T", what, i, m, extra, want)
		}
		out = append(out, m)
	}
	return out
}

// query runs a simple query and returns the first column of every row and
// the CommandComplete tags.
func (r *itRaw) query(sql string) (vals []string, tags []string) {
	r.t.Helper()
	r.send(&pgproto3.Query{String: sql})
	for {
		switch m := r.recv().(type) {
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				vals = append(vals, string(m.Values[0]))
			}
		case *pgproto3.CommandComplete:
			tags = append(tags, string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			r.t.Fatalf("query %q: %s: %s", sql, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return vals, tags
		}
	}
}

// itReadUntilClosed reads raw bytes until EOF or an error and reports what
// arrived and whether the connection ended (false: it was still open at the
// deadline).
func itReadUntilClosed(nc net.Conn, timeout time.Duration) ([]byte, bool) {
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, false
	}
	return b, true
}

// itStartupPacket builds a startup-phase packet with this version code and
// key/value parameters.
func itStartupPacket(version uint32, kv ...string) []byte {
	b := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(b[4:], version)
	for _, s := range kv {
		b = append(b, s...)
		b = append(b, 0)
	}
	if len(kv) > 0 || version>>16 == 3 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// itRawMsg is one backend message as bytes (type, length, body).
type itRawMsg struct {
	Type byte
	Raw  []byte // the whole message, type byte included
}

// itReadRawMsg reads one typed message from br.
func itReadRawMsg(br *bufio.Reader) (itRawMsg, error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return itRawMsg{}, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > 1<<24 {
		return itRawMsg{}, fmt.Errorf("message %q with length %d", hdr[0], n)
	}
	raw := make([]byte, 1+n)
	copy(raw, hdr)
	if _, err := io.ReadFull(br, raw[5:]); err != nil {
		return itRawMsg{}, err
	}
	return itRawMsg{Type: hdr[0], Raw: raw}, nil
}

// itErrorFields decodes the fields of an ErrorResponse/NoticeResponse.
func itErrorFields(raw []byte) map[byte]string {
	f := map[byte]string{}
	body := raw[5:]
	for len(body) > 1 {
		code := body[0]
		end := 1
		for end < len(body) && body[end] != 0 {
			end++
		}
		f[code] = string(body[1:end])
		if end >= len(body) {
			break
		}
		body = body[end+1:]
	}
	return f
}

// itFirstError finds the first ErrorResponse in raw bytes read from a
// connection and returns its SQLSTATE and message.
func itFirstError(b []byte) (code, msg string, ok bool) {
	br := bufio.NewReader(strings.NewReader(string(b)))
	// A lone 'N' or 'S' answer to an SSLRequest may come first.
	if len(b) > 0 && (b[0] == 'N' || b[0] == 'S') && (len(b) == 1 || b[1] == 'E') {
		_, _ = br.ReadByte()
	}
	for {
		m, err := itReadRawMsg(br)
		if err != nil {
			return "", "", false
		}
		if m.Type == 'E' {
			f := itErrorFields(m.Raw)
			return f['C'], f['M'], true
		}
	}
}

// ---- client programs ----

// itTool returns the path of a PostgreSQL client program; a missing one is a
// failure, never a skip.
func itTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: install the PostgreSQL client programs (Debian/Ubuntu: apt-get install postgresql-client)", name)
	}
	return path
}

// itExec runs a client program with a clean PG* environment and returns its
// stdout and stderr.
func itExec(t testing.TB, ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, itTool(t, name), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=10", "PGTZ=UTC")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	return out.String(), errb.String(), err
}
