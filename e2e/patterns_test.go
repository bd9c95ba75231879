package e2e

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/nplus1/nplus1/detector"
)

// The patterns of the seed article beyond N+1 reads, as pgx, database/sql,
// GORM, node-postgres and Sequelize write them, each with its fix: a write
// run once per row (n_plus_one with a command), a LIKE whose pattern starts
// with a wildcard (leading_wildcard), a deep OFFSET (deep_offset).

func leadingWildcard(table string) want {
	return want{Kind: detector.KindLeadingWildcard, Table: table}
}
func deepOffset(table string) want { return want{Kind: detector.KindDeepOffset, Table: table} }

// nPlusOneWrite is an N+1 of writes to table over the rows of source,
// proven by the evidence kind ev.
func nPlusOneWrite(table, source, ev string) want {
	return want{Kind: detector.KindNPlusOne, Table: table, Source: source, Evidence: ev}
}

const (
	qAuditInsert    = "INSERT INTO audit_log (order_id, note) VALUES ($1, $2)"
	qAuditUnnest    = "INSERT INTO audit_log (order_id, note) SELECT * FROM unnest($1::bigint[], $2::text[])"
	qOrderStatus    = "UPDATE orders SET status = $2 WHERE id = $1"
	qOrderStatusAny = "UPDATE orders SET status = $2 WHERE id = ANY($1)"
	qUsersLike      = "SELECT id, name FROM users WHERE name LIKE $1"
	qTicketsLike    = "SELECT id, subject FROM tickets WHERE subject LIKE $1"
	qTicketsTrgm    = "SELECT id, subject FROM tickets_trgm WHERE subject LIKE $1"
	qTicketsFind    = "SELECT id, subject FROM tickets WHERE subject ILIKE '%' || $1 || '%'"
	qItemsPage      = "SELECT id, order_id, quantity FROM order_items ORDER BY id LIMIT 50 OFFSET $1"
	qItemsKeyset    = "SELECT id, order_id, quantity FROM order_items WHERE id > $1 ORDER BY id LIMIT 50"
)

// gormAuditLog is a row of audit_log, as a GORM model.
type gormAuditLog struct {
	ID      int64
	OrderID int64
	Note    string
}

func (gormAuditLog) TableName() string { return "audit_log" }

// openOrderIDs lists the ids of n open orders, as a loop's source.
func openOrderIDs(ctx context.Context, c *pgx.Conn, n int) ([]int64, error) {
	return int64s(ctx, c, 0, qOpenOrders, "open", n)
}

// patternCases are the Go clients' cases of patterns.
func patternCases() []corpusCase {
	return []corpusCase{
		// N+1 writes.
		{
			// One INSERT per order, the keys read from a list, in one
			// transaction: proven by the data flow.
			Name: "pgx/audit/insert_loop_in_transaction",
			Want: []want{nPlusOneWrite("audit_log", "orders", "data_flow")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := openOrderIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
					for _, id := range ids {
						if _, err := tx.Exec(ctx, qAuditInsert, id, "viewed"); err != nil {
							return err
						}
					}
					return nil
				})
			}),
		},
		{
			// Rows from the request (an import), one INSERT each in one
			// transaction: no result holds the keys, the transaction
			// makes them one unit of work.
			Name: "pgx/audit/import_loop_in_transaction",
			Want: []want{nPlusOneWrite("audit_log", noSource, detector.EvidenceTransaction)},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
					for i := range 12 {
						if _, err := tx.Exec(ctx, qAuditInsert, int64(9000+i), "viewed"); err != nil {
							return err
						}
					}
					return nil
				})
			}),
		},
		{
			Name: "pgx/audit/fixed_unnest",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := openOrderIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				notes := make([]string, len(ids))
				for i := range notes {
					notes[i] = "viewed"
				}
				_, err = c.Exec(ctx, qAuditUnnest, ids, notes)
				return err
			}),
		},
		{
			Name: "pgx/audit/fixed_copy",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := openOrderIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				rows := make([][]any, len(ids))
				for i, id := range ids {
					rows[i] = []any{id, "viewed"}
				}
				_, err = c.CopyFrom(ctx, pgx.Identifier{"audit_log"}, []string{"order_id", "note"}, pgx.CopyFromRows(rows))
				return err
			}),
		},
		{
			// The fix in chunks: multi-row VALUES of five rows, four times.
			Name: "pgx/audit/fixed_values_in_chunks",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := openOrderIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				for i := 0; i < len(ids); i += 5 {
					args := []any{}
					sql := "INSERT INTO audit_log (order_id, note) VALUES "
					for j, id := range ids[i:min(i+5, len(ids))] {
						if j > 0 {
							sql += ", "
						}
						sql += fmt.Sprintf("($%d, $%d)", 2*j+1, 2*j+2)
						args = append(args, id, "viewed")
					}
					if _, err := c.Exec(ctx, sql, args...); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// Each order's status set again, one UPDATE per order (to the
			// status it has: the shop's data stays as it is).
			Name: "pgx/orders/update_loop",
			Want: []want{nPlusOneWrite("orders", "orders", "data_flow")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := openOrderIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				for _, id := range ids {
					if _, err := c.Exec(ctx, qOrderStatus, id, "open"); err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "pgx/orders/fixed_update_any",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				ids, err := openOrderIDs(ctx, c, 20)
				if err != nil {
					return err
				}
				_, err = c.Exec(ctx, qOrderStatusAny, ids, "open")
				return err
			}),
		},
		{
			// GORM's Create wraps each row in a transaction of its own:
			// BEGIN; INSERT ... RETURNING "id"; COMMIT, twenty times.
			Name: "gorm/audit/create_loop",
			Want: []want{nPlusOneWrite("audit_log", "orders", "data_flow")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				if err := gormOpenOrders(db.Select("id", "user_id", "status")).Find(&orders).Error; err != nil {
					return err
				}
				for _, o := range orders {
					if err := db.Create(&gormAuditLog{OrderID: o.ID, Note: "viewed"}).Error; err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "gorm/audit/fixed_create_slice",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				if err := gormOpenOrders(db.Select("id", "user_id", "status")).Find(&orders).Error; err != nil {
					return err
				}
				logs := make([]gormAuditLog, len(orders))
				for i, o := range orders {
					logs[i] = gormAuditLog{OrderID: o.ID, Note: "viewed"}
				}
				return db.Create(&logs).Error
			}),
		},
		{
			// CreateInBatches: batches of five rows, in one transaction.
			Name: "gorm/audit/fixed_create_in_batches",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				if err := gormOpenOrders(db.Select("id", "user_id", "status")).Find(&orders).Error; err != nil {
					return err
				}
				logs := make([]gormAuditLog, len(orders))
				for i, o := range orders {
					logs[i] = gormAuditLog{OrderID: o.ID, Note: "viewed"}
				}
				return db.CreateInBatches(&logs, 5).Error
			}),
		},

		// leading_wildcard: a search for a part of the tickets' subjects
		// (20,000 rows, missingIndexSchema), which the inspection
		// connection's plan shows read whole.
		{
			// The pattern bound as a parameter: the tracker passes one bit.
			Name: "pgx/tickets/search_contains_bound",
			Want: []want{leadingWildcard("tickets")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qTicketsLike, "%ject 1234%")
				return err
			}),
		},
		{
			Name: "pgx/tickets/fixed_search_prefix",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qTicketsLike, "Subject 1234%")
				return err
			}),
		},
		{
			// The same contains search, served by a pg_trgm GIN index.
			Name: "pgx/tickets/fixed_trigram_index",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qTicketsTrgm, "%ject 1234%")
				return err
			}),
		},
		{
			// A contains search of the 50 users: the plan reads a small
			// table, which costs nothing.
			Name: "pgx/users/small_table_contains",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qUsersLike, "%ser 1%")
				return err
			}),
		},
		{
			// SQLAlchemy's contains(): '%' || $1 || '%' in the text.
			Name: "database/sql/tickets/search_contains_concat",
			Want: []want{leadingWildcard("tickets")},
			Run: withDB(func(ctx context.Context, db *sql.DB) error {
				_, err := sqlInt64s(ctx, db, qTicketsFind, "ject 1234")
				return err
			}),
		},
		{
			Name: "gorm/tickets/search_contains",
			Want: []want{leadingWildcard("tickets")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var tickets []gormTicket
				return db.Select("id", "subject").Where("subject LIKE ?", "%ject 1234%").Find(&tickets).Error
			}),
		},
		{
			Name: "gorm/tickets/fixed_search_prefix",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var tickets []gormTicket
				return db.Select("id", "subject").Where("subject LIKE ?", "Subject 1234%").Find(&tickets).Error
			}),
		},

		// deep_offset.
		{
			// Page 31 of 50-row pages, the offset bound (binary int8).
			Name: "pgx/export_items/deep_page_bound",
			Want: []want{deepOffset("order_items")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qItemsPage, int64(1500))
				return err
			}),
		},
		{
			// The simple protocol: pgx writes the offset into the text as
			// a string constant, '1500'.
			Name: "pgx/export_items/deep_page_simple_protocol",
			Want: []want{deepOffset("order_items")},
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qItemsPage, int64(1500))
				return err
			}, "default_query_exec_mode=simple_protocol"),
		},
		{
			Name: "pgx/export_items/fixed_keyset_page",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qItemsKeyset, int64(1500))
				return err
			}),
		},
		{
			Name: "pgx/export_items/shallow_page_bound",
			Run: pgxConn(func(ctx context.Context, c *pgx.Conn) error {
				_, err := int64s(ctx, c, 0, qItemsPage, int64(950))
				return err
			}),
		},
		{
			// GORM writes LIMIT and OFFSET into the text.
			Name: "gorm/export_items/deep_page",
			Want: []want{deepOffset("order_items")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var items []gormOrderItem
				return db.Select("id", "order_id", "quantity").Order("id").Limit(50).Offset(1500).Find(&items).Error
			}),
		},
		{
			Name: "gorm/export_items/fixed_keyset_page",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var items []gormOrderItem
				return db.Select("id", "order_id", "quantity").Where("id > ?", 1500).Order("id").Limit(50).Find(&items).Error
			}),
		},
	}
}

// nodePatternCases are the Node clients' cases of patterns (node/patterns.js).
func nodePatternCases() []corpusCase {
	ncs := []nodeCase{
		{name: "pg/audit/insert_loop_in_transaction", want: []want{nPlusOneWrite("audit_log", "orders", "data_flow")}},
		{name: "pg/audit/fixed_multi_row_values"},
		{name: "sequelize/audit/create_loop", want: []want{nPlusOneWrite("audit_log", "orders", "data_flow")}},
		{name: "sequelize/audit/fixed_bulk_create"},
		{name: "pg/tickets/search_contains_bound", want: []want{leadingWildcard("tickets")}},
		{name: "pg/tickets/fixed_search_prefix"},
		{name: "sequelize/tickets/search_substring", want: []want{leadingWildcard("tickets")}},
		{name: "sequelize/tickets/fixed_search_starts_with"},
		{name: "pg/export_items/deep_page_bound", want: []want{deepOffset("order_items")}},
		{name: "pg/export_items/fixed_keyset_page"},
		{name: "sequelize/export_items/deep_page", want: []want{deepOffset("order_items")}},
		{name: "sequelize/export_items/fixed_keyset_page"},
	}
	return nodeCorpus(ncs)
}
