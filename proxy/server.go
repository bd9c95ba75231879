package proxy

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

// Stats are the server's counters since it was created.
type Stats struct {
	ConnsAccepted   uint64 // client connections accepted
	ConnsRejected   uint64 // refused by MaxConnections or shutdown
	ConnsActive     int64  // client connections open now
	ConnErrors      uint64 // connections that ended with an error other than a clean close
	UpstreamErrors  uint64 // failed upstream dials or TLS handshakes
	UpstreamActive  int64  // upstream connections of client sessions open now
	ProtocolErrors  uint64 // connections ended by a pgwire.ProtocolError
	Cancels         uint64 // CancelRequests forwarded
	BytesFromClient uint64
	BytesFromServer uint64
	Events          uint64 // executions handed to Config.Events
	EventsDropped   uint64 // executions dropped because Events was full
	LoopSessions    uint64 // sessions relayed by an event loop rather than goroutine pumps
	LoginsActive    int64  // client connections logging in now (accepted, not yet authenticated)
	LoginsRejected  uint64 // refused because MaxLoginConnections were logging in
	LoginTimeouts   uint64 // closed because their login took longer than LoginTimeout
	ServerLost      uint64 // sessions (or logins) the server's side ended, not after the client's Terminate
}

// stats is the live, atomically updated form of Stats.
type stats struct {
	connsAccepted, connsRejected, connErrors, upstreamErrors, protocolErrors, cancels atomic.Uint64
	connsActive, upstreamActive, loginsActive                                         atomic.Int64
	loginsRejected, loginTimeouts, serverLost                                         atomic.Uint64
	loopSessions                                                                      atomic.Uint64
	ended                                                                             traffic // what ended connections counted; guarded by Server.mu (for its sum with the open ones)
}

// Server is the proxy. Create it with New, run it with Serve, stop it with
// Shutdown. Each client connection is handled by one goroutine that owns both
// sockets until the session is established; then an event loop relays it
// (plaintext sessions on Linux, see loop_linux.go) or two pumps do
// (client→server and server→client). The handler waits for the session's
// end before it returns.
type Server struct {
	cfg   Config
	stats stats
	ids   atomic.Uint64
	logs  logLimiter // the lines a flood of connections would repeat

	mu        sync.Mutex
	listeners map[net.Listener]struct{} // guarded by mu
	conns     map[*conn]struct{}        // guarded by mu
	shutdown  bool                      // guarded by mu
	wg        sync.WaitGroup            // one per connection handler
	done      chan struct{}             // closed by Shutdown; never sent on

	loopMu      sync.Mutex
	loops       []*eventLoop // guarded by loopMu; started with the first session that can use them
	loopsClosed bool         // guarded by loopMu: stopped by Shutdown
	loopNext    uint64       // guarded by loopMu: where loopFor's search starts
	maxLoops    int          // guarded by loopMu: loops to start at most; 0 until the first session
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if relayOnly {
		cfg.Logger.Warn("measurement build (tag nplus1_relayonly): the relay shows nothing to the tracker; nothing is tracked or found")
	}
	return &Server{
		cfg:       cfg,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		done:      make(chan struct{}),
	}, nil
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts connections on ln until Shutdown; it returns ErrServerClosed
// after Shutdown and the accept error otherwise. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.stats.connsAccepted.Add(1)
		c := s.newConn(nc)
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			s.stats.connsRejected.Add(1)
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		active := s.stats.connsActive.Add(1)
		logins := s.stats.loginsActive.Add(1)
		c.loggingIn.Store(true)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.stats.connsActive.Add(-1)
				s.mu.Lock()
				delete(s.conns, c)
				s.stats.ended.add(&c.traffic) // under mu: Stats counts it once, in conns or in ended
				s.mu.Unlock()
			}()
			defer c.loggedIn()
			if s.cfg.MaxLoginConnections > 0 && logins > int64(s.cfg.MaxLoginConnections) {
				c.rejectLogin()
				return
			}
			c.serve(s.cfg.MaxConnections > 0 && active > int64(s.cfg.MaxConnections))
		}()
	}
}

// Shutdown stops accepting, lets connections finish what is in flight until
// ctx is done (a connection that is idle between transactions is closed at
// once, with the FATAL 57P01 PostgreSQL sends at shutdown), then closes the
// rest. It returns ctx.Err() when it had to force connections closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutdown {
		s.shutdown = true
		close(s.done)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()

	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, c := range s.connList() {
			c.closeIfIdle()
		}
		select {
		case <-finished:
			s.stopLoops()
			return nil
		case <-ctx.Done():
			for _, c := range s.connList() {
				go c.closeAtShutdown()
			}
			<-finished
			s.stopLoops()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// connList is a snapshot of the sessions: Shutdown acts on them without
// holding mu, so a session that is slow to close never stalls the others
// (or the accept loop's bookkeeping).
func (s *Server) connList() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	return list
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	var t traffic
	s.mu.Lock()
	t.add(&s.stats.ended)
	for c := range s.conns {
		t.add(&c.traffic)
	}
	s.mu.Unlock()
	return Stats{
		ConnsAccepted:   s.stats.connsAccepted.Load(),
		ConnsRejected:   s.stats.connsRejected.Load(),
		ConnsActive:     s.stats.connsActive.Load(),
		ConnErrors:      s.stats.connErrors.Load(),
		UpstreamErrors:  s.stats.upstreamErrors.Load(),
		UpstreamActive:  s.stats.upstreamActive.Load(),
		ProtocolErrors:  s.stats.protocolErrors.Load(),
		Cancels:         s.stats.cancels.Load(),
		BytesFromClient: t.bytesFromClient.Load(),
		BytesFromServer: t.bytesFromServer.Load(),
		Events:          t.events.Load(),
		EventsDropped:   t.eventsDropped.Load(),
		LoopSessions:    s.stats.loopSessions.Load(),
		LoginsActive:    s.stats.loginsActive.Load(),
		LoginsRejected:  s.stats.loginsRejected.Load(),
		LoginTimeouts:   s.stats.loginTimeouts.Load(),
		ServerLost:      s.stats.serverLost.Load(),
	}
}

// loopFor picks the event loop that relays c's session, and counts the
// session on it; nil means goroutine pumps: TLS on either side,
// Config.Relay is RelayGoroutines, sockets without a file descriptor, or a
// platform (or process) where no loop starts.
func (s *Server) loopFor(c *conn) *eventLoop {
	if !loopSupported || s.cfg.Relay == RelayGoroutines || c.clientTLS || c.upstreamTLS {
		return nil
	}
	if _, ok := c.raw.(syscall.Conn); !ok { // a listener whose conns have no descriptor
		return nil
	}
	if _, ok := c.sw.(syscall.Conn); !ok {
		return nil
	}
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.loopsClosed {
		return nil
	}
	if s.maxLoops == 0 {
		s.maxLoops = s.cfg.RelayLoops
		if s.maxLoops == 0 {
			s.maxLoops = DefaultRelayLoops(runtime.GOMAXPROCS(0))
		}
	}
	// The loop with the fewest sessions: placing by accept order would pile
	// long sessions on some loops while short ones leave others idle. Ties
	// go round the loops from a moving start. Loops start as sessions need
	// them (none has room, up to maxLoops), so a proxy with a few sessions
	// on a big machine has a few threads.
	var best *eventLoop
	if n := len(s.loops); n > 0 {
		s.loopNext++
		start := int(s.loopNext % uint64(n))
		best = s.loops[start]
		for i := 1; i < n; i++ {
			if l := s.loops[(start+i)%n]; l.sessions.Load() < best.sessions.Load() {
				best = l
			}
		}
	}
	if (best == nil || best.sessions.Load() > 0) && len(s.loops) < s.maxLoops {
		l, err := newEventLoop(s)
		switch {
		case err == nil:
			s.loops = append(s.loops, l)
			best = l
		case best == nil:
			s.cfg.Logger.Warn("relay loop unavailable; relaying on goroutines", "err", err)
			s.loopsClosed = true
			return nil
		default:
			s.cfg.Logger.Warn("cannot start another relay loop; using those running", "loops", len(s.loops), "err", err)
			s.maxLoops = len(s.loops)
		}
	}
	best.sessions.Add(1) // relayOnLoop takes it off when the session ends
	return best
}

// stopLoops stops the event loops; sessions that start later use goroutine pumps.
func (s *Server) stopLoops() {
	s.loopMu.Lock()
	loops := s.loops
	s.loops, s.loopsClosed = nil, true
	s.loopMu.Unlock()
	for _, l := range loops {
		l.stop()
	}
}

// CheckUpstream reports whether the upstream accepts TCP connections and,
// when the SSL mode asks for it, completes a TLS handshake. It sends no
// startup packet, so the server logs nothing for it. The error's message
// names only the upstream's address and the kind of failure (it may be
// shown to anyone who can reach /readyz); errors.Unwrap gives the cause.
func (s *Server) CheckUpstream(ctx context.Context) error {
	nc, err := s.dialUpstream(ctx)
	if err != nil {
		return &upstreamError{addr: s.cfg.Upstream, err: err}
	}
	return nc.Close()
}

// emit hands e to the events channel without ever blocking.
func (c *conn) emit(e *pgwire.Execution) {
	select {
	case c.s.cfg.Events <- e:
		c.traffic.events.Add(1)
	default:
		c.traffic.eventsDropped.Add(1)
		c.s.cfg.EvidenceBudget.Give(e.EvidenceSize())
	}
}

// add adds what o counted to t.
func (t *traffic) add(o *traffic) {
	t.bytesFromClient.Add(o.bytesFromClient.Load())
	t.bytesFromServer.Add(o.bytesFromServer.Load())
	t.events.Add(o.events.Load())
	t.eventsDropped.Add(o.eventsDropped.Load())
}
