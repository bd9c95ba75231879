package main

import (
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/inspect"
	"github.com/nplus1/nplus1/metrics"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// metricsOptions are the flags of the proxy's GET /metrics.
type metricsOptions struct {
	fs *flagSet

	topK      *int
	topWindow *time.Duration
	topBy     *string
}

func newMetricsOptions(fs *flagSet) *metricsOptions {
	return &metricsOptions{
		fs: fs,
		topK: fs.Int("metrics-top-k", metrics.DefaultTopK, "query fingerprints with their own series on /metrics; the others are\n"+
			"summed under fingerprint=\"__other__\"; 0: none"),
		topWindow: fs.Duration("metrics-top-window", metrics.DefaultTopWindow,
			"sliding window over which fingerprints are ranked for --metrics-top-k"),
		topBy: fs.Choice("metrics-top-by", metrics.RankFindings, []string{metrics.RankFindings, metrics.RankTime},
			"rank fingerprints for --metrics-top-k by findings (then total time) or by total time"),
	}
}

// proxyMetrics is the proxy command's own registry (no global state) and the
// exporter that fills it. A nil *proxyMetrics (no --http) does nothing.
type proxyMetrics struct {
	reg *prometheus.Registry
	exp *metrics.Exporter
	// timelines keeps the windows with findings for the page (webtimeline.go).
	timelines *timelineLog
}

// start checks the flags and, when enabled (--http is set), builds the
// registry and the exporter. Every error is a *usageError.
func (o *metricsOptions) start(enabled bool) (*proxyMetrics, error) {
	if *o.topK < 0 {
		return nil, o.fs.errorf("metrics-top-k", "must be 0 (none) or more, got %d", *o.topK)
	}
	if *o.topWindow < time.Second {
		return nil, o.fs.errorf("metrics-top-window", "must be at least 1s, got %v", *o.topWindow)
	}
	if !enabled {
		return nil, nil
	}
	k := *o.topK
	if k == 0 {
		k = -1 // metrics.Options: negative is none, 0 the default
	}
	reg := prometheus.NewRegistry()
	exp, err := metrics.New(reg, metrics.Options{TopK: k, TopWindow: *o.topWindow, TopBy: *o.topBy})
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return &proxyMetrics{reg: reg, exp: exp, timelines: newTimelineLog(exp.Query)}, nil
}

// observe makes the analyzer feed the exporter and the page's timelines:
// every execution through Observe, every finding as a sink. Both run on the
// analyzer's goroutine, off the relay path.
func (m *proxyMetrics) observe(cfg *analyzer.Config) {
	if m == nil {
		return
	}
	cfg.Observe = func(ev *detector.Event) {
		m.exp.Observe(ev)
		m.timelines.observe(ev)
	}
	cfg.Sinks = slices.Concat(cfg.Sinks, []analyzer.Sink{m.exp, m.timelines})
}

// watch exports the counters the proxy, the analyzer and the fingerprint
// cache keep anyway; they are read at scrape time.
func (m *proxyMetrics) watch(srv *proxy.Server, an *analyzer.Analyzer, events chan *pgwire.Execution) error {
	if m == nil {
		return nil
	}
	return m.exp.Watch(metrics.Sources{
		Proxy:         srv.Stats,
		Detector:      an.Stats,
		Fingerprints:  an.Fingerprints().Stats,
		QueueLength:   func() int { return len(events) },
		QueueCapacity: cap(events),
	})
}

// watchInspector exports the inspection connection's counters (with
// --inspect-url), read at scrape time.
func (m *proxyMetrics) watchInspector(in *inspect.Inspector) error {
	if m == nil || in == nil {
		return nil
	}
	return m.exp.Watch(metrics.Sources{Inspections: func() metrics.InspectionStats {
		s := in.Stats()
		return metrics.InspectionStats{Inspected: s.Inspected, Failed: s.Failed, Dropped: s.Dropped, Lost: s.Lost,
			Cached: s.Cached, Connected: s.Connected}
	}})
}

// handler serves the registry in the Prometheus text format; nil when
// metrics are off.
func (m *proxyMetrics) handler(logger *slog.Logger) http.Handler {
	if m == nil {
		return nil
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		Timeout:  10 * time.Second,
	})
}

// webDeps are the page's sources: the top-K ranking's table for GET
// /api/fingerprints and the timelines of the windows with findings; none
// when metrics are off.
func (m *proxyMetrics) webDeps() webDeps {
	if m == nil {
		return webDeps{}
	}
	return webDeps{fingerprints: m.exp, timelines: m.timelines}
}
