'use strict';
// The patterns of nplus1's end-to-end corpus beyond N+1 reads, Node's half
// (Go's half is e2e/patterns_test.go): a write run once per row, a LIKE whose
// pattern starts with a wildcard, a deep OFFSET, each with its fix, as pg and
// Sequelize write them. cases.js runs these cases by name.

const { url, withClient } = require('./client.js');

const OPEN_ORDERS = 'SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT $2';
const AUDIT_INSERT = 'INSERT INTO audit_log (order_id, note) VALUES ($1, $2)';
const TICKETS_LIKE = 'SELECT id, subject FROM tickets WHERE subject LIKE $1';
const ITEMS_PAGE = 'SELECT id, order_id, quantity FROM order_items ORDER BY id LIMIT 50 OFFSET $1';
const ITEMS_KEYSET = 'SELECT id, order_id, quantity FROM order_items WHERE id > $1 ORDER BY id LIMIT 50';

async function withSequelize(fn) {
  const { Sequelize, DataTypes, Op } = require('sequelize');
  const sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 4 } });
  const opts = { timestamps: false, underscored: true };
  const id = { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true };
  const m = {
    sequelize,
    Op,
    User: sequelize.define('User', { id, name: DataTypes.TEXT, email: DataTypes.TEXT }, { tableName: 'users', ...opts }),
    Order: sequelize.define('Order', { id, userId: DataTypes.BIGINT, status: DataTypes.TEXT }, { tableName: 'orders', ...opts }),
    OrderItem: sequelize.define(
      'OrderItem',
      { id, orderId: DataTypes.BIGINT, productId: DataTypes.BIGINT, quantity: DataTypes.INTEGER },
      { tableName: 'order_items', ...opts },
    ),
    AuditLog: sequelize.define('AuditLog', { id, orderId: DataTypes.BIGINT, note: DataTypes.TEXT }, { tableName: 'audit_log', ...opts }),
    Ticket: sequelize.define('Ticket', { id, subject: DataTypes.TEXT }, { tableName: 'tickets', ...opts }),
  };
  try {
    await fn(m);
  } finally {
    await sequelize.close();
  }
}

const openOrders = (Order) =>
  Order.findAll({ attributes: ['id', 'userId'], where: { status: 'open' }, order: [['id', 'ASC']], limit: 20 });

const cases = {
  // One INSERT per order in one transaction, the keys read from a list.
  'pg/audit/insert_loop_in_transaction': () =>
    withClient(async (c) => {
      const { rows } = await c.query(OPEN_ORDERS, ['open', 20]);
      await c.query('BEGIN');
      for (const o of rows) await c.query(AUDIT_INSERT, [o.id, 'viewed']);
      await c.query('COMMIT');
    }),
  'pg/audit/fixed_multi_row_values': () =>
    withClient(async (c) => {
      const { rows } = await c.query(OPEN_ORDERS, ['open', 20]);
      const values = rows.map((_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(', ');
      await c.query(`INSERT INTO audit_log (order_id, note) VALUES ${values}`, rows.flatMap((o) => [o.id, 'viewed']));
    }),
  // Model.create per row, no transaction: autocommit INSERTs on a quiet pool.
  'sequelize/audit/create_loop': () =>
    withSequelize(async ({ Order, AuditLog }) => {
      for (const o of await openOrders(Order)) await AuditLog.create({ orderId: o.id, note: 'viewed' });
    }),
  'sequelize/audit/fixed_bulk_create': () =>
    withSequelize(async ({ Order, AuditLog }) => {
      const orders = await openOrders(Order);
      await AuditLog.bulkCreate(orders.map((o) => ({ orderId: o.id, note: 'viewed' })));
    }),

  // A search of the 20,000 tickets whose pattern the client binds (Prisma's
  // and TypeORM's contains).
  'pg/tickets/search_contains_bound': () => withClient((c) => c.query(TICKETS_LIKE, ['%ject 1234%'])),
  'pg/tickets/fixed_search_prefix': () => withClient((c) => c.query(TICKETS_LIKE, ['Subject 1234%'])),
  // Op.substring: Sequelize writes LIKE '%...%' into the text.
  'sequelize/tickets/search_substring': () =>
    withSequelize(({ Ticket, Op }) =>
      Ticket.findAll({ attributes: ['id', 'subject'], where: { subject: { [Op.substring]: 'ject 1234' } } }),
    ),
  'sequelize/tickets/fixed_search_starts_with': () =>
    withSequelize(({ Ticket, Op }) =>
      Ticket.findAll({ attributes: ['id', 'subject'], where: { subject: { [Op.startsWith]: 'Subject 1234' } } }),
    ),

  // Page 31 of 50-row pages: the offset bound as text.
  'pg/export_items/deep_page_bound': () => withClient((c) => c.query(ITEMS_PAGE, [1500])),
  'pg/export_items/fixed_keyset_page': () => withClient((c) => c.query(ITEMS_KEYSET, [1500])),
  // offset: Sequelize writes LIMIT 50 OFFSET 1500 into the text.
  'sequelize/export_items/deep_page': () =>
    withSequelize(({ OrderItem }) =>
      OrderItem.findAll({ attributes: ['id', 'orderId', 'quantity'], order: [['id', 'ASC']], limit: 50, offset: 1500 }),
    ),
  'sequelize/export_items/fixed_keyset_page': () =>
    withSequelize(({ OrderItem, Op }) =>
      OrderItem.findAll({
        attributes: ['id', 'orderId', 'quantity'],
        where: { id: { [Op.gt]: 1500 } },
        order: [['id', 'ASC']],
        limit: 50,
      }),
    ),
};

module.exports = cases;
