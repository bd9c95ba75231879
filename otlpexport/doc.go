// Package otlpexport sends findings to a tracing backend as OpenTelemetry
// spans over OTLP/HTTP (Jaeger, Tempo, the OpenTelemetry Collector, hosted
// backends).
//
// # What a finding becomes
//
// Each finding is one span. When the statements carried a sqlcommenter
// traceparent, the span joins the application's trace as a child of the
// span the traceparent names (the request's span, or the database call's,
// as the instrumentation wrote it), so the N+1 is drawn on the request that
// ran it; otherwise it is the root of a trace of its own. Its name is
// "nplus1 KIND TABLE" ("nplus1 n_plus_one users"), its start and end are the
// finding's window, and its attributes follow OpenTelemetry's database
// semantic conventions — db.system.name (postgresql), db.query.text (the
// normalized query: every literal replaced by $n), db.namespace (the
// database), db.collection.name (the table, when there is one) and
// db.operation.name (a write's command) — plus the finding's own fields
// under nplus1.*: kind, severity, fingerprint, count, distinct parameter
// sets, summed duration, rows, the source query, the evidence, the
// suggestion, occurrences, the connection and the sqlcommenter tags
// (traceparent and tracestate left out). No attribute holds a literal or
// parameter value: the finding holds none.
//
// A span rather than a span event: a span event needs a span of ours to
// hang on, which the application's trace does not have (its spans are
// another process's and already exported), and backends list, search and
// alert on spans (Jaeger's search by tag, Tempo's TraceQL), while events
// show only inside a span's detail. A finding is a pattern over a window of
// time, which a span's start and end draw on the trace's timeline.
//
// Spans are sampled always, whatever the traceparent's sampled flag says:
// findings are few, and each is the point of the export. A trace the
// application did not sample shows the finding alone, with a parent the
// backend does not have.
//
// # Never blocking the analysis
//
// Finding runs on the analyzer's goroutine. It builds the span and hands
// it to the SDK's batch span processor, whose bounded queue never blocks
// (the processor's blocking mode is off); a goroutine of the processor
// exports batches in the background. The Exporter counts the spans
// between the processor and the endpoint, and when QueueSize are waiting
// (the endpoint is slow or down) a new finding is dropped and counted
// (Stats.Dropped) instead of being queued, so every drop is counted here
// and none is left to the processor. Spans the endpoint refused or did not
// accept in time are counted in Stats.Failed. Export errors go to the
// OpenTelemetry error handler, which New makes log them at most once per
// interval, with the number held back.
package otlpexport
