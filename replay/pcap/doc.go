// Package pcap reads PostgreSQL traffic from pcap and pcapng files
// (tcpdump -w) and turns it into the Executions the live proxy would have
// emitted, by driving the same pgwire.Tracker with the capture's timestamps.
//
// It earns a package because following TCP connections in a capture is a job
// of its own: file formats, link layers, reassembly, and finding where a
// connection can be trusted.
//
// # What it reads
//
// pcap (microsecond and nanosecond, either byte order) and pcapng (any
// interface timestamp resolution, several sections and interfaces), with
// Ethernet (VLAN tags included), Linux cooked v1 and v2 (tcpdump -i any),
// BSD/OpenBSD loopback and raw IP link layers, over IPv4 and IPv6 (extension
// headers skipped; IP fragments are ignored and counted). A TCP segment
// belongs to PostgreSQL when one of its ports is a server port (5432 unless
// Options.Ports says otherwise). The file reader is written here rather than
// taken from gopacket's pcapgo, whose pcapng reader allocates as much as a
// block header claims (up to 4 GB) before reading it: here a packet is at
// most MaxPacketBytes and every buffer is reused.
//
// # Reassembly
//
// Each connection is reassembled in both directions: retransmitted and
// overlapping bytes are delivered once, out-of-order segments are held (at
// most 1 MB per direction, 64 MB in all) until the hole before them fills. A
// hole still open 2 seconds of capture time later, or when the buffers are
// full or the connection ends, is given up: its bytes are counted as lost,
// and the connection is resynchronized (below). Segments the snapshot length
// cut are lost bytes too.
//
// # Connections
//
// A connection whose SYN is in the capture is followed from its first byte:
// SSLRequest and GSSENCRequest answered 'S' or 'G', and direct TLS
// (a ClientHello first), make it encrypted: reported (Stats.TLS, Notes) and
// skipped. The startup packet gives the user, database and application_name
// (replication connections and cancel requests are counted and skipped);
// the authentication exchange is read until the server's first ReadyForQuery,
// where a pgwire.Tracker takes over, exactly as in the live proxy.
//
// A connection the capture joined mid-way (no SYN), or that lost bytes, or
// whose tracker met a malformed message, is resynchronized: bytes are
// skipped (and counted) until a server segment that ends with a ReadyForQuery
// (the server is idle and waiting) and then a client segment, sent after it,
// that starts with a sequence of valid client messages. The tracker starts
// there. Such a connection has no user or database, only the client's
// address. Three segments that start like TLS records while looking make it
// encrypted.
//
// # Bounds
//
// Memory does not grow with the file: packets are read one at a time into a
// reused buffer, at most MaxConnections connections are followed, in an
// internal/lru table (the least recently active is ended to make room; one
// idle for IdleTimeout of capture time is ended), each with the tracker's own
// bounds and the reassembly bounds above. Both count as Stats.Evicted.
//
// Open reads several files in order as one capture; package replay's Open
// detects pcap and pcapng files and calls it.
//
// Concurrency: a Reader is used by one goroutine; BytesRead may be called
// from any.
package pcap
