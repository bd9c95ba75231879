package metrics

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/lru"
)

// windowSlots is the number of slots of the ranking window: a fingerprint's
// score is the sum of the slots that are younger than the window, so the
// window slides by TopWindow/windowSlots.
const windowSlots = 10

// counts are one fingerprint's cumulative counters (or __other__'s).
type counts struct {
	calls, rows uint64
	seconds     float64
	findings    [numKinds]uint64
}

func (c *counts) add(d counts) {
	c.calls += d.calls
	c.rows += d.rows
	c.seconds += d.seconds
	for i := range c.findings {
		c.findings[i] += d.findings[i]
	}
}

func (c counts) sub(d counts) counts {
	c.calls -= d.calls
	c.rows -= d.rows
	c.seconds -= d.seconds
	for i := range c.findings {
		c.findings[i] -= d.findings[i]
	}
	return c
}

// slot is one slice of the ranking window.
type slot struct {
	epoch    int64 // the slot's number since the Unix epoch; stale when old
	calls    uint32
	findings uint32
	seconds  float64
}

// score is a fingerprint's activity over the window.
type score struct {
	calls, findings uint64
	seconds         float64
}

// entry is one tracked fingerprint.
type entry struct {
	id      uint64
	hex     string
	command string
	query   string // normalized, truncated to maxLabelChars
	tables  string // comma-separated, truncated to maxLabelChars

	// cur counts what happened while the fingerprint was in the top-K;
	// exported is what the last scrape showed. Outside the top-K, cur ==
	// exported and new counts go to __other__ instead: every execution and
	// finding is counted in exactly one exported series, and every series
	// only grows.
	cur, exported counts
	member        bool
	// life counts everything since the fingerprint was tracked, in or out
	// of the top-K: what Exporter.Fingerprints reports.
	life lifetime

	slots [windowSlots]slot
}

func (e *entry) slotAt(epoch int64) *slot {
	s := &e.slots[epoch%windowSlots]
	if s.epoch != epoch {
		*s = slot{epoch: epoch}
	}
	return s
}

func (e *entry) score(epoch int64) score {
	var sc score
	for i := range e.slots {
		s := &e.slots[i]
		if s.epoch > epoch-windowSlots && s.epoch <= epoch {
			sc.calls += uint64(s.calls)
			sc.findings += uint64(s.findings)
			sc.seconds += s.seconds
		}
	}
	return sc
}

// topK tracks fingerprints and exports a bounded top-K of them, computed at
// scrape time; the rest are folded into fingerprint="__other__".
//
// A fingerprint's series count what happened while it was in the top-K (as
// of the previous scrape); everything else is counted in __other__, so the
// sum over the fingerprint label is the total and no series ever decreases.
// A fingerprint that leaves the top-K hands the counts of its last interval,
// which no scrape showed, to __other__. A series that (re)appears starts at
// the value it had when it left, or 0; rate() and increase() ignore the
// first sample of a series, so nothing is counted twice.
type topK struct {
	k       int
	by      string
	slotDur time.Duration
	max     int
	now     func() time.Time

	callsDesc, secondsDesc, rowsDesc, findingsDesc, infoDesc *prometheus.Desc
	trackedDesc, evictionsDesc                               *prometheus.Desc

	mu        sync.Mutex
	entries   *lru.Cache[uint64, *entry] // by fingerprint, least recently seen first out; guarded by mu
	members   []*entry                   // the top-K as of the last scrape; guarded by mu
	other     counts                     // guarded by mu
	evictions uint64                     // guarded by mu
}

func newTopK(o Options) *topK {
	fp := []string{"fingerprint"}
	return &topK{
		k:       o.TopK,
		by:      o.TopBy,
		slotDur: o.TopWindow / windowSlots,
		max:     o.Tracked,
		now:     o.Now,
		entries: lru.New[uint64, *entry](o.Tracked, 0, nil),

		callsDesc: prometheus.NewDesc("nplus1_fingerprint_calls_total",
			"Executions per query fingerprint, for the top-K fingerprints (--metrics-top-k) and __other__.", fp, nil),
		secondsDesc: prometheus.NewDesc("nplus1_fingerprint_duration_seconds_total",
			"Summed server time per query fingerprint, for the top-K fingerprints and __other__.", fp, nil),
		rowsDesc: prometheus.NewDesc("nplus1_fingerprint_rows_total",
			"Rows returned by SELECT and FETCH per query fingerprint, for the top-K fingerprints and __other__.", fp, nil),
		findingsDesc: prometheus.NewDesc("nplus1_fingerprint_findings_total",
			"Findings reported per query fingerprint and kind, for the top-K fingerprints and __other__.", []string{"fingerprint", "kind"}, nil),
		infoDesc: prometheus.NewDesc("nplus1_fingerprint_info",
			"Always 1, for each top-K fingerprint: its command, normalized query (literal-free, cut to 120 characters) and tables.",
			[]string{"fingerprint", "command", "query", "tables"}, nil),
		trackedDesc: prometheus.NewDesc("nplus1_fingerprint_ranking_entries",
			"Fingerprints tracked for the top-K ranking now.", nil, nil),
		evictionsDesc: prometheus.NewDesc("nplus1_fingerprint_ranking_evictions_total",
			"Fingerprints forgotten by the top-K ranking because its bound was reached.", nil, nil),
	}
}

func (t *topK) epoch(now time.Time) int64 { return now.UnixNano() / int64(t.slotDur) }

// observe counts one execution of st (nil: not fingerprinted); failed: it
// ended in an error.
func (t *topK) observe(st *fingerprint.Statement, cmd int, seconds float64, rows uint64, failed bool) {
	d := counts{calls: 1, seconds: seconds, rows: rows}
	epoch := t.epoch(t.now())
	t.mu.Lock()
	defer t.mu.Unlock()
	if st == nil {
		t.other.add(d)
		return
	}
	e := t.lookup(st.ID)
	if e == nil {
		e = t.insert(st.ID, st.Hex, commandNames[cmd], st.Normalized, tablesOf(st.Facts))
	}
	t.count(e, d)
	e.life.execution(seconds, failed)
	s := e.slotAt(epoch)
	s.calls++
	s.seconds += seconds
}

// finding counts a finding of kind index k.
func (t *topK) finding(f *detector.Finding, k int) {
	id, err := strconv.ParseUint(f.Fingerprint, 16, 64)
	var d counts
	d.findings[k] = 1
	epoch := t.epoch(t.now())
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.other.add(d)
		return
	}
	e := t.lookup(id)
	if e == nil { // forgotten since its executions were counted
		e = t.insert(id, f.Fingerprint, commandNames[cmdSelect], f.Query, strings.Join(f.Tables, ","))
	}
	t.count(e, d)
	e.slotAt(epoch).findings++
}

func (t *topK) count(e *entry, d counts) {
	e.life.add(d)
	if e.member {
		e.cur.add(d)
	} else {
		t.other.add(d)
	}
}

// lookup returns the entry of id, made the most recent; nil when untracked.
func (t *topK) lookup(id uint64) *entry {
	e, _ := t.entries.Get(id)
	return e
}

// insert tracks a new fingerprint, forgetting the least recently seen one
// outside the top-K when the bound is reached.
func (t *topK) insert(id uint64, hex, command, query, tables string) *entry {
	for t.entries.Len() >= t.max {
		var victim *entry
		for _, e := range t.entries.Backward {
			if !e.member {
				victim = e
				break
			}
		}
		if victim == nil {
			break // cannot happen: max > k
		}
		t.entries.Remove(victim.id)
		t.evictions++
	}
	e := &entry{id: id, hex: hex, command: command, query: truncate(query), tables: truncate(tables)}
	t.entries.Add(id, e, 0)
	return e
}

// rerank recomputes the top-K: fingerprints active in the window, ordered by
// findings then time (RankFindings) or time then findings (RankTime);
// current members win ties, so the set does not flap.
func (t *topK) rerank(now time.Time) {
	epoch := t.epoch(now)
	type ranked struct {
		e  *entry
		sc score
	}
	var cands []ranked
	if t.k > 0 {
		for _, e := range t.entries.All {
			if sc := e.score(epoch); sc.calls > 0 || sc.findings > 0 {
				cands = append(cands, ranked{e, sc})
			}
		}
	}
	slices.SortFunc(cands, func(a, b ranked) int {
		var c int
		if t.by == RankTime {
			c = cmp.Or(cmp.Compare(b.sc.seconds, a.sc.seconds), cmp.Compare(b.sc.findings, a.sc.findings))
		} else {
			c = cmp.Or(cmp.Compare(b.sc.findings, a.sc.findings), cmp.Compare(b.sc.seconds, a.sc.seconds))
		}
		if c != 0 {
			return c
		}
		if a.e.member != b.e.member {
			if a.e.member {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.e.id, b.e.id)
	})
	cands = cands[:min(len(cands), t.k)]
	for _, e := range t.members {
		e.member = false
	}
	next := make([]*entry, len(cands))
	for i, c := range cands {
		c.e.member = true
		next[i] = c.e
	}
	for _, e := range t.members {
		if !e.member {
			// Leaving: what it counted since the last scrape was never
			// shown; __other__ shows it instead.
			t.other.add(e.cur.sub(e.exported))
			e.cur = e.exported
		}
	}
	t.members = next
}

// Describe implements prometheus.Collector.
func (t *topK) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{t.callsDesc, t.secondsDesc, t.rowsDesc, t.findingsDesc, t.infoDesc, t.trackedDesc, t.evictionsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reranks, then exports the
// members and __other__.
func (t *topK) Collect(ch chan<- prometheus.Metric) {
	type row struct {
		hex, command, query, tables string
		c                           counts
	}
	t.mu.Lock()
	t.rerank(t.now())
	rows := make([]row, 0, len(t.members)+1)
	for _, e := range t.members {
		e.exported = e.cur
		rows = append(rows, row{e.hex, e.command, e.query, e.tables, e.cur})
	}
	rows = append(rows, row{hex: Other, c: t.other})
	tracked, evictions := t.entries.Len(), t.evictions
	t.mu.Unlock()

	kinds := detector.Kinds()
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(t.callsDesc, prometheus.CounterValue, float64(r.c.calls), r.hex)
		ch <- prometheus.MustNewConstMetric(t.secondsDesc, prometheus.CounterValue, r.c.seconds, r.hex)
		ch <- prometheus.MustNewConstMetric(t.rowsDesc, prometheus.CounterValue, float64(r.c.rows), r.hex)
		for i, k := range kinds {
			ch <- prometheus.MustNewConstMetric(t.findingsDesc, prometheus.CounterValue, float64(r.c.findings[i]), r.hex, string(k))
		}
		if r.hex != Other {
			ch <- prometheus.MustNewConstMetric(t.infoDesc, prometheus.GaugeValue, 1, r.hex, r.command, r.query, r.tables)
		}
	}
	ch <- prometheus.MustNewConstMetric(t.trackedDesc, prometheus.GaugeValue, float64(tracked))
	ch <- prometheus.MustNewConstMetric(t.evictionsDesc, prometheus.CounterValue, float64(evictions))
}

// tablesOf lists the tables a statement reads or writes, sorted, comma-separated.
func tablesOf(f *fingerprint.Facts) string {
	if f == nil {
		return ""
	}
	ts := slices.Concat(f.TablesRead, f.TablesWritten)
	slices.Sort(ts)
	return strings.Join(slices.Compact(ts), ",")
}

// truncate cuts s to maxLabelChars characters, the last being "…" when it
// cut, and replaces invalid UTF-8 (label values must be valid).
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= maxLabelChars {
		return s
	}
	n := 0
	for i := range s {
		if n == maxLabelChars-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
