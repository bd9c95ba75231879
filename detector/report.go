package detector

// The report side: a closed window's findings pass the safelist, then the
// cooldown (select_star: its once-per-fingerprint memory) before they are
// returned.

type cooldownKey struct {
	kind        Kind
	fingerprint uint64
	source      uint64 // 0 when none
}

// cooldowns is one cooldown table: a trace group's, or a pool scope's.
type cooldowns map[cooldownKey]*cooldownEntry

// maxCooldownConns bounds the connections an entry tells apart; past it,
// Finding.Connections is a lower bound.
const maxCooldownConns = 64

type cooldownEntry struct {
	reported   nanos               // finding time of the last report
	lastSeen   nanos               // finding time of the last occurrence
	suppressed int                 // occurrences since the last report
	conns      map[uint64]struct{} // connections that showed it since the last report
}

func (e *cooldownEntry) sawConn(id uint64) {
	if len(e.conns) < maxCooldownConns {
		e.conns[id] = struct{}{}
	}
}

// ResetReported forgets what was already reported (cooldowns and
// select_star's once-per-fingerprint memory), so the next occurrence of
// anything is reported again: for "clear the findings" between the tests of
// a suite. Open windows are kept.
func (d *Detector) ResetReported() {
	for _, g := range d.groups.All {
		g.cooldown = nil
	}
	for _, sc := range d.scopes.All {
		sc.cooldown = nil
	}
	d.star.Clear()
}

// ResetReportedWhere is ResetReported for one application (an
// application_name) or one trace (a sqlcommenter trace id), "" matching
// any: so that a test suite whose workers each run as an application of
// their own can clear one test's state without touching the others'. It
// forgets the cooldowns of the pool scopes of that application (when no
// trace is named) and of the trace groups that ran for it (trace groups are
// matched on their open windows and connection, so a trace group with
// nothing open and no known application keeps its cooldown). select_star's
// memory is one per fingerprint, shared by every application: only the
// unscoped ResetReported forgets it. Both empty is ResetReported.
func (d *Detector) ResetReportedWhere(application, trace string) {
	if application == "" && trace == "" {
		d.ResetReported()
		return
	}
	for _, g := range d.groups.All {
		if g.traceID != "" && g.ranFor(application, trace) {
			g.cooldown = nil
		}
	}
	if trace != "" {
		return // pool scopes hold the connections' findings, which have no trace
	}
	for k, sc := range d.scopes.All {
		if k.application == application {
			sc.cooldown = nil
		}
	}
}

// FlushWhere closes the open windows of the groups that ran for application
// and trace ("" matching any; see ranFor), least recently active first, and
// returns their findings and how many windows it closed; windows of other
// applications and traces stay open, so that a flush for one test does not
// cut another's loop in two. Both empty closes every window, as Flush.
// Cooldown state is kept.
func (d *Detector) FlushWhere(application, trace string) ([]Finding, int) {
	var out []Finding
	closed := 0
	for _, g := range d.groups.Backward {
		if !g.ranFor(application, trace) {
			continue
		}
		if g.win != nil {
			out = d.close(out, g, CloseFlush)
			closed++
		}
		out = d.dropPrev(out, g)
	}
	return d.settleHops(out), closed
}

// ranFor reports whether g belongs to trace (its trace id) and application:
// the connection it last judged a statement of, or any statement of its
// open window or of the window kept for reopening, ran with that
// application_name. "" matches any.
func (g *group) ranFor(application, trace string) bool {
	if trace != "" && g.traceID != trace {
		return false
	}
	if application == "" {
		return true
	}
	if c := g.scopeConn; c != nil && c.ApplicationName == application {
		return true
	}
	for _, w := range [...]*window{g.win, g.prev} {
		if w == nil {
			continue
		}
		for _, s := range w.shapes {
			if s.conn != nil && s.conn.ApplicationName == application {
				return true
			}
		}
	}
	return false
}

// close ends g's window, applies the rules, the safelist and the cooldown,
// and appends what is to be reported to out.
func (d *Detector) close(out []Finding, g *group, reason string) []Finding {
	w := g.win
	g.win = nil
	d.stats.WindowsOpen--
	d.stats.WindowsClosed[reason]++
	if d.keepsForReopen(w, reason) {
		g.prev = w // its evidence stays counted in evBytes until dropped
	} else {
		d.evBytes -= w.evBytes
	}

	cool := d.cooldownsOf(g)
	w.held = w.held[:0] // judged again, with what came since
	for _, c := range d.evaluate(g, w) {
		// A reopened window (see stall.go) does not report twice what it
		// found before.
		k := cooldownKey{c.finding.Kind, c.id, c.source}
		if _, again := w.found[k]; again {
			continue
		}
		if g.prev == w {
			// Kept for reopening: an N+1 seen on repetition alone may be
			// proven by what comes after the stall (the outer loop of a
			// nested loop reaching the threshold); it waits.
			if ev := c.finding.Evidence; c.finding.Kind == KindNPlusOne && ev != nil && ev.Kind == EvidenceRepetition {
				w.held = append(w.held, c)
				continue
			}
			if w.found == nil {
				w.found = make(map[cooldownKey]struct{})
			}
			w.found[k] = struct{}{}
		}
		out = d.report(out, cool, c)
	}
	if *cool != nil {
		d.prune(*cool, w.end)
	}
	return d.settleHops(out)
}

// report passes c through the safelist and the cooldown table cool (for
// select_star, its once-per-fingerprint memory) and appends it to out when
// it is to be reported.
func (d *Detector) report(out []Finding, cool *cooldowns, c candidate) []Finding {
	f := c.finding
	d.stats.Found[f.Kind]++
	if d.ignored(&f) {
		d.stats.Ignored[f.Kind]++
		return out
	}
	var report bool
	if f.Kind == KindSelectStar {
		report = d.starReport(&f, c.id)
	} else {
		report = d.cooldownReport(cool, &f, cooldownKey{f.Kind, c.id, c.source})
	}
	if !report {
		d.stats.Suppressed[f.Kind]++
		return out
	}
	d.stats.Reported[f.Kind]++
	f.ownTags()
	if c.loop != nil {
		f.Suggestion = suggestNPlusOne(c.loop, c.loopSrc, f.Count)
	}
	return append(out, f)
}

// cooldownsOf returns the cooldown table g's findings go through: a trace's
// own (each request is its own story), else the pool scope's of the
// connection that ran the window, so that one loop served by a pool of ten
// connections is reported once per cooldown, with the connections counted.
func (d *Detector) cooldownsOf(g *group) *cooldowns {
	if g.traceID != "" || g.scopeConn == nil {
		return &g.cooldown
	}
	return &d.scopeFor(g, g.scopeConn).cooldown
}

func (d *Detector) ignored(f *Finding) bool {
	for _, ig := range d.cfg.Ignore {
		if ig.Match(f) {
			return true
		}
	}
	return false
}

// cooldownReport decides whether f is reported now, and sets its
// occurrences and connections.
func (d *Detector) cooldownReport(cool *cooldowns, f *Finding, k cooldownKey) bool {
	if d.cfg.ReportCooldown < 0 {
		f.Occurrences, f.Connections = 1, 1
		return true
	}
	t := nanosOf(f.Time)
	e := (*cool)[k]
	if e != nil && t.sub(e.reported) < d.cfg.ReportCooldown {
		e.suppressed++
		e.sawConn(f.Connection.ID)
		if t > e.lastSeen {
			e.lastSeen = t
		}
		return false
	}
	f.Occurrences, f.Connections = 1, 1
	if e != nil {
		f.Occurrences += e.suppressed
		e.sawConn(f.Connection.ID)
		f.Connections = max(1, len(e.conns))
	}
	if *cool == nil {
		*cool = make(cooldowns)
	}
	ne := &cooldownEntry{reported: t, lastSeen: t, conns: make(map[uint64]struct{}, 1)}
	ne.sawConn(f.Connection.ID)
	(*cool)[k] = ne
	return true
}

// prune forgets cooldown entries not seen for a whole cooldown by now.
func (d *Detector) prune(cool cooldowns, now nanos) {
	for k, e := range cool {
		if now.sub(e.lastSeen) >= d.cfg.ReportCooldown {
			delete(cool, k)
		}
	}
}

// remembers reports whether g still has cooldown state worth keeping at now,
// pruning what expired.
func (d *Detector) remembers(out []Finding, g *group, now nanos) ([]Finding, bool) {
	if p := g.prev; p != nil {
		switch {
		case now.sub(p.start) >= d.cfg.MaxWindow:
			out = d.dropPrev(out, g)
		case len(p.held) > 0 && now.sub(p.end) >= 2*d.cfg.StallGap:
			out = d.releaseHeld(out, g)
		}
	}
	d.prune(g.cooldown, now)
	return out, len(g.cooldown) > 0 || g.prev != nil
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
	s, ok := d.star.Peek(id)
	if !ok {
		s = &starSeen{}
		d.stats.SelectStarForgotten += uint64(d.star.Add(id, s, 0))
	}
	s.windows++
	if f.Severity.rank() <= s.severity.rank() {
		return false
	}
	s.severity = f.Severity
	f.Occurrences = s.windows
	return true
}
