'use strict';
// The missing indexes of nplus1's end-to-end corpus, Node's half (Go's half
// is e2e/missingindex_test.go): a support desk whose tickets (20,000 rows)
// reference accounts by account_id, a foreign key without an index, and are
// looked up by external_ref, not indexed either; tickets_indexed is the same
// table after the migration that adds the indexes the models declare. As pg
// and Sequelize write them, each with its fix. cases.js runs these cases by
// name.

const { url, withClient } = require('./client.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const FIRST_ACCOUNTS = 'SELECT id, name FROM accounts ORDER BY id LIMIT $1';
const ACCOUNT_TICKETS = 'SELECT id, status, subject, created_at FROM tickets WHERE account_id = $1';
const ACCOUNT_TICKETS_INDEXED = 'SELECT id, status, subject, created_at FROM tickets_indexed WHERE account_id = $1';

// A loop walks the first LOOP_ACCOUNTS accounts; a hot endpoint serves
// HOT_REQUESTS requests HOT_SPACING_MS apart (each its own window, over 60
// runs of its lookup in a minute), the first looking up ticket FIRST_REF.
const LOOP_ACCOUNTS = 10;
const HOT_REQUESTS = 64;
const HOT_SPACING_MS = 120;
const FIRST_REF = 201;

const ticketRef = (i) => 'TK-' + String(i).padStart(6, '0');

async function hot(lookup) {
  for (let i = 0; i < HOT_REQUESTS; i++) {
    if (i > 0) await sleep(HOT_SPACING_MS);
    await lookup(i);
  }
}

async function withSequelize(fn) {
  const { Sequelize, DataTypes } = require('sequelize');
  const sequelize = new Sequelize(url, { dialect: 'postgres', logging: false, pool: { max: 4 } });
  const opts = { timestamps: false, underscored: true };
  const id = { type: DataTypes.BIGINT, primaryKey: true };
  const ticket = {
    id,
    accountId: DataTypes.BIGINT,
    status: DataTypes.TEXT,
    subject: DataTypes.TEXT,
    externalRef: DataTypes.TEXT,
    createdAt: DataTypes.DATE,
  };
  const Account = sequelize.define('Account', { id, name: DataTypes.TEXT, slug: DataTypes.TEXT }, { tableName: 'accounts', ...opts });
  // The association declares the foreign key; nothing declares its index.
  const Ticket = sequelize.define('Ticket', ticket, { tableName: 'tickets', ...opts });
  // The fixed model declares the indexes (the migration made them).
  const IndexedTicket = sequelize.define('IndexedTicket', ticket, {
    tableName: 'tickets_indexed',
    ...opts,
    indexes: [{ fields: ['account_id'] }, { unique: true, fields: ['external_ref'] }],
  });
  Account.hasMany(Ticket, { as: 'tickets', foreignKey: 'accountId' });
  Account.hasMany(IndexedTicket, { as: 'indexedTickets', foreignKey: 'accountId' });
  try {
    await fn({ sequelize, Account, Ticket, IndexedTicket });
  } finally {
    await sequelize.close();
  }
}

const firstAccounts = (Account) => Account.findAll({ attributes: ['id', 'name'], order: [['id', 'ASC']], limit: LOOP_ACCOUNTS });

const cases = {
  // Each account's tickets, one query per account, by the unindexed
  // foreign key: the loop, and the index its lookup lacks.
  'pg/account_tickets/n+1_unindexed_fk': () =>
    withClient(async (c) => {
      const { rows } = await c.query(FIRST_ACCOUNTS, [LOOP_ACCOUNTS]);
      for (const a of rows) await c.query(ACCOUNT_TICKETS, [a.id]);
    }),
  // The index created: still a loop, no longer a missing index.
  'pg/account_tickets/n+1_indexed_fk': () =>
    withClient(async (c) => {
      const { rows } = await c.query(FIRST_ACCOUNTS, [LOOP_ACCOUNTS]);
      for (const a of rows) await c.query(ACCOUNT_TICKETS_INDEXED, [a.id]);
    }),
  // account.getTickets() per account: WHERE "Ticket"."account_id" = 1,
  // the key inlined.
  'sequelize/account_tickets/n+1_get_tickets': () =>
    withSequelize(async ({ Account }) => {
      for (const a of await firstAccounts(Account)) await a.getTickets();
    }),
  'sequelize/account_tickets/n+1_get_tickets_indexed': () =>
    withSequelize(async ({ Account }) => {
      for (const a of await firstAccounts(Account)) await a.getIndexedTickets();
    }),
  // The loop's fix: include with separate, one WHERE account_id IN (...),
  // run once.
  'sequelize/account_tickets/fixed_include_separate': () =>
    withSequelize(({ Account, Ticket }) =>
      Account.findAll({
        attributes: ['id', 'name'],
        order: [['id', 'ASC']],
        limit: LOOP_ACCOUNTS,
        include: [{ model: Ticket, as: 'tickets', separate: true }],
      }),
    ),
  // A webhook endpoint finds each request's ticket by the external
  // system's reference: findOne({ where: { externalRef } }).
  'sequelize/webhook/hot_find_one_unindexed': () =>
    withSequelize(({ Ticket }) =>
      hot((i) => Ticket.findOne({ attributes: ['id', 'status'], where: { externalRef: ticketRef(FIRST_REF + i) } })),
    ),
  'sequelize/webhook/hot_find_one_indexed': () =>
    withSequelize(({ IndexedTicket }) =>
      hot((i) => IndexedTicket.findOne({ attributes: ['id', 'status'], where: { externalRef: ticketRef(FIRST_REF + i) } })),
    ),
};

module.exports = cases;
