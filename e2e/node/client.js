'use strict';
// withClient, shared by the corpus's Node cases: one node-postgres client
// of the database under test (through the proxy), ended after fn.

const url = process.env.NPLUS1_E2E_DATABASE_URL;

async function withClient(fn) {
  const { Client } = require('pg');
  const c = new Client({ connectionString: url, application_name: 'e2e-node-pg' });
  await c.connect();
  try {
    await fn(c);
  } finally {
    await c.end();
  }
}

module.exports = { url, withClient };
