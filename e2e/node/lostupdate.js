'use strict';
// The race condition in updates of nplus1's end-to-end corpus, Node's half
// (Go's half is e2e/lostupdate_test.go): read a product's stock, compute the
// new stock in the application, write it back; and the fixes, as pg and
// Sequelize write them. cases.js runs these cases by name.

const { url, withClient } = require('./client.js');

const STOCK_READ = 'SELECT id, stock FROM products WHERE id = $1';
const STOCK_WRITE = 'UPDATE products SET stock = $1 WHERE id = $2';
const STOCK_DECREMENT = 'UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1';

async function withSequelize(fn) {
  const { Sequelize, DataTypes } = require('sequelize');
  // One connection: the read and the write of a request share it, as they
  // do on a quiet pool.
  const sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 1 } });
  const Product = sequelize.define(
    'Product',
    { id: { type: DataTypes.BIGINT, primaryKey: true }, stock: DataTypes.INTEGER },
    { tableName: 'products', timestamps: false },
  );
  try {
    await fn({ sequelize, Product });
  } finally {
    await sequelize.close();
  }
}

const cases = {
  // Read the stock, write back the stock less one.
  'pg/products/sell_read_modify_write': () =>
    withClient(async (c) => {
      const p = (await c.query(STOCK_READ, [21])).rows[0];
      await c.query(STOCK_WRITE, [p.stock - 1, p.id]);
    }),
  'pg/products/fixed_atomic_decrement': () =>
    withClient(async (c) => {
      const p = (await c.query(STOCK_READ, [21])).rows[0];
      await c.query(STOCK_DECREMENT, [1, p.id]);
    }),
  // A REPEATABLE READ transaction: a concurrent sale fails with 40001.
  'pg/products/fixed_repeatable_read': () =>
    withClient(async (c) => {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const p = (await c.query(STOCK_READ, [21])).rows[0];
      await c.query(STOCK_WRITE, [p.stock - 1, p.id]);
      await c.query('COMMIT');
    }),
  // findByPk, then save() of the changed attribute.
  'sequelize/products/sell_find_save': () =>
    withSequelize(async ({ Product }) => {
      const p = await Product.findByPk(22);
      p.stock = p.stock - 1;
      await p.save();
    }),
  // decrement(): UPDATE ... SET stock = stock - 1.
  'sequelize/products/fixed_decrement': () =>
    withSequelize(async ({ Product }) => {
      const p = await Product.findByPk(22);
      await p.decrement('stock', { by: 1 });
    }),
  // A transaction with the row locked as it is read.
  'sequelize/products/fixed_lock_update': () =>
    withSequelize(({ sequelize, Product }) =>
      sequelize.transaction(async (t) => {
        const p = await Product.findByPk(22, { transaction: t, lock: t.LOCK.UPDATE });
        p.stock = p.stock - 1;
        await p.save({ transaction: t });
      }),
    ),
};

module.exports = cases;
