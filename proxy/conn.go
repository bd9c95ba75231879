package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

// relayBufSize is the read size of each pump: one read, then one write of
// what was read.
const relayBufSize = 32 << 10

// conn is one client connection and, once dialed, its upstream connection.
// The handler goroutine (serve) owns both sockets until the session is
// established; then either an event loop takes them over (loop_linux.go)
// while the handler waits, or the handler runs the client→server pump itself
// and one more goroutine runs server→client.
type conn struct {
	s   *Server
	id  uint64
	log *slog.Logger
	raw net.Conn // the accepted socket; closing it ends the client side

	cr io.Reader // reads from the client (buffered or TLS); owned by the client pump
	cw net.Conn  // writes to the client; writers hold wsem
	sr io.Reader // reads from the server (buffered); owned by the server pump
	sw net.Conn  // the upstream socket; only the client pump writes to it

	clientTLS   bool
	upstreamTLS bool
	replication bool
	cancelPkt   []byte                 // CancelRequest for this session's backend, from BackendKeyData
	strings     pgwire.StandardStrings // standard_conforming_strings as the server reported it at login

	// wsem (capacity 1) serializes writes to cw: the server pump holds it
	// from showing a chunk to the tracker to writing it, so a notice
	// written under it knows where the client's stream stands. Notices
	// wait for it a bounded time, never indefinitely (see lockWrite).
	wsem chan struct{}

	tmu     sync.Mutex      // guards tracker
	tracker *pgwire.Tracker // set once the relay starts; nil before

	upstream  atomic.Pointer[net.Conn]    // set once dialed, for forceClose
	sess      atomic.Pointer[loopSession] // set when the session moves to an event loop
	closed    atomic.Bool
	closeOnce sync.Once

	loggingIn     atomic.Bool // counted in loginsActive until loggedIn
	loginDeadline time.Time   // when the login must be over; set by run

	traffic traffic // this connection's share of Stats until it ends
}

// traffic is what a connection counts for Stats while it is open; the
// Server adds it to its totals when the connection ends. Counted per
// connection, so relay threads on many CPUs never write one shared cache
// line for every message (on a 16-CPU machine, four shared counters
// written by every loop cost more than the loops' own bookkeeping).
type traffic struct {
	bytesFromClient, bytesFromServer, events, eventsDropped atomic.Uint64
}

// loggedIn ends the connection's login: it no longer counts against
// MaxLoginConnections. Safe to call more than once.
func (c *conn) loggedIn() {
	if c.loggingIn.CompareAndSwap(true, false) {
		c.s.stats.loginsActive.Add(-1)
	}
}

// rejectLogin refuses a connection over MaxLoginConnections at once, before
// its startup packet: waiting for it is what a silent client exploits.
func (c *conn) rejectLogin() {
	c.s.stats.loginsRejected.Add(1)
	c.s.stats.connsRejected.Add(1)
	c.s.logs.log(c.log, logLoginRejected, slog.LevelWarn, "connection refused: too many clients logging in (53300)",
		"max_login_connections", c.s.cfg.MaxLoginConnections, "client", c.raw.RemoteAddr().String())
	c.cw = c.raw
	c.fatal(stateTooManyConnections, fmt.Sprintf("sorry, too many clients are logging in (nplus1 --max-login-connections=%d)", c.s.cfg.MaxLoginConnections))
	c.forceClose()
}

func (s *Server) newConn(nc net.Conn) *conn {
	id := s.ids.Add(1)
	return &conn{s: s, id: id, raw: nc, log: s.cfg.Logger.With("conn", id), wsem: make(chan struct{}, 1)}
}

// bufConn reads through a bufio.Reader so bytes peeked before a TLS
// handshake reach it.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// serve handles the connection to its end. overLimit rejects it (after the
// startup packet, as PostgreSQL does) because MaxConnections is reached.
func (c *conn) serve(overLimit bool) {
	defer c.forceClose()
	start := c.s.cfg.Now()
	err := c.run(overLimit)
	var pe *pgwire.ProtocolError
	var ue *upstreamError
	switch {
	case err == nil, c.closed.Load() && !errors.As(err, &pe), isClosedErr(err):
		c.log.Debug("connection closed", "duration", c.s.cfg.Now().Sub(start))
	case errors.As(err, &pe):
		c.s.stats.protocolErrors.Add(1)
		c.s.logs.log(c.log, logProtocolError, slog.LevelWarn, "connection ended: protocol violation", "err", pe)
	case errors.As(err, &ue):
		// The database is down or unreachable: every client sees it, and
		// an operator running at --log-level warn must too. Counted in
		// Stats.UpstreamErrors already.
		c.s.logs.log(c.log, logUpstreamError, slog.LevelWarn, "cannot connect to upstream", "upstream", ue.addr, "reason", dialReason(ue.err))
	default:
		c.s.stats.connErrors.Add(1)
		c.s.logs.log(c.log, logConnError, slog.LevelInfo, "connection ended with error", "err", err)
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)
}

// How long a notice waits for the client's write side, and how long its
// write may take: a client that does not read never holds up the caller
// (Shutdown, above all) for longer.
const (
	noticeLockWait = time.Second
	noticeDeadline = time.Second
)

// Server-side losses the client is told about, as libpq words its own.
const (
	msgServerLost = "nplus1: the server closed the connection unexpectedly"
	msgShutdown   = "terminating connection because the nplus1 proxy is shutting down"
)

// lockWrite takes wsem, waiting at most wait; false when it could not.
func (c *conn) lockWrite(wait time.Duration) bool {
	select {
	case c.wsem <- struct{}{}:
		return true
	default:
	}
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case c.wsem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (c *conn) unlockWrite() { <-c.wsem }

// fatal sends a FATAL ErrorResponse to the client (best effort): given up
// when the client's write side stays busy, or the client does not read.
func (c *conn) fatal(code, msg string) {
	if sess := c.sess.Load(); sess != nil {
		sess.fatal(code, msg)
		return
	}
	if !c.lockWrite(noticeLockWait) {
		return
	}
	defer c.unlockWrite()
	c.writeNotice(code, msg)
}

// writeNotice writes a FATAL ErrorResponse to the client; the caller holds
// wsem.
func (c *conn) writeNotice(code, msg string) {
	_ = c.cw.SetWriteDeadline(time.Now().Add(noticeDeadline))
	_, _ = c.cw.Write(errorResponse(code, msg))
}

// relayState reports whether the session is between requests and whether
// what the server sent so far ends on a message boundary, with the type of
// the last message. Before the relay starts, it is neither idle nor (for a
// notice's sake) anywhere but on a boundary: login messages are written
// whole.
func (c *conn) relayState() (idle, boundary bool, last byte) {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.tracker == nil {
		return false, true, 0
	}
	boundary, last = c.tracker.BackendBoundary()
	return c.tracker.Idle(), boundary, last
}

// serverLostNotice counts a session whose server side just ended, unless
// the client asked for the end (Terminate), and reports whether the client
// should be told so (08006): not when the server explained itself (its
// last message an ErrorResponse), and only on a message boundary.
func (c *conn) serverLostNotice() bool {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.tracker == nil || c.tracker.ClientTerminated() {
		return false
	}
	c.s.stats.serverLost.Add(1)
	boundary, last := c.tracker.BackendBoundary()
	return boundary && last != 'E'
}

// loginLost tells a client whose server ended the login without a word
// (closed or reset the connection) so, and counts it; a timeout is the
// caller's to report, and a close by Shutdown or the client says nothing.
func (c *conn) loginLost(err error) {
	if isTimeout(err) || c.closed.Load() {
		return
	}
	var pe *pgwire.ProtocolError
	if errors.As(err, &pe) {
		c.fatal(stateProtocolViolation, violationNotice(pe, false))
		return
	}
	c.s.stats.serverLost.Add(1)
	c.fatal(stateConnectionFailure, "nplus1: the server closed the connection during authentication")
}

func (c *conn) run(overLimit bool) error {
	cfg := &c.s.cfg
	br := bufio.NewReaderSize(c.raw, relayBufSize)
	c.cr, c.cw = br, c.raw
	now := time.Now()
	c.loginDeadline = now.Add(cfg.LoginTimeout)
	_ = c.raw.SetDeadline(minTime(now.Add(cfg.ConnectTimeout), c.loginDeadline))

	pkt, err := c.negotiate(br)
	if err != nil && isTimeout(err) && !c.closed.Load() {
		// A client that connects and says nothing, or too slowly: counted,
		// closed without a word, as PostgreSQL does.
		c.s.stats.loginTimeouts.Add(1)
		return nil
	}
	if err != nil {
		var pe *pgwire.ProtocolError
		if errors.As(err, &pe) {
			c.fatal(stateProtocolViolation, pe.Msg)
		}
		return err
	}
	if pkt == nil { // CancelRequest, handled
		return nil
	}
	_ = c.raw.SetDeadline(c.loginDeadline)

	st, _ := pgwire.ParseStartup(pkt)
	c.replication = st.Replication
	info := st.ConnInfo(c.id, hostOf(c.raw.RemoteAddr()))
	c.log = c.log.With("user", info.User, "database", info.Database)

	if overLimit {
		c.s.stats.connsRejected.Add(1)
		c.s.logs.log(c.log, logRejected, slog.LevelWarn, "connection refused: too many clients (53300)", "max_connections", cfg.MaxConnections)
		c.fatal(stateTooManyConnections, fmt.Sprintf("sorry, too many clients already (nplus1 --max-connections=%d)", cfg.MaxConnections))
		return nil
	}
	select {
	case <-c.s.done:
		c.s.stats.connsRejected.Add(1)
		c.fatal(stateAdminShutdown, "the nplus1 proxy is shutting down")
		return nil
	default:
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	sc, err := c.s.dialUpstream(ctx)
	cancel()
	if err != nil {
		c.s.stats.upstreamErrors.Add(1)
		ue := &upstreamError{addr: cfg.Upstream, err: err}
		c.fatal(stateConnectionFailure, "nplus1: "+ue.Error())
		return ue
	}
	c.upstream.Store(&sc)
	// Counted until run returns; serve's forceClose then closes sc.
	c.s.stats.upstreamActive.Add(1)
	defer c.s.stats.upstreamActive.Add(-1)
	if c.closed.Load() { // force-closed while dialing
		sc.Close()
		return net.ErrClosed
	}
	_, c.upstreamTLS = sc.(*tls.Conn)
	c.sw = sc
	c.sr = bufio.NewReaderSize(sc, relayBufSize)

	_ = sc.SetDeadline(c.loginDeadline)
	if _, err := sc.Write(pkt); err != nil {
		c.loginLost(err)
		return fmt.Errorf("send startup packet upstream: %w", err)
	}
	ok, err := c.authenticate()
	if err != nil && isTimeout(err) && !c.closed.Load() {
		c.s.stats.loginTimeouts.Add(1)
		c.fatal(stateQueryCanceled, fmt.Sprintf("nplus1: canceling authentication due to timeout (nplus1 --login-timeout=%s)", cfg.LoginTimeout))
		return nil
	}
	if err != nil || !ok {
		return err
	}
	_ = c.raw.SetDeadline(time.Time{})
	_ = sc.SetDeadline(time.Time{})
	c.loggedIn()
	return c.relay(info)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return a.String()
}

// negotiate runs the startup phase: SSLRequest, GSSENCRequest, direct TLS and
// CancelRequest, until the startup packet, which it returns unchanged. It
// returns nil, nil when the connection was a CancelRequest.
func (c *conn) negotiate(br *bufio.Reader) ([]byte, error) {
	cfg := &c.s.cfg
	var r io.Reader = br
	for {
		if !c.clientTLS && cfg.TLS != nil {
			b, err := br.Peek(1)
			if err != nil {
				return nil, err
			}
			if b[0] == pgwire.TLSRecordStart {
				tc := tls.Server(&bufConn{Conn: c.raw, r: br}, cfg.TLS)
				if err := tc.Handshake(); err != nil {
					return nil, fmt.Errorf("direct TLS handshake: %w", err)
				}
				if tc.ConnectionState().NegotiatedProtocol != "postgresql" {
					return nil, errors.New("direct TLS connection without ALPN protocol \"postgresql\"")
				}
				c.clientTLS, c.cr, c.cw, r = true, tc, tc, tc
				continue
			}
		}
		pkt, err := readStartup(r)
		if err != nil {
			return nil, err
		}
		switch binary.BigEndian.Uint32(pkt[4:8]) {
		case pgwire.CodeSSL:
			if c.clientTLS {
				return nil, &pgwire.ProtocolError{Frontend: true, Msg: "SSLRequest on an encrypted connection"}
			}
			if cfg.TLS == nil {
				if _, err := c.raw.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				if br.Buffered() > 0 {
					return nil, errUnencryptedAfterRequest
				}
				continue
			}
			if br.Buffered() > 0 {
				// Anything sent before the handshake would be treated as if it
				// came over TLS (CVE-2021-23214): refuse, as PostgreSQL does.
				return nil, errUnencryptedAfterRequest
			}
			if _, err := c.raw.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(c.raw, cfg.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			c.clientTLS, c.cr, c.cw, r = true, tc, tc, tc
		case pgwire.CodeGSSENC:
			if c.clientTLS {
				return nil, &pgwire.ProtocolError{Frontend: true, Msg: "GSSENCRequest on an encrypted connection"}
			}
			if _, err := c.raw.Write([]byte{'N'}); err != nil {
				return nil, err
			}
			if br.Buffered() > 0 {
				return nil, errUnencryptedAfterRequest
			}
		case pgwire.CodeCancel:
			return nil, c.forwardCancel(pkt)
		default:
			if v := binary.BigEndian.Uint32(pkt[4:8]); v>>16 < 3 {
				// As PostgreSQL since 14 (which dropped protocol 2.0), but
				// told in the 3.0 format: the one format clients parse today.
				return nil, &pgwire.ProtocolError{Frontend: true, Msg: fmt.Sprintf("unsupported frontend protocol %d.%d: nplus1 supports 3.0 and later", v>>16, v&0xffff)}
			}
			return pkt, nil
		}
	}
}

// errUnencryptedAfterRequest is PostgreSQL's answer to a client that sent
// more than an SSLRequest or GSSENCRequest before reading the reply: the
// client must wait for it, and PostgreSQL refuses such connections since
// CVE-2021-23214.
var errUnencryptedAfterRequest = &pgwire.ProtocolError{Frontend: true, Msg: "received unencrypted data after SSL request"}

// forwardCancel sends a CancelRequest to the upstream unchanged. The proxy
// relays sessions one to one, so the backend PID and key the client holds are
// the server's own.
func (c *conn) forwardCancel(pkt []byte) error {
	if err := c.s.sendCancel(pkt); err != nil {
		return fmt.Errorf("forward cancel request: %w", err)
	}
	c.log.Debug("cancel request forwarded")
	return nil
}

// sendCancel delivers a CancelRequest packet to the upstream.
func (s *Server) sendCancel(pkt []byte) error {
	s.stats.cancels.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	sc, err := s.dialUpstream(ctx)
	if err != nil {
		s.stats.upstreamErrors.Add(1)
		return err
	}
	defer sc.Close()
	if _, err := sc.Write(pkt); err != nil {
		return err
	}
	// The server closes the connection once it has acted on the request;
	// wait for that, as libpq does, so the cancel has landed before the
	// caller goes on.
	_ = sc.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	_, _ = io.Copy(io.Discard, sc)
	return nil
}

// authenticate relays the authentication exchange message by message until
// the server's first ReadyForQuery (true) or an ErrorResponse (false). It is
// the one place the proxy changes bytes: AuthenticationSASL loses its
// channel-binding mechanisms (see stripChannelBinding).
func (c *conn) authenticate() (bool, error) {
	withheld := false
	var lastCode uint32
	for {
		typ, msg, err := readMessage(c.sr, false)
		if err != nil {
			c.loginLost(err)
			return false, fmt.Errorf("authentication: read from server: %w", err)
		}
		switch typ {
		case 'R':
			if len(msg) < 9 {
				return false, &pgwire.ProtocolError{Msg: "short Authentication message"}
			}
			code := binary.BigEndian.Uint32(msg[5:9])
			lastCode = code
			if code == 10 {
				var stripped bool
				msg, stripped = stripChannelBinding(msg)
				withheld = withheld || stripped
			}
			if _, err := c.cw.Write(msg); err != nil {
				return false, err
			}
			switch code {
			case 0, 12: // AuthenticationOk, SASLFinal: no reply
				continue
			}
			ctyp, cmsg, serverFirst, err := c.readClientAuth()
			if serverFirst {
				return false, c.serverSpokeFirst()
			}
			if err != nil {
				if withheld && c.clientTLS && isClosedErr(err) {
					c.log.Warn("client left during SCRAM authentication after the proxy withheld channel binding; " +
						"nplus1 terminates TLS, so SCRAM-SHA-256-PLUS cannot work through it: " + channelBindingAdvice)
				}
				var pe *pgwire.ProtocolError
				if errors.As(err, &pe) {
					c.fatal(stateProtocolViolation, pe.Msg)
				}
				return false, err
			}
			switch ctyp {
			case 'p':
			case 'X':
				return false, nil
			default:
				err := &pgwire.ProtocolError{Frontend: true, Msg: fmt.Sprintf("expected an authentication response, got message type %q", ctyp)}
				c.fatal(stateProtocolViolation, err.Msg)
				return false, err
			}
			if lastCode == 10 && withheld && c.clientTLS && wantsChannelBinding(cmsg) {
				// The client saw TLS and either chose a -PLUS mechanism or
				// flagged "I support channel binding, you did not offer it"
				// (gs2 flag 'y'). The server, whose own connection is TLS and
				// which did offer it, would reject the second as a downgrade
				// attack with a bare "channel binding negotiation error"; the
				// flag is covered by the client's proof, so it cannot be
				// rewritten. Say what is wrong and what to change instead.
				c.fatal(stateInvalidAuthorization, "nplus1 terminates TLS on both sides, so SCRAM channel binding cannot pass through it: "+channelBindingAdvice)
				return false, nil
			}
			if _, err := c.sw.Write(cmsg); err != nil {
				return false, err
			}
		case 'E':
			_, err := c.cw.Write(msg)
			return false, err
		case 'Z':
			_, err := c.cw.Write(msg)
			return err == nil, err
		case 'K':
			if len(msg) >= 9 {
				// CancelRequest: length, code, then the BackendKeyData body
				// (process ID and secret key, 4 bytes in protocol 3.0 and up
				// to 256 in 3.2), as is.
				pkt := make([]byte, 8+len(msg)-5)
				binary.BigEndian.PutUint32(pkt[0:], uint32(len(pkt)))
				binary.BigEndian.PutUint32(pkt[4:], pgwire.CodeCancel)
				copy(pkt[8:], msg[5:])
				c.cancelPkt = pkt
			}
			if _, err := c.cw.Write(msg); err != nil {
				return false, err
			}
		case 'v', 'S', 'N':
			if typ == 'S' {
				if s, ok := pgwire.StandardStringsStatus(msg[5:]); ok {
					c.strings = s
				}
			}
			if _, err := c.cw.Write(msg); err != nil {
				return false, err
			}
		default:
			return false, &pgwire.ProtocolError{Msg: fmt.Sprintf("unexpected message type %q during authentication", typ)}
		}
	}
}

// readClientAuth reads the client's next authentication message while
// watching the server: a server that speaks or closes first (its own
// authentication_timeout, a restart) ends the login at once, with
// serverFirst set, instead of leaving its socket half closed until the
// client answers or the login times out.
func (c *conn) readClientAuth() (typ byte, msg []byte, serverFirst bool, err error) {
	sr, ok := c.sr.(*bufio.Reader)
	if !ok {
		typ, msg, err = readMessage(c.cr, true)
		return typ, msg, false, err
	}
	var clientDone, spoke atomic.Bool
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_, perr := sr.Peek(1)
		if !clientDone.Load() && !isTimeout(perr) { // a timeout is the login's own
			spoke.Store(true)
			_ = c.raw.SetReadDeadline(time.Now()) // wake the client read
		}
	}()
	typ, msg, err = readMessage(c.cr, true)
	clientDone.Store(true)
	_ = c.sw.SetReadDeadline(time.Now()) // wake the watcher
	<-watched
	_ = c.sw.SetReadDeadline(c.loginDeadline)
	if spoke.Load() {
		_ = c.raw.SetReadDeadline(c.loginDeadline)
		return 0, nil, true, nil
	}
	return typ, msg, false, err
}

// serverSpokeFirst ends a login whose server spoke out of turn: its
// ErrorResponse goes to the client as is; a close becomes 08006.
func (c *conn) serverSpokeFirst() error {
	typ, msg, err := readMessage(c.sr, false)
	switch {
	case err != nil:
		c.loginLost(err)
		return fmt.Errorf("authentication: server closed the connection: %w", err)
	case typ == 'E':
		_, err := c.cw.Write(msg)
		return err
	default:
		err := &pgwire.ProtocolError{Msg: fmt.Sprintf("unexpected message type %q from the server while the client was authenticating", typ)}
		c.fatal(stateProtocolViolation, err.Msg)
		return err
	}
}

// channelBindingAdvice is what a client whose SCRAM exchange wants channel
// binding through the proxy should change.
const channelBindingAdvice = "set channel_binding=disable in the client's connection settings, " +
	"or connect to nplus1 without TLS (its upstream connection stays encrypted)"

// wantsChannelBinding reports whether a SASLInitialResponse chose a -PLUS
// mechanism or carries the GS2 flag 'y' (client supports channel binding).
func wantsChannelBinding(msg []byte) bool {
	if len(msg) < 6 {
		return false
	}
	name, rest, ok := cstring(msg[5:])
	if !ok || !strings.HasPrefix(name, "SCRAM-") {
		return false
	}
	if strings.HasSuffix(name, "-PLUS") {
		return true
	}
	// int32 length of the data, then the client-first-message: gs2 flag first.
	return len(rest) >= 5 && (rest[4] == 'y' || rest[4] == 'p')
}

// relay runs the session until either side ends: on an event loop when
// there is one for it, else on two pumps.
func (c *conn) relay(info *pgwire.ConnInfo) error {
	cfg := &c.s.cfg
	var emit func(*pgwire.Execution)
	if cfg.Events != nil && !c.replication {
		emit = c.emit
	}
	t := pgwire.NewTracker(info, emit, pgwire.TrackerOptions{
		MaxMessageBytes:    cfg.MaxMessageBytes,
		MaxSQLBytes:        cfg.MaxSQLBytes,
		MaxStatements:      cfg.MaxStatements,
		MaxPending:         cfg.MaxPending,
		KeepParams:         cfg.KeepParams,
		MaxParamBytes:      cfg.MaxParamBytes,
		Evidence:           cfg.Evidence,
		EvidenceBudget:     cfg.EvidenceBudget,
		MaxEvidenceRows:    cfg.MaxEvidenceRows,
		MaxEvidenceColumns: cfg.MaxEvidenceColumns,
	})
	t.StartStandardStrings(c.strings)
	c.tmu.Lock()
	c.tracker = t
	c.tmu.Unlock()

	var err error
	var serverEnded bool
	if l := c.s.loopFor(c); l != nil {
		err, serverEnded = c.relayOnLoop(l)
	} else {
		err, serverEnded = c.relayPumps()
	}
	if !serverEnded {
		// The client left, broke the protocol, or was closed by Shutdown. A
		// backend busy with a statement only notices its client is gone
		// when it next reads or writes, which for a long query may be much
		// later: cancel what it is running, as PgBouncer does, so no orphan
		// work stays behind.
		c.tmu.Lock()
		busy := !t.Idle()
		c.tmu.Unlock()
		if busy && c.cancelPkt != nil {
			if cerr := c.s.sendCancel(c.cancelPkt); cerr != nil {
				c.s.logs.log(c.log, logCancelFailed, slog.LevelInfo, "cancel after client left failed", "err", cerr)
			}
		}
	}
	c.forceClose()
	c.tmu.Lock()
	t.Close() // emits what was held for a ReadyForQuery that will not come
	c.tmu.Unlock()
	return err
}

// relayPumps runs the two pumps until either side ends: the client→server
// pump on this goroutine, server→client on another. It returns why the
// session ended and whether the server's side ended it.
func (c *conn) relayPumps() (error, bool) {
	type result struct {
		err   error
		first bool
	}
	done := make(chan result, 1)
	go func() {
		err := c.pumpServer()
		first := !c.closed.Load()
		if first && !isProtocolError(err) && c.lockWrite(noticeLockWait) {
			// Written before the close: everything the pump showed the
			// tracker has been written, so the boundary is the client's.
			if c.serverLostNotice() {
				c.writeNotice(stateConnectionFailure, msgServerLost)
			}
			c.unlockWrite()
		}
		c.forceClose() // the server side ended: so does the client side
		done <- result{err, first}
	}()
	err := c.pumpClient()
	c.forceClose() // unblocks the server pump
	sr := <-done
	return firstReal(err, sr.err), sr.first
}

// firstReal picks the error that explains why a connection ended: a protocol
// violation first, then any error that is not just a closed socket.
func firstReal(errs ...error) error {
	var pe *pgwire.ProtocolError
	for _, err := range errs {
		if errors.As(err, &pe) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil && !isClosedErr(err) {
			return err
		}
	}
	return nil
}

// pumpClient forwards the client's bytes to the server. The tracker sees
// each chunk before it is written, so no reply can reach the tracker before
// its request.
func (c *conn) pumpClient() error {
	return c.pump(c.cr, c.sw, true)
}

// pumpServer forwards the server's bytes to the client. A protocol error
// here means the server broke the protocol (or sent more than
// MaxMessageBytes): nothing sensible can follow.
func (c *conn) pumpServer() error {
	return c.pump(c.sr, c.cw, false)
}

func isProtocolError(err error) bool {
	var pe *pgwire.ProtocolError
	return errors.As(err, &pe)
}

// observe counts a chunk and shows it to the tracker: the client's
// (Frontend) or the server's (Backend).
func (c *conn) observe(fromClient bool, b []byte, now time.Time) error {
	if relayOnly {
		return nil
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if fromClient {
		c.traffic.bytesFromClient.Add(uint64(len(b)))
		return c.tracker.Frontend(b, now)
	}
	c.traffic.bytesFromServer.Add(uint64(len(b)))
	return c.tracker.Backend(b, now)
}

// violationNotice is the FATAL 08P01 message for a protocol violation: the
// client's own, or the server's, which the proxy reports as its own.
func violationNotice(pe *pgwire.ProtocolError, fromClient bool) string {
	if fromClient {
		return pe.Msg
	}
	return "nplus1: " + pe.Error()
}

// pump is one direction of the relay: read, let the tracker see the chunk,
// write it on unchanged (one write per read), until EOF (nil) or an error.
// The server's direction holds wsem from observing a chunk to writing it,
// which serializes its writes with notices to the client. A
// pgwire.ProtocolError from the tracker sends the client FATAL 08P01.
//
// A write has no deadline (a client may read a large result slowly), but
// none is ever waited on under a lock that Shutdown needs: closing the
// socket (forceClose) ends it.
func (c *conn) pump(r io.Reader, w io.Writer, fromClient bool) error {
	buf := make([]byte, relayBufSize)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if !fromClient {
				c.wsem <- struct{}{}
			}
			if terr := c.observe(fromClient, buf[:n], c.s.cfg.Now()); terr != nil {
				var pe *pgwire.ProtocolError
				if fromClient && errors.As(terr, &pe) {
					c.fatal(stateProtocolViolation, violationNotice(pe, fromClient))
				} else if errors.As(terr, &pe) {
					c.writeNotice(stateProtocolViolation, violationNotice(pe, fromClient))
				}
				if !fromClient {
					c.unlockWrite()
				}
				return terr
			}
			_, err := w.Write(buf[:n])
			if !fromClient {
				c.unlockWrite()
			}
			if err != nil {
				return err
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// closeIfIdle ends the connection when it is between transactions with
// nothing in flight, telling the client why (used by Shutdown). It never
// waits: a session whose client write side is busy is tried again later.
func (c *conn) closeIfIdle() {
	if sess := c.sess.Load(); sess != nil {
		sess.closeWithNotice(stateAdminShutdown, msgShutdown, true)
		return
	}
	if !c.lockWrite(0) {
		return
	}
	idle, boundary, _ := c.relayState()
	if idle && boundary {
		c.writeNotice(stateAdminShutdown, msgShutdown)
		c.forceClose() // under wsem: the pump writes nothing after the notice
	}
	c.unlockWrite()
}

// closeAtShutdown ends the connection when Shutdown's time is up: the
// client is told (57P01) when its stream is at a message boundary and its
// write side is free within a short wait; it is closed either way.
func (c *conn) closeAtShutdown() {
	if sess := c.sess.Load(); sess != nil {
		sess.closeWithNotice(stateAdminShutdown, msgShutdown, false)
		c.forceClose()
		return
	}
	if !c.lockWrite(noticeLockWait / 10) {
		c.forceClose()
		return
	}
	if _, boundary, _ := c.relayState(); boundary {
		c.writeNotice(stateAdminShutdown, msgShutdown)
	}
	c.forceClose()
	c.unlockWrite()
}

// forceClose closes both sockets; it is idempotent and unblocks both pumps,
// or ends the session on its event loop.
func (c *conn) forceClose() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.raw.Close()
		if sc := c.upstream.Load(); sc != nil {
			(*sc).Close()
		}
		if sess := c.sess.Load(); sess != nil {
			sess.close()
		}
	})
}

// errServerNoSSL: the upstream answered an SSLRequest with N.
var errServerNoSSL = errors.New("server does not support SSL")

// dialUpstream connects to the upstream and negotiates TLS per the SSL mode.
func (s *Server) dialUpstream(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetKeepAlive(true)
	}
	if s.cfg.UpstreamSSLMode == SSLDisable {
		return nc, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], pgwire.CodeSSL)
	var resp [1]byte
	if _, err := nc.Write(req[:]); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send SSLRequest: %w", err)
	}
	if _, err := io.ReadFull(nc, resp[:]); err != nil {
		nc.Close()
		return nil, fmt.Errorf("read SSLRequest answer: %w", err)
	}
	switch resp[0] {
	case 'S':
	case 'N':
		if s.cfg.UpstreamSSLMode == SSLPrefer {
			_ = nc.SetDeadline(time.Time{})
			return nc, nil
		}
		nc.Close()
		return nil, fmt.Errorf("%w, but upstream sslmode is %s", errServerNoSSL, s.cfg.UpstreamSSLMode)
	default:
		nc.Close()
		return nil, fmt.Errorf("unexpected answer %q to SSLRequest", resp[0])
	}
	tcfg := &tls.Config{}
	if s.cfg.UpstreamTLS != nil {
		tcfg = s.cfg.UpstreamTLS.Clone()
	}
	if s.cfg.UpstreamSSLMode == SSLVerifyFull {
		if tcfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(s.cfg.Upstream)
			tcfg.ServerName = host
		}
	} else {
		tcfg.InsecureSkipVerify = true
	}
	tc := tls.Client(nc, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	return tc, nil
}
