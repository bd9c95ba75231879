// Package proxy owns the sockets: it accepts PostgreSQL clients, dials the
// upstream server, relays the authentication exchange (TLS on either side,
// SCRAM channel binding withheld where it cannot work through a proxy) and
// then relays every byte unchanged, showing each chunk to the connection's
// pgwire.Tracker on the way. Executions leave through Config.Events, a
// bounded channel: when it is full they are dropped and counted, so the
// relay never waits for analysis.
//
// # Relay modes
//
// An established session is relayed in one of two ways (Config.Relay):
//
//   - The event loop (Linux, plaintext on both sides, GOMAXPROCS ≥ 2): one
//     locked OS thread per loop waits in epoll_wait on all its sessions'
//     sockets and, for each readable one, reads a chunk, feeds the tracker
//     and writes the chunk to the peer. Backpressure holds at most one chunk
//     per direction. See loop_linux.go for why and for the measurements.
//   - Goroutine pumps (TLS sessions, --relay goroutines, other platforms):
//     two goroutines per session, one per direction.
//
// # Locking
//
// A session's tracker is only ever fed by one thread at a time: on the loop
// by the loop's thread; on pumps under conn.tmu, taken around every
// Frontend and Backend call. Writes to the client from outside the relay
// (fatal notices at shutdown or on protocol errors) take conn.wmu on pumps
// and are posted to the loop as commands (through its eventfd) on the loop. Server-wide state
// (the session table, counters) is behind Server.mu or atomics; Stats
// reads atomics only, so scrapes never block the relay.
//
// The handler goroutine of a session does the handshake, hands the session
// to the relay, waits for it to end and then cancels a running statement,
// closes the tracker (emitting held executions) and updates the counters.
package proxy
