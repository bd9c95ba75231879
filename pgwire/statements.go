package pgwire

import (
	"bytes"

	"github.com/nplus1/nplus1/internal/lru"
)

// stmt is a prepared statement the server confirmed. Its text is never
// changed: a new Parse of the same name makes a new stmt, so portals keep
// theirs.
type stmt struct {
	name  string
	sql   string
	trunc bool
	// strs is the standard_conforming_strings its Parse was read with
	// (Tracker.parseStrings), group the group it was parsed in.
	strs  StandardStrings
	group uint32

	// Value evidence: the parameter types the Parse named (nil when none
	// did), and the result columns from the last RowDescription that
	// described the statement or one of its portals (replaced, never
	// changed; nil when unknown or NoData). PostgreSQL never lets a
	// prepared statement's result columns change ("cached plan must not
	// change result type"), so they hold for its later portals.
	types *paramTypes
	desc  *resultDesc
	// descRead is set when desc was read from a RowDescription (or NoData)
	// since the statement's latest Parse. A Parse that the server accepts
	// for a name and text the tracker still holds (its Close went unseen)
	// reuses st, and the schema may have changed since.
	descRead bool
}

// cost is what st counts against the statements' byte budget.
func (st *stmt) cost() int {
	return len(st.sql) + 4*len(st.types.get()) + st.desc.size()
}

type portal struct {
	name     string
	stmtName string
	stmt     *stmt // nil when the statement was unknown at Bind
	hash     uint64
	nparams  int
	bits     paramBits
	params   *boundParams // only with keepParams; shared, read only

	ev bindEvidence // with evidence (ev.on)
}

// size is what p counts against the portals' byte budget: its kept values
// and its evidence.
func (p *portal) size() int {
	n := 0
	if p.params != nil {
		n += p.params.size
	}
	return n + int(p.ev.cost)
}

// nameOf returns the name at the start of p, cut as maxNameBytes says.
func nameOf(p []byte) []byte {
	p = untilNUL(p)
	return p[:min(len(p), maxNameBytes)]
}

// untilNUL returns p up to its first NUL.
func untilNUL(p []byte) []byte {
	if i := bytes.IndexByte(p, 0); i >= 0 {
		return p[:i]
	}
	return p
}

// sqlText returns the collected SQL as a string, reusing the text of cur or
// of the last SQL seen when it is the same, so repeated statements cost no
// allocation.
func (t *Tracker) sqlText(cur *stmt) string {
	b := t.sql.buf
	if cur != nil && cur.sql == string(b) {
		return cur.sql
	}
	if t.lastSQL == string(b) {
		return t.lastSQL
	}
	t.lastSQL = string(b)
	return t.lastSQL
}

// stmtByName returns the statement called name, without marking it used.
func (t *Tracker) stmtByName(name []byte) *stmt {
	if len(name) == 0 {
		return t.unnamedStmt
	}
	if t.stmts == nil {
		return nil
	}
	st, _ := lru.PeekString(t.stmts, name)
	return st
}

// lookupStmt returns the statement called name, without marking it used.
func (t *Tracker) lookupStmt(name string) *stmt {
	if name == "" {
		return t.unnamedStmt
	}
	if t.stmts == nil {
		return nil
	}
	st, _ := t.stmts.Peek(name)
	return st
}

// stmtName returns name as a string, sharing the remembered statement's.
func (t *Tracker) stmtName(name []byte, cur *stmt) string {
	if len(name) == 0 {
		return ""
	}
	if cur != nil {
		return cur.name
	}
	return string(name)
}

func (t *Tracker) portalName(name []byte) string {
	if len(name) == 0 {
		return ""
	}
	if p, ok := t.portals[string(name)]; ok {
		return p.name
	}
	return string(name)
}

// putStmt remembers st, confirmed by the server. When the named statements
// are full (MaxStatements, or their text's byte budget) the least recently
// used ones are evicted: deterministic, so that a replay of the same traffic
// gives the same executions.
func (t *Tracker) putStmt(st *stmt) {
	if st.name == "" {
		t.unnamedStmt = st
		return
	}
	if t.stmts == nil {
		t.stmts = lru.New[string, *stmt](t.maxStatements, t.sqlBudget, nil)
	}
	t.stats.Evictions += uint64(t.stmts.Add(st.name, st, st.cost()))
}

// useStmt returns the statement called name and marks it as just used.
func (t *Tracker) useStmt(name string) *stmt {
	if name == "" {
		return t.unnamedStmt
	}
	if t.stmts == nil {
		return nil
	}
	st, _ := t.stmts.Get(name)
	return st
}

func (t *Tracker) dropStmt(name string) {
	if name == "" {
		t.unnamedStmt = nil
		return
	}
	if t.stmts != nil {
		t.stmts.Remove(name)
	}
}

func (t *Tracker) clearStmts() {
	if t.stmts != nil {
		t.stmts.Clear()
	}
}

func (t *Tracker) putPortal(p portal) {
	if p.params != nil || p.ev.on {
		t.accountPortal(&p)
	}
	if p.name == "" {
		t.unnamedPortal, t.hasUnnamed = p, true
		return
	}
	if t.portals == nil {
		t.portals = make(map[string]portal)
	}
	if _, ok := t.portals[p.name]; !ok && len(t.portals) >= t.maxStatements {
		// Full: the new portal is not remembered (its Executes emit with
		// SQL ""). Portals end with their transaction, so this is short.
		t.stats.Evictions++
		t.portalParams -= p.size()
		return
	}
	t.portals[p.name] = p
}

// accountPortal counts what p holds (kept values, evidence) against the
// portals' byte budget, in place of the portal of the same name, and drops
// it from p when it does not fit.
func (t *Tracker) accountPortal(p *portal) {
	if p.ev.on {
		p.ev.recost(p.stmt == nil)
	}
	var tmp portal
	if old := t.lookupPortal(p.name, &tmp); old != nil {
		t.portalParams -= old.size()
	}
	if t.portalParams+p.size() > t.sqlBudget {
		// Over the byte budget: keep what the portal needs to be
		// followed, not its values, keys or description.
		if p.params != nil {
			p.params = &boundParams{formats: p.params.formats, truncated: true}
		}
		if p.ev.on {
			p.ev.keys, p.ev.desc = nil, nil
			p.ev.recost(p.stmt == nil)
		}
	}
	t.portalParams += p.size()
}

// lookupPortal returns the portal called name, nil when there is none: the
// unnamed one in place, a named one copied into tmp (changes to the copy
// are kept by storePortal).
func (t *Tracker) lookupPortal(name string, tmp *portal) *portal {
	if name == "" {
		if !t.hasUnnamed {
			return nil
		}
		return &t.unnamedPortal
	}
	p, ok := t.portals[name]
	if !ok {
		return nil
	}
	*tmp = p
	return tmp
}

// storePortal keeps the changes made to p, which lookupPortal returned
// given tmp: a named portal's copy goes back in its place.
func (t *Tracker) storePortal(p, tmp *portal) {
	if p == tmp {
		t.portals[p.name] = *p
	}
}

func (t *Tracker) dropPortal(name string) {
	if name == "" && !t.hasUnnamed { // every simple Query: nothing to drop
		return
	}
	t.removePortal(name)
}

func (t *Tracker) removePortal(name string) {
	var tmp portal
	if p := t.lookupPortal(name, &tmp); p != nil {
		t.portalParams -= p.size()
	}
	if name == "" {
		t.unnamedPortal, t.hasUnnamed = portal{}, false
		return
	}
	delete(t.portals, name)
}

func (t *Tracker) clearPortals() {
	t.portalParams = 0
	t.unnamedPortal, t.hasUnnamed = portal{}, false
	if len(t.portals) > 0 {
		clear(t.portals)
	}
}
