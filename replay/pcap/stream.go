package pcap

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/nplus1/nplus1/pgwire"
)

// Per-connection and reassembly bounds.
const (
	// maxOOOBytes bounds the out-of-order bytes held for one direction;
	// past it the hole before them is given up as lost.
	maxOOOBytes = 1 << 20
	// holeTimeout is how long (capture time) a hole in a direction may
	// stay open before its bytes are given up as lost: a retransmission
	// comes within a few RTOs, a packet the capture dropped never does.
	holeTimeout = 2 * time.Second
	// maxAuthBytes bounds what is buffered during authentication.
	maxAuthBytes = 1 << 20
	// maxPendingServer bounds the server bytes kept between a trusted
	// ReadyForQuery and the client's next message while resynchronizing.
	maxPendingServer = 64 << 10
	// tlsHintsNeeded is how many segments of a connection being resynchronized
	// must start like a TLS record before it is called encrypted.
	tlsHintsNeeded = 3
)

// Connection phases.
const (
	phaseStartup = iota // expecting the client's startup packet
	phaseSSLWait        // SSLRequest or GSSENCRequest sent, awaiting the one-byte answer
	phaseAuth           // startup sent; authentication until the first ReadyForQuery
	phaseReady          // the tracker follows the connection
	phaseHunt           // looking for a message boundary to trust
	phaseTLS            // encrypted: skipped
	phaseDone           // nothing more to learn (cancel request, replication, failed authentication)
)

type connKey struct {
	client, server [16]byte
	cport, sport   uint16
}

type oooSeg struct {
	seq     uint32
	data    []byte
	missing int // bytes after data that the capture cut
	ts      time.Time
}

// direction is the reassembly state of one direction of a connection.
type direction struct {
	started   bool
	next      uint32 // the next sequence number expected
	ooo       []oooSeg
	oooBytes  int
	holeSince time.Time
	fin       bool
}

// conn is one TCP connection's state.
type conn struct {
	id       uint64
	key      connKey
	info     *pgwire.ConnInfo
	dirs     [2]direction // 0: client to server, 1: server to client
	phase    int
	synSeen  bool
	tr       *pgwire.Tracker
	lastSeen time.Time

	cbuf, sbuf []byte                 // startup and authentication bytes, per direction
	gss        bool                   // the pending request was a GSSENCRequest
	strings    pgwire.StandardStrings // reported during authentication; unknown after a resync

	// Resynchronization (phaseHunt).
	serverSynced  bool
	syncTime      time.Time
	pendingServer []byte
	tlsHints      int

	midstream bool
	noted     bool // a note about this connection was written
}

const (
	toServer = 0
	toClient = 1
)

func (k connKey) clientAddr() string {
	a := netip.AddrFrom16(k.client).Unmap()
	return a.String()
}

// segment handles one TCP segment of connection c in direction dir.
func (r *Reader) segment(c *conn, dir int, s *segment, ts time.Time) {
	c.lastSeen = ts
	d := &c.dirs[dir]
	seq := s.seq
	if s.syn {
		c.synSeen = true
		d.started, d.next = true, s.seq+1
		seq++
	}
	if !d.started {
		d.started, d.next = true, seq
		if !c.synSeen && c.phase == phaseStartup {
			c.phase, c.midstream = phaseHunt, true
			r.stats.Midstream++
		}
	}
	if p := s.payload; len(p) > 0 || s.missing > 0 {
		rel := int32(seq - d.next)
		switch {
		case rel > 0:
			r.buffer(c, dir, seq, p, s.missing, ts)
		default:
			drop := int(-int64(rel))
			if drop < len(p) {
				r.deliver(c, dir, p[drop:], ts)
				d.next += uint32(len(p) - drop)
				drop = 0
			} else {
				drop -= len(p)
			}
			if m := s.missing - drop; m > 0 {
				r.lost(c, dir, m)
				d.next += uint32(m)
			}
			r.drain(c, dir)
		}
	}
	if s.fin {
		d.fin = true
	}
	// A hole that outlived any retransmission, in either direction.
	for i := range c.dirs {
		if dd := &c.dirs[i]; len(dd.ooo) > 0 && ts.Sub(dd.holeSince) > holeTimeout {
			r.giveUpHole(c, i)
		}
	}
	if s.rst || (c.dirs[0].fin && c.dirs[1].fin) {
		r.closeConn(c)
	}
}

// buffer keeps an out-of-order segment (a copy) until the hole before it
// fills, or is given up.
func (r *Reader) buffer(c *conn, dir int, seq uint32, p []byte, missing int, ts time.Time) {
	d := &c.dirs[dir]
	if len(p) == 0 {
		return
	}
	if d.oooBytes+len(p) > maxOOOBytes || r.oooBytes+len(p) > r.opts.MaxBufferedBytes {
		r.giveUpHole(c, dir)
		if int32(seq-d.next) <= 0 {
			r.segmentData(c, dir, seq, p, missing, ts)
			return
		}
		if d.oooBytes+len(p) > maxOOOBytes || r.oooBytes+len(p) > r.opts.MaxBufferedBytes {
			// Still no room: this segment is lost too.
			r.lost(c, dir, int(seq-d.next)+len(p))
			d.next = seq + uint32(len(p))
			return
		}
	}
	if len(d.ooo) == 0 {
		d.holeSince = ts
	}
	seg := oooSeg{seq: seq, data: append([]byte(nil), p...), missing: missing, ts: ts}
	i := len(d.ooo)
	for i > 0 && int32(d.ooo[i-1].seq-seq) > 0 {
		i--
	}
	d.ooo = append(d.ooo, oooSeg{})
	copy(d.ooo[i+1:], d.ooo[i:])
	d.ooo[i] = seg
	d.oooBytes += len(p)
	r.oooBytes += len(p)
}

// segmentData delivers in-order data that starts at or before d.next.
func (r *Reader) segmentData(c *conn, dir int, seq uint32, p []byte, missing int, ts time.Time) {
	d := &c.dirs[dir]
	drop := int(d.next - seq)
	if drop < len(p) {
		r.deliver(c, dir, p[drop:], ts)
		d.next += uint32(len(p) - drop)
	}
	if missing > 0 {
		r.lost(c, dir, missing)
		d.next += uint32(missing)
	}
	r.drain(c, dir)
}

// drain delivers buffered segments that have become contiguous.
func (r *Reader) drain(c *conn, dir int) {
	d := &c.dirs[dir]
	for len(d.ooo) > 0 && int32(d.ooo[0].seq-d.next) <= 0 {
		seg := d.ooo[0]
		d.ooo[0] = oooSeg{}
		d.ooo = d.ooo[1:]
		d.oooBytes -= len(seg.data)
		r.oooBytes -= len(seg.data)
		if drop := int(d.next - seg.seq); drop < len(seg.data) {
			r.deliver(c, dir, seg.data[drop:], seg.ts)
			d.next += uint32(len(seg.data) - drop)
		}
		if seg.missing > 0 && int32(d.next-(seg.seq+uint32(len(seg.data)))) == 0 {
			r.lost(c, dir, seg.missing)
			d.next += uint32(seg.missing)
		}
		if len(d.ooo) > 0 {
			d.holeSince = d.ooo[0].ts
		}
	}
	if len(d.ooo) == 0 {
		d.ooo = nil
	}
}

// giveUpHole declares the bytes before the first buffered segment lost and
// goes on from there.
func (r *Reader) giveUpHole(c *conn, dir int) {
	d := &c.dirs[dir]
	if len(d.ooo) == 0 {
		return
	}
	r.lost(c, dir, int(d.ooo[0].seq-d.next))
	d.next = d.ooo[0].seq
	r.drain(c, dir)
}

// lost records n bytes that will never be seen: the connection must
// resynchronize.
func (r *Reader) lost(c *conn, dir int, n int) {
	if n <= 0 {
		return
	}
	r.stats.LostBytes += int64(n)
	switch c.phase {
	case phaseTLS, phaseDone:
		return
	case phaseReady:
		r.collect(c)
		c.tr.Close()
		c.tr = nil
	}
	r.stats.Resyncs++
	r.hunt(c)
}

// hunt starts looking for a trustworthy message boundary.
func (r *Reader) hunt(c *conn) {
	c.phase = phaseHunt
	c.serverSynced = false
	c.pendingServer = nil
	c.cbuf, c.sbuf = nil, nil
}

// deliver hands in-order bytes of one direction to the connection's phase.
func (r *Reader) deliver(c *conn, dir int, p []byte, ts time.Time) {
	for len(p) > 0 {
		switch c.phase {
		case phaseReady:
			var err error
			if dir == toServer {
				err = c.tr.Frontend(p, ts)
			} else {
				err = c.tr.Backend(p, ts)
			}
			if err != nil {
				r.collect(c)
				c.tr = nil
				r.stats.ProtocolErrors++
				r.stats.Resyncs++
				r.hunt(c)
				r.stats.SkippedBytes += int64(len(p)) // the rest of this chunk
			}
			return
		case phaseTLS, phaseDone:
			return
		case phaseHunt:
			r.huntChunk(c, dir, p, ts)
			return
		case phaseStartup:
			if dir == toClient {
				r.hunt(c)
				continue
			}
			p = r.startup(c, p, ts)
		case phaseSSLWait:
			if dir == toServer {
				if len(c.cbuf)+len(p) > pgwire.MaxStartupPacketLen {
					r.hunt(c)
					continue
				}
				c.cbuf = append(c.cbuf, p...)
				return
			}
			switch p[0] {
			case 'S', 'G':
				r.encrypted(c)
				return
			case 'N':
				c.phase = phaseStartup
				p = p[1:]
				if len(c.cbuf) > 0 {
					buf := c.cbuf
					c.cbuf = nil
					r.deliver(c, toServer, buf, ts)
				}
			default: // an ErrorResponse from an old server, or garbage
				c.phase = phaseDone
				return
			}
		case phaseAuth:
			p = r.auth(c, dir, p, ts)
		}
	}
}

// startup reads the client's first packet(s) and returns what follows.
func (r *Reader) startup(c *conn, p []byte, ts time.Time) []byte {
	if len(c.cbuf) == 0 && p[0] == pgwire.TLSRecordStart { // direct TLS
		r.encrypted(c)
		return nil
	}
	c.cbuf = append(c.cbuf, p...)
	if len(c.cbuf) < 8 {
		return nil
	}
	n := binary.BigEndian.Uint32(c.cbuf[0:4])
	code := binary.BigEndian.Uint32(c.cbuf[4:8])
	if n < 8 || n > pgwire.MaxStartupPacketLen {
		r.huntWith(c, ts)
		return nil
	}
	if uint32(len(c.cbuf)) < n {
		return nil
	}
	pkt := c.cbuf[:n]
	rest := c.cbuf[n:]
	c.cbuf = nil
	switch {
	case code == pgwire.CodeSSL && n == 8:
		c.phase, c.gss = phaseSSLWait, false
	case code == pgwire.CodeGSSENC && n == 8:
		c.phase, c.gss = phaseSSLWait, true
	case code == pgwire.CodeCancel:
		r.stats.Cancels++
		c.phase = phaseDone
		return nil
	case code>>16 == 3:
		st, _ := pgwire.ParseStartup(pkt)
		c.info = st.ConnInfo(c.id, c.key.clientAddr())
		if st.Replication {
			r.stats.Replication++
			c.phase = phaseDone
			return nil
		}
		c.phase = phaseAuth
	default:
		r.huntWith(c, ts)
		return nil
	}
	if len(rest) > 0 {
		return append([]byte(nil), rest...)
	}
	return nil
}

// huntWith gives up on the startup bytes collected so far.
func (r *Reader) huntWith(c *conn, ts time.Time) {
	r.stats.SkippedBytes += int64(len(c.cbuf))
	c.cbuf = nil
	r.hunt(c)
}

func (r *Reader) encrypted(c *conn) {
	c.phase = phaseTLS
	c.cbuf, c.sbuf, c.pendingServer = nil, nil, nil
	r.stats.TLS++
	if len(r.tlsConns) < maxNotedConns {
		r.tlsConns = append(r.tlsConns, c.describe())
	}
}

// auth follows the authentication exchange: the client's password
// messages are skipped; the server's messages are read until its first
// ReadyForQuery, when the tracker takes over. Client messages sent before
// it (a pipelining client) wait for it.
func (r *Reader) auth(c *conn, dir int, p []byte, ts time.Time) []byte {
	if dir == toServer {
		if len(c.cbuf)+len(p) > maxAuthBytes {
			r.huntWith(c, ts)
			return nil
		}
		c.cbuf = append(c.cbuf, p...)
		// Drop complete password messages at the front.
		for len(c.cbuf) >= 5 && c.cbuf[0] == 'p' {
			n := int(binary.BigEndian.Uint32(c.cbuf[1:5]))
			if n < 4 || n > maxAuthBytes {
				r.huntWith(c, ts)
				return nil
			}
			if len(c.cbuf) < 1+n {
				break
			}
			c.cbuf = c.cbuf[1+n:]
		}
		return nil
	}
	if len(c.sbuf)+len(p) > maxAuthBytes {
		r.huntWith(c, ts)
		return nil
	}
	c.sbuf = append(c.sbuf, p...)
	for len(c.sbuf) >= 5 {
		typ := c.sbuf[0]
		n := int(binary.BigEndian.Uint32(c.sbuf[1:5]))
		if n < 4 || n > maxAuthBytes {
			r.huntWith(c, ts)
			return nil
		}
		if len(c.sbuf) < 1+n {
			return nil
		}
		body := c.sbuf[5 : 1+n]
		rest := c.sbuf[1+n:]
		switch typ {
		case 'R', 'K', 'N', 'v':
		case 'S':
			c.info = pgwire.WithParameterStatus(c.info, body)
			if s, ok := pgwire.StandardStringsStatus(body); ok {
				c.strings = s
			}
		case 'E': // authentication failed
			c.phase = phaseDone
			c.cbuf, c.sbuf = nil, nil
			return nil
		case 'Z':
			r.ready(c, 'I')
			pending := c.cbuf
			c.cbuf, c.sbuf = nil, nil
			if len(pending) > 0 {
				r.deliver(c, toServer, pending, ts)
			}
			if len(rest) > 0 {
				return append([]byte(nil), rest...)
			}
			return nil
		default:
			r.huntWith(c, ts)
			return nil
		}
		c.sbuf = rest
	}
	return nil
}

// ready starts following the connection with a tracker.
func (r *Reader) ready(c *conn, status byte) {
	if c.info == nil {
		c.info = &pgwire.ConnInfo{ID: c.id, ClientAddr: c.key.clientAddr()}
	}
	c.tr = pgwire.NewTracker(c.info, r.emit, r.opts.Tracker)
	c.tr.StartStandardStrings(c.strings) // unknown unless the login was seen
	c.phase = phaseReady
}

// huntChunk looks, in one in-order chunk, for the point from which the
// connection can be followed again: a ReadyForQuery that ends a server
// segment (the server is idle and waiting), then the first client segment
// after it that starts with a sequence of valid client messages.
func (r *Reader) huntChunk(c *conn, dir int, p []byte, ts time.Time) {
	if looksTLS(p) {
		if c.tlsHints++; c.tlsHints >= tlsHintsNeeded {
			r.stats.SkippedBytes += int64(len(p))
			r.encrypted(c)
			return
		}
	}
	if dir == toClient {
		if c.serverSynced {
			if len(c.pendingServer)+len(p) <= maxPendingServer {
				c.pendingServer = append(c.pendingServer, p...)
				return
			}
			r.stats.SkippedBytes += int64(len(c.pendingServer))
			c.pendingServer, c.serverSynced = nil, false
		}
		r.stats.SkippedBytes += int64(len(p))
		if n := len(p); n >= 6 && p[n-6] == 'Z' && p[n-5] == 0 && p[n-4] == 0 && p[n-3] == 0 && p[n-2] == 5 &&
			(p[n-1] == 'I' || p[n-1] == 'T' || p[n-1] == 'E') {
			c.serverSynced, c.syncTime = true, ts
		}
		return
	}
	if !c.serverSynced || ts.Before(c.syncTime) || !validFrontend(p) {
		r.stats.SkippedBytes += int64(len(p))
		return
	}
	pending := c.pendingServer
	c.pendingServer, c.serverSynced = nil, false
	c.strings = pgwire.StandardStringsUnknown // a SET may have passed in the gap
	r.ready(c, 'I')
	if len(pending) > 0 {
		if err := c.tr.Backend(pending, ts); err != nil {
			r.stats.SkippedBytes += int64(len(pending))
			r.collect(c)
			c.tr = nil
			r.hunt(c)
			r.stats.SkippedBytes += int64(len(p))
			return
		}
	}
	r.deliver(c, toServer, p, ts)
}

// looksTLS reports whether p starts like a TLS record.
func looksTLS(p []byte) bool {
	if len(p) < 5 || p[0] < 0x14 || p[0] > 0x17 || p[1] != 3 || p[2] > 4 {
		return false
	}
	n := int(binary.BigEndian.Uint16(p[3:5]))
	return n > 0 && n <= 16384+2048
}

// validFrontend reports whether p starts with client messages whose types
// and lengths are all plausible, up to its end.
func validFrontend(p []byte) bool {
	n := 0
	for len(p) > 0 {
		if len(p) < 5 {
			return n > 0
		}
		typ := p[0]
		l := int64(binary.BigEndian.Uint32(p[1:5]))
		ok := false
		switch typ {
		case 'S', 'H', 'c', 'X':
			ok = l == 4
		case 'E':
			ok = l >= 9 && l <= 4+64+4
		case 'D', 'C':
			ok = l >= 6 && l <= 4+1+64
		case 'Q':
			ok = l >= 5
		case 'P':
			ok = l >= 8
		case 'B':
			ok = l >= 12
		case 'F':
			ok = l >= 12
		case 'd', 'f':
			ok = l >= 4 && n > 0 // copy data never starts a resynchronization
		}
		if !ok || l > 1<<30 {
			return false
		}
		n++
		if int64(len(p)) < 1+l {
			return true // continues in the next segment
		}
		p = p[1+l:]
	}
	return true
}

// collect folds a tracker's counters into the Reader's before it goes.
func (r *Reader) collect(c *conn) {
	if c.tr == nil {
		return
	}
	st := c.tr.Stats()
	r.stats.Desyncs += st.Desyncs
	r.stats.Overflows += st.Overflows
	r.stats.EvidenceTruncated += st.EvidenceTruncated
	r.stats.EvidenceDropped += st.EvidenceDropped
}

// closeConn ends a connection: held executions are emitted.
func (r *Reader) closeConn(c *conn) {
	for i := range c.dirs {
		if len(c.dirs[i].ooo) > 0 {
			r.giveUpHole(c, i)
		}
	}
	if c.tr != nil {
		r.collect(c)
		c.tr.Close()
		c.tr = nil
	}
	if c.midstream && len(r.midConns) < maxNotedConns {
		r.midConns = append(r.midConns, c.describe())
	}
	c.phase = phaseDone
	if cur, ok := r.conns.Peek(c.key); ok && cur == c {
		r.conns.Remove(c.key)
	}
}

func (c *conn) describe() string {
	s := c.key.clientAddr()
	a := netip.AddrPortFrom(netip.AddrFrom16(c.key.client).Unmap(), c.key.cport)
	s = a.String()
	if c.info != nil && c.info.User != "" {
		s += " (user " + c.info.User + ")"
	}
	return s
}
