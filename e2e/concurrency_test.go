package e2e

// The concurrency class: independent requests served concurrently over a
// small connection pool, without a traceparent, the way a service under load
// serves them. Every pooled connection then runs the same shape back to back,
// with distinct keys, well within the idle gap; that is not an N+1, and the
// class checks that it is not reported as one. Under the same load, real N+1s
// (in one request, through a pool whose queries hop connections, nested, over
// keys from the request) must still be reported, with the evidence that
// proves them.
//
// Every case of the class connects with its own application_name (its name),
// and its findings are those of that application name (corpusCase.App).
// Node's cases are in node/concurrency.js; the keys of every case are chosen
// here (ccKeys) and handed to Node as JSON. TestCorpus runs the class with
// the rest of the corpus and reports it apart; to run only the class:
//
//	NPLUS1_CORPUS_CLASS=concurrency go test -count=1 -run TestCorpus ./e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nplus1/nplus1/internal/pgtest"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// classConcurrency is corpusCase.Class of the class.
const classConcurrency = "concurrency"

// The requests' statements (those of the shop's code paths are in
// go_clients_test.go).
const (
	qOrderByID       = "SELECT id, user_id, status FROM orders WHERE id = $1"
	qOrderForUpdate  = "SELECT id, user_id, status FROM orders WHERE id = $1 FOR UPDATE"
	qOrderSetStatus  = "UPDATE orders SET status = $2 WHERE id = $1"
	qOrderItemsOf    = "SELECT id, product_id, quantity FROM order_items WHERE order_id = $1 ORDER BY id"
	nestedUser       = 7  // the user whose invoice the nested N+1 builds (invoiceNPlusOne)
	qListLen         = 30 // rows the N+1's list returns
	ccNestedLoadSize = 40 // background requests of the nested cases
)

// ccKeys are the keys of every case of the class, chosen so that no key of
// the background traffic is among the values of the N+1's results, nor a key
// of the N+1 among the values of the background's results: the data flow an
// N+1 is proven by is then the N+1's own, never a coincidence of this data
// set (TestConcurrencyKeys checks it against the database). The Node cases
// get them as JSON (NPLUS1_E2E_KEYS).
type ccKeySet struct {
	// Orders are the independent requests' keys: orders 101..200, distinct.
	// Their users repeat (50 users): at most twice in 100 requests.
	Orders []int64 `json:"orders"`
	// BgOrders are the background requests' orders in the must-flag cases
	// over the list of open orders: orders 101..300 whose user is not among
	// the list's values (the list, the first 30 open orders, is orders
	// 1..44 less the multiples of 3, whose users are the same numbers). The
	// cases take the first 40: 20 users, each twice.
	BgOrders []int64 `json:"bgOrders"`
	// ListUsers are the users of the list's orders.
	ListUsers []int64 `json:"listUsers"`
	// DetailOrders and Products are the background of the nested cases:
	// order pages (the items of one order) and product pages, clear of the
	// values of user 7's orders, items and products; the products are clear
	// of the order pages' items, and the order pages' items hold none of
	// user 7's orders.
	DetailOrders []int64 `json:"detailOrders"`
	Products     []int64 `json:"products"`
	// FormUsers are the ids a request carries (a form, a batch API call):
	// keys from no result.
	FormUsers []int64 `json:"formUsers"`
	// QuietProducts are the background product pages of the repetition
	// cases: their results (names, prices in hundreds) hold no FormUsers.
	QuietProducts []int64 `json:"quietProducts"`
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

var ccKeys = func() ccKeySet {
	k := ccKeySet{
		Orders:       seq(101, 200),
		DetailOrders: []int64{111, 112, 113, 114, 115, 116, 117, 119},
		Products: []int64{4, 6, 9, 11, 13, 14, 16, 18, 20, 21, 22, 23, 25, 27, 29, 30,
			32, 34, 36, 43, 44, 46, 48, 50, 51, 53, 55, 58, 62, 65, 69, 72},
		FormUsers:     seq(20, 31),
		QuietProducts: seq(1, 40),
	}
	for o := int64(1); o <= 44; o++ {
		if o%3 != 0 {
			k.ListUsers = append(k.ListUsers, o) // order o's user is o
		}
	}
	for o := int64(101); o <= 300; o++ {
		if u := 1 + (o-1)%50; !slices.Contains(k.ListUsers, u) {
			k.BgOrders = append(k.BgOrders, o)
		}
	}
	return k
}()

// ccLoads are the pool sizes and the requests in flight over them.
var ccLoads = []struct{ pool, requests int }{{2, 30}, {4, 40}, {8, 100}}

// reqKind is what one independent request does.
type reqKind int

const (
	reqLookup    reqKind = iota // one lookup by id: the order
	reqDependent                // the order, then its customer by the order's user_id
	reqTx                       // BEGIN; the order FOR UPDATE; UPDATE its status (to what it is); COMMIT
)

func (k reqKind) String() string {
	return [...]string{"order_lookup", "order_then_customer", "order_update_tx"}[k]
}

// allInFlight runs fn(i) for every i in [0, n), all at once, and returns the
// first error.
func allInFlight(n int, fn func(i int) error) error { return fanOut(n, n, fn) }

// alongside runs the background load and the request under test at once and
// returns their errors.
func alongside(load, req func() error) error {
	var wg sync.WaitGroup
	var loadErr error
	wg.Go(func() { loadErr = load() })
	reqErr := req()
	wg.Wait()
	return errors.Join(reqErr, loadErr)
}

// ---- pgxpool ----

// ccPgxpool runs fn on a pool of size connections, all open and idle before
// fn starts, connected as application app.
func ccPgxpool(app string, size int, fn func(ctx context.Context, p *pgxpool.Pool) error) func(ctx context.Context) error {
	return withPool(size, fn, "application_name="+url.QueryEscape(app))
}

// pgxRequest is one independent request through the pool.
func pgxRequest(ctx context.Context, p *pgxpool.Pool, kind reqKind, order int64) error {
	var id, uid int64
	var status string
	switch kind {
	case reqLookup:
		return p.QueryRow(ctx, qOrderByID, order).Scan(&id, &uid, &status)
	case reqDependent:
		if err := p.QueryRow(ctx, qOrderByID, order).Scan(&id, &uid, &status); err != nil {
			return err
		}
		return loadUser(ctx, p, uid, "")
	default:
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, qOrderForUpdate, order).Scan(&id, &uid, &status); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, qOrderSetStatus, order, status)
			return err
		})
	}
}

// pgxListThenUsers is the N+1 of one request: the first 30 open orders, then
// each order's customer, one query each.
func pgxListThenUsers(ctx context.Context, q querier) error {
	uids, err := int64s(ctx, q, 1, qOpenOrders, "open", qListLen)
	if err != nil {
		return err
	}
	for _, uid := range uids {
		if err := loadUser(ctx, q, uid, ""); err != nil {
			return err
		}
	}
	return nil
}

// pgxDependentLoad is the background of the must-flag cases: n requests of
// the order-then-customer kind over BgOrders, pool-size of them in flight.
func pgxDependentLoad(ctx context.Context, p *pgxpool.Pool, n int) func() error {
	return func() error {
		return fanOut(n, int(p.Config().MaxConns), func(i int) error {
			return pgxRequest(ctx, p, reqDependent, ccKeys.BgOrders[i])
		})
	}
}

// ---- database/sql ----

// ccDB runs fn on a database/sql pool (pgx's stdlib driver) of size
// connections, all open before fn starts, connected as application app.
func ccDB(app string, size int, fn func(ctx context.Context, db *sql.DB) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		db, err := sql.Open("pgx", h.url("application_name="+url.QueryEscape(app)))
		if err != nil {
			return err
		}
		defer db.Close()
		db.SetMaxOpenConns(size)
		db.SetMaxIdleConns(size)
		var conns []*sql.Conn
		for range size {
			c, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			_ = c.Close()
		}
		return fn(ctx, db)
	}
}

// sqlRequest is one independent request through the pool.
func sqlRequest(ctx context.Context, db *sql.DB, kind reqKind, order int64) error {
	var id, uid int64
	var status string
	switch kind {
	case reqLookup:
		return db.QueryRowContext(ctx, qOrderByID, order).Scan(&id, &uid, &status)
	case reqDependent:
		if err := db.QueryRowContext(ctx, qOrderByID, order).Scan(&id, &uid, &status); err != nil {
			return err
		}
		return sqlLoadUser(ctx, db, uid)
	default:
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if err := tx.QueryRowContext(ctx, qOrderForUpdate, order).Scan(&id, &uid, &status); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qOrderSetStatus, order, status); err != nil {
			return err
		}
		return tx.Commit()
	}
}

// ---- GORM ----

// ccGorm runs fn on a GORM handle whose pool has size connections, all open
// before fn starts, connected as application app.
func ccGorm(app string, size int, fn func(ctx context.Context, db *gorm.DB) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		db, err := gorm.Open(postgres.New(postgres.Config{DSN: h.url("application_name=" + url.QueryEscape(app))}),
			&gorm.Config{Logger: logger.Discard})
		if err != nil {
			return err
		}
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		defer sqlDB.Close()
		sqlDB.SetMaxOpenConns(size)
		sqlDB.SetMaxIdleConns(size)
		var conns []*sql.Conn
		for range size {
			c, err := sqlDB.Conn(ctx)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			_ = c.Close()
		}
		return fn(ctx, db.WithContext(ctx))
	}
}

// gormRequest is one independent request as GORM code writes it.
func gormRequest(db *gorm.DB, kind reqKind, order int64) error {
	var o gormOrder
	switch kind {
	case reqLookup:
		return db.First(&o, order).Error
	case reqDependent:
		if err := db.First(&o, order).Error; err != nil {
			return err
		}
		var u gormUser
		return db.First(&u, o.UserID).Error
	default:
		return db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&o, order).Error; err != nil {
				return err
			}
			return tx.Model(&o).Update("status", o.Status).Error
		})
	}
}

// ---- the cases ----

// nPlusOneBy is the want of a must-flag case: an N+1 with the evidence that
// proves it.
func nPlusOneBy(table, source, evidence string) want {
	w := nPlusOne(table, source)
	w.Evidence = evidence
	return w
}

// spread marks w as a loop whose queries hopped pool connections: one
// finding, or one per connection it ran on, are equally right.
func spread(w want) want {
	w.Spread = true
	return w
}

// concurrencyCases is the class: Go's and Node's.
func concurrencyCases() []corpusCase {
	var cs []corpusCase
	add := func(c corpusCase) {
		c.Class = classConcurrency
		c.App = c.Name // the application_name it connects with
		cs = append(cs, c)
	}

	// Must not be flagged: independent requests, all in flight at once.
	for _, kind := range []reqKind{reqLookup, reqDependent, reqTx} {
		for _, l := range ccLoads {
			name := fmt.Sprintf("pgxpool/concurrent/%s/pool_%dx%d", kind, l.pool, l.requests)
			add(corpusCase{Name: name, Run: ccPgxpool(name, l.pool, func(ctx context.Context, p *pgxpool.Pool) error {
				return allInFlight(l.requests, func(i int) error { return pgxRequest(ctx, p, kind, ccKeys.Orders[i]) })
			})})
		}
	}
	{
		// The brief's lower bound: 10 requests over 2 connections.
		name := "pgxpool/concurrent/order_lookup/pool_2x10"
		known := []want{nPlusOneBy("orders", noSource, "repetition")}
		add(corpusCase{Name: name, Known: &known, Note: "a limit of the wire when the machine is loaded: " +
			"the pool may serve all ten requests on one connection, which then looks like a quiet connection " +
			"looping over keys from the request (a loop that must be flagged)",
			Run: ccPgxpool(name, 2, func(ctx context.Context, p *pgxpool.Pool) error {
				return allInFlight(10, func(i int) error { return pgxRequest(ctx, p, reqLookup, ccKeys.Orders[i]) })
			})})
	}
	for _, kind := range []reqKind{reqLookup, reqDependent, reqTx} {
		for _, l := range ccLoads {
			name := fmt.Sprintf("database/sql/concurrent/%s/pool_%dx%d", kind, l.pool, l.requests)
			add(corpusCase{Name: name, Run: ccDB(name, l.pool, func(ctx context.Context, db *sql.DB) error {
				return allInFlight(l.requests, func(i int) error { return sqlRequest(ctx, db, kind, ccKeys.Orders[i]) })
			})})
		}
	}
	// GORM selects *: its lookups' select_star findings are true.
	gormStars := map[reqKind][]want{
		reqLookup:    {selectStar("orders")},
		reqDependent: {selectStar("orders"), selectStar("users")},
		reqTx:        {selectStar("orders")},
	}
	for _, kind := range []reqKind{reqLookup, reqDependent, reqTx} {
		name := fmt.Sprintf("gorm/concurrent/%s/pool_4x40", kind)
		add(corpusCase{Name: name, Want: gormStars[kind], Run: ccGorm(name, 4, func(ctx context.Context, db *gorm.DB) error {
			return allInFlight(40, func(i int) error { return gormRequest(db, kind, ccKeys.Orders[i]) })
		})})
	}
	{
		// Not in the brief's list, the same class seen from the data-flow
		// side: one request lists 30 open orders and loads their users in
		// one batched query, while 30 independent requests each look up
		// one user, the users of that list (a small key space: a profile
		// page of a customer who has open orders). Each pooled connection
		// runs the user lookup back to back with keys found in another
		// connection's result, by coincidence.
		name := "pgxpool/concurrent/lookups_coinciding_with_a_list/pool_4x30"
		known := []want{spread(nPlusOneBy("users", "orders", "data_flow"))}
		add(corpusCase{Name: name, Known: &known, Note: "a known limit of the wire: independent lookups whose keys are " +
			"exactly the user_ids of a list another pooled connection just returned, right after it, are the traffic of a " +
			"loop through a pool; without a trace id nothing tells them apart",
			Run: ccPgxpool(name, 4, func(ctx context.Context, p *pgxpool.Pool) error {
				return alongside(
					func() error {
						return allInFlight(len(ccKeys.ListUsers), func(i int) error { return loadUser(ctx, p, ccKeys.ListUsers[i], "") })
					},
					func() error { return ordersWithUserBatched(ctx, p, qListLen) })
			})})
	}

	// Must be flagged, under the same load.
	{
		// (1) A real N+1 in one request, on the connection it holds, while
		// 40 requests run the same lookup on the pool's other connections.
		name := "pgxpool/concurrent/n+1_in_one_request/pool_4x40"
		add(corpusCase{Name: name, Want: []want{nPlusOneBy("users", "orders", "data_flow")},
			Run: ccPgxpool(name, 4, func(ctx context.Context, p *pgxpool.Pool) error {
				return alongside(pgxDependentLoad(ctx, p, 40), func() error {
					return p.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return pgxListThenUsers(ctx, c) })
				})
			})})
	}
	{
		name := "gorm/concurrent/n+1_in_tx/pool_4x40"
		add(corpusCase{
			Name: name,
			// Two SELECT * of orders: the list and the background's First.
			Want: []want{nPlusOneBy("users", "orders", "data_flow"), selectStar("orders"), selectStar("orders"), selectStar("users")},
			Run: ccGorm(name, 4, func(ctx context.Context, db *gorm.DB) error {
				return alongside(
					func() error {
						return fanOut(40, 4, func(i int) error { return gormRequest(db, reqDependent, ccKeys.BgOrders[i]) })
					},
					func() error {
						return db.Transaction(func(tx *gorm.DB) error {
							var orders []gormOrder
							if err := tx.Where("status = ?", "open").Order("id").Limit(qListLen).Find(&orders).Error; err != nil {
								return err
							}
							for _, o := range orders {
								var u gormUser
								if err := tx.First(&u, o.UserID).Error; err != nil {
									return err
								}
							}
							return nil
						})
					})
			}),
		})
	}
	{
		// (2) The loop calls the pool for every lookup: under load each
		// call gets whichever connection is free, so the lookups hop
		// connections, away from the list's.
		name := "pgxpool/concurrent/n+1_hopping_pool/pool_4x40"
		add(corpusCase{Name: name, Want: []want{spread(nPlusOneBy("users", "orders", "data_flow"))},
			Run: ccPgxpool(name, 4, func(ctx context.Context, p *pgxpool.Pool) error {
				return alongside(pgxDependentLoad(ctx, p, 40), func() error { return pgxListThenUsers(ctx, p) })
			})})
	}
	{
		name := "database/sql/concurrent/n+1_hopping_pool/pool_4x40"
		add(corpusCase{Name: name, Want: []want{spread(nPlusOneBy("users", "orders", "data_flow"))},
			Run: ccDB(name, 4, func(ctx context.Context, db *sql.DB) error {
				return alongside(
					func() error {
						return fanOut(40, 4, func(i int) error { return sqlRequest(ctx, db, reqDependent, ccKeys.BgOrders[i]) })
					},
					func() error {
						uids, err := sqlOrderUserIDs(ctx, db, qListLen)
						if err != nil {
							return err
						}
						for _, uid := range uids {
							if err := sqlLoadUser(ctx, db, uid); err != nil {
								return err
							}
						}
						return nil
					})
			})})
	}
	{
		// (3) A nested loop in one request's transaction: user 7's
		// orders, each order's items, each item's product; meanwhile 40
		// requests load order pages and product pages (the same two
		// lookups) on the other connections.
		name := "pgxpool/concurrent/nested_n+1_in_tx/pool_4x40"
		add(corpusCase{
			Name: name,
			Want: []want{nPlusOneBy("order_items", "orders", "data_flow"), nPlusOneBy("products", "order_items", "data_flow")},
			Run: ccPgxpool(name, 4, func(ctx context.Context, p *pgxpool.Pool) error {
				return alongside(pgxPagesLoad(ctx, p), func() error {
					return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error { return invoiceNPlusOne(ctx, tx) })
				})
			}),
		})
	}
	{
		// (4) A loop over ids the request carries (no result holds them)
		// on the connection the request holds, while 40 product pages run
		// on the others: no other connection runs the users lookup.
		name := "pgxpool/concurrent/request_ids_loop_quiet_conn/pool_4x40"
		add(corpusCase{Name: name, Want: []want{nPlusOneBy("users", noSource, "repetition")},
			Run: ccPgxpool(name, 4, func(ctx context.Context, p *pgxpool.Pool) error {
				return alongside(
					func() error {
						return fanOut(40, 3, func(i int) error {
							var pname string
							var price int32
							return p.QueryRow(ctx, qProduct, ccKeys.QuietProducts[i]).Scan(&pname, &price)
						})
					},
					func() error {
						return p.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
							for _, id := range ccKeys.FormUsers {
								if err := loadUser(ctx, c, id, ""); err != nil {
									return err
								}
							}
							return nil
						})
					})
			})})
	}
	return append(cs, nodeConcurrencyCases()...)
}

// pgxPagesLoad is the background of the nested case: DetailOrders order
// pages (one order's items) and Products product pages, one order page every
// fifth request, the pool's size of them in flight.
func pgxPagesLoad(ctx context.Context, p *pgxpool.Pool) func() error {
	var reqs []func() error
	d, k := ccKeys.DetailOrders, ccKeys.Products
	for i := 0; len(d)+len(k) > 0; i++ {
		if i%5 == 0 && len(d) > 0 || len(k) == 0 {
			order := d[0]
			d = d[1:]
			reqs = append(reqs, func() error { _, err := int64s(ctx, p, 0, qOrderItemsOf, order); return err })
			continue
		}
		product := k[0]
		k = k[1:]
		reqs = append(reqs, func() error {
			var name string
			var price int32
			return p.QueryRow(ctx, qProduct, product).Scan(&name, &price)
		})
	}
	return func() error {
		return fanOut(len(reqs), int(p.Config().MaxConns), func(i int) error { return reqs[i]() })
	}
}

// nodeConcurrencyCases are the class's Node cases, in node/concurrency.js
// under the same names.
func nodeConcurrencyCases() []corpusCase {
	type nc struct {
		name  string
		want  []want
		known *[]want
		note  string
	}
	var ncs []nc
	for _, kind := range []reqKind{reqLookup, reqDependent, reqTx} {
		for _, l := range ccLoads {
			ncs = append(ncs, nc{name: fmt.Sprintf("pg/concurrent/%s/pool_%dx%d", kind, l.pool, l.requests)})
		}
	}
	for _, kind := range []reqKind{reqLookup, reqDependent, reqTx} {
		ncs = append(ncs, nc{name: fmt.Sprintf("sequelize/concurrent/%s/pool_4x40", kind)})
	}
	ncs = append(ncs,
		nc{name: "pg/concurrent/n+1_in_one_request/pool_4x40", want: []want{nPlusOneBy("users", "orders", "data_flow")}},
		nc{name: "pg/concurrent/n+1_hopping_pool/pool_4x40", want: []want{spread(nPlusOneBy("users", "orders", "data_flow"))}},
		nc{name: "sequelize/concurrent/n+1_hopping_pool/pool_4x40", want: []want{spread(nPlusOneBy("users", "orders", "data_flow"))}},
		nc{name: "pg/concurrent/nested_n+1/pool_4x40", want: []want{
			nPlusOneBy("order_items", "orders", "data_flow"), nPlusOneBy("products", "order_items", "data_flow"),
		}, known: &[]want{
			nPlusOneBy("order_items", "orders", "data_flow"), nPlusOneBy("products", "order_items", "data_flow"),
			nPlusOneBy("order_items", noSource, "repetition"),
		}, note: "a limit of the wire when the machine is loaded: the pool may serve a run of the other " +
			"requests' item lookups on one connection while the others serve product lookups, which then " +
			"looks like a quiet connection looping over keys from the request"},
		nc{name: "pg/concurrent/request_ids_loop_quiet_conn/pool_4x40", want: []want{nPlusOneBy("users", noSource, "repetition")}},
	)
	keys, err := json.Marshal(ccKeys)
	if err != nil {
		panic(err)
	}
	var cs []corpusCase
	for _, n := range ncs {
		name := "node-" + n.name
		app := name
		cs = append(cs, corpusCase{
			Name: name, Want: n.want, Known: n.known, Note: n.note, Class: classConcurrency, App: app,
			Run: func(ctx context.Context) error {
				return runNode(ctx, n.name, "NPLUS1_E2E_APPLICATION_NAME="+app, "NPLUS1_E2E_KEYS="+string(keys))
			},
		})
	}
	return cs
}

// TestConcurrencyKeys checks what ccKeys promises, on the database itself
// (not through the proxy): the background's keys are not among the values of
// the N+1's results, nor the N+1's keys among the background's results, and
// the independent requests' keys are distinct; and that every case's
// application name is its own and fits PostgreSQL's 63 bytes.
func TestConcurrencyKeys(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, h.pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// values is every integer value of every row of sql, for each args.
	values := func(sql string, args ...[]any) map[int64]bool {
		t.Helper()
		out := map[int64]bool{}
		if len(args) == 0 {
			args = [][]any{nil}
		}
		for _, a := range args {
			rows, err := c.Query(ctx, sql, a...)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			for rows.Next() {
				vs, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range vs {
					switch v := v.(type) {
					case int64:
						out[v] = true
					case int32:
						out[int64(v)] = true
					}
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	each := func(ks []int64) [][]any {
		var a [][]any
		for _, k := range ks {
			a = append(a, []any{k})
		}
		return a
	}
	clear := func(what string, keys []int64, vals map[int64]bool) {
		t.Helper()
		for _, k := range keys {
			if vals[k] {
				t.Errorf("%s: %d is among the values", what, k)
			}
		}
	}

	list := values(qOpenOrders, []any{"open", qListLen})
	listUsers := values("SELECT user_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 30")
	var lu []int64
	for u := range listUsers {
		lu = append(lu, u)
	}
	slices.Sort(lu)
	if !slices.Equal(lu, ccKeys.ListUsers) {
		t.Errorf("the list's users are %v, ListUsers %v", lu, ccKeys.ListUsers)
	}
	bg := ccKeys.BgOrders[:40]
	bgUsers := values("SELECT user_id FROM orders WHERE id = ANY($1)", []any{bg})
	clear("background orders vs the list", bg, list)
	var bu []int64
	for u := range bgUsers {
		bu = append(bu, u)
	}
	clear("background users vs the list", bu, list)
	clear("the list's users vs the background's results", ccKeys.ListUsers, values(qOrderByID, each(bg)...))

	orders := values(qUserOrders, []any{int64(nestedUser)})
	var userOrders []int64
	for o := range orders {
		userOrders = append(userOrders, o)
	}
	items := values(qOrderItems, each(userOrders)...)
	nested := map[int64]bool{nestedUser: true}
	for v := range orders {
		nested[v] = true
	}
	for v := range items {
		nested[v] = true
	}
	clear("order pages vs the nested N+1", ccKeys.DetailOrders, nested)
	clear("product pages vs the nested N+1", ccKeys.Products, nested)
	clear("product pages vs the order pages", ccKeys.Products, values(qOrderItemsOf, each(ccKeys.DetailOrders)...))
	clear("order pages vs the product pages", ccKeys.DetailOrders, values(qProduct, each(ccKeys.Products)...))
	clear("the nested N+1's orders vs the pages", userOrders, values(qOrderItemsOf, each(ccKeys.DetailOrders)...))
	if len(ccKeys.Products)+len(ccKeys.DetailOrders) != ccNestedLoadSize {
		t.Errorf("the nested background has %d requests, want %d", len(ccKeys.Products)+len(ccKeys.DetailOrders), ccNestedLoadSize)
	}

	clear("form ids vs the product pages", ccKeys.FormUsers, values(qProduct, each(ccKeys.QuietProducts)...))
	if len(slices.Compact(slices.Clone(ccKeys.Orders))) != 100 {
		t.Error("the requests' orders are not 100 distinct keys")
	}

	apps := map[string]bool{}
	for _, c := range concurrencyCases() {
		if len(c.App) > 63 || apps[c.App] {
			t.Errorf("%s: application name %q is too long or not its own", c.Name, c.App)
		}
		apps[c.App] = true
	}
}
