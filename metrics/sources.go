package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/proxy"
)

// Sources are the counters other parts keep anyway, read at scrape time. A
// nil func leaves its metrics out.
type Sources struct {
	// Proxy is proxy.Server.Stats: connections, bytes, the event queue.
	Proxy func() proxy.Stats
	// Detector is analyzer.Analyzer.Stats.
	Detector func() detector.Stats
	// Fingerprints is fingerprint.Cache.Stats.
	Fingerprints func() fingerprint.CacheStats
	// QueueLength is the number of executions waiting for the analyzer, and
	// QueueCapacity the queue's size.
	QueueLength   func() int
	QueueCapacity int
	// Spans counts the findings exported as OpenTelemetry spans
	// (--otlp-endpoint).
	Spans func() SpanStats
	// Inspections counts the work of the inspection connection
	// (--inspect-url).
	Inspections func() InspectionStats
}

// SpanStats are the counters of the export of findings as spans: accepted
// by the endpoint, dropped because too many waited for it, and sent but not
// accepted.
type SpanStats struct{ Exported, Dropped, Failed uint64 }

// InspectionStats are the inspection connection's counters (package
// inspect's Stats): inspections run and, of them, failed; requests dropped
// because its queue was full; answers that the analysis did not take in
// time (the answer is cached, and a later request gets it); requests
// answered from the cache; and whether the connection is up now.
type InspectionStats struct {
	Inspected, Failed, Dropped, Lost, Cached uint64
	Connected                                bool
}

// sourcesCollector reads Sources at scrape time. Its descriptors are fixed;
// every label value comes from a closed list.
type sourcesCollector struct {
	src Sources

	connsActive, connsAccepted, connsRejected, connErrors *prometheus.Desc
	upstreamActive, upstreamErrors, cancels, bytes        *prometheus.Desc
	queued, dropped, queueLength, queueCapacity           *prometheus.Desc
	loginsActive, loginsRejected, loginTimeouts           *prometheus.Desc

	occurrences, windowsOpen, windowsClosed, groups, groupsEvicted, paramsDropped *prometheus.Desc

	cacheHits, cacheMisses, cacheEvictions, cacheEntries, cacheBytes, cacheOversize, cacheVolatile, parseFailures *prometheus.Desc

	spansExported, spansDropped *prometheus.Desc

	inspections, inspectionsDropped, inspectionCacheHits, inspectionUp *prometheus.Desc
}

func newSourcesCollector(src Sources) *sourcesCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &sourcesCollector{
		src: src,

		connsActive:    d("nplus1_client_connections_active", "Client connections open now."),
		connsAccepted:  d("nplus1_client_connections_accepted_total", "Client connections accepted."),
		connsRejected:  d("nplus1_client_connections_rejected_total", "Client connections refused because --max-connections or --max-login-connections was reached or the proxy was shutting down."),
		connErrors:     d("nplus1_client_connection_errors_total", "Client connections that ended with an error rather than a clean close, by reason (protocol: a malformed or oversized message; server_lost: the server side ended the session or login, not after the client's Terminate; other).", "reason"),
		upstreamActive: d("nplus1_upstream_connections_active", "Upstream (PostgreSQL) connections open now, one per client session."),
		upstreamErrors: d("nplus1_upstream_connect_errors_total", "Failed upstream dials and TLS handshakes (for sessions and for forwarded cancel requests)."),
		cancels:        d("nplus1_cancel_requests_total", "CancelRequests forwarded to the upstream."),
		bytes:          d("nplus1_relayed_bytes_total", "Bytes relayed, by direction (client_to_server, server_to_client).", "direction"),
		loginsActive:   d("nplus1_client_logins_active", "Client connections logging in now (accepted, not yet authenticated)."),
		loginsRejected: d("nplus1_client_logins_rejected_total", "Client connections refused at once because --max-login-connections were logging in."),
		loginTimeouts:  d("nplus1_client_login_timeouts_total", "Client connections closed because their login took longer than --login-timeout."),
		queued:         d("nplus1_executions_queued_total", "Executions handed to the analysis queue."),
		dropped:        d("nplus1_executions_dropped_total", "Executions dropped because the analysis queue was full (the relay never waits for analysis)."),
		queueLength:    d("nplus1_analysis_queue_length", "Executions waiting in the analysis queue."),
		queueCapacity:  d("nplus1_analysis_queue_capacity", "Size of the analysis queue (--queue-size)."),

		occurrences:   d("nplus1_detector_occurrences_total", "Occurrences of a pattern in a closed window, by kind and result (reported; suppressed by the report cooldown; ignored by the safelist).", "kind", "result"),
		windowsOpen:   d("nplus1_detector_windows_open", "Windows of statements open now."),
		windowsClosed: d("nplus1_detector_windows_closed_total", "Windows closed, by reason ("+strings.Join(detector.CloseReasons(), ", ")+").", "reason"),
		groups:        d("nplus1_detector_groups", "Group keys (connections, traces) the detector remembers now."),
		groupsEvicted: d("nplus1_detector_groups_evicted_total", "Group keys forgotten because the detector's bound on groups was reached."),
		paramsDropped: d("nplus1_detector_params_dropped_total", "Distinct parameter sets not tracked because a shape reached its bound in a window."),

		cacheHits:      d("nplus1_fingerprint_cache_hits_total", "Fingerprint cache hits, by cache (text: exact SQL text; template: statement with literals blanked; shape: facts by fingerprint).", "cache"),
		cacheMisses:    d("nplus1_fingerprint_cache_misses_total", "Fingerprint cache misses, by cache.", "cache"),
		cacheEvictions: d("nplus1_fingerprint_cache_evictions_total", "Fingerprint cache entries evicted to respect its bounds, by cache.", "cache"),
		cacheEntries:   d("nplus1_fingerprint_cache_entries", "Fingerprint cache entries now, by cache.", "cache"),
		cacheBytes:     d("nplus1_fingerprint_cache_bytes", "Approximate memory held by the fingerprint text cache."),
		cacheOversize:  d("nplus1_fingerprint_cache_oversize_total", "SQL texts fingerprinted but not cached because of their size."),
		cacheVolatile:  d("nplus1_fingerprint_cache_volatile_total", "SQL texts fingerprinted but not cached because their shape comes with new literal values every time."),
		parseFailures:  d("nplus1_fingerprint_parse_failures_total", "Statements that did not parse and got a fallback fingerprint."),

		spansExported: d("nplus1_otlp_spans_exported_total", "Findings exported as OpenTelemetry spans and accepted by the OTLP endpoint (--otlp-endpoint)."),
		spansDropped:  d("nplus1_otlp_spans_dropped_total", "Findings not exported as spans, by reason (queue_full: too many spans waited for a slow or absent endpoint, the analysis never waits; export_failed: the endpoint refused them or did not answer in time).", "reason"),

		inspections:         d("nplus1_inspections_total", "Query shapes inspected on the inspection connection (--inspect-url: catalogs and a generic plan, for missing_index), by result (ok; failed: missing privileges, a timeout, a query that does not plan).", "result"),
		inspectionsDropped:  d("nplus1_inspections_dropped_total", "Inspections that did not reach the detector, by reason (queue_full: a request dropped because the inspection queue was full, asked again by a later occurrence; answer_lost: an answer the analysis had no room for, cached for the next request).", "reason"),
		inspectionCacheHits: d("nplus1_inspection_cache_hits_total", "Inspection requests answered from the cache of answers per fingerprint, without a statement on the inspection connection."),
		inspectionUp:        d("nplus1_inspection_connection_up", "1 when the inspection connection is connected, 0 while it is being made or remade (with backoff)."),
	}
}

func (c *sourcesCollector) descs() []*prometheus.Desc {
	var ds []*prometheus.Desc
	if c.src.Proxy != nil {
		ds = append(ds, c.connsActive, c.connsAccepted, c.connsRejected, c.connErrors,
			c.upstreamActive, c.upstreamErrors, c.cancels, c.bytes, c.queued, c.dropped,
			c.loginsActive, c.loginsRejected, c.loginTimeouts)
	}
	if c.src.QueueLength != nil {
		ds = append(ds, c.queueLength, c.queueCapacity)
	}
	if c.src.Detector != nil {
		ds = append(ds, c.occurrences, c.windowsOpen, c.windowsClosed, c.groups, c.groupsEvicted, c.paramsDropped)
	}
	if c.src.Fingerprints != nil {
		ds = append(ds, c.cacheHits, c.cacheMisses, c.cacheEvictions, c.cacheEntries, c.cacheBytes, c.cacheOversize, c.cacheVolatile, c.parseFailures)
	}
	if c.src.Spans != nil {
		ds = append(ds, c.spansExported, c.spansDropped)
	}
	if c.src.Inspections != nil {
		ds = append(ds, c.inspections, c.inspectionsDropped, c.inspectionCacheHits, c.inspectionUp)
	}
	return ds
}

// Describe implements prometheus.Collector.
func (c *sourcesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *sourcesCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.src.Proxy != nil {
		s := c.src.Proxy()
		gauge(c.connsActive, float64(s.ConnsActive))
		counter(c.connsAccepted, s.ConnsAccepted)
		counter(c.connsRejected, s.ConnsRejected)
		counter(c.connErrors, s.ProtocolErrors, "protocol")
		counter(c.connErrors, s.ConnErrors, "other")
		counter(c.connErrors, s.ServerLost, "server_lost")
		gauge(c.upstreamActive, float64(s.UpstreamActive))
		counter(c.upstreamErrors, s.UpstreamErrors)
		counter(c.cancels, s.Cancels)
		counter(c.bytes, s.BytesFromClient, "client_to_server")
		counter(c.bytes, s.BytesFromServer, "server_to_client")
		counter(c.queued, s.Events)
		counter(c.dropped, s.EventsDropped)
		gauge(c.loginsActive, float64(s.LoginsActive))
		counter(c.loginsRejected, s.LoginsRejected)
		counter(c.loginTimeouts, s.LoginTimeouts)
	}
	if c.src.QueueLength != nil {
		gauge(c.queueLength, float64(c.src.QueueLength()))
		gauge(c.queueCapacity, float64(c.src.QueueCapacity))
	}
	if c.src.Detector != nil {
		s := c.src.Detector()
		for _, k := range detector.Kinds() {
			counter(c.occurrences, s.Reported[k], string(k), "reported")
			counter(c.occurrences, s.Suppressed[k], string(k), "suppressed")
			counter(c.occurrences, s.Ignored[k], string(k), "ignored")
		}
		gauge(c.windowsOpen, float64(s.WindowsOpen))
		for _, r := range detector.CloseReasons() {
			counter(c.windowsClosed, s.WindowsClosed[r], r)
		}
		gauge(c.groups, float64(s.Groups))
		counter(c.groupsEvicted, s.GroupsEvicted)
		counter(c.paramsDropped, s.ParamsDropped)
	}
	if c.src.Fingerprints != nil {
		s := c.src.Fingerprints()
		levels := []struct {
			name                    string
			hits, misses, evictions uint64
			entries                 int
		}{
			{"text", s.Hits, s.Misses, s.Evictions, s.Texts},
			{"template", s.Templates.Hits, s.Templates.Misses, s.Templates.Evictions, s.Templates.Entries},
			{"shape", s.Shapes.Hits, s.Shapes.Misses, s.Shapes.Evictions, s.Shapes.Entries},
		}
		for _, l := range levels {
			counter(c.cacheHits, l.hits, l.name)
			counter(c.cacheMisses, l.misses, l.name)
			counter(c.cacheEvictions, l.evictions, l.name)
			gauge(c.cacheEntries, float64(l.entries), l.name)
		}
		gauge(c.cacheBytes, float64(s.Bytes))
		counter(c.cacheOversize, s.Oversize)
		counter(c.cacheVolatile, s.Volatile)
		counter(c.parseFailures, s.Failures)
	}
	if c.src.Spans != nil {
		s := c.src.Spans()
		counter(c.spansExported, s.Exported)
		counter(c.spansDropped, s.Dropped, "queue_full")
		counter(c.spansDropped, s.Failed, "export_failed")
	}
	if c.src.Inspections != nil {
		c.collectInspections(counter, gauge)
	}
}

// collectInspections reads Sources.Inspections.
func (c *sourcesCollector) collectInspections(counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	s := c.src.Inspections()
	counter(c.inspections, s.Inspected-min(s.Failed, s.Inspected), "ok")
	counter(c.inspections, s.Failed, "failed")
	counter(c.inspectionsDropped, s.Dropped, "queue_full")
	counter(c.inspectionsDropped, s.Lost, "answer_lost")
	counter(c.inspectionCacheHits, s.Cached)
	up := 0.0
	if s.Connected {
		up = 1
	}
	gauge(c.inspectionUp, up)
}
