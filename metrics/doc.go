// Package metrics exports what nplus1 sees as Prometheus metrics: the
// proxy's connections and bytes, every statement by command, outcome,
// duration and rows, errors by SQLSTATE class, findings by kind and
// severity, the detector's, the fingerprint cache's and the inspection
// connection's counters, and per-fingerprint series for a bounded top-K of
// query shapes.
//
// It earns a package because it is the one place that knows Prometheus: the
// proxy, fingerprint and detector packages keep plain counters and know
// nothing of it, and cmd/nplus1 only wires it (one registry per command, no
// global state). The dashboards and rules in dashboards/ are tested against
// Names, the list of what it exports.
//
// # Where the numbers come from, and what they cost
//
// Nothing is added to the relay path. The proxy already counts connections,
// bytes and queue drops with atomics (proxy.Server.Stats); Watch registers a
// collector that copies those, the detector's and the cache's counters at
// scrape time. Per-statement metrics are observed on the analyzer's goroutine,
// off the relay path, through analyzer.Config.Observe (Exporter.Observe) and
// the analyzer's sinks (Exporter.Finding): a few atomic adds on children
// resolved in advance, one histogram bucket search, and one short critical
// section for the top-K table.
//
// # Per-fingerprint series: the top-K
//
// Every fingerprint is tracked (up to Options.Tracked, least recently seen
// first out, counted in nplus1_fingerprint_ranking_evictions_total) with its
// calls, time and findings over a sliding window (Options.TopWindow, in ten
// slots). At each scrape the fingerprints active in the window are ranked by
// findings then total time (RankFindings, the default) or by total time then
// findings (RankTime), and the first Options.TopK get their own series:
//
//	nplus1_fingerprint_calls_total{fingerprint}
//	nplus1_fingerprint_duration_seconds_total{fingerprint}
//	nplus1_fingerprint_rows_total{fingerprint}
//	nplus1_fingerprint_findings_total{fingerprint, kind}
//	nplus1_fingerprint_info{fingerprint, command, query, tables}   (always 1)
//
// Everything else is folded into fingerprint="__other__" (no _info). A
// fingerprint's series count what happened while it was in the top-K, and
// __other__ counts the rest, so summing over the fingerprint label gives the
// total, and every series only grows (see topK for the hand-over when a
// fingerprint leaves). The query label is the normalized, literal-free text,
// cut to 120 characters; tables are comma-separated, cut the same way.
//
// The same table, counted since each fingerprint was tracked whether or not
// it had series of its own, with its failed executions and a histogram of
// its durations (the buckets of nplus1_query_duration_seconds, for a p95),
// is what Exporter.Fingerprints returns: the web page's queries table reads
// it, so that the page and the series cannot disagree.
//
// # Worst-case series count
//
// For one process with top-K = K (MaxSeries computes it):
//
//	  1                   nplus1_build_info
//	+ 10×2                nplus1_queries_total: 10 commands × 2 outcomes
//	+ 10×(14+3)           nplus1_query_duration_seconds: 10 commands × (14 buckets, +Inf, _sum, _count)
//	+ (11+3)              nplus1_query_rows_returned
//	+ 44                  nplus1_query_errors_total: 43 SQLSTATE classes and "other"
//	+ 9×3 + (9+3)         nplus1_findings_total: 9 kinds × 3 severities; nplus1_n_plus_one_group_size
//	+ 18                  connections, logins, bytes, queue (Sources.Proxy, Sources.QueueLength)
//	+ 37                  detector: occurrences 9 kinds × 3 results, windows, groups
//	+ 16                  fingerprint cache: 3 caches × 4, bytes, oversize, volatile, parse failures
//	+ 2                   top-K ranking entries and evictions
//	+ (K+1)×(3+9) + K     per fingerprint: K fingerprints and __other__; _info for the K
//	= 361 + 13K + 12      = 1023 for the default K = 50
//
// plus the Go and process collectors' go_* and process_* series (44 with Go 1.26 on Linux,
// fixed for a Go version), the 3 of the export of findings as spans with
// --otlp-endpoint (Sources.Spans) and the 6 of the inspection connection
// with --inspect-url (Sources.Inspections). No label takes a value from the traffic except
// fingerprint, query and tables, which exist only for the K fingerprints.
//
// # Concurrency
//
// Observe and Finding may be called from any goroutine (the analyzer calls
// them from its own); collection runs on the scraping goroutine. The top-K
// table is guarded by one mutex, held for a map lookup and a few adds per
// execution, and for the ranking (sorting at most Options.Tracked entries)
// per scrape.
package metrics
