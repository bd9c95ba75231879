package detector

import (
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/fingerprint"
	"github.com/nplus1/nplus1/pgwire"
)

// t0 is the start of every test timeline.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// names maps a fingerprint hex to the short name a test gave its statement,
// for readable summaries.
var names = map[string]string{}

// stmt builds a Statement by hand, the way the fingerprint package would.
func stmt(name, normalized string, facts fingerprint.Facts) *fingerprint.Statement {
	h := fnv.New64a()
	h.Write([]byte(normalized))
	id := h.Sum64()
	hex := fmt.Sprintf("%016x", id)
	if old, ok := names[hex]; ok && old != name {
		panic("two statements named " + old + " and " + name + " share a fingerprint")
	}
	names[hex] = name
	if facts.Kind == "" {
		facts.Kind = "select"
	}
	return &fingerprint.Statement{ID: id, Hex: hex, Normalized: normalized, Facts: &facts}
}

// withLiterals is the Statement of the same shape written with other
// literals (simple protocol): same fingerprint, another LiteralsHash.
func withLiterals(st *fingerprint.Statement, literals uint64) *fingerprint.Statement {
	c := *st
	c.LiteralsHash = literals
	return &c
}

// withOffset is withLiterals for a page with a constant OFFSET.
func withOffset(st *fingerprint.Statement, offset int64) *fingerprint.Statement {
	c := withLiterals(st, uint64(offset)+1)
	f := *c.Facts
	f.Offset = offset
	c.Facts = &f
	return c
}

// The test schema: the shop of the seed article.
var (
	qOrders = stmt("orders", "SELECT id, user_id FROM orders WHERE status = $1",
		fingerprint.Facts{TablesRead: []string{"orders"}, EqualityColumns: []string{"status"}})
	qUser = stmt("user", "SELECT id, name FROM users WHERE id = $1",
		fingerprint.Facts{TablesRead: []string{"users"}, EqualityColumns: []string{"id"}})
	qAddress = stmt("address", "SELECT street FROM addresses WHERE user_id = $1",
		fingerprint.Facts{TablesRead: []string{"addresses"}, EqualityColumns: []string{"user_id"}})
	qItems = stmt("items", "SELECT id, product_id FROM order_items WHERE order_id = $1",
		fingerprint.Facts{TablesRead: []string{"order_items"}, EqualityColumns: []string{"order_id"}})
	qProduct = stmt("product", "SELECT id, name, price FROM products WHERE id = $1",
		fingerprint.Facts{TablesRead: []string{"products"}, EqualityColumns: []string{"id"}})
	qSession = stmt("session", "SELECT user_id FROM sessions WHERE token = $1",
		fingerprint.Facts{TablesRead: []string{"sessions"}, EqualityColumns: []string{"token"}})
	qUsersAny = stmt("users_any", "SELECT id, name FROM users WHERE id = ANY($1)",
		fingerprint.Facts{TablesRead: []string{"users"}, EqualityColumns: []string{"id"}})
	qUsersIn = stmt("users_in", "SELECT id, name FROM users WHERE id IN ($1, $2, $3)",
		fingerprint.Facts{TablesRead: []string{"users"}, EqualityColumns: []string{"id"}})
	qJoin = stmt("join", "SELECT o.id, u.name FROM orders o JOIN users u ON u.id = o.user_id WHERE o.status = $1",
		fingerprint.Facts{TablesRead: []string{"orders", "users"}, EqualityColumns: []string{"status"}})
	qCount = stmt("count", "SELECT count(*) FROM orders",
		fingerprint.Facts{TablesRead: []string{"orders"}, AggregateOnly: true, NoWhere: true})
	qCountPer = stmt("count_per_user", "SELECT count(*) FROM orders WHERE user_id = $1",
		fingerprint.Facts{TablesRead: []string{"orders"}, AggregateOnly: true, EqualityColumns: []string{"user_id"}})
	qOne = stmt("one", "SELECT $1",
		fingerprint.Facts{})
	qPage = stmt("page", "SELECT id, total FROM orders ORDER BY id LIMIT $1 OFFSET $2",
		fingerprint.Facts{TablesRead: []string{"orders"}, HasLimit: true, HasOffset: true, NoWhere: true})
	qUserPage = stmt("user_page", "SELECT id, total FROM orders WHERE user_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
		fingerprint.Facts{TablesRead: []string{"orders"}, EqualityColumns: []string{"user_id"}, HasLimit: true, HasOffset: true})
	qKeyset = stmt("keyset", "SELECT id, total FROM orders WHERE id > $1 ORDER BY id LIMIT $2",
		fingerprint.Facts{TablesRead: []string{"orders"}, HasLimit: true})
	qPrisma = stmt("prisma_user", `SELECT "public"."User"."id", "public"."User"."name" FROM "public"."User" WHERE ("public"."User"."id" = $1 AND 1 = 1) LIMIT $2 OFFSET $3`,
		fingerprint.Facts{TablesRead: []string{"public.User"}, EqualityColumns: []string{"id"}, HasLimit: true, HasOffset: true})
	qAllOrders = stmt("all_orders", "SELECT id, total FROM orders",
		fingerprint.Facts{TablesRead: []string{"orders"}, NoWhere: true})
	qStarOrders = stmt("star_orders", "SELECT * FROM orders",
		fingerprint.Facts{TablesRead: []string{"orders"}, SelectStar: true, NoWhere: true})
	qStarUser = stmt("star_user", "SELECT * FROM users WHERE id = $1",
		fingerprint.Facts{TablesRead: []string{"users"}, SelectStar: true, EqualityColumns: []string{"id"}})
	qLimited = stmt("limited", "SELECT id FROM orders LIMIT $1",
		fingerprint.Facts{TablesRead: []string{"orders"}, HasLimit: true, NoWhere: true})
	qPgType = stmt("pg_type", "SELECT typname FROM pg_catalog.pg_type WHERE oid = $1",
		fingerprint.Facts{TablesRead: []string{"pg_catalog.pg_type"}, EqualityColumns: []string{"oid"}})
	qInsert = stmt("insert", "INSERT INTO audit (user_id) VALUES ($1)",
		fingerprint.Facts{Kind: "insert", TablesWritten: []string{"audit"}})
	qUpdate = stmt("update", "UPDATE users SET seen = now() WHERE id = $1",
		fingerprint.Facts{Kind: "update", TablesWritten: []string{"users"}, EqualityColumns: []string{"id"}})
	qInsertRet = stmt("insert_returning", "INSERT INTO orders (user_id) SELECT id FROM users RETURNING id",
		fingerprint.Facts{Kind: "insert", TablesRead: []string{"users"}, TablesWritten: []string{"orders"}})
	qBegin  = stmt("begin", "BEGIN", fingerprint.Facts{Kind: "utility"})
	qCommit = stmt("commit", "COMMIT", fingerprint.Facts{Kind: "utility"})
)

// timeline builds the events of a test, one connection at a time, with a
// clock that only moves forward.
type timeline struct {
	now    time.Time
	conns  map[uint64]*pgwire.ConnInfo
	conn   *pgwire.ConnInfo // the current connection
	trace  string           // the current trace id, "" for none
	tags   map[string]string
	events []Event
}

func newTimeline() *timeline {
	tl := &timeline{now: t0, conns: map[uint64]*pgwire.ConnInfo{}}
	tl.on(1)
	return tl
}

// on switches to connection id.
func (tl *timeline) on(id uint64) *timeline {
	c := tl.conns[id]
	if c == nil {
		c = &pgwire.ConnInfo{ID: id, ClientAddr: fmt.Sprintf("10.0.0.%d:5%04d", id, id), User: "shop", Database: "shop", ApplicationName: "shop-api"}
		tl.conns[id] = c
	}
	tl.conn = c
	return tl
}

// wait moves the clock.
func (tl *timeline) wait(d time.Duration) *timeline {
	tl.now = tl.now.Add(d)
	return tl
}

// q runs st with extended-protocol parameters hashing to params, for 1ms,
// returning rows. params 0 means no parameters.
func (tl *timeline) q(st *fingerprint.Statement, params uint64, rows int64) *pgwire.Execution {
	return tl.qd(st, params, rows, time.Millisecond)
}

// qd is q with a duration.
func (tl *timeline) qd(st *fingerprint.Statement, params uint64, rows int64, d time.Duration) *pgwire.Execution {
	x := &pgwire.Execution{
		Conn:       tl.conn,
		Start:      tl.now,
		End:        tl.now.Add(d),
		SQL:        st.Normalized,
		Protocol:   "extended",
		ParamsHash: params,
		Command:    "SELECT",
		Rows:       rows,
	}
	if params != 0 {
		x.NumParams = 1
	}
	if st.Facts != nil && st.Facts.Kind != "select" {
		x.Command = strings.ToUpper(string(st.Facts.Kind))
	}
	tl.now = x.End
	tl.events = append(tl.events, Event{Exec: x, Stmt: st, TraceID: tl.trace, Tags: tl.tags})
	return x
}

// simple runs st as a simple query whose literals hash to literals.
func (tl *timeline) simple(st *fingerprint.Statement, literals uint64, rows int64) *pgwire.Execution {
	x := tl.q(withLiterals(st, literals), 0, rows)
	x.Protocol = "simple"
	return x
}

// loop runs st n times with distinct parameters, each returning rows, with
// work between iterations.
func (tl *timeline) loop(st *fingerprint.Statement, n int, rows int64, work time.Duration) {
	for i := range n {
		tl.q(st, uint64(1000+i), rows)
		tl.wait(work)
	}
}

// detect runs events through a new Detector and flushes it.
func detect(cfg Config, events []Event) []Finding {
	d := New(cfg)
	var out []Finding
	for _, ev := range events {
		out = append(out, d.Observe(ev)...)
	}
	return append(out, d.Flush()...)
}

// summary is a finding in one line: kind, shape name, count, distinct
// parameters, source, severity.
func summary(f Finding) string {
	s := fmt.Sprintf("%s %s n=%d", f.Kind, names[f.Fingerprint], f.Count)
	if f.DistinctParams != 0 {
		s += fmt.Sprintf(" d=%d", f.DistinctParams)
	}
	if f.Rows != 0 {
		s += fmt.Sprintf(" rows=%d", f.Rows)
	}
	if f.Kind == KindNPlusOne {
		if f.Source != nil {
			s += fmt.Sprintf(" src=%s/%d", names[f.Source.Fingerprint], f.Source.Rows)
		} else {
			s += " src=none"
		}
	}
	return s + " " + string(f.Severity)
}

func summaries(fs []Finding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, summary(f))
	}
	return out
}

func checkSummaries(t *testing.T, got []Finding, want []string) {
	t.Helper()
	g := summaries(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("got findings\n\t%s\nwant\n\t%s", strings.Join(g, "\n\t"), strings.Join(want, "\n\t"))
	}
}
