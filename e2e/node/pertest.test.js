'use strict';
// The per-test recipe for Jest and node-postgres (README, "Assert per
// test"): each test connects with its own name as application_name, runs
// its code through the proxy, then asks nplus1 to flush that application's
// windows and lists that application's findings, without sleeping. Tests
// of other files (Jest's parallel workers) run as other applications, so
// neither sees nor clears the other's findings.
//
// DATABASE_URL is the proxy; NPLUS1_API is nplus1's --http address. The Go
// test e2e/pertest_test.go runs this file against a real proxy and
// PostgreSQL.

const { Client } = require('pg');

const api = process.env.NPLUS1_API || 'http://127.0.0.1:9187';

// nplus1 asks the HTTP API; a refusal fails the test with its reason.
async function nplus1(method, path) {
  const res = await fetch(api + path, { method });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

// findingsOf flushes the application's open windows (the answer comes once
// nplus1 has analyzed every statement the test ran) and returns its findings.
async function findingsOf(app) {
  const scope = 'application=' + encodeURIComponent(app);
  await nplus1('POST', '/api/flush?' + scope);
  return nplus1('GET', '/api/findings?' + scope);
}

let db;
let app;

beforeEach(async () => {
  // PostgreSQL keeps 63 bytes of an application_name: keep test names short.
  app = expect.getState().currentTestName;
  await nplus1('DELETE', '/api/findings?application=' + encodeURIComponent(app));
  db = new Client({ connectionString: process.env.DATABASE_URL, application_name: app });
  await db.connect();
});

afterEach(async () => {
  await db.end();
});

const OPEN_ORDERS = 'SELECT id, user_id FROM orders WHERE status = $1 ORDER BY id LIMIT 20';

describe('orders page', () => {
  test('loads each user on its own (N+1)', async () => {
    const { rows } = await db.query(OPEN_ORDERS, ['open']);
    for (const o of rows) {
      await db.query('SELECT name, email FROM users WHERE id = $1', [o.user_id]);
    }
    const loops = (await findingsOf(app)).filter((f) => f.kind === 'n_plus_one');
    expect(loops).toHaveLength(1);
    expect(loops[0].tables).toEqual(['users']);
    expect(loops[0].count).toBe(rows.length);
  });

  test('loads the users in one query', async () => {
    const { rows } = await db.query(OPEN_ORDERS, ['open']);
    await db.query('SELECT id, name, email FROM users WHERE id = ANY($1)', [rows.map((o) => o.user_id)]);
    expect(await findingsOf(app)).toEqual([]);
  });
});
