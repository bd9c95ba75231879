package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
)

// analysisOptions are the flags of every command that analyzes executions
// (proxy, replay, demo): the detector's knobs, the safelist, and where
// findings go.
type analysisOptions struct {
	fs *flagSet

	idleGap            *time.Duration
	stallGap           *time.Duration
	maxWindow          *time.Duration
	nplus1Threshold    *int
	duplicateThreshold *int
	unpaginatedRows    *int
	slowThreshold      *time.Duration
	reportCooldown     *time.Duration
	ignore             *ignoreList
	failOn             *kindList
	baseline           *string
	writeBaseline      *string
	findingsOut        *string
	cacheSize          *int
	evidence           *bool
}

func newAnalysisOptions(fs *flagSet) *analysisOptions {
	o := &analysisOptions{
		fs: fs,
		idleGap: fs.Duration("idle-gap", detector.DefaultIdleGap,
			"a window of a connection's (or trace's) statements ends when none starts for this long"),
		stallGap: fs.Duration("stall-gap", detector.DefaultStallGap,
			"a loop paused for longer than --idle-gap, but less than this, goes on in the same window\n"+
				"when its next statement looks up one more key of the result it walks (a stall of the\n"+
				"client or the machine, not a new request); 0: never"),
		maxWindow: fs.Duration("max-window", detector.DefaultMaxWindow,
			"a window ends at the latest this long after its first statement"),
		nplus1Threshold: fs.Int("nplus1-threshold", detector.DefaultNPlusOneThreshold,
			"executions of one SELECT shape, with as many distinct parameter sets, that make an N+1"),
		duplicateThreshold: fs.Int("duplicate-threshold", detector.DefaultDuplicateThreshold,
			"executions of one query with identical parameters that make a duplicate_query"),
		unpaginatedRows: fs.Int("unpaginated-rows", detector.DefaultUnpaginatedRows,
			"rows returned by a SELECT without LIMIT that make it unpaginated"),
		slowThreshold: fs.Duration("slow-threshold", 0,
			"a statement whose server time reaches this is a slow_query (any command); 0: off"),
		reportCooldown: fs.Duration("report-cooldown", detector.DefaultReportCooldown,
			"the same finding (kind, fingerprint, source) is reported once per this long per connection or trace"),
		ignore:      &ignoreList{},
		failOn:      &kindList{},
		findingsOut: fs.String("findings-out", "", "append findings to `FILE` as JSON lines"),
		baseline: fs.String("baseline", "", "findings listed in `FILE` (written by --write-baseline) do not count for\n"+
			"--fail-on: only new ones fail; the entries this run did not see are listed at the end"),
		writeBaseline: fs.String("write-baseline", "", "at the end, write the findings of this run to `FILE` as a baseline\n"+
			"(kind, fingerprint, source fingerprint and the normalized queries; no values)"),
		cacheSize: fs.Int("fingerprint-cache-size", fingerprint.DefaultMaxTexts,
			"SQL texts whose fingerprint is cached"),
		evidence: fs.Bool("evidence", true, "prove N+1s from the data flow: keep keyed digests (never values) of result\n"+
			"columns and parameters; false judges on repetition alone"),
	}
	fs.Var(o.ignore, "ignore", "drop findings matching `ENTRY`: fingerprint:HEX, query:REGEXP (over the\n"+
		"normalized query), table:NAME or app:NAME (application_name); repeatable")
	fs.Var(o.failOn, "fail-on", "exit with code 1 at the end when findings of these `KINDS` (comma-separated:\n"+
		kindNames()+", or all) were reported")
	return o
}

// detectorConfig returns the detector configuration the flags describe.
func (o *analysisOptions) detectorConfig() (detector.Config, error) {
	pos := func(name string, v int) error {
		if v < 1 {
			return o.fs.errorf(name, "must be at least 1")
		}
		return nil
	}
	for name, v := range map[string]int{"nplus1-threshold": *o.nplus1Threshold, "duplicate-threshold": *o.duplicateThreshold, "unpaginated-rows": *o.unpaginatedRows} {
		if err := pos(name, v); err != nil {
			return detector.Config{}, err
		}
	}
	for name, v := range map[string]time.Duration{"idle-gap": *o.idleGap, "max-window": *o.maxWindow} {
		if v <= 0 {
			return detector.Config{}, o.fs.errorf(name, "must be a positive duration")
		}
	}
	if *o.slowThreshold < 0 {
		return detector.Config{}, o.fs.errorf("slow-threshold", "must not be negative (0 turns slow_query off)")
	}
	cooldown := *o.reportCooldown
	if cooldown == 0 {
		cooldown = -1 // 0 on the command line means: report every occurrence
	}
	if *o.stallGap < 0 {
		return detector.Config{}, o.fs.errorf("stall-gap", "must not be negative")
	}
	stallGap := *o.stallGap
	if stallGap == 0 {
		stallGap = -1 // 0 on the command line means: never
	}
	return detector.Config{
		IdleGap:            *o.idleGap,
		StallGap:           stallGap,
		MaxWindow:          *o.maxWindow,
		NPlusOneThreshold:  *o.nplus1Threshold,
		DuplicateThreshold: *o.duplicateThreshold,
		UnpaginatedRows:    int64(*o.unpaginatedRows),
		SlowThreshold:      *o.slowThreshold,
		ReportCooldown:     cooldown,
		Ignore:             o.ignore.entries,
	}, nil
}

// outputs are the sinks a command's findings go to.
type outputs struct {
	sinks []analyzer.Sink
	store *analyzer.Store // for the HTTP API
	gate  *analyzer.Gate
	file  *os.File // --findings-out, nil when not set
	jsonl *analyzer.JSONL
	// baseline is --baseline, recorder collects --write-baseline; nil
	// when not set.
	baseline *analyzer.Baseline
	recorder *analyzer.BaselineRecorder
}

// openOutputs opens --findings-out and builds the sinks: the console (a
// readable block per finding, or a JSON log record with --log-format json),
// the file, the in-memory store and the CI gate.
func (o *analysisOptions) openOutputs(inv *invocation) (*outputs, error) {
	out := &outputs{store: analyzer.NewStore(0), gate: analyzer.NewGate(o.failOn.kinds)}
	if err := o.openBaseline(out); err != nil {
		return nil, err
	}
	if inv.logFormat == "json" {
		out.sinks = append(out.sinks, analyzer.LogSink{Logger: inv.logger.With("component", "detector")})
	} else {
		out.sinks = append(out.sinks, analyzer.NewColorConsole(inv.stderr, inv.useColor(inv.stderr)))
	}
	if err := o.openFindingsOut(out); err != nil {
		return nil, err
	}
	out.sinks = append(out.sinks, out.store, out.gate)
	return out, nil
}

// openBaseline loads --baseline into out's gate and, with
// --write-baseline, adds the recorder that finish writes. The error is a
// *usageError.
func (o *analysisOptions) openBaseline(out *outputs) error {
	if *o.baseline != "" {
		b, err := analyzer.LoadBaseline(*o.baseline)
		if err != nil {
			return o.fs.errorf("baseline", "%v", err)
		}
		out.baseline = b
		out.gate.UseBaseline(b)
	}
	if *o.writeBaseline != "" {
		out.recorder = analyzer.NewBaselineRecorder()
		out.sinks = append(out.sinks, out.recorder)
	}
	return nil
}

// openFindingsOut opens --findings-out, when set, for appending and adds its
// JSON-lines sink to out.sinks; finish closes it. The error is a *usageError.
func (o *analysisOptions) openFindingsOut(out *outputs) error {
	if *o.findingsOut == "" {
		return nil
	}
	f, err := os.OpenFile(*o.findingsOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return o.fs.errorf("findings-out", "%v", err)
	}
	out.file = f
	out.jsonl = analyzer.NewJSONL(f)
	out.sinks = append(out.sinks, out.jsonl)
	return nil
}

// analyzerConfig is the analyzer of every command that analyzes executions
// (proxy, demo, replay): the detector configuration dcfg (from
// detectorConfig), a fingerprint cache of --fingerprint-cache-size texts,
// the sinks findings go to, and, when pm is not nil, the metrics exporter fed
// by every execution and finding. The caller may set the rest (Tick, Lag).
func (o *analysisOptions) analyzerConfig(inv *invocation, dcfg detector.Config, sinks []analyzer.Sink, pm *proxyMetrics) analyzer.Config {
	cfg := analyzer.Config{
		Detector:     dcfg,
		Fingerprints: fingerprint.New(fingerprint.Options{MaxTexts: *o.cacheSize}),
		Sinks:        sinks,
		Logger:       inv.logger.With("component", "analyzer"),
	}
	pm.observe(&cfg)
	return cfg
}

// evidenceConfig turns the proxy's value evidence on or off, with a
// process-wide budget that the analyzer gives back to.
func (o *analysisOptions) evidenceConfig(cfg *proxy.Config) {
	if o == nil || o.evidence == nil {
		return
	}
	cfg.Evidence = *o.evidence
	if cfg.Evidence {
		cfg.EvidenceBudget = pgwire.NewEvidenceBudget(pgwire.DefaultEvidenceBudgetBytes)
	}
}

// finish closes the findings file and applies the CI gate: with --fail-on it
// prints the summary table to stderr and returns a *findingsError when any
// finding of those kinds was reported.
func (o *analysisOptions) finish(inv *invocation, out *outputs) error {
	var err error
	if out.file != nil {
		if werr := out.jsonl.Err(); werr != nil {
			err = fmt.Errorf("write %s: %w", *o.findingsOut, werr)
		}
		if cerr := out.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", *o.findingsOut, cerr)
		}
	}
	if out.recorder != nil {
		if werr := out.recorder.WriteFile(*o.writeBaseline); werr != nil && err == nil {
			err = fmt.Errorf("write baseline: %w", werr)
		} else if werr == nil {
			inv.logger.Info("baseline written", "component", "main", "file", *o.writeBaseline, "findings", out.recorder.Len())
		}
	}
	if out.baseline != nil {
		o.reportGone(inv, out)
	}
	if len(o.failOn.kinds) == 0 {
		return err
	}
	if inv.logFormat == "json" {
		// Keep stderr one JSON record per line.
		var kinds []any
		for k, n := range out.gate.Counts() {
			kinds = append(kinds, slog.Int(string(k), n))
		}
		inv.logger.Info("findings summary", "component", "main", "fail_on", o.failOn.String(),
			"failed", out.gate.Failed(), "in_baseline", out.gate.Known(), slog.Group("findings", kinds...))
	} else {
		fmt.Fprintln(inv.stderr, "nplus1: findings summary")
		out.gate.Summary(inv.stderr)
	}
	if n := out.gate.Failed(); n > 0 && err == nil {
		return &findingsError{Count: n, FailOn: o.failOn.String(), Baseline: out.baseline != nil}
	}
	return err
}

// reportGone lists the --baseline entries this run did not see: fixed, or
// not exercised; --write-baseline rewrites the file without them.
func (o *analysisOptions) reportGone(inv *invocation, out *outputs) {
	gone := out.baseline.Gone()
	if inv.logFormat == "json" {
		for _, e := range gone {
			inv.logger.Info("baseline entry not seen", "component", "main", "kind", string(e.Kind),
				"fingerprint", e.Fingerprint, "source", e.Source, "query", e.Query)
		}
		inv.logger.Info("baseline", "component", "main", "file", *o.baseline, "entries", out.baseline.Len(),
			"seen", out.baseline.Len()-len(gone), "not_seen", len(gone))
		return
	}
	fmt.Fprintf(inv.stderr, "nplus1: baseline %s: %s seen, %s not seen in this run\n", analyzer.Printable(*o.baseline),
		plural(out.baseline.Len()-len(gone), "entry", "entries"), plural(len(gone), "entry", "entries"))
	for _, e := range gone {
		src := ""
		if e.Source != "" {
			src = " <- " + e.Source
		}
		fmt.Fprintf(inv.stderr, "  gone: %s %s%s  %s\n", e.Kind, e.Fingerprint, src, analyzer.Printable(oneLineQuery(e.Query, 120)))
	}
	if len(gone) > 0 {
		fmt.Fprintln(inv.stderr, "  (fixed, or not exercised by this run: --write-baseline FILE rewrites it with this run's findings)")
	}
}

// oneLineQuery is q on one line, cut to at most max runes.
func oneLineQuery(q string, max int) string {
	q = strings.Join(strings.Fields(q), " ")
	if r := []rune(q); len(r) > max {
		q = string(r[:max-1]) + "…"
	}
	return q
}

// ignoreList is the repeatable --ignore flag.
type ignoreList struct{ entries []detector.Ignore }

func (l *ignoreList) String() string {
	s := make([]string, len(l.entries))
	for i, e := range l.entries {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}

func (l *ignoreList) Set(v string) error {
	e, err := detector.ParseIgnore(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	l.entries = append(l.entries, e)
	return nil
}

func (l *ignoreList) isList() {}

// kindList is the --fail-on flag: finding kinds, comma-separated, or "all".
type kindList struct{ kinds []detector.Kind }

func (l *kindList) String() string {
	s := make([]string, len(l.kinds))
	for i, k := range l.kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

func (l *kindList) Set(v string) error {
	l.kinds = nil
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case part == "all":
			l.kinds = detector.Kinds()
		case slices.Contains(detector.Kinds(), detector.Kind(part)):
			if !slices.Contains(l.kinds, detector.Kind(part)) {
				l.kinds = append(l.kinds, detector.Kind(part))
			}
		default:
			return fmt.Errorf("unknown finding kind %q; kinds: %s, all", part, kindNames())
		}
	}
	return nil
}

// kindNames lists detector.Kinds, comma-separated.
func kindNames() string {
	var s []string
	for _, k := range detector.Kinds() {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}
