package fingerprint

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/nplus1/nplus1/internal/fnv1a"
	"github.com/nplus1/nplus1/internal/valuekey"
)

// Kind is the kind of a statement.
type Kind string

// The kinds of statement. KindUtility covers DDL and session and transaction
// control (CREATE, ALTER, SET, SHOW, BEGIN, COMMIT, VACUUM, ...). KindOther
// covers statements that run or stand for other statements (EXPLAIN, CALL,
// DO, PREPARE, EXECUTE, DECLARE, FETCH, MOVE, CLOSE) and the empty statement.
// KindUnknown marks a statement that did not parse.
const (
	KindSelect  Kind = "select"
	KindInsert  Kind = "insert"
	KindUpdate  Kind = "update"
	KindDelete  Kind = "delete"
	KindMerge   Kind = "merge"
	KindCopy    Kind = "copy"
	KindUtility Kind = "utility"
	KindOther   Kind = "other"
	KindUnknown Kind = "unknown"
)

// Facts are what the detector needs to know about a statement, read from its
// parse tree. Facts values are shared between results and must not be
// modified.
type Facts struct {
	Kind Kind

	// TablesRead and TablesWritten name the tables the statement reads and
	// writes, schema-qualified when the SQL qualifies them ("public.users"),
	// sorted and without duplicates. Written tables are the targets of
	// INSERT, UPDATE, DELETE, MERGE, COPY FROM, SELECT INTO, CREATE TABLE AS
	// and TRUNCATE; every other table reference counts as read. References
	// to a WITH query's name are not tables. For EXPLAIN, PREPARE and DECLARE
	// the tables are those of the statement inside; other utility statements
	// (DDL, SET, ...) list none.
	TablesRead    []string
	TablesWritten []string

	// SelectStar: the top-level SELECT list (any branch of a UNION) holds *
	// or t.*, and that star expands to all columns of a stored table: a table
	// in FROM, or a subquery or WITH query that itself selects such a star.
	// So count(*), EXISTS (SELECT * ...), SELECT * FROM (SELECT a, b ...) and
	// SELECT * FROM generate_series(...) do not count. Only set for SELECT.
	SelectStar bool

	// HasLimit: the top-level SELECT has LIMIT n or FETCH FIRST; LIMIT ALL
	// and LIMIT NULL do not count. HasOffset: it has OFFSET. Offset is the
	// OFFSET value when written as an integer literal (or a string constant
	// that holds one, OFFSET '1500', as drivers that inline parameters
	// write it), -1 when OFFSET is an expression or parameter, and 0 without
	// OFFSET. Only set for SELECT.
	HasLimit  bool
	HasOffset bool
	Offset    int64

	// AggregateOnly: a SELECT without GROUP BY or UNION whose list holds at
	// least one aggregate call and no column outside aggregate calls, so it
	// returns one row: SELECT count(*) FROM t, SELECT max(a) + 1 FROM t.
	// Aggregates are the built-in aggregate functions and any call written
	// with aggregate syntax (*, DISTINCT, ORDER BY, FILTER, WITHIN GROUP).
	AggregateOnly bool

	// EqualityColumns are the columns the top-level WHERE clause of a SELECT,
	// UPDATE or DELETE compares, through AND and OR, with =, IS NOT DISTINCT
	// FROM, = ANY (...) or IN (...) against a value that involves no column
	// and no subquery (a literal, a parameter, an expression of those).
	// Names are qualified as written ("u.id", "id"), sorted, no duplicates.
	EqualityColumns []string

	// LeadingWildcardLike: a LIKE or ILIKE (or ~~, ~~*) anywhere in a
	// SELECT, INSERT, UPDATE, DELETE or MERGE has a pattern that is a string
	// literal starting with % or _, or an expression starting with one, such
	// as '%' || $1 or UPPER('%foo').
	LeadingWildcardLike bool
	// LikeParams has bit n-1 set when the pattern of such a LIKE is the
	// bound parameter $n (n up to 64), alone or first in the pattern
	// (UPPER($1), $1 || '%', ANY ($1)): the pattern starts with whatever
	// value the client binds, which only the execution knows
	// (pgwire.Execution.ParamWildcard).
	LikeParams uint64
	// LikeColumns are the columns such LIKEs match (the left side, looked
	// through casts and calls such as UPPER(name)), qualified as written,
	// sorted, no duplicates.
	LikeColumns []string

	// OffsetParam is n when the top-level OFFSET of a SELECT is the bound
	// parameter $n alone, 0 otherwise.
	OffsetParam int

	// ValuesRows is the number of rows of the top-level VALUES list of an
	// INSERT (INSERT ... VALUES (...), (...) has 2), 0 when it has none
	// (INSERT ... SELECT, DEFAULT VALUES). Texts with one fingerprint may
	// differ in it.
	ValuesRows int

	// KeyList: the top-level WHERE clause of a SELECT, UPDATE or DELETE
	// compares a column with = ANY (...) or IN (...) against values: one
	// statement for a list of keys.
	KeyList bool

	// Locking: FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE or FOR KEY SHARE
	// anywhere in the statement.
	Locking bool

	// NoWhere: an UPDATE or DELETE without WHERE.
	NoWhere bool

	// ReadColumns are the columns the top-level SELECT list reads, bare or
	// inside expressions (SELECT stock, price * 2), by the last part of
	// their name ("p.stock" → "stock"), sorted, no duplicates. A star is
	// SelectStar, not a column. Only set for SELECT.
	ReadColumns []string
	// SetValues are the columns the SET list of an UPDATE assigns a value
	// the client sent: a bare parameter or literal, through casts (SET
	// stock = $1, status = 'paid'::text). SetSelf are those it assigns an
	// expression of the column itself (SET stock = stock - $1, a
	// read-modify-write the server does atomically). By the last part of
	// the name, sorted, no duplicates. Only set for UPDATE.
	SetValues []string
	SetSelf   []string

	// KeyValues are the top-level WHERE equalities of a SELECT or UPDATE
	// between a column of EqualityColumns and one bare value (col = $n, col
	// = 42, col = 'a'::text, in that order), where the value is: which
	// parameter or literal of this text. Texts of one fingerprint may
	// differ in it (id = $1, id = 42). At most MaxKeyValues.
	KeyValues []KeyValue

	// Isolation is the transaction isolation level a utility statement
	// sets, read from its text: BEGIN or START TRANSACTION ISOLATION LEVEL
	// ..., SET TRANSACTION ISOLATION LEVEL ..., SET transaction_isolation
	// for the transaction it runs in; SET SESSION CHARACTERISTICS AS
	// TRANSACTION ISOLATION LEVEL ..., SET default_transaction_isolation
	// for the session (IsolationSession), and IsolationDefault for RESET
	// ALL, RESET default_transaction_isolation, SET ... TO DEFAULT and
	// DISCARD ALL. IsolationNone for every other statement.
	Isolation        Isolation
	IsolationSession bool
}

// MaxKeyValues is the most Facts.KeyValues a statement has.
const MaxKeyValues = 4

// KeyValue is one WHERE equality of a column with a bare value.
type KeyValue struct {
	// Column is the last part of the column's name, as the parse tree
	// spells it ("id" for "public"."Product"."id").
	Column string
	// Param is n for the bound parameter $n; 0 for a literal.
	Param int
	// Literal is, when Param is 0, the literal's index in
	// Statement.LiteralKeys.
	Literal int
}

// Isolation is a transaction isolation level as a statement sets it.
type Isolation uint8

// The isolation levels, from weak to strong.
const (
	// IsolationNone: the statement sets no level.
	IsolationNone Isolation = iota
	// IsolationDefault: back to the server's default (READ COMMITTED
	// unless its configuration says otherwise, which the wire does not
	// show).
	IsolationDefault
	IsolationReadUncommitted
	IsolationReadCommitted
	IsolationRepeatableRead
	IsolationSerializable
)

// Statement is one statement of an SQL text.
type Statement struct {
	// ID is pg_query's fingerprint of the statement, or for a statement that
	// does not parse a fallback fingerprint of its tokens with literals
	// dropped. IDs are the same in every process and run.
	ID uint64
	// Hex is ID as 16 lowercase hex digits, as pg_query prints it.
	Hex string
	// Normalized is the statement with every literal replaced by $n
	// (numbered after the highest parameter the statement uses), comments
	// removed and runs of whitespace reduced to one space. It never holds a
	// literal value, not even ORDER BY 1 or varchar(255): a literal is
	// replaced wherever it stands.
	Normalized string
	// Facts are shared between statements and results: read only.
	Facts *Facts
	// LiteralsHash is a hash of the literal tokens of the statement as
	// written, 0 when it has none. Equal statements with different literal
	// values have equal IDs and different LiteralsHash. It is the same in
	// every process and run.
	LiteralsHash uint64
	// LiteralKeys are the keyed digests (internal/valuekey) of the
	// statement's literals, in order of appearance: numbers as written,
	// strings after unquoting (the value the server sees). Never the values
	// themselves. There is one entry per literal as Normalized counts them
	// (TRUE and FALSE used as values included): LiteralKeys[k] belongs to
	// the literal that Normalized replaced by its (k+1)-th new parameter.
	// valuekey.None stands for a literal that is no key:
	//
	//   - Numbers: an integer in any notation (8, 008, 1_000, 0x2A) is keyed
	//     as the integer it is, as valuekey.String keys '8', so 8 and '8'
	//     have one key. A '-' right before a number is a sign, and the key is of
	//     the negative number, where PostgreSQL's grammar folds it into the
	//     constant: where an operand starts, that is at the start, after an
	//     operator or punctuation other than ")" and "]", or after a
	//     keyword an operand follows (WHERE, AND, OR, NOT, IN, SELECT, CASE,
	//     WHEN, THEN, ELSE, LIMIT, OFFSET, LIKE, the BETWEEN operator, ORDER
	//     BY, ...). So "id = -8", "id=-8" and "IN (1, -8)" give the key of
	//     "-8"; "a -8", "$1 - 8", "(a) - 8" and "SELECT between - 8", which
	//     subtract, that of "8"; "- -8" that of "8" and "5 - -8" that of
	//     "-8". A fraction is keyed as a numeric prints it (007.50 as
	//     "7.50", .5 as "0.5"); an exponent (1e3), or a hexadecimal, octal
	//     or binary integer beyond 64 bits, gives None.
	//   - Strings: '...' with '' for a quote, continued sections joined;
	//     E'...' with its backslash escapes decoded (\n, \', \\, octal, hex,
	//     \u and \U with surrogate pairs); $$...$$ and $tag$...$tag$ as
	//     written; U&'...' with its Unicode escapes decoded, UESCAPE
	//     included. N'...' is a '...'. A typed literal is its string: '8'::int
	//     and int '8' give the key of "8" (valuekey canonicalizes integers).
	//     A value the server would reject (not UTF-8, a NUL byte, a bad
	//     escape) gets None, never a guess.
	//   - None: B'...' and X'...' bit strings, TRUE and FALSE, the escape
	//     character after UESCAPE, tokens the server rejects, and values
	//     valuekey does not key (empty, or over valuekey.MaxValueBytes).
	//
	// A statement that does not parse has its literals keyed all the same.
	// Values are read as PostgreSQL reads them with the session's
	// standard_conforming_strings (with it off, '...' decodes as E'...')
	// and UTF-8 as client and server encoding. With the setting unknown, a
	// '...' string with a backslash, whose value depends on it, gets None,
	// and so does a stretch the two readings lex differently (see the
	// package documentation).
	//
	// Only the first MaxLiteralKeys literals are keyed (IN lists of
	// thousands of inlined ids): later ones have no entry. nil when the
	// statement has no literal. Shared with the cached Result: read only.
	LiteralKeys []valuekey.Key
	// Err is a *ParseError when the statement did not parse; then Kind is
	// KindUnknown and ID is the fallback fingerprint. (Rarely, a statement
	// pg_query fingerprints has a parse tree too deep to analyze: then ID is
	// pg_query's, and Err and KindUnknown say the facts are missing.)
	Err error
}

// Result is what Of finds in one SQL text. Results are shared: read only.
type Result struct {
	// Statements holds one entry per statement, in order. It is never empty:
	// a text without statements (empty, blank, only comments or semicolons)
	// yields one statement of KindOther with an empty Normalized text.
	Statements []Statement
	// TraceID is the trace id of a sqlcommenter traceparent tag (32 lowercase
	// hex digits), or "".
	TraceID string
	// Tags holds the sqlcommenter tags of the text, URL-decoded, or nil. See
	// the package documentation for which comment counts.
	Tags map[string]string
}

// ParseError says why a statement did not parse. Message is PostgreSQL's
// message cut before any fragment of the statement it quotes, so an error
// never carries a literal value from the SQL.
type ParseError struct {
	Message  string // e.g. "syntax error", "unterminated quoted string"
	Position int    // 1-based character position in the statement, 0 if unknown
}

func (e *ParseError) Error() string {
	if e.Position > 0 {
		return "parse statement: " + e.Message + " at position " + strconv.Itoa(e.Position)
	}
	return "parse statement: " + e.Message
}

func newParseError(err error) *ParseError {
	pe := &ParseError{Message: err.Error()}
	var perr *parser.Error
	if errors.As(err, &perr) {
		pe.Message, pe.Position = perr.Message, perr.Cursorpos
	}
	msg := pe.Message
	for _, cut := range []string{" at or near ", " at end of input"} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i]
		}
	}
	if i := strings.IndexAny(msg, "\"'"); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSpace(msg)
	if msg == "" {
		msg = "invalid statement"
	}
	pe.Message = msg
	return pe
}

// emptyID is pg_query's fingerprint of a text without statements.
const emptyID uint64 = 0xd8d13f8b2da6c9ad

// Strings is how a session reads backslashes in '...' string constants:
// its standard_conforming_strings setting, which the server reports in a
// ParameterStatus message. Its values are those of
// pgwire.StandardStrings, so that one converts to the other.
type Strings uint8

const (
	// StringsUnknown: the setting is not known. The text is read both
	// ways, and whatever is inside a string constant under either reading
	// is treated as a literal (see the package documentation).
	StringsUnknown Strings = iota
	// StringsStandard: standard_conforming_strings on, PostgreSQL's
	// default: a backslash is an ordinary character in '...'.
	StringsStandard
	// StringsEscape: standard_conforming_strings off: a backslash escapes
	// in '...' as in E'...', and U&'...' is an error.
	StringsEscape
)

// Of analyzes sql, read for a session whose standard_conforming_strings is
// not known (StringsUnknown), without a cache: it parses every statement.
// Use a Cache for anything that runs more than once.
func Of(sql string) *Result {
	return OfStrings(sql, StringsUnknown)
}

// OfStrings is Of for a session whose standard_conforming_strings is mode.
func OfStrings(sql string, mode Strings) *Result {
	a := analyzer{mode: validStrings(mode)}
	return a.analyze(sql)
}

// validStrings maps a value outside the constants to StringsUnknown.
func validStrings(mode Strings) Strings {
	if mode > StringsEscape {
		return StringsUnknown
	}
	return mode
}

// shape is what a Cache keeps per fingerprint.
type shape struct {
	id    uint64
	hex   string
	facts *Facts // as found for the first text with this fingerprint

	// newTexts counts texts of this shape that missed the text cache but
	// hit the template cache: texts that differ from earlier ones only in
	// their literals. Past volatileAfter, the shape's texts carry a new
	// value each time (simple-protocol queries with the value inline) and
	// keeping them would only churn the text cache.
	newTexts atomic.Uint64
}

// volatileAfter is how many new texts of one shape the text cache takes
// before it stops keeping that shape's texts (Cache.Of).
const volatileAfter = 1024

// analyzer turns one SQL text into a Result. A zero analyzer parses every
// statement; with shapes set it parses once per fingerprint, and with
// templates set it does not call pg_query at all for a statement whose
// template it has seen.
type analyzer struct {
	shapes    *level[uint64, *shape] // nil: no shape cache
	templates *level[string, *shape] // nil: no template cache
	maxKey    int                    // longest template key to keep
	mode      Strings                // the session's standard_conforming_strings
	toks      []token                // scratch, reused between texts
	toks2     []token                // scratch for the second reading (StringsUnknown)
	key       []byte                 // scratch for template keys
	keys      []valuekey.Key         // scratch for literal keys
	failures  int                    // statements that did not parse, this text
	volatile  bool                   // a statement of this text has a volatile shape
}

func (a *analyzer) analyze(sql string) *Result {
	a.failures, a.volatile = 0, false
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i] // the text ends at NUL, as on the wire and in the C parser
	}
	if len(sql) >= maxLexLen {
		sql = sql[:maxLexLen-1]
	}
	all, tmp := lexStrings(sql, a.toks[:0], a.toks2[:0], a.mode)
	a.toks, a.toks2 = all, tmp
	// One allocation for the Result and, in the common case, its statement.
	block := &struct {
		r  Result
		st [1]Statement
	}{}
	res := &block.r
	res.Statements = block.st[:0]
	res.Tags, res.TraceID = commenterTags(sql, all)

	// From here on comments do not matter: drop them in place.
	toks := all[:0]
	for _, t := range all {
		if t.kind != tkComment && t.kind != tkBadComment {
			toks = append(toks, t)
		}
	}
	a.keys = a.keys[:0]
	for _, sp := range splitStatements(sql, toks) {
		res.Statements = append(res.Statements, a.statement(sql, toks[sp.lo:sp.hi]))
	}
	// The statements' keys, which lie in a.keys one after the other, move to
	// one allocation of the Result's own.
	var keys []valuekey.Key
	if len(a.keys) > 0 {
		keys = make([]valuekey.Key, len(a.keys))
		copy(keys, a.keys)
	}
	for i := range res.Statements {
		st := &res.Statements[i]
		n := len(st.LiteralKeys)
		if n == 0 {
			st.LiteralKeys = nil
			continue
		}
		st.LiteralKeys, keys = keys[:n:n], keys[n:]
	}
	if len(res.Statements) == 0 {
		res.Statements = append(res.Statements, Statement{
			ID:    emptyID,
			Hex:   hex16(emptyID),
			Facts: &Facts{Kind: KindOther},
		})
	}
	return res
}

// statement analyzes one statement, given its tokens without comments.
func (a *analyzer) statement(sql string, toks []token) Statement {
	st := Statement{Normalized: normalize(sql, toks)}
	lo := len(a.keys)
	st.LiteralsHash, a.keys = readLiterals(sql, toks, a.keys)
	// A view of the scratch buffer until analyze gives the keys of all
	// statements one allocation of their own.
	st.LiteralKeys = a.keys[lo:len(a.keys):len(a.keys)]
	keyed := false
	if a.templates != nil {
		a.key, keyed = appendTemplateKey(a.key[:0], sql, toks)
		if keyed {
			if sh, ok := getBytes(a.templates, a.key); ok {
				if sh.newTexts.Add(1) > volatileAfter {
					a.volatile = true
				}
				st.ID, st.Hex = sh.id, sh.hex
				st.Facts = withTextFacts(sh.facts, sql, toks)
				return st
			}
		}
	}
	text, rewritten := parserText(sql, toks)
	var id uint64
	var err error
	if hasKind(toks, tkBadUnicode) {
		// pg_query reads with the setting on, where U&'...' is fine.
		err = errUnsafeUnicode
	} else if badUescape(sql, toks) {
		// Decided here, from the tokens, so that the statement is an error
		// whether or not the shape cache knows its fingerprint.
		err = errBadUescape
	} else {
		id, err = pg_query.FingerprintToUInt64(text)
	}
	if err != nil {
		a.failures++
		st.ID = fallbackID(sql, toks)
		st.Hex = hex16(st.ID)
		st.Facts = &Facts{Kind: KindUnknown}
		st.Err = newParseError(err)
		if rewritten {
			st.Err.(*ParseError).Position = 0 // a position in the rewritten text
		}
		return st
	}
	var sh *shape
	if a.shapes != nil {
		sh, _ = a.shapes.get(id)
	}
	if sh == nil {
		f, err := parseFacts(text)
		if err != nil {
			a.failures++
			st.ID, st.Hex, st.Facts, st.Err = id, hex16(id), f, err
			return st
		}
		readTextFacts(sql, toks, f.Kind).apply(f) // this text's, shared by texts that agree
		rf := readRMWFacts(sql, toks, f)
		rf.apply(f)
		sh = &shape{id: id, hex: hex16(id), facts: f}
		if a.shapes != nil {
			sh = a.shapes.add(id, sh, 0)
		}
	}
	if keyed && len(a.key) <= a.maxKey && templateSafe(sh.facts.Kind) {
		a.templates.add(string(a.key), sh, len(a.key)+64)
	}
	st.ID, st.Hex = sh.id, sh.hex
	st.Facts = withTextFacts(sh.facts, sql, toks)
	return st
}

// errUnsafeUnicode is the server's error for U&'...' with
// standard_conforming_strings off.
var errUnsafeUnicode = errors.New("unsafe use of string constant with Unicode escapes")

// errBadUescape is the server's error for a UESCAPE that is not one
// character it allows.
var errBadUescape = errors.New("invalid Unicode escape character")

// badUescape reports a U&'...' string or U&"..." identifier followed by
// UESCAPE and a string that is not one ASCII character the server allows
// there (a byte of a multibyte character, or one that is not UTF-8, is
// rejected too: the server wants one byte).
func badUescape(sql string, toks []token) bool {
	for i, t := range toks {
		text := sql[t.start:t.end]
		if (t.kind != tkString && t.kind != tkQuoted) || (text[0] != 'u' && text[0] != 'U') ||
			i+1 >= len(toks) || !isWord(sql, toks[i+1], "uescape") {
			continue
		}
		if i+2 >= len(toks) || toks[i+2].kind != tkString {
			return true
		}
		e := sql[toks[i+2].start:toks[i+2].end]
		if len(e) != 3 || e[0] != '\'' || e[1] >= 0x80 || !uescapeChar(e[1]) {
			return true
		}
	}
	return false
}

// hasKind reports whether a token of toks is of kind k.
func hasKind(toks []token, k tokKind) bool {
	for _, t := range toks {
		if t.kind == k {
			return true
		}
	}
	return false
}

// escapedBackslash reports whether t is a '...' string read with backslash
// escapes (standard_conforming_strings off) that holds a backslash: the one
// kind of token pg_query, which reads with the setting on, would read
// otherwise.
func escapedBackslash(sql string, t token) bool {
	return t.read == readEscapes && (t.kind == tkString || t.kind == tkBadString) &&
		strings.IndexByte(sql[t.start:t.end], '\\') >= 0
}

// parserText returns the text of a statement, given its tokens, as pg_query
// is to read it, and whether it differs from the text as written. pg_query
// reads with standard_conforming_strings on, so a text read otherwise is
// rewritten into one that reads the same with the setting on:
//
//   - a '...' string read with escapes that holds a backslash gets an E
//     prefix, after a space, so that the text before it cannot run into the
//     E (as 1.E or abcE would); N'...' becomes NCHAR E'...', the two tokens
//     the server's scanner makes of N'...';
//   - a disputed stretch (the setting unknown) becomes an empty string
//     constant and an empty comment, so that a string after it is not
//     joined to it: pg_query reads only what both readings agree on, and
//     the facts it gives (the tables, the columns) never come from text
//     that either reading takes for a literal.
//
// A '...' string without a backslash reads alike either way and is left as
// it is, so a text that needs no rewriting is returned as written.
func parserText(sql string, toks []token) (string, bool) {
	lo, hi := toks[0].start, toks[len(toks)-1].end
	need := false
	for _, t := range toks {
		if t.kind == tkDisputed || escapedBackslash(sql, t) {
			need = true
			break
		}
	}
	if !need {
		return sql[lo:hi], false
	}
	var b strings.Builder
	b.Grow(int(hi-lo) + 16)
	last := lo // written up to here
	for k, t := range toks {
		switch {
		case t.kind == tkDisputed:
			b.WriteString(sql[last:t.start])
			b.WriteString("''/**/")
			last = t.end
		case escapedBackslash(sql, t):
			if p := k - 1; p >= 0 && toks[p].end == t.start && isWord(sql, toks[p], "n") {
				b.WriteString(sql[last:toks[p].start])
				b.WriteString("NCHAR ")
			} else {
				b.WriteString(sql[last:t.start])
				if t.start > 0 && !isSpace(sql[t.start-1]) {
					b.WriteByte(' ') // so the E runs into nothing: abc'x', 1.'x'
				}
			}
			b.WriteByte('E')
			b.WriteString(sql[t.start:t.end])
			last = t.end
		}
	}
	b.WriteString(sql[last:hi])
	return b.String(), true
}

// appendTemplateKey appends to b the template key of a statement: its
// tokens with literal values blanked but their token type kept (ICONST,
// FCONST, SCONST, BCONST, XCONST), words in lower case, whitespace and
// comments gone. Two statements with one key are the same token sequence to
// PostgreSQL's grammar, so they parse to the same tree but for the values of
// constants, which pg_query's fingerprint ignores. Two exceptions keep their
// value, as pg_query fingerprints them: an integer between brackets (an
// array bound in a type name, int[3]) and the precision of float(n), which
// picks float4 or float8. A statement has no key (false) when it holds a
// token whose value can make it invalid: a rejected token, an E'...' string
// with escapes (or a '...' string with a backslash, read with escapes or
// with the setting unknown), a U&'...' string or U&"..." identifier. So a
// template is the same token sequence under any setting of
// standard_conforming_strings, and the template cache serves all settings.
func appendTemplateKey(b []byte, sql string, toks []token) ([]byte, bool) {
	for i, t := range toks {
		text := sql[t.start:t.end]
		switch {
		case t.kind.isBad(),
			(t.kind == tkString || t.kind == tkQuoted) && (text[0] == 'u' || text[0] == 'U'),
			t.kind == tkString && (text[0] == 'e' || text[0] == 'E' || t.read != readStandard) && strings.IndexByte(text, '\\') >= 0:
			// Escapes (and UESCAPE characters) can be invalid, which only
			// their value tells: no key.
			return b, false
		case t.kind == tkNumber && i > 0 && (isOp(sql, toks[i-1], "[") ||
			i > 1 && isOp(sql, toks[i-1], "(") && isWord(sql, toks[i-2], "float")):
			b = append(b, '#')
			b = append(b, text...)
		case t.kind == tkNumber:
			if fitsInt32(text) {
				b = append(b, 'I') // ICONST
			} else {
				b = append(b, 'F') // FCONST: a numeric, or an integer beyond int32
			}
		case t.kind == tkString:
			b = append(b, 'S')
		case t.kind == tkBitString && (text[0] == 'x' || text[0] == 'X'):
			b = append(b, 'X')
		case t.kind == tkBitString:
			b = append(b, 'B')
		case t.kind == tkParam:
			b = append(b, 'P')
		case t.kind == tkWord:
			b = append(b, 'w')
			for j := 0; j < len(text); j++ {
				c := text[j]
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				b = append(b, c)
			}
		default:
			b = append(b, '0'+byte(t.kind))
			b = append(b, text...)
		}
		b = append(b, 0)
	}
	return b, true
}

// fitsInt32 reports whether an integer literal is below 2^31, the bound
// under which PostgreSQL's scanner calls it ICONST rather than FCONST.
func fitsInt32(text string) bool {
	v, ok := parseInteger(text)
	return ok && v <= 1<<31-1
}

// templateSafe reports whether statements of a kind may share a fingerprint
// by template. In SELECT, INSERT, UPDATE, DELETE and MERGE every literal is
// a constant node pg_query's fingerprint ignores (but for the exceptions
// templateKey keeps); in utility statements literals often become option
// values and names that it does not ignore.
func templateSafe(k Kind) bool {
	switch k {
	case KindSelect, KindInsert, KindUpdate, KindDelete, KindMerge:
		return true
	}
	return false
}

func hex16(id uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// span is a range of token indexes [lo, hi).
type span struct{ lo, hi int }

// splitStatements splits tokens (comments removed) at semicolons, except
// those inside a BEGIN ATOMIC ... END function body, and drops empty
// statements.
func splitStatements(sql string, toks []token) []span {
	var out []span
	lo, depth := 0, 0
	for i, t := range toks {
		switch {
		case t.kind == tkOp && sql[t.start] == ';':
			if depth == 0 {
				if i > lo {
					out = append(out, span{lo, i})
				}
				lo = i + 1
			}
		case t.kind != tkWord:
		case isWord(sql, t, "begin") && i+1 < len(toks) && isWord(sql, toks[i+1], "atomic"):
			depth++
		case depth > 0 && isWord(sql, t, "case"):
			depth++
		case depth > 0 && isWord(sql, t, "end"):
			depth--
		}
	}
	if len(toks) > lo {
		out = append(out, span{lo, len(toks)})
	}
	return out
}

// isWord reports whether t is the unquoted word w (lower case), in any case.
func isWord(sql string, t token, w string) bool {
	if t.kind != tkWord || int(t.end-t.start) != len(w) {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := sql[int(t.start)+i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// isOp reports whether t is the operator or punctuation op.
func isOp(sql string, t token, op string) bool {
	return t.kind == tkOp && sql[t.start:t.end] == op
}

// isLiteralAt reports whether toks[i] is a literal: a constant token, or
// the keyword TRUE or FALSE used as a value (not in IS [NOT] TRUE).
func isLiteralAt(sql string, toks []token, i int) bool {
	t := toks[i]
	if t.kind.isLiteral() {
		return true
	}
	if t.kind != tkWord || !(isWord(sql, t, "true") || isWord(sql, t, "false")) {
		return false
	}
	if i > 0 && isWord(sql, toks[i-1], "not") {
		i--
	}
	return i == 0 || !isWord(sql, toks[i-1], "is")
}

// normalize rebuilds a statement from its tokens (comments removed): one
// space wherever the text had whitespace or a comment, every literal
// replaced by $n, and unterminated quoted identifiers dropped.
func normalize(sql string, toks []token) string {
	next := int64(1)
	for _, t := range toks {
		if t.kind == tkParam {
			if p := paramNumber(sql[t.start+1 : t.end]); p >= next {
				next = p + 1
			}
		}
	}
	var b strings.Builder
	b.Grow(int(toks[len(toks)-1].end-toks[0].start) + 8)
	prevEnd := int32(-1)
	var last byte // last byte written
	for i, t := range toks {
		if t.kind == tkBadQuoted {
			prevEnd = -1
			continue
		}
		text := sql[t.start:t.end]
		space := b.Len() > 0 && t.start != prevEnd
		literal := isLiteralAt(sql, toks, i)
		// Never glue a $n onto a word or number, or a word onto a $n.
		if !space && b.Len() > 0 && (literal && isIdentCont(last) || last >= '0' && last <= '9' && isIdentCont(text[0])) {
			space = true
		}
		if space {
			b.WriteByte(' ')
		}
		if literal {
			b.WriteByte('$')
			b.WriteString(strconv.FormatInt(next, 10))
			next++
			last = '0'
		} else {
			b.WriteString(text)
			last = text[len(text)-1]
		}
		prevEnd = t.end
	}
	return b.String()
}

// paramNumber parses the digits of a $n parameter, saturating at a value
// PostgreSQL would reject anyway.
func paramNumber(digits string) int64 {
	const limit = 1 << 40
	var n int64
	for i := 0; i < len(digits); i++ {
		n = n*10 + int64(digits[i]-'0')
		if n > limit {
			return limit
		}
	}
	return n
}

// hashLen advances an FNV-1a hash by n's four low bytes, low byte first.
func hashLen(h uint64, n int) uint64 {
	for i := 0; i < 4; i++ {
		h = fnv1a.AddByte(h, byte(n>>(8*i)))
	}
	return h
}

// fallbackID fingerprints a statement that does not parse from its tokens:
// words in lower case, quoted identifiers and operators as written, each
// literal or parameter as one placeholder, and a list of placeholders
// ("1, 2, 3") as one placeholder, so that IN lists of any length agree.
func fallbackID(sql string, toks []token) uint64 {
	h := fnv1a.Add(fnv1a.Offset, "nplus1 fallback fingerprint v1")
	lastPlaceholder, comma := false, false
	for _, t := range toks {
		switch {
		case t.kind.isLiteral() || t.kind == tkParam:
			if lastPlaceholder && comma {
				comma = false
				continue
			}
			if comma {
				h = fnv1a.Add(fnv1a.AddByte(h, byte(tkOp)), ",")
				comma = false
			}
			h = fnv1a.AddByte(h, 'L')
			lastPlaceholder = true
			continue
		case isOp(sql, t, ",") && lastPlaceholder && !comma:
			comma = true
			continue
		}
		if comma {
			h = fnv1a.Add(fnv1a.AddByte(h, byte(tkOp)), ",")
			comma = false
		}
		lastPlaceholder = false
		h = fnv1a.AddByte(h, byte(t.kind))
		text := sql[t.start:t.end]
		if t.kind == tkWord {
			for i := 0; i < len(text); i++ {
				c := text[i]
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				h = fnv1a.AddByte(h, c)
			}
		} else {
			h = fnv1a.Add(h, text)
		}
		h = fnv1a.AddByte(h, 0)
	}
	if comma {
		h = fnv1a.Add(fnv1a.AddByte(h, byte(tkOp)), ",")
	}
	if h == 0 {
		h = 1
	}
	return h
}
