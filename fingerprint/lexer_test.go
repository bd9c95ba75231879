package fingerprint

import (
	"fmt"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// tokenClass is what lexer_test compares: our kinds and pg_query's tokens
// folded into the same few classes.
func ourClass(k tokKind) string {
	switch k {
	case tkWord, tkQuoted:
		return "ident"
	case tkString, tkBitString:
		return "string"
	case tkNumber:
		return "number"
	case tkParam:
		return "param"
	case tkComment:
		return "comment"
	case tkOp:
		return "op"
	}
	return "bad"
}

func pgClass(t *pg_query.ScanToken) string {
	switch t.Token {
	case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST:
		return "string"
	case pg_query.Token_ICONST, pg_query.Token_FCONST:
		return "number"
	case pg_query.Token_PARAM:
		return "param"
	case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
		return "comment"
	case pg_query.Token_IDENT, pg_query.Token_UIDENT:
		return "ident"
	}
	if t.KeywordKind != pg_query.KeywordKind_NO_KEYWORD {
		return "ident"
	}
	return "op"
}

func describe(s string, toks []token) string {
	var b strings.Builder
	for _, t := range toks {
		fmt.Fprintf(&b, "%d-%d %s %q\n", t.start, t.end, ourClass(t.kind), s[t.start:t.end])
	}
	return b.String()
}

// compareWithScanner checks lex against pg_query's scanner. When the scanner
// accepts s, the tokens must match exactly; when it rejects s, lex must have
// produced a bad token, so that a text PostgreSQL cannot lex is never
// mistaken for a clean one.
func compareWithScanner(t *testing.T, s string) {
	t.Helper()
	if strings.IndexByte(s, 0) >= 0 {
		return // the C scanner stops at NUL; Of truncates there too
	}
	ours := lex(s, nil)
	res, err := pg_query.Scan(s)
	if err != nil {
		for _, tk := range ours {
			if tk.kind.isBad() {
				return
			}
		}
		if acceptedByLexButNotScanner(s, err) {
			return
		}
		t.Fatalf("scanner rejects %q (%v) but lex found no bad token:\n%s", s, err, describe(s, ours))
	}
	want := res.GetTokens()
	var wantDesc strings.Builder
	for _, tk := range want {
		fmt.Fprintf(&wantDesc, "%d-%d %s %q\n", tk.Start, tk.End, pgClass(tk), s[tk.Start:tk.End])
	}
	if got := describe(s, ours); got != wantDesc.String() {
		t.Fatalf("lex(%q) tokens differ from the scanner\ngot:\n%swant:\n%s", s, got, wantDesc.String())
	}
}

// acceptedByLexButNotScanner lists scanner errors about the value of a
// literal rather than its extent: lex does not decode literals, so it accepts
// these, and the token boundaries are still right.
func acceptedByLexButNotScanner(_ string, err error) bool {
	msg := err.Error()
	for _, m := range []string{
		"invalid Unicode escape",
		"invalid Unicode surrogate pair",
		"invalid byte sequence",
		"unsafe use of string constant with Unicode escapes",
		"Unicode escape values cannot be used",
		"invalid Unicode escape value",
		"operator too long",
	} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// lexerCases covers every state of PostgreSQL's scanner. They also seed the
// fuzz tests.
var lexerCases = []string{
	"",
	"SELECT 1",
	"select a.b, \"Quoted\"\"Ident\", U&\"d\\0061t\\+000061\" from t",
	"SELECT 'it''s', E'a\\'b\\\\', e'\\x41\\101\\u0041', N'national', U&'d\\0061t' UESCAPE '!'",
	"SELECT B'0101', X'1F', b'', x''",
	"SELECT 'a'\n'b', 'c' -- comment\n  'd', 'e'\r\n\t'f'",
	"SELECT 'a' 'b'",
	"SELECT 'a' /* c */\n'b'",
	"SELECT 'a'\n-- only comment",
	"SELECT 'a'\n-- c\n'b'",
	"SELECT $$dollar ' \" $ quoted$$, $tag$ with $$ inside $tag$, $a$b$a$",
	"SELECT $1, $12, $99999999999, a$b, $foo",
	"SELECT 1, 1.5, .5, 1., 1e10, 1.5E-3, 0x1F, 0o17, 0b101, 1_000_000, 0x_FF, 1..10",
	"SELECT 1 -- trailing comment",
	"SELECT /* a /* nested */ comment */ 1",
	"SELECT 1 /**/ + /***/ 2 /* * / */",
	"SELECT a+-b, a-+b, a*-b, a@-b, a<=b, a>=b, a<>b, a!=b, a=>b, a::int, a := b, a||b, a~~b, a!~~*b",
	"SELECT a+/*c*/b, a+--c\nb, a*/b",
	"SELECT x FROM t WHERE a = ANY($1) AND b IN (1, 2, 3) LIMIT 10 OFFSET 20",
	"SELECT ?, {fn now()}, \\x, `a`, #a, @a",
	"SELECT '\xff\xfe', \"\xc3\xa9\", \xc3\xa9t\xc3\xa9",
	"SELECT 'unterminated",
	"SELECT E'unterminated\\",
	"SELECT \"unterminated",
	"SELECT $$unterminated",
	"SELECT $a$ $b$ unterminated",
	"SELECT 1 /* unterminated /* nested */",
	"SELECT \"\"",
	"SELECT 123abc",
	"SELECT 0x",
	"SELECT 0xZZ",
	"SELECT 1e",
	"SELECT 1e+",
	"SELECT 1.5e",
	"SELECT $1abc",
	"SELECT 1;SELECT 2;;",
	"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SELECT 3",
	"SELECT '\\' , 'x'",
	"SELECT e'\\''||'x'",
	"\v\fSELECT\v1",
	"SELECT a.5, t.*, 1.e5, 1.5.5",
}

func TestCharClass(t *testing.T) {
	for i := 0; i < 256; i++ {
		c := byte(i)
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
		digit := c >= '0' && c <= '9'
		checks := []struct {
			name      string
			got, want bool
		}{
			{"space", isSpace(c), strings.IndexByte(" \t\n\r\f\v", c) >= 0},
			{"ident start", isIdentStart(c), letter},
			{"ident cont", isIdentCont(c), letter || digit || c == '$'},
			{"digit", isDigit(c), digit},
			{"op", isOpChar(c), c != 0 && strings.IndexByte("~!@#^&|`?+-*/%<>=", c) >= 0},
		}
		for _, ck := range checks {
			if ck.got != ck.want {
				t.Errorf("%s(%q) = %v, want %v", ck.name, c, ck.got, ck.want)
			}
		}
	}
}

func TestLexMatchesScanner(t *testing.T) {
	for _, s := range lexerCases {
		t.Run("", func(t *testing.T) { compareWithScanner(t, s) })
	}
}

func FuzzLex(f *testing.F) {
	for _, s := range lexerCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 1<<16 {
			return
		}
		compareWithScanner(t, s)
	})
}
