package main

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/fnv1a"
	"github.com/nplus1/nplus1/internal/lru"
)

// Bounds of the page's timelines.
const (
	// timelineRingSize is how many of the latest executions are remembered
	// to cut a finding's window from: 64 bytes each.
	timelineRingSize = 8192
	// timelineMaxWindows is how many windows that produced findings are
	// kept, the least recently reported forgotten first.
	timelineMaxWindows = 100
	// timelineMaxEntries bounds the entries of one window (a run of
	// executions of one query in a row is one entry); later ones are
	// counted, not kept.
	timelineMaxEntries = 100
)

// timelineLog keeps, for the page, the statements of the last windows that
// produced findings. Every execution goes into a ring of the latest ones
// (observe, on the analyzer's goroutine, which also reports findings); when
// a finding is reported, the executions of its group (its trace, or its
// connection) within its window are cut from the ring into a timeline.
type timelineLog struct {
	queryOf func(id uint64) string // the normalized query of a fingerprint

	ring []timelineStep // the analyzer's goroutine only
	next int
	full bool

	mu        sync.Mutex
	windows   *lru.Cache[timelineKey, *timeline] // guarded by mu
	partial   uint64                             // guarded by mu; windows whose start the ring had forgotten
	forgotten uint64                             // guarded by mu; windows dropped for timelineMaxWindows
}

// timelineStep is one execution in the ring.
type timelineStep struct {
	conn       uint64
	trace      uint64 // a hash of the trace id, never 0; 0: none
	fp         uint64 // 0 with parsed false: not fingerprinted
	start, end int64  // Unix nanoseconds
	rows       int64
	failed     bool
	parsed     bool
}

// timelineKey names a window as a finding does.
type timelineKey struct {
	conn  uint64
	trace string
	end   int64
}

// timeline is one window, as GET /api/timeline answers it.
type timeline struct {
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// Statements is how many executions of the window the ring still held;
	// Entries draws them, runs of one query in a row as one entry.
	Statements int             `json:"statements"`
	Entries    []timelineEntry `json:"entries"`
	// Dropped counts executions past timelineMaxEntries entries, not drawn.
	Dropped int `json:"dropped,omitempty"`
	// Partial: executions newer than the window's start had pushed its
	// first ones out of the ring before it closed.
	Partial bool `json:"partial,omitempty"`
}

// timelineEntry is a run of executions of one query in a row.
type timelineEntry struct {
	Fingerprint string `json:"fingerprint,omitempty"` // "": not fingerprinted
	Query       string `json:"query,omitempty"`       // normalized, cut to 120 characters
	Count       int    `json:"count"`
	// StartMS and EndMS are the run's first start and last end, from the
	// window's start; DurationMS is the summed time of its executions.
	StartMS    float64 `json:"start_ms"`
	EndMS      float64 `json:"end_ms"`
	DurationMS float64 `json:"duration_ms"`
	Rows       int64   `json:"rows"`
	Errors     int     `json:"errors,omitempty"`

	fp     uint64
	parsed bool
}

func newTimelineLog(queryOf func(id uint64) string) *timelineLog {
	l := &timelineLog{queryOf: queryOf, ring: make([]timelineStep, timelineRingSize)}
	l.windows = lru.New[timelineKey, *timeline](timelineMaxWindows, 0, func(timelineKey, *timeline) { l.forgotten++ })
	return l
}

// traceHash is the ring's form of a trace id: never 0, 0 being none.
func traceHash(id string) uint64 {
	if id == "" {
		return 0
	}
	return fnv1a.Sum(id) | 1
}

// observe remembers one execution; it runs on the analyzer's goroutine.
func (l *timelineLog) observe(ev *detector.Event) {
	x := ev.Exec
	if x == nil {
		return
	}
	start, end := x.Start, x.End
	if start.IsZero() || end.Before(start) { // as the detector reads it
		start = end
	}
	s := timelineStep{start: start.UnixNano(), end: end.UnixNano(), rows: x.Rows, failed: x.SQLState != "", trace: traceHash(ev.TraceID)}
	if x.Conn != nil {
		s.conn = x.Conn.ID
	}
	if st := ev.Stmt; st != nil && st.Err == nil {
		s.fp, s.parsed = st.ID, true
	}
	l.ring[l.next] = s
	if l.next++; l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
}

// Finding cuts the finding's window from the ring, unless a finding of the
// same window did already; it runs on the analyzer's goroutine (a Sink).
func (l *timelineLog) Finding(f *detector.Finding) {
	key := timelineKey{conn: f.Connection.ID, trace: f.TraceID, end: f.WindowEnd.UnixNano()}
	l.mu.Lock()
	_, seen := l.windows.Peek(key)
	l.mu.Unlock()
	if seen {
		return
	}
	tl := l.cut(f)
	l.mu.Lock()
	l.windows.Add(key, tl, 0)
	if tl.Partial {
		l.partial++
	}
	l.mu.Unlock()
}

// cut builds the timeline of f's window from the ring.
func (l *timelineLog) cut(f *detector.Finding) *timeline {
	ws, we := f.WindowStart.UnixNano(), f.WindowEnd.UnixNano()
	trace := traceHash(f.TraceID)
	tl := &timeline{WindowStart: f.WindowStart, WindowEnd: f.WindowEnd, Entries: []timelineEntry{}}
	older, newer := l.ring[l.next:], l.ring[:l.next]
	if !l.full {
		older = nil
	}
	if len(older) > 0 && older[0].start > ws {
		tl.Partial = true
	}
	for _, part := range [][]timelineStep{older, newer} {
		for i := range part {
			s := &part[i]
			if s.trace != trace || (trace == 0 && s.conn != f.Connection.ID) || s.start < ws || s.end > we {
				continue
			}
			tl.Statements++
			tl.add(s, ws)
		}
	}
	for i := range tl.Entries {
		e := &tl.Entries[i]
		if e.parsed {
			e.Fingerprint = fmt.Sprintf("%016x", e.fp)
			e.Query = l.queryOf(e.fp)
		}
	}
	return tl
}

// add puts s in the timeline: in its last entry when that is the same
// query, else in a new one while there is room; once there is none, it and
// every later one are only counted.
func (tl *timeline) add(s *timelineStep, ws int64) {
	if tl.Dropped > 0 { // past the bound: the rest is counted, in order
		tl.Dropped++
		return
	}
	msFrom := func(ns int64) float64 { return math.Round(float64(ns-ws)/1e3) / 1e3 }
	n := len(tl.Entries)
	if n == 0 || tl.Entries[n-1].fp != s.fp || tl.Entries[n-1].parsed != s.parsed {
		if n >= timelineMaxEntries {
			tl.Dropped++
			return
		}
		tl.Entries = append(tl.Entries, timelineEntry{fp: s.fp, parsed: s.parsed, StartMS: msFrom(s.start)})
		n++
	}
	e := &tl.Entries[n-1]
	e.Count++
	e.EndMS = max(e.EndMS, msFrom(s.end))
	e.DurationMS = math.Round(e.DurationMS*1e3+float64(s.end-s.start)/1e3) / 1e3
	if s.rows > 0 {
		e.Rows += s.rows
	}
	if s.failed {
		e.Errors++
	}
}

// timelineAnswer is the answer of GET /api/timeline.
type timelineAnswer struct {
	*timeline
	// Kept is how many windows are kept now; Forgotten how many were
	// dropped for the bound; PartialWindows how many lost their start.
	Kept           int    `json:"windows_kept"`
	Forgotten      uint64 `json:"windows_forgotten"`
	PartialWindows uint64 `json:"windows_partial"`
}

// serveTimeline answers GET /api/timeline?connection=ID&window_end=TIME
// (&trace=ID for a traced window): the window a finding names with its
// connection.id, trace_id and window_end.
func (l *timelineLog) serveTimeline(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	conn, err := strconv.ParseUint(q.Get("connection"), 10, 64)
	if err != nil {
		writeText(w, http.StatusBadRequest, "connection: want the finding's connection.id, a whole number (42)\n")
		return
	}
	end, err := time.Parse(time.RFC3339Nano, q.Get("window_end"))
	if err != nil {
		writeText(w, http.StatusBadRequest, "window_end: want the finding's window_end, an RFC 3339 time (2026-01-02T15:04:05.123456789Z)\n")
		return
	}
	key := timelineKey{conn: conn, trace: q.Get("trace"), end: end.UnixNano()}
	l.mu.Lock()
	tl, ok := l.windows.Peek(key)
	out := timelineAnswer{timeline: tl, Kept: l.windows.Len(), Forgotten: l.forgotten, PartialWindows: l.partial}
	l.mu.Unlock()
	if !ok {
		writeText(w, http.StatusNotFound, fmt.Sprintf("no timeline of that window: the last %d windows with findings are kept\n", timelineMaxWindows))
		return
	}
	writeJSON(w, out)
}
