package detector

import (
	"maps"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/lru"
	"github.com/nplus1/nplus1/pgwire"
)

// Defaults for the zero fields of Config; doc.go says why these values.
const (
	DefaultIdleGap            = 100 * time.Millisecond
	DefaultMaxWindow          = 5 * time.Second
	DefaultNPlusOneThreshold  = 5
	DefaultDuplicateThreshold = 3
	DefaultUnpaginatedRows    = 1000
	DefaultReportCooldown     = time.Minute
	DefaultMaxGroups          = 4096
	DefaultMaxWindowEvents    = 2000
	DefaultMaxParamsPerShape  = 512
	DefaultMaxSelectStar      = 10000
	DefaultMaxEvidenceBytes   = 64 << 20
	DefaultMaxRecentSources   = 1024
	DefaultStallGap           = 500 * time.Millisecond
	DefaultDeepOffset         = 1000
)

// Config holds the detector's knobs. A zero field takes its default.
type Config struct {
	// IdleGap ends a window when no statement of its group starts for this
	// long after the previous one ended.
	IdleGap time.Duration
	// MaxWindow ends a window this long after its first statement started.
	MaxWindow time.Duration
	// StallGap is the longest pause inside a running loop that is taken for
	// a stall (of the client, the proxy or the machine) rather than the end
	// of a request, when the data flow shows the loop goes on: the next
	// statement repeats the loop's shape with a key read from a result
	// earlier in the window and not used by the loop yet. Such a window
	// stays open past IdleGap until StallGap. Negative: never.
	StallGap time.Duration

	// NPlusOneThreshold is the number of executions, and of distinct
	// parameter sets, that make a repeated SELECT an N+1.
	NPlusOneThreshold int
	// DuplicateThreshold is the number of executions with identical
	// parameters that make a duplicate_query.
	DuplicateThreshold int
	// UnpaginatedRows is the row count from which a SELECT without LIMIT is
	// unpaginated.
	UnpaginatedRows int64
	// DeepOffset is the OFFSET from which a SELECT is a deep_offset. A bound
	// OFFSET is seen only as at least pgwire.LargeParam or not, so it is
	// judged only while DeepOffset is at most that.
	DeepOffset int64
	// SlowThreshold is the server time from which a statement is a
	// slow_query; 0: the rule is off.
	SlowThreshold time.Duration
	// LostUpdateWindow is how soon after a read by key an UPDATE of the
	// same row on the same connection must start to be a lost_update.
	LostUpdateWindow time.Duration
	// Inspect turns the missing_index rule on, and has leading_wildcard
	// judged on the plan: the caller has an inspection connection, hands it
	// what Wants returns and its answers to Inspected (missingindex.go), and
	// calls Unanswered at the end (patterns.go).
	Inspect bool
	// MissingIndexRows is the estimated table size from which a Seq Scan
	// under a filter that no index serves is a missing_index, and one that
	// matches a LIKE a definite leading_wildcard.
	MissingIndexRows int64
	// MissingIndexRuns is how many runs of a read shape within a minute make
	// it worth an inspection (the lookup of an N+1 always is).
	MissingIndexRuns int

	// ReportCooldown is how long, in event time, the same (kind, fingerprint,
	// source) stays quiet per group key after it was reported. Negative:
	// report every occurrence.
	ReportCooldown time.Duration

	// Ignore is the safelist.
	Ignore []Ignore

	// JudgeCatalogs also judges queries that read only system catalogs
	// (pg_catalog, information_schema, pg_* tables). They are skipped by
	// default: drivers and ORMs issue them and the application cannot fix them.
	JudgeCatalogs bool

	// MaxGroups bounds the group keys (connections, traces) remembered; the
	// least recently active one is evicted, its open window closed first.
	MaxGroups int
	// MaxWindowEvents bounds the statements in one window; the window closes
	// when it is reached and the next statement opens a new one.
	MaxWindowEvents int
	// MaxParamsPerShape bounds the distinct parameter sets tracked for one
	// query shape in one window; further ones are counted, not kept.
	MaxParamsPerShape int
	// MaxSelectStar bounds the fingerprints remembered for select_star's
	// once-per-fingerprint rule; the oldest is forgotten first.
	MaxSelectStar int
	// MaxEvidenceBytes bounds the result digests that open windows keep as
	// candidate sources (copied out of the executions' pgwire.ResultKeys: 8
	// bytes a digest, 16 a result); past it results are not kept
	// (Stats.EvidenceDropped) and loops over them fall back to repetition.
	MaxEvidenceBytes int
	// MaxRecentSources bounds the recent results, over all connections,
	// kept to prove loops whose source ran on another connection of the same
	// pool scope.
	MaxRecentSources int
}

func (c Config) withDefaults() Config {
	setDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setDur(&c.IdleGap, DefaultIdleGap)
	setDur(&c.MaxWindow, DefaultMaxWindow)
	if c.StallGap == 0 {
		c.StallGap = DefaultStallGap
	}
	setInt(&c.NPlusOneThreshold, DefaultNPlusOneThreshold)
	setInt(&c.DuplicateThreshold, DefaultDuplicateThreshold)
	if c.UnpaginatedRows <= 0 {
		c.UnpaginatedRows = DefaultUnpaginatedRows
	}
	if c.DeepOffset <= 0 {
		c.DeepOffset = DefaultDeepOffset
	}
	setDur(&c.LostUpdateWindow, DefaultLostUpdateWindow)
	if c.MissingIndexRows <= 0 {
		c.MissingIndexRows = DefaultMissingIndexRows
	}
	setInt(&c.MissingIndexRuns, DefaultMissingIndexRuns)
	if c.ReportCooldown == 0 {
		c.ReportCooldown = DefaultReportCooldown
	}
	setInt(&c.MaxGroups, DefaultMaxGroups)
	setInt(&c.MaxWindowEvents, DefaultMaxWindowEvents)
	setInt(&c.MaxParamsPerShape, DefaultMaxParamsPerShape)
	setInt(&c.MaxSelectStar, DefaultMaxSelectStar)
	setInt(&c.MaxEvidenceBytes, DefaultMaxEvidenceBytes)
	setInt(&c.MaxRecentSources, DefaultMaxRecentSources)
	// The N+1 rule needs that many distinct parameter sets to be countable.
	c.MaxParamsPerShape = max(c.MaxParamsPerShape, c.NPlusOneThreshold)
	return c
}

// Event is one execution as the detector sees it: the proxy's Execution and
// the fingerprint of its statement. The caller fills it from the
// pgwire.Execution and the fingerprint.Result of its SQL text.
//
// The detector keeps the Conn, Stmt and Tags pointers while the window is
// open and never modifies what they point to; neither may the caller.
type Event struct {
	// Exec is the execution; nil events are counted and ignored.
	Exec *pgwire.Execution
	// Stmt is the Exec.StatementIndex-th statement of the fingerprinted text;
	// nil (or with Err set) when the text could not be fingerprinted: the
	// execution then keeps its window open but is judged by no rule.
	Stmt *fingerprint.Statement
	// TraceID and Tags are the sqlcommenter values of the fingerprint.Result.
	// A non-empty TraceID groups the execution by trace instead of by
	// connection.
	TraceID string
	Tags    map[string]string
}

// Close reasons, the keys of Stats.WindowsClosed (CloseReasons lists them).
const (
	CloseTxEnd     = "tx_end"
	CloseIdleGap   = "idle_gap"
	CloseMaxWindow = "max_window"
	CloseMaxEvents = "max_events"
	CloseEvicted   = "evicted"
	CloseFlush     = "flush"
)

// CloseReasons returns every reason a window closes for, the keys of
// Stats.WindowsClosed, in a fixed order.
func CloseReasons() []string {
	return []string{CloseTxEnd, CloseIdleGap, CloseMaxWindow, CloseMaxEvents, CloseEvicted, CloseFlush}
}

// Stats are the detector's counters, for the metrics exporter. Counters only
// grow; WindowsOpen and Groups are gauges. Every map has a key for every kind
// or reason, so exporters see zeros.
type Stats struct {
	// Events counts Observe calls with an Execution.
	Events uint64
	// Invalid counts Observe calls without one.
	Invalid uint64
	// Unfingerprinted counts executions without a usable Statement.
	Unfingerprinted uint64
	// Failed counts executions that ended in an error (not judged).
	Failed uint64

	// Found counts every occurrence of a finding by kind, before the
	// safelist and the cooldown: Found = Reported + Suppressed + Ignored.
	Found map[Kind]uint64
	// Reported counts the findings returned to the caller.
	Reported map[Kind]uint64
	// Suppressed counts occurrences held back by the cooldown (or, for
	// select_star, because the fingerprint was already reported).
	Suppressed map[Kind]uint64
	// Ignored counts occurrences dropped by the safelist.
	Ignored map[Kind]uint64

	// WindowsOpen is the number of windows open now.
	WindowsOpen int
	// WindowsClosed counts closed windows by reason (CloseTxEnd, ...).
	WindowsClosed map[string]uint64
	// Groups is the number of group keys remembered now (open windows and
	// cooldown state).
	Groups int
	// GroupsEvicted counts groups dropped because MaxGroups was reached.
	GroupsEvicted uint64
	// ParamsDropped counts distinct parameter sets not tracked because a
	// shape reached MaxParamsPerShape in its window.
	ParamsDropped uint64
	// SelectStarForgotten counts fingerprints dropped from select_star's
	// memory because MaxSelectStar was reached.
	SelectStarForgotten uint64

	// Proven counts n_plus_one occurrences whose keys were found in an
	// earlier result (evidence data_flow); Unproven those reported on
	// repetition alone; Concurrent the repeated shapes not reported because
	// no data flow proved them while other connections of the same pool
	// scope ran the same shape (independent requests over a pool).
	Proven, Unproven, Concurrent uint64
	// Hopped counts the Proven occurrences joined from the pieces of a loop
	// that hopped over its pool's connections (see hop.go).
	Hopped uint64
	// EvidenceDropped counts results not kept as candidate sources because
	// MaxEvidenceBytes was reached.
	EvidenceDropped uint64
	// StallsBridged counts pauses longer than IdleGap inside a loop that
	// did not end its window because the loop went on (see StallGap).
	StallsBridged uint64
	// StallsReopened counts windows opened again because the loop they
	// ended in went on after a pause longer than StallGap (see stall.go).
	StallsReopened uint64
	// WindowsHeld is the number of closed windows that hold back an N+1
	// seen on repetition alone, for at most twice StallGap, in case their
	// loop goes on (see stall.go): like WindowsOpen, findings still to come.
	WindowsHeld int
}

// Detector groups executions into windows and applies the rules when a
// window closes. It is a pure function of the events and the times passed to
// Advance: no wall clock, no goroutines.
//
// A Detector is not safe for concurrent use: one goroutine owns it and makes
// every call.
type Detector struct {
	cfg Config

	// groups by key, least recently observed first out; evict makes room
	// before the bound is reached, so that a window is judged before its
	// group goes.
	groups *lru.Cache[groupID, *group]

	// star is select_star's memory: the fingerprints reported so far,
	// forgotten in the order they were first reported (read with Peek).
	star *lru.Cache[uint64, *starSeen]

	// recent are the latest results that could be the source of a loop run
	// on another connection of their pool scope; scopes tracks which
	// connections of a scope ran a shape lately (concurrency).
	recent recentSources
	seqs   []uint64 // scratch: the candidates of one search of recent
	// scratch is the working memory of loopKeys.match.
	scratch matchScratch
	// hopsPending are the unions of loops that hopped over a pool's
	// connections, proven and waiting to settle (see hop.go).
	hopsPending []pendingHop
	scopes      *lru.Cache[scopeKey, *scopeState]
	evBytes     int // ResultKeys bytes kept by open windows
	// rmw follows each connection's reads by key and transaction
	// isolation for lost_update (lostupdate.go); made on first use.
	rmw *lru.Cache[uint64, *rmwConn]
	// mi is the missing_index rule's memory (missingindex.go); made on
	// first use, with Config.Inspect.
	mi *missingIndexState

	stats Stats
}

// New returns a Detector with the configuration cfg (zero fields take the
// defaults).
func New(cfg Config) *Detector {
	d := &Detector{
		cfg: cfg.withDefaults(),
		stats: Stats{
			Found:         make(map[Kind]uint64),
			Reported:      make(map[Kind]uint64),
			Suppressed:    make(map[Kind]uint64),
			Ignored:       make(map[Kind]uint64),
			WindowsClosed: make(map[string]uint64),
		},
	}
	for _, k := range Kinds() {
		d.stats.Found[k] = 0
		d.stats.Reported[k] = 0
		d.stats.Suppressed[k] = 0
		d.stats.Ignored[k] = 0
	}
	for _, r := range CloseReasons() {
		d.stats.WindowsClosed[r] = 0
	}
	d.groups = lru.New[groupID, *group](d.cfg.MaxGroups, 0, nil)
	d.star = lru.New[uint64, *starSeen](d.cfg.MaxSelectStar, 0, nil)
	d.recent = recentSources{buf: make([]recentSource, 0, min(d.cfg.MaxRecentSources, 64)), max: d.cfg.MaxRecentSources}
	d.scopes = lru.New[scopeKey, *scopeState](maxScopes, 0, func(_ scopeKey, sc *scopeState) { sc.evicted = true })
	return d
}

// Config returns the configuration in use, defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// Observe adds one execution to its group's window and returns the findings
// that became reportable with it: those of a window it closed (the group's
// previous window when the idle gap or MaxWindow had passed, its own window
// at transaction end or at MaxWindowEvents, a window evicted to make room).
func (d *Detector) Observe(ev Event) []Finding {
	x := ev.Exec
	if x == nil {
		d.stats.Invalid++
		return nil
	}
	d.stats.Events++
	var out []Finding

	key := groupKey(ev)
	g, ok := d.groups.Get(key)
	if !ok {
		if d.groups.Len() >= d.cfg.MaxGroups {
			out = d.evict(out)
		}
		g = &group{traceID: ev.TraceID, lastSeen: noTime}
		d.groups.Add(key, g, 0)
	}

	t := instantsOf(x)
	start, end := t.start, t.end
	if w := g.win; w != nil {
		switch {
		case start.sub(w.end) >= d.cfg.IdleGap && !d.loopGoesOn(w, ev, start):
			out = d.close(out, g, CloseIdleGap)
		case start.sub(w.start) >= d.cfg.MaxWindow:
			out = d.close(out, g, CloseMaxWindow)
		}
	}
	if g.win == nil && g.prev != nil {
		if d.reopens(g, ev, start) {
			g.win, g.prev = g.prev, nil
			d.stats.WindowsOpen++
		} else {
			out = d.dropPrev(out, g)
		}
	}
	if g.win == nil {
		g.win = newWindow(start, t.startAt(x))
		d.stats.WindowsOpen++
	}
	d.add(g, ev, t)
	d.noteLostUpdate(g.win, ev, start, end)
	if end > g.lastSeen {
		g.lastSeen = end
	}
	switch {
	case x.TxEnd && !g.win.tx.hold: // a transaction of writes alone may go on (writes.go)
		out = d.close(out, g, CloseTxEnd)
	case g.win.events >= d.cfg.MaxWindowEvents:
		out = d.close(out, g, CloseMaxEvents)
	}
	return out
}

// Advance tells the detector that time now has come: it closes every window
// whose idle gap or MaxWindow has passed by now and returns their findings,
// and forgets groups with nothing left to remember. The live proxy calls it
// from a ticker with the wall clock, a replay with the capture's clock; now
// should not run ahead of the events still queued for Observe, or their
// windows close early.
func (d *Detector) Advance(now time.Time) []Finding {
	var out []Finding
	at := nanosOf(now)
	for key, g := range d.groups.Backward {
		if w := g.win; w != nil {
			switch {
			case at.sub(w.end) >= d.cfg.IdleGap && !d.mayGoOn(w, at):
				out = d.close(out, g, CloseIdleGap)
			case at.sub(w.start) >= d.cfg.MaxWindow:
				out = d.close(out, g, CloseMaxWindow)
			}
		}
		if g.win == nil {
			var keep bool
			if out, keep = d.remembers(out, g, at); !keep {
				d.groups.Remove(key)
			}
		}
	}
	return d.expireWildcards(out, at) // leading_wildcards whose inspection never answered (patterns.go)
}

// Flush closes every open window, least recently active first, and returns
// their findings: the end of a replay, or shutdown. Cooldown state is kept.
func (d *Detector) Flush() []Finding {
	var out []Finding
	for _, g := range d.groups.Backward {
		if g.win != nil {
			out = d.close(out, g, CloseFlush)
		}
		out = d.dropPrev(out, g)
	}
	return out
}

// Stats returns a copy of the counters.
func (d *Detector) Stats() Stats {
	s := d.stats
	s.Groups = d.groups.Len()
	s.Found = maps.Clone(d.stats.Found)
	s.Reported = maps.Clone(d.stats.Reported)
	s.Suppressed = maps.Clone(d.stats.Suppressed)
	s.Ignored = maps.Clone(d.stats.Ignored)
	s.WindowsClosed = maps.Clone(d.stats.WindowsClosed)
	for _, g := range d.groups.All {
		if g.prev != nil && len(g.prev.held) > 0 {
			s.WindowsHeld++
		}
	}
	return s
}

// groupID is a group key: the trace id when there is one, else the
// connection (a comparable struct: looking a group up allocates nothing).
type groupID struct {
	trace string
	conn  uint64
}

// groupKey is the trace id when there is one, else the connection.
func groupKey(ev Event) groupID {
	if ev.TraceID != "" {
		return groupID{trace: ev.TraceID}
	}
	var id uint64
	if ev.Exec.Conn != nil {
		id = ev.Exec.Conn.ID
	}
	return groupID{conn: id}
}

// evict drops the least recently observed group, closing its window first.
func (d *Detector) evict(out []Finding) []Finding {
	key, g, ok := d.groups.Oldest()
	if !ok {
		return out
	}
	if g.win != nil {
		out = d.close(out, g, CloseEvicted)
	}
	out = d.dropPrev(out, g)
	d.groups.Remove(key)
	d.stats.GroupsEvicted++
	return out
}
