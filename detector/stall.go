package detector

import (
	"github.com/nplus1/nplus1/internal/valuekey"
)

// Stalls: a loop paused for longer than the idle gap, because the client,
// the proxy or the whole machine was not scheduled for a while, looks at
// the wire like two requests; judged apart, each half may fall under the
// threshold, or lose its source. The data flow tells the two apart: a loop
// that goes on looks up one more key of the result it walks. So a window
// whose last statement belongs to a running loop (a judged shape run twice
// or more, with keys, after a statement that returned values) is held open
// past the idle gap, up to StallGap, and the next statement continues it
// when it repeats the loop's shape with a key read from a result earlier in
// the window that the loop has not used yet. Anything else closes the
// window as the idle gap says.
//
// The limit: a new request on the same connection within StallGap (or,
// by reopening below, within MaxWindow of the window's start) whose
// first statement looks up one more key of the previous request's list, by
// the same query the previous request looped with, is taken into that
// window too.

// mayGoOn reports whether w, idle since w.end, is held open at now: a loop
// was running when its statements stopped, and StallGap has not passed.
func (d *Detector) mayGoOn(w *window, now nanos) bool {
	if d.cfg.StallGap <= d.cfg.IdleGap || now.sub(w.end) >= d.cfg.StallGap || len(w.seq) == 0 {
		return false
	}
	s := w.shapes[w.seq[len(w.seq)-1].shape]
	return looping(w, s)
}

// looping reports whether s is a loop that may go on: judged, run twice or
// more with keys, after another statement of the window that returned
// values (its candidate source).
func looping(w *window, s *shape) bool {
	if !s.judged || s.count < 2 || s.keys == nil {
		return false
	}
	for _, src := range w.shapes {
		if src != s && src.first < s.first && src.results.len() > 0 {
			return true
		}
	}
	return false
}

// loopGoesOn reports whether ev, starting at start after a pause longer than
// the idle gap, continues a loop of w (see the comment above), and counts it.
func (d *Detector) loopGoesOn(w *window, ev Event, start nanos) bool {
	if d.cfg.StallGap <= d.cfg.IdleGap || start.sub(w.end) >= d.cfg.StallGap || !continuesLoop(w, ev) {
		return false
	}
	d.stats.StallsBridged++
	return true
}

// Longer stalls: a window that closed at its idle gap (or StallGap) while a
// loop ran is kept (group.prev) until MaxWindow after its start. If the
// group's next statement continues the loop (as above), the window is
// opened again and the loop goes on in it; its findings are judged again
// when it closes, and those it already reported are not reported twice
// (window.reported). Anything else forgets it. So a loop cut by a stall of
// any length below MaxWindow is judged whole, and its finding, reported at
// the first close if the first part was enough, is not delayed.

// keepsForReopen reports whether w, closing at its idle gap, is kept in
// case its loop goes on after a longer stall.
func (d *Detector) keepsForReopen(w *window, reason string) bool {
	return reason == CloseIdleGap && d.cfg.StallGap > d.cfg.IdleGap && len(w.seq) > 0 &&
		looping(w, w.shapes[w.seq[len(w.seq)-1].shape])
}

// reopens reports whether ev, the first statement of g since its window
// closed, continues the loop of the kept window g.prev, and then counts it
// and makes the window search the recent results again when it closes.
func (d *Detector) reopens(g *group, ev Event, start nanos) bool {
	w := g.prev
	if start.sub(w.start) >= d.cfg.MaxWindow || !continuesLoop(w, ev) {
		return false
	}
	d.stats.StallsReopened++
	w.forgetRingSearches()
	return true
}

// forgetRingSearches drops what w's shapes found when they searched the
// recent results of the pool scope when w closed (shape.ring): the window
// is judged again when it closes, with the keys that came since, and
// a loop that proved nothing from another connection's list with its first
// keys may be proven by all of them.
func (w *window) forgetRingSearches() {
	for _, s := range w.shapes {
		s.ring = nil
	}
}

// dropPrev forgets g's kept window, reporting what it held back.
func (d *Detector) dropPrev(out []Finding, g *group) []Finding {
	w := g.prev
	if w == nil {
		return out
	}
	out = d.releaseHeld(out, g)
	d.evBytes -= w.evBytes
	g.prev = nil
	return out
}

// releaseHeld reports the N+1s on repetition alone that g's kept window
// held back: its loop has not gone on for twice StallGap, so the finding
// is not delayed further (the window stays kept for a reopening, which
// does not report them again).
func (d *Detector) releaseHeld(out []Finding, g *group) []Finding {
	w := g.prev
	if w == nil || len(w.held) == 0 {
		return out
	}
	if w.found == nil {
		w.found = make(map[cooldownKey]struct{})
	}
	for _, c := range w.held {
		w.found[cooldownKey{c.finding.Kind, c.id, c.source}] = struct{}{}
		out = d.report(out, d.cooldownsOf(g), c)
	}
	w.held = nil
	return out
}

// continuesLoop reports whether ev goes on with a loop of w: it repeats the
// shape of a loop of w with a key it has not used yet that a result earlier
// in w holds, or an inner loop resumes: the last statement of w was an
// iteration of an outer loop (its shape ran twice or more) and ev repeats a
// shape of w with a key of that statement's result, used before or not.
func continuesLoop(w *window, ev Event) bool {
	x, st := ev.Exec, ev.Stmt
	if st == nil || st.Err != nil || x.SQLState != "" || len(w.seq) == 0 {
		return false
	}
	idx, ok := w.byID[st.ID]
	if !ok {
		return false
	}
	s := w.shapes[idx]
	if !s.judged || s.keys == nil {
		return false
	}
	loop := looping(w, s)
	last := w.shapes[w.seq[len(w.seq)-1].shape]
	inner := last != s && last.count >= 2 && last.results.len() > 0
	if !loop && !inner {
		return false
	}
	for _, k := range keysOf(x, st) {
		if k == valuekey.None {
			continue
		}
		// The inner loop may look up a key again (the same product in two
		// orders): the outer loop's latest result holding it is enough.
		if inner && last.results.has(last.results.len()-1, k) {
			return true
		}
		if !loop || s.keys.has(k) {
			continue
		}
		for _, src := range w.shapes {
			if src == s || src.first >= s.last {
				continue
			}
			if src.results.hasAny(k) {
				return true
			}
		}
	}
	return false
}

// has reports whether any position of the loop's keys holds k.
func (l *loopKeys) has(k valuekey.Key) bool {
	for i := range l.pos {
		if l.pos[i].get(k) != nil {
			return true
		}
	}
	return false
}
