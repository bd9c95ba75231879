// Package fingerprint turns SQL text into what the detector needs to know
// about it: for each statement, a fingerprint that is the same for every
// execution of the same query shape, a normalized text without literal
// values, and facts read from the parse tree.
//
// # What it owns
//
// For one SQL text, which may hold several statements, Of and Cache.Of return
// a Result with, per statement:
//
//   - ID and Hex: pg_query's fingerprint (github.com/pganalyze/pg_query_go/v6,
//     PostgreSQL 17's parser). Texts that differ only in literal values,
//     comments, whitespace, keyword case, IN-list length, or = ANY($1) versus
//     IN ($1, $2) share a fingerprint. Mind that pg_query ignores a LIMIT or
//     OFFSET whose value is a constant or parameter: "SELECT * FROM t" and
//     "SELECT * FROM t LIMIT 10" share one too (their Facts differ). A
//     statement that does not parse gets a fallback
//     fingerprint from its tokens, with literals and IN-list lengths dropped,
//     and Kind "unknown", and Err says why in words that quote nothing of the
//     statement. Fingerprints do not depend on the process, the run or the
//     cache: they can be exported and compared between sidecars.
//   - Normalized: the statement with every literal replaced by $n (numbered
//     after the highest parameter it uses), TRUE and FALSE used as values
//     included, comments removed, whitespace runs made one space. Unlike
//     pg_query's normalization it replaces literals in every position, ORDER
//     BY 1 and varchar(255) included, and it never holds a literal value; the
//     fuzz tests plant literals in every notation and check.
//   - LiteralsHash: a hash of the literal values, for telling "the same query
//     with the same values" (a duplicate) from "with other values".
//   - LiteralKeys: the keyed digests (internal/valuekey) of the literal
//     values, one per literal in the order Normalized numbers them: numbers
//     as written (integers in decimal, a '-' sign folded in where the
//     grammar folds it), strings after unquoting (doubled quotes, E'...'
//     escapes, and backslash escapes in '...' with
//     standard_conforming_strings off, $$...$$, U&'...'). With them the detector can find the keys of a
//     query that inlines its values (simple protocol, psql, an ORM's raw
//     path) among the values of an earlier result, as it does with bound
//     parameters. A literal that is not a key, or that cannot be decoded
//     exactly, has valuekey.None, never a guess; a statement keys its first
//     MaxLiteralKeys (1024) literals. A test holds every key to the
//     constants of pg_query's parse tree, and the fuzz tests keep doing so.
//   - Facts: kind, tables read and written, SELECT *, LIMIT, OFFSET and its
//     value or parameter, aggregate-only, the columns compared by equality
//     and whether by a list (= ANY, IN), leading-wildcard LIKE, the
//     parameters LIKE patterns start with and the columns they match, the
//     rows of an INSERT's VALUES list, row locking, UPDATE or DELETE without
//     WHERE. Each field's documentation states its exact rule.
//
// and for the text, the sqlcommenter tags of its last /* */ comment that has
// the sqlcommenter form (key='url-encoded value',...), or failing that the
// Rails legacy form (key:value,... with an application, controller, action
// or job key), and the trace id of a valid W3C traceparent tag. Tags never
// change a fingerprint.
//
// # How
//
// A text is split into tokens by a lexer that follows PostgreSQL's scanner
// rules and is checked against pg_query's scanner (the tests compare them
// token by token, and a fuzz test keeps comparing). The tokens give the
// statements (split at semicolons, but not inside BEGIN ATOMIC ... END), the
// normalized text, the literals and the comments. Each statement is
// fingerprinted by pg_query; its parse tree, which costs a full parse, is
// read once per fingerprint. LIMIT, OFFSET and LIKE patterns, which pg_query's
// fingerprint does not see, are read from each text's tokens; a test checks
// the two readings agree.
//
// A Cache keeps three bounded LRU maps: exact text to Result (a hit costs a
// map lookup), statement template to fingerprint (a hit costs the lexer and
// no call into pg_query), and fingerprint to facts (a miss costs a parse). A
// template is a statement's token sequence with literal values blanked and
// their token types kept; two statements with one template parse to the same
// tree but for constant values, so they have the same fingerprint. Templates
// are used for SELECT, INSERT, UPDATE, DELETE and MERGE only, where every
// literal is such a constant; FuzzOf checks Cache.Of against Of. Once a
// fingerprint has had more than a thousand new texts through its templates
// (simple-protocol queries with a new value inlined each time), its texts are
// no longer kept by exact text: they would never hit and would only push out
// texts that repeat (CacheStats.Volatile counts them).
//
// # standard_conforming_strings
//
// Where a string constant ends depends on the session: with
// standard_conforming_strings on (PostgreSQL's default) a backslash is an
// ordinary character in '...', with it off it escapes as in E'...'. So
//
//	SELECT * FROM t WHERE name = 'x\' OR token = ''abc'' --'
//
// compares name with one constant with the setting off and, with it on,
// with a short constant followed by code. Read with the wrong
// setting, the text of a literal would stand outside the literal, in
// Normalized, the facts and the tags. OfStrings and Cache.OfStrings take the
// session's setting (a Strings; pgwire.Execution.StandardStrings carries it
// from the wire):
//
//   - StringsStandard: the lexer reads as the server with the setting on.
//   - StringsEscape: '...' (and N'...') take backslash escapes, U&'...' is
//     rejected as the server rejects it (Err, and no fingerprint from
//     pg_query). pg_query reads with the setting on, so the text it is
//     given has an E before each '...' with a backslash (N'...' becomes
//     NCHAR E'...'), which the server reads the same way; ParseError.Position
//     is then 0. Literal keys decode such strings as E'...'.
//   - StringsUnknown (Of and Cache.Of, and every execution whose reader
//     could not see the setting: server logs, recordings, a session whose
//     tracker has not seen it reported): the text is read both ways. Where the two readings
//     agree, the tokens are kept; a '...' with a backslash, whose value
//     differs, has no literal key (valuekey.None). Each stretch where they
//     differ, from the first token where they part to where both start a
//     token at the same offset again, is one literal: Normalized has one $n
//     for it, its comments give no tags, and pg_query is given the text
//     with an empty string constant in its place, so the fingerprint and
//     facts come only from what both readings take for code. So whatever
//     is inside a string constant under either setting stays out of every
//     output. The price is paid only by texts with a backslash in a '...'
//     string, and only where it moves the end of the string ('C:\' is one
//     such): their fingerprint is that of the text with the stretch
//     blanked.
//
// The Cache keeps one Result per text and setting; templates and shapes are
// shared, as a template never holds a string whose reading depends on the
// setting. Fingerprints of texts without a backslash in a '...' string do
// not depend on the setting.
//
// Input assumptions: the text is UTF-8, and it ends at its first NUL byte,
// as on the wire.
//
// # Concurrency
//
// Of and all Cache methods are safe for concurrent use. Results, and the
// Statements, Facts and Tags they hold, are shared between callers and must
// not be modified. Two goroutines that miss on the same text at once both
// compute it; one Result is kept. The package starts no goroutines and holds
// no state outside the Caches its callers make; each Cache has its own
// counters, read with Stats for export as metrics.
//
// # Cost
//
// Measured with go test -bench . -benchmem, 6 to 10 runs each, on a 2-vCPU
// linux/amd64 virtual machine (Go 1.26) that other work kept busy (load
// average 5 to 8): the best run of each, which is the closest to the cost
// itself; the median was up to three times higher. The statement is a typical ORM find-by-id of
// about 200 bytes unless said otherwise.
//
//	BenchmarkCacheHit                  30 ns/op        0 B/op     0 allocs/op
//	BenchmarkCacheHitParallel          28 ns/op        0 B/op     0 allocs/op
//	BenchmarkCacheMiss                2.0 µs/op      512 B/op     6 allocs/op  new text, known template (inlined values)
//	BenchmarkCacheMissTraceparent     4.3 µs/op     1192 B/op    12 allocs/op  prepared text plus a per-request traceparent
//	BenchmarkCacheMiss200Params        24 µs/op     2865 B/op     8 allocs/op  eager load, IN with 200 parameters
//	BenchmarkCacheMissMulti           8.8 µs/op     1104 B/op    11 allocs/op  four statements
//	BenchmarkCold/select               90 µs/op    10808 B/op   275 allocs/op  new fingerprint: pg_query fingerprint and parse
//	BenchmarkCold/select-literal       58 µs/op     7712 B/op   205 allocs/op
//	BenchmarkCold/200-params          454 µs/op    60736 B/op  1521 allocs/op
//	BenchmarkCold/multi               103 µs/op     9624 B/op   235 allocs/op
//	BenchmarkLex                      0.8 µs/op        0 B/op     0 allocs/op
//
// A text seen before costs a map lookup. A new text of a known shape, which
// is what an ORM that inlines values or adds a traceparent produces on every
// execution, costs a few microseconds and no call into pg_query; of that,
// keying its literals costs 100 to 150 ns a literal, most of it in
// valuekey (measured before and after LiteralKeys on a busy 2-vCPU machine:
// BenchmarkCacheMiss, an id and LIMIT 1, 2.8 to 3.1 µs;
// BenchmarkCacheMissStrings, three strings and an id, 2.3 to 2.8 µs). A new shape
// costs pg_query's fingerprint and a full parse into Go structures, where
// the protobuf round trip dominates: tens of microseconds, once per
// fingerprint while the Cache holds it.
package fingerprint
