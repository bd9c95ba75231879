// Package analyzer turns Executions into Findings and hands them to sinks.
//
// It is the one consumer of the proxy's event queue (and of replay's
// events): for each Execution it fingerprints the SQL text (through a shared,
// bounded fingerprint.Cache), feeds the detector, and delivers what the
// detector reports to every Sink. It owns the detector, which is not safe for
// concurrent use, so everything the detector does happens on the analyzer's
// goroutine (Run) or the caller's (Process, for replay).
//
// It earns a package because three commands share it (proxy, replay, demo),
// and because the sinks — console, JSONL file, the in-memory store behind the
// HTTP API and its Server-Sent Events stream, the CI gate — are about
// findings, not about the wire (proxy) or the rules (detector).
//
// Sinks are called on the analyzer's goroutine, one finding at a time; a sink
// must not block for long (Store drops events for slow SSE subscribers, and
// counts them).
package analyzer
