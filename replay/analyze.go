package replay

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// Source yields executions in the order they happened: in order per
// connection, and across connections in the order the input has them (by
// end time for captures and logs). Next returns io.EOF after the last one.
// The replay calls Next from one goroutine of its own.
type Source interface {
	Next() (*pgwire.Execution, error)
}

// Defaults of Config.
const (
	// DefaultLag is how far behind the latest event time windows are closed,
	// the live proxy's analyzer.Config.Lag: an execution still held by the
	// tracker for its ReadyForQuery is not judged in a window that closed
	// before it was emitted.
	DefaultLag = 250 * time.Millisecond
	// DefaultTick is how much event time passes between two calls to
	// Advance, as the live analyzer's ticker.
	DefaultTick = 50 * time.Millisecond
	// batchSize is how many executions the reading goroutine hands over at
	// once; batches in flight are bounded by batchesInFlight.
	batchSize       = 256
	batchesInFlight = 8
)

// Config configures Analyze.
type Config struct {
	// Analyzer configures the analyzer (detector settings, sinks). Analyze
	// adds the summary's sink; Tick, Lag and Now are not used.
	Analyzer analyzer.Config
	// Lag and Tick drive the virtual clock (DefaultLag, DefaultTick when 0).
	Lag, Tick time.Duration
	// MaxFingerprints bounds the summary (DefaultMaxFingerprints when 0).
	MaxFingerprints int
	// Statements, when set, is incremented as executions are analyzed, for
	// a progress display on another goroutine.
	Statements *atomic.Int64
}

// Analyze reads every execution from src and runs it through the analyzer
// on a virtual clock taken from the executions' own times: before each
// execution the detector is told that the latest end time seen, less Lag,
// has come, as the live proxy's ticker tells it the wall clock. At the end
// every open window is flushed. Findings go to the configured sinks; the
// returned Summary aggregates the executions per fingerprint.
//
// Reading (and decoding) runs on a goroutine of its own, a bounded number of
// batches ahead of the analysis. Analyze returns the source's first error
// other than io.EOF (with the summary of what was read), or ctx.Err().
func Analyze(ctx context.Context, src Source, cfg Config) (*Summary, error) {
	if cfg.Lag <= 0 {
		cfg.Lag = DefaultLag
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Analyzer.Fingerprints == nil {
		cfg.Analyzer.Fingerprints = fingerprint.New(fingerprint.Options{})
	}
	sum := NewSummary(cfg.MaxFingerprints)
	acfg := cfg.Analyzer
	acfg.Sinks = append(append([]analyzer.Sink(nil), acfg.Sinks...), analyzer.SinkFunc(sum.finding))
	an := analyzer.New(acfg)
	fp := acfg.Fingerprints

	batches := make(chan []read, batchesInFlight)
	free := make(chan []read, batchesInFlight+2)
	errc := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(batches)
		errc <- readBatches(rctx, src, fp, batches, free)
	}()

	var maxT, advanced time.Time
	var err error
	for batch := range batches {
		if err = ctx.Err(); err != nil {
			break
		}
		for i, r := range batch {
			batch[i] = read{}
			e := r.e
			if t := e.End; t.After(maxT) {
				maxT = t
				if maxT.Sub(advanced) >= cfg.Tick {
					an.Advance(maxT.Add(-cfg.Lag))
					advanced = maxT
				}
			}
			an.ProcessFingerprinted(e, r.res)
			sum.addStatement(e, r.statement())
		}
		if cfg.Statements != nil {
			cfg.Statements.Add(int64(len(batch)))
		}
		select {
		case free <- batch[:0]:
		default:
		}
	}
	cancel()
	for range batches { // let the reader finish
	}
	if rerr := <-errc; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = rerr
	}
	an.Flush()
	sum.finish(an.Stats())
	if err == nil {
		err = ctx.Err()
	}
	return sum, err
}

// read is one execution as the reading goroutine hands it over: with its
// SQL text fingerprinted, so that the analysis (the replay's one busy
// goroutine) and the summary do not each do it again.
type read struct {
	e   *pgwire.Execution
	res *fingerprint.Result // nil when e has no SQL text
}

// statement is the statement of the text that e ran, or nil.
func (r read) statement() *fingerprint.Statement {
	if r.res == nil || len(r.res.Statements) == 0 {
		return nil
	}
	return &r.res.Statements[min(max(r.e.StatementIndex, 0), len(r.res.Statements)-1)]
}

func readBatches(ctx context.Context, src Source, fp *fingerprint.Cache, out chan<- []read, free chan []read) error {
	var batch []read
	send := func() bool {
		select {
		case out <- batch:
			batch = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	var lastSQL string // the text of last, which a loop's executions share
	var last *fingerprint.Result
	var lastMode pgwire.StandardStrings
	for {
		if batch == nil {
			select {
			case batch = <-free:
			default:
				batch = make([]read, 0, batchSize)
			}
		}
		e, err := src.Next()
		if err != nil {
			if len(batch) > 0 && !send() {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		r := read{e: e}
		if e.SQL != "" {
			if last == nil || e.SQL != lastSQL || e.StandardStrings != lastMode {
				last = fp.OfStrings(e.SQL, fingerprint.Strings(e.StandardStrings)) // the two types share their values
				lastSQL, lastMode = e.SQL, e.StandardStrings
			}
			r.res = last
		}
		batch = append(batch, r)
		if len(batch) == batchSize && !send() {
			return ctx.Err()
		}
	}
}

// Sources chains sources: each is read to its end in turn.
func Sources(srcs ...Source) Source { return &chain{srcs: srcs} }

type chain struct{ srcs []Source }

func (c *chain) Next() (*pgwire.Execution, error) {
	for len(c.srcs) > 0 {
		e, err := c.srcs[0].Next()
		if errors.Is(err, io.EOF) {
			c.srcs = c.srcs[1:]
			continue
		}
		return e, err
	}
	return nil, io.EOF
}

// SliceSource yields the executions of a slice (for tests and small inputs).
type SliceSource []*pgwire.Execution

// Next returns the next execution.
func (s *SliceSource) Next() (*pgwire.Execution, error) {
	if len(*s) == 0 {
		return nil, io.EOF
	}
	e := (*s)[0]
	*s = (*s)[1:]
	return e, nil
}

var _ = detector.Kinds // the summary counts findings by kind
