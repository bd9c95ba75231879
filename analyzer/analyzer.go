package analyzer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// Sink receives findings on the analyzer's goroutine.
type Sink interface {
	Finding(f *detector.Finding)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(f *detector.Finding)

// Finding calls fn(f).
func (fn SinkFunc) Finding(f *detector.Finding) { fn(f) }

// Config configures an Analyzer.
type Config struct {
	Detector     detector.Config
	Fingerprints *fingerprint.Cache // shared; a default-sized one when nil
	Sinks        []Sink
	// Observe, when set, sees every execution once it is fingerprinted,
	// before the detector does (metrics.Exporter.Observe counts it). It runs
	// on the goroutine that calls Process (Run's, for the proxy), so it is
	// off the relay path, but it delays the analysis: it must not block. It
	// must not modify the event.
	Observe func(ev *detector.Event)
	Logger  *slog.Logger // nil discards
	// Tick is how often Run drains the queue and closes windows whose idle
	// gap or maximum length passed (default 10ms).
	Tick time.Duration
	// Lag is how far behind the wall clock Run closes windows, so that an
	// execution still on its way through the queue is not judged in a
	// window that closed before it arrived (default 250ms).
	Lag time.Duration
	// Now is the wall clock for Run (time.Now when nil).
	Now func() time.Time
	// EvidenceBudget is the budget the trackers took the executions'
	// evidence from (proxy.Config.EvidenceBudget): Process gives it back once
	// the detector has the execution. The detector bounds what it keeps
	// itself (detector.Config.MaxEvidenceBytes).
	EvidenceBudget *pgwire.EvidenceBudget
	// Inspector, when set, answers the missing_index rule's requests
	// (with Detector.Inspect on; inspect.go).
	Inspector Inspector
}

// Analyzer runs the detector over executions. Process and Flush are for a
// caller that owns the goroutine (replay); Run owns one itself (proxy).
type Analyzer struct {
	cfg Config
	fp  *fingerprint.Cache

	mu  sync.Mutex // guards det and owed; held while sinks run
	det *detector.Detector
	// owed is the evidence of the executions processed since the last
	// giveBack: given back to cfg.EvidenceBudget evidenceGiveBack bytes
	// at a time (see giveEvidence).
	owed int

	// flushes carries FlushWhere's requests to Run's goroutine; stopped is
	// closed when Run returns.
	flushes  chan *flushRequest
	stopped  chan struct{}
	stopOnce sync.Once
	// received counts the executions Run took from its channel; only Run's
	// goroutine touches it.
	received uint64
}

// ErrStopped is FlushWhere's error when Run has returned, or returns before
// it answers.
var ErrStopped = errors.New("the analyzer has stopped")

// FlushResult is what FlushWhere did.
type FlushResult struct {
	// Executions is how many executions Run had taken from its channel when
	// it closed the windows: at least the handed count asked for.
	Executions uint64 `json:"executions"`
	// WindowsClosed is how many open windows the flush closed.
	WindowsClosed int `json:"windows_closed"`
	// Findings is how many findings the filter selects among those
	// delivered while the flush waited for the executions and closed the
	// windows.
	Findings int `json:"findings"`
}

// flushRequest is one FlushWhere call, answered on done.
type flushRequest struct {
	ctx    context.Context
	handed uint64
	filter Filter
	done   chan flushReply // buffered: Run never waits on it
}

type flushReply struct {
	res FlushResult
	err error
}

// New returns an Analyzer.
func New(cfg Config) *Analyzer {
	if cfg.Fingerprints == nil {
		cfg.Fingerprints = fingerprint.New(fingerprint.Options{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if cfg.Lag <= 0 {
		cfg.Lag = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Analyzer{cfg: cfg, fp: cfg.Fingerprints, det: detector.New(cfg.Detector),
		flushes: make(chan *flushRequest), stopped: make(chan struct{})}
}

// Fingerprints returns the analyzer's fingerprint cache.
func (a *Analyzer) Fingerprints() *fingerprint.Cache { return a.fp }

// Process analyzes one execution and delivers any findings it completes.
func (a *Analyzer) Process(e *pgwire.Execution) {
	a.process(e)
}

// ProcessFingerprinted is Process for an execution whose SQL text another
// goroutine already fingerprinted with the Analyzer's fingerprint cache
// (res; nil: fingerprint it here): a replay reads and fingerprints ahead of
// the analysis, on the reading goroutine.
func (a *Analyzer) ProcessFingerprinted(e *pgwire.Execution, res *fingerprint.Result) {
	a.processEvent(e, a.eventFrom(e, res))
}

// process is Process; it returns the findings it delivered.
func (a *Analyzer) process(e *pgwire.Execution) []detector.Finding {
	return a.processEvent(e, a.event(e))
}

// processEvent judges ev, the event of e; it returns the findings it
// delivered.
func (a *Analyzer) processEvent(e *pgwire.Execution, ev detector.Event) []detector.Finding {
	if e != nil && a.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		a.logExecution(&ev)
	}
	if e != nil && a.cfg.Observe != nil {
		a.cfg.Observe(&ev)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fs := a.det.Observe(ev)
	a.deliver(fs)
	fs = append(fs, a.ask()...)
	if e != nil {
		a.giveEvidence(e.EvidenceSize())
	}
	return fs
}

// evidenceGiveBack is how much evidence the analyzer holds before it gives
// it back to the budget. The budget is one counter that the trackers take
// from on the relay's cores; giving back every execution's few bytes moved
// its cache line to the analyzer's core and back once per execution. Held
// back, it is at most this much (of a budget of 64 MiB by default), until
// the next Advance (every Tick under Run) or Flush gives it back.
const evidenceGiveBack = 4 << 10

// giveEvidence counts n bytes of evidence done with, and gives back what
// it owes once that reaches evidenceGiveBack. a.mu is held.
func (a *Analyzer) giveEvidence(n int) {
	if a.owed += n; a.owed >= evidenceGiveBack {
		a.giveBack()
	}
}

// giveBack gives back all the evidence owed. a.mu is held.
func (a *Analyzer) giveBack() {
	a.cfg.EvidenceBudget.Give(a.owed)
	a.owed = 0
}

// Advance closes the windows that ended by now (event time).
func (a *Analyzer) Advance(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.giveBack()
	a.deliver(a.det.Advance(now))
	a.ask()
}

// Flush closes every open window and delivers what they held; a
// leading_wildcard still waiting for its inspection then is delivered as
// without one (inspect.go).
func (a *Analyzer) Flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.giveBack()
	a.deliver(a.det.Flush())
	a.ask()
	a.deliver(a.det.Unanswered())
}

// ResetReported forgets the report cooldowns, so that the next occurrence of
// a pattern is reported again (the HTTP API's DELETE does this, so a test
// suite can assert per test).
func (a *Analyzer) ResetReported() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.det.ResetReported()
}

// ResetReportedWhere forgets the report cooldowns of one application or
// trace (the HTTP API's scoped DELETE); see detector.ResetReportedWhere.
func (a *Analyzer) ResetReportedWhere(application, trace string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.det.ResetReportedWhere(application, trace)
}

// FlushWhere is a barrier through Run's loop, for a test that asserts right
// after its statements: Run first processes executions from its channel
// until it has taken handed of them in all (the count of executions sent on
// the channel so far, proxy.Stats.Events: a FIFO channel, or a tee that
// forwards every execution in order, gives them in the order they were
// sent), then closes the open windows of the groups that f.Application and
// f.Trace select (every window when both are empty; f's other fields only
// select what Findings counts) and delivers their findings to the sinks
// before FlushWhere returns. Windows of other applications and traces stay
// open. It returns ctx's error when ctx is done first, and ErrStopped when
// Run has returned or returns first.
func (a *Analyzer) FlushWhere(ctx context.Context, handed uint64, f Filter) (FlushResult, error) {
	req := &flushRequest{ctx: ctx, handed: handed, filter: f, done: make(chan flushReply, 1)}
	select {
	case a.flushes <- req:
	case <-a.stopped:
		return FlushResult{}, ErrStopped
	case <-ctx.Done():
		return FlushResult{}, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		return FlushResult{}, ctx.Err()
	}
}

// Stats returns the detector's counters.
func (a *Analyzer) Stats() detector.Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.det.Stats()
}

// event fingerprints e's SQL text (outside the lock: the cache is safe for
// concurrent use and this is the expensive part).
func (a *Analyzer) event(e *pgwire.Execution) detector.Event {
	return a.eventFrom(e, nil)
}

// eventFrom is event with e's fingerprint result when res is not nil.
func (a *Analyzer) eventFrom(e *pgwire.Execution, res *fingerprint.Result) detector.Event {
	ev := detector.Event{Exec: e}
	if e == nil || e.SQL == "" {
		return ev
	}
	if res == nil {
		res = a.fp.OfStrings(e.SQL, fingerprint.Strings(e.StandardStrings)) // the two types share their values
	}
	if n := len(res.Statements); n > 0 {
		i := min(max(e.StatementIndex, 0), n-1)
		ev.Stmt = &res.Statements[i]
	}
	ev.TraceID, ev.Tags = res.TraceID, res.Tags
	return ev
}

func (a *Analyzer) deliver(fs []detector.Finding) {
	for i := range fs {
		for _, s := range a.cfg.Sinks {
			s.Finding(&fs[i])
		}
	}
}

// Run consumes events until the channel is closed, then flushes every open
// window; it also closes windows as wall time passes. It returns when events
// is closed and drained, or ctx is done (without flushing: the caller may
// Flush). It answers FlushWhere between two ticks.
func (a *Analyzer) Run(ctx context.Context, events <-chan *pgwire.Execution) {
	defer a.stopOnce.Do(func() { close(a.stopped) })
	// The queue is drained on a tick rather than by a blocking receive: a
	// receiver parked on the channel would be woken for every execution, and
	// on a busy proxy those wake-ups (futex calls and scheduler work) cost
	// more CPU than the analysis itself. A send into a buffer nobody waits
	// on is only a lock and a copy. The queue must hold one tick's worth of
	// executions (the default 10,000 holds 1 s at 10,000 statements/s, far
	// more than the 10 ms default tick).
	tick := time.NewTicker(a.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case req := <-a.flushes:
			if !a.serveFlush(ctx, events, req) {
				return
			}
			continue
		case ins := <-a.inspections():
			a.inspected(ins)
			continue
		case <-ctx.Done():
			return
		}
	drain:
		for {
			select {
			case e, ok := <-events:
				if !ok {
					a.Flush()
					return
				}
				a.received++
				a.Process(e)
			default:
				break drain
			}
		}
		a.Advance(a.cfg.Now().Add(-a.cfg.Lag))
	}
}

// serveFlush answers a FlushWhere request on Run's goroutine: it takes
// executions from events until req.handed have been taken, then closes the
// windows req.filter scopes. It returns false when Run must return: ctx is
// done, or events was closed (Run's every window is then flushed).
func (a *Analyzer) serveFlush(ctx context.Context, events <-chan *pgwire.Execution, req *flushRequest) bool {
	var res FlushResult
	count := func(fs []detector.Finding) {
		for i := range fs {
			if req.filter.Match(&fs[i]) {
				res.Findings++
			}
		}
	}
	for a.received < req.handed {
		select {
		case e, ok := <-events:
			if !ok {
				a.Flush()
				req.done <- flushReply{err: ErrStopped}
				return false
			}
			a.received++
			count(a.process(e))
		case <-req.ctx.Done():
			req.done <- flushReply{err: req.ctx.Err()}
			return true
		case <-ctx.Done():
			req.done <- flushReply{err: ErrStopped}
			return false
		}
	}
	a.mu.Lock()
	fs, closed := a.det.FlushWhere(req.filter.Application, req.filter.Trace)
	a.deliver(fs)
	fs = append(fs, a.ask()...)
	a.mu.Unlock()
	count(fs)
	res.Executions, res.WindowsClosed = a.received, closed
	req.done <- flushReply{res: res}
	return true
}

// logExecution logs one execution at debug level: who ran it, what it did,
// and the statement only in its normalized, literal-free form.
func (a *Analyzer) logExecution(ev *detector.Event) {
	e := ev.Exec
	attrs := []slog.Attr{
		slog.Uint64("conn", e.Conn.ID),
		slog.String("user", e.Conn.User),
		slog.String("database", e.Conn.Database),
		slog.String("application_name", e.Conn.ApplicationName),
		slog.String("command", e.Command),
		slog.Int64("rows", e.Rows),
		slog.Duration("duration", e.Duration()),
		slog.String("sqlstate", e.SQLState),
		slog.Bool("in_tx", e.InTransaction),
		slog.String("protocol", e.Protocol),
	}
	if ev.Stmt != nil {
		attrs = append(attrs, slog.String("fingerprint", ev.Stmt.Hex), slog.String("query", ev.Stmt.Normalized))
	}
	a.cfg.Logger.LogAttrs(context.Background(), slog.LevelDebug, "execution", attrs...)
}
