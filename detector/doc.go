// Package detector finds the query patterns nplus1 exists to report (N+1
// loops of reads and of writes, duplicate queries, unpaginated reads, SELECT
// *, LIKE patterns that start with a wildcard and deep OFFSETs) in a stream
// of executed statements, and turns them into Finding values that name the
// fix.
//
// # Input and output
//
// The caller builds an Event per pgwire.Execution: the execution itself, the
// fingerprint.Statement of its SQL (the Exec.StatementIndex-th statement of
// the fingerprinted text) and the sqlcommenter trace id and tags of that text.
// Observe takes one Event; Advance tells the detector the time; Flush closes
// everything. Each returns the findings that became reportable, in a
// deterministic order. The live proxy and the offline replay drive the same
// code: the proxy calls Advance from a ticker with the wall clock, a replay
// with the capture's clock, and Flush at the end.
//
// The detector is a pure function of the events and of the times handed to
// Advance: it reads no clock, starts no goroutine, and the same events give
// the same findings, byte for byte in JSON. A Detector is not safe for
// concurrent use: one goroutine (the analyzer) owns it and makes every call,
// Stats included.
//
// # Groups and windows
//
// Executions are grouped by the sqlcommenter trace id when the SQL carries a
// traceparent (one web request, even across pooled connections), otherwise by
// connection. Within a group, a window collects consecutive executions and
// ends at whichever comes first:
//
//   - transaction end: the execution after which the connection went back to
//     idle from a transaction block (Execution.TxEnd), unless the block ran
//     writes and nothing else (no read, no failure, not rolled back): ORMs
//     that wrap each save in a transaction of its own write a loop of
//     creates as a run of such blocks, so the window goes on until the idle
//     gap, as it does for autocommit statements (writes.go);
//   - idle gap: no statement started for IdleGap after the previous one ended,
//     unless a loop was running and goes on within StallGap (stall.go: the
//     next statement repeats the loop's shape with one more key of the
//     result it walks; a stalled client or machine, not a new request).
//     A window that closed while a loop ran is kept until MaxWindow after
//     its start and opened again if the loop goes on after a longer stall
//     (or an inner loop resumes with a key of the outer loop's latest
//     result); what it reported at its first close is not reported again,
//     and an N+1 it saw on repetition alone waits until the window is
//     forgotten (the next statement does not go on with the loop, or
//     MaxWindow passed), since what follows the stall may prove it;
//   - MaxWindow after the window's first statement started;
//   - MaxWindowEvents executions (a memory bound, counted).
//
// The rules run when a window closes, so counts are final when reported; the
// latency this adds is one idle gap, or StallGap (500ms) for a window that
// ended in a loop. StallGap covers the scheduler stalls of a loaded 2-core
// machine (135-300ms seen while a CPU hog ran beside the test suite) at the
// cost of half a second more before a loop's finding appears; longer
// stalls are bridged by reopening, at no extra latency.
//
// Defaults, and why:
//
//   - IdleGap 100ms. Inside an N+1 loop the gap between two queries is the
//     client's work per iteration: well under a millisecond for an ORM that
//     only maps rows, a few milliseconds for code that formats, validates or
//     calls a cache. 100ms leaves 20 times that, so such a loop stays in one
//     window. Separate requests on a pooled connection are spaced by the
//     time between requests; from a developer clicking or a test suite
//     pausing between calls that is well above 100ms, so they do not merge.
//     Traffic dense enough to reuse one connection more often than every
//     100ms can only be told apart with trace ids; sqlcommenter fixes that.
//   - MaxWindow 5s: longer than any request a developer waits for, so a slow
//     request is not cut in two, while a connection that is never idle for
//     100ms (a busy pool) is still judged in bounded slices rather than
//     merging unrelated requests forever. A longer loop is still caught: each
//     slice of it is an N+1 of its own, and the cooldown reports it once.
//   - NPlusOneThreshold 5, DuplicateThreshold 3, UnpaginatedRows 1000 and
//     ReportCooldown 1 minute are the defaults.
//   - MaxGroups 4096, MaxWindowEvents 2000, MaxParamsPerShape 512: a window
//     costs about 50 bytes per execution, so the worst case (every group
//     with a full window at once) stays near 400 MB while normal traffic
//     (tens of open windows of tens of statements) costs kilobytes. 2000
//     executions are far more than any rule needs to be sure.
//
// # Rules
//
// Only statements that succeeded are judged: SELECTs that read a table
// (SELECT 1 health checks, SELECT now() or nextval() read none), and
// INSERT, UPDATE and DELETE for n_plus_one and leading_wildcard. Failed
// statements (a SQLSTATE) do not count. Writes are never judged for
// duplicate_query: three identical INSERTs or `UPDATE ... SET n = n + 1` are
// not redundant, and a warning that is wrong half the time would not be
// trusted. Statements reading (or writing) only system catalogs
// (pg_catalog, information_schema, pg_*) are skipped unless
// Config.JudgeCatalogs: drivers and ORMs issue them and the application cannot
// change them. Every statement with a fingerprint, judged or not, can be the
// source of an N+1.
//
// A parameter set is the hash of the bound values (Execution.ParamsHash,
// extended protocol) combined with the hash of the literals in the text
// (Statement.LiteralsHash, simple protocol or literals inlined by the client).
//
//   - n_plus_one: one shape ran at least NPlusOneThreshold times with at least
//     that many distinct parameter sets (so 4 lookups are not flagged and 5
//     are), in any order (A B A B counts). Walks over pages are not N+1s: a
//     shape with a LIMIT is exempt when an execution used a constant OFFSET
//     above zero, when it filters no column by equality (keyset pagination,
//     WHERE id > $1 LIMIT n), or when every execution but the last returned
//     the same number (2 or more) of rows and the last no more. The source is
//     the nearest earlier statement of another shape that returned at least
//     as many rows as the loop ran; a shape that itself repeats qualifies with
//     its summed rows when the loop ran more often than it (nested loops:
//     orders → items per order → product per item give two findings, items
//     sourced by orders and products by items). When none qualifies the
//     finding has no source and its suggestion says so.
//
//     The loop is then proven or not (Finding.Evidence):
//
//   - data_flow: the loop's keys — its bound parameters
//     (Execution.ParamKeys) or, in the simple protocol, the literals of its
//     text (Statement.LiteralKeys) — are found among the values of one
//     earlier result (Execution.Result): a single execution in the window,
//     the union of the results of a shape that is itself an N+1 in the window
//     (the outer loop of a nested loop), or a recent result of another
//     connection of the same pool scope (same user, database, application
//     name and client address: a loop whose lookups went out over a pool),
//     at most MaxWindow before the loop. Proof needs, for one parameter
//     position and one column, at least NPlusOneThreshold (or all) of the
//     loop's distinct keys and at least half of them: digests of small
//     integers match by chance across unrelated columns, half of a loop's
//     keys do not. Half is not enough where chance is likely: lookups of
//     a small table on a busy connection meet some values of any list. So
//     a match with a source on another connection, or with fewer than nine
//     in ten of the loop's keys, also needs the order of the source's rows:
//     taken in the order they were first used, at least NPlusOneThreshold
//     of the matched keys and four in five of them follow the rows (a loop
//     walks its list in order, and a pool hands each connection an ordered
//     part of it; chance puts five keys in order once in 120). A loop over
//     a set or a hash map walks in no order, and is proven by the nine in
//     ten. The proven source replaces the row-count guess in
//     Finding.Source. Only digests are compared (internal/valuekey, a
//     random per-process key); no value is kept.
//
//     A loop that asks the pool for a connection at every lookup, on a busy
//     pool, leaves a few lookups on each connection, too few anywhere to
//     prove anything. Its pieces are joined in the pool scope: each closing
//     connection window adds the keys it used that are values of a recent
//     result of the scope with at least 2 × NPlusOneThreshold rows, with
//     when they were used and the row they came from. The union is an N+1
//     proven by the data flow when it walked the source (at least
//     NPlusOneThreshold keys and at least half of the column's distinct
//     values) in the order of its rows (four in five, as above), and is
//     reported once no window of the scope that opened before its last
//     lookup is still open, so that it counts the whole loop
//     (Evidence.Hops: the connections it ran on; Stats.Hopped). Lists
//     shorter than 2 × NPlusOneThreshold are not joined across connections:
//     a short list is matched by chance too easily.
//
//   - repetition: no result held the keys (keys from the request itself, a
//     cache, a form; or no value evidence: a server-log replay, the
//     evidence turned off). Such a loop is reported only when nothing says
//     the repeats are independent requests: its group is a trace (one
//     request), or no other connection of its pool scope ran the same shape
//     since its window began. Otherwise (a pool serving concurrent requests,
//     pgbench) it is not reported (Stats.Concurrent): at the wire, without a
//     trace id or a data flow, a busy pool and a loop look alike. A loop
//     whose lookups are spread so thin over a large pool that no connection
//     runs NPlusOneThreshold of them is not seen unless its pieces join
//     (above): a loop over a list of fewer than 2 × NPlusOneThreshold
//     values, or over keys from the request, spread that thin is a known
//     limit.
//
//     Severity: warning; critical from 10 × NPlusOneThreshold executions or
//     one second of summed server time when a source is known (proven, or
//     found by row count); keys from the request alone stay a warning.
//
//   - duplicate_query: a shape with a parameter set that ran at least
//     DuplicateThreshold times, when the shape is not an N+1 in that window
//     (a loop that revisits some keys is one N+1, not an N+1 and a
//     duplicate). When the pool was busy (as above: no trace, another
//     connection of the scope ran the shape), a parameter set counts only its
//     executions in a row: independent requests repeat a popular key by
//     chance, spread among other keys (pgbench's random ids), while one
//     request that repeats a query runs it again and again. Severity
//     warning; critical from 10 × DuplicateThreshold.
//
//   - unpaginated: a SELECT with no LIMIT/FETCH, not aggregate-only, that
//     returned at least UnpaginatedRows rows; rows is the largest count seen.
//     Severity warning; critical from 10 × UnpaginatedRows rows.
//
//   - select_star: a SELECT whose top-level target list is * or t.*. It is
//     reported once per fingerprint for the detector's life (bounded by
//     MaxSelectStar), with severity info, or warning when the shape is also an
//     N+1 or unpaginated in that window; a select_star first reported as info
//     is reported again if it later turns warning.
//
//   - n_plus_one of writes (Finding.Command INSERT, UPDATE or DELETE): one
//     write shape ran one row at a time at least NPlusOneThreshold times with
//     at least that many distinct parameter sets. One row at a time: an
//     INSERT that wrote at most one row from a VALUES list of at most one
//     row, an UPDATE or DELETE keyed by equality on a value (not = ANY or IN,
//     which are the fix; not without a key). So a multi-row VALUES, COPY,
//     INSERT ... SELECT FROM unnest($1) or UPDATE ... WHERE id = ANY($1) run
//     in chunks is never one. Proof, strongest first:
//
//   - data_flow: its keys were read from an earlier result, as for reads
//     (loopEvidence): reported wherever it ran.
//
//   - transaction: every execution ran in one transaction block. A
//     transaction is one unit of the application's work, which a pool never
//     shares between requests, so this is reported even when other
//     connections of the pool ran the shape meanwhile: it is the strong
//     signal when the keys come from the application rather than a result
//     (an import, a form with many rows).
//
//   - repetition: autocommit writes, or one transaction per write (joined
//     in one window, see Groups and windows), with keys from no result:
//     reported only on a quiet pool or in a trace, exactly as reads are. On a
//     busy pool independent requests that each write a row look alike
//     (Stats.Concurrent). pgbench's tpcb-like script over many connections
//     is such traffic, and its transactions also read, so each ends its
//     window with one write of each shape: it is never flagged.
//
//     Severity warning; critical from 10 × NPlusOneThreshold rows or one
//     second, when proven or in one transaction.
//
//   - leading_wildcard: a LIKE or ILIKE (~~, ~~*, negated or not) whose
//     pattern starts with % or _: a literal in the text
//     (fingerprint.Facts.LeadingWildcardLike, '%' || $1 included), or a
//     bound parameter (Facts.LikeParams) whose value's first byte the
//     tracker saw be % or _ (pgwire.Execution.ParamWildcard: one bit per
//     parameter, never the value). No B-tree index serves it; whether that
//     matters depends on the table's size and on a trigram or full-text
//     index, which the wire does not show, so without an inspection
//     connection the finding says the query may read every row, with
//     severity info. Count is its executions in the window with such a
//     pattern; judged reads and writes alike.
//
//     With an inspection connection (Config.Inspect) an occurrence on a
//     read is not reported when its window closes: it waits for the
//     inspection of its shape, asked for through the missing_index rule's
//     requests and cache (Wants, Inspected; a shape may wait for both
//     rules, and one answer settles both). The generic plan of the
//     normalized text has no constant prefix to the pattern ($n, '%' ||
//     $n), so it shows what serves the LIKE whatever the value: a Seq Scan
//     of a table of at least MissingIndexRows (10,000) estimated rows whose
//     filter matches the statement's LIKE column with ~~ or ~~*
//     (ScanFacts.LikeColumns) reads every row on every run, and is reported
//     with severity warning, the table's size and the pg_trgm index for
//     the column; a plan that uses an index (a pg_trgm GIN or GiST index,
//     a full-text setup) or scans a smaller table reports nothing, nor
//     does a NOT LIKE, which no index serves. The 10,000 rows are
//     missing_index's, for the same reason: below it a Seq Scan costs well
//     under a millisecond. When no plan can say, the occurrence falls back
//     to the "may" finding at info: at once when the inspection failed
//     (privileges, a timeout, a query that does not plan); 30 seconds of
//     event time after its window (when missing_index asks again) when no
//     answer came, because the inspector dropped the request or its
//     connection is down; and at the end (Unanswered, which the caller
//     calls after its last Flush and its last requests). A write or a
//     locking read is never planned, so its occurrence is the "may"
//     finding at once, as without an inspection. At most 8 occurrences
//     wait per shape (later ones add their executions to the eighth).
//
//   - deep_offset: a SELECT with an OFFSET of at least DeepOffset (1000): a
//     literal (Facts.Offset), or a bound parameter (Facts.OffsetParam) whose
//     value the tracker saw be an integer of at least pgwire.LargeParam
//     (Execution.ParamLarge; judged while DeepOffset is at most that). OFFSET
//     n reads and discards n rows, so a walk of pages costs the square of
//     its length: 1000 is where a page of 50 is 20 times the work it shows,
//     and where the unpaginated rule draws its line too. Count is the deep
//     pages in the window; a walk shows every page past the line. Severity
//     warning; critical from NPlusOneThreshold deep pages in one window or a
//     literal OFFSET of 10 × DeepOffset. (Pages with OFFSET are still no
//     N+1: see n_plus_one.)
//
//   - lost_update: a read-modify-write race on one connection. A SELECT that
//     returned one row of one table by key (col = $n or a literal; no list
//     of keys) is remembered with the digests of its key values
//     (Execution.ParamKeys, Statement.LiteralKeys); an UPDATE of the same
//     table that starts within LostUpdateWindow (1s) after it, whose WHERE
//     has the same value for one of its key columns, and that SETs a column
//     the read returned to a value the client sent (a bare $n or literal,
//     not stock = stock - $1), is the application writing back what it
//     computed from the read: two requests that do this at once both write,
//     and one write is lost. Not when the UPDATE is guarded (its WHERE also
//     compares a column it sets, or a version column: version, lock_version,
//     *_version, xmin), nor when the latest read of the row locked it (FOR
//     UPDATE, FOR SHARE and the like), nor when the read and the write ran
//     in one transaction block at REPEATABLE READ or SERIALIZABLE, as far as
//     the statements show the level (BEGIN ISOLATION LEVEL, SET
//     TRANSACTION, SET default_transaction_isolation and its session forms);
//     READ COMMITTED, the default, still races. One second because code
//     that writes back what it read does so at once; a later update on a
//     pooled connection belongs to another request. Each read counts for one
//     UPDATE at most; the finding is on the UPDATE's shape, its source the
//     read. Severity warning. Without value evidence (--evidence off, or a
//     replay of server logs, which carry no digests of parameters) a bound
//     key is not seen and the rule is silent. See lostupdate.go.
//
//   - missing_index (with an inspection connection only: Config.Inspect):
//     a read that runs often whose generic plan reads a large table with a
//     Seq Scan under a filter that no index serves. Runs often: the lookup
//     of an N+1 reported in the window, or at least MissingIndexRuns (60)
//     runs of the shape within a minute of event time, once a second on
//     average, which a developer's own clicking seldom reaches for one
//     shape unless a page runs it in a loop or on every request. Such a
//     shape is asked for (Wants: the normalized text, never a value; the
//     same requests serve leading_wildcard, above); the caller's
//     inspection connection answers with the Seq Scans of its generic plan
//     (Inspected) and the catalogs' facts; a scan of a table of at least
//     MissingIndexRows (10,000) estimated rows whose filter compares (=,
//     <, >, IN, = ANY) a column that leads no index is the finding. A
//     LIKE in the filter is not such a comparison (ScanFacts.LikeColumns
//     are apart from FilterColumns): a B-tree index on the column would
//     not serve a leading wildcard, and leading_wildcard names the index
//     that does. 10,000 rows because below that a Seq Scan costs well under a
//     millisecond and the planner rightly prefers it; past it every run
//     reads the whole table. The finding's time is that of the window that
//     made the shape pending; its Count and DurationMS are the runs of the
//     minute that made it hot (an N+1's: its loop, and any earlier runs of
//     the shape in that minute) and those until the answer came. It goes
//     through the safelist and the
//     cooldown like the others. Severity warning; critical when the shape
//     was an N+1's lookup (the scan runs once per row of the loop). The
//     suggestion is the CREATE INDEX CONCURRENTLY statement and the ORMs'
//     declarations, and says when the column is a foreign key without an
//     index. See missingindex.go.
//
//   - slow_query: a statement of any command, judged or not, whose server
//     time (as the proxy saw it: from its request to its completion) reached
//     SlowThreshold. Off unless set: what is slow depends on the
//     application, and a default would flag every report query of a small
//     app. One finding per shape per window, through the cooldown like the
//     others, so once per fingerprint per ReportCooldown and pool scope;
//     Count is the slow runs, DurationMS their time, MaxDurationMS and Rows
//     the slowest one's. Severity warning; critical from 10 × SlowThreshold.
//
// A batched lookup (= ANY($1), IN (...)), a JOIN and SELECT count(*) run once
// and flag nothing, unless they return UnpaginatedRows rows without a LIMIT.
// Neither does a batched write (a multi-row VALUES, = ANY($1)), however often
// it runs.
//
// Without an inspection of the schema (the size of a table, its indexes),
// leading_wildcard can only say "may"; with one it is definite or not
// reported; missing_index needs one; the other kinds are properties of the
// traffic itself.
//
// # Reporting
//
// A finding then passes the safelist (Config.Ignore, see ParseIgnore), then
// the cooldown: the same (kind, fingerprint, source fingerprint) is reported
// once per ReportCooldown of event time per pool scope (user, database,
// application, client address: the connections of one client pool), and the
// next report carries in Occurrences how many windows showed it meanwhile and
// in Connections on how many connections. Stats counts every occurrence,
// reported, suppressed or ignored. With trace ids every request is a group
// key of its own, with a cooldown of its own, so each request that shows a
// pattern is reported, with its trace id; without them one loop served by a
// pool of ten connections is reported once per cooldown, not ten times. The
// scopes' cooldowns are bounded by the scope table (1024 scopes, least
// recently active forgotten; a forgotten scope may report again).
// ResetReported forgets the cooldowns, for a test suite that clears findings
// between tests.
//
// Sinks that write JSON should use a json.Encoder with SetEscapeHTML(false),
// so that the > and & in suggestions stay readable.
//
// A Finding holds no literal value: queries are the fingerprint's normalized
// text, suggestions are built from table and column names and counts.
//
// # Memory
//
// Every bound is a Config field with a default, and reaching it is counted in
// Stats: MaxGroups (least recently active group evicted, its window closed and
// judged first), MaxWindowEvents (window closed early), MaxParamsPerShape
// (further parameter sets counted, not kept; distinct_params is then a lower
// bound) and MaxSelectStar. The value evidence is bounded too: the result
// digests open windows keep (MaxEvidenceBytes, 64 MB at 8 bytes a digest and
// 16 a result; past it results are not kept, Stats.EvidenceDropped, and their
// loops fall back to repetition), copied out of the executions so that a
// window never keeps an execution's memory alive (pgwire builds a lookup's
// result in its execution's allocation), the
// recent results kept for loops through a pool (MaxRecentSources, 1024
// results with at least NPlusOneThreshold rows, each at most the tracker's
// MaxEvidenceRows × MaxEvidenceColumns digests, with an index from each value
// to the results holding it, so that a loop's search for its source costs
// its keys, not the ring's length: 131 072 entries, at most 5 MB; results
// past it are searched one by one), the pool scopes followed for
// concurrency (1024, with 4096 shapes each, the least recently active
// forgotten) and the keys per shape (MaxParamsPerShape per parameter
// position, 8 positions). lost_update follows at most MaxGroups connections
// (least recently active forgotten), each with its last 4 to 8 reads by key.
package detector
