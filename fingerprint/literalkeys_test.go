package fingerprint

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// none marks an expected valuekey.None in literalKeyCases.
const none = ""

// literalKeyCases: each statement's literals and the values their keys are
// of (none for valuekey.None), one list per statement.
var literalKeyCases = []struct {
	sql  string
	want [][]string
}{
	{"SELECT * FROM users WHERE id = 8", [][]string{{"8"}}},
	{"SELECT * FROM users WHERE id = '8'", [][]string{{"8"}}},
	{"SELECT * FROM users WHERE id = $$8$$", [][]string{{"8"}}},
	{"SELECT * FROM users WHERE id = $k$8$k$", [][]string{{"8"}}},
	{"SELECT * FROM users WHERE id = 008", [][]string{{"8"}}},
	{"SELECT * FROM users WHERE id = '008'", [][]string{{"8"}}},
	{"SELECT * FROM users WHERE id IN (1,2,3)", [][]string{{"1", "2", "3"}}},
	{"SELECT * FROM users WHERE id = $1 AND org = 5", [][]string{{"5"}}},
	{"SELECT * FROM users WHERE id = $1", [][]string{nil}},
	{"SELECT * FROM users", [][]string{nil}},
	{"", [][]string{nil}},

	// Typed literals are their string.
	{"SELECT * FROM t WHERE id = '8'::int", [][]string{{"8"}}},
	{"SELECT * FROM t WHERE id = int '8'", [][]string{{"8"}}},
	{"SELECT * FROM t WHERE id = CAST('8' AS bigint)", [][]string{{"8"}}},

	// Strings.
	{`SELECT 'a''b', 'it''s'`, [][]string{{"a'b", "it's"}}},
	{"SELECT 'ab'\n  'cd', 'x'", [][]string{{"abcd", "x"}}},
	{"SELECT N'abc'", [][]string{{"abc"}}},
	{`SELECT E'a\'b'`, [][]string{{"a'b"}}},
	{`SELECT E'a\\b', e'a\\\'b', E'a''b'`, [][]string{{`a\b`, `a\'b`, "a'b"}}},
	{`SELECT E'\b\f\n\r\t\v\q\%'`, [][]string{{"\b\f\n\r\t\vq%"}}},
	{`SELECT E'\x41\x4\x\101\7\303\251'`, [][]string{{"A\x04xA\x07é"}}},
	{`SELECT E'\u0041\U0001F600\uD83D\uDE00\uD83D\U0000DE00'`, [][]string{{"A😀😀😀"}}},
	{"SELECT E'a'\n'\\n'", [][]string{{"a\n"}}},
	{`SELECT E'\uD83D', E'\uDE00', E'\uD83Dx', E'\u12', E'\U0011FFFF', E'\u0000'`, [][]string{{none, none, none, none, none, none}}},
	{`SELECT E'\0', E'\x00', E'\400', E'\xff', E'\303'`, [][]string{{none, none, none, none, none}}},
	{`SELECT U&'d\0061t\+000061', U&'\\', U&'\D83D\DE00', U&'\+01F600'`, [][]string{{"data", `\`, "😀", "😀"}}},
	{`SELECT U&'d!0061t' UESCAPE '!', U&'d\0061t'`, [][]string{{"dat", none, "dat"}}},
	{`SELECT U&"d!0061t" UESCAPE '!', uescape '!' FROM t`, [][]string{{none, "!"}}},
	{`SELECT U&'\0000', U&'\D83D', U&'\DE00', U&'\12', U&'\+110000', U&'a' UESCAPE '+'`, [][]string{{none, none, none, none, none, none, none}}},
	{`SELECT U&'\110000'`, [][]string{{"\u110000"}}},
	{"SELECT $$it's$$, $a$ $b$ $a$, $$$$", [][]string{{"it's", " $b$ ", none}}},
	{"SELECT B'101', X'1F', ''", [][]string{{none, none, none}}},
	{"SELECT '550E8400-E29B-41D4-A716-446655440000'", [][]string{{"550e8400-e29b-41d4-a716-446655440000"}}},
	{"SELECT '" + strings.Repeat("x", valuekey.MaxValueBytes) + "', '" + strings.Repeat("x", valuekey.MaxValueBytes+1) + "'",
		[][]string{{strings.Repeat("x", valuekey.MaxValueBytes), none}}},
	{"SELECT '\xff', $$\xc3$$", [][]string{{none, none}}},

	// Numbers.
	{"SELECT 0x1F, 0o17, 0b101, 1_000, 0x_1F", [][]string{{"31", "15", "5", "1000", "31"}}},
	{"SELECT 007.50, .5, 5., 0.0, 00, 1_000.000_1", [][]string{{"7.50", "0.5", "5", "0.0", "0", "1000.0001"}}},
	{"SELECT 1e3, 1.5E-2, 0xFFFFFFFFFFFFFFFFFF", [][]string{{none, none, none}}},
	{"SELECT 99999999999999999999, 0099999999999999999999", [][]string{{"99999999999999999999", "99999999999999999999"}}},
	{"SELECT 9223372036854775807, 0x7FFFFFFFFFFFFFFF", [][]string{{"9223372036854775807", "9223372036854775807"}}},
	{"SELECT -0x8000000000000000, 0xFFFFFFFFFFFFFFFF, -0xFFFF_FFFF_FFFF_FFFF, 0o1777777777777777777777, 0b1_0, -0x0",
		[][]string{{"-9223372036854775808", "18446744073709551615", "-18446744073709551615", "18446744073709551615", "2", "0"}}},

	// Signs.
	{"SELECT * FROM t WHERE id = -8", [][]string{{"-8"}}},
	{"SELECT * FROM t WHERE id=-8", [][]string{{"-8"}}},
	{"SELECT * FROM t WHERE id IN (-1, - 2, 3)", [][]string{{"-1", "-2", "3"}}},
	{"SELECT -8, -0x10, -1.5, -.5, -0.0, -0", [][]string{{"-8", "-16", "-1.5", "-0.5", "0.0", "0"}}},
	{"INSERT INTO t VALUES (-1, 'x')", [][]string{{"-1", "x"}}},
	{"SELECT a - 8, a -8, $1 - 8, (a) - 8, t.a - 8, x[1] - 8, 'a' - 8, 2 - 8", [][]string{{"8", "8", "8", "8", "8", "1", "8", "a", "8", "2", "8"}}},
	{"SELECT - -8, 5 - -8, - - -8, 5 - - -8", [][]string{{"8", "5", "-8", "-8", "5", "8"}}},
	{"SELECT * FROM t WHERE -1 = id OR id = ANY(ARRAY[-2, 3])", [][]string{{"-1", "-2", "3"}}},
	{"SELECT between - 1, NOT between - 2 FROM t WHERE x NOT BETWEEN -3 AND -4 AND y between -5 AND 6", [][]string{{"1", "2", "-3", "-4", "-5", "6"}}},
	{"SELECT x BETWEEN between BETWEEN -1 AND 2 AND 3", [][]string{{"-1", "2", "3"}}},
	{"SELECT " + strings.Repeat("between ", 20) + "-1", [][]string{{none}}},
	{"SELECT t.* - 1, values - 2, by - 3, return - 4 FROM t ORDER BY -5", [][]string{{"1", "2", "3", "4", "-5"}}},
	{"SELECT * FROM t WHERE a BETWEEN -5 AND -1 OR NOT -1 = b", [][]string{{"-5", "-1", "-1"}}},
	{"SELECT CASE WHEN a THEN -1 ELSE -2 END - 3", [][]string{{"-1", "-2", "3"}}},
	{"SELECT t.limit - 1, t.select - 2 FROM t LIMIT -1", [][]string{{"1", "2", "-1"}}},
	{"SELECT a + -1, a * -2, a ^ -3, a <> -4, a @- 5", [][]string{{"-1", "-2", "-3", "-4", "5"}}},

	// TRUE and FALSE are literals without a key; IS TRUE is no literal.
	{"SELECT * FROM t WHERE a = true AND b IS TRUE AND c = 1", [][]string{{none, "1"}}},

	// Each statement its own keys.
	{"SELECT 1; SELECT 'a', 2; SELECT x FROM t", [][]string{{"1"}, {"a", "2"}, nil}},
	{"BEGIN; UPDATE a SET n = n - 100 WHERE id = 1; UPDATE a SET n = n + 100 WHERE id = -2; COMMIT", [][]string{nil, {"100", "1"}, {"100", "-2"}, nil}},

	// Statements that do not parse still have their literals read.
	{"SELEC * FROM users WHERE id = 8", [][]string{{"8"}}},
	{"SELECT 'unterminated", [][]string{{none}}},
	{"SELECT 123abc", [][]string{{none}}},
}

func keysOf(vals []string) []valuekey.Key {
	if vals == nil {
		return nil
	}
	keys := make([]valuekey.Key, len(vals))
	for i, v := range vals {
		keys[i] = valuekey.String(v)
	}
	return keys
}

func sameKeys(a, b []valuekey.Key) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLiteralKeys(t *testing.T) {
	cache := New(Options{})
	for _, c := range literalKeyCases {
		for _, r := range []*Result{ofOn(c.sql), cache.ofOn(c.sql), cache.ofOn(c.sql)} {
			if len(r.Statements) != len(c.want) {
				t.Errorf("%q: %d statements, want %d", c.sql, len(r.Statements), len(c.want))
				continue
			}
			for i, st := range r.Statements {
				if want := keysOf(c.want[i]); !sameKeys(st.LiteralKeys, want) {
					t.Errorf("%q statement %d: keys %v, want the keys of %q", c.sql, i, st.LiteralKeys, c.want[i])
				}
				if cap(st.LiteralKeys) != len(st.LiteralKeys) {
					t.Errorf("%q statement %d: cap %d, len %d: an append would write into another's keys",
						c.sql, i, cap(st.LiteralKeys), len(st.LiteralKeys))
				}
			}
		}
	}
	// The forms of one id agree.
	k := func(q string) valuekey.Key { return ofOn(q).Statements[0].LiteralKeys[0] }
	for _, q := range []string{"WHERE id = '8'", "WHERE id = $$8$$", "WHERE id = 008", "WHERE id = 0x8", "WHERE id = E'\\70'", "WHERE id = U&'\\0038'"} {
		if k("SELECT * FROM t "+q) != k("SELECT * FROM t WHERE id = 8") {
			t.Errorf("%q: another key than id = 8", q)
		}
	}
}

// TestLiteralKeysTemplatePath: a new text of a known shape, which skips
// pg_query, has the keys of its own literals, not those of the text that
// taught the Cache the shape.
func TestLiteralKeysTemplatePath(t *testing.T) {
	c := New(Options{})
	for i := range 50 {
		q := fmt.Sprintf("SELECT a FROM t WHERE id = %d AND s = 'v%d' LIMIT 1", i, i)
		st := c.ofOn(q).Statements[0]
		want := keysOf([]string{strconv.Itoa(i), "v" + strconv.Itoa(i), "1"})
		if !sameKeys(st.LiteralKeys, want) {
			t.Fatalf("%q: keys %v, want %v", q, st.LiteralKeys, want)
		}
	}
	if s := c.Stats(); s.Templates.Hits < 49 {
		t.Errorf("template hits %d, want 49", s.Templates.Hits)
	}
}

// TestLiteralKeysCap: an IN list of many inlined ids keys the first
// MaxLiteralKeys of them; the hash still covers all.
func TestLiteralKeysCap(t *testing.T) {
	list := func(n, last int) string {
		var b strings.Builder
		b.WriteString("SELECT * FROM posts WHERE user_id IN (")
		for i := 1; i < n; i++ {
			b.WriteString(strconv.Itoa(i) + ", ")
		}
		b.WriteString(strconv.Itoa(last) + ")")
		return b.String()
	}
	r := ofOn(list(5000, 5000))
	st := r.Statements[0]
	if len(st.LiteralKeys) != MaxLiteralKeys || cap(st.LiteralKeys) != MaxLiteralKeys {
		t.Fatalf("len %d cap %d, want %d", len(st.LiteralKeys), cap(st.LiteralKeys), MaxLiteralKeys)
	}
	for i, k := range st.LiteralKeys {
		if k != valuekey.String(strconv.Itoa(i+1)) {
			t.Fatalf("key %d is not that of %d", i, i+1)
		}
	}
	if other := ofOn(list(5000, 5001)).Statements[0]; other.LiteralsHash == st.LiteralsHash || !sameKeys(other.LiteralKeys, st.LiteralKeys) {
		t.Error("a change past the cap must change the hash and not the keys")
	}
	// Several long statements: each capped, one allocation for all.
	r = ofOn(list(2000, 2000) + "; " + list(3, 3))
	if len(r.Statements[0].LiteralKeys) != MaxLiteralKeys || !sameKeys(r.Statements[1].LiteralKeys, keysOf([]string{"1", "2", "3"})) {
		t.Errorf("two statements: %d and %v keys", len(r.Statements[0].LiteralKeys), r.Statements[1].LiteralKeys)
	}
	// The keys of a huge list cost the text cache their bytes.
	bare := &Result{Statements: append([]Statement(nil), r.Statements...)}
	for i := range bare.Statements {
		bare.Statements[i].LiteralKeys = nil
	}
	if got := entryCost("x", r) - entryCost("x", bare); got != 8*(MaxLiteralKeys+3) {
		t.Errorf("entry cost of the keys %d, want %d", got, 8*(MaxLiteralKeys+3))
	}
}

// ormFindByID are the find-by-id forms of testdata/*.sql, by file.
var ormFindByID = []string{"typeorm", "prisma", "sequelize", "gorm", "activerecord", "django", "hibernate"}

// TestLiteralKeysORMFindByID inlines an id into each ORM's find-by-id, as
// the ORM's raw or simple-protocol path does, and checks the literal that
// holds it has the key of the id, as an int and as a string, and every
// other literal the key of its plain text.
func TestLiteralKeysORMFindByID(t *testing.T) {
	for _, orm := range ormFindByID {
		var sql string
		for _, c := range readCases(t, filepath.Join("testdata", orm+".sql")) {
			if c.Name == "find-by-id" {
				sql = c.SQL
			}
		}
		if sql == "" {
			t.Fatalf("%s: no find-by-id case", orm)
		}
		for _, id := range []string{"4711", "'4711'", "'0b7e5a6c-3f4e-4a8b-9c1d-2e3f4a5b6c7d'"} {
			// Inline the id as $1, or in place of the id the ORM inlined.
			q := strings.Replace(sql, "$1", id, 1)
			if q == sql {
				q = strings.Replace(sql, "= 42", "= "+id, 1)
			}
			q = strings.NewReplacer("$2", "1", "$3", "0").Replace(q)
			idVal := strings.Trim(id, "'")
			var want []valuekey.Key
			idAt := -1
			toks := lexNoComments(q)
			for i, tk := range toks {
				if !isLiteralAt(q, toks, i) {
					continue
				}
				text := strings.Trim(q[tk.start:tk.end], "'")
				if text == idVal {
					idAt = len(want)
				}
				want = append(want, valuekey.String(text))
			}
			st := New(Options{}).ofOn(q).Statements[0]
			if st.Err != nil || idAt < 0 {
				t.Fatalf("%s %q: %v, id at %d", orm, q, st.Err, idAt)
			}
			if !sameKeys(st.LiteralKeys, want) {
				t.Errorf("%s %q: keys %v, want %v", orm, q, st.LiteralKeys, want)
			}
			if st.LiteralKeys[idAt] != valuekey.String(idVal) {
				t.Errorf("%s %q: the id's key is not valuekey.String(%q)", orm, q, idVal)
			}
		}
	}
}

func lexNoComments(sql string) []token {
	var toks []token
	for _, tk := range lex(sql, nil) {
		if tk.kind != tkComment && tk.kind != tkBadComment {
			toks = append(toks, tk)
		}
	}
	return toks
}

// keysByOffset maps the start of each keyed literal token of sql to its key
// in r.
func keysByOffset(t *testing.T, sql string, r *Result) map[int32]valuekey.Key {
	t.Helper()
	toks := lexNoComments(sql)
	spans := splitStatements(sql, toks)
	out := map[int32]valuekey.Key{}
	if len(spans) != len(r.Statements) {
		return out // no statements: checkResult says more
	}
	for k, sp := range spans {
		keys := r.Statements[k].LiteralKeys
		n := 0
		for i := sp.lo; i < sp.hi; i++ {
			if !isLiteralAt(sql, toks[sp.lo:sp.hi], i-sp.lo) {
				continue
			}
			if n < len(keys) {
				out[toks[i].start] = keys[n]
			}
			n++
		}
		if want := min(n, MaxLiteralKeys); len(keys) != want {
			t.Fatalf("%q statement %d: %d keys for %d literals", sql, k, len(keys), n)
		}
		// One key per parameter that Normalized made.
		params := 0
		for _, tk := range lex(r.Statements[k].Normalized, nil) {
			if tk.kind == tkParam {
				params++
			}
		}
		for i := sp.lo; i < sp.hi; i++ {
			if toks[i].kind == tkParam {
				params--
			}
		}
		if params != n {
			t.Fatalf("%q statement %d: %d literals, Normalized %q made %d parameters", sql, k, n, r.Statements[k].Normalized, params)
		}
	}
	return out
}

// constKey is the key of a constant of pg_query's parse tree: the value
// PostgreSQL read from the literal, brought to the text a column of its
// type shows, by other means than literalkeys.go uses.
func constKey(c *pg_query.A_Const) (valuekey.Key, bool) {
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return valuekey.String(strconv.FormatInt(int64(v.Ival.GetIval()), 10)), true
	case *pg_query.A_Const_Sval:
		s := v.Sval.GetSval()
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return valuekey.None, true
		}
		return valuekey.String(s), true
	case *pg_query.A_Const_Fval:
		f := strings.ReplaceAll(v.Fval.GetFval(), "_", "")
		sign := ""
		if f[0] == '-' {
			sign, f = "-", f[1:]
		}
		if strings.ContainsAny(f, "eE") && !strings.HasPrefix(f, "0x") && !strings.HasPrefix(f, "0X") {
			return valuekey.None, true
		}
		if len(f) > 2 && f[0] == '0' && strings.ContainsRune("xXoObB", rune(f[1])) {
			base := map[byte]int{'x': 16, 'X': 16, 'o': 8, 'O': 8, 'b': 2, 'B': 2}[f[1]]
			u, err := strconv.ParseUint(f[2:], base, 64)
			if err != nil {
				return valuekey.None, true
			}
			if u == 0 {
				sign = ""
			}
			return valuekey.String(sign + strconv.FormatUint(u, 10)), true
		}
		ip, frac, point := strings.Cut(f, ".")
		ip = strings.TrimLeft(ip, "0")
		if ip == "" {
			ip = "0"
		}
		out := ip
		if point && frac != "" {
			out += "." + frac
		}
		if strings.Trim(ip+frac, "0") == "" {
			sign = ""
		}
		return valuekey.String(sign + out), true
	case *pg_query.A_Const_Boolval, *pg_query.A_Const_Bsval:
		return valuekey.None, true
	}
	return 0, false // NULL
}

// checkLiteralKeysAgainstParser checks every key against the constants of
// pg_query's parse tree of sql: PostgreSQL's own reading of the literals,
// with its escapes, continuations and folded signs. A constant's location
// is its literal, or the first of the '-' signs folded into it.
func checkLiteralKeysAgainstParser(t *testing.T, sql string, r *Result) (checked int) {
	t.Helper()
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return 0
	}
	got := keysByOffset(t, sql, r)
	toks := lexNoComments(sql)
	at := map[int32]int{}
	for i, tk := range toks {
		at[tk.start] = i
	}
	for _, raw := range tree.Stmts {
		walk(raw, func(m protoreflect.ProtoMessage) bool {
			c, ok := m.(*pg_query.A_Const)
			if !ok {
				return true
			}
			want, ok := constKey(c)
			i, found := at[c.Location]
			if !ok || !found {
				return true
			}
			for i+1 < len(toks) && isOp(sql, toks[i], "-") {
				i++
			}
			key, keyed := got[toks[i].start]
			if !keyed {
				return true // not a literal to the lexer (NULL), or past the cap
			}
			checked++
			if key != want {
				t.Errorf("%q: literal %q at %d: key %x, want %x (parse tree: %v)",
					sql, sql[toks[i].start:toks[i].end], toks[i].start, key, want, c.Val)
			}
			return true
		})
	}
	return checked
}

// TestLiteralKeysAgreeWithParser holds the keys of every case of this file,
// the lexer's and the golden files to PostgreSQL's reading of them.
func TestLiteralKeysAgreeWithParser(t *testing.T) {
	var corpus []string
	for _, c := range literalKeyCases {
		corpus = append(corpus, c.sql)
	}
	corpus = append(corpus, lexerCases...)
	corpus = append(corpus, fuzzSeeds...)
	files, _ := filepath.Glob("testdata/*.sql")
	for _, f := range files {
		for _, c := range readCases(t, f) {
			corpus = append(corpus, c.SQL)
		}
	}
	checked := 0
	for _, q := range corpus {
		checked += checkLiteralKeysAgainstParser(t, q, ofOn(q))
	}
	if checked < 300 {
		t.Errorf("only %d constants checked", checked)
	}
	t.Logf("%d constants checked against the parse tree", checked)
}

// FuzzLiteralKeys puts fuzzed text inside a string literal of each
// notation, or after a sign, and holds the keys to the parse tree.
func FuzzLiteralKeys(f *testing.F) {
	for _, s := range []string{`a\'b`, `\x41\101\u0041\U0001F600`, `\uD83D\uDE00`, `d\0061t\+01F600`, `d!0061!!`,
		"ab'\n'cd", `\\`, `\400\xff`, "0x1F", "1_000.5", "- -8"} {
		for form := range uint8(7) {
			f.Add(s, form)
		}
	}
	f.Fuzz(func(t *testing.T, s string, form uint8) {
		if len(s) > 256 {
			return
		}
		var q string
		switch form % 7 {
		case 0:
			q = "SELECT E'" + s + "'"
		case 1:
			q = "SELECT U&'" + s + "'"
		case 2:
			q = "SELECT U&'" + s + "' UESCAPE '!'"
		case 3:
			q = "SELECT '" + s + "'"
		case 4:
			q = "SELECT $$" + s + "$$"
		case 5:
			q = "SELECT x FROM t WHERE a = -" + s
		case 6:
			q = "SELECT " + s + " -1"
		}
		r := ofOn(q)
		checkResult(t, q, r)
		checkLiteralKeysAgainstParser(t, q, r)
	})
}
