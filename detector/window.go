package detector

import (
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// group is the state kept per group key (trace id or connection).
type group struct {
	key     string
	traceID string

	older, newer *group // LRU list by last Observe; owned by Detector

	lastSeen time.Time // latest statement end observed
	win      *window   // nil between windows

	// cooldown holds, per (kind, fingerprint, source), when it was last
	// reported; entries unseen for a whole cooldown are pruned.
	cooldown map[cooldownKey]*cooldownEntry
}

type cooldownKey struct {
	kind        Kind
	fingerprint uint64
	source      uint64 // 0 when none
}

type cooldownEntry struct {
	reported   time.Time // finding time of the last report
	lastSeen   time.Time // finding time of the last occurrence
	suppressed int       // occurrences since the last report
}

// window is the statements of one group between two boundaries.
type window struct {
	start  time.Time // start of the first statement
	end    time.Time // latest end of a statement
	events int       // every execution added, judged or not

	// seq is every successful, fingerprinted execution in order: the
	// material for finding an N+1's source.
	seq    []step
	shapes []*shape         // in order of first execution
	byID   map[uint64]int32 // fingerprint ID → index in shapes
}

type step struct {
	shape int32
	rows  int64 // this execution's rows, ≥ 0
}

// shape aggregates the executions of one fingerprint in one window.
type shape struct {
	stmt  *fingerprint.Statement // of the first execution
	conn  *pgwire.ConnInfo       // of the first execution
	tags  map[string]string      // of the first execution
	first int                    // index in window.seq of the first execution

	count     int
	dur       time.Duration
	rowsTotal int64

	// The rest is kept only for shapes the rules judge.
	judged     bool
	params     map[uint64]paramStat // parameter-set hash → its executions
	paramsFull bool
	maxRows    int64
	bigCount   int           // executions returning ≥ UnpaginatedRows
	bigDur     time.Duration // their duration
	offsetSeen bool          // an execution had a constant OFFSET > 0
	pageRows   int64         // rows of the first execution
	pageSteady bool          // every execution but the latest returned pageRows
	lastRows   int64         // rows of the latest execution
}

type paramStat struct {
	count int
	dur   time.Duration
}

func newWindow(start time.Time) *window {
	return &window{start: start, end: start, byID: make(map[uint64]int32)}
}

// add records one execution in w.
func (d *Detector) add(w *window, ev Event, start, end time.Time) {
	w.events++
	if end.After(w.end) {
		w.end = end
	}
	x, st := ev.Exec, ev.Stmt
	if st == nil || st.Err != nil {
		d.stats.Unfingerprinted++
		return
	}
	if x.SQLState != "" {
		d.stats.Failed++
		return
	}
	idx, ok := w.byID[st.ID]
	if !ok {
		idx = int32(len(w.shapes))
		w.byID[st.ID] = idx
		s := &shape{stmt: st, conn: x.Conn, tags: ev.Tags, first: len(w.seq)}
		s.judged = d.judges(st)
		if s.judged {
			s.params = make(map[uint64]paramStat)
		}
		w.shapes = append(w.shapes, s)
	}
	s := w.shapes[idx]
	rows := max(x.Rows, 0)
	dur := max(end.Sub(start), 0)
	w.seq = append(w.seq, step{shape: idx, rows: rows})

	if s.judged {
		key := paramsKey(x, st)
		if p, ok := s.params[key]; ok || len(s.params) < d.cfg.MaxParamsPerShape {
			s.params[key] = paramStat{count: p.count + 1, dur: p.dur + dur}
		} else {
			s.paramsFull = true
			d.stats.ParamsDropped++
		}
		s.maxRows = max(s.maxRows, rows)
		if rows >= d.cfg.UnpaginatedRows {
			s.bigCount++
			s.bigDur += dur
		}
		if f := st.Facts; f.HasOffset && f.Offset > 0 {
			s.offsetSeen = true
		}
		if s.count == 0 {
			s.pageRows, s.pageSteady = rows, true
		} else if s.lastRows != s.pageRows {
			s.pageSteady = false
		}
		s.lastRows = rows
	}
	s.count++
	s.dur += dur
	s.rowsTotal += rows
}

// judges reports whether the rules look at statements of this shape: parsed
// SELECTs that read a table (so not SELECT 1, SELECT now(), nextval()), and,
// unless JudgeCatalogs, not only system catalogs.
func (d *Detector) judges(st *fingerprint.Statement) bool {
	f := st.Facts
	if f == nil || f.Kind != "select" || len(f.TablesRead) == 0 {
		return false
	}
	if d.cfg.JudgeCatalogs {
		return true
	}
	for _, t := range f.TablesRead {
		if !isCatalog(t) {
			return true
		}
	}
	return false
}

// isCatalog reports whether a table name is a system catalog or view.
func isCatalog(name string) bool {
	n := normTable(name)
	if strings.HasPrefix(n, "pg_catalog.") || strings.HasPrefix(n, "information_schema.") {
		return true
	}
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	return strings.HasPrefix(n, "pg_")
}

// paramsKey identifies the execution's parameter set: the bound values
// (extended protocol) and the literals in the text (simple protocol, or
// literals inlined by the client), hashed together.
func paramsKey(x *pgwire.Execution, st *fingerprint.Statement) uint64 {
	const prime = 1099511628211 // FNV-64 prime
	h := x.ParamsHash
	h ^= st.LiteralsHash + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
	return h * prime
}

// close ends g's window, applies the rules, the safelist and the cooldown,
// and appends what is to be reported to out.
func (d *Detector) close(out []Finding, g *group, reason string) []Finding {
	w := g.win
	g.win = nil
	d.stats.WindowsOpen--
	d.stats.WindowsClosed[reason]++

	for _, c := range d.evaluate(g, w) {
		f := c.finding
		d.stats.Found[f.Kind]++
		if d.ignored(&f) {
			d.stats.Ignored[f.Kind]++
			continue
		}
		var report bool
		if f.Kind == KindSelectStar {
			report = d.starReport(&f, c.id)
		} else {
			report = d.cooldownReport(g, &f, cooldownKey{f.Kind, c.id, c.source})
		}
		if !report {
			d.stats.Suppressed[f.Kind]++
			continue
		}
		d.stats.Reported[f.Kind]++
		out = append(out, f)
	}
	d.prune(g, w.end)
	return out
}

func (d *Detector) ignored(f *Finding) bool {
	for _, ig := range d.cfg.Ignore {
		if ig.Match(f) {
			return true
		}
	}
	return false
}

// cooldownReport decides whether f is reported now, and sets its occurrences.
func (d *Detector) cooldownReport(g *group, f *Finding, k cooldownKey) bool {
	if d.cfg.ReportCooldown < 0 {
		f.Occurrences = 1
		return true
	}
	t := f.Time
	e := g.cooldown[k]
	if e != nil && t.Sub(e.reported) < d.cfg.ReportCooldown {
		e.suppressed++
		if t.After(e.lastSeen) {
			e.lastSeen = t
		}
		return false
	}
	f.Occurrences = 1
	if e != nil {
		f.Occurrences += e.suppressed
	}
	if g.cooldown == nil {
		g.cooldown = make(map[cooldownKey]*cooldownEntry)
	}
	g.cooldown[k] = &cooldownEntry{reported: t, lastSeen: t}
	return true
}

// prune forgets cooldown entries not seen for a whole cooldown by now.
func (d *Detector) prune(g *group, now time.Time) {
	for k, e := range g.cooldown {
		if now.Sub(e.lastSeen) >= d.cfg.ReportCooldown {
			delete(g.cooldown, k)
		}
	}
}

// remembers reports whether g still has cooldown state worth keeping at now,
// pruning what expired.
func (d *Detector) remembers(g *group, now time.Time) bool {
	d.prune(g, now)
	return len(g.cooldown) > 0
}

// starSeen is select_star's memory of one fingerprint.
type starSeen struct {
	severity Severity // the loudest severity reported
	windows  int      // windows that showed it
}

// starReport applies select_star's once-per-fingerprint rule: report the
// first time, and again only when the severity rises (the shape later shows
// up in an N+1 or unpaginated).
func (d *Detector) starReport(f *Finding, id uint64) bool {
	s := d.star[id]
	if s == nil {
		if len(d.starOrder) >= d.cfg.MaxSelectStar {
			old := d.starOrder[0]
			d.starOrder = d.starOrder[1:]
			delete(d.star, old)
			d.stats.SelectStarForgotten++
		}
		s = &starSeen{}
		d.star[id] = s
		d.starOrder = append(d.starOrder, id)
	}
	s.windows++
	if f.Severity.rank() <= s.severity.rank() {
		return false
	}
	s.severity = f.Severity
	f.Occurrences = s.windows
	return true
}
