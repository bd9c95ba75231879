package e2e

import (
	"context"
	"database/sql"
	"fmt"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// withDB runs fn on a database/sql pool of four connections to the proxy,
// all opened before fn starts.
func withDB(fn func(ctx context.Context, db *sql.DB) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		db, err := sql.Open("pgx", h.url())
		if err != nil {
			return err
		}
		defer db.Close()
		db.SetMaxOpenConns(4)
		db.SetMaxIdleConns(4)
		var conns []*sql.Conn
		for range 4 {
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

// sqlQueryer is what *sql.DB, *sql.Tx and *sql.Conn share.
type sqlQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqlInt64s runs query and returns its first column for every row (the
// other columns are read and dropped).
func sqlInt64s(ctx context.Context, q sqlQueryer, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []int64
	for rows.Next() {
		var first int64
		dest := []any{&first}
		for range cols[1:] {
			dest = append(dest, new(any))
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, first)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	return out, nil
}

// sqlOrderUserIDs lists open orders and returns their user ids.
func sqlOrderUserIDs(ctx context.Context, q sqlQueryer, n int) ([]int64, error) {
	return sqlInt64s(ctx, q, "SELECT user_id, id FROM orders WHERE status = $1 ORDER BY id LIMIT $2", "open", n)
}

func sqlLoadUser(ctx context.Context, q sqlQueryer, id int64) error {
	var name, email string
	return q.QueryRowContext(ctx, qUser, id).Scan(&name, &email)
}

// sqlCases are the corpus cases of database/sql with the pgx driver.
func sqlCases() []corpusCase {
	return []corpusCase{
		{
			Name: "database/sql/orders_with_user/n+1",
			Want: []want{nPlusOne("users", "orders")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				uids, err := sqlOrderUserIDs(ctx, db, 20)
				if err != nil {
					return err
				}
				for _, uid := range uids {
					if err := sqlLoadUser(ctx, db, uid); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "database/sql/orders_with_user/fixed_any",
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				uids, err := sqlOrderUserIDs(ctx, db, 20)
				if err != nil {
					return err
				}
				_, err = sqlInt64s(ctx, db, qUsersAny, uids)
				return err
			}),
		},
		{
			// A statement prepared once (a named prepared statement) and
			// executed per row.
			Name: "database/sql/orders_with_user/n+1_prepared_stmt",
			Want: []want{nPlusOne("users", "orders")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				c, err := db.Conn(ctx)
				if err != nil {
					return err
				}
				defer c.Close()
				uids, err := sqlOrderUserIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				st, err := c.PrepareContext(ctx, qUser)
				if err != nil {
					return err
				}
				defer st.Close()
				for _, uid := range uids {
					var name, email string
					if err := st.QueryRowContext(ctx, uid).Scan(&name, &email); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "database/sql/orders_with_user/n+1_in_tx",
			Want: []want{nPlusOne("users", "orders")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					return err
				}
				defer func() { _ = tx.Rollback() }()
				uids, err := sqlOrderUserIDs(ctx, tx, 20)
				if err != nil {
					return err
				}
				for _, uid := range uids {
					if err := sqlLoadUser(ctx, tx, uid); err != nil {
						return err
					}
				}
				return tx.Commit()
			}),
		},
		{
			Name: "database/sql/orders_with_user/fixed_join_in_tx",
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					return err
				}
				defer func() { _ = tx.Rollback() }()
				if _, err := sqlInt64s(ctx, tx, qOrdersWithUsers, "open", 20); err != nil {
					return err
				}
				return tx.Commit()
			}),
		},
		{
			Name: "database/sql/current_user/duplicate",
			Want: []want{duplicate("users")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				for range 3 {
					if err := sqlLoadUser(ctx, db, 3); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "database/sql/current_user/fixed",
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				return sqlLoadUser(ctx, db, 3)
			}),
		},
		{
			Name: "database/sql/export_items/unpaginated",
			Want: []want{unpaginated("order_items")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				_, err := sqlInt64s(ctx, db, qAllItems)
				return err
			}),
		},
		{
			// The fix of unpaginated, paged with OFFSET: its pages past
			// OFFSET 1000 (of 1800 rows) are a deep_offset.
			Name: "database/sql/export_items/fixed_limit_50_offset",
			Want: []want{deepOffset("order_items")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				for off := 0; ; off += 50 {
					ids, err := sqlInt64s(ctx, db, "SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id LIMIT 50 OFFSET $1", off)
					if err != nil || len(ids) < 50 {
						return err
					}
				}
			}),
		},
		{
			Name: "database/sql/product/select_star",
			Want: []want{selectStar("products")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				_, err := sqlInt64s(ctx, db, qProductStar, 42)
				return err
			}),
		},
		{
			Name: "database/sql/product/fixed_named_columns",
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				_, err := sqlInt64s(ctx, db, qProductNamed, 42)
				return err
			}),
		},
		{
			Name: "database/sql/health/ping",
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				for range 10 {
					if err := db.PingContext(ctx); err != nil {
						return err
					}
					if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
						return err
					}
				}
				return nil
			}),
		},
	}
}
