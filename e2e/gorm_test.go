package e2e

import (
	"context"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The shop's models as a GORM application declares them (default naming:
// users, orders, order_items, products).
type gormUser struct {
	ID        int64
	Name      string
	Email     string
	CreatedAt time.Time
}

func (gormUser) TableName() string { return "users" }

type gormProduct struct {
	ID         int64
	Name       string
	PriceCents int
}

func (gormProduct) TableName() string { return "products" }

type gormOrder struct {
	ID        int64
	UserID    int64
	Status    string
	CreatedAt time.Time
	User      gormUser        `gorm:"foreignKey:UserID"`
	Items     []gormOrderItem `gorm:"foreignKey:OrderID"`
}

func (gormOrder) TableName() string { return "orders" }

type gormOrderItem struct {
	ID        int64
	OrderID   int64
	ProductID int64
	Quantity  int
	Product   gormProduct `gorm:"foreignKey:ProductID"`
}

func (gormOrderItem) TableName() string { return "order_items" }

// withGorm runs fn on a GORM handle connected to the proxy through the
// postgres driver (pgx underneath, prepared statements cached).
func withGorm(fn func(ctx context.Context, db *gorm.DB) error) func(ctx context.Context) error {
	return withGormConfig(postgres.Config{}, fn)
}

// withGormConfig is withGorm with driver settings (cfg.DSN is set here).
func withGormConfig(cfg postgres.Config, fn func(ctx context.Context, db *gorm.DB) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		cfg.DSN = h.url()
		db, err := gorm.Open(postgres.New(cfg), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			return err
		}
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		defer sqlDB.Close()
		sqlDB.SetMaxOpenConns(4)
		return fn(ctx, db.WithContext(ctx))
	}
}

// gormOpenOrders is orders.Where(status).Order(id).Limit(20).Find.
func gormOpenOrders(db *gorm.DB) *gorm.DB {
	return db.Where("status = ?", "open").Order("id").Limit(20)
}

// gormCases are the corpus cases of GORM. GORM selects * unless told
// otherwise, so its default code reads tables with SELECT *: those
// select_star findings are true (the query does select every column, and
// .Select names them), reported at severity info unless the shape is also an
// N+1 or unpaginated.
func gormCases() []corpusCase {
	return []corpusCase{
		{
			// The N+1 as GORM code commonly writes it: a First per order.
			// SQL: SELECT * FROM "users" WHERE "users"."id" = $1 ORDER BY
			// "users"."id" LIMIT $2.
			Name: "gorm/orders_with_user/n+1_first_per_row",
			Want: []want{nPlusOne("users", "orders"), selectStar("orders"), selectStar("users")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				if err := gormOpenOrders(db).Find(&orders).Error; err != nil {
					return err
				}
				for _, o := range orders {
					var u gormUser
					if err := db.First(&u, o.UserID).Error; err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// The same with PreferSimpleProtocol: the ids travel as literals
			// in the text.
			Name: "gorm/orders_with_user/n+1_first_per_row_simple_protocol",
			Want: []want{nPlusOne("users", "orders"), selectStar("orders"), selectStar("users")},
			Run: withGormConfig(postgres.Config{PreferSimpleProtocol: true}, func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				if err := gormOpenOrders(db).Find(&orders).Error; err != nil {
					return err
				}
				for _, o := range orders {
					var u gormUser
					if err := db.First(&u, o.UserID).Error; err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			// Preload: SELECT * FROM "users" WHERE "users"."id" IN ($1,...).
			// The N+1 is gone; the SELECT * remain.
			Name: "gorm/orders_with_user/fixed_preload",
			Want: []want{selectStar("orders"), selectStar("users")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				return gormOpenOrders(db).Preload("User").Find(&orders).Error
			}),
		},
		{
			Name: "gorm/orders_with_user/fixed_preload_named_columns",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				return gormOpenOrders(db).Select("id", "user_id", "status").
					Preload("User", func(db *gorm.DB) *gorm.DB { return db.Select("id", "name", "email") }).
					Find(&orders).Error
			}),
		},
		{
			// Joins("User"): one query with a LEFT JOIN and every column
			// named.
			Name: "gorm/orders_with_user/fixed_joins",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				return db.Joins("User").Where(`"orders"."status" = ?`, "open").Order(`"orders"."id"`).Limit(20).Find(&orders).Error
			}),
		},
		{
			Name: "gorm/invoice/nested_n+1",
			Want: []want{
				nPlusOne("order_items", "orders"), nPlusOne("products", "order_items"),
				selectStar("orders"), selectStar("order_items"), selectStar("products"),
			},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				if err := db.Where("user_id = ?", 7).Order("id").Find(&orders).Error; err != nil {
					return err
				}
				for _, o := range orders {
					var items []gormOrderItem
					if err := db.Where("order_id = ?", o.ID).Find(&items).Error; err != nil {
						return err
					}
					for _, it := range items {
						var p gormProduct
						if err := db.First(&p, it.ProductID).Error; err != nil {
							return err
						}
					}
				}
				return nil
			}),
		},
		{
			Name: "gorm/invoice/fixed_nested_preload",
			Want: []want{selectStar("orders"), selectStar("order_items"), selectStar("products")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var orders []gormOrder
				return db.Where("user_id = ?", 7).Order("id").Preload("Items.Product").Find(&orders).Error
			}),
		},
		{
			Name: "gorm/current_user/duplicate",
			Want: []want{duplicate("users"), selectStar("users")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				for range 4 {
					var u gormUser
					if err := db.First(&u, 3).Error; err != nil {
						return err
					}
				}
				return nil
			}),
		},
		{
			Name: "gorm/current_user/fixed_named_columns",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var u gormUser
				return db.Select("id", "name", "email").First(&u, 3).Error
			}),
		},
		{
			Name: "gorm/export_items/unpaginated",
			Want: []want{unpaginated("order_items"), selectStar("order_items")},
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var items []gormOrderItem
				return db.Find(&items).Error
			}),
		},
		{
			// FindInBatches: ORDER BY id LIMIT 200, then WHERE id > last.
			Name: "gorm/export_items/fixed_find_in_batches",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var batch []gormOrderItem
				return db.Select("id", "order_id", "product_id", "quantity").
					FindInBatches(&batch, 200, func(*gorm.DB, int) error { return nil }).Error
			}),
		},
		{
			Name: "gorm/open_orders/pages_limit_50_offset",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				for off := 0; ; off += 50 {
					var orders []gormOrder
					if err := db.Select("id", "user_id", "status").Where("status = ?", "open").
						Order("id").Limit(50).Offset(off).Find(&orders).Error; err != nil {
						return err
					}
					if len(orders) < 50 {
						return nil
					}
				}
			}),
		},
		{
			Name: "gorm/stats/count",
			Run: withGorm(func(ctx context.Context, db *gorm.DB) error {
				var n int64
				return db.Model(&gormOrder{}).Where("status = ?", "open").Count(&n).Error
			}),
		},
	}
}
