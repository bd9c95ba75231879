package e2e

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/nplus1/nplus1/detector"
)

// The seed article's race condition in updates (its Mistake 8), as pgx,
// database/sql, GORM, node-postgres and Sequelize write it: read a
// product's stock, compute the new stock in the application, write it back.
// Each with its fixes: the atomic update, a locking read in a transaction,
// a version guard, a REPEATABLE READ or SERIALIZABLE transaction.

func lostUpdate(table string) want { return want{Kind: detector.KindLostUpdate, Table: table} }

const (
	qStockRead      = "SELECT id, stock FROM products WHERE id = $1"
	qStockReadLock  = "SELECT id, stock FROM products WHERE id = $1 FOR UPDATE"
	qStockWrite     = "UPDATE products SET stock = $1 WHERE id = $2"
	qStockDecrement = "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1"
	qStockGuarded   = "UPDATE products SET stock = $1 WHERE id = $2 AND stock = $3"
)

// gormStock is a product's stock, as a GORM model.
type gormStock struct {
	ID    int64
	Stock int
}

func (gormStock) TableName() string { return "products" }

// pgxRW is what *pgx.Conn and pgx.Tx share.
type pgxRW interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// pgxSell sells one unit of product id on c: read, compute, write back
// (write is the UPDATE; it gets the new stock, the id and the old stock).
func pgxSell(ctx context.Context, c pgxRW, read, write string, id int64) error {
	var got int64
	var stock int
	if err := c.QueryRow(ctx, read, id).Scan(&got, &stock); err != nil {
		return err
	}
	args := []any{stock - 1, got}
	if write == qStockGuarded {
		args = append(args, stock)
	}
	_, err := c.Exec(ctx, write, args...)
	return err
}

// sqlSell is pgxSell for database/sql.
func sqlSell(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}, read, write string, id int64) error {
	var got int64
	var stock int
	if err := q.QueryRowContext(ctx, read, id).Scan(&got, &stock); err != nil {
		return err
	}
	_, err := q.ExecContext(ctx, write, stock-1, got)
	return err
}

// lostUpdateCases are the Go clients' cases of lost_update.
func lostUpdateCases() []corpusCase {
	return []corpusCase{
		{
			Name: "pgx/products/sell_read_modify_write",
			Want: []want{lostUpdate("products")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return pgxSell(ctx, c, qStockRead, qStockWrite, 11)
			}),
		},
		{
			// The simple protocol: the key and the stock are literals in
			// the text.
			Name: "pgx/products/sell_read_modify_write_simple_protocol",
			Want: []want{lostUpdate("products")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return pgxSell(ctx, c, qStockRead, qStockWrite, 12)
			}, "default_query_exec_mode=simple_protocol"),
		},
		{
			Name: "pgx/products/fixed_atomic_decrement",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				var got int64
				var stock int
				if err := c.QueryRow(ctx, qStockRead, int64(11)).Scan(&got, &stock); err != nil {
					return err
				}
				_, err := c.Exec(ctx, qStockDecrement, 1, got)
				return err
			}),
		},
		{
			Name: "pgx/products/fixed_for_update",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
					return pgxSell(ctx, tx, qStockReadLock, qStockWrite, 11)
				})
			}),
		},
		{
			Name: "pgx/products/fixed_guard_old_value",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return pgxSell(ctx, c, qStockRead, qStockGuarded, 11)
			}),
		},
		{
			// In a transaction, but at READ COMMITTED: still a race.
			Name: "database/sql/products/sell_in_read_committed_transaction",
			Want: []want{lostUpdate("products")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				if err := sqlSell(ctx, tx, qStockRead, qStockWrite, 13); err != nil {
					_ = tx.Rollback()
					return err
				}
				return tx.Commit()
			}),
		},
		{
			// sql.LevelSerializable: pgx's driver sends BEGIN ISOLATION
			// LEVEL SERIALIZABLE; a concurrent sale fails with 40001.
			Name: "database/sql/products/fixed_serializable_transaction",
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
				if err != nil {
					return err
				}
				if err := sqlSell(ctx, tx, qStockRead, qStockWrite, 13); err != nil {
					_ = tx.Rollback()
					return err
				}
				return tx.Commit()
			}),
		},
		{
			// First, then Update with the computed value.
			Name: "gorm/products/sell_first_update",
			Want: []want{lostUpdate("products")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var p gormStock
				if err := db.Select("id", "stock").First(&p, 14).Error; err != nil {
					return err
				}
				return db.Model(&p).Update("stock", p.Stock-1).Error
			}),
		},
		{
			Name: "gorm/products/fixed_gorm_expr",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var p gormStock
				if err := db.Select("id", "stock").First(&p, 14).Error; err != nil {
					return err
				}
				return db.Model(&p).Update("stock", gorm.Expr("stock - ?", 1)).Error
			}),
		},
		{
			Name: "gorm/products/fixed_locking_in_transaction",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				return db.Transaction(func(tx *gorm.DB) error {
					var p gormStock
					if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id", "stock").First(&p, 14).Error; err != nil {
						return err
					}
					return tx.Model(&p).Update("stock", p.Stock-1).Error
				})
			}),
		},
	}
}

// nodeLostUpdateCases are the Node clients' cases of lost_update
// (node/lostupdate.js).
func nodeLostUpdateCases() []corpusCase {
	ncs := []nodeCase{
		{name: "pg/products/sell_read_modify_write", want: []want{lostUpdate("products")}},
		{name: "pg/products/fixed_atomic_decrement"},
		{name: "pg/products/fixed_repeatable_read"},
		{name: "sequelize/products/sell_find_save", want: []want{lostUpdate("products")}},
		{name: "sequelize/products/fixed_decrement"},
		{name: "sequelize/products/fixed_lock_update"},
	}
	return nodeCorpus(ncs)
}
