'use strict';
// The concurrency class of nplus1's end-to-end corpus, Node's half (Go's half
// and the class's description are in e2e/concurrency_test.go): independent
// requests served concurrently over a small pool (pg's Pool, Sequelize's
// pool), without a traceparent, which must not be reported; and under the same
// load, real N+1s, which must be. cases.js runs these cases by name.
//
// Every case connects with the application_name in
// NPLUS1_E2E_APPLICATION_NAME (its findings are attributed by it) and takes
// its keys from NPLUS1_E2E_KEYS, the JSON of Go's ccKeys.

const url = process.env.NPLUS1_E2E_DATABASE_URL;
const app = process.env.NPLUS1_E2E_APPLICATION_NAME || 'e2e-node-concurrency';

function keys() {
  const k = process.env.NPLUS1_E2E_KEYS;
  if (!k) throw new Error('NPLUS1_E2E_KEYS is not set (the Go test sets it)');
  return JSON.parse(k);
}

const ORDER_BY_ID = 'SELECT id, user_id, status FROM orders WHERE id = $1';
const ORDER_FOR_UPDATE = 'SELECT id, user_id, status FROM orders WHERE id = $1 FOR UPDATE';
const ORDER_SET_STATUS = 'UPDATE orders SET status = $2 WHERE id = $1';
const USER_BY_ID = 'SELECT name, email FROM users WHERE id = $1';
const OPEN_ORDERS = 'SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT $2';
const ORDER_ITEMS_OF = 'SELECT id, product_id, quantity FROM order_items WHERE order_id = $1 ORDER BY id';
const PRODUCT_BY_ID = 'SELECT name, price_cents FROM products WHERE id = $1';
const LIST_LEN = 30;

// allInFlight runs fn(i) for every i < n, all at once.
const allInFlight = (n, fn) => Promise.all(Array.from({ length: n }, (_, i) => fn(i)));

// workers runs fn(i) for every i < n, w at a time.
async function workers(n, w, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: w }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

// ---- pg ----

// withPgPool runs fn on a pool of size connections, all open and idle before
// fn starts (a warmed-up service).
async function withPgPool(size, fn) {
  const { Pool } = require('pg');
  const p = new Pool({ connectionString: url, max: size, application_name: app });
  try {
    const held = await Promise.all(Array.from({ length: size }, () => p.connect()));
    held.forEach((c) => c.release());
    await fn(p);
  } finally {
    await p.end();
  }
}

// pgRequest is one independent request through the pool.
async function pgRequest(p, kind, order) {
  switch (kind) {
    case 'order_lookup':
      await p.query(ORDER_BY_ID, [order]);
      return;
    case 'order_then_customer': {
      const o = (await p.query(ORDER_BY_ID, [order])).rows[0];
      await p.query(USER_BY_ID, [o.user_id]);
      return;
    }
    case 'order_update_tx': {
      const c = await p.connect();
      try {
        await c.query('BEGIN');
        const o = (await c.query(ORDER_FOR_UPDATE, [order])).rows[0];
        await c.query(ORDER_SET_STATUS, [order, o.status]);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        c.release();
      }
      return;
    }
    default:
      throw new Error(`unknown request kind ${kind}`);
  }
}

// listThenUsers is the N+1 of one request: 30 open orders, then each order's
// customer, one query each (q is a client, or the pool itself).
async function listThenUsers(q) {
  const { rows } = await q.query(OPEN_ORDERS, ['open', LIST_LEN]);
  for (const o of rows) await q.query(USER_BY_ID, [o.user_id]);
}

// dependentLoad is the background of the must-flag cases: n requests of the
// order-then-customer kind over bgOrders, the pool's size in flight.
const dependentLoad = (p, size, n) => workers(n, size, (i) => pgRequest(p, 'order_then_customer', keys().bgOrders[i]));

// withClient runs fn on a client the request holds from the pool.
async function withClient(p, fn) {
  const c = await p.connect();
  try {
    await fn(c);
  } finally {
    c.release();
  }
}

// ---- Sequelize ----

async function withSequelize(size, fn) {
  const { Sequelize, DataTypes } = require('sequelize');
  const sequelize = new Sequelize(url, {
    dialect: 'postgres',
    logging: false,
    pool: { max: size, min: 0 },
    dialectOptions: { application_name: app },
  });
  const opts = { timestamps: false, underscored: true };
  const id = { type: DataTypes.BIGINT, primaryKey: true };
  const User = sequelize.define('User', { id, name: DataTypes.TEXT, email: DataTypes.TEXT }, { tableName: 'users', ...opts });
  const Order = sequelize.define('Order', { id, userId: DataTypes.BIGINT, status: DataTypes.TEXT }, { tableName: 'orders', ...opts });
  Order.belongsTo(User, { as: 'user', foreignKey: 'userId' });
  try {
    // Every connection open before the load, as in a warmed-up service.
    const cm = sequelize.connectionManager;
    const held = await Promise.all(Array.from({ length: size }, () => cm.getConnection()));
    held.forEach((c) => cm.releaseConnection(c));
    await fn({ sequelize, User, Order });
  } finally {
    await sequelize.close();
  }
}

async function sequelizeRequest({ sequelize, Order }, kind, order) {
  switch (kind) {
    case 'order_lookup':
      await Order.findByPk(order);
      return;
    case 'order_then_customer': {
      const o = await Order.findByPk(order);
      await o.getUser();
      return;
    }
    case 'order_update_tx':
      await sequelize.transaction(async (t) => {
        const o = await Order.findByPk(order, { transaction: t, lock: t.LOCK.UPDATE });
        await Order.update({ status: o.status }, { where: { id: order }, transaction: t });
      });
      return;
    default:
      throw new Error(`unknown request kind ${kind}`);
  }
}

// ---- the cases ----

const cases = {};
for (const kind of ['order_lookup', 'order_then_customer', 'order_update_tx']) {
  for (const [size, n] of [
    [2, 30],
    [4, 40],
    [8, 100],
  ]) {
    cases[`pg/concurrent/${kind}/pool_${size}x${n}`] = () =>
      withPgPool(size, (p) => allInFlight(n, (i) => pgRequest(p, kind, keys().orders[i])));
  }
  cases[`sequelize/concurrent/${kind}/pool_4x40`] = () =>
    withSequelize(4, (m) => allInFlight(40, (i) => sequelizeRequest(m, kind, keys().orders[i])));
}

// (1) A real N+1 in one request, on the client it holds, while 40 requests
// run the same lookup on the pool's other connections.
cases['pg/concurrent/n+1_in_one_request/pool_4x40'] = () =>
  withPgPool(4, (p) => Promise.all([dependentLoad(p, 4, 40), withClient(p, listThenUsers)]));

// (2) The loop calls pool.query for every lookup: under load each gets
// whichever connection is free, away from the list's.
cases['pg/concurrent/n+1_hopping_pool/pool_4x40'] = () =>
  withPgPool(4, (p) => Promise.all([dependentLoad(p, 4, 40), listThenUsers(p)]));

cases['sequelize/concurrent/n+1_hopping_pool/pool_4x40'] = () =>
  withSequelize(4, (m) =>
    Promise.all([
      workers(40, 4, (i) => sequelizeRequest(m, 'order_then_customer', keys().bgOrders[i])),
      (async () => {
        const orders = await m.Order.findAll({ where: { status: 'open' }, order: [['id', 'ASC']], limit: LIST_LEN });
        for (const o of orders) await o.getUser();
      })(),
    ]),
  );

// (3) A nested loop on the client one request holds: user 7's orders, each
// order's items, each item's product; meanwhile order pages and product pages
// (the same two lookups) on the other connections.
cases['pg/concurrent/nested_n+1/pool_4x40'] = () =>
  withPgPool(4, (p) => {
    const k = keys();
    const reqs = [];
    const d = [...k.detailOrders];
    const prods = [...k.products];
    for (let i = 0; d.length + prods.length > 0; i++) {
      if ((i % 5 === 0 && d.length > 0) || prods.length === 0) {
        const order = d.shift();
        reqs.push(() => p.query(ORDER_ITEMS_OF, [order]));
      } else {
        const product = prods.shift();
        reqs.push(() => p.query(PRODUCT_BY_ID, [product]));
      }
    }
    return Promise.all([
      workers(reqs.length, 4, (i) => reqs[i]()),
      withClient(p, async (c) => {
        const orders = (await c.query('SELECT id FROM orders WHERE user_id = $1 ORDER BY id', [7])).rows;
        for (const o of orders) {
          const items = (await c.query('SELECT id, product_id, quantity FROM order_items WHERE order_id = $1', [o.id])).rows;
          for (const it of items) await c.query('SELECT name, price_cents FROM products WHERE id = $1', [it.product_id]);
        }
      }),
    ]);
  });

// (4) A loop over ids the request carries (no result holds them) on the
// client it holds, while product pages run on the other connections: no other
// connection runs the users lookup.
cases['pg/concurrent/request_ids_loop_quiet_conn/pool_4x40'] = () =>
  withPgPool(4, (p) => {
    const k = keys();
    return Promise.all([
      workers(40, 3, (i) => p.query(PRODUCT_BY_ID, [k.quietProducts[i]])),
      withClient(p, async (c) => {
        for (const id of k.formUsers) await c.query(USER_BY_ID, [id]);
      }),
    ]);
  });

module.exports = cases;
