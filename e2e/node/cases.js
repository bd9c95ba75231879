'use strict';
// Node code paths of nplus1's end-to-end corpus: each case runs one code path
// (an N+1 and its fix are two cases) through the proxy and exits. The Go test
// (e2e/node_test.go) runs `node cases.js CASE` with the proxy's URL in
// NPLUS1_E2E_DATABASE_URL and judges the findings; `node cases.js --list`
// prints the case names as JSON.

const { url, withClient } = require('./client.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- pg ----

const OPEN_ORDERS = 'SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT $2';
const USER_BY_ID = 'SELECT name, email FROM users WHERE id = $1';

async function withPool(fn) {
  const { Pool } = require('pg');
  const p = new Pool({ connectionString: url, max: 4, application_name: 'e2e-node-pg-pool' });
  try {
    await fn(p);
  } finally {
    await p.end();
  }
}

// ordersWithUser lists n open orders, then loads each order's user with one
// query per order, waiting workMs between iterations.
async function ordersWithUser(c, n, workMs) {
  const { rows } = await c.query(OPEN_ORDERS, ['open', n]);
  for (const o of rows) {
    await c.query(USER_BY_ID, [o.user_id]);
    if (workMs) await sleep(workMs);
  }
}

// ---- Sequelize ----

function sequelizeModels() {
  const { Sequelize, DataTypes } = require('sequelize');
  const sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 4 } });
  const opts = { timestamps: false, underscored: true };
  const id = { type: DataTypes.BIGINT, primaryKey: true };
  const User = sequelize.define('User', { id, name: DataTypes.TEXT, email: DataTypes.TEXT }, { tableName: 'users', ...opts });
  const Product = sequelize.define('Product', { id, name: DataTypes.TEXT, priceCents: DataTypes.INTEGER }, { tableName: 'products', ...opts });
  const Order = sequelize.define('Order', { id, userId: DataTypes.BIGINT, status: DataTypes.TEXT }, { tableName: 'orders', ...opts });
  const OrderItem = sequelize.define(
    'OrderItem',
    { id, orderId: DataTypes.BIGINT, productId: DataTypes.BIGINT, quantity: DataTypes.INTEGER },
    { tableName: 'order_items', ...opts },
  );
  Order.belongsTo(User, { as: 'user', foreignKey: 'userId' });
  User.hasMany(Order, { as: 'orders', foreignKey: 'userId' });
  Order.hasMany(OrderItem, { as: 'items', foreignKey: 'orderId' });
  OrderItem.belongsTo(Product, { as: 'product', foreignKey: 'productId' });
  return { sequelize, User, Product, Order, OrderItem };
}

async function withSequelize(fn) {
  const m = sequelizeModels();
  try {
    await fn(m);
  } finally {
    await m.sequelize.close();
  }
}

const openOrders = (n) => ({ where: { status: 'open' }, order: [['id', 'ASC']], limit: n });

// ---- the cases ----

const cases = {
  'pg/orders_with_user/n+1': () => withClient((c) => ordersWithUser(c, 20, 0)),
  'pg/orders_with_user/fixed_any': () =>
    withClient(async (c) => {
      const { rows } = await c.query(OPEN_ORDERS, ['open', 20]);
      await c.query('SELECT id, name, email FROM users WHERE id = ANY($1)', [rows.map((o) => o.user_id)]);
    }),
  'pg/orders_with_user/fixed_join': () =>
    withClient((c) =>
      c.query(
        'SELECT o.id, u.name, u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.status = $1 ORDER BY o.id LIMIT 20',
        ['open'],
      ),
    ),
  // The id written into the text: simple protocol, a literal per query.
  'pg/orders_with_user/n+1_inlined_literals': () =>
    withClient(async (c) => {
      const { rows } = await c.query(OPEN_ORDERS, ['open', 20]);
      for (const o of rows) await c.query(`SELECT name, email FROM users WHERE id = ${Number(o.user_id)}`);
    }),
  // A named prepared statement, executed per row.
  'pg/orders_with_user/n+1_named_statement': () =>
    withClient(async (c) => {
      const { rows } = await c.query(OPEN_ORDERS, ['open', 20]);
      for (const o of rows) await c.query({ name: 'user-by-id', text: USER_BY_ID, values: [o.user_id] });
    }),
  // Promise.all over one client: pg queues the lookups on its connection.
  'pg/orders_with_user/n+1_promise_all': () =>
    withClient(async (c) => {
      const { rows } = await c.query(OPEN_ORDERS, ['open', 20]);
      await Promise.all(rows.map((o) => c.query(USER_BY_ID, [o.user_id])));
    }),
  'pg/orders_with_user/n+1_3ms_work': () => withClient((c) => ordersWithUser(c, 20, 3)),
  'pg/orders_with_user/loop_of_4': () => withClient((c) => ordersWithUser(c, 4, 0)),
  'pg/orders_with_user/n+1_via_pool': () => withPool((p) => ordersWithUser(p, 20, 0)),
  'pg/invoice/nested_n+1': () =>
    withClient(async (c) => {
      const orders = (await c.query('SELECT id FROM orders WHERE user_id = $1 ORDER BY id', [7])).rows;
      for (const o of orders) {
        const items = (await c.query('SELECT id, product_id, quantity FROM order_items WHERE order_id = $1', [o.id])).rows;
        for (const it of items) await c.query('SELECT name, price_cents FROM products WHERE id = $1', [it.product_id]);
      }
    }),
  'pg/invoice/fixed_join': () =>
    withClient((c) =>
      c.query(
        `SELECT o.id, i.quantity, p.name, p.price_cents
         FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
         WHERE o.user_id = $1 ORDER BY o.id, i.id`,
        [7],
      ),
    ),
  'pg/current_user/duplicate': () =>
    withClient(async (c) => {
      for (let i = 0; i < 3; i++) await c.query(USER_BY_ID, [3]);
    }),
  'pg/current_user/fixed': () => withClient((c) => c.query(USER_BY_ID, [3])),
  'pg/export_items/unpaginated': () =>
    withClient((c) => c.query('SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id')),
  'pg/export_items/fixed_limit_50_offset': () =>
    withClient(async (c) => {
      for (let off = 0; ; off += 50) {
        const { rows } = await c.query(
          'SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id LIMIT 50 OFFSET $1',
          [off],
        );
        if (rows.length < 50) return;
      }
    }),
  'pg/product/select_star': () => withClient((c) => c.query('SELECT * FROM products WHERE id = $1', [42])),
  'pg/product/fixed_named_columns': () =>
    withClient((c) => c.query('SELECT id, name, price_cents FROM products WHERE id = $1', [42])),
  // Ordinary traffic: one lookup per request, 150ms apart, on a pool.
  'pg/user_lookup/one_per_request_150ms_apart': () =>
    withPool(async (p) => {
      for (let i = 0; i < 8; i++) {
        if (i > 0) await sleep(150);
        await p.query(USER_BY_ID, [10 + i]);
      }
    }),
  'pg/health/select_1': () =>
    withClient(async (c) => {
      for (let i = 0; i < 10; i++) await c.query('SELECT 1');
    }),

  'sequelize/orders_with_user/n+1_get_user': () =>
    withSequelize(async ({ Order }) => {
      const orders = await Order.findAll(openOrders(20));
      for (const o of orders) await o.getUser();
    }),
  'sequelize/orders_with_user/fixed_include': () =>
    withSequelize(async ({ Order, User }) => {
      await Order.findAll({ ...openOrders(20), include: [{ model: User, as: 'user' }] });
    }),
  'sequelize/orders_with_items/n+1_get_items': () =>
    withSequelize(async ({ Order }) => {
      const orders = await Order.findAll(openOrders(10));
      for (const o of orders) await o.getItems();
    }),
  // Eager load in a second query: WHERE order_id IN (...).
  'sequelize/orders_with_items/fixed_include_separate': () =>
    withSequelize(async ({ Order, OrderItem }) => {
      await Order.findAll({ ...openOrders(10), include: [{ model: OrderItem, as: 'items', separate: true }] });
    }),
  'sequelize/invoice/nested_n+1': () =>
    withSequelize(async ({ User }) => {
      const user = await User.findByPk(7);
      const orders = await user.getOrders({ order: [['id', 'ASC']] });
      for (const o of orders) {
        const items = await o.getItems();
        for (const it of items) await it.getProduct();
      }
    }),
  'sequelize/invoice/fixed_nested_include': () =>
    withSequelize(async ({ Order, OrderItem, Product }) => {
      await Order.findAll({
        where: { userId: 7 },
        order: [['id', 'ASC']],
        include: [{ model: OrderItem, as: 'items', include: [{ model: Product, as: 'product' }] }],
      });
    }),
  'sequelize/current_user/duplicate': () =>
    withSequelize(async ({ User }) => {
      for (let i = 0; i < 3; i++) await User.findByPk(3);
    }),
  'sequelize/current_user/fixed': () => withSequelize(({ User }) => User.findByPk(3)),
  'sequelize/export_items/unpaginated': () => withSequelize(({ OrderItem }) => OrderItem.findAll()),
  'sequelize/export_items/fixed_limit_50_offset': () =>
    withSequelize(async ({ OrderItem }) => {
      for (let offset = 0; ; offset += 50) {
        const rows = await OrderItem.findAll({ order: [['id', 'ASC']], limit: 50, offset });
        if (rows.length < 50) return;
      }
    }),
  'sequelize/product/select_star_raw_query': () =>
    withSequelize(({ sequelize }) =>
      sequelize.query('SELECT * FROM products WHERE id = :id', { replacements: { id: 42 }, type: 'SELECT' }),
    ),
  'sequelize/product/fixed_find_by_pk': () => withSequelize(({ Product }) => Product.findByPk(42)),
  'sequelize/stats/count': () => withSequelize(({ Order }) => Order.count({ where: { status: 'open' } })),
  'sequelize/health/authenticate': () =>
    withSequelize(async ({ sequelize }) => {
      for (let i = 0; i < 5; i++) await sequelize.authenticate();
    }),
};

// The concurrency class (concurrency.js).
Object.assign(cases, require('./concurrency.js'));
// Writes run once per row, leading wildcards, deep offsets (patterns.js).
Object.assign(cases, require('./patterns.js'));
// Read-modify-write races (lostupdate.js).
Object.assign(cases, require('./lostupdate.js'));
// Missing indexes, found through the inspection connection (missingindex.js).
Object.assign(cases, require('./missingindex.js'));

async function main() {
  const name = process.argv[2];
  if (name === '--list') {
    process.stdout.write(JSON.stringify(Object.keys(cases)) + '\n');
    return;
  }
  if (!url) throw new Error('NPLUS1_E2E_DATABASE_URL is not set');
  const run = cases[name];
  if (!run) throw new Error(`unknown case ${JSON.stringify(name)}; see --list`);
  await run();
}

main().catch((err) => {
  process.stderr.write(`${(err && err.stack) || err}\n`);
  process.exit(1);
});
