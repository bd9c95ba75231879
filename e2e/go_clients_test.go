package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The shop's code paths, written once for every pgx flavour (conn, pool,
// acquired pool conn, transaction).
const (
	qOpenOrders      = "SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT $2"
	qUser            = "SELECT name, email FROM users WHERE id = $1"
	qUsersAny        = "SELECT id, name, email FROM users WHERE id = ANY($1)"
	qOrdersWithUsers = `SELECT o.id, u.name, u.email FROM orders o JOIN users u ON u.id = o.user_id
		WHERE o.status = $1 ORDER BY o.id LIMIT $2`
	qUserOrders  = "SELECT id FROM orders WHERE user_id = $1 ORDER BY id"
	qOrderItems  = "SELECT id, product_id, quantity FROM order_items WHERE order_id = $1"
	qProduct     = "SELECT name, price_cents FROM products WHERE id = $1"
	qInvoiceJoin = `SELECT o.id, i.quantity, p.name, p.price_cents
		FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
		WHERE o.user_id = $1 ORDER BY o.id, i.id`
	qAllItems       = "SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id"
	qItemsAfter     = "SELECT id, order_id, product_id, quantity FROM order_items WHERE id > $1 ORDER BY id LIMIT 500"
	qOpenOrdersPage = "SELECT id, user_id, status FROM orders WHERE status = $1 ORDER BY id LIMIT 50 OFFSET $2"
	qProductStar    = "SELECT * FROM products WHERE id = $1"
	qProductNamed   = "SELECT id, name, price_cents FROM products WHERE id = $1"
)

// querier is what *pgx.Conn, *pgxpool.Pool, *pgxpool.Conn and pgx.Tx share.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// int64s runs sql and returns column col of every row (read whole, as an ORM
// would).
func int64s(ctx context.Context, q querier, col int, sql string, args ...any) ([]int64, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var out []int64
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return nil, err
		}
		switch v := vals[col].(type) {
		case int64:
			out = append(out, v)
		case int32:
			out = append(out, int64(v))
		default:
			rows.Close()
			return nil, fmt.Errorf("%s: column %d is %T, want an integer", sql, col, vals[col])
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", sql, err)
	}
	return out, nil
}

// loadUser is one lookup of a user by id.
func loadUser(ctx context.Context, q querier, id int64, comment string) error {
	var name, email string
	return q.QueryRow(ctx, qUser+comment, id).Scan(&name, &email)
}

// ordersWithUserNPlusOne lists n open orders, then loads each order's user
// with one query per order, doing work between iterations.
func ordersWithUserNPlusOne(ctx context.Context, q querier, n int, work time.Duration) error {
	uids, err := int64s(ctx, q, 1, qOpenOrders, "open", n)
	if err != nil {
		return err
	}
	for _, uid := range uids {
		if err := loadUser(ctx, q, uid, ""); err != nil {
			return err
		}
		time.Sleep(work)
	}
	return nil
}

// ordersWithUserBatched is the fix: the users of all the orders in one query.
func ordersWithUserBatched(ctx context.Context, q querier, n int) error {
	uids, err := int64s(ctx, q, 1, qOpenOrders, "open", n)
	if err != nil {
		return err
	}
	_, err = int64s(ctx, q, 0, qUsersAny, uids)
	return err
}

// invoiceNPlusOne is a nested loop: a user's orders, each order's items,
// each item's product.
func invoiceNPlusOne(ctx context.Context, q querier) error {
	orders, err := int64s(ctx, q, 0, qUserOrders, int64(7))
	if err != nil {
		return err
	}
	for _, o := range orders {
		products, err := int64s(ctx, q, 1, qOrderItems, o)
		if err != nil {
			return err
		}
		for _, p := range products {
			var name string
			var price int32
			if err := q.QueryRow(ctx, qProduct, p).Scan(&name, &price); err != nil {
				return err
			}
		}
	}
	return nil
}

// pgxConn runs fn on a new connection to the proxy, closed afterwards.
func pgxConn(fn func(ctx context.Context, c *pgx.Conn) error, params ...string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, h.url(params...))
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		return fn(ctx, c)
	}
}

// pgxTx runs fn in a transaction on a new connection.
func pgxTx(fn func(ctx context.Context, q querier) error) func(ctx context.Context) error {
	return pgxConn(func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return fn(ctx, tx) })
	})
}

// withPool runs fn on a new pool of size conns, every connection open and
// idle before fn starts (as in a warmed-up service); extra are connection
// parameters ("application_name=x").
func withPool(size int, fn func(ctx context.Context, p *pgxpool.Pool) error, extra ...string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		cfg, err := pgxpool.ParseConfig(h.url(extra...))
		if err != nil {
			return err
		}
		cfg.MaxConns, cfg.MinConns = int32(size), 0
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		var conns []*pgxpool.Conn
		for range size {
			c, err := p.Acquire(ctx)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Release()
		}
		return fn(ctx, p)
	}
}

// traceComment is a sqlcommenter comment carrying a new W3C traceparent, as
// an instrumented web framework appends to every query of one request.
func traceComment() string {
	var id [16]byte
	var span [8]byte
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(span[:])
	return fmt.Sprintf(" /*traceparent='00-%s-%s-01'*/", hex.EncodeToString(id[:]), hex.EncodeToString(span[:]))
}

// fanOut runs fn(i) for i in [0, n) on workers goroutines and returns the
// first error.
func fanOut(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

// goCases are the corpus cases of the Go clients; gormCases and sqlCases
// add those of GORM and database/sql.
func goCases() []corpusCase {
	cs := []corpusCase{
		// pgx, one connection, default (cached prepared statements).
		{
			Name: "pgx/orders_with_user/n+1",
			Want: []want{nPlusOne("users", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserNPlusOne(ctx, c, 20, 0)
			}),
		},
		{
			Name: "pgx/orders_with_user/fixed_any",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserBatched(ctx, c, 20)
			}),
		},
		{
			Name: "pgx/orders_with_user/fixed_join",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qOrdersWithUsers, "open", 20)
				return err
			}),
		},
		{
			Name: "pgx/orders_with_user/n+1_3ms_work",
			Want: []want{nPlusOne("users", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserNPlusOne(ctx, c, 20, 3*time.Millisecond)
			}),
		},
		{
			Name: "pgx/orders_with_user/loop_of_4",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserNPlusOne(ctx, c, 4, 0)
			}),
		},
		{
			Name: "pgx/orders_with_user/loop_of_5",
			Want: []want{nPlusOne("users", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserNPlusOne(ctx, c, 5, 0)
			}),
		},
		{
			Name: "pgx/orders_with_user/n+1_simple_protocol",
			Want: []want{nPlusOne("users", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserNPlusOne(ctx, c, 20, 0)
			}, "default_query_exec_mode=simple_protocol"),
		},
		{
			Name: "pgx/orders_with_user/fixed_any_simple_protocol",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return ordersWithUserBatched(ctx, c, 20)
			}, "default_query_exec_mode=simple_protocol"),
		},
		{
			// The ids come from the request, not from a query: an N+1 with
			// no source.
			Name: "pgx/users_by_request_ids/n+1_no_source",
			Want: []want{nPlusOne("users", noSource)},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for id := range int64(12) {
					if err := loadUser(ctx, c, 20+id, ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/users_by_request_ids/fixed_any",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qUsersAny, []int64{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31})
				return err
			}),
		},
		{
			// The lookups queued in one pgx.Batch: pipelined, one round
			// trip, still one query per order (the rule counts executions).
			Name: "pgx/orders_with_user/n+1_pipelined_batch",
			Want: []want{nPlusOne("users", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 1, qOpenOrders, "open", 20)
				if err != nil {
					return err
				}
				b := &pgx.Batch{}
				for _, uid := range uids {
					b.Queue(qUser, uid)
				}
				return c.SendBatch(ctx, b).Close()
			}),
		},
		{
			// Orders of 5 users, 6 each: 30 lookups of 5 users. One N+1
			// that revisits keys, not also a duplicate.
			Name: "pgx/orders_with_user/n+1_repeating_keys",
			Want: []want{nPlusOne("users", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 1, "SELECT id, user_id FROM orders WHERE user_id <= $1 ORDER BY id", 5)
				if err != nil {
					return err
				}
				for _, uid := range uids {
					if err := loadUser(ctx, c, uid, ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// Orders of 3 users: 18 lookups of only 3 users, each 6 times.
			// Too few distinct keys for an N+1; the same user loaded again
			// and again is a duplicate.
			Name: "pgx/orders_with_user/three_users_many_times",
			Want: []want{duplicate("users")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 1, "SELECT id, user_id FROM orders WHERE user_id <= $1 ORDER BY id", 3)
				if err != nil {
					return err
				}
				for _, uid := range uids {
					if err := loadUser(ctx, c, uid, ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// For each order: its user and its items (A B A B ...).
			Name: "pgx/orders_with_user_and_items/n+1_interleaved",
			Want: []want{nPlusOne("users", "orders"), nPlusOne("order_items", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				rows, err := c.Query(ctx, qOpenOrders, "open", 10)
				if err != nil {
					return err
				}
				type order struct{ id, uid int64 }
				orders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (order, error) {
					var o order
					return o, r.Scan(&o.id, &o.uid)
				})
				if err != nil {
					return err
				}
				for _, o := range orders {
					if err := loadUser(ctx, c, o.uid, ""); err != nil {
						return err
					}
					if _, err := int64s(ctx, c, 0, qOrderItems, o.id); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/invoice/nested_n+1_in_tx",
			Want: []want{nPlusOne("order_items", "orders"), nPlusOne("products", "order_items")},
			Run:  pgxTx(invoiceNPlusOne),
		},
		{
			// The nested loop with a 700ms stall after every second order's
			// items, before their products are looked up: the products'
			// source is the union of the items' results, so only reopening
			// the window keeps the loop whole.
			Name: "pgx/invoice/nested_n+1_stalled_700ms",
			Want: []want{nPlusOneBy("order_items", "orders", "data_flow"), nPlusOneBy("products", "order_items", "data_flow")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				orders, err := int64s(ctx, c, 0, qUserOrders, int64(7))
				if err != nil {
					return err
				}
				for i, o := range orders {
					products, err := int64s(ctx, c, 1, qOrderItems, o)
					if err != nil {
						return err
					}
					if i%2 == 1 && i < 6 {
						time.Sleep(700 * time.Millisecond)
					}
					for _, p := range products {
						var name string
						var price int32
						if err := c.QueryRow(ctx, qProduct, p).Scan(&name, &price); err != nil {
							return err
						}
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/invoice/fixed_join_in_tx",
			Run: pgxTx(func(ctx context.Context, q querier) error {
				_, err := int64s(ctx, q, 0, qInvoiceJoin, int64(7))
				return err
			}),
		},
		{
			Name: "pgx/invoice/fixed_any_in_tx",
			Run: pgxTx(func(ctx context.Context, q querier) error {
				orders, err := int64s(ctx, q, 0, qUserOrders, int64(7))
				if err != nil {
					return err
				}
				products, err := int64s(ctx, q, 1, "SELECT id, product_id, quantity FROM order_items WHERE order_id = ANY($1)", orders)
				if err != nil {
					return err
				}
				_, err = int64s(ctx, q, 0, "SELECT id, name, price_cents FROM products WHERE id = ANY($1)", products)
				return err
			}),
		},
		{
			// "The 3 latest items of each order": an N+1 whose repeated
			// query has a LIMIT and, because every order has at least 3
			// items, returns a full page each time.
			Name: "pgx/orders_latest_items/n+1_limit_per_parent",
			Want: []want{nPlusOne("order_items", "orders")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				orders, err := int64s(ctx, c, 0, qUserOrders, int64(7))
				if err != nil {
					return err
				}
				for _, o := range orders {
					if _, err := int64s(ctx, c, 0, "SELECT id, product_id FROM order_items WHERE order_id = $1 ORDER BY id DESC LIMIT 3", o); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/orders_latest_items/fixed_lateral",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, `SELECT o.id, i.id, i.product_id FROM orders o
					CROSS JOIN LATERAL (SELECT id, product_id FROM order_items WHERE order_id = o.id ORDER BY id DESC LIMIT 3) i
					WHERE o.user_id = $1 ORDER BY o.id`, int64(7))
				return err
			}),
		},
		{
			Name: "pgx/order_counts/n+1",
			Want: []want{nPlusOne("orders", "users")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 0, "SELECT id FROM users ORDER BY id LIMIT 20")
				if err != nil {
					return err
				}
				for _, uid := range uids {
					var n int64
					if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE user_id = $1", uid).Scan(&n); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/order_counts/fixed_group_by",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 0, "SELECT id FROM users ORDER BY id LIMIT 20")
				if err != nil {
					return err
				}
				_, err = int64s(ctx, c, 0, "SELECT user_id, count(*) FROM orders WHERE user_id = ANY($1) GROUP BY user_id", uids)
				return err
			}),
		},
		{
			Name: "pgx/current_user/duplicate",
			Want: []want{duplicate("users")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for range 4 {
					if err := loadUser(ctx, c, 3, ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/current_user/fixed",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return loadUser(ctx, c, 3, "")
			}),
		},
		{
			Name: "pgx/export_items/unpaginated",
			Want: []want{unpaginated("order_items")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qAllItems)
				return err
			}),
		},
		{
			Name: "pgx/export_items/fixed_keyset",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for last := int64(0); ; {
					ids, err := int64s(ctx, c, 0, qItemsAfter, last)
					if err != nil || len(ids) == 0 {
						return err
					}
					last = ids[len(ids)-1]
				}
			}),
		},
		{
			// LIMIT 50 OFFSET n pages over the 200 open orders, the offset
			// bound as a parameter: 4 full pages, then an empty one.
			Name: "pgx/open_orders/pages_limit_50_offset_param",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for off := 0; ; off += 50 {
					ids, err := int64s(ctx, c, 0, qOpenOrdersPage, "open", off)
					if err != nil || len(ids) < 50 {
						return err
					}
				}
			}),
		},
		{
			// The same pages with the offset written into the SQL text.
			Name: "pgx/all_orders/pages_limit_50_offset_literal",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for off := 0; ; off += 50 {
					ids, err := int64s(ctx, c, 0, fmt.Sprintf("SELECT id, user_id, status FROM orders ORDER BY id LIMIT 50 OFFSET %d", off))
					if err != nil || len(ids) < 50 {
						return err
					}
				}
			}),
		},
		{
			Name: "pgx/product/select_star",
			Want: []want{selectStar("products")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qProductStar, int64(42))
				return err
			}),
		},
		{
			Name: "pgx/product/fixed_named_columns",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qProductNamed, int64(42))
				return err
			}),
		},
		{
			Name: "pgx/stats/count_star",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				var n int64
				if err := c.QueryRow(ctx, "SELECT count(*) FROM order_items").Scan(&n); err != nil {
					return err
				}
				_, err := int64s(ctx, c, 1, "SELECT status, count(*) FROM orders GROUP BY status")
				return err
			}),
		},
		{
			Name: "pgx/health/select_1_and_ping",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for range 10 {
					var one int
					if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
						return err
					}
					if err := c.Ping(ctx); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// An INSERT per order of a list, autocommit: an N+1 of writes
			// proven by the data flow.
			Name: "pgx/audit/insert_loop",
			Want: []want{nPlusOneWrite("audit_log", "orders", "data_flow")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := int64s(ctx, c, 0, qOpenOrders, "open", 20)
				if err != nil {
					return err
				}
				for _, id := range ids {
					if _, err := c.Exec(ctx, "INSERT INTO audit_log (order_id, note) VALUES ($1, $2)", id, "viewed"); err != nil {
						return err
					}
				}
				return nil
			}),
		},

		// pgxpool: several connections.
		{
			// One request acquires a connection and runs its loop there,
			// while the pool's other connections sit idle.
			Name: "pgxpool/orders_with_user/n+1_on_acquired_conn",
			Want: []want{nPlusOne("users", "orders")},
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				return p.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
					return ordersWithUserNPlusOne(ctx, c, 20, 0)
				})
			}),
		},
		{
			Name: "pgxpool/orders_with_user/fixed_on_acquired_conn",
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				return p.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
					return ordersWithUserBatched(ctx, c, 20)
				})
			}),
		},
		{
			// The loop calls the pool for every query; each call takes the
			// most recently released connection, so the loop stays on one.
			Name: "pgxpool/orders_with_user/n+1_via_pool",
			Want: []want{nPlusOne("users", "orders")},
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				return ordersWithUserNPlusOne(ctx, p, 20, 0)
			}),
		},
		{
			// The client stalls for 250ms in the middle of the loop (as a
			// SIGSTOP or a starved CPU does): one N+1 of 20 with its source,
			// not two halves of 10 judged apart.
			Name: "pgx/orders_with_user/n+1_stalled_250ms",
			Want: []want{nPlusOneBy("users", "orders", "data_flow")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 1, qOpenOrders, "open", 20)
				if err != nil {
					return err
				}
				for i, uid := range uids {
					if i == 3 {
						time.Sleep(250 * time.Millisecond)
					}
					if err := loadUser(ctx, c, uid, ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// Stalls longer than StallGap, every 4 lookups (700ms, four
			// times): no piece reaches the threshold, but the window opens
			// again each time the loop goes on; one N+1 of 20 with its
			// source.
			Name: "pgx/orders_with_user/n+1_stalled_700ms_every_4",
			Want: []want{nPlusOneBy("users", "orders", "data_flow")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 1, qOpenOrders, "open", 20)
				if err != nil {
					return err
				}
				for i, uid := range uids {
					if i > 0 && i%4 == 0 {
						time.Sleep(700 * time.Millisecond)
					}
					if err := loadUser(ctx, c, uid, ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// Two requests a second apart on one connection, each listing
			// the orders and loading 3 users: neither continues the other's
			// loop, so nothing is joined.
			Name: "pgx/orders_with_user/two_requests_1s_apart_3_users_each",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				for r := range 2 {
					if r > 0 {
						time.Sleep(time.Second)
					}
					uids, err := int64s(ctx, c, 1, qOpenOrders, "open", 20)
					if err != nil {
						return err
					}
					for _, uid := range uids[3*r : 3*r+3] {
						if err := loadUser(ctx, c, uid, ""); err != nil {
							return err
						}
					}
				}
				return nil
			}),
		},
		{
			// Its fix, with the same stall between the list and the batch.
			Name: "pgx/orders_with_user/fixed_any_stalled_250ms",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				uids, err := int64s(ctx, c, 1, qOpenOrders, "open", 20)
				if err != nil {
					return err
				}
				time.Sleep(250 * time.Millisecond)
				_, err = int64s(ctx, c, 0, qUsersAny, uids)
				return err
			}),
		},
		{
			// Four concurrent requests, each with the N+1 on its own
			// connection of one pool: one finding for the pool scope (the
			// cooldown is the scope's), its occurrences counting the rest.
			Name: "pgxpool/orders_with_user/4_concurrent_requests_n+1",
			Want: []want{nPlusOne("users", "orders")},
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				var conns []*pgxpool.Conn
				for range 4 {
					c, err := p.Acquire(ctx)
					if err != nil {
						return err
					}
					conns = append(conns, c)
				}
				return fanOut(4, 4, func(i int) error {
					defer conns[i].Release()
					return ordersWithUserNPlusOne(ctx, conns[i], 20, 0)
				})
			}),
		},
		{
			// Ordinary traffic: one lookup per request, requests 150ms
			// apart, on a pooled connection.
			Name:  "pgxpool/user_lookup/one_per_request_150ms_apart",
			Paced: true,
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				for i := range 8 {
					if i > 0 {
						time.Sleep(150 * time.Millisecond)
					}
					if err := loadUser(ctx, p, int64(10+i), ""); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// One traced request fans its lookups out over four pooled
			// connections at once: grouped by trace id, still one N+1.
			Name: "pgxpool/orders_with_user/n+1_fanned_out_one_trace",
			Want: []want{nPlusOne("users", "orders")},
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				tc := traceComment()
				uids, err := int64s(ctx, p, 1, qOpenOrders+tc, "open", 20)
				if err != nil {
					return err
				}
				return fanOut(len(uids), 4, func(i int) error { return loadUser(ctx, p, uids[i], tc) })
			}),
		},
		{
			Name: "pgxpool/orders_with_user/fixed_any_one_trace",
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				tc := traceComment()
				uids, err := int64s(ctx, p, 1, qOpenOrders+tc, "open", 20)
				if err != nil {
					return err
				}
				_, err = int64s(ctx, p, 0, qUsersAny+tc, uids)
				return err
			}),
		},
		{
			// Dense traffic: 40 traced requests, one lookup each, four at a
			// time with no pause. Trace ids keep them apart.
			Name: "pgxpool/user_lookup/dense_traced_requests",
			Run: withPool(4, func(ctx context.Context, p *pgxpool.Pool) error {
				return fanOut(40, 4, func(i int) error { return loadUser(ctx, p, int64(1+i), traceComment()) })
			}),
		},
	}
	cs = append(cs, sqlCases()...)
	return append(cs, gormCases()...)
}
