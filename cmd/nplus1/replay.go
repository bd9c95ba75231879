package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/capture"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pglog"
	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/recording"
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
sessions are read-only (default_transaction_read_only) without it.`,
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
}

// Input formats of --input-format.
const (
	formatAuto      = "auto"
	formatPcap      = "pcap"
	formatRecording = "recording"
	formatCSVLog    = "csvlog"
	formatJSONLog   = "jsonlog"
)

func replayFlags(fs *flagSet) runFunc {
	o := &replayOptions{
		fs:     fs,
		format: fs.Choice("format", "text", []string{"text", "json", "junit"}, "output format: text (findings, then a summary table), json (one document),\njunit (one testcase per finding)"),
		output: fs.String("output", "", "write the output to `FILE` instead of stdout"),
		inputFormat: fs.Choice("input-format", formatAuto, []string{formatAuto, formatPcap, formatRecording, formatCSVLog, formatJSONLog},
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

// input is the source made of the files of one format.
type input struct {
	format string
	files  []string
	src    replay.Source
	// bytesRead reports progress; safe to call from another goroutine.
	bytesRead func() int64
	// notes describe what the reader could not follow, after the run.
	notes func() []string
	close func() error
}

func (o *replayOptions) run(ctx context.Context, inv *invocation) error {
	if len(inv.args) == 0 {
		return usageErrorf("no input: give one or more pcap, recording or log files")
	}
	if o.speed.v <= 0 {
		return o.fs.errorf("speed", "must be positive, got %v", o.speed.v)
	}
	if *o.maxIdle <= 0 {
		return o.fs.errorf("max-idle", "must be a positive duration")
	}
	if *o.top < 0 {
		return o.fs.errorf("top", "must be 0 (all) or more")
	}
	ports, err := parsePorts(*o.ports)
	if err != nil {
		return o.fs.errorf("port", "%v", err)
	}
	dcfg, err := o.analysis.detectorConfig()
	if err != nil {
		return err
	}
	files, err := recording.ExpandPaths(inv.args)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if len(files) == 0 {
		return usageErrorf("no input files in %s", strings.Join(inv.args, ", "))
	}
	reexec := *o.target != ""
	inputs, err := o.openInputs(files, ports, reexec)
	if err != nil {
		return err
	}
	defer func() {
		for _, in := range inputs {
			in.close()
		}
	}()

	out := inv.stdout
	var outFile *os.File
	if *o.output != "" {
		if outFile, err = os.Create(*o.output); err != nil {
			return o.fs.errorf("output", "%v", err)
		}
		defer outFile.Close()
		out = outFile
	}
	bw := bufio.NewWriter(out)

	outs := &outputs{gate: analyzer.NewGate(o.analysis.failOn.kinds)}
	col := replay.NewCollector(0)
	outs.sinks = append(outs.sinks, col, outs.gate)
	if *o.format == "text" {
		outs.sinks = append(outs.sinks, analyzer.NewConsole(bw, inv.getenv))
	}
	if *o.analysis.findingsOut != "" {
		f, err := os.OpenFile(*o.analysis.findingsOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return o.fs.errorf("findings-out", "%v", err)
		}
		outs.file = f
		outs.jsonl = analyzer.NewJSONL(f)
		outs.sinks = append(outs.sinks, outs.jsonl)
	}

	var srcs []replay.Source
	var total int64
	for _, in := range inputs {
		srcs = append(srcs, in.src)
		for _, f := range in.files {
			if st, err := os.Stat(f); err == nil {
				total += st.Size()
			}
		}
	}
	bytesRead := func() int64 {
		var n int64
		for _, in := range inputs {
			n += in.bytesRead()
		}
		return n
	}
	var statements = new(atomicCounter)
	stopProgress := o.startProgress(inv, total, bytesRead, statements)

	acfg := analyzer.Config{
		Detector:     dcfg,
		Fingerprints: fingerprint.New(fingerprint.Options{MaxTexts: *o.analysis.cacheSize}),
		Sinks:        outs.sinks,
		Logger:       inv.logger.With("component", "analyzer"),
	}
	began := time.Now()
	report := &replay.Report{Mode: "analysis"}
	var runErr error
	if reexec {
		report.Mode = "re-execution"
		var res *replay.ReexecResult
		res, runErr = replay.Reexecute(ctx, replay.Sources(srcs...), replay.ReexecConfig{
			Target:      *o.target,
			Speed:       o.speed.v,
			MaxIdle:     *o.maxIdle,
			AllowWrites: *o.allowWrites,
			Analyzer:    acfg,
			Statements:  &statements.Int64,
			Logger:      inv.logger.With("component", "replay"),
		})
		if res != nil {
			report.Summary, report.Skipped = res.Summary, res.Skipped
		}
	} else {
		report.Summary, runErr = replay.Analyze(ctx, replay.Sources(srcs...), replay.Config{
			Analyzer:   acfg,
			Statements: &statements.Int64,
		})
	}
	stopProgress()
	report.Elapsed = time.Since(began)
	report.Findings, report.FindingsDropped = col.Findings()
	report.Input = replay.InputStats{Formats: map[string]string{}, Bytes: bytesRead()}
	for _, in := range inputs {
		report.Input.Files = append(report.Input.Files, in.files...)
		for _, f := range in.files {
			report.Input.Formats[f] = in.format
		}
		report.Input.Notes = append(report.Input.Notes, in.notes()...)
	}
	if runErr != nil && errors.Is(runErr, context.Canceled) {
		inv.logger.Warn("interrupted: reporting what was read so far", "component", "replay")
	}
	if report.Summary == nil {
		if runErr != nil {
			return runErr
		}
		report.Summary = replay.NewSummary(0)
	}

	var werr error
	switch *o.format {
	case "json":
		werr = replay.WriteJSON(bw, report)
	case "junit":
		werr = replay.WriteJUnit(bw, report, o.analysis.failOn.kinds)
	default:
		if len(report.Findings) > 0 {
			fmt.Fprintln(bw)
		}
		werr = replay.WriteText(bw, report, *o.top)
	}
	if err := bw.Flush(); werr == nil {
		werr = err
	}
	if outFile != nil {
		if err := outFile.Close(); werr == nil {
			werr = err
		}
	}
	el := report.Elapsed.Seconds()
	inv.logger.Info("replayed", "component", "replay", "mode", report.Mode, "statements", report.Summary.Statements,
		"seconds", fmt.Sprintf("%.3f", el), "statements_per_second", int64(float64(report.Summary.Statements)/max(el, 1e-9)))
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if werr != nil {
		return fmt.Errorf("write output: %w", werr)
	}
	return o.analysis.finish(inv, outs)
}

type atomicCounter struct{ Int64 atomic.Int64 }

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a TCP port", p)
		}
		ports = append(ports, uint16(n))
	}
	if len(ports) == 0 {
		return nil, errors.New("give at least one port")
	}
	return ports, nil
}

// detectFormat names the format of a file from its first bytes.
func detectFormat(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	head = head[:n]
	if len(head) >= 4 {
		switch string(head[:4]) {
		case "\xd4\xc3\xb2\xa1", "\xa1\xb2\xc3\xd4", "\x4d\x3c\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x0a\x0d\x0d\x0a":
			return formatPcap, nil
		}
	}
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	switch {
	case len(line) == 0:
		return "", fmt.Errorf("%s: empty, or not a format nplus1 reads; --input-format names one", name)
	case line[0] == '{' && bytes.Contains(line, []byte(`"item"`)):
		return formatRecording, nil
	case line[0] == '{' && (bytes.Contains(line, []byte(`"error_severity"`)) || bytes.Contains(line, []byte(`"session_id"`))):
		return formatJSONLog, nil
	case len(line) > 20 && line[4] == '-' && line[7] == '-' && line[10] == ' ' && bytes.Count(line, []byte(",")) >= 10:
		return formatCSVLog, nil
	}
	return "", fmt.Errorf("%s: not a pcap, pcapng, nplus1 recording, csvlog or jsonlog file; --input-format names one", name)
}

// openInputs groups the files by format and opens one reader per format,
// in the order the formats first appear.
func (o *replayOptions) openInputs(files []string, ports []uint16, keepParams bool) ([]*input, error) {
	var order []string
	byFormat := map[string][]string{}
	for _, f := range files {
		format := *o.inputFormat
		if format == formatAuto {
			var err error
			if format, err = detectFormat(f); err != nil {
				return nil, usageErrorf("%v", err)
			}
		}
		if !slices.Contains(order, format) {
			order = append(order, format)
		}
		byFormat[format] = append(byFormat[format], f)
	}
	var inputs []*input
	for _, format := range order {
		in, err := openInput(format, byFormat[format], ports, keepParams)
		if err != nil {
			for _, in := range inputs {
				in.close()
			}
			return nil, usageErrorf("%v", err)
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

func openInput(format string, files []string, ports []uint16, keepParams bool) (*input, error) {
	in := &input{format: format, files: files}
	switch format {
	case formatRecording:
		r, err := recording.Open(files, recording.ReaderOptions{KeepParams: keepParams})
		if err != nil {
			return nil, err
		}
		in.src, in.bytesRead, in.close = r, r.BytesRead, r.Close
		in.notes = func() []string {
			st := r.Stats()
			if st.Skipped == 0 {
				return nil
			}
			return []string{fmt.Sprintf("recording: %d of %d lines skipped (first: %s)", st.Skipped, st.Lines, r.FirstProblem())}
		}
	case formatPcap:
		r, err := capture.Open(files, capture.Options{Ports: ports, Tracker: pgwire.TrackerOptions{KeepParams: keepParams}})
		if err != nil {
			return nil, err
		}
		in.src, in.bytesRead, in.close, in.notes = r, r.BytesRead, r.Close, r.Notes
	case formatCSVLog, formatJSONLog:
		r, err := pglog.Open(format, files, pglog.Options{KeepParams: keepParams})
		if err != nil {
			return nil, err
		}
		in.src, in.bytesRead, in.close, in.notes = r, r.BytesRead, r.Close, r.Notes
	default:
		return nil, fmt.Errorf("unknown input format %s", format)
	}
	return in, nil
}

// startProgress shows progress on stderr until the returned function is
// called: a bar redrawn in place on a terminal, a plain line every 10
// seconds otherwise.
func (o *replayOptions) startProgress(inv *invocation, total int64, bytesRead func() int64, statements *atomicCounter) func() {
	mode := *o.progress
	if mode == "auto" {
		mode = "lines"
		if analyzer.IsTerminal(inv.stderr) {
			mode = "bar"
		}
	}
	if mode == "off" {
		return func() {}
	}
	interval := 10 * time.Second
	if mode == "bar" {
		interval = 200 * time.Millisecond
	}
	began := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	drawn := false
	draw := func(final bool) {
		n := statements.Int64.Load()
		read := bytesRead()
		el := time.Since(began).Seconds()
		rate := float64(n) / max(el, 1e-9)
		frac := 0.0
		if total > 0 {
			frac = min(float64(read)/float64(total), 1)
		}
		if mode == "bar" {
			const width = 30
			fill := int(frac * width)
			bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
			eta := ""
			if frac > 0 && frac < 1 && !final {
				eta = fmt.Sprintf(" ETA %s", (time.Duration(el/frac*(1-frac)) * time.Second).Round(time.Second))
			}
			fmt.Fprintf(inv.stderr, "\r\x1b[K[%s] %3.0f%% %s/%s %d statements %.0f/s%s", bar, 100*frac, sizeStr(read), sizeStr(total), n, rate, eta)
			drawn = true
			if final {
				fmt.Fprintln(inv.stderr)
			}
			return
		}
		if !final {
			fmt.Fprintf(inv.stderr, "nplus1 replay: %.0f%% (%s of %s), %d statements, %.0f/s\n", 100*frac, sizeStr(read), sizeStr(total), n, rate)
		}
	}
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if drawn {
					draw(true)
				}
				return
			case <-t.C:
				draw(false)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func sizeStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
