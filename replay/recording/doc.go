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
