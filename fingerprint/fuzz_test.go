package fingerprint

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nplus1/nplus1/internal/valuekey"
)

// fuzzSeeds add to lexerCases the other corners of the input space.
var fuzzSeeds = []string{
	"SELECT $99999999999999999999999, $0, $1",
	"SELECT '\xc3\x28', \"\xe2\x82\", \xf0\x28\x8c\x28 FROM t",
	"SELECT /* /* /* deep */ */ */ 1",
	"SELECT 1 /*a='b',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
	"SELECT $a$ $b$ nested $b$ $a$",
	"SELECT e'\\\\', E'\\'', 'a''b', U&'\\+01F600'",
	"SELECT 1 LIMIT ALL OFFSET (5)",
	"SELECT a FROM t WHERE b LIKE E'\\x25' ESCAPE '!'",
	"WITH x AS (SELECT * FROM t) SELECT x.* FROM x FOR UPDATE",
	"SELECT 1;\n-- name: trailing\n",
	strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200),
	"SELECT " + strings.Repeat("1,", 300) + "1",
}

// checkResult asserts what holds for the Result of any text, read with
// standard_conforming_strings on.
func checkResult(t *testing.T, sql string, r *Result) {
	t.Helper()
	checkResultStrings(t, sql, r, StringsStandard)
}

// checkResultStrings is checkResult for a text read with the setting mode.
func checkResultStrings(t *testing.T, sql string, r *Result, mode Strings) {
	t.Helper()
	if len(r.Statements) == 0 {
		t.Fatalf("%q: no statements", sql)
	}
	for _, st := range r.Statements {
		if st.Facts == nil || st.Hex != hex16(st.ID) {
			t.Fatalf("%q: bad statement %+v", sql, st)
		}
		if (st.Err != nil) != (st.Facts.Kind == KindUnknown) {
			t.Fatalf("%q: error %v with kind %q", sql, st.Err, st.Facts.Kind)
		}
		if st.Err != nil {
			if msg := st.Err.(*ParseError).Message; strings.ContainsAny(msg, "\"'") {
				t.Fatalf("%q: error message %q quotes the statement", sql, msg)
			}
		}
		// No literal survives normalization: the text lexes without any
		// literal or rejected token.
		for _, tk := range lex(st.Normalized, nil) {
			if tk.kind.isLiteral() || tk.kind.isBad() || tk.kind == tkComment {
				t.Fatalf("%q: normalized %q holds %q", sql, st.Normalized, st.Normalized[tk.start:tk.end])
			}
		}
	}
	checkNormalizedTokens(t, sql, r, mode)
}

// checkNormalizedTokens asserts that the normalized statements are made of
// the text's own tokens as read with the setting mode, in order, but for
// literals, which became parameters, and comments and unterminated
// identifiers, which are gone. So nothing else of the text can be in them.
func checkNormalizedTokens(t *testing.T, sql string, r *Result, mode Strings) {
	t.Helper()
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	var toks []token
	all, _ := lexStrings(sql, nil, nil, mode)
	for _, tk := range all {
		if tk.kind != tkComment && tk.kind != tkBadComment {
			toks = append(toks, tk)
		}
	}
	spans := splitStatements(sql, toks)
	if len(spans) == 0 {
		return
	}
	if len(spans) != len(r.Statements) {
		t.Fatalf("%q: %d statements, %d spans", sql, len(r.Statements), len(spans))
	}
	for k, sp := range spans {
		var want []string
		for i := sp.lo; i < sp.hi; i++ {
			switch {
			case toks[i].kind == tkBadQuoted:
			case isLiteralAt(sql, toks[sp.lo:sp.hi], i-sp.lo):
				want = append(want, "$")
			default:
				want = append(want, sql[toks[i].start:toks[i].end])
			}
		}
		norm := r.Statements[k].Normalized
		var got []string
		for _, tk := range lex(norm, nil) {
			text := norm[tk.start:tk.end]
			if tk.kind == tkParam && len(got) < len(want) && want[len(got)] == "$" {
				text = "$" // a parameter we made
			}
			got = append(got, text)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%q: normalized %q has tokens\n%q\nwant\n%q", sql, norm, got, want)
		}
	}
}

func FuzzOf(f *testing.F) {
	for _, s := range append(append([]string{}, lexerCases...), fuzzSeeds...) {
		f.Add(s)
	}
	for _, c := range literalKeyCases {
		f.Add(c.sql)
	}
	cache := New(Options{MaxTexts: 100, MaxShapes: 100})
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 1<<14 {
			return
		}
		r := ofOn(sql)
		checkResult(t, sql, r)
		checkLiteralKeysAgainstParser(t, sql, r)
		if cr := cache.ofOn(sql); !sameResult(r, cr) {
			t.Fatalf("%q: Cache.Of and Of disagree\n%s\n%s", sql, dump(cr), dump(r))
		}
	})
}

// plantTemplates are statements with a string slot {S} and a number slot
// {N}: parsable ones of every kind, and one that does not parse.
var plantTemplates = []string{
	"SELECT a FROM t WHERE b = {S} AND c = {N}",
	"SELECT a FROM t WHERE b IN ({S}, {S}) LIMIT {N} OFFSET {N}",
	"INSERT INTO t (a, b) VALUES ({S}, {N}) RETURNING id",
	"UPDATE t SET a = {S} WHERE id = {N}",
	"SELECT a FROM t WHERE b LIKE {S} OR c = -{N} /* note */",
	"SELECT {S}::text, {N}::bigint, x::varchar({N}) FROM t ORDER BY {N}",
	"SELEC broken {S} {N}",
	"SELECT a FROM t WHERE b = {S}; DELETE FROM t WHERE c = {N}",
	"SET application_name = {S}",
	"SELECT a FROM t WHERE b = {S} AND c = {N} /*route='%2Fx'*/",
	"SELECT CASE WHEN a > {N} THEN {S} ELSE {S} END FROM t GROUP BY 1",
}

// quoteString writes s as an SQL string constant in one of several forms.
func quoteString(s string, form uint8) string {
	s = strings.ReplaceAll(s, "\x00", " ")
	switch form % 6 {
	case 1:
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	case 2:
		if !strings.Contains(s, "$zq$") && !strings.HasSuffix(s, "$zq") {
			return "$zq$" + s + "$zq$"
		}
	case 3:
		return "U&'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
	case 4:
		return "N'" + strings.ReplaceAll(s, "'", "''") + "'"
	case 5:
		half := len(s) / 2
		return "'" + strings.ReplaceAll(s[:half], "'", "''") + "'\n  '" + strings.ReplaceAll(s[half:], "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// writeNumber writes n as an SQL numeric constant in one of several forms.
func writeNumber(n uint64, form uint8) string {
	d := strconv.FormatUint(n, 10)
	switch form % 5 {
	case 1:
		return "0x" + strconv.FormatUint(n, 16)
	case 2:
		return d + ".5"
	case 3:
		return d + "e3"
	case 4:
		if len(d) > 1 {
			return d[:1] + "_" + d[1:]
		}
	}
	return d
}

func plant(tmpl, s string, n uint64, sForm, nForm uint8) string {
	return strings.NewReplacer("{S}", quoteString(s, sForm), "{N}", writeNumber(n, nForm)).Replace(tmpl)
}

// checkPlanted plants s and n into a template and checks that nothing of
// them reaches the Result: the normalized text, the error and the
// fingerprint are those of the same template with other values.
func checkPlanted(t *testing.T, cache *Cache, tmplIndex uint8, s string, n uint64, sForm, nForm uint8) {
	t.Helper()
	tmpl := plantTemplates[int(tmplIndex)%len(plantTemplates)]
	sql := plant(tmpl, s, n, sForm, nForm)
	// The baseline number is on the same side of 2^31: PostgreSQL's scanner
	// makes larger integers FCONST, which some positions (varchar(n)) reject.
	baseN := uint64(1)
	if n > 1<<31-1 {
		baseN = 1 << 40
	}
	base := plant(tmpl, "x", baseN, sForm, nForm)
	got, want := ofOn(sql), ofOn(base)
	checkResult(t, sql, got)
	if len(got.Statements) != len(want.Statements) {
		t.Fatalf("%q: %d statements, %q has %d", sql, len(got.Statements), base, len(want.Statements))
	}
	for i, st := range got.Statements {
		w := want.Statements[i]
		if st.Normalized != w.Normalized {
			t.Fatalf("%q: normalized %q, want %q as for %q", sql, st.Normalized, w.Normalized, base)
		}
		if st.ID != w.ID || (st.Err == nil) != (w.Err == nil) {
			t.Fatalf("%q: ID %s err %v, want %s err %v as for %q", sql, st.Hex, st.Err, w.Hex, w.Err, base)
		}
		// The position in the error moves with the literals' length; the
		// message must not change.
		if st.Err != nil && st.Err.(*ParseError).Message != w.Err.(*ParseError).Message {
			t.Fatalf("%q: error %q, want %q as for %q", sql, st.Err, w.Err, base)
		}
		if c := cache.ofOn(sql).Statements[i]; c.ID != st.ID || c.Normalized != st.Normalized || !sameKeys(c.LiteralKeys, st.LiteralKeys) {
			t.Fatalf("%q: the cache gives %s %q %v, want %s %q %v", sql, c.Hex, c.Normalized, c.LiteralKeys, st.Hex, st.Normalized, st.LiteralKeys)
		}
	}
	checkPlantedKeys(t, sql, got, s, n, nForm, strings.Contains(tmpl, "{N}"))
}

// checkPlantedKeys checks that the LiteralKeys of a text with planted
// values hold the key of each: of the string, and of the number or its
// negation (one template writes -{N}). Values without a key (empty, too
// long, not UTF-8) and the notation without one (1e3) are not looked for.
func checkPlantedKeys(t *testing.T, sql string, r *Result, s string, n uint64, nForm uint8, number bool) {
	t.Helper()
	has := func(k valuekey.Key) bool {
		for _, st := range r.Statements {
			for _, lk := range st.LiteralKeys {
				if lk == k {
					return true
				}
			}
		}
		return false
	}
	if v := strings.ReplaceAll(s, "\x00", " "); utf8.ValidString(v) {
		if k := valuekey.String(v); k != valuekey.None && !has(k) {
			t.Fatalf("%q: no key of the planted string %q among %v", sql, v, r.Statements[0].LiteralKeys)
		}
	}
	if !number {
		return
	}
	d := strconv.FormatUint(n, 10)
	switch nForm % 5 {
	case 2:
		d += ".5"
	case 3:
		return
	}
	if !has(valuekey.String(d)) && !has(valuekey.String("-"+d)) {
		t.Fatalf("%q: no key of the planted number %s among %v", sql, d, r.Statements[0].LiteralKeys)
	}
}

// TestNormalizedLiteralFree plants random string and number literals, in
// every notation, into statements of every kind.
func TestNormalizedLiteralFree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "9", " ", "'", "''", `\`, `\'`, "$", "$$", "$zq$", "--", "/*", "*/", ";", "\n", "\r",
		"%", "_", "\"", "é", "\xff", "\x00", "\t", "SELECT", "E'", "U&"}
	cache := New(Options{MaxTexts: 50})
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for j := rng.IntN(12); j > 0; j-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		n := rng.Uint64() >> rng.IntN(64)
		checkPlanted(t, cache, uint8(rng.IntN(256)), "zq"+b.String(), n, uint8(rng.IntN(6)), uint8(rng.IntN(5)))
	}
}

func FuzzNormalizedLiteralFree(f *testing.F) {
	f.Add(uint8(0), "secret", uint64(123456789), uint8(0), uint8(0))
	f.Add(uint8(1), "it's", uint64(1<<40), uint8(1), uint8(1))
	f.Add(uint8(4), "%$zq$\\'", uint64(0), uint8(2), uint8(2))
	f.Add(uint8(6), "\xff\xfe--/*", uint64(42), uint8(3), uint8(3))
	f.Add(uint8(7), "a\nb", uint64(99999999999), uint8(5), uint8(4))
	cache := New(Options{MaxTexts: 50})
	f.Fuzz(func(t *testing.T, tmpl uint8, s string, n uint64, sForm, nForm uint8) {
		if len(s) > 1<<12 {
			return
		}
		checkPlanted(t, cache, tmpl, s, n, sForm, nForm)
	})
}

// quoteStringOff writes s as an SQL string constant, in one of several
// forms, for a session with standard_conforming_strings off, where a
// backslash escapes in '...' too.
func quoteStringOff(s string, form uint8) string {
	s = strings.ReplaceAll(s, "\x00", " ")
	esc := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	switch form % 6 {
	case 1, 3:
		return quoteString(s, form) // E'...', U&'...' (which the server rejects)
	case 2:
		if !strings.Contains(s, "$zq$") && !strings.HasSuffix(s, "$zq") {
			return "$zq$" + s + "$zq$"
		}
	case 4:
		return "N'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
	case 5:
		half := len(s) / 2
		return "'" + esc.Replace(s[:half]) + "'\n  '" + esc.Replace(s[half:]) + "'"
	}
	return "'" + esc.Replace(s) + "'"
}

// plantMarker is planted inside every string value of checkPlantedStrings;
// no template holds it.
const plantMarker = "SECRETLEAK"

// checkPlantedStrings plants s (with plantMarker in it) and n into a
// template, written for a session whose standard_conforming_strings is
// mode (StringsStandard or StringsEscape), and reads the text with that
// setting and with the setting unknown. With either, nothing of the
// planted string reaches the Result: not the normalized text, the facts,
// the tags or the error. With the right setting the Result is that of the
// same template with other values, and the keys are of the planted values.
func checkPlantedStrings(t *testing.T, cache *Cache, tmplIndex uint8, s string, n uint64, sForm, nForm uint8, mode Strings) {
	t.Helper()
	tmpl := plantTemplates[int(tmplIndex)%len(plantTemplates)]
	quote := quoteString
	if mode == StringsEscape {
		quote = quoteStringOff
	}
	v := s + " " + plantMarker + " " + s
	plantIn := func(s string, n uint64) string {
		return strings.NewReplacer("{S}", quote(s, sForm), "{N}", writeNumber(n, nForm)).Replace(tmpl)
	}
	sql := plantIn(v, n)
	baseN := uint64(1)
	if n > 1<<31-1 {
		baseN = 1 << 40
	}
	base := plantIn("x", baseN)
	for _, read := range []Strings{mode, StringsUnknown} {
		got := OfStrings(sql, read)
		checkResultStrings(t, sql, got, read)
		noLeak(t, sql, read, got, plantMarker)
		if c := cache.OfStrings(sql, read); !sameResult(c, got) {
			t.Fatalf("%q setting %d: the cache gives\n%s\nnot\n%s", sql, read, dump(c), dump(got))
		}
		if read == StringsUnknown {
			checkUnknown(t, sql, got)
			continue
		}
		want := OfStrings(base, read)
		if len(got.Statements) != len(want.Statements) {
			t.Fatalf("%q setting %d: %d statements, %q has %d", sql, read, len(got.Statements), base, len(want.Statements))
		}
		for i, st := range got.Statements {
			w := want.Statements[i]
			if st.Normalized != w.Normalized || st.ID != w.ID || (st.Err == nil) != (w.Err == nil) {
				t.Fatalf("%q setting %d: %s %q %v, want %s %q %v as for %q", sql, read, st.Hex, st.Normalized, st.Err, w.Hex, w.Normalized, w.Err, base)
			}
		}
		if !(mode == StringsEscape && sForm%6 == 3) { // U&'...' with the setting off has no key
			checkPlantedKeys(t, sql, got, v, n, nForm, strings.Contains(tmpl, "{N}"))
		}
	}
}

// TestPlantedStrings plants random string values, in every notation, for
// sessions with standard_conforming_strings on and off, into statements of
// every kind.
func TestPlantedStrings(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "Z", "9", " ", "'", "''", `\`, `\'`, `\\`, "$", "$$", "$zq$", "--", "/*", "*/", ";", "\n", "\r",
		"%", "_", "\"", "é", "\xff", "\x00", "\t", "SELECT", "E'", "U&", "N'", `\x41`, `\u0041`, "OR"}
	cache := New(Options{MaxTexts: 50})
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for j := rng.IntN(12); j > 0; j-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		n := rng.Uint64() >> rng.IntN(64)
		mode := StringsStandard
		if i%2 == 1 {
			mode = StringsEscape
		}
		checkPlantedStrings(t, cache, uint8(rng.IntN(256)), b.String(), n, uint8(rng.IntN(6)), uint8(rng.IntN(5)), mode)
	}
}

func FuzzPlantedStrings(f *testing.F) {
	f.Add(uint8(0), `x\`, uint64(1), uint8(0), uint8(0), false)
	f.Add(uint8(1), `it's \' OR token = ''`, uint64(1<<40), uint8(0), uint8(1), true)
	f.Add(uint8(4), "%$zq$\\'", uint64(0), uint8(5), uint8(2), true)
	f.Add(uint8(6), "\\'--/*", uint64(42), uint8(4), uint8(3), true)
	f.Add(uint8(7), "a\\\nb'", uint64(99999999999), uint8(3), uint8(4), false)
	cache := New(Options{MaxTexts: 50})
	f.Fuzz(func(t *testing.T, tmpl uint8, s string, n uint64, sForm, nForm uint8, off bool) {
		if len(s) > 1<<12 {
			return
		}
		mode := StringsStandard
		if off {
			mode = StringsEscape
		}
		checkPlantedStrings(t, cache, tmpl, s, n, sForm, nForm, mode)
	})
}
