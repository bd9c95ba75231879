//go:build linux

package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/nplus1/nplus1/pgwire"
	"golang.org/x/sys/unix"
)

// The event loop relays established plaintext sessions the way PgBouncer
// does: one thread waits in epoll_wait for every socket it owns and, for each
// readable one, reads a chunk, lets the tracker see it and writes it to the
// peer, all without going through Go's scheduler.
//
// Why not goroutines: the relay's cost is dominated by the wake-ups, not by
// the work. With two goroutines per session on Go's network poller, each
// message woke 2-3 OS threads (the poller's, the goroutine's, sysmon's): on
// this project's 2-CPU benchmark machine the goroutine relay took 94-111 µs
// of CPU per pgbench -S transaction at one client, PgBouncer 40-42 µs, this
// loop 43-49 µs (bench/run.sh and perf stat, side by side). The thread is
// locked (LockOSThread): unlocked, the kernel moved it between CPUs on
// nearly every wake-up, which cost about 10 µs per transaction.
//
// A loop blocks in epoll_wait inside a system call, and the rest of the
// program (the handshakes, the analyzer, HTTP) runs on the Ps it is not
// using: by default there is one loop per two Ps, and one with a single P
// (see DefaultRelayLoops). Each session goes to the loop with the fewest
// (Server.loopFor).
// Sessions with TLS on either side stay on goroutine pumps (crypto/tls owns
// those bytes), as do all sessions when Config.Relay is RelayGoroutines.

const loopSupported = true

// loopYield is how often a busy loop goes through the scheduler (see
// waitPolicy), and how long one epoll_wait lasts before the loop parks. It
// parks after loopQuietWaits of those in a row (50 ms of quiet): parking and
// waking cost a few context switches, too many for queries that arrive every
// few ms.
const (
	loopYield      = 5 * time.Millisecond
	loopQuietWaits = 10
)

// eventLoop is one relay thread and its epoll instance.
type eventLoop struct {
	s      *Server
	epfd   int
	wakefd int    // eventfd: posted commands wake the loop through it
	buf    []byte // the read buffer; what a write leaves behind is copied out
	events []unix.EpollEvent
	socks  []*loopSock // by fd; loop goroutine only
	// now is when the latest epoll_wait returned events: the time of
	// every message read in that batch (they had all arrived by then),
	// one clock read a batch instead of one a message.
	now time.Time

	mu      sync.Mutex
	cmds    []func() // guarded by mu; run on the loop goroutine
	stopped bool     // guarded by mu: no more commands are taken

	done chan struct{} // closed when run returns

	sessions atomic.Int64 // sessions placed on the loop and not yet ended (see Server.loopFor)
}

// loopSession is one client session on a loop.
type loopSession struct {
	l              *eventLoop
	c              *conn
	client, server loopSock

	// Loop goroutine only until done is closed; the handler reads them after.
	ended       bool
	err         error // why it ended: nil for a clean EOF
	serverEnded bool  // the server's socket ended it (EOF, error, protocol violation)
	done        chan struct{}
}

// loopSock is one socket of a session.
type loopSock struct {
	fd     int
	sess   *loopSession
	peer   *loopSock
	client bool   // the client's socket: its bytes go to Tracker.Frontend
	out    []byte // read from the peer, not yet written to fd
	events uint32 // the epoll interest registered for fd
}

func newEventLoop(s *Server) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	l := &eventLoop{
		s:      s,
		epfd:   epfd,
		wakefd: wakefd,
		buf:    make([]byte, relayBufSize),
		events: make([]unix.EpollEvent, 256),
		done:   make(chan struct{}),
	}
	go l.run()
	return l, nil
}

// post runs f on the loop goroutine; false when the loop has stopped.
func (l *eventLoop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.cmds = append(l.cmds, f)
	first := len(l.cmds) == 1
	l.mu.Unlock()
	if first {
		l.wake()
	}
	return true
}

// wake adds one to the eventfd's counter, which makes it readable.
func (l *eventLoop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.wakefd, one[:])
}

// stop ends every session still on the loop and waits for it to return.
func (l *eventLoop) stop() {
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		l.cmds = append(l.cmds, nil) // nil: return
		l.wake()
	}
	l.mu.Unlock()
	<-l.done
}

func (l *eventLoop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(l.done)
	defer func() {
		// Take no more commands, run those already posted (a session
		// added there must be ended too, or its handler would wait
		// forever), then end every session left.
		l.mu.Lock()
		l.stopped = true
		cmds := l.cmds
		l.cmds = nil
		l.mu.Unlock()
		for _, f := range cmds {
			if f != nil {
				f()
			}
		}
		for _, s := range l.socks {
			if s != nil {
				l.end(s.sess, nil, net.ErrClosed)
			}
		}
		unix.Close(l.wakefd)
		unix.Close(l.epfd)
	}()
	pol := newWaitPolicy()
	for {
		n, err := l.wait(&pol)
		if err != nil && err != unix.EINTR {
			l.s.cfg.Logger.Error("relay loop: epoll_wait failed; closing its sessions", "err", err)
			return
		}
		if n == 0 {
			if pol.idle(err == nil) {
				runtime.Gosched()
			}
			continue
		}
		pol.busy()
		l.now = l.s.cfg.Now()
		if !l.dispatch(n) {
			return
		}
		if pol.yieldDue() {
			runtime.Gosched()
		}
	}
}

// waitPolicy is how the loop waits; run and wait carry out its decisions.
//
// Busy, the loop waits in epoll_wait, a system call: one thread wake-up per
// message. Go's sysmon takes a goroutine that has not been rescheduled for
// 10 ms for a runaway one and then takes its P away at every system call,
// and the hand-offs and sysmon's own 20 µs wake-ups that follow cost more
// than the relay itself; so the loop goes through the scheduler every
// loopYield (yieldDue, idle). Quiet for loopQuietWaits epoll_waits of
// loopYield in a row (50 ms), it parks in Go's scheduler instead
// (parkedWait): an idle loop costs nothing, where one blocked in epoll_wait
// had its P retaken every 10 ms and kept sysmon polling (1,500 context
// switches a second with one idle session). Where parking fails, epoll_wait
// blocks until an event (cannotPark).
//
// It reads the clock with time.Now, which a test's synctest bubble fakes.
type waitPolicy struct {
	lastYield time.Time // when the loop last went through the scheduler
	quiet     int       // epoll_waits in a row that timed out
	park      bool      // the next wait parks on Go's poller
	canPark   bool      // false once parking failed
}

func newWaitPolicy() waitPolicy {
	return waitPolicy{lastYield: time.Now(), canPark: true}
}

// next is how the next wait goes: parked on Go's poller (park), or in
// epoll_wait for at most timeout ms (-1: until an event).
func (p *waitPolicy) next() (park bool, timeout int) {
	if p.park {
		return true, 0
	}
	if p.canPark {
		return false, int(loopYield / time.Millisecond)
	}
	return false, -1
}

// unparked records the end of a parked wait, which went through the
// scheduler.
func (p *waitPolicy) unparked() { p.lastYield = time.Now() }

// cannotPark records that parking failed: from now on the loop blocks in
// epoll_wait.
func (p *waitPolicy) cannotPark() { p.canPark, p.park = false, false }

// idle records a wait that returned no event: one that timedOut, or a
// parked one interrupted (EINTR) before it waited, which is not counted. It reports whether the
// loop is to go through the scheduler now; it is not when it is to park.
func (p *waitPolicy) idle(timedOut bool) (yield bool) {
	if timedOut {
		p.quiet++
	}
	p.park = p.canPark && p.quiet >= loopQuietWaits
	if !p.park && time.Since(p.lastYield) >= loopYield {
		p.lastYield = time.Now()
		return true
	}
	return false
}

// busy records a wait that did not time out (events, or EINTR, for which
// epoll_wait returns -1): the quiet spell is over.
func (p *waitPolicy) busy() { p.park, p.quiet = false, 0 }

// yieldDue reports whether the busy loop is to go through the scheduler
// now, loopYield after it last did.
func (p *waitPolicy) yieldDue() bool {
	if now := time.Now(); now.Sub(p.lastYield) >= loopYield {
		p.lastYield = now
		return true
	}
	return false
}

// wait waits for events as pol says and returns what epoll_wait returned. A
// parked wait that fails (other than by EINTR) is logged and makes pol stop
// parking; it returns no error.
func (l *eventLoop) wait(pol *waitPolicy) (int, error) {
	park, timeout := pol.next()
	if !park {
		return unix.EpollWait(l.epfd, l.events, timeout)
	}
	// Parked, the goroutine need not come back on this thread: whichever
	// thread Go's poller wakes it on keeps it.
	runtime.UnlockOSThread()
	n, err := l.parkedWait()
	runtime.LockOSThread()
	pol.unparked()
	if err != nil && err != unix.EINTR {
		l.s.cfg.Logger.Warn("relay loop: cannot wait through Go's poller; waiting in epoll_wait", "err", err)
		pol.cannotPark()
		return n, nil
	}
	return n, err
}

// dispatch handles the first n events of l.events: a socket's is relayed,
// the eventfd's runs the posted commands. It returns false when a command
// told the loop to return.
func (l *eventLoop) dispatch(n int) bool {
	for i := 0; i < n; i++ {
		ev := &l.events[i]
		fd := int(ev.Fd)
		if fd == l.wakefd {
			if !l.runCommands() {
				return false
			}
			continue
		}
		if fd < len(l.socks) {
			if s := l.socks[fd]; s != nil {
				l.handle(s, ev.Events)
			}
		}
	}
	return true
}

// parkedWait waits for events with the loop goroutine parked on Go's
// poller, which watches a duplicate of the epoll descriptor for as long as
// the wait lasts (watching it all the time would wake Go's poller thread
// for every message).
func (l *eventLoop) parkedWait() (int, error) {
	dup, err := unix.FcntlInt(uintptr(l.epfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	// O_NONBLOCK (shared with epfd; epoll_wait ignores it) makes
	// os.NewFile register the descriptor with Go's poller.
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return 0, err
	}
	f := os.NewFile(uintptr(dup), "epoll")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Read(func(uintptr) bool {
		n, werr = unix.EpollWait(l.epfd, l.events, 0)
		return n > 0 || werr != nil
	}); err != nil {
		return 0, err
	}
	return n, werr
}

// runCommands runs what was posted; false when the loop is to return.
func (l *eventLoop) runCommands() bool {
	var b [8]byte
	_, _ = unix.Read(l.wakefd, b[:])
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, f := range cmds {
		if f == nil {
			return false
		}
		f()
	}
	return true
}

// handle is one epoll event for s.
func (l *eventLoop) handle(s *loopSock, ev uint32) {
	if ev&unix.EPOLLOUT != 0 && len(s.out) > 0 && !l.flush(s) {
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	if len(s.peer.out) > 0 {
		// s is not read until its peer has taken what is pending, so an
		// event here is a hang-up or an error: s is gone.
		if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.end(s.sess, s, syscall.ECONNRESET)
		}
		return
	}
	l.forward(s)
}

// forward reads one chunk from s, shows it to the tracker and writes it to
// the peer.
func (l *eventLoop) forward(s *loopSock) {
	sess := s.sess
	n, err := readFD(s.fd, l.buf)
	if err != nil {
		if err != unix.EAGAIN {
			l.end(sess, s, err)
		}
		return
	}
	if n <= 0 {
		l.end(sess, s, nil)
		return
	}
	chunk := l.buf[:n]
	if err := sess.c.observe(s.client, chunk, l.now); err != nil {
		var pe *pgwire.ProtocolError
		if errors.As(err, &pe) {
			notice := errorResponse(stateProtocolViolation, violationNotice(pe, s.client))
			sess.client.out = append(sess.client.out, notice...)
		}
		l.end(sess, s, err)
		return
	}
	l.send(s.peer, chunk)
}

// send writes b to d; what does not fit now waits in d.out, and d's peer is
// not read until it is written.
func (l *eventLoop) send(d *loopSock, b []byte) {
	w, err := writeFD(d.fd, b)
	if err != nil && err != unix.EAGAIN {
		l.end(d.sess, d, err)
		return
	}
	if w == len(b) {
		return
	}
	d.out = append(d.out[:0], b[w:]...)
	l.update(d)
	l.update(d.peer)
}

// flush writes what is pending for s; false when that ended the session.
func (l *eventLoop) flush(s *loopSock) bool {
	w, err := writeFD(s.fd, s.out)
	if err != nil && err != unix.EAGAIN {
		l.end(s.sess, s, err)
		return false
	}
	s.out = s.out[:copy(s.out, s.out[w:])]
	if len(s.out) == 0 {
		l.update(s)
		l.update(s.peer)
	}
	return true
}

// readFD and writeFD are read(2) and write(2) on the loop's non-blocking
// sockets, made as raw system calls: without entersyscall and exitsyscall,
// Go's bookkeeping for a call that may block, which these never do (they
// return EAGAIN instead), and whose P the loop would only take back. That
// bookkeeping was 3% of the proxy's CPU at pgbench -S -c 8 (perf), where a
// transaction makes two reads and two writes. The kernel work of a write on
// loopback (delivering to the peer) still runs here, in a few µs.
func readFD(fd int, b []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, b) }
func writeFD(fd int, b []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, b) }

// rawIO is read(2) or write(2) (trap) of b on fd, retried on EINTR.
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	for {
		n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// interest is what s waits for: reading while its peer has nothing pending
// (backpressure), writing while s itself has.
func (s *loopSock) interest() uint32 {
	var want uint32
	if len(s.peer.out) == 0 {
		want |= unix.EPOLLIN
	}
	if len(s.out) > 0 {
		want |= unix.EPOLLOUT
	}
	return want
}

func (l *eventLoop) update(s *loopSock) {
	want := s.interest()
	if want == s.events || s.sess.ended {
		return
	}
	ev := unix.EpollEvent{Events: want, Fd: int32(s.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, s.fd, &ev); err != nil {
		l.end(s.sess, s, fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	s.events = want
}

// add registers a handed-off session.
func (l *eventLoop) add(sess *loopSession) {
	if sess.ended {
		return
	}
	if sess.c.closed.Load() { // force-closed during the hand-off
		l.end(sess, nil, net.ErrClosed)
		return
	}
	for _, s := range [2]*loopSock{&sess.client, &sess.server} {
		for s.fd >= len(l.socks) {
			l.socks = append(l.socks, make([]*loopSock, len(l.socks)+64)...)
		}
	}
	for _, s := range [2]*loopSock{&sess.client, &sess.server} {
		s.events = s.interest()
		ev := unix.EpollEvent{Events: s.events, Fd: int32(s.fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
			l.end(sess, nil, fmt.Errorf("epoll_ctl: %w", err))
			return
		}
		l.socks[s.fd] = s
	}
}

// end closes both sockets of sess once and wakes its handler. by is the
// socket that ended it (nil: closed from outside). What is pending for the
// client (a FATAL notice, say) gets one last try.
func (l *eventLoop) end(sess *loopSession, by *loopSock, err error) {
	if sess.ended {
		return
	}
	sess.ended = true
	sess.err = err
	sess.serverEnded = by != nil && !by.client
	if sess.serverEnded && !isProtocolError(err) {
		// What the client has, with what is pending, is all the tracker
		// saw: on a boundary, a notice can follow it.
		if sess.c.serverLostNotice() {
			sess.client.out = append(sess.client.out, errorResponse(stateConnectionFailure, msgServerLost)...)
		}
	}
	if len(sess.client.out) > 0 {
		_, _ = writeFD(sess.client.fd, sess.client.out)
	}
	for _, s := range [2]*loopSock{&sess.client, &sess.server} {
		if s.fd < len(l.socks) && l.socks[s.fd] == s {
			_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
			l.socks[s.fd] = nil
		}
		unix.Close(s.fd)
		s.out = nil
	}
	close(sess.done)
}

// relayOnLoop hands the session's sockets to l and waits until it ends. It
// returns why it ended and whether the server's side ended it.
func (c *conn) relayOnLoop(l *eventLoop) (error, bool) {
	defer l.sessions.Add(-1) // loopFor counted it
	sess := &loopSession{l: l, c: c, done: make(chan struct{})}
	sess.client = loopSock{fd: -1, sess: sess, peer: &sess.server, client: true}
	sess.server = loopSock{fd: -1, sess: sess, peer: &sess.client}

	// What the handshake's buffered readers already hold goes first: the
	// client's to the server, the server's to the client.
	now := c.s.cfg.Now()
	for _, side := range [...]struct {
		r          io.Reader
		fromClient bool
		to         *loopSock
	}{{c.cr, true, &sess.server}, {c.sr, false, &sess.client}} {
		br, ok := side.r.(*bufio.Reader)
		if !ok || br.Buffered() == 0 {
			continue
		}
		b, _ := br.Peek(br.Buffered())
		if err := c.observe(side.fromClient, b, now); err != nil {
			var pe *pgwire.ProtocolError
			if errors.As(err, &pe) {
				c.fatal(stateProtocolViolation, violationNotice(pe, side.fromClient))
			}
			return err, !side.fromClient
		}
		side.to.out = append([]byte(nil), b...)
	}

	cfd, err := dupFD(c.raw)
	if err != nil {
		return fmt.Errorf("hand the client socket to the relay loop: %w", err), false
	}
	sfd, err := dupFD(c.sw)
	if err != nil {
		unix.Close(cfd)
		return fmt.Errorf("hand the server socket to the relay loop: %w", err), false
	}
	sess.client.fd, sess.server.fd = cfd, sfd
	// From here on forceClose and fatal go through the loop. The originals
	// are closed (which takes them out of Go's poller); the sockets live on
	// in the duplicates.
	c.sess.Store(sess)
	c.raw.Close()
	c.sw.Close()
	c.cr, c.sr = nil, nil
	if !l.post(func() { l.add(sess) }) {
		unix.Close(cfd)
		unix.Close(sfd)
		return net.ErrClosed, false
	}
	c.s.stats.loopSessions.Add(1)
	<-sess.done
	return sess.err, sess.serverEnded
}

// dupFD returns a close-on-exec duplicate of nc's descriptor.
func dupFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no file descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, nil
}

// fatal queues a FATAL notice for the client of a session on a loop.
func (sess *loopSession) fatal(code, msg string) {
	l := sess.l
	l.post(func() {
		if sess.ended {
			return
		}
		sess.client.out = append(sess.client.out, errorResponse(code, msg)...)
		l.update(&sess.client)
		l.update(&sess.server)
	})
}

// closeWithNotice tells the client of a session on a loop why it ends, when
// its stream is at a message boundary, and ends the session; with onlyIdle,
// only a session between requests (and nothing happens otherwise).
func (sess *loopSession) closeWithNotice(code, msg string, onlyIdle bool) {
	l := sess.l
	l.post(func() {
		if sess.ended {
			return
		}
		idle, boundary, _ := sess.c.relayState()
		if onlyIdle && !(idle && boundary) {
			return
		}
		if boundary {
			sess.client.out = append(sess.client.out, errorResponse(code, msg)...)
		}
		l.end(sess, nil, net.ErrClosed)
	})
}

// close ends a session on a loop from outside it.
func (sess *loopSession) close() {
	l := sess.l
	l.post(func() { l.end(sess, nil, net.ErrClosed) })
}
