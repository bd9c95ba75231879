// Package recording writes and reads nplus1 recordings: what the proxy saw,
// one JSON object per line, so that it can be analyzed again (nplus1 replay)
// or re-executed against a database.
//
// A recording holds parameter values and SQL text with its literals: it is
// the application's data, and must be stored and shared like a database dump.
//
// # Format
//
// Each line is {"type": T, "item": {...}}, the envelope of
// gocardless/pgreplay-go's JSON files, and the item fields they share mean the
// same: timestamp (when the statement started, RFC 3339), session_id, user,
// database, query, and parameters (text values as strings, NULL as null). So
// pgreplay-go can replay a recording, and this package reads its files.
//
//   - "Connect": a connection's first statement is about to follow; the item
//     names the connection (conn_id, client_addr, application_name).
//   - "Statement": a simple-protocol query (the whole text) and the result of
//     its first statement.
//   - "StatementResult": the result of a later statement of the same
//     simple-protocol text (statement_index 1, 2, ...). pgreplay-go does not
//     know the type and skips the line, which is right: its Statement already
//     ran the whole text.
//   - "BoundExecute": an extended-protocol execution with its parameters.
//   - "Disconnect" (pgreplay-go's; the proxy does not write it).
//
// nplus1's own item fields: conn_id, client_addr, application_name,
// duration_ns, statement_index, prepared, params_hash (16 hex digits, the
// proxy's hash of the bound values), param_formats (the Bind's format codes
// as sent), param_hex (indexes of parameters written as "\x" and hex digits,
// because they are binary or not UTF-8), params_truncated, sql_truncated,
// command, rows, sqlstate, in_tx and tx_end. Fields are added, never renamed;
// readers ignore fields they do not know.
//
// # Value evidence
//
// When the proxy attached value evidence to an execution (--evidence, on by
// default), its item holds the digests too, never the values they were
// made from:
//
//   - param_keys: the digests of the bound parameters (Execution.ParamKeys);
//   - result_columns: the result's column names, result_keys: per column,
//     the digests of its values in the first rows (Execution.Result), and
//     result_truncated when rows or columns past the tracker's bounds were
//     not hashed.
//
// Each list of digests is one JSON string: the digests as little-endian
// 64-bit integers, in standard base64 with padding (the Reader accepts it
// without). A digest of 0 is valuekey.None (NULL, or a value that cannot
// be a key). That is about 11 bytes per digest, where 16 hex digits in a
// JSON array take 19, and one decode per list.
//
// The digests are keyed by the recording proxy's random per-process key,
// which is never written, and written sealed (valuekey.Seal: a keyed hash
// of the digest, so that known values cannot be tested against them): all
// the digests of one proxy run are comparable with each other, and digests
// of different runs never match, so the
// detector's data-flow proof spans one run (the session_id prefix, the
// Writer's start, tells runs apart). For the same reason a recording's
// result digests never match the digests of SQL literals, which the
// replaying process computes from the text: a loop whose keys are
// literals in its text (the simple protocol, or values the client
// inlined) is judged on repetition in a replayed recording. A
// Reader restores the evidence with ReaderOptions.Evidence, taking its
// memory from the EvidenceBudget as a tracker does; a recording written
// without evidence (by --evidence=false, or an nplus1 that did not record
// it) reads without it, and its notes say so.
//
// # Files
//
// A Writer rotates by size: with a directory it writes
// nplus1-YYYYMMDDTHHMMSSZ-NNNN.jsonl files in it, with a file name it writes
// that file and then NAME.0001, NAME.0002, ... A Reader reads files in the
// order given as one stream, in constant memory; package replay's Open
// expands a directory into its files in name order and detects recordings
// by their first line. The sessions a Reader remembers are bounded (the
// least recently used is forgotten, and rebuilt from its next item).
//
// Concurrency: a Writer and a Reader are each used by one goroutine.
package recording
