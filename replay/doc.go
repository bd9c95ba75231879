// Package replay is nplus1's offline wing: it reads traffic captured
// without the proxy, runs it through the same analysis as the live proxy,
// and re-executes it against a database (the nplus1 replay command).
//
// It earns a package because it is the one place that knows about time in
// a replay: Analyze drives the analyzer on a virtual clock taken from the
// executions (a capture's packet times, a log's timestamps, a recording's
// start and end times), so that the same input always gives the same
// findings, byte for byte; Reexecute drives a database on the wall clock,
// keeping the input's per-connection order and timing. The input formats
// only decode; outputs (package analyzer's sinks, and the summary, JSON and
// JUnit writers here) only format.
//
// # Inputs
//
// Three formats, a package each, each turning its input into the
// pgwire.Executions the live proxy would have emitted, in constant memory:
//
//   - replay/pcap: pcap and pcapng files (tcpdump -w), with its own TCP
//     reassembly, driving a pgwire.Tracker per connection;
//   - replay/recording: the proxy's own recordings (nplus1 proxy --record,
//     JSON lines; pgreplay-go's files too), the Writer and the Reader;
//   - replay/pglog: PostgreSQL's csvlog and jsonlog.
//
// Open is the one way in: it expands directories (their regular files, in
// name order), detects each file's format from its first bytes (pcap and
// pcapng magic numbers, else the first line) unless OpenOptions.Format names
// one, reads the files of one format as one stream in the order given (a
// capture split by tcpdump -C, a rotated log or recording), and chains the
// formats in the order they first appear. The Input it returns is a Source
// that also reports its progress (BytesRead of TotalBytes), its Files and
// formats, and Notes on what its readers could not follow. Its errors say
// what is wrong with the input and how to fix it.
//
// # Analysis
//
// Analyze reads a Source on a goroutine of its own, a few batches ahead, and
// on the caller's goroutine feeds each execution to analyzer.Process after
// telling the detector, with analyzer.Advance, that the latest end time seen
// less Lag (the live proxy's 250 ms) has come, every Tick (50 ms) of event
// time: exactly what the live analyzer does with the wall clock. At the end
// it flushes every open window. The Summary aggregates per fingerprint (calls,
// total, mean, p95 and maximum time, rows, errors, findings), like
// pt-query-digest, in memory bounded by the number of fingerprints it keeps
// apart (MaxFingerprints; the rest are pooled as "other") and a 2 KB
// histogram each.
//
// # Re-execution
//
// Reexecute sends each statement to a target database on a connection of its
// own per recorded connection, in the recorded order, at the recorded
// offsets from the first statement divided by Speed, with pauses longer than
// MaxIdle shortened to MaxIdle. Writes are refused unless AllowWrites: a
// statement that is not known to be read-only is counted and skipped, and
// every session is opened with default_transaction_read_only=on, so that a
// write the classification missed fails in the server instead of changing
// data. What the target answered goes through the detector (on the wall
// clock, as the live proxy does) and into a Summary of its own, so latency
// and errors are reported per fingerprint.
package replay
