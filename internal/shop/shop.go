// Package shop is the demo's small shop database (users, products, orders,
// order_items, reviews) and a workload that runs each pattern nplus1
// reports, once the way ORMs commonly write it and once fixed. The demo and
// the end-to-end tests run it through the proxy; the fixed half must produce
// no finding.
package shop

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Schema creates and fills the tables: 50 users, 100 products, 300 orders
// (6 per user), 1800 order items (6 per order) and 20,000 reviews (200 per
// product, each with a title). reviews.product_id is a foreign key without
// an index, as a migration that declared only the relation leaves it: the
// missing_index scenario's mistake; reviews.title has no index that serves
// a search for a part of it: the leading_wildcard scenario's. The schema
// fixed holds the same reviews after the migration that adds the index
// missing_index suggests (CREATE INDEX reviews_product_id_idx), which that
// scenario's fixed half reads.
const Schema = `
DROP SCHEMA IF EXISTS fixed CASCADE;
DROP TABLE IF EXISTS reviews, order_items, orders, products, users;
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL, stock int NOT NULL DEFAULT 1000);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id), status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX orders_user_id ON orders(user_id);
CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders(id), product_id bigint NOT NULL REFERENCES products(id), quantity int NOT NULL);
CREATE INDEX order_items_order_id ON order_items(order_id);
INSERT INTO users (id, name, email) SELECT i, 'user ' || i, 'user' || i || '@example.com' FROM generate_series(1, 50) i;
INSERT INTO products (id, name, price_cents) SELECT i, 'product ' || i, 100 * i FROM generate_series(1, 100) i;
INSERT INTO orders (id, user_id, status) SELECT i, 1 + (i - 1) % 50, CASE WHEN i % 3 = 0 THEN 'shipped' ELSE 'open' END FROM generate_series(1, 300) i;
INSERT INTO order_items (id, order_id, product_id, quantity) SELECT i, 1 + (i - 1) / 6, 1 + (i * 7) % 100, 1 + i % 3 FROM generate_series(1, 1800) i;
CREATE TABLE reviews (id bigint PRIMARY KEY, product_id bigint NOT NULL REFERENCES products(id), user_id bigint NOT NULL REFERENCES users(id), rating int NOT NULL, title text NOT NULL);
INSERT INTO reviews (id, product_id, user_id, rating, title) SELECT i, 1 + i % 100, 1 + i % 50, 1 + i % 5, 'review ' || i || ' of product ' || (1 + i % 100) FROM generate_series(1, 20000) i;
CREATE SCHEMA fixed;
CREATE TABLE fixed.reviews (LIKE reviews INCLUDING ALL);
ALTER TABLE fixed.reviews ADD FOREIGN KEY (product_id) REFERENCES products(id), ADD FOREIGN KEY (user_id) REFERENCES users(id);
INSERT INTO fixed.reviews SELECT * FROM reviews;
CREATE INDEX reviews_product_id_idx ON fixed.reviews (product_id);
ANALYZE;
`

// InspectionRole is the role of the demo's inspection connection, made by
// CreateInspectionRole.
const InspectionRole = "nplus1_inspect"

// CreateInspectionRole makes InspectionRole on c's server as the README
// advises for an inspection connection: a role of its own that logs in
// (without a password: the server decides how it may), whose transactions
// are read-only, with CONNECT on the database, USAGE on the shop's schemas
// and SELECT on their tables, which is all an inspection needs, and nothing
// more: what PUBLIC may do on the database and in public beyond that
// (CREATE, TEMP) is taken from PUBLIC, so it is meant for a server of its
// own, as the demo's. Load the schema first; the server must not have the
// role yet.
func CreateInspectionRole(ctx context.Context, c *pgx.Conn) error {
	var db string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return err
	}
	role, database := pgx.Identifier{InspectionRole}.Sanitize(), pgx.Identifier{db}.Sanitize()
	for _, q := range []string{
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"REVOKE ALL ON DATABASE " + database + " FROM PUBLIC",
		"CREATE ROLE " + role + " LOGIN",
		"ALTER ROLE " + role + " SET default_transaction_read_only = on",
		"GRANT CONNECT ON DATABASE " + database + " TO " + role,
		"GRANT USAGE ON SCHEMA public, fixed TO " + role,
		"GRANT SELECT ON ALL TABLES IN SCHEMA public, fixed TO " + role,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// Load creates the schema on c.
func Load(ctx context.Context, c *pgx.Conn) error {
	_, err := c.Exec(ctx, Schema)
	return err
}

// Scenario is one pattern: Bad runs it as an ORM would, Fixed runs the fix.
type Scenario struct {
	Name  string // e.g. "n_plus_one"
	Title string // what the code does
	Bad   func(ctx context.Context, c *pgx.Conn) error
	Fixed func(ctx context.Context, c *pgx.Conn) error
	// Expect is the finding kinds Bad produces (Fixed produces none).
	Expect []string
}

// Pause separates scenarios the way separate requests are separated: longer
// than the detector's idle gap.
const Pause = 250 * time.Millisecond

// Scenarios returns the workload, in the order the demo runs it.
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name:   "n_plus_one",
			Title:  "list open orders with their customer",
			Expect: []string{"n_plus_one"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				// orders.findMany({where: {status: 'open'}, take: 20}), then
				// order.user for each: one query per order.
				ids, err := collect[int64](ctx, c, "SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT 20", 1, "open")
				if err != nil {
					return err
				}
				for _, uid := range ids {
					var name, email string
					if err := c.QueryRow(ctx, "SELECT name, email FROM users WHERE id = $1", uid).Scan(&name, &email); err != nil {
						return err
					}
				}
				return nil
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				// include: {user: true}: one query with the keys of the first.
				ids, err := collect[int64](ctx, c, "SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT 20", 1, "open")
				if err != nil {
					return err
				}
				_, err = collect[string](ctx, c, "SELECT name, email FROM users WHERE id = ANY($1)", 0, ids)
				return err
			},
		},
		{
			Name:   "nested_n_plus_one",
			Title:  "an invoice: a user's orders, their items, each item's product",
			Expect: []string{"n_plus_one", "n_plus_one"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				return inTx(ctx, c, func() error {
					orders, err := collect[int64](ctx, c, "SELECT id FROM orders WHERE user_id = $1 ORDER BY id", 0, int64(7))
					if err != nil {
						return err
					}
					for _, o := range orders {
						products, err := collect[int64](ctx, c, "SELECT id, product_id, quantity FROM order_items WHERE order_id = $1", 1, o)
						if err != nil {
							return err
						}
						for _, p := range products {
							var name string
							var price int
							if err := c.QueryRow(ctx, "SELECT name, price_cents FROM products WHERE id = $1", p).Scan(&name, &price); err != nil {
								return err
							}
						}
					}
					return nil
				})
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				return inTx(ctx, c, func() error {
					_, err := collect[int64](ctx, c, `SELECT o.id, i.quantity, p.name, p.price_cents
						FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
						WHERE o.user_id = $1 ORDER BY o.id`, 0, int64(7))
					return err
				})
			},
		},
		{
			Name:   "duplicate_query",
			Title:  "render a page whose widgets each load the current user",
			Expect: []string{"duplicate_query"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				for range 4 {
					var name, email string
					if err := c.QueryRow(ctx, "SELECT name, email FROM users WHERE id = $1", int64(3)).Scan(&name, &email); err != nil {
						return err
					}
				}
				return nil
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				var name, email string
				return c.QueryRow(ctx, "SELECT name, email FROM users WHERE id = $1", int64(3)).Scan(&name, &email)
			},
		},
		{
			Name:   "unpaginated",
			Title:  "export every order item",
			Expect: []string{"unpaginated"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				_, err := collect[int64](ctx, c, "SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id", 0)
				return err
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				// Keyset pagination: WHERE id > last ORDER BY id LIMIT n.
				last := int64(0)
				for {
					ids, err := collect[int64](ctx, c, "SELECT id, order_id, product_id, quantity FROM order_items WHERE id > $1 ORDER BY id LIMIT 500", 0, last)
					if err != nil {
						return err
					}
					if len(ids) == 0 {
						return nil
					}
					last = ids[len(ids)-1]
				}
			},
		},
		{
			Name:   "select_star",
			Title:  "show a product",
			Expect: []string{"select_star"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				_, err := collect[int64](ctx, c, "SELECT * FROM products WHERE id = $1", 0, int64(42))
				return err
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				_, err := collect[int64](ctx, c, "SELECT id, name, price_cents FROM products WHERE id = $1", 0, int64(42))
				return err
			},
		},
		{
			Name:   "leading_wildcard",
			Title:  "search the reviews by a part of their title",
			Expect: []string{"leading_wildcard"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				// title: {contains: "view 123"}, as SQLAlchemy's contains()
				// writes it: no B-tree index serves a pattern that starts
				// with %, and the 20,000 reviews are read whole.
				_, err := collect[int64](ctx, c, "SELECT id, rating FROM reviews WHERE title LIKE '%' || $1 || '%'", 0, "view 123")
				return err
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				// A prefix search (startsWith), which an index can serve; or
				// a trigram index that serves the contains.
				_, err := collect[int64](ctx, c, "SELECT id, rating FROM reviews WHERE title LIKE $1 || '%'", 0, "review 123")
				return err
			},
		},
		{
			Name:   "deep_offset",
			Title:  "page 31 of the order items, 50 per page",
			Expect: []string{"deep_offset"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				// skip: 1500, take: 50, as GORM and Sequelize write it: the
				// server reads 1550 rows to return 50.
				_, err := collect[int64](ctx, c, "SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id LIMIT 50 OFFSET 1500", 0)
				return err
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				// Keyset pagination: after the last id of the previous page.
				_, err := collect[int64](ctx, c, "SELECT id, order_id, product_id, quantity FROM order_items WHERE id > $1 ORDER BY id LIMIT 50", 0, int64(1500))
				return err
			},
		},
		{
			Name:   "lost_update",
			Title:  "sell one unit of a product",
			Expect: []string{"lost_update"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				// product = findUnique(id); update({data: {stock:
				// product.stock - 1}}): two sales at once both read the
				// same stock, and one sale is lost.
				var id int64
				var stock int
				if err := c.QueryRow(ctx, "SELECT id, stock FROM products WHERE id = $1", int64(5)).Scan(&id, &stock); err != nil {
					return err
				}
				_, err := c.Exec(ctx, "UPDATE products SET stock = $1 WHERE id = $2", stock-1, id)
				return err
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				// stock: {decrement: 1}: the server subtracts, and the
				// WHERE refuses to sell what is not there.
				var id int64
				var stock int
				if err := c.QueryRow(ctx, "SELECT id, stock FROM products WHERE id = $1", int64(5)).Scan(&id, &stock); err != nil {
					return err
				}
				_, err := c.Exec(ctx, "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1", 1, id)
				return err
			},
		},
		{
			Name:  "missing_index",
			Title: "product cards: each product's rating, from its reviews",
			// An N+1, and its lookup reads all 20,000 reviews each time:
			// nothing indexes reviews.product_id. The missing_index finding
			// needs an inspection connection (the demo runs one); without
			// it, Bad yields the n_plus_one only.
			Expect: []string{"n_plus_one", "missing_index"},
			Bad: func(ctx context.Context, c *pgx.Conn) error {
				// products.findMany({take: 10}), then review.aggregate({where:
				// {productId}, _count, _avg: {rating}}) for each.
				ids, err := collect[int64](ctx, c, "SELECT id, name, price_cents FROM products ORDER BY id LIMIT 10", 0)
				if err != nil {
					return err
				}
				for _, id := range ids {
					var n int64
					var avg float64
					if err := c.QueryRow(ctx, "SELECT count(*), avg(rating)::float8 FROM reviews WHERE product_id = $1", id).Scan(&n, &avg); err != nil {
						return err
					}
				}
				return nil
			},
			Fixed: func(ctx context.Context, c *pgx.Conn) error {
				// Both fixes: the index (@@index([productId]); the schema
				// fixed is the shop after that migration) and one groupBy
				// over the page's products.
				ids, err := collect[int64](ctx, c, "SELECT id, name, price_cents FROM products ORDER BY id LIMIT 10", 0)
				if err != nil {
					return err
				}
				_, err = collect[int64](ctx, c, `SELECT product_id, count(*), avg(rating)::float8 FROM fixed.reviews
					WHERE product_id = ANY($1) GROUP BY product_id`, 0, ids)
				return err
			},
		},
	}
}

// collect runs a query and returns column col of every row as T (the rows
// are read whole, as an ORM would).
func collect[T any](ctx context.Context, c *pgx.Conn, sql string, col int, args ...any) ([]T, error) {
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		if col < len(vals) {
			if v, ok := vals[col].(T); ok {
				out = append(out, v)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", sql, err)
	}
	return out, nil
}

func inTx(ctx context.Context, c *pgx.Conn, fn func() error) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}
