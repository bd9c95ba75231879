package proxy

// Integration tests of the byte relay and the events it emits: real clients
// (pgx, raw pgproto3) through an in-process proxy to a real PostgreSQL.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/pgwire"
)

var itExecModes = []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"}

// itResult is what a query returned, comparable between connections.
type itResult struct {
	Rows [][]any
	Tag  string
	Code string // SQLSTATE of the error, "" when none
}

func itRun(ctx context.Context, c *pgx.Conn, sql string, args ...any) (itResult, error) {
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		if code, _, ok := itPgErr(err); ok {
			return itResult{Code: code}, nil
		}
		return itResult{}, err
	}
	var res itResult
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			rows.Close()
			return itResult{}, err
		}
		res.Rows = append(res.Rows, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		if code, _, ok := itPgErr(err); ok {
			return itResult{Code: code}, nil
		}
		return itResult{}, err
	}
	res.Tag = rows.CommandTag().String()
	return res, nil
}

// TestRelayExecModes runs the same queries with every pgx exec mode directly
// and through the proxy: results must be identical, and each execution must
// give exactly one event with the right SQL, rows, parameters and errors.
func TestRelayExecModes(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	const (
		qSeries = "SELECT n, n * 2 AS d, 'row ' || n AS s, n % 2 = 0 AS even, NULL::text AS nothing FROM generate_series(1, $1::int) AS n"
		qTypes  = "SELECT $1::text AS t, $2::int8 AS i, $3::bytea AS b, $4::float8 AS f, $5::timestamptz AS ts, $6::bool AS ok"
		qCreate = "CREATE TEMP TABLE it_modes (id int PRIMARY KEY, v text)"
		qInsert = "INSERT INTO it_modes SELECT n, 'v' || n FROM generate_series(1, $1::int) AS n"
		qUpdate = "UPDATE it_modes SET v = $1 WHERE id <= $2"
		qDivide = "SELECT 1 / 0"
		qLast   = "SELECT 'it_modes_done'"
	)
	ts := time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)
	type step struct {
		sql  string
		args []any
	}
	steps := []step{
		{qSeries, []any{5}},
		{qSeries, []any{5}},
		{qSeries, []any{7}},
		{qTypes, []any{"héllo, 'world'", int64(1) << 40, []byte{0, 1, 2, 255}, 3.25, ts, true}},
		{qCreate, nil},
		{qInsert, []any{3}},
		{qUpdate, []any{"x", 2}},
		{qDivide, nil},
		{qLast, nil},
	}
	for _, mode := range itExecModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 60*time.Second)
			app := "it_mode_" + mode
			via := itConnect(t, ctx, p.URL(pgtest.Superuser, "default_query_exec_mode="+mode, "application_name="+app))
			direct := itConnect(t, ctx, itPG(t).URL(pgtest.Superuser, "default_query_exec_mode="+mode))
			for i, s := range steps {
				want, err := itRun(ctx, direct, s.sql, s.args...)
				if err != nil {
					t.Fatalf("step %d direct %q: %v", i, s.sql, err)
				}
				got, err := itRun(ctx, via, s.sql, s.args...)
				if err != nil {
					t.Fatalf("step %d through the proxy %q: %v", i, s.sql, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("step %d %q: through the proxy got %+v, directly %+v", i, s.sql, got, want)
				}
			}
			if r, _ := itRun(ctx, via, qDivide); r.Code != "22012" {
				t.Errorf("1/0 through the proxy: SQLSTATE %q, want 22012", r.Code)
			}

			simple := mode == "simple_protocol"
			proto := "extended"
			if simple {
				proto = "simple"
			}
			// The last statement's event comes last on this connection, but for
			// the 1/0 run after the steps.
			p.WaitEvents(t, 1, itAppSQL(app, qLast))
			p.WaitEvents(t, 2, itAppSQL(app, qDivide))
			all := p.Events(itApp(app))

			var series []*pgwire.Execution
			for _, e := range all {
				if strings.HasPrefix(e.SQL, "SELECT n, n * 2 AS d") {
					series = append(series, e)
				}
			}
			if len(series) != 3 {
				t.Fatalf("got %d events for the generate_series query, want 3 (one per execution, none for prepare/describe rounds):\n%s", len(series), itDump(all))
			}
			for i, rows := range []int64{5, 5, 7} {
				e := series[i]
				w := itWant{Protocol: proto, Command: "SELECT", Rows: itI64(rows)}
				if simple {
					w.NumParams = itInt(0)
					if strings.Contains(e.SQL, "$1") {
						t.Errorf("simple protocol event SQL %q still has $1; pgx sends the arguments inline", e.SQL)
					}
				} else {
					w.SQL, w.NumParams = qSeries, itInt(1)
				}
				itCheckEvent(t, e, w)
			}
			if simple {
				for i, e := range series {
					if e.ParamsHash != 0 || e.Prepared != "" {
						t.Errorf("simple protocol event %d: ParamsHash %x, Prepared %q; want 0 and \"\"", i, e.ParamsHash, e.Prepared)
					}
				}
			} else {
				if series[0].ParamsHash == 0 || series[0].ParamsHash != series[1].ParamsHash {
					t.Errorf("same parameters twice: ParamsHash %x and %x, want equal and non-zero", series[0].ParamsHash, series[1].ParamsHash)
				}
				if series[2].ParamsHash == series[0].ParamsHash {
					t.Errorf("different parameters: ParamsHash %x both times, want different", series[0].ParamsHash)
				}
				for i, e := range series {
					if mode == "cache_statement" {
						if e.Prepared == "" || e.Prepared != series[0].Prepared {
							t.Errorf("cache_statement event %d: Prepared %q, want the same non-empty statement name each time", i, e.Prepared)
						}
					} else if e.Prepared != "" {
						t.Errorf("%s event %d: Prepared %q, want \"\" (unnamed statement)", mode, i, e.Prepared)
					}
				}
			}

			find := func(prefix string) []*pgwire.Execution {
				var out []*pgwire.Execution
				for _, e := range all {
					if strings.HasPrefix(e.SQL, prefix) {
						out = append(out, e)
					}
				}
				return out
			}
			if evs := find("SELECT $1::text AS t"); !simple && len(evs) != 1 {
				t.Errorf("got %d events for the typed query, want 1", len(evs))
			} else if !simple {
				itCheckEvent(t, evs[0], itWant{SQL: qTypes, Command: "SELECT", Rows: itI64(1), NumParams: itInt(6)})
			}
			if evs := find("INSERT INTO it_modes"); len(evs) != 1 {
				t.Errorf("got %d INSERT events, want 1:\n%s", len(evs), itDump(all))
			} else {
				itCheckEvent(t, evs[0], itWant{Protocol: proto, Command: "INSERT", Rows: itI64(3), InTx: itBool(false)})
			}
			if evs := find("UPDATE it_modes"); len(evs) != 1 {
				t.Errorf("got %d UPDATE events, want 1", len(evs))
			} else {
				itCheckEvent(t, evs[0], itWant{Command: "UPDATE", Rows: itI64(2)})
			}
			if evs := find(qDivide); len(evs) != 2 {
				t.Errorf("got %d events for 1/0, want 2:\n%s", len(evs), itDump(all))
			} else {
				for _, e := range evs {
					itCheckEvent(t, e, itWant{SQL: qDivide, SQLState: "22012"})
					if e.Command != "" {
						t.Errorf("failed statement: Command %q, want \"\"", e.Command)
					}
				}
			}
			for _, e := range all {
				if e.Conn.User != pgtest.Superuser || e.Conn.Database != pgtest.Database || e.Conn.ClientAddr != "127.0.0.1" {
					t.Errorf("pgwire.ConnInfo %+v: want user %s, database %s, client 127.0.0.1", *e.Conn, pgtest.Superuser, pgtest.Database)
					break
				}
			}
		})
	}
}

// TestRelayBatch sends a pgx batch (a pipeline for the extended modes, one
// multi-statement query for simple_protocol) whose middle query fails.
func TestRelayBatch(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	const (
		q1 = "SELECT $1::int AS a"
		q2 = "SELECT 1 / ($1::int - 2) AS b"
		q3 = "SELECT $1::int AS c, 'third'"
	)
	for _, mode := range itExecModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 60*time.Second)
			app := "it_batch_" + mode
			c := itConnect(t, ctx, p.URL(pgtest.Superuser, "default_query_exec_mode="+mode, "application_name="+app))
			b := &pgx.Batch{}
			b.Queue(q1, 1)
			b.Queue(q2, 2)
			b.Queue(q3, 3)
			br := c.SendBatch(ctx, b)
			var a int
			if err := br.QueryRow().Scan(&a); err != nil || a != 1 {
				t.Errorf("first query: %d, %v; want 1, nil", a, err)
			}
			_, err := br.Exec()
			itWantCode(t, err, "22012")
			if _, err := br.Exec(); err == nil {
				t.Errorf("third query after the failed one: no error, want one (the server skips it)")
			}
			_ = br.Close()
			var n int
			if err := c.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
				t.Fatalf("query after the batch: %d, %v; want 42", n, err)
			}

			p.WaitEvents(t, 1, itAppSQL(app, "SELECT 42"))
			all := p.Events(itApp(app))
			if mode == "simple_protocol" {
				var evs []*pgwire.Execution
				for _, e := range all {
					if strings.Contains(e.SQL, "third") {
						evs = append(evs, e)
					}
				}
				if len(evs) != 2 {
					t.Fatalf("got %d events for the batch, want 2 (the statement after the error is not executed):\n%s", len(evs), itDump(all))
				}
				itCheckEvent(t, evs[0], itWant{Protocol: "simple", Command: "SELECT", Rows: itI64(1)})
				itCheckEvent(t, evs[1], itWant{Protocol: "simple", SQLState: "22012"})
				if evs[0].StatementIndex != 0 || evs[1].StatementIndex != 1 || evs[0].SQL != evs[1].SQL {
					t.Errorf("StatementIndex %d, %d and SQL equal %v; want 0, 1 and the same text", evs[0].StatementIndex, evs[1].StatementIndex, evs[0].SQL == evs[1].SQL)
				}
				return
			}
			var got []*pgwire.Execution
			for _, e := range all {
				if e.SQL == q1 || e.SQL == q2 || e.SQL == q3 {
					got = append(got, e)
				}
			}
			if len(got) != 2 {
				t.Fatalf("got %d events for the batch, want 2 (q3 is skipped by the server):\n%s", len(got), itDump(all))
			}
			itCheckEvent(t, got[0], itWant{SQL: q1, Protocol: "extended", Command: "SELECT", Rows: itI64(1), NumParams: itInt(1)})
			itCheckEvent(t, got[1], itWant{SQL: q2, Protocol: "extended", SQLState: "22012", NumParams: itInt(1)})
			if !got[1].Start.Before(got[1].End) && !got[1].Start.Equal(got[1].End) {
				t.Errorf("pipelined statement: Start %v after End %v", got[1].Start, got[1].End)
			}
			if got[1].Start.Before(got[0].End) {
				t.Errorf("pipelined statement 2 Start %v before statement 1 End %v; want Start >= previous End", got[1].Start, got[0].End)
			}
		})
	}
}

// itPayload is a deterministic pseudo-random text of n bytes.
func itPayload(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_"
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// TestRelayCopyFromRows loads rows over 8 KB each with pgx CopyFrom (binary
// COPY) and checks every byte arrived.
func TestRelayCopyFromRows(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 60*time.Second)
	p := itStartProxy(t, Config{})
	const app = "it_copyfrom"
	c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name="+app))
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE it_copyfrom (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	const nrows = 300
	var rows [][]any
	var all []string
	for i := range nrows {
		s := itPayload(uint64(i), 10_000+i)
		rows = append(rows, []any{i, s})
		all = append(all, s)
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"it_copyfrom"}, []string{"id", "payload"}, pgx.CopyFromRows(rows))
	if err != nil || n != nrows {
		t.Fatalf("CopyFrom: %d, %v; want %d", n, err, nrows)
	}
	var count, total int64
	var sum string
	err = c.QueryRow(ctx, "SELECT count(*), sum(length(payload)), md5(string_agg(payload, ',' ORDER BY id)) FROM it_copyfrom").Scan(&count, &total, &sum)
	if err != nil {
		t.Fatal(err)
	}
	want := md5.Sum([]byte(strings.Join(all, ",")))
	if count != nrows || sum != hex.EncodeToString(want[:]) {
		t.Errorf("table has %d rows, md5 %s; want %d, %x", count, sum, nrows, want)
	}
	var copyEv []*pgwire.Execution
	for _, e := range p.WaitEvents(t, 3, itApp(app)) {
		if e.Command == "COPY" {
			copyEv = append(copyEv, e)
		}
	}
	if len(copyEv) != 1 {
		t.Fatalf("got %d COPY events, want 1:\n%s", len(copyEv), itDump(p.Events(itApp(app))))
	}
	itCheckEvent(t, copyEv[0], itWant{Command: "COPY", Rows: itI64(nrows)})
}

// itCopyGen produces COPY text rows "id\tpayload\n" with payloads of ~10 KB,
// hashing what it produced, until total bytes.
type itCopyGen struct {
	base  []byte
	total int
	sent  int
	id    int
	buf   bytes.Buffer
	h     itHashWriter
}

type itHashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func (g *itCopyGen) Read(p []byte) (int, error) {
	for g.buf.Len() < len(p) && g.sent < g.total {
		g.id++
		start := g.buf.Len()
		fmt.Fprintf(&g.buf, "%d\t%08d", g.id, g.id)
		g.buf.Write(g.base)
		g.buf.WriteByte('\n')
		g.sent += g.buf.Len() - start
	}
	n, err := g.buf.Read(p)
	g.h.Write(p[:n])
	if err == io.EOF && g.sent < g.total {
		err = nil
	}
	return n, err
}

type itCountWriter struct {
	n int64
	h itHashWriter
}

func (w *itCountWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

// TestRelayCopy100MB streams 100 MB in with COPY FROM STDIN and back out with
// COPY TO STDOUT through the proxy and compares the SHA-256 of both streams.
func TestRelayCopy100MB(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 150*time.Second)
	p := itStartProxy(t, Config{})
	const app = "it_copy100"
	c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name="+app))
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE it_copy100 (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	gen := &itCopyGen{base: []byte(itPayload(7, 10_000)), total: 100 << 20, h: sha256.New()}
	tag, err := c.PgConn().CopyFrom(ctx, gen, "COPY it_copy100 (id, payload) FROM STDIN")
	if err != nil {
		t.Fatalf("COPY FROM STDIN: %v", err)
	}
	rows := int64(gen.id)
	if tag.RowsAffected() != rows {
		t.Fatalf("COPY FROM: %q, want %d rows", tag, rows)
	}
	out := &itCountWriter{h: sha256.New()}
	tag, err = c.PgConn().CopyTo(ctx, out, "COPY (SELECT id, payload FROM it_copy100 ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatalf("COPY TO STDOUT: %v", err)
	}
	if tag.RowsAffected() != rows {
		t.Errorf("COPY TO: %q, want %d rows", tag, rows)
	}
	if out.n != int64(gen.sent) || !bytes.Equal(out.h.Sum(nil), gen.h.Sum(nil)) {
		t.Errorf("COPY TO gave %d bytes sha256 %x; COPY FROM sent %d bytes sha256 %x", out.n, out.h.Sum(nil), gen.sent, gen.h.Sum(nil))
	}
	var copies []*pgwire.Execution
	for _, e := range p.WaitEvents(t, 3, itApp(app)) {
		if e.Command == "COPY" {
			copies = append(copies, e)
		}
	}
	if len(copies) != 2 {
		t.Fatalf("got %d COPY events, want 2:\n%s", len(copies), itDump(p.Events(itApp(app))))
	}
	for _, e := range copies {
		itCheckEvent(t, e, itWant{Command: "COPY", Rows: itI64(rows)})
	}
	if st := p.Srv.Stats(); st.BytesFromClient < 100<<20 || st.BytesFromServer < 100<<20 {
		t.Errorf("Stats bytes from client %d, from server %d; want both >= 100 MB", st.BytesFromClient, st.BytesFromServer)
	}
}

// itWaitRunning waits until the server runs a query starting with prefix for
// each application name.
func itWaitRunning(t testing.TB, ctx context.Context, direct *pgx.Conn, prefix string, apps ...string) {
	t.Helper()
	itEventually(t, 10*time.Second, func() (bool, string) {
		var n int
		err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1) AND state = 'active' AND query LIKE $2",
			apps, prefix+"%").Scan(&n)
		return err == nil && n == len(apps), fmt.Sprintf("%d of %v running %q (err %v)", n, apps, prefix, err)
	})
}

// TestRelayCancel cancels a query with a CancelRequest through the proxy and
// checks that only that query was cancelled, then cancels one by context.
func TestRelayCancel(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	t.Run("request", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 60*time.Second)
		direct := itDirect(t, ctx)
		a := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_cancel_a"))
		b := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_cancel_b"))
		bDone := make(chan error, 1)
		go func() {
			_, err := b.Exec(ctx, "SELECT pg_sleep(3)")
			bDone <- err
		}()
		aDone := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := a.Exec(ctx, "SELECT pg_sleep(10)")
			aDone <- err
		}()
		itWaitRunning(t, ctx, direct, "SELECT pg_sleep", "it_cancel_a", "it_cancel_b")
		if err := a.PgConn().CancelRequest(ctx); err != nil {
			t.Fatalf("CancelRequest: %v", err)
		}
		select {
		case err := <-aDone:
			itWantCode(t, err, "57014")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cancelled query took %s", d)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("query not cancelled 8s after the CancelRequest")
		}
		if err := <-bDone; err != nil {
			t.Errorf("the other connection's pg_sleep(3): %v; want it to finish (the cancel must reach only the right backend)", err)
		}
		if p.Srv.Stats().Cancels == 0 {
			t.Errorf("Stats().Cancels = 0 after a forwarded CancelRequest")
		}
		evs := p.WaitEvents(t, 1, itAppSQL("it_cancel_a", "SELECT pg_sleep(10)"))
		if len(evs) == 1 {
			itCheckEvent(t, evs[0], itWant{SQLState: "57014"})
		}
	})
	t.Run("context", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 60*time.Second)
		direct := itDirect(t, ctx)
		c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_cancel_ctx"))
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			itWaitRunning(t, ctx, direct, "SELECT pg_sleep", "it_cancel_ctx")
			cancel()
		}()
		start := time.Now()
		_, err := c.Exec(qctx, "SELECT pg_sleep(10)")
		if err == nil {
			t.Fatal("pg_sleep(10) with a cancelled context: no error")
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("query with a cancelled context returned after %s, want about 1s", d)
		}
		t.Logf("pgx error: %v", err)
		// The server's own verdict: the statement ended with 57014 (and not
		// by pgx giving up on the connection).
		evs := p.WaitEvents(t, 1, itAppSQL("it_cancel_ctx", "SELECT pg_sleep(10)"))
		if len(evs) == 1 {
			itCheckEvent(t, evs[0], itWant{SQLState: "57014"})
		}
		itEventually(t, 5*time.Second, func() (bool, string) {
			var n int
			_ = direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'it_cancel_ctx' AND state = 'active'").Scan(&n)
			return n == 0, fmt.Sprintf("%d backends still running the cancelled query", n)
		})
	})
}

// TestRelayListenNotify delivers notifications through the proxy.
func TestRelayListenNotify(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{})
	a := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_listen"))
	b := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_notify"))
	if _, err := a.Exec(ctx, "LISTEN it_chan"); err != nil {
		t.Fatal(err)
	}
	for i, payload := range []string{"hello", strings.Repeat("p", 7000)} {
		if _, err := b.Exec(ctx, "SELECT pg_notify('it_chan', $1)", payload); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := a.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if n.Channel != "it_chan" || n.Payload != payload || n.PID != b.PgConn().PID() {
			t.Errorf("notification %d: channel %q, payload of %d bytes, pid %d; want it_chan, %d bytes, pid %d",
				i, n.Channel, len(n.Payload), n.PID, len(payload), b.PgConn().PID())
		}
	}
	// A notification that arrives while the listener runs a query.
	if _, err := b.Exec(ctx, "NOTIFY it_chan, 'during'"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "SELECT pg_sleep(0.2)"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := a.WaitForNotification(wctx)
	cancel()
	if err != nil || n.Payload != "during" {
		t.Errorf("notification during a query: %+v, %v; want payload \"during\"", n, err)
	}
	evs := p.WaitEvents(t, 1, itAppSQL("it_listen", "LISTEN it_chan"))
	if len(evs) == 1 {
		itCheckEvent(t, evs[0], itWant{Command: "LISTEN"})
	}
}

// TestRelayParameterStatus checks ParameterStatus reaches the client and the
// events follow application_name.
func TestRelayParameterStatus(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{})
	c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_ps_start"))
	d := itConnect(t, ctx, itPG(t).URL(pgtest.Superuser))
	for _, k := range []string{"server_version", "server_encoding", "client_encoding", "integer_datetimes", "standard_conforming_strings", "TimeZone"} {
		if got, want := c.PgConn().ParameterStatus(k), d.PgConn().ParameterStatus(k); got != want || got == "" {
			t.Errorf("ParameterStatus(%s) = %q through the proxy, %q directly", k, got, want)
		}
	}
	if got := c.PgConn().ParameterStatus("application_name"); got != "it_ps_start" {
		t.Errorf("application_name at startup: %q, want it_ps_start", got)
	}
	if _, err := c.Exec(ctx, "SELECT 'before'"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SET application_name = 'it_ps_new'"); err != nil {
		t.Fatal(err)
	}
	if got := c.PgConn().ParameterStatus("application_name"); got != "it_ps_new" {
		t.Errorf("ParameterStatus(application_name) after SET: %q, want it_ps_new", got)
	}
	if _, err := c.Exec(ctx, "SET TimeZone = 'Asia/Kolkata'"); err != nil {
		t.Fatal(err)
	}
	if got := c.PgConn().ParameterStatus("TimeZone"); got != "Asia/Kolkata" {
		t.Errorf("ParameterStatus(TimeZone) after SET: %q", got)
	}
	if _, err := c.Exec(ctx, "SELECT 'after'"); err != nil {
		t.Fatal(err)
	}
	p.WaitEvents(t, 1, func(e *pgwire.Execution) bool { return e.SQL == "SELECT 'after'" })
	for _, e := range p.Events(nil) {
		switch e.SQL {
		case "SELECT 'before'":
			if e.Conn.ApplicationName != "it_ps_start" {
				t.Errorf("event before SET: application_name %q, want it_ps_start (a pgwire.ConnInfo must not change after it was emitted)", e.Conn.ApplicationName)
			}
		case "SELECT 'after'":
			if e.Conn.ApplicationName != "it_ps_new" {
				t.Errorf("event after SET application_name: pgwire.ConnInfo.ApplicationName %q, want it_ps_new", e.Conn.ApplicationName)
			}
		}
	}
}

// TestRelayFunctionCall sends the fast-path FunctionCall message.
func TestRelayFunctionCall(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	r := itRawSession(t, p.Addr, "it_fcall")
	vals, _ := r.query("SELECT 'int4pl'::regproc::oid")
	if len(vals) != 1 {
		t.Fatalf("oid of int4pl: %v", vals)
	}
	oid, err := strconv.ParseUint(vals[0], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	r.send(&pgproto3.FunctionCall{Function: uint32(oid), ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("2"), []byte("3")}, ResultFormatCode: 0})
	if fr, ok := r.recv().(*pgproto3.FunctionCallResponse); !ok || string(fr.Result) != "5" {
		t.Fatalf("int4pl('2', '3'): %#v, want 5", fr)
	}
	r.expect("FunctionCall", &pgproto3.ReadyForQuery{})
	r.send(&pgproto3.FunctionCall{Function: uint32(oid), ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 40}, {0, 0, 0, 2}}, ResultFormatCode: 1})
	fr, ok := r.recv().(*pgproto3.FunctionCallResponse)
	if !ok || !bytes.Equal(fr.Result, []byte{0, 0, 0, 42}) {
		t.Fatalf("binary int4pl(40, 2): %#v, want 42", fr)
	}
	r.expect("FunctionCall", &pgproto3.ReadyForQuery{})
	// The connection (and the proxy's view of it) goes on.
	if vals, tags := r.query("SELECT 7"); len(vals) != 1 || vals[0] != "7" || tags[0] != "SELECT 1" {
		t.Fatalf("query after FunctionCall: %v %v", vals, tags)
	}
	evs := p.WaitEvents(t, 1, itAppSQL("it_fcall", "SELECT 7"))
	if len(evs) == 1 {
		itCheckEvent(t, evs[0], itWant{SQL: "SELECT 7", Protocol: "simple", Command: "SELECT", Rows: itI64(1)})
	}
}

// TestRelayReplication relays physical and logical replication connections
// and emits no events for them.
func TestRelayReplication(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{})
	for _, mode := range []string{"database", "true"} {
		app := "it_repl_" + mode
		cfg, err := pgconn.ParseConfig(p.URL(pgtest.Superuser, "application_name="+app))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["replication"] = mode
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("replication=%s: connect: %v", mode, err)
		}
		res, err := c.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
		if err != nil {
			t.Fatalf("replication=%s: IDENTIFY_SYSTEM: %v", mode, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 4 {
			t.Fatalf("replication=%s: IDENTIFY_SYSTEM gave %+v, want one row of 4 columns", mode, res)
		}
		row := res[0].Rows[0]
		if mode == "database" && string(row[3]) != pgtest.Database {
			t.Errorf("IDENTIFY_SYSTEM dbname %q, want %s", row[3], pgtest.Database)
		}
		if mode == "database" {
			res, err := c.Exec(ctx, "SELECT 1").ReadAll()
			if err != nil || len(res) != 1 || string(res[0].Rows[0][0]) != "1" {
				t.Errorf("SELECT 1 on a logical replication connection: %+v, %v", res, err)
			}
		}
		c.Close(ctx)
	}
	marker := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_repl_marker"))
	if _, err := marker.Exec(ctx, "SELECT 'marker'"); err != nil {
		t.Fatal(err)
	}
	p.WaitEvents(t, 1, itApp("it_repl_marker"))
	time.Sleep(200 * time.Millisecond)
	if evs := p.Events(func(e *pgwire.Execution) bool {
		return strings.HasPrefix(e.Conn.ApplicationName, "it_repl_") && e.Conn.ApplicationName != "it_repl_marker"
	}); len(evs) > 0 {
		t.Errorf("replication connections emitted %d events, want none:\n%s", len(evs), itDump(evs))
	}
}

// itSampleHeap samples HeapInuse until stop is closed and returns the peak.
func itSampleHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// itStream writes n bytes of c to w from a small buffer.
func itStream(w io.Writer, c byte, n int) error {
	buf := bytes.Repeat([]byte{c}, 64<<10)
	for n > 0 {
		k := min(n, len(buf))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// TestRelayLargeMessage streams a 64 MB query text and a 64 MB bind
// parameter through the proxy, which must not buffer either whole. It does
// not run in parallel: it measures the heap of the whole process, and the
// client writes from a 64 KB buffer, so what grows is the proxy's.
func TestRelayLargeMessage(t *testing.T) {
	const size = 64 << 20
	p := itStartProxy(t, Config{})
	measure := func(t *testing.T, do func()) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		stop := make(chan struct{})
		peakc := itSampleHeap(stop)
		do()
		close(stop)
		peak := <-peakc
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		grow := int64(peak) - int64(before.HeapInuse)
		t.Logf("%d MB message: allocated %.1f MB, heap peak %+.1f MB", size>>20, float64(alloc)/(1<<20), float64(grow)/(1<<20))
		if alloc > 32<<20 || grow > 32<<20 {
			t.Errorf("relaying a %d MB message allocated %d MB and grew the heap by %d MB; want both under 32 MB (streamed, not buffered)", size>>20, alloc>>20, grow>>20)
		}
	}
	t.Run("query text", func(t *testing.T) {
		r := itRawSession(t, p.Addr, "it_large_q")
		prefix, suffix := "SELECT length('", "')"
		_ = r.nc.SetDeadline(time.Now().Add(90 * time.Second))
		measure(t, func() {
			hdr := make([]byte, 5)
			hdr[0] = 'Q'
			binary.BigEndian.PutUint32(hdr[1:], uint32(4+len(prefix)+size+len(suffix)+1))
			if _, err := r.nc.Write(append(hdr, prefix...)); err != nil {
				t.Fatal(err)
			}
			if err := itStream(r.nc, 'x', size); err != nil {
				t.Fatal(err)
			}
			if _, err := r.nc.Write(append([]byte(suffix), 0)); err != nil {
				t.Fatal(err)
			}
			for {
				switch m := r.recv().(type) {
				case *pgproto3.DataRow:
					if string(m.Values[0]) != strconv.Itoa(size) {
						t.Errorf("length = %s, want %d", m.Values[0], size)
					}
				case *pgproto3.ErrorResponse:
					t.Fatalf("%s: %s", m.Code, m.Message)
				case *pgproto3.ReadyForQuery:
					return
				}
			}
		})
		evs := p.WaitEvents(t, 1, itApp("it_large_q"))
		if len(evs) == 1 {
			e := evs[0]
			itCheckEvent(t, e, itWant{Command: "SELECT", Rows: itI64(1)})
			if !e.Truncated || len(e.SQL) > pgwire.DefaultMaxSQLBytes || !strings.HasPrefix(e.SQL, prefix) {
				t.Errorf("event for a %d MB query: Truncated %v, %d bytes of SQL; want true, a prefix of at most %d bytes", size>>20, e.Truncated, len(e.SQL), pgwire.DefaultMaxSQLBytes)
			}
		}
	})
	t.Run("bind parameter", func(t *testing.T) {
		r := itRawSession(t, p.Addr, "it_large_b")
		_ = r.nc.SetDeadline(time.Now().Add(90 * time.Second))
		const sql = "SELECT length($1::bytea)"
		r.send(&pgproto3.Parse{Query: sql})
		measure(t, func() {
			// Bind: portal "", statement "", 1 format (binary), 1 parameter, 0 result formats.
			var b []byte
			b = append(b, 'B', 0, 0, 0, 0, 0, 0)
			b = binary.BigEndian.AppendUint16(b, 1)
			b = binary.BigEndian.AppendUint16(b, 1)
			b = binary.BigEndian.AppendUint16(b, 1)
			b = binary.BigEndian.AppendUint32(b, size)
			binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1+size+2))
			if _, err := r.nc.Write(b); err != nil {
				t.Fatal(err)
			}
			if err := itStream(r.nc, 0xAB, size); err != nil {
				t.Fatal(err)
			}
			if _, err := r.nc.Write([]byte{0, 0}); err != nil {
				t.Fatal(err)
			}
			r.send(&pgproto3.Execute{}, &pgproto3.Sync{})
			r.expect("large bind", &pgproto3.ParseComplete{}, &pgproto3.BindComplete{})
			if dr, ok := r.recv().(*pgproto3.DataRow); !ok || string(dr.Values[0]) != strconv.Itoa(size) {
				t.Fatalf("length($1) = %#v, want %d", dr, size)
			}
			r.expect("large bind", &pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})
		})
		evs := p.WaitEvents(t, 1, itAppSQL("it_large_b", sql))
		if len(evs) == 1 {
			itCheckEvent(t, evs[0], itWant{SQL: sql, Protocol: "extended", Command: "SELECT", Rows: itI64(1), NumParams: itInt(1)})
			if evs[0].ParamsHash == 0 {
				t.Errorf("ParamsHash of a 64 MB parameter is 0")
			}
		}
	})
}

// TestRelayMultiStatement sends several statements in one simple query.
func TestRelayMultiStatement(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{})
	const app = "it_multi"
	c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name="+app))
	const q = "CREATE TEMP TABLE it_multi (i int); INSERT INTO it_multi VALUES (1), (2); SELECT * FROM it_multi; UPDATE it_multi SET i = i + 1; DELETE FROM it_multi"
	res, err := c.PgConn().Exec(ctx, q).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, r := range res {
		tags = append(tags, r.CommandTag.String())
	}
	if want := []string{"CREATE TABLE", "INSERT 0 2", "SELECT 2", "UPDATE 2", "DELETE 2"}; !reflect.DeepEqual(tags, want) {
		t.Errorf("tags %q, want %q", tags, want)
	}
	const qErr = "SELECT 1; SELECT 1/0; SELECT 3"
	if _, err := c.PgConn().Exec(ctx, qErr).ReadAll(); err == nil {
		t.Fatal("1/0 in a multi-statement query: no error")
	}
	const qEmpty = "SELECT 'x' ; ; "
	if _, err := c.PgConn().Exec(ctx, qEmpty).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 'end'"); err != nil {
		t.Fatal(err)
	}
	p.WaitEvents(t, 1, itAppSQL(app, "SELECT 'end'"))
	evs := p.Events(itAppSQL(app, q))
	if len(evs) != 5 {
		t.Fatalf("got %d events for a 5-statement query, want 5:\n%s", len(evs), itDump(p.Events(itApp(app))))
	}
	for i, want := range []struct {
		cmd  string
		rows int64
	}{{"", 0}, {"INSERT", 2}, {"SELECT", 2}, {"UPDATE", 2}, {"DELETE", 2}} {
		e := evs[i]
		if e.StatementIndex != i {
			t.Errorf("event %d: StatementIndex %d", i, e.StatementIndex)
		}
		w := itWant{SQL: q, Protocol: "simple", InTx: itBool(false)}
		if want.cmd != "" {
			w.Command, w.Rows = want.cmd, itI64(want.rows)
		}
		itCheckEvent(t, e, w)
	}
	evs = p.Events(itAppSQL(app, qErr))
	if len(evs) != 2 {
		t.Fatalf("got %d events for %q, want 2 (the statement after the error does not run):\n%s", len(evs), qErr, itDump(evs))
	}
	itCheckEvent(t, evs[0], itWant{Command: "SELECT", Rows: itI64(1)})
	itCheckEvent(t, evs[1], itWant{SQLState: "22012"})
	if evs[0].StatementIndex != 0 || evs[1].StatementIndex != 1 {
		t.Errorf("StatementIndex %d, %d; want 0, 1", evs[0].StatementIndex, evs[1].StatementIndex)
	}
	if evs := p.Events(itAppSQL(app, qEmpty)); len(evs) < 1 || evs[0].Command != "SELECT" {
		t.Errorf("events for %q: %s", qEmpty, itDump(evs))
	}
}

// TestRelayTransaction checks InTransaction and TxEnd.
func TestRelayTransaction(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{})
	const app = "it_tx"
	c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name="+app))
	if _, err := c.Exec(ctx, "SELECT 'outside'"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 'inside'"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("1/0: no error")
	}
	if _, err := tx.Exec(ctx, "SELECT 'aborted'"); err == nil {
		t.Fatal("query in an aborted transaction: no error")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 'after'"); err != nil {
		t.Fatal(err)
	}
	p.WaitEvents(t, 1, itAppSQL(app, "SELECT 'after'"))
	evs := p.Events(itApp(app))
	want := []struct {
		sql, state  string
		inTx, txEnd bool
	}{
		{"SELECT 'outside'", "", false, false},
		{"begin", "", true, false},
		{"SELECT 'inside'", "", true, false},
		{"commit", "", true, true},
		{"begin", "", true, false},
		{"SELECT 1/0", "22012", true, false},
		{"SELECT 'aborted'", "25P02", true, false},
		{"rollback", "", true, true},
		{"SELECT 'after'", "", false, false},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d:\n%s", len(evs), len(want), itDump(evs))
	}
	for i, w := range want {
		e := evs[i]
		if !strings.EqualFold(e.SQL, w.sql) || e.SQLState != w.state || e.InTransaction != w.inTx || e.TxEnd != w.txEnd {
			t.Errorf("event %d: %s want sql %q state %q InTransaction %v TxEnd %v", i, itDump([]*pgwire.Execution{e}), w.sql, w.state, w.inTx, w.txEnd)
		}
	}
}

// TestRelayExtendedRaw drives the extended protocol by hand: named and
// unnamed statements and portals, Describe, Flush without Sync (replies must
// arrive before any Sync), suspended portals, Close.
func TestRelayExtendedRaw(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	const app = "it_ext"
	r := itRawSession(t, p.Addr, app)
	const s1 = "SELECT $1::int + 1 AS x"
	const s2 = "SELECT generate_series(1, $1::int) AS g"

	// Named statement, described, with Flush and no Sync.
	r.send(&pgproto3.Parse{Name: "s1", Query: s1, ParameterOIDs: []uint32{23}},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Flush{})
	r.expect("Parse+Describe+Flush", &pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{}, &pgproto3.RowDescription{})
	// Named portal, described and executed, still before any Sync.
	r.send(&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s1", Parameters: [][]byte{[]byte("41")}},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"}, &pgproto3.Execute{Portal: "p1"}, &pgproto3.Flush{})
	r.expect("Bind+Describe+Execute+Flush", &pgproto3.BindComplete{}, &pgproto3.RowDescription{})
	if dr, ok := r.recv().(*pgproto3.DataRow); !ok || string(dr.Values[0]) != "42" {
		t.Fatalf("s1(41): %#v, want 42", dr)
	}
	if cc, ok := r.recv().(*pgproto3.CommandComplete); !ok || string(cc.CommandTag) != "SELECT 1" {
		t.Fatalf("s1(41) completion: %#v", cc)
	}
	r.send(&pgproto3.Sync{})
	r.expect("Sync", &pgproto3.ReadyForQuery{})

	// The same named statement twice with the same value, once with another.
	for _, v := range []string{"41", "41", "7"} {
		r.send(&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte(v)}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		r.expect("s1 again", &pgproto3.BindComplete{}, &pgproto3.DataRow{}, &pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})
	}

	// Unnamed statement and portal, fetched two rows at a time.
	r.send(&pgproto3.Parse{Query: s2}, &pgproto3.Bind{Parameters: [][]byte{[]byte("5")}}, &pgproto3.Execute{MaxRows: 2}, &pgproto3.Flush{})
	r.expect("Execute max 2", &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.DataRow{}, &pgproto3.DataRow{}, &pgproto3.PortalSuspended{})
	r.send(&pgproto3.Execute{MaxRows: 2}, &pgproto3.Flush{})
	r.expect("Execute max 2 again", &pgproto3.DataRow{}, &pgproto3.DataRow{}, &pgproto3.PortalSuspended{})
	r.send(&pgproto3.Execute{}, &pgproto3.Sync{})
	r.expect("Execute rest", &pgproto3.DataRow{}, &pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})

	// Close the named statement; using it afterwards fails until Sync.
	r.send(&pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	r.expect("Close", &pgproto3.CloseComplete{}, &pgproto3.ReadyForQuery{})
	r.send(&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Parse{Query: "SELECT 'skipped'"}, &pgproto3.Sync{})
	if e, ok := r.recv().(*pgproto3.ErrorResponse); !ok || e.Code != "26000" {
		t.Fatalf("Bind of a closed statement: %#v, want ErrorResponse 26000", e)
	}
	r.expect("after error", &pgproto3.ReadyForQuery{})
	if vals, _ := r.query("SELECT 'end'"); len(vals) != 1 || vals[0] != "end" {
		t.Fatalf("final query: %v", vals)
	}

	p.WaitEvents(t, 1, itAppSQL(app, "SELECT 'end'"))
	named := p.Events(itAppSQL(app, s1))
	if len(named) != 4 {
		t.Fatalf("got %d events for s1, want 4:\n%s", len(named), itDump(p.Events(itApp(app))))
	}
	for _, e := range named {
		itCheckEvent(t, e, itWant{SQL: s1, Protocol: "extended", Command: "SELECT", Rows: itI64(1), NumParams: itInt(1)})
		if e.Prepared != "s1" {
			t.Errorf("named statement event: Prepared %q, want s1", e.Prepared)
		}
	}
	if h := named[0].ParamsHash; h == 0 || named[1].ParamsHash != h || named[2].ParamsHash != h || named[3].ParamsHash == h {
		t.Errorf("ParamsHash for 41, 41, 41, 7: %x %x %x %x; want three equal non-zero, then a different one",
			named[0].ParamsHash, named[1].ParamsHash, named[2].ParamsHash, named[3].ParamsHash)
	}
	unnamed := p.Events(itAppSQL(app, s2))
	if len(unnamed) != 3 {
		t.Fatalf("got %d events for the suspended portal, want 3 (one per Execute):\n%s", len(unnamed), itDump(p.Events(itApp(app))))
	}
	for i, rows := range []int64{2, 2, 1} {
		itCheckEvent(t, unnamed[i], itWant{SQL: s2, Protocol: "extended", Rows: itI64(rows), NumParams: itInt(1)})
		if unnamed[i].Prepared != "" {
			t.Errorf("unnamed statement: Prepared %q", unnamed[i].Prepared)
		}
	}
	if evs := p.Events(itAppSQL(app, "SELECT 'skipped'")); len(evs) != 0 {
		t.Errorf("a Parse skipped after an error gave events:\n%s", itDump(evs))
	}
	for _, e := range p.Events(itApp(app)) {
		if e.SQLState == "26000" {
			return
		}
	}
	t.Errorf("no event with SQLSTATE 26000 for the Bind of a closed statement:\n%s", itDump(p.Events(itApp(app))))
}

// TestRelayStartupNegotiate sends startup packets a PostgreSQL 15 server
// answers with NegotiateProtocolVersion (protocol 3.2, a grease version, an
// unknown _pq_ option): the answer must arrive through the proxy byte for
// byte as it does directly, and the session must then work.
func TestRelayStartupNegotiate(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	cases := []struct {
		name    string
		version uint32
		opts    []string
	}{
		{"3.0 with _pq_ option", 0x00030000, []string{"_pq_.foo", "bar"}},
		{"3.2", 0x00030002, nil},
		{"3.2 with _pq_ option", 0x00030002, []string{"_pq_.foo", "bar"}},
		{"grease 3.9999", 0x0003270F, []string{"_pq_.grease_option", "x"}},
	}
	session := func(t *testing.T, addr string, version uint32, opts []string) []itRawMsg {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		kv := append([]string{"user", pgtest.Superuser, "database", pgtest.Database, "application_name", "it_negotiate"}, opts...)
		if _, err := nc.Write(itStartupPacket(version, kv...)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		var msgs []itRawMsg
		for {
			m, err := itReadRawMsg(br)
			if err != nil {
				t.Fatalf("%s: startup: %v after %d messages", addr, err, len(msgs))
			}
			msgs = append(msgs, m)
			if m.Type == 'E' {
				t.Fatalf("%s: startup error %v", addr, itErrorFields(m.Raw))
			}
			if m.Type == 'Z' {
				break
			}
		}
		q := []byte{'Q', 0, 0, 0, 0}
		q = append(q, "SELECT 'negotiated'"...)
		q = append(q, 0)
		binary.BigEndian.PutUint32(q[1:], uint32(len(q)-1))
		if _, err := nc.Write(q); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := itReadRawMsg(br)
			if err != nil {
				t.Fatalf("%s: query: %v", addr, err)
			}
			if m.Type == 'E' {
				t.Fatalf("%s: query error %v", addr, itErrorFields(m.Raw))
			}
			if m.Type == 'D' && !bytes.Contains(m.Raw, []byte("negotiated")) {
				t.Errorf("%s: unexpected row %q", addr, m.Raw)
			}
			if m.Type == 'Z' {
				break
			}
		}
		_, _ = nc.Write([]byte{'X', 0, 0, 0, 4})
		return msgs
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			direct := session(t, itPG(t).Addr(), tc.version, tc.opts)
			via := session(t, p.Addr, tc.version, tc.opts)
			if direct[0].Type != 'v' {
				t.Fatalf("direct: first message %q, want NegotiateProtocolVersion ('v') from the server", direct[0].Type)
			}
			if !bytes.Equal(via[0].Raw, direct[0].Raw) {
				t.Errorf("NegotiateProtocolVersion through the proxy %q, directly %q", via[0].Raw, direct[0].Raw)
			}
			var types []byte
			for _, m := range via {
				types = append(types, m.Type)
			}
			if len(via) != len(direct) {
				t.Errorf("startup through the proxy: messages %q; directly %d messages", types, len(direct))
			}
		})
	}
	t.Run("pgx max_protocol_version=3.2", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 20*time.Second)
		c := itConnect(t, ctx, p.URL(pgtest.Superuser, "max_protocol_version=3.2", "application_name=it_pgx32"))
		var n int
		if err := c.QueryRow(ctx, "SELECT 32").Scan(&n); err != nil || n != 32 {
			t.Fatalf("query: %d, %v", n, err)
		}
	})
}

// TestRelayClientKilled closes a client socket abruptly (RST) while idle and
// while its query runs: the backend must go away within a few seconds.
func TestRelayClientKilled(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{})
	for _, busy := range []bool{false, true} {
		name := map[bool]string{false: "idle", true: "busy"}[busy]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := itCtx(t, 60*time.Second)
			app := "it_killed_" + name
			direct := itDirect(t, ctx)
			r := itRawSession(t, p.Addr, app)
			if busy {
				r.send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
				itWaitRunning(t, ctx, direct, "SELECT pg_sleep", app)
			}
			if tc, ok := r.nc.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			killed := time.Now()
			r.nc.Close()
			itEventually(t, 5*time.Second, func() (bool, string) {
				var n int
				_ = direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
				return n == 0, fmt.Sprintf("%d backends with application_name %s remain %s after the client was killed", n, app, time.Since(killed).Round(time.Millisecond))
			})
		})
	}
	t.Cleanup(func() { itWaitNoConns(t, p, 5*time.Second) })
}

// TestRelayServerTerminates terminates the backend from another session: the
// proxy must close the client side too.
func TestRelayServerTerminates(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{})
	direct := itDirect(t, ctx)
	c, err := pgx.Connect(ctx, p.URL(pgtest.Superuser, "application_name=it_terminated"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var pid uint32
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if pid != c.PgConn().PID() {
		t.Errorf("BackendKeyData pid %d, pg_backend_pid() %d: the proxy must relay the server's key", c.PgConn().PID(), pid)
	}
	var ok bool
	if err := direct.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v, %v", ok, err)
	}
	// The client does nothing: the proxy alone must notice and close it.
	itWaitNoConns(t, p, 5*time.Second)
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Errorf("query on a terminated connection: no error")
	} else {
		t.Logf("client error after termination: %v", err)
	}
}

// TestRelayCheckUpstream asks the readiness check.
func TestRelayCheckUpstream(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 20*time.Second)
	p := itStartProxy(t, Config{})
	if err := p.Srv.CheckUpstream(ctx); err != nil {
		t.Errorf("CheckUpstream: %v", err)
	}
	tp := itStartProxy(t, Config{UpstreamSSLMode: SSLVerifyFull, UpstreamTLS: itUpstreamTLS(t)})
	if err := tp.Srv.CheckUpstream(ctx); err != nil {
		t.Errorf("CheckUpstream with verify-full: %v", err)
	}
}

// ---- faults ----

// TestFaultMalformed sends broken messages after startup: each such client
// gets ErrorResponse 08P01 and is closed; a concurrent client keeps working.
func TestFaultMalformed(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 60*time.Second)
	p := itStartProxy(t, Config{})
	good := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_fault_good"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var goodErr error
	var goodN int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var n int
			if err := good.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
				goodErr = fmt.Errorf("query %d: %d, %v", i, n, err)
				return
			}
			goodN++
		}
	}()
	cases := []struct {
		name string
		msg  []byte
	}{
		{"Query with length 2", []byte{'Q', 0, 0, 0, 2}},
		{"Parse with length 0", []byte{'P', 0, 0, 0, 0}},
		{"Sync with length 3", []byte{'S', 0, 0, 0, 3}},
		{"Query with negative length", []byte{'Q', 0xff, 0xff, 0xff, 0xf0}},
	}
	for _, tc := range cases {
		r := itRawSession(t, p.Addr, "it_fault_bad")
		if _, err := r.nc.Write(tc.msg); err != nil {
			t.Fatal(err)
		}
		b, closed := itReadUntilClosed(r.nc, 5*time.Second)
		code, msg, ok := itFirstError(b)
		if !ok || code != "08P01" {
			t.Errorf("%s: got %q (ErrorResponse %v %s %q), want ErrorResponse 08P01", tc.name, b, ok, code, msg)
		}
		if !closed {
			t.Errorf("%s: connection still open 5s after the malformed message", tc.name)
		}
	}
	close(stop)
	wg.Wait()
	if goodErr != nil || goodN == 0 {
		t.Errorf("the concurrent good connection: %d queries, error %v", goodN, goodErr)
	}
	// The client sees the close before the handler returns and counts the
	// error: wait for the count.
	deadline := time.Now().Add(5 * time.Second)
	for p.Srv.Stats().ProtocolErrors < uint64(len(cases)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := p.Srv.Stats(); st.ProtocolErrors < uint64(len(cases)) {
		t.Errorf("Stats().ProtocolErrors = %d, want >= %d", st.ProtocolErrors, len(cases))
	}
}

// TestFaultOversized sets MaxMessageBytes small: a larger message from the
// client, and one from the server, ends that connection with 08P01.
func TestFaultOversized(t *testing.T) {
	t.Parallel()
	p := itStartProxy(t, Config{MaxMessageBytes: 4096})
	good := itConnect(t, itCtx(t, 30*time.Second), p.URL(pgtest.Superuser, "application_name=it_big_good"))
	t.Run("from client", func(t *testing.T) {
		ctx := itCtx(t, 10*time.Second)
		c, err := pgx.Connect(ctx, p.URL(pgtest.Superuser, "application_name=it_big_client"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT '"+strings.Repeat("x", 5000)+"'")
		itWantCode(t, err, "08P01")
		if !c.IsClosed() {
			if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
				t.Errorf("connection still usable after an oversized message")
			}
		}
	})
	t.Run("from server", func(t *testing.T) {
		ctx := itCtx(t, 10*time.Second)
		c, err := pgx.Connect(ctx, p.URL(pgtest.Superuser, "application_name=it_big_server"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT repeat('x', 10000)")
		itWantCode(t, err, "08P01")
	})
	ctx := itCtx(t, 10*time.Second)
	var n int
	if err := good.QueryRow(ctx, "SELECT 5").Scan(&n); err != nil || n != 5 {
		t.Errorf("other connection after the oversized messages: %d, %v", n, err)
	}
}

// TestFaultUpstreamUnreachable points the proxy at a closed port.
func TestFaultUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := itStartProxy(t, Config{Upstream: addr, ConnectTimeout: 3 * time.Second})
	_, err = pgx.Connect(ctx, p.URL(pgtest.Superuser))
	if pe := itWantCode(t, err, "08006"); pe != nil && !strings.Contains(pe.Message, addr) {
		t.Errorf("error message %q does not name the upstream %s", pe.Message, addr)
	}
	if err := p.Srv.CheckUpstream(ctx); err == nil {
		t.Errorf("CheckUpstream on a closed port: nil error")
	}
	if st := p.Srv.Stats(); st.UpstreamErrors == 0 {
		t.Errorf("Stats().UpstreamErrors = 0")
	}
}

// TestFaultMaxConnections refuses the connection over the limit clearly.
func TestFaultMaxConnections(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 30*time.Second)
	p := itStartProxy(t, Config{MaxConnections: 2})
	c1, err := pgx.Connect(ctx, p.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	itConnect(t, ctx, p.URL(pgtest.Superuser))
	_, err = pgx.Connect(ctx, p.URL(pgtest.Superuser))
	if pe := itWantCode(t, err, "53300"); pe != nil && !strings.Contains(pe.Message, "too many") {
		t.Errorf("message %q does not say too many connections", pe.Message)
	}
	c1.Close(ctx)
	itEventually(t, 5*time.Second, func() (bool, string) {
		n := p.Srv.Stats().ConnsActive
		return n == 1, fmt.Sprintf("ConnsActive = %d, want 1", n)
	})
	itConnect(t, ctx, p.URL(pgtest.Superuser))
	if st := p.Srv.Stats(); st.ConnsRejected == 0 {
		t.Errorf("Stats().ConnsRejected = 0")
	}
}

// TestFaultShutdown checks Shutdown: an in-flight transaction finishes, an
// idle connection is closed at once, a stuck one is forced at the deadline.
func TestFaultShutdown(t *testing.T) {
	t.Parallel()
	t.Run("in-flight transaction finishes", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 30*time.Second)
		direct := itDirect(t, ctx)
		if _, err := direct.Exec(ctx, "CREATE TABLE it_shutdown (v int)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = direct.Exec(ctx, "DROP TABLE it_shutdown")
		})
		p := itStartProxy(t, Config{})
		c := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_shut_tx"))
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slept := make(chan error, 1)
		go func() {
			_, err := tx.Exec(ctx, "SELECT pg_sleep(1)")
			slept <- err
		}()
		itWaitRunning(t, ctx, direct, "SELECT pg_sleep", "it_shut_tx")
		shut := make(chan error, 1)
		start := time.Now()
		go func() { err, _ := p.shutdown(10 * time.Second); shut <- err }()
		time.Sleep(100 * time.Millisecond)
		if nc, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
			_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = nc.Write(itStartupPacket(0x00030000, "user", pgtest.Superuser))
			b, _ := io.ReadAll(nc)
			nc.Close()
			if code, _, ok := itFirstError(b); len(b) > 0 && (!ok || !strings.HasPrefix(code, "57")) {
				t.Errorf("new connection during shutdown got %q, want refused or an 57xxx error", b)
			}
		}
		if err := <-slept; err != nil {
			t.Fatalf("in-flight query during shutdown: %v", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO it_shutdown VALUES (1)"); err != nil {
			t.Fatalf("statement in the open transaction during shutdown: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit during shutdown: %v", err)
		}
		select {
		case err := <-shut:
			if err != nil {
				t.Errorf("Shutdown: %v, want nil (the connection ended after its transaction)", err)
			}
			t.Logf("Shutdown returned after %s", time.Since(start).Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Errorf("Shutdown still waiting 5s after the transaction committed")
		}
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM it_shutdown").Scan(&n); err != nil || n != 1 {
			t.Errorf("committed rows: %d, %v; want 1", n, err)
		}
	})
	t.Run("idle connection closed at once", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 30*time.Second)
		p := itStartProxy(t, Config{})
		c := itConnect(t, ctx, p.URL(pgtest.Superuser))
		start := time.Now()
		if err, _ := p.shutdown(10 * time.Second); err != nil {
			t.Errorf("Shutdown with an idle connection: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Shutdown with only an idle connection took %s", d)
		}
		if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
			t.Errorf("query after Shutdown: no error")
		}
	})
	t.Run("forced at the deadline", func(t *testing.T) {
		t.Parallel()
		ctx := itCtx(t, 30*time.Second)
		p := itStartProxy(t, Config{})
		c := itConnect(t, ctx, p.URL(pgtest.Superuser))
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err, _ = p.shutdown(time.Second)
		d := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a transaction left open: %v, want context.DeadlineExceeded", err)
		}
		if d < 900*time.Millisecond || d > 4*time.Second {
			t.Errorf("Shutdown took %s, want about 1s", d)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
			t.Errorf("query after the forced close: no error")
		}
		itWaitNoConns(t, p, 5*time.Second)
	})
}

// TestFaultEventsFull never reads the events channel: queries still run at
// full speed and the dropped events are counted.
func TestFaultEventsFull(t *testing.T) {
	t.Parallel()
	ctx := itCtx(t, 60*time.Second)
	ch := make(chan *pgwire.Execution, 1)
	p := itStartProxy(t, Config{Events: ch})
	c := itConnect(t, ctx, p.URL(pgtest.Superuser))
	const n = 2000
	start := time.Now()
	for i := range n {
		var v int
		if err := c.QueryRow(ctx, "SELECT $1::int", i).Scan(&v); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	d := time.Since(start)
	t.Logf("%d queries with a full events queue: %s", n, d)
	if d > 30*time.Second {
		t.Errorf("%d queries took %s with a full events queue", n, d)
	}
	itEventually(t, 5*time.Second, func() (bool, string) {
		st := p.Srv.Stats()
		return st.Events == 1 && st.EventsDropped >= n-1, fmt.Sprintf("Stats Events %d, EventsDropped %d; want 1 and >= %d", st.Events, st.EventsDropped, n-1)
	})
}
