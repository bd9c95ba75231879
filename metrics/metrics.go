package metrics

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
)

// Ranking orders for Options.TopBy.
const (
	// RankFindings ranks fingerprints by the findings made about them in the
	// window, then by their total time in it.
	RankFindings = "findings"
	// RankTime ranks fingerprints by their total time in the window, then by
	// their findings.
	RankTime = "time"
)

// Defaults for the zero fields of Options.
const (
	DefaultTopK      = 50
	DefaultTopWindow = 10 * time.Minute
	// DefaultTracked is the least number of fingerprints tracked for the
	// ranking; Options.Tracked defaults to the larger of this and 20×TopK.
	DefaultTracked = 1000
)

// Other is the fingerprint label value of the series that hold everything
// outside the top-K.
const Other = "__other__"

// maxLabelChars bounds the query and tables labels of nplus1_fingerprint_info.
const maxLabelChars = 120

// Options configure an Exporter. Zero fields take the defaults.
type Options struct {
	// TopK is the number of fingerprints that get their own series; the
	// rest are folded into fingerprint="__other__". Negative: none.
	TopK int
	// TopWindow is the sliding window over which fingerprints are ranked.
	TopWindow time.Duration
	// TopBy is RankFindings (the default) or RankTime.
	TopBy string
	// Tracked bounds the fingerprints whose counts and window are kept for
	// the ranking; the least recently seen one outside the top-K is
	// forgotten first (and counted in
	// nplus1_fingerprint_ranking_evictions_total).
	Tracked int
	// Now is the clock of the ranking window (time.Now when nil).
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.TopK == 0:
		o.TopK = DefaultTopK
	case o.TopK < 0:
		o.TopK = 0
	}
	if o.TopWindow < 0 {
		return o, fmt.Errorf("top window must not be negative, got %v", o.TopWindow)
	}
	if o.TopWindow == 0 {
		o.TopWindow = DefaultTopWindow
	}
	if o.TopWindow < time.Second {
		return o, fmt.Errorf("top window must be at least 1s, got %v", o.TopWindow)
	}
	switch o.TopBy {
	case "":
		o.TopBy = RankFindings
	case RankFindings, RankTime:
	default:
		return o, fmt.Errorf("unknown ranking %q; want %s or %s", o.TopBy, RankFindings, RankTime)
	}
	if o.Tracked <= 0 {
		o.Tracked = max(DefaultTracked, 20*o.TopK)
	}
	o.Tracked = max(o.Tracked, o.TopK+1)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Exporter turns what the analyzer sees into Prometheus metrics. Observe and
// Finding are called on the analyzer's goroutine; the registry's Gather (a
// scrape) may run at the same time on another: both are safe.
type Exporter struct {
	reg prometheus.Registerer
	m   *metrics
	top *topK
}

// New registers on reg the build info, the Go and process collectors, the
// per-query and findings metrics, and the per-fingerprint top-K collector.
// The proxy's, detector's and cache's counters are added by Watch, once their
// owners exist.
func New(reg prometheus.Registerer, opts Options) (*Exporter, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Exporter{reg: reg, m: newMetrics(), top: newTopK(opts)}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(),
		e.m,
		e.top,
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return e, nil
}

// Observe records one execution: queries, duration, rows, errors and the
// per-fingerprint counts. It is the analyzer's Config.Observe hook and does
// not keep ev.
func (e *Exporter) Observe(ev *detector.Event) {
	x := ev.Exec
	if x == nil {
		return
	}
	cmd := commandOf(x.Command, ev.Stmt)
	seconds := max(x.Duration().Seconds(), 0)
	m := e.m
	if x.SQLState != "" {
		m.queries[cmd][outcomeError].Inc()
		m.errors.WithLabelValues(sqlstateClass(x.SQLState)).Inc()
	} else {
		m.queries[cmd][outcomeOK].Inc()
	}
	m.duration[cmd].Observe(seconds)
	var rows uint64
	if x.SQLState == "" && x.Rows >= 0 && (cmd == cmdSelect || cmd == cmdFetch) {
		m.rows.Observe(float64(x.Rows))
		rows = uint64(x.Rows)
	}
	e.top.observe(ev.Stmt, cmd, seconds, rows, x.SQLState != "")
}

// Finding counts one reported finding; Exporter is an analyzer.Sink.
func (e *Exporter) Finding(f *detector.Finding) {
	k := kindIndex(f.Kind)
	if k < 0 {
		e.m.findingsVec.WithLabelValues(string(f.Kind), string(severities[severityIndex(f.Severity)])).Inc()
		return
	}
	e.m.findings[k][severityIndex(f.Severity)].Inc()
	if f.Kind == detector.KindNPlusOne {
		e.m.groupSize.Observe(float64(f.Count))
	}
	e.top.finding(f, k)
}

// Watch registers a collector that reads src at every scrape: the proxy's
// connection, byte and queue counters, the detector's and the fingerprint
// cache's. Nothing is counted on the relay path for them: their owners keep
// atomic counters anyway, and a scrape copies them.
func (e *Exporter) Watch(src Sources) error {
	if err := e.reg.Register(newSourcesCollector(src)); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return errors.New("register metrics: Watch called twice")
		}
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}

// Statement commands, the values of the command label. A statement that
// failed has no CommandComplete tag; its command comes from the parsed
// statement's kind.
const (
	cmdSelect = iota
	cmdInsert
	cmdUpdate
	cmdDelete
	cmdMerge
	cmdCopy
	cmdFetch
	cmdTransaction
	cmdUtility
	cmdOther
	numCommands
)

var commandNames = [numCommands]string{"select", "insert", "update", "delete", "merge", "copy", "fetch", "transaction", "utility", "other"}

// commandOf maps a CommandComplete tag (or, when there is none, the
// statement's kind) to a command.
func commandOf(tag string, st *fingerprint.Statement) int {
	switch tag {
	case "SELECT":
		return cmdSelect
	case "INSERT":
		return cmdInsert
	case "UPDATE":
		return cmdUpdate
	case "DELETE":
		return cmdDelete
	case "MERGE":
		return cmdMerge
	case "COPY":
		return cmdCopy
	case "FETCH", "MOVE":
		return cmdFetch
	case "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
		"PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED":
		return cmdTransaction
	case "":
	default:
		return cmdUtility
	}
	if st == nil || st.Facts == nil {
		return cmdOther
	}
	switch st.Facts.Kind {
	case fingerprint.KindSelect:
		return cmdSelect
	case fingerprint.KindInsert:
		return cmdInsert
	case fingerprint.KindUpdate:
		return cmdUpdate
	case fingerprint.KindDelete:
		return cmdDelete
	case fingerprint.KindMerge:
		return cmdMerge
	case fingerprint.KindCopy:
		return cmdCopy
	case fingerprint.KindUtility:
		return cmdUtility
	}
	return cmdOther
}

// Outcomes, the values of the outcome label.
const (
	outcomeOK = iota
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "error"}

// sqlstateClasses are PostgreSQL's SQLSTATE classes (Appendix A of its
// manual, "PostgreSQL Error Codes"): the values of the class label, with
// "other" for anything else, so the label stays bounded whatever a server or
// a proxy in between sends.
var sqlstateClasses = []string{
	"00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z",
	"20", "21", "22", "23", "24", "25", "26", "27", "28", "2B", "2D", "2F",
	"34", "38", "39", "3B", "3D", "3F", "40", "42", "44",
	"53", "54", "55", "57", "58", "72", "F0", "HV", "P0", "XX",
}

// otherClass is the class label of an SQLSTATE outside sqlstateClasses.
const otherClass = "other"

func sqlstateClass(code string) string {
	if len(code) == 5 {
		c := code[:2]
		for _, k := range sqlstateClasses {
			if k == c {
				return k
			}
		}
	}
	return otherClass
}

// kindIndex is the index of k in kinds, or -1.
func kindIndex(k detector.Kind) int {
	switch k {
	case detector.KindNPlusOne:
		return 0
	case detector.KindDuplicateQuery:
		return 1
	case detector.KindUnpaginated:
		return 2
	case detector.KindSelectStar:
		return 3
	case detector.KindLeadingWildcard:
		return 4
	case detector.KindDeepOffset:
		return 5
	case detector.KindSlowQuery:
		return 6
	case detector.KindLostUpdate:
		return 7
	case detector.KindMissingIndex:
		return 8
	}
	return -1
}

const numKinds = 9

// kinds are the finding kinds the exporter knows, in the order of
// kindIndex (detector.Kinds' first nine). A kind it does not know is
// still counted in nplus1_findings_total, from its first finding on.
var kinds = [numKinds]detector.Kind{detector.KindNPlusOne, detector.KindDuplicateQuery, detector.KindUnpaginated, detector.KindSelectStar,
	detector.KindLeadingWildcard, detector.KindDeepOffset, detector.KindSlowQuery, detector.KindLostUpdate, detector.KindMissingIndex}

// Severities, the values of the severity label: detector.Severity's three.
const (
	sevInfo = iota
	sevWarning
	sevCritical
	numSeverities
)

var severities = [numSeverities]detector.Severity{detector.SeverityInfo, detector.SeverityWarning, detector.SeverityCritical}

// severityIndex is the index of s in severities. A severity outside them
// (the detector makes none) counts as a warning, so that the label keeps
// its three values.
func severityIndex(s detector.Severity) int {
	switch s {
	case detector.SeverityInfo:
		return sevInfo
	case detector.SeverityCritical:
		return sevCritical
	}
	return sevWarning
}

// Histogram buckets. Classic (not native) buckets, so that any Prometheus
// (Debian's 2.42 included) can histogram_quantile them.
var (
	// durationBuckets run from 0.5 ms to 10 s.
	durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// rowsBuckets: rows a SELECT or FETCH returned.
	rowsBuckets = []float64{0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 100000}
	// groupSizeBuckets: executions in a reported N+1 loop (the detector's
	// threshold is 5 by default).
	groupSizeBuckets = []float64{5, 10, 20, 50, 100, 200, 500, 1000, 2000}
)

// metrics holds the instruments updated by Observe and Finding. Children of
// the vectors that every execution touches are resolved once, here, so that
// an observation is a few atomic operations and no label hashing.
type metrics struct {
	queriesVec  *prometheus.CounterVec
	durationVec *prometheus.HistogramVec
	rows        prometheus.Histogram
	errors      *prometheus.CounterVec
	findingsVec *prometheus.CounterVec
	groupSize   prometheus.Histogram

	queries  [numCommands][numOutcomes]prometheus.Counter
	duration [numCommands]prometheus.Observer
	findings [numKinds][numSeverities]prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		queriesVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nplus1_queries_total",
			Help: "Statements the server executed, by command (select, insert, ..., from the CommandComplete tag or, for a failed statement, its parse) and outcome (ok, error).",
		}, []string{"command", "outcome"}),
		durationVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nplus1_query_duration_seconds",
			Help:    "Server time of each statement as the wire shows it (from the message that ran it to its completion), by command.",
			Buckets: durationBuckets,
		}, []string{"command"}),
		rows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nplus1_query_rows_returned",
			Help:    "Rows returned by each successful SELECT or FETCH, from its CommandComplete tag.",
			Buckets: rowsBuckets,
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nplus1_query_errors_total",
			Help: "Statements that failed, by SQLSTATE class (the code's first two characters; other for codes outside PostgreSQL's classes).",
		}, []string{"class"}),
		findingsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nplus1_findings_total",
			Help: "Findings reported, by kind (n_plus_one, duplicate_query, unpaginated, select_star, leading_wildcard, deep_offset, slow_query, lost_update, missing_index) and severity (info, warning, critical), after the safelist and the report cooldown.",
		}, []string{"kind", "severity"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nplus1_n_plus_one_group_size",
			Help:    "Executions of the repeated statement in each reported N+1 loop.",
			Buckets: groupSizeBuckets,
		}),
	}
	for c := range numCommands {
		for o := range numOutcomes {
			m.queries[c][o] = m.queriesVec.WithLabelValues(commandNames[c], outcomeNames[o])
		}
		m.duration[c] = m.durationVec.WithLabelValues(commandNames[c])
	}
	for i, k := range kinds {
		for j, s := range severities {
			m.findings[i][j] = m.findingsVec.WithLabelValues(string(k), string(s))
		}
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.queriesVec, m.durationVec, m.rows, m.errors, m.findingsVec, m.groupSize}
}
