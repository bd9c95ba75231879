package pcap

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/internal/fileseq"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/pgwire"
)

// Defaults of Options.
const (
	// DefaultMaxConnections bounds the connections followed at once; past
	// it the least recently active one is ended.
	DefaultMaxConnections = 10000
	// DefaultIdleTimeout ends a connection with no packet for this long
	// (capture time): its FIN may simply not be in the capture.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxBufferedBytes bounds the out-of-order bytes held for all
	// connections together.
	DefaultMaxBufferedBytes = 64 << 20
	// maxNotedConns bounds the connections named in notes.
	maxNotedConns = 5
	// sweepEvery is how many packets pass between idle sweeps.
	sweepEvery = 4096
)

// Options configure a Reader.
type Options struct {
	// Ports are the PostgreSQL server ports (5432 when empty).
	Ports []uint16
	// Tracker bounds each connection's tracker; set KeepParams to get the
	// bound parameter values (for re-execution), Evidence to get value
	// evidence (Execution.ParamKeys and Result: digests, never values).
	Tracker pgwire.TrackerOptions
	// MaxConnections, IdleTimeout and MaxBufferedBytes bound the Reader's
	// memory (the defaults above when 0).
	MaxConnections   int
	IdleTimeout      time.Duration
	MaxBufferedBytes int
	// FirstID is the first connection id given (1 when 0).
	FirstID uint64
}

// Stats count what a Reader saw and what it could not follow.
type Stats struct {
	Files, Packets int64
	// Packets that were not TCP to or from a server port, IP fragments,
	// too short to decode, or of an unsupported link type.
	Ignored, Fragments, Short, UnsupportedLink int64
	// Connections seen; of them, joined mid-way (no SYN in the capture),
	// encrypted (skipped), replication, and cancel requests.
	Connections, Midstream, TLS, Replication, Cancels int64
	// SkippedBytes were passed over while looking for a message boundary
	// to trust; LostBytes were never in the capture (holes given up, or cut
	// by the snapshot length). Resyncs counts the times a connection had to
	// look for a boundary again; ProtocolErrors the messages the tracker
	// refused.
	SkippedBytes, LostBytes, Resyncs, ProtocolErrors int64
	// Desyncs and Overflows sum the trackers' counters, as do
	// EvidenceTruncated and EvidenceDropped (with Tracker.Evidence).
	Desyncs, Overflows                 uint64
	EvidenceTruncated, EvidenceDropped uint64
	Executions                         int64
	Evicted                            int64 // connections ended by the bounds
}

// Reader follows the PostgreSQL connections of pcap and pcapng files and
// returns the executions the server ran, with the capture's timestamps.
type Reader struct {
	opts  Options
	ports map[uint16]bool

	in  *fileseq.Seq
	pr  *packetReader
	pkt packet
	seg segment

	// conns are the connections followed, the least recently active
	// first to go past MaxConnections.
	conns    *lru.Cache[connKey, *conn]
	nextID   uint64
	oooBytes int
	out      []*pgwire.Execution // emitted, not yet returned
	outHead  int
	now      time.Time // the latest packet time

	stats    Stats
	tlsConns []string
	midConns []string
	problems []string
	done     bool
}

// Open returns a Reader over the capture files, read in order as one
// capture (tcpdump -C or -G splits one into several).
func Open(files []string, opts Options) (*Reader, error) {
	r := newReader(opts)
	r.in = fileseq.New(files)
	if err := r.nextFile(); err != nil {
		return nil, err
	}
	return r, nil
}

// NewReader returns a Reader over one capture stream.
func NewReader(in io.Reader, opts Options) (*Reader, error) {
	r := newReader(opts)
	r.in = fileseq.FromReader(in)
	pr, err := newPacketReader(r.in.Buf())
	if err != nil {
		return nil, err
	}
	r.pr = pr
	return r, nil
}

func newReader(opts Options) *Reader {
	if len(opts.Ports) == 0 {
		opts.Ports = []uint16{5432}
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxBufferedBytes <= 0 {
		opts.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	r := &Reader{opts: opts, ports: map[uint16]bool{}, nextID: opts.FirstID}
	r.conns = lru.New(opts.MaxConnections, 0, r.evicted)
	if r.nextID == 0 {
		r.nextID = 1
	}
	for _, p := range opts.Ports {
		r.ports[p] = true
	}
	return r
}

// nextFile opens the next file; io.EOF when there is none.
func (r *Reader) nextFile() error {
	if err := r.in.Next(); err != nil {
		return err
	}
	pr, err := newPacketReader(r.in.Buf())
	if err != nil {
		return fmt.Errorf("%s: %w", r.in.Name(), err)
	}
	r.pr = pr
	r.stats.Files++
	return nil
}

// Close closes the current file.
func (r *Reader) Close() error { return r.in.Close() }

// BytesRead is how far the Reader got in its files; safe to call from
// another goroutine.
func (r *Reader) BytesRead() int64 { return r.in.BytesRead() }

// Stats returns the counters.
func (r *Reader) Stats() Stats { return r.stats }

// emit receives the trackers' executions.
func (r *Reader) emit(e *pgwire.Execution) {
	r.out = append(r.out, e)
}

// Next returns the next execution, io.EOF after the last packet of the
// last file (when every connection still open has been ended).
func (r *Reader) Next() (*pgwire.Execution, error) {
	for {
		if r.outHead < len(r.out) {
			e := r.out[r.outHead]
			r.out[r.outHead] = nil
			r.outHead++
			r.stats.Executions++
			return e, nil
		}
		r.out, r.outHead = r.out[:0], 0
		if r.done {
			return nil, io.EOF
		}
		if err := r.readPacket(); err != nil {
			return nil, err
		}
	}
}

// readPacket reads and handles one packet, moving to the next file at the
// end of one; at the end of the last it ends every connection.
func (r *Reader) readPacket() error {
	err := r.pr.next(&r.pkt)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			// A capture cut short (tcpdump killed) ends in a partial packet:
			// note it and go on with the next file.
			r.problems = append(r.problems, fmt.Sprintf("%s: %v", r.nameOr(), err))
		}
		if !r.in.More() {
			r.finish()
			return nil
		}
		if err := r.nextFile(); err != nil {
			if errors.Is(err, io.EOF) {
				r.finish()
				return nil
			}
			return err
		}
		return nil
	}
	r.stats.Packets++
	r.packet(&r.pkt)
	return nil
}

func (r *Reader) nameOr() string {
	if r.in.Name() == "" {
		return "capture"
	}
	return r.in.Name()
}

// finish ends every connection at the end of the capture.
func (r *Reader) finish() {
	r.done = true
	var cs []*conn
	r.conns.All(func(_ connKey, c *conn) bool {
		cs = append(cs, c)
		return true
	})
	for _, c := range byID(cs) {
		r.closeConn(c)
	}
	r.Close()
}

// byID sorts connections by id, so that ending several is deterministic.
func byID(cs []*conn) []*conn {
	slices.SortFunc(cs, func(a, b *conn) int { return cmp.Compare(a.id, b.id) })
	return cs
}

func (r *Reader) packet(p *packet) {
	s := &r.seg
	switch decode(p.link, p.data, p.origLen, s) {
	case decodeOK:
	case decodeFragment:
		r.stats.Fragments++
		return
	case decodeShort:
		r.stats.Short++
		return
	case decodeLink:
		r.stats.UnsupportedLink++
		return
	default:
		r.stats.Ignored++
		return
	}
	if p.ts.After(r.now) {
		r.now = p.ts
	}
	var key connKey
	var dir int
	switch {
	case r.ports[s.dport]:
		key = connKey{client: s.src, server: s.dst, cport: s.sport, sport: s.dport}
		dir = toServer
	case r.ports[s.sport]:
		key = connKey{client: s.dst, server: s.src, cport: s.dport, sport: s.sport}
		dir = toClient
	default:
		r.stats.Ignored++
		return
	}
	c, _ := r.conns.Get(key)
	if c != nil && dir == toServer && s.syn && !s.ack && (c.dirs[toServer].started || c.phase == phaseDone) {
		r.closeConn(c) // the port was reused for a new connection
		c = nil
	}
	if c == nil {
		if !s.syn && len(s.payload) == 0 && s.missing == 0 && !s.fin {
			return // a bare ACK of a connection not being followed
		}
		if s.rst || (s.fin && len(s.payload) == 0) {
			return
		}
		c = &conn{id: r.nextID, key: key, lastSeen: p.ts}
		r.nextID++
		r.conns.Add(key, c, 0) // past MaxConnections, ends the least recently active
		r.stats.Connections++
	}
	r.segment(c, dir, s, p.ts)
	if r.stats.Packets%sweepEvery == 0 {
		r.sweep()
	}
}

// sweep ends connections idle for longer than IdleTimeout: the least
// recently active ones, in id order.
func (r *Reader) sweep() {
	cutoff := r.now.Add(-r.opts.IdleTimeout)
	var idle []*conn
	for {
		k, c, ok := r.conns.Oldest()
		if !ok || !c.lastSeen.Before(cutoff) {
			break
		}
		r.conns.Remove(k)
		idle = append(idle, c)
	}
	for _, c := range byID(idle) {
		r.stats.Evicted++
		r.closeConn(c)
	}
}

// evicted ends the least recently active connection, which the table
// dropped to make room for a new one.
func (r *Reader) evicted(_ connKey, c *conn) {
	r.stats.Evicted++
	r.closeConn(c)
}

// Problems describe, one line each, the files that could not be read to
// their end: cut short (a partial packet at the end) or corrupt past some
// point. Each is also among the Notes.
func (r *Reader) Problems() []string {
	out := make([]string, 0, len(r.problems))
	for _, p := range r.problems {
		out = append(out, "pcap: "+p)
	}
	return out
}

// Notes describe, for a person, what could not be followed.
func (r *Reader) Notes() []string {
	var notes []string
	st := r.stats
	if st.TLS > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d TLS-encrypted connections skipped (%s%s)", st.TLS,
			strings.Join(r.tlsConns, ", "), more(st.TLS, len(r.tlsConns))))
	}
	if st.Midstream > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d connections joined mid-way (no SYN in the capture): followed from the first message boundary that could be trusted (%s%s)",
			st.Midstream, strings.Join(r.midConns, ", "), more(st.Midstream, len(r.midConns))))
	}
	if st.SkippedBytes > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d bytes skipped while looking for a message boundary to trust", st.SkippedBytes))
	}
	if st.LostBytes > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d bytes missing from the capture (dropped packets or snapshot length); %d resynchronizations", st.LostBytes, st.Resyncs))
	}
	if st.ProtocolErrors > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d malformed messages; those connections were resynchronized", st.ProtocolErrors))
	}
	if st.Replication > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d replication connections not analyzed", st.Replication))
	}
	if st.Fragments > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d IP fragments ignored", st.Fragments))
	}
	if st.UnsupportedLink > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d packets of an unsupported link type ignored", st.UnsupportedLink))
	}
	if st.Evicted > 0 {
		notes = append(notes, fmt.Sprintf("pcap: %d connections ended early by the bounds (idle %v, at most %d at once)", st.Evicted, r.opts.IdleTimeout, r.opts.MaxConnections))
	}
	for _, p := range r.problems {
		notes = append(notes, "pcap: "+p)
	}
	if st.Connections == 0 {
		ports := make([]string, len(r.opts.Ports))
		for i, p := range r.opts.Ports {
			ports[i] = fmt.Sprint(p)
		}
		notes = append(notes, fmt.Sprintf("pcap: no TCP connection to port %s in %d packets (--port names the server's port)", strings.Join(ports, ","), st.Packets))
	}
	return notes
}

func more(total int64, shown int) string {
	if int(total) > shown {
		return fmt.Sprintf(", and %d more", int(total)-shown)
	}
	return ""
}
