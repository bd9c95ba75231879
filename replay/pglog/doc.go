// Package pglog reads PostgreSQL's csvlog and jsonlog (PostgreSQL 15+)
// server logs and turns the statements they record into Executions, so that
// a team that cannot put the proxy in front of its database can still run
// nplus1's analysis over what the server logged.
//
// It earns a package because server logs are a source of their own, with
// their own formats and their own ways of spreading one statement over
// several lines.
//
// # What the server must log
//
// log_min_duration_statement = 0 (every statement with its duration), or
// log_statement = 'all' (every statement, before it runs; durations then come
// from log_duration or log_min_duration_statement lines that follow), and
// log_connections and log_disconnections for the connections' identity.
// log_timezone = 'UTC' is best: zone abbreviations other than UTC and GMT
// cannot be resolved from the log alone and are read as UTC, which shifts
// all times alike and changes no finding.
//
// # How lines become executions
//
// The session id (%c: process start time and pid) is the group key: every
// line of a session belongs to one connection, numbered in the order
// sessions first appear. For each session:
//
//   - "statement: SQL" is a simple-protocol query; "execute NAME: SQL" (and
//     "execute NAME/PORTAL: SQL") an extended-protocol execution, whose
//     DETAIL "parameters: $1 = '...', $2 = NULL" gives the parameter values,
//     hashed as the proxy hashes bound values. The "parse" and "bind" lines
//     of the three-line form are not executions and are skipped; an
//     execution is one "execute" line, as it is one Execute message on the
//     wire.
//   - With a "duration: D ms" prefix the statement is complete; the line's
//     time is its end and the duration gives its start. Without one
//     (log_statement), it waits for the session's next "duration: D ms"
//     line, or its error, or its next statement.
//   - An ERROR whose statement is logged (the query field) is a failed
//     execution with that SQLSTATE.
//   - BEGIN/START TRANSACTION ... COMMIT/ROLLBACK (by command tag or text)
//     set InTransaction, and TxEnd on the statement that ends it.
//
// Logs carry no row counts: Rows is -1, so unpaginated reads and the source
// of an N+1 cannot be found in them. A multi-statement simple query is one
// log line, and one execution (its first statement).
//
// Logs do not say how a session set standard_conforming_strings, which
// decides where the string constants of its statements end: every
// execution has StandardStrings unknown, and the analysis reads the text in
// the way that holds under either setting (see package fingerprint), so
// that no literal of a session with the setting off reaches a finding.
//
// # Bounds
//
// Lines are streamed: a record longer than MaxRecordBytes is skipped (and
// counted) without being held, sessions are bounded (past MaxSessions the
// one that appeared first is forgotten, its pending statement emitted, and
// counted; a session also ends at its disconnection line), and statement
// texts are interned in a bounded table.
//
// Concurrency: a Reader is used by one goroutine; BytesRead may be called
// from any.
package pglog
