// Package inspect is nplus1's optional inspection connection: one pgx
// connection, with a role of its own, through which nplus1 looks at the
// schema and at generic plans of the query shapes the detector asks about
// (detector.InspectionRequest), for the missing_index rule and to judge
// leading_wildcard.
//
// What it runs, and only that, each inspection in one read-only transaction
// with a statement timeout:
//
//	BEGIN READ ONLY
//	SET LOCAL statement_timeout = 2000          -- Options.StatementTimeout
//	SET LOCAL lock_timeout = 2000
//	-- PostgreSQL 16 and later:
//	EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) <normalized query>
//	-- PostgreSQL 15 and earlier: a generic plan of a prepared statement
//	DEALLOCATE ALL
//	PREPARE nplus1_inspect AS <normalized query>
//	SELECT coalesce(cardinality(parameter_types), 0) FROM pg_prepared_statements WHERE name = 'nplus1_inspect'
//	SET LOCAL plan_cache_mode = force_generic_plan
//	EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE nplus1_inspect(NULL, ...)
//	DEALLOCATE nplus1_inspect
//	-- for each table the plan reads (cached for Options.TTL):
//	SELECT ... FROM pg_class JOIN pg_namespace ...        -- reltuples
//	SELECT ... FROM pg_index JOIN pg_class JOIN pg_am ... -- indexes: columns, method, predicate
//	SELECT ... FROM pg_constraint ...                     -- foreign keys
//	EXPLAIN (FORMAT JSON) SELECT FROM <table>             -- only for a table never analyzed (reltuples < 0)
//	COMMIT
//
// The normalized query is the fingerprint's text: every literal a $n, so
// nothing the application sent as a value reaches the inspection connection,
// and a generic plan holds none. EXPLAIN never runs with ANALYZE, so no
// statement is executed; only reads are asked for (the detector never asks
// about a write or a locking read), the transaction is read-only, and the
// session starts with default_transaction_read_only on. The connection's
// role needs CONNECT on the database, USAGE on the schemas and SELECT on the
// tables (EXPLAIN checks it); the catalogs are readable by every role.
//
// Work runs on the Inspector's own goroutine (Run), never the analyzer's:
// Inspect answers from a cache per fingerprint (Options.TTL) or queues the
// request (Options.QueueSize; when full it is dropped and counted), and the
// goroutine runs at most one inspection per Options.Interval, delivering
// answers on Results. The connection is made at Run's start and remade
// with backoff (1 s doubling to 30 s) when it fails; each failure is one
// log line that names the server as host:port, the user and the reason (a
// refused login, a wrong host, a timeout, missing privileges), never the
// password, and the proxy relays on regardless.
package inspect
