package detector

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/internal/lru"
)

// missing_index: a filter that runs often on a large table that no index
// serves. The wire shows how often a shape runs, not the schema, so the rule
// has two halves that meet in the detector:
//
//   - when a window closes, each judged read shape that is hot (the lookup
//     of an N+1 reported in the window, or MissingIndexRuns runs of the
//     shape within a minute of event time) becomes a pending occurrence of
//     its fingerprint, and the detector asks for an inspection of it
//     (Wants): an InspectionRequest with the normalized query, never a
//     value;
//   - the caller's inspection connection (package inspect) answers later,
//     off the analyzer's goroutine, and the caller hands the answer back on
//     the analyzer's goroutine (Inspected). The answer is facts only: the
//     Seq Scans of the shape's generic plan under a filter, each with the
//     table's estimated size, the filter's columns, the leading column of
//     each of its indexes and its foreign keys. A Seq Scan of a table of at
//     least MissingIndexRows rows whose filter compares a column that leads
//     no index is the finding, reported through the safelist and the
//     cooldown like any other, with the time of the window that made it
//     pending.
//
// leading_wildcard uses the same two halves (patterns.go): with
// Config.Inspect, an occurrence on a read is held back as pending on its
// shape's entry here, asked for like a hot shape, and judged on the same
// answer; a shape may be pending for both rules at once, and one answer
// settles both.
//
// The detector stays a pure function of its inputs: Inspected is one more
// event. Only Config.Inspect turns the rule on; without it nothing is
// counted or asked.

// Defaults of the missing_index rule; doc.go says why.
const (
	DefaultMissingIndexRows = 10_000
	DefaultMissingIndexRuns = 60
	// maxHotShapes bounds the fingerprints the rule follows (runs per
	// minute, pending occurrences); the least recently hot is forgotten.
	maxHotShapes = 1024
	// reaskAfter is how long (event time) an unanswered request waits
	// before a hot occurrence asks again: the inspector may have dropped it
	// (queue full, connection down).
	reaskAfter = 30 * time.Second
)

// InspectionRequest asks for an inspection of one query shape: its generic
// plan and the catalogs of the tables it reads. It holds the normalized
// text only.
type InspectionRequest struct {
	Fingerprint uint64
	// Hex is Fingerprint as 16 hex digits.
	Hex string
	// Query is the normalized text: every literal a $n parameter.
	Query string
	// Tables are the tables the query reads, as written.
	Tables []string
}

// Inspection is what an inspection connection learned about one query shape:
// the Seq Scans of its generic plan that run under a filter, with what the
// catalogs say of their tables. Names and estimates, never a value.
type Inspection struct {
	Fingerprint uint64
	// Err says why the shape could not be inspected; "" when it was.
	Err string
	// Scans are the plan's Seq Scans under a filter, in plan order.
	Scans []ScanFacts
}

// ScanFacts is one Seq Scan of a generic plan under a filter.
type ScanFacts struct {
	// Table is the table scanned, schema-qualified unless in public.
	Table string `json:"table"`
	// Rows is the table's estimated row count (pg_class.reltuples, or the
	// planner's estimate for a table never analyzed).
	Rows int64 `json:"rows"`
	// FilterColumns are the columns the scan's filter compares with a
	// value (=, <, >, <=, >=, IN, = ANY), in the filter's order.
	FilterColumns []string `json:"filter_columns"`
	// LikeColumns are the columns the scan's filter matches with LIKE or
	// ILIKE (~~, ~~*) against a pattern, in the filter's order: what
	// leading_wildcard judges. Apart from FilterColumns, because a B-tree
	// index on the column does not serve a pattern that starts with a
	// wildcard, so missing_index never suggests one for them.
	LikeColumns []string `json:"like_columns,omitempty"`
	// IndexedColumns are the leading key column of each valid index of the
	// table.
	IndexedColumns []string `json:"indexed_columns"`
	// ForeignKeys maps the leading column of each foreign key of the table
	// to the table it references.
	ForeignKeys map[string]string `json:"foreign_keys,omitempty"`
}

// IndexAdvice is, in a missing_index finding, the index that is missing.
type IndexAdvice struct {
	// Table is the table read whole, schema-qualified unless in public.
	Table string `json:"table"`
	// Columns are the filter's columns that no index serves (the first is
	// the one the suggestion indexes).
	Columns []string `json:"columns"`
	// Rows is the table's estimated row count.
	Rows int64 `json:"rows"`
	// ForeignKey is the table the first column references, when it is a
	// foreign key: an unindexed foreign key, the article's first mistake.
	ForeignKey string `json:"foreign_key,omitempty"`
	// Create is the statement that adds the index.
	Create string `json:"create"`
}

// hotShape is what the rule follows of one fingerprint.
type hotShape struct {
	minute  nanos         // start of the current minute of event time
	runs    int           // runs in it
	dur     time.Duration // and their time
	pending *pendingIndex
	wild    *pendingWild // leading_wildcard occurrences waiting (patterns.go)
	asked   nanos        // event time of the last request; noTime: none open
}

// pendingIndex is a hot occurrence waiting for its inspection.
type pendingIndex struct {
	finding Finding // base fields of the latest hot window
	id      uint64
	cool    *cooldowns
	count   int
	dur     time.Duration
	nplus1  bool
}

// missingIndexState is the rule's memory, and leading_wildcard's while it
// waits for answers; nil until Config.Inspect first has something to
// follow.
type missingIndexState struct {
	hot   *lru.Cache[uint64, *hotShape]
	wants []InspectionRequest
	// waiting are the fingerprints with leading_wildcard occurrences
	// pending, in the order they first waited; orphans are the occurrences
	// of shapes forgotten while they waited (at most maxOrphans), reported
	// as "may" by the next Advance.
	waiting []uint64
	orphans []wildOccurrence
}

// hotShapeOf returns what the rule follows of fingerprint id, made (from
// the window start) when new; the rule's memory is made on first use.
func (d *Detector) hotShapeOf(id uint64, start nanos) *hotShape {
	if d.mi == nil {
		mi := &missingIndexState{}
		mi.hot = lru.New[uint64, *hotShape](maxHotShapes, 0, mi.forget)
		d.mi = mi
	}
	h, ok := d.mi.hot.Get(id)
	if !ok {
		h = &hotShape{minute: start, asked: noTime}
		d.mi.hot.Add(id, h, 0)
	}
	return h
}

// forget is called when the least recently hot shape makes room: its
// waiting leading_wildcard occurrences become orphans, so that they are
// still reported (as "may").
func (mi *missingIndexState) forget(id uint64, h *hotShape) {
	if h.wild == nil {
		return
	}
	mi.unwait(id)
	for _, o := range h.wild.occ {
		if len(mi.orphans) < maxOrphans {
			mi.orphans = append(mi.orphans, o)
		}
	}
	h.wild = nil
}

// ask appends a request for the inspection of s to what Wants returns,
// unless one asked for less than reaskAfter before w ended is still open.
func (d *Detector) ask(h *hotShape, w *window, s *shape) {
	if !h.asked.isZero() && w.end.sub(h.asked) < reaskAfter {
		return
	}
	h.asked = w.end
	d.mi.wants = append(d.mi.wants, InspectionRequest{
		Fingerprint: s.stmt.ID, Hex: hexOf(s.stmt), Query: s.stmt.Normalized, Tables: slices.Clone(s.stmt.Facts.TablesRead),
	})
}

// noteMissingIndex follows the judged read shape s of the closing window w
// (nplus1: it was reported as an N+1 in w) and, when it is hot, makes it
// pending and asks for its inspection.
func (d *Detector) noteMissingIndex(g *group, w *window, s *shape, nplus1 bool) {
	if !d.cfg.Inspect || !inspectable(s.stmt) {
		return
	}
	id := s.stmt.ID
	h := d.hotShapeOf(id, w.start)
	if w.start.sub(h.minute) >= time.Minute {
		h.minute, h.runs, h.dur = w.start, 0, 0
	}
	h.runs += s.count
	h.dur += s.dur
	if !nplus1 && h.runs < d.cfg.MissingIndexRuns {
		return
	}
	p := h.pending
	if p == nil {
		// The finding counts the runs that made the shape hot: the
		// minute's, this window's included below.
		p = &pendingIndex{id: id, count: h.runs - s.count, dur: h.dur - s.dur}
		h.pending = p
	}
	p.finding = d.base(g, w, s, KindMissingIndex)
	p.finding.ownTags() // held past the window (see Event)
	p.cool = d.cooldownsOf(g)
	p.count += s.count
	p.dur += s.dur
	p.nplus1 = p.nplus1 || nplus1
	d.ask(h, w, s)
}

// inspectable reports whether st may be inspected: a plain read of tables
// (EXPLAIN of a write is never asked for, nor of a locking read). The text
// is normalized, so a literal cannot look like FOR UPDATE.
func inspectable(st *fingerprint.Statement) bool {
	f := st.Facts
	if f == nil || f.Kind != fingerprint.KindSelect || len(f.TablesRead) == 0 || len(f.TablesWritten) > 0 {
		return false
	}
	q := strings.ToUpper(st.Normalized)
	for _, lock := range []string{" FOR UPDATE", " FOR NO KEY UPDATE", " FOR SHARE", " FOR KEY SHARE"} {
		if strings.Contains(q, lock) {
			return false
		}
	}
	return true
}

// Wants returns the inspections the missing_index and leading_wildcard
// rules ask for since the last call, and forgets them. The caller hands
// each to its inspection connection and each answer to Inspected; one that
// is never answered is asked again by a later occurrence, reaskAfter after
// it was asked.
func (d *Detector) Wants() []InspectionRequest {
	if d.mi == nil || len(d.mi.wants) == 0 {
		return nil
	}
	w := d.mi.wants
	d.mi.wants = nil
	return w
}

// Inspected takes an inspection's answer and returns the findings it
// completes: the pending missing_index occurrence of its fingerprint judged
// against the plan, then its pending leading_wildcard occurrences (see
// patterns.go), each through the safelist and the cooldown.
func (d *Detector) Inspected(ins Inspection) []Finding {
	if d.mi == nil {
		return nil
	}
	h, ok := d.mi.hot.Peek(ins.Fingerprint)
	if !ok {
		return nil
	}
	p, wild := h.pending, h.wild
	h.pending, h.wild, h.asked = nil, nil, noTime
	var out []Finding
	if p != nil && ins.Err == "" {
		out = d.judgeMissingIndex(out, p, ins.Scans)
	}
	if wild != nil {
		d.mi.unwait(ins.Fingerprint)
		out = d.judgeWildcard(out, wild, ins)
	}
	return out
}

// judgeMissingIndex reports the pending occurrence p when the plan's scans
// show a missing index.
func (d *Detector) judgeMissingIndex(out []Finding, p *pendingIndex, scans []ScanFacts) []Finding {
	adv, ok := d.missingIndex(scans)
	if !ok {
		return out
	}
	f := p.finding
	f.Count = p.count
	f.DurationMS = millis(p.dur)
	f.Severity = SeverityWarning
	if p.nplus1 {
		f.Severity = SeverityCritical
	}
	f.Index = &adv
	f.Suggestion = suggestMissingIndex(adv, p.nplus1)
	return d.report(out, p.cool, candidate{finding: f, id: p.id})
}

// missingIndex finds the first Seq Scan of a table of at least
// MissingIndexRows rows whose filter compares a column that leads no index.
func (d *Detector) missingIndex(scans []ScanFacts) (IndexAdvice, bool) {
	for _, sc := range scans {
		if sc.Rows < d.cfg.MissingIndexRows {
			continue
		}
		var cols []string
		for _, c := range sc.FilterColumns {
			if !slices.Contains(sc.IndexedColumns, c) && !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
		}
		if len(cols) == 0 {
			continue
		}
		adv := IndexAdvice{Table: sc.Table, Columns: cols, Rows: sc.Rows, ForeignKey: sc.ForeignKeys[cols[0]]}
		adv.Create = createIndex(sc.Table, cols[0])
		return adv, true
	}
	return IndexAdvice{}, false
}

// createIndex is the CREATE INDEX CONCURRENTLY statement for table (col).
func createIndex(table, col string) string {
	base := table[strings.LastIndexByte(table, '.')+1:]
	name := ident(strings.ToLower(identPart(base + "_" + col + "_idx")))
	return fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON %s (%s)", name, ident(table), ident(col))
}

// identPart keeps the letters, digits and underscores of s: an index name
// made from a table and a column.
func identPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// suggestMissingIndex names the index, in SQL and in the ORMs' declarations,
// and calls an unindexed foreign key out.
func suggestMissingIndex(a IndexAdvice, nplus1 bool) string {
	col := a.Columns[0]
	name := col // as the ORM spells it
	var why string
	if nplus1 {
		why = " once per row of a loop"
	}
	msg := fmt.Sprintf("Its plan reads all of %s (about %d rows) with a Seq Scan%s, filtering on %s, which no index serves.",
		ident(a.Table), a.Rows, why, ident(col))
	if a.ForeignKey != "" {
		msg += fmt.Sprintf(" %s is a foreign key to %s without an index: PostgreSQL indexes the referenced key, never the referencing column.",
			ident(col), ident(a.ForeignKey))
	}
	return msg + fmt.Sprintf(" Add the index: `%s`; in an ORM, declare it (Prisma @@index([%s]), TypeORM @Index() on the column, "+
		"Sequelize indexes: [{ fields: ['%s'] }], Django db_index=True or Meta.indexes, ActiveRecord add_index :%s, :%s, "+
		"GORM `gorm:\"index\"` on the field).", a.Create, name, name, bareName(a.Table), name)
}

// bareName is the table's name without its schema.
func bareName(table string) string {
	return table[strings.LastIndexByte(table, '.')+1:]
}
