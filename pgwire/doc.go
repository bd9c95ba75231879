// Package pgwire is the wire contract between nplus1's protocol readers and
// its analysis: the Execution and ConnInfo types, the Tracker that turns one
// connection's PostgreSQL protocol bytes into Executions, and the
// startup-phase codes and parsing that both the live proxy and the pcap
// reader need.
//
// It is a leaf: of nplus1's packages it imports only the internal helpers
// (lru, fnv1a, valuekey), and it owns no sockets.
// The live proxy (package proxy) and the offline readers (replay/pcap,
// replay/recording, replay/pglog) produce Executions; the analyzer,
// detector and metrics consume them. Nothing else crosses that line.
//
// # Ownership
//
// A Tracker belongs to one connection and is not safe for concurrent use.
// Its owner feeds it the client's bytes (Frontend) before it forwards them
// and the server's bytes (Backend) as they arrive, in order, in any
// chunking, and serializes the two: the proxy's relay loop is one thread
// per session, its goroutine pumps take one mutex around both calls. The
// emit callback runs inside Frontend or Backend; it must not block (the
// proxy hands the Execution to a bounded queue and drops when it is full).
//
// An emitted Execution is the receiver's: the Tracker never touches it
// again. Its *ConnInfo is shared, read only, by every Execution of its
// connection; a ParameterStatus that changes application_name makes a new
// ConnInfo rather than changing the old one. Execution.StandardStrings is
// the standard_conforming_strings the statement's text was parsed with,
// which the Tracker vouches for only where the wire proves it (see
// Tracker). With value evidence,
// ParamKeys (shared by a portal's executions) and Result.Columns (shared by
// the results of one statement) are read only too; the evidence's memory is
// the receiver's to give back to the EvidenceBudget it came from.
//
// # Layout
//
//   - execution.go: the contract (Execution, ConnInfo).
//   - tracker.go: the Tracker, its options, counters and lifecycle.
//   - framing.go: message framing over arbitrary chunks, both directions.
//   - requests.go: client messages and the queue of requests awaiting replies.
//   - bind.go: Bind parameters, hashed as they stream by (kept only on request),
//     and their bits (ParamWildcard, ParamLarge): one bit per parameter of
//     what a value is like, never the value.
//   - evidence.go: value evidence: result descriptions, DataRow digests, Parse types.
//   - budget.go: EvidenceBudget, the process-wide bound on attached evidence.
//   - replies.go: server replies matched to requests, held executions, transactions.
//   - statements.go: prepared statement and portal tables.
//   - tags.go: CommandComplete tags and the few statement texts the tracker reads.
//   - startup.go: startup-phase codes, StartupMessage and ParameterStatus parsing.
//   - msgtypes.go: message type bytes by name.
//   - limits.go: the default bounds, and the bounds of the value evidence.
package pgwire
