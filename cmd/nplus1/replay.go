package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/proxy"
	"github.com/nplus1/nplus1/replay"
)

var replayCmd = command{
	name:    "replay",
	args:    "FILE...",
	summary: "analyze captured traffic (pcap, recordings, PostgreSQL logs) or re-execute it",
	about: `
Run the proxy's analysis over traffic captured without it, and print the
findings the live proxy would have made, then a summary per query shape
(calls, total, mean and p95 time, rows, errors, findings), slowest first.

Each FILE (a directory stands for its files, in name order) is one of:
  pcap, pcapng   tcpdump -i any|lo|eth0 -w x.pcap port 5432 (--port for others);
                 TCP is reassembled per connection; connections the capture
                 joined mid-way are followed from the first message boundary
                 that can be trusted; TLS connections are reported and skipped
  recording      nplus1 proxy --record (JSON lines; pgreplay-go's files too)
  csvlog         PostgreSQL's csvlog, with log_min_duration_statement = 0 (or
  jsonlog        log_statement = all) and log_connections/log_disconnections
The format is detected; --input-format forces one. Files of one format are
read as one stream, in the order given (give rotated files in order).

Time is the input's: windows, idle gaps and cooldowns are measured between
the recorded timestamps, so the same input always gives the same findings.
PostgreSQL logs carry no row counts, so unpaginated reads and the sources of
N+1 loops cannot be seen in them.

With --target, the statements are instead re-executed against that database
(its URL's user and database for every connection), each recorded connection
on a connection of its own, in the recorded order and at the recorded pace
(--speed, --max-idle), and what the target answered is analyzed and
summarized. Statements that may write are not run unless --allow-writes, and
sessions are read-only (default_transaction_read_only) without it.

Exit codes: 0 when the input was read completely (and no finding matched
--fail-on); 1 when findings matched --fail-on; 2 for a usage error, a file
that cannot be opened, or one that is not a format nplus1 reads; 3 when the
input could not be read completely: a file cut short or corrupt, records or
lines skipped as unreadable, nothing readable at all (the report is still
written, from what could be read; 3 wins over 1), or another failure
(writing the output, reaching --target). Connections a capture joined
mid-way, TLS connections and packets missing from a capture are only noted.`,
	setup: replayFlags,
}

// replayOptions are the replay command's flag values.
type replayOptions struct {
	fs *flagSet

	format      *string
	output      *string
	inputFormat *string
	ports       *string
	top         *int
	progress    *string
	target      *string
	speed       *float64Value
	maxIdle     *time.Duration
	allowWrites *bool

	analysis *analysisOptions
	inspect  *inspectOptions
}

func replayFlags(fs *flagSet) runFunc {
	o := &replayOptions{
		fs:     fs,
		format: fs.Choice("format", "text", []string{"text", "json", "junit"}, "output format: text (findings, then a summary table), json (one document),\njunit (one testcase per finding)"),
		output: fs.String("output", "", "write the output to `FILE` instead of stdout"),
		inputFormat: fs.Choice("input-format", replay.FormatAuto, replay.Formats(),
			"input format (pcap covers pcapng); auto detects it per file"),
		ports:    fs.String("port", "5432", "PostgreSQL server `PORTS` in pcap files, comma-separated"),
		top:      fs.Int("top", 20, "query shapes shown in the text summary; 0: all"),
		progress: fs.Choice("progress", "auto", []string{"auto", "bar", "lines", "off"}, "progress on stderr: a bar on a terminal, a line every 10s otherwise (auto)"),
		target: fs.String("target", "", "re-execute the statements against this database (a postgres:// `URL`)\n"+
			"instead of only analyzing them"),
		speed:       &float64Value{v: 1},
		maxIdle:     fs.Duration("max-idle", 10*time.Second, "re-execution: pauses in the input longer than this are shortened to it"),
		allowWrites: fs.Bool("allow-writes", false, "re-execution: also run statements that may write (INSERT, UPDATE, DDL, ...)"),
	}
	fs.Var(o.speed, "speed", "re-execution: pace relative to the recording, a `FACTOR` (2: twice as fast,\n0.5: half speed)")
	o.analysis = newAnalysisOptions(fs)
	o.inspect = newInspectOptions(fs)
	return o.run
}

// float64Value is a float flag.
type float64Value struct{ v float64 }

func (f *float64Value) String() string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(f.v, 'g', -1, 64)
}

func (f *float64Value) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("want a number, such as 1, 2 or 0.5")
	}
	f.v = v
	return nil
}

// run opens the input and the outputs, analyzes or re-executes the input
// with a progress display, writes the report and applies --fail-on.
func (o *replayOptions) run(ctx context.Context, inv *invocation) error {
	if len(inv.args) == 0 {
		return usageErrorf("no input: give one or more pcap, recording or log files")
	}
	ports, err := o.check()
	if err != nil {
		return err
	}
	dcfg, err := o.analysis.detectorConfig()
	if err != nil {
		return err
	}
	ins, err := o.inspect.inspector(inv)
	if err != nil {
		return err
	}
	dcfg.Inspect = ins != nil
	defer startInspector(ctx, ins)()
	var evidence proxy.Config // the same evidence switch and budget as the proxy's
	if *o.target == "" {      // a re-execution's evidence comes from the target's answers
		o.analysis.evidenceConfig(&evidence)
	}
	in, err := replay.Open(inv.args, replay.OpenOptions{Format: *o.inputFormat, Ports: ports, KeepParams: *o.target != "",
		Evidence: evidence.Evidence, EvidenceBudget: evidence.EvidenceBudget})
	if err != nil {
		return usageErrorf("%s", analyzer.Printable(err.Error()))
	}
	defer in.Close()
	out, err := o.openOutput(inv)
	if err != nil {
		return err
	}
	defer out.abort()
	outs, col, err := o.openSinks(inv, out.bw)
	if err != nil {
		return err
	}
	acfg := o.analysis.analyzerConfig(inv, dcfg, outs.sinks, nil)
	acfg.EvidenceBudget = evidence.EvidenceBudget
	if ins != nil {
		acfg.Inspector = ins.Blocking(replayInspectTimeout)
	}

	statements := new(atomic.Int64)
	stopProgress := startProgress(*o.progress, inv.stderr, in.TotalBytes(), in.BytesRead, statements)
	report, runErr := o.execute(ctx, inv, in, acfg, statements)
	stopProgress()
	report.Findings, report.FindingsDropped = col.Findings()
	report.Input = replay.NewInputStats(in)
	if runErr != nil && errors.Is(runErr, context.Canceled) {
		inv.logger.Warn("interrupted: reporting what was read so far", "component", "replay")
	}
	if report.Summary == nil {
		if runErr != nil {
			return runErr
		}
		report.Summary = replay.NewSummary(0)
	}
	werr := out.close(o.writeReport(out.bw, report, outs.baseline))
	el := report.Elapsed.Seconds()
	inv.logger.Info("replayed", "component", "replay", "mode", report.Mode, "statements", report.Summary.Statements,
		"seconds", fmt.Sprintf("%.3f", el), "statements_per_second", int64(float64(report.Summary.Statements)/max(el, 1e-9)))
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if werr != nil {
		return fmt.Errorf("write output: %w", werr)
	}
	ferr := o.analysis.finish(inv, outs)
	return incompleteInput(report.Input.Err(), ferr)
}

// incompleteInput applies the rule for input that could not be read
// completely (a file cut short or corrupt, records skipped, nothing
// readable at all): it is a failure, exit code 3, whatever --fail-on says,
// because findings and summary cover only part of the input. ierr is the
// input's error (replay.InputStats.Err), ferr what --fail-on and the
// findings file gave: a write error of the findings file wins; findings
// that matched --fail-on are named in the message, and their table is on
// stderr already.
func incompleteInput(ierr, ferr error) error {
	if ierr == nil {
		return ferr
	}
	var fe *findingsError
	switch {
	case ferr == nil:
		return ierr
	case errors.As(ferr, &fe):
		return fmt.Errorf("%w (and %v)", ierr, fe)
	default:
		return ferr
	}
}

// reportOutput is where the report goes: the --output file, or stdout.
type reportOutput struct {
	bw   *bufio.Writer
	file *os.File // nil for stdout
}

func (o *replayOptions) openOutput(inv *invocation) (*reportOutput, error) {
	if *o.output == "" {
		return &reportOutput{bw: bufio.NewWriter(inv.stdout)}, nil
	}
	f, err := os.Create(*o.output)
	if err != nil {
		return nil, o.fs.errorf("output", "%v", err)
	}
	return &reportOutput{bw: bufio.NewWriter(f), file: f}, nil
}

// close flushes the report and closes the file, and returns werr (the
// report's write error) or else the first error of those.
func (r *reportOutput) close(werr error) error {
	if err := r.bw.Flush(); werr == nil {
		werr = err
	}
	if r.file != nil {
		if err := r.file.Close(); werr == nil {
			werr = err
		}
		r.file = nil
	}
	return werr
}

// abort closes the file when the run ends before the report is written.
func (r *reportOutput) abort() {
	if r.file != nil {
		r.file.Close()
	}
}

// check validates the flags that Choice does not, and returns the ports.
func (o *replayOptions) check() ([]uint16, error) {
	if o.speed.v <= 0 {
		return nil, o.fs.errorf("speed", "must be positive, got %v", o.speed.v)
	}
	if *o.maxIdle <= 0 {
		return nil, o.fs.errorf("max-idle", "must be a positive duration")
	}
	if *o.top < 0 {
		return nil, o.fs.errorf("top", "must be 0 (all) or more")
	}
	ports, err := parsePorts(*o.ports)
	if err != nil {
		return nil, o.fs.errorf("port", "%v", err)
	}
	return ports, nil
}

// openSinks builds the sinks findings go to: the report's collector, the
// --fail-on gate, the console (text output, to w) and --findings-out.
func (o *replayOptions) openSinks(inv *invocation, w io.Writer) (*outputs, *replay.Collector, error) {
	outs := &outputs{gate: analyzer.NewGate(o.analysis.failOn.kinds)}
	if err := o.analysis.openBaseline(outs); err != nil {
		return nil, nil, err
	}
	col := replay.NewCollector(0)
	outs.sinks = append(outs.sinks, col, outs.gate)
	if *o.format == "text" {
		outs.sinks = append(outs.sinks, analyzer.NewColorConsole(w, inv.useColor(w)))
	}
	if err := o.analysis.openFindingsOut(outs); err != nil {
		return nil, nil, err
	}
	return outs, col, nil
}

// execute analyzes the input, or re-executes it against --target, and
// returns the report's mode, summary, skipped statements and elapsed time.
func (o *replayOptions) execute(ctx context.Context, inv *invocation, in replay.Input, acfg analyzer.Config, statements *atomic.Int64) (*replay.Report, error) {
	began := time.Now()
	report := &replay.Report{Mode: "analysis"}
	var err error
	if *o.target != "" {
		report.Mode = "re-execution"
		var res *replay.ReexecResult
		res, err = replay.Reexecute(ctx, in, replay.ReexecConfig{
			Target:      *o.target,
			Speed:       o.speed.v,
			MaxIdle:     *o.maxIdle,
			AllowWrites: *o.allowWrites,
			Analyzer:    acfg,
			Statements:  statements,
			Logger:      inv.logger.With("component", "replay"),
		})
		if res != nil {
			report.Summary, report.Skipped = res.Summary, res.Skipped
		}
	} else {
		if os.Getenv("GOGC") == "" {
			defer debug.SetGCPercent(debug.SetGCPercent(replayGCPercent))
		}
		report.Summary, err = replay.Analyze(ctx, in, replay.Config{Analyzer: acfg, Statements: statements})
	}
	report.Elapsed = time.Since(began)
	return report, err
}

// replayGCPercent is the garbage collector's target during an analysis
// replay (unless GOGC is set): the replay streams in constant memory, and a
// heap allowed to grow to four times its live size before a collection
// (about 70 MB instead of 50 for bench/replay.sh's workload) makes it a
// fifth faster.
const replayGCPercent = 300

// writeReport writes the report in the --format; in JUnit, the findings in
// baseline (nil: none) are not failures.
func (o *replayOptions) writeReport(w io.Writer, report *replay.Report, baseline *analyzer.Baseline) error {
	var known func(*detector.Finding) bool
	if baseline != nil {
		known = baseline.Contains
	}
	switch *o.format {
	case "json":
		return replay.WriteJSON(w, report)
	case "junit":
		return replay.WriteJUnit(w, report, o.analysis.failOn.kinds, known)
	}
	if len(report.Findings) > 0 {
		fmt.Fprintln(w)
	}
	return replay.WriteText(w, report, *o.top)
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a TCP port; want numbers from 1 to 65535, comma-separated, such as 5432,6432", p)
		}
		ports = append(ports, uint16(n))
	}
	if len(ports) == 0 {
		return nil, errors.New("give at least one port")
	}
	return ports, nil
}
