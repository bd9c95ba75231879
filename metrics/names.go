package metrics

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// MaxSeries is the most nplus1_* series one process exports with the given
// top-K (Options.TopK; the Go and process collectors' go_* and process_*
// series, fixed for a Go version, come on top, and so do the 3 of
// Sources.Spans with --otlp-endpoint and the 6 of Sources.Inspections with
// --inspect-url). doc.go explains the terms.
func MaxSeries(topK int) int {
	histogram := func(buckets []float64) int { return len(buckets) + 3 } // +Inf, _sum, _count
	perQuery := numCommands*numOutcomes +                                // nplus1_queries_total
		numCommands*histogram(durationBuckets) + // nplus1_query_duration_seconds
		histogram(rowsBuckets) + // nplus1_query_rows_returned
		len(sqlstateClasses) + 1 // nplus1_query_errors_total, "other" included
	findings := numKinds*numSeverities + histogram(groupSizeBuckets)
	proxy := 16 + 2 // connections, logins, bytes, queue counters; queue length and capacity
	det := numKinds*3 + 1 + len(detector.CloseReasons()) + 1 + 1 + 1
	cache := 3*4 + 4 // hits, misses, evictions, entries by cache; bytes, oversize, volatile, parse failures
	ranking := 2
	perFingerprint := (topK+1)*(3+numKinds) + topK // calls, seconds, rows, findings by kind; _info
	return 1 + perQuery + findings + proxy + det + cache + ranking + perFingerprint
}

// Names returns the name of every series the nplus1 binary exports (a
// histogram as its _bucket, _sum and _count series), sorted: the names that
// dashboards and rules may use. It registers everything on a fresh registry,
// runs a small synthetic workload through it, and gathers.
func Names() ([]string, error) {
	reg := prometheus.NewRegistry()
	if err := Exercise(reg); err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, mf := range mfs {
		n := mf.GetName()
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names = append(names, n+"_bucket", n+"_sum", n+"_count")
		case dto.MetricType_SUMMARY:
			names = append(names, n, n+"_sum", n+"_count")
		default:
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Exercise registers an Exporter on reg, with sources that return fixed
// counters, and feeds it a few executions and one finding of each kind, so
// that every metric the binary exports has a series. Tests use it to lint
// and check a complete exposition.
func Exercise(reg prometheus.Registerer) error {
	now := time.Unix(1_700_000_000, 0)
	e, err := New(reg, Options{TopK: 2, Now: func() time.Time { return now }})
	if err != nil {
		return err
	}
	fp := fingerprint.New(fingerprint.Options{})
	dstats := detector.New(detector.Config{}).Stats()
	err = e.Watch(Sources{
		Proxy:         func() proxy.Stats { return proxy.Stats{ConnsAccepted: 1, ConnsActive: 1, UpstreamActive: 1} },
		Detector:      func() detector.Stats { return dstats },
		Fingerprints:  fp.Stats,
		QueueLength:   func() int { return 0 },
		QueueCapacity: 10,
		Spans:         func() SpanStats { return SpanStats{Exported: 1} },
		Inspections:   func() InspectionStats { return InspectionStats{Inspected: 2, Failed: 1, Connected: true} },
	})
	if err != nil {
		return err
	}
	conn := &pgwire.ConnInfo{ID: 1}
	run := func(sql, command, state string, rows int64) {
		x := &pgwire.Execution{Conn: conn, Start: now, End: now.Add(time.Millisecond), SQL: sql, Command: command, SQLState: state, Rows: rows}
		res := fp.Of(sql)
		e.Observe(&detector.Event{Exec: x, Stmt: &res.Statements[0]})
	}
	run("SELECT name FROM users WHERE id = 1", "SELECT", "", 1)
	run("SELECT * FROM users", "SELECT", "", 20)
	run("INSERT INTO users (id) VALUES (1)", "", "23505", -1)
	e.Observe(&detector.Event{Exec: &pgwire.Execution{Conn: conn, Start: now, End: now}})
	st := fp.Of("SELECT name FROM users WHERE id = 1").Statements[0]
	for _, k := range detector.Kinds() {
		e.Finding(&detector.Finding{Kind: k, Fingerprint: st.Hex, Query: st.Normalized, Count: 6})
	}
	return nil
}
