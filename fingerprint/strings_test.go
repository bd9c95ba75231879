package fingerprint

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// escapeCases are texts whose string constants end elsewhere, or read
// otherwise, with standard_conforming_strings off. They also seed the fuzz
// tests.
var escapeCases = []string{
	`SELECT * FROM t WHERE name = 'O\'' AND secret = 1 --'`,
	`SELECT a FROM t WHERE b = 'x\' OR token = ''abc'' --'`,
	`SELECT 'a\'b', 'c\\', '\\\'', 'd\'' 'e'`,
	"SELECT 'a\\'\n'b\\'c', 'd'\n'\\''",
	`SELECT N'x\'y', n'\\', x'1F', b'01', N 'z\''`,
	`SELECT abc'x\'y', 1'\'', $$a$$'\'', B'01''\''`,
	`SELECT U&'d\0061t', U&"i\0061", u&'\''`,
	`SELECT E'\'', e'\\', '\'' || U&'\0041' UESCAPE '!'`,
	`SELECT a FROM t WHERE p = 'C:\' AND q = 'v'`,
	`SELECT '\x41\101\u0041\U0001F600\n\t\b\f\r\z\400'`,
	`SELECT 'unterminated\'`,
	`SELECT 'a\''; DELETE FROM t; --'`,
	`SELECT a FROM t WHERE b LIKE '\%x' AND c LIKE '\\%y' AND d LIKE '\x25'`,
	"SELECT 'x\\' /*controller:SECRETLEAK*/ '",
	"SELECT 1 -- '\\'\n, '\\''",
	`SELECT 'a' /* '\' */ , 'b\'c'`,
	`SELECT $t$\'$t$, '\'$t$'`,
	`SELECT 'a\'; SELECT 'b\'; SELECT 'c'`,
	`SELECT '\u'`,
	`SELECT 'x\`,
}

// lexEscapes is what the unknown setting's second reading sees: '...' with
// backslash escapes, U&'...' as with the setting on.
func lexEscapes(s string) []token {
	l := lexer{s: s, escapes: true}
	l.run()
	return l.toks
}

// checkEscapeLex holds the lexer's reading with standard_conforming_strings
// off to the scanner's: the text rewritten as parserText rewrites it (an E
// before each '...' with a backslash) reads with the setting on as the
// text does with it off, so its tokens, which compareWithScanner holds to
// pg_query's scanner, pair one to one with ours.
func checkEscapeLex(t *testing.T, s string) {
	t.Helper()
	if strings.IndexByte(s, 0) >= 0 {
		return
	}
	ours, _ := lexStrings(s, nil, nil, StringsEscape)
	if len(ours) == 0 {
		return
	}
	rw, _ := parserText(s, ours)
	compareWithScanner(t, rw)
	theirs := lex(rw, nil)
	if len(theirs) != len(ours) {
		t.Fatalf("%q off: %d tokens, rewritten %q has %d:\n%s\n%s", s, len(ours), rw, len(theirs), describe(s, ours), describe(rw, theirs))
	}
	for i, a := range ours {
		b := theirs[i]
		ak := a.kind
		if ak == tkBadUnicode {
			ak = tkString // the server rejects it; pg_query, with the setting on, does not
		}
		at, bt := s[a.start:a.end], rw[b.start:b.end]
		if ak != b.kind || at != bt && bt != "E"+at && !((at == "N" || at == "n") && bt == "NCHAR") {
			t.Fatalf("%q off: token %d is %q (%d), rewritten %q has %q (%d)", s, i, at, a.kind, rw, bt, b.kind)
		}
	}
}

// checkEscapeAgainstRewrite holds OfStrings(s, StringsEscape) to the
// reading of the rewritten text with the setting on, whose literal keys
// checkLiteralKeysAgainstParser holds to pg_query's parse tree: the same
// statements, keys, facts and fingerprints.
func checkEscapeAgainstRewrite(t *testing.T, s string) {
	t.Helper()
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	r := OfStrings(s, StringsEscape)
	checkResultStrings(t, s, r, StringsEscape)
	toks, _ := lexStrings(s, nil, nil, StringsEscape)
	if len(toks) == 0 {
		return
	}
	rw, _ := parserText(s, toks)
	rr := OfStrings(rw, StringsStandard)
	checkLiteralKeysAgainstParser(t, rw, rr)
	if len(r.Statements) != len(rr.Statements) {
		t.Fatalf("%q off: %d statements, rewritten %q has %d", s, len(r.Statements), rw, len(rr.Statements))
	}
	var code []token
	for _, tk := range toks {
		if tk.kind != tkComment && tk.kind != tkBadComment {
			code = append(code, tk)
		}
	}
	spans := splitStatements(s, code)
	for i, st := range r.Statements {
		w := rr.Statements[i]
		if i < len(spans) && hasKind(code[spans[i].lo:spans[i].hi], tkBadUnicode) {
			// Rejected by the server, read by pg_query with the setting on.
			if st.Err == nil || st.Err.(*ParseError).Message != errUnsafeUnicode.Error() {
				t.Errorf("%q off statement %d: U&'...' gives %v", s, i, st.Err)
			}
			continue
		}
		if !sameKeys(st.LiteralKeys, w.LiteralKeys) {
			t.Errorf("%q off statement %d: keys %v, rewritten %q has %v", s, i, st.LiteralKeys, rw, w.LiteralKeys)
		}
		// A statement that does not parse has a fallback fingerprint of
		// its own tokens, which the rewriting changes (N, NCHAR).
		if (st.Err == nil) != (w.Err == nil) || st.Err == nil && (st.ID != w.ID || dumpFacts(st.Facts) != dumpFacts(w.Facts)) {
			t.Errorf("%q off statement %d: %s %v %s, rewritten %q: %s %v %s", s, i, st.Hex, st.Err, dumpFacts(st.Facts), rw, w.Hex, w.Err, dumpFacts(w.Facts))
		}
	}
}

func dumpFacts(f *Facts) string { return fmt.Sprintf("%+v", *f) }

// checkUnknown holds a Result read with the setting unknown to its rule:
// every token it keeps as code or comment (so that Normalized, the tags
// and the facts can show it) is a token of both readings and lies outside
// every literal of either.
func checkUnknown(t *testing.T, sql string, r *Result) {
	t.Helper()
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	checkResultStrings(t, sql, r, StringsUnknown)
	if len(sql) > 1<<12 {
		return // the checks below are quadratic
	}
	a, b := lex(sql, nil), lexEscapes(sql)
	inA, inB := map[token]bool{}, map[token]bool{}
	for _, tk := range a {
		inA[token{start: tk.start, end: tk.end, kind: tk.kind}] = true
	}
	for _, tk := range b {
		tk.read = readStandard
		inB[tk] = true
	}
	var lits []token
	for _, tk := range append(append([]token{}, a...), b...) {
		if tk.kind.isLiteral() {
			lits = append(lits, tk)
		}
	}
	merged, _ := lexStrings(sql, nil, nil, StringsUnknown)
	end := int32(0)
	for _, m := range merged {
		if m.start < end || m.end <= m.start {
			t.Fatalf("%q unknown: token %d-%d overlaps or is empty", sql, m.start, m.end)
		}
		end = m.end
		if m.kind == tkDisputed {
			continue
		}
		plain := token{start: m.start, end: m.end, kind: m.kind}
		if !inA[plain] || !inB[plain] {
			t.Fatalf("%q unknown: token %q is not a token of both readings", sql, sql[m.start:m.end])
		}
		if m.kind.isLiteral() {
			continue
		}
		for _, l := range lits {
			if m.start < l.end && l.start < m.end {
				t.Fatalf("%q unknown: %q is kept, but lies in the literal %q of a reading", sql, sql[m.start:m.end], sql[l.start:l.end])
			}
		}
	}
}

// readsAlike reports whether a text lexes the same under every setting:
// no '...' string with a backslash and no U&'...' string.
func readsAlike(sql string) bool {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	toks := lex(sql, nil)
	if backslashInString(sql, toks) {
		return false
	}
	for _, tk := range toks {
		if (tk.kind == tkString || tk.kind == tkBadString) && sql[tk.start]|0x20 == 'u' {
			return false
		}
	}
	return true
}

var allStrings = []Strings{StringsStandard, StringsEscape, StringsUnknown}

// checkStrings checks a text under every setting.
func checkStrings(t *testing.T, cache *Cache, sql string) {
	t.Helper()
	results := map[Strings]*Result{}
	for _, mode := range allStrings {
		r := OfStrings(sql, mode)
		results[mode] = r
		checkResultStrings(t, sql, r, mode)
		if cr := cache.OfStrings(sql, mode); !sameResult(r, cr) {
			t.Fatalf("%q setting %d: Cache.OfStrings and OfStrings disagree\n%s\n%s", sql, mode, dump(cr), dump(r))
		}
	}
	if readsAlike(sql) {
		on := dump(results[StringsStandard])
		for _, mode := range []Strings{StringsEscape, StringsUnknown} {
			if got := dump(results[mode]); got != on {
				t.Fatalf("%q reads alike, but setting %d gives\n%s\nnot\n%s", sql, mode, got, on)
			}
		}
	} else if !backslashInString(sql, lex(sql, nil)) {
		// Only U&'...': the unknown setting reads it as with the setting on.
		if a, b := dump(results[StringsUnknown]), dump(results[StringsStandard]); a != b {
			t.Fatalf("%q: unknown gives\n%s\nnot\n%s", sql, a, b)
		}
	}
	checkEscapeLex(t, sql)
	checkEscapeAgainstRewrite(t, sql)
	checkUnknown(t, sql, results[StringsUnknown])
}

func TestStringsCorpus(t *testing.T) {
	cache := New(Options{MaxTexts: 100, MaxShapes: 100})
	corpus := append(append(append([]string{}, lexerCases...), fuzzSeeds...), escapeCases...)
	for _, c := range literalKeyCases {
		corpus = append(corpus, c.sql)
	}
	for _, s := range corpus {
		checkStrings(t, cache, s)
	}
}

func FuzzStrings(f *testing.F) {
	for _, s := range append(append(append([]string{}, lexerCases...), fuzzSeeds...), escapeCases...) {
		f.Add(s)
	}
	cache := New(Options{MaxTexts: 100, MaxShapes: 100})
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 1<<14 {
			return
		}
		checkStrings(t, cache, sql)
	})
}

// noLeak fails when the marker is in any output of r: the normalized text,
// the facts, the tags, the error.
func noLeak(t *testing.T, sql string, mode Strings, r *Result, marker string) {
	t.Helper()
	marker = strings.ToLower(marker)
	check := func(what, s string) {
		if strings.Contains(strings.ToLower(s), marker) {
			t.Fatalf("%q setting %d: %s %q holds the literal", sql, mode, what, s)
		}
	}
	for _, st := range r.Statements {
		check("normalized", st.Normalized)
		for _, names := range [][]string{st.Facts.TablesRead, st.Facts.TablesWritten, st.Facts.EqualityColumns} {
			check("facts", strings.Join(names, " "))
		}
		if st.Err != nil {
			check("error", st.Err.Error())
		}
	}
	for k, v := range r.Tags {
		check("tags", k+"="+v)
	}
	check("trace id", r.TraceID)
}

func TestStringsSettings(t *testing.T) {
	on, off, unknown := StringsStandard, StringsEscape, StringsUnknown
	tests := []struct {
		sql  string
		want map[Strings]string // normalized, first statement
		// secret: the settings under which SECRETLEAK is inside a literal
		secret []Strings
		tags   map[Strings]int // number of tags, where not 0
	}{
		{
			sql: `SELECT * FROM t WHERE name = 'O\'' AND secret = 1 --'`,
			want: map[Strings]string{
				on:      "SELECT * FROM t WHERE name = $1",
				off:     "SELECT * FROM t WHERE name = $1 AND secret = $2",
				unknown: "SELECT * FROM t WHERE name = $1",
			},
		},
		{
			sql: `SELECT a FROM t WHERE b = 'x\' OR token = ''SECRETLEAK'' --'`,
			want: map[Strings]string{
				on:      "SELECT a FROM t WHERE b = $1 OR token = $2 SECRETLEAK $3",
				off:     "SELECT a FROM t WHERE b = $1",
				unknown: "SELECT a FROM t WHERE b = $1",
			},
			secret: []Strings{off, unknown},
		},
		{
			sql: `SELECT a FROM t WHERE b = 'x\' OR SECRETLEAK = ''' --'`,
			want: map[Strings]string{
				on:      "SELECT a FROM t WHERE b = $1 OR SECRETLEAK = $2",
				off:     "SELECT a FROM t WHERE b = $1",
				unknown: "SELECT a FROM t WHERE b = $1",
			},
			secret: []Strings{off, unknown},
		},
		{
			// The mirror: a string with a backslash in an on session.
			sql: `SELECT a FROM t WHERE p = 'C:\' AND q = 'SECRETLEAK' AND r = 1`,
			want: map[Strings]string{
				on:      "SELECT a FROM t WHERE p = $1 AND q = $2 AND r = $3",
				off:     "SELECT a FROM t WHERE p = $1 SECRETLEAK $2",
				unknown: "SELECT a FROM t WHERE p = $1",
			},
			secret: []Strings{on, unknown},
		},
		{
			sql: `SELECT a FROM t WHERE b = N'x\'SECRETLEAK'`,
			want: map[Strings]string{
				on:      "SELECT a FROM t WHERE b = N $1 SECRETLEAK $2",
				off:     "SELECT a FROM t WHERE b = N $1",
				unknown: "SELECT a FROM t WHERE b = N $1",
			},
			secret: []Strings{off, unknown},
		},
		{
			sql: "SELECT a FROM t WHERE b = 'x\\' /*controller:SECRETLEAK*/ '",
			want: map[Strings]string{
				on:      "SELECT a FROM t WHERE b = $1 $2",
				off:     "SELECT a FROM t WHERE b = $1",
				unknown: "SELECT a FROM t WHERE b = $1",
			},
			secret: []Strings{off, unknown},
			tags:   map[Strings]int{on: 1},
		},
		{
			// A statement hidden in a string with the setting off.
			sql: `SELECT 'x\'; SELECT SECRETLEAK FROM t; --'`,
			want: map[Strings]string{
				on:      "SELECT $1",
				off:     "SELECT $1",
				unknown: "SELECT $1",
			},
			secret: []Strings{off, unknown},
		},
		{
			sql: `SELECT U&'SECRETLEAK\0041'`,
			want: map[Strings]string{
				on:      "SELECT $1",
				off:     "SELECT $1",
				unknown: "SELECT $1",
			},
			secret: []Strings{on, off, unknown},
		},
		{
			sql: `SELECT 'SECRETLEAK\\', E'SECRETLEAK\'', $$SECRETLEAK\$$`,
			want: map[Strings]string{
				on:      "SELECT $1, $2, $3",
				off:     "SELECT $1, $2, $3",
				unknown: "SELECT $1, $2, $3",
			},
			secret: []Strings{on, off, unknown},
		},
	}
	cache := New(Options{})
	for _, tt := range tests {
		for _, mode := range allStrings {
			for _, r := range []*Result{OfStrings(tt.sql, mode), cache.OfStrings(tt.sql, mode), cache.OfStrings(tt.sql, mode)} {
				if got := r.Statements[0].Normalized; got != tt.want[mode] {
					t.Errorf("%q setting %d: normalized %q, want %q", tt.sql, mode, got, tt.want[mode])
				}
				if len(r.Tags) != tt.tags[mode] {
					t.Errorf("%q setting %d: tags %v", tt.sql, mode, r.Tags)
				}
			}
		}
		for _, mode := range tt.secret {
			noLeak(t, tt.sql, mode, OfStrings(tt.sql, mode), "SECRETLEAK")
		}
		checkStrings(t, cache, tt.sql)
	}
}

// TestStringsUnicodeOff: the server rejects U&'...' with the setting off.
func TestStringsUnicodeOff(t *testing.T) {
	st := OfStrings("SELECT a FROM t WHERE b = U&'d\\0061t'", StringsEscape).Statements[0]
	if st.Err == nil || st.Err.(*ParseError).Message != errUnsafeUnicode.Error() || st.Facts.Kind != KindUnknown {
		t.Errorf("U&'...' off: %v, %+v", st.Err, *st.Facts)
	}
	if st := OfStrings("SELECT a FROM t WHERE b = U&'d\\0061t'", StringsUnknown).Statements[0]; st.Err != nil || st.LiteralKeys[0] != valuekey.String("dat") {
		t.Errorf("U&'...' unknown: %v, %v", st.Err, st.LiteralKeys)
	}
}

// TestStringsFingerprints: with the setting off, a text with backslash
// escapes has the fingerprint of the same query written for the setting
// on, and its facts; so does N'...' rewritten to NCHAR E'...'.
func TestStringsFingerprints(t *testing.T) {
	pairs := [][2]string{
		{`SELECT a FROM t WHERE b = 'it\'s' AND c = 'x\\y'`, `SELECT a FROM t WHERE b = 'its' AND c = 'xy'`},
		{`SELECT a FROM t WHERE b = N'it\'s'`, `SELECT a FROM t WHERE b = N'its'`},
		{`SELECT a FROM t WHERE b = abc'\''`, `SELECT a FROM t WHERE b = abc'x'`},
		{`SELECT a FROM t WHERE b = 'a\'b'` + "\n" + `'c\'d' LIMIT 1`, `SELECT a FROM t WHERE b = 'abcd' LIMIT 1`},
		{`INSERT INTO t (a) VALUES ('\\'), ('\'')`, `INSERT INTO t (a) VALUES ('x'), ('y')`},
	}
	cache := New(Options{})
	for _, p := range pairs {
		want := OfStrings(p[1], StringsStandard).Statements[0]
		for _, r := range []*Result{OfStrings(p[0], StringsEscape), cache.OfStrings(p[0], StringsEscape)} {
			got := r.Statements[0]
			if got.Err != nil || got.ID != want.ID || got.Normalized != want.Normalized || dumpFacts(got.Facts) != dumpFacts(want.Facts) {
				t.Errorf("%q off: %s %q %v %s, want %s %q %s", p[0], got.Hex, got.Normalized, got.Err, dumpFacts(got.Facts), want.Hex, want.Normalized, dumpFacts(want.Facts))
			}
		}
	}
}

// TestStringsLiteralKeys: keys are of the value the server reads under the
// setting; with the setting unknown, a value that depends on it has none.
func TestStringsLiteralKeys(t *testing.T) {
	tests := []struct {
		sql  string
		mode Strings
		want []string // "" for None
	}{
		{`SELECT 'a\'b', 'c\\d', 'e\x41', 'f'`, StringsEscape, []string{"a'b", `c\d`, "eA", "f"}},
		{`SELECT 'a\\b', 'c\x41', 'f'`, StringsStandard, []string{`a\\b`, `c\x41`, "f"}},
		{`SELECT 'a\\b', 'c\x41', 'f'`, StringsUnknown, []string{"", "", "f"}},
		{`SELECT N'x\'y', 'p'` + "\n" + `'q\'r'`, StringsEscape, []string{"x'y", "pq'r"}},
		{`SELECT 'a\'b'`, StringsUnknown, []string{""}},
		{`SELECT '\0'`, StringsEscape, []string{""}}, // a NUL byte: the server rejects it
		{`SELECT E'\'', $$\$$`, StringsUnknown, []string{"'", `\`}},
	}
	for _, tt := range tests {
		var want []valuekey.Key
		for _, v := range tt.want {
			if v == "" {
				want = append(want, valuekey.None)
			} else {
				want = append(want, valuekey.String(v))
			}
		}
		if got := OfStrings(tt.sql, tt.mode).Statements[0].LiteralKeys; !sameKeys(got, want) {
			t.Errorf("%q setting %d: keys %v, want the keys of %q", tt.sql, tt.mode, got, tt.want)
		}
	}
}

// TestStringsCacheKeys: the cache keeps each setting's Result of a text
// apart, and shares templates between settings.
func TestStringsCacheKeys(t *testing.T) {
	c := New(Options{})
	sql := `SELECT a FROM t WHERE b = 'x\' OR token = ''abc'' --'`
	on := c.OfStrings(sql, StringsStandard)
	off := c.OfStrings(sql, StringsEscape)
	unknown := c.Of(sql)
	if on == off || off == unknown || on.Statements[0].Normalized == off.Statements[0].Normalized {
		t.Fatalf("one Result for two settings: %q %q", on.Statements[0].Normalized, off.Statements[0].Normalized)
	}
	if c.OfStrings(sql, StringsStandard) != on || c.OfStrings(sql, StringsEscape) != off || c.OfStrings(sql, StringsUnknown) != unknown {
		t.Fatal("a text's Result is not kept per setting")
	}
	if c.OfStrings(sql, Strings(9)) != unknown {
		t.Fatal("a setting out of range is not read as unknown")
	}
	// A text that reads alike under every setting is one template.
	before := c.Stats().Templates
	c.OfStrings("SELECT a FROM t WHERE b = 'plain'", StringsEscape)
	c.OfStrings("SELECT a FROM t WHERE b = 'other'", StringsStandard)
	if got := c.Stats().Templates; got.Hits != before.Hits+1 {
		t.Errorf("templates not shared between settings: %+v then %+v", before, got)
	}
}
