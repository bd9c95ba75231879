package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/valuekey"
	"github.com/nplus1/nplus1/pgwire"
)

// Value evidence through the proxy, against the real server, in each of
// pgx's exec modes: the keys of a loop's lookups are found among the values
// of the result they came from, whatever widths and formats the driver
// chose for each side.
func TestEvidenceExecModes(t *testing.T) {
	budget := pgwire.NewEvidenceBudget(64 << 20)
	p := itStartProxy(t, Config{Evidence: true, EvidenceBudget: budget})
	ctx := itCtx(t, 60*time.Second)
	setup := itConnect(t, ctx, p.URL(pgtest.Superuser, "application_name=it_ev_setup"))
	for _, sql := range []string{
		"DROP TABLE IF EXISTS it_ev_orders",
		"CREATE TABLE it_ev_orders (id int4 PRIMARY KEY, user_id int8, ref uuid, code text)",
		`INSERT INTO it_ev_orders VALUES
			(1, 1099511627776, '6f1e8a54-1d2b-4c3a-9e8f-0a1b2c3d4e5f', 'A-1'),
			(2, 42, '{6F1E8A541D2B4C3A9E8F0A1B2C3D4E60}', 'A-2'),
			(3, 7, NULL, 'A-3')`,
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	const source = "SELECT id, user_id, ref, code FROM it_ev_orders ORDER BY id"
	// Each lookup takes its key from one column of the source's rows, as
	// a parameter of another type or width.
	lookups := []struct {
		sql string
		col int
		arg func(id int32, user int64, ref, code string) any
	}{
		{"SELECT count(*) FROM it_ev_orders WHERE id = $1::int2", 0, func(id int32, _ int64, _, _ string) any { return int16(id) }},
		{"SELECT count(*) FROM it_ev_orders WHERE id = $1::int8", 0, func(id int32, _ int64, _, _ string) any { return int64(id) }},
		{"SELECT count(*) FROM it_ev_orders WHERE id::text = $1", 0, func(id int32, _ int64, _, _ string) any { return fmt.Sprint(id) }},
		{"SELECT count(*) FROM it_ev_orders WHERE user_id = $1", 1, func(_ int32, user int64, _, _ string) any { return user }},
		{"SELECT count(*) FROM it_ev_orders WHERE ref = $1", 2, func(_ int32, _ int64, ref, _ string) any { return strings.ToUpper(ref) }},
		{"SELECT count(*) FROM it_ev_orders WHERE code = $1", 3, func(_ int32, _ int64, _, code string) any { return code }},
	}

	for _, mode := range itExecModes {
		t.Run(mode, func(t *testing.T) {
			app := "it_ev_" + mode
			c := itConnect(t, ctx, p.URL(pgtest.Superuser, "default_query_exec_mode="+mode, "application_name="+app))
			type row struct {
				id         int32
				user       int64
				ref, code  string
				refPresent bool
			}
			var rs []row
			// Twice: the second time pgx's caches are warm (cache_statement
			// sends only Bind and Execute).
			for range 2 {
				rows, err := c.Query(ctx, source)
				if err != nil {
					t.Fatal(err)
				}
				rs = rs[:0]
				for rows.Next() {
					var r row
					var ref *string
					if err := rows.Scan(&r.id, &r.user, &ref, &r.code); err != nil {
						t.Fatal(err)
					}
					if ref != nil {
						r.ref, r.refPresent = *ref, true
					}
					rs = append(rs, r)
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
			}
			var wantLookups int
			for range 2 {
				for _, l := range lookups {
					for _, r := range rs {
						if l.col == 2 && !r.refPresent {
							continue
						}
						var n int64
						if err := c.QueryRow(ctx, l.sql, l.arg(r.id, r.user, r.ref, r.code)).Scan(&n); err != nil {
							t.Fatalf("%s: %v", l.sql, err)
						}
						if n != 1 {
							t.Fatalf("%s: %d rows", l.sql, n)
						}
						wantLookups++
					}
				}
			}

			srcs := p.WaitEvents(t, 2, itAppSQL(app, source))
			for _, e := range srcs {
				r := e.Result
				if r == nil || !slices.Equal(r.Columns, []string{"id", "user_id", "ref", "code"}) || r.Rows() != 3 || r.Truncated {
					t.Fatalf("source result %+v", r)
				}
				if r.Column(2)[2] != valuekey.None || r.Column(0)[0] == valuekey.None {
					t.Errorf("source keys %v: want a key for id 1 and none for the NULL ref", r.Digests())
				}
				if e.ParamKeys != nil {
					t.Errorf("source ParamKeys %v", e.ParamKeys)
				}
			}
			src := srcs[0].Result
			// The lookups' events arrive through the queue: wait for all.
			itEventually(t, 10*time.Second, func() (bool, string) {
				n := 0
				for _, l := range lookups {
					before, after, _ := strings.Cut(l.sql, "$1")
					n += len(p.Events(func(e *pgwire.Execution) bool {
						return itApp(app)(e) && strings.HasPrefix(e.SQL, before) && strings.HasSuffix(e.SQL, after) &&
							(mode == "simple_protocol" || e.SQL == l.sql)
					}))
				}
				return n >= wantLookups, fmt.Sprintf("%d lookup events, want %d", n, wantLookups)
			})
			got := 0
			for _, l := range lookups {
				before, after, _ := strings.Cut(l.sql, "$1") // the simple protocol has the literal there
				evs := p.Events(func(e *pgwire.Execution) bool {
					return itApp(app)(e) && strings.HasPrefix(e.SQL, before) && strings.HasSuffix(e.SQL, after) &&
						(mode == "simple_protocol" || e.SQL == l.sql)
				})
				if len(evs) != 2*len(rs) && !(l.col == 2 && len(evs) == 2*(len(rs)-1)) {
					t.Errorf("%s: %d events", l.sql, len(evs))
				}
				for _, e := range evs {
					got++
					if e.Result == nil || e.Result.Rows() != 1 {
						t.Errorf("%s: result %+v", l.sql, e.Result)
					}
					if mode == "simple_protocol" { // the key is a literal of the SQL
						if e.ParamKeys != nil {
							t.Errorf("%s: simple protocol with ParamKeys %v", l.sql, e.ParamKeys)
						}
						continue
					}
					if len(e.ParamKeys) != 1 || !slices.Contains(src.Column(l.col), e.ParamKeys[0]) {
						t.Errorf("%s: ParamKeys %v not among the source's column %q %v", l.sql, e.ParamKeys, src.Columns[l.col], src.Column(l.col))
					}
				}
			}
			if got != wantLookups {
				t.Errorf("%d lookup events, want %d", got, wantLookups)
			}
		})
	}

	// Everything attached was taken from the budget; the consumer gives it
	// back.
	itEventually(t, 5*time.Second, func() (bool, string) {
		size := 0
		for _, e := range p.Events(nil) {
			size += e.EvidenceSize()
		}
		return budget.Used() == int64(size), fmt.Sprintf("budget used %d, evidence attached %d", budget.Used(), size)
	})
	for _, e := range p.Events(nil) {
		budget.Give(e.EvidenceSize())
	}
	if budget.Used() != 0 || budget.Refused() != 0 {
		t.Errorf("budget used %d, refused %d after everything was given back", budget.Used(), budget.Refused())
	}
}

// Without Evidence nothing is hashed; with a budget too small, evidence is
// dropped and the executions still flow.
func TestEvidenceOffAndBudget(t *testing.T) {
	ctx := itCtx(t, 30*time.Second)
	off := itStartProxy(t, Config{})
	c := itConnect(t, ctx, off.URL(pgtest.Superuser, "application_name=it_ev_off"))
	if _, err := c.Exec(ctx, "SELECT n FROM generate_series(1, 3) n WHERE n > $1", 0); err != nil {
		t.Fatal(err)
	}
	for _, e := range off.WaitEvents(t, 1, itApp("it_ev_off")) {
		if e.ParamKeys != nil || e.Result != nil {
			t.Errorf("evidence without Config.Evidence: %v %+v", e.ParamKeys, e.Result)
		}
	}

	budget := pgwire.NewEvidenceBudget(16)
	tiny := itStartProxy(t, Config{Evidence: true, EvidenceBudget: budget})
	c = itConnect(t, ctx, tiny.URL(pgtest.Superuser, "application_name=it_ev_tiny"))
	if _, err := c.Exec(ctx, "SELECT n FROM generate_series(1, 3) n WHERE n > $1", 0); err != nil {
		t.Fatal(err)
	}
	evs := tiny.WaitEvents(t, 1, itAppSQL("it_ev_tiny", "SELECT n FROM generate_series(1, 3) n WHERE n > $1"))
	for _, e := range evs {
		if e.Result != nil || e.Rows != 3 {
			t.Errorf("over the budget: result %+v, rows %d", e.Result, e.Rows)
		}
	}
	if budget.Refused() == 0 || budget.Used() > 16 {
		t.Errorf("budget used %d, refused %d", budget.Used(), budget.Refused())
	}
}
