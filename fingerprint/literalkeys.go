package fingerprint

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nplus1/nplus1/internal/fnv1a"
	"github.com/nplus1/nplus1/internal/valuekey"
)

// This file reads the values of a statement's literals, as the server will
// see them, and keys them with internal/valuekey: the detector looks for the
// keys of a repeated simple-protocol query among the values of an earlier
// result. Only digests leave this file.
//
// What the server sees is what PostgreSQL 17's scanner and grammar make of
// the text with the session's standard_conforming_strings (a '...' string
// read with escapes, readEscapes, decodes as E'...'; one whose value depends
// on a setting that is not known, readEither, has no key) and UTF-8 as the
// server encoding. Whatever this file cannot decode exactly gets
// valuekey.None: a wrong key could make the detector match keys that are not
// there.

// MaxLiteralKeys is the most LiteralKeys a statement has: the keys of its
// first MaxLiteralKeys literals. A statement with more (an IN list of
// thousands of inlined ids) costs no more than 8 KiB of keys.
const MaxLiteralKeys = 1024

// maxUnquoted bounds the unquoted text of a U&'...' string before its
// Unicode escapes are decoded: an escape is at most eight bytes for one
// character, so a value of valuekey.MaxValueBytes fits.
const maxUnquoted = 8 * valuekey.MaxValueBytes

// readLiterals hashes the literal tokens of a statement as written (0 when
// it has none; see Statement.LiteralsHash) and appends the keys of its
// first MaxLiteralKeys literals to keys, one per literal in order.
func readLiterals(sql string, toks []token, keys []valuekey.Key) (uint64, []valuekey.Key) {
	h, n := fnv1a.Offset, 0
	for i, t := range toks {
		if !isLiteralAt(sql, toks, i) {
			continue
		}
		h = hashLen(h, int(t.end-t.start))
		h = fnv1a.Add(h, sql[t.start:t.end])
		if n < MaxLiteralKeys {
			keys = append(keys, literalKey(sql, toks, i))
		}
		n++
	}
	switch {
	case n == 0:
		return 0, keys
	case h == 0:
		return 1, keys
	}
	return h, keys
}

// literalKey is the key of the literal toks[i] (see Statement.LiteralKeys).
func literalKey(sql string, toks []token, i int) valuekey.Key {
	t := toks[i]
	text := sql[t.start:t.end]
	switch t.kind {
	case tkNumber:
		neg, ok := numberSign(sql, toks, i)
		if !ok {
			return valuekey.None
		}
		return numberKey(text, neg)
	case tkString:
		return stringKey(sql, toks, i)
	}
	// TRUE and FALSE, B'...' and X'...', and tokens the server rejects.
	return valuekey.None
}

// numberSign reports whether the number toks[i] is negative: whether the
// '-' signs right before it fold into the constant, as PostgreSQL's grammar
// does with a unary minus (doNegate), rather than subtract. A '-' is a sign
// where an operand starts (operandStart), and subtracts after a literal, a
// parameter, an identifier, ')', ']' or t.*. In a run of them, "- -8", all
// but the first are signs. ok is false when it cannot tell.
func numberSign(sql string, toks []token, i int) (neg, ok bool) {
	k := 0
	for k < i && isOp(sql, toks[i-k-1], "-") {
		k++
	}
	if k == 0 {
		return false, true
	}
	start, ok := operandStart(sql, toks, i-k, 0)
	if !start {
		k-- // the first subtracts
	}
	return k%2 == 1, ok
}

// operandStart reports whether toks[j] stands where an operand starts, by
// what precedes it: nothing, an operator or punctuation other than ')' and
// ']' (and the * of t.*), or a keyword that an operand follows and that is
// not a column name (signKeyword), or BETWEEN and BY where they are not
// column names either. ok is false when it cannot tell: BETWEEN is a
// column or the operator according to what precedes it, which may be
// BETWEEN again; past maxBetween of them, it gives up.
func operandStart(sql string, toks []token, j, depth int) (start, ok bool) {
	if j == 0 {
		return true, true
	}
	p := toks[j-1]
	switch p.kind {
	case tkOp:
		if isOp(sql, p, "*") && j >= 2 && isOp(sql, toks[j-2], ".") {
			return false, true // t.* - 8
		}
		return !isOp(sql, p, ")") && !isOp(sql, p, "]"), true
	case tkWord:
		if j >= 2 && isOp(sql, toks[j-2], ".") {
			return false, true // t.limit - 8: a column
		}
		switch {
		case isWord(sql, p, "by"):
			// ORDER BY -1, or a column named by.
			return j >= 2 && (isWord(sql, toks[j-2], "order") || isWord(sql, toks[j-2], "group") ||
				isWord(sql, toks[j-2], "partition")), true
		case isWord(sql, p, "between"):
			// The operator, x [NOT] BETWEEN -1 AND 1, or a column named
			// between: the operator does not start an operand.
			if depth == maxBetween {
				return false, false
			}
			k := j - 1
			if k >= 1 && isWord(sql, toks[k-1], "not") {
				k--
			}
			start, ok := operandStart(sql, toks, k, depth+1)
			return !start, ok
		}
		return signKeyword(sql[p.start:p.end]), true
	}
	return false, true
}

// maxBetween bounds the BETWEENs operandStart looks back through, and so
// its recursion, whatever the text.
const maxBetween = 8

// signKeyword reports whether w is a keyword after which an operand
// starts: a reserved keyword (which is never a column name) that an
// expression can follow.
func signKeyword(w string) bool {
	if len(w) > len("returning") {
		return false
	}
	var lower [len("returning")]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower[:len(w)]) {
	case "select", "where", "and", "or", "not", "case", "when", "then", "else",
		"limit", "offset", "having", "on", "symmetric", "like", "ilike",
		"in", "any", "some", "all", "distinct", "array", "from", "for",
		"to", "default", "returning":
		return true
	}
	return false
}

// numberKey is the key of a numeric constant, negated when neg: the value
// as the server prints it. Integers in any notation (42, 0042, 1_000, 0x2A,
// 0o52, 0b101010) are keyed as the integer they are (valuekey.Text of their
// decimal text), as an int4, int8 or numeric column's value is; hexadecimal, octal and binary integers of
// more than 64 bits get None. A decimal fraction is keyed as numeric prints
// it: 007.50 as 7.50, .5 as 0.5, 5. as 5. A number with an exponent (1e3)
// gets None.
func numberKey(text string, neg bool) valuekey.Key {
	var buf [valuekey.MaxValueBytes + 1]byte
	b := buf[:0]
	if len(text) > 2 && text[0] == '0' && (text[1]|0x20 == 'x' || text[1]|0x20 == 'o' || text[1]|0x20 == 'b') {
		u, ok := parsePrefixed(text)
		if !ok {
			return valuekey.None
		}
		if neg && u != 0 {
			b = append(b, '-')
		}
		return valuekey.Text(strconv.AppendUint(b, u, 10))
	}
	if neg {
		b = append(b, '-')
	}
	intDigits, point, nonzero := 0, false, false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '_':
			continue
		case c == 'e' || c == 'E':
			return valuekey.None
		case c == '.':
			if intDigits == 0 {
				b = append(b, '0')
			}
			b = append(b, '.')
			point = true
			continue
		case c == '0' && !point && intDigits == 0:
			continue // a leading zero
		}
		if !point {
			intDigits++
		}
		nonzero = nonzero || c != '0'
		if len(b) > valuekey.MaxValueBytes {
			return valuekey.None
		}
		b = append(b, c)
	}
	switch {
	case !point && intDigits == 0:
		b = append(b, '0') // 0, 000
	case point && b[len(b)-1] == '.':
		b = b[:len(b)-1] // 5. is 5
	}
	if neg && !nonzero {
		b = b[1:] // numeric has no negative zero: -0.0 is 0.0
	}
	return valuekey.Text(b)
}

// parsePrefixed parses a hexadecimal, octal or binary integer literal
// (0x2A, 0o52, 0b101010, with underscores) that fits in 64 bits.
func parsePrefixed(s string) (uint64, bool) {
	shift := uint(4)
	switch s[1] | 0x20 {
	case 'o':
		shift = 3
	case 'b':
		shift = 1
	}
	var u uint64
	digits := 0
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			continue
		}
		if !isHex(c) {
			return 0, false
		}
		d := uint64(hexVal(c))
		if d >= 1<<shift || u>>(64-shift) != 0 {
			return 0, false
		}
		u = u<<shift | d
		digits++
	}
	return u, digits > 0
}

// stringKey is the key of the string constant toks[i]: its value after
// unquoting, for '...', E'...', U&'...' (with or without UESCAPE) and
// dollar quotes. A value that is not valid UTF-8 or holds a NUL byte, which
// the server rejects, gets None, as does the escape character after
// UESCAPE, which is no value.
func stringKey(sql string, toks []token, i int) valuekey.Key {
	t := toks[i]
	text := sql[t.start:t.end]
	var buf [valuekey.MaxValueBytes]byte
	var n int
	ok := false
	switch text[0] {
	case '\'':
		if i > 1 && isWord(sql, toks[i-1], "uescape") {
			if u := toks[i-2]; (u.kind == tkString || u.kind == tkQuoted || u.kind == tkBadUnicode) && sql[u.start]|0x20 == 'u' {
				return valuekey.None // the escape character of U&'...' or U&"..."
			}
		}
		body := text[1 : len(text)-1]
		switch {
		case t.read == readEither && strings.IndexByte(body, '\\') >= 0:
			// The setting is unknown and the value depends on it.
			return valuekey.None
		case t.read == readEscapes:
			// standard_conforming_strings off: read as E'...'.
			if strings.IndexByte(body, '\'') < 0 && strings.IndexByte(body, '\\') < 0 {
				return plainKey(body)
			}
			n, ok = unquote(text[1:], buf[:], true)
		case strings.IndexByte(body, '\'') < 0:
			return plainKey(body) // the common case: the value as written
		default:
			n, ok = unquote(text[1:], buf[:], false)
		}
	case 'e', 'E':
		if body := text[2 : len(text)-1]; strings.IndexByte(body, '\'') < 0 && strings.IndexByte(body, '\\') < 0 {
			return plainKey(body)
		}
		n, ok = unquote(text[2:], buf[:], true)
	case 'u', 'U':
		esc := byte('\\')
		if i+1 < len(toks) && isWord(sql, toks[i+1], "uescape") {
			if i+2 >= len(toks) || toks[i+2].kind != tkString {
				return valuekey.None
			}
			e := sql[toks[i+2].start:toks[i+2].end]
			if len(e) != 3 || e[0] != '\'' || !uescapeChar(e[1]) {
				return valuekey.None
			}
			esc = e[1]
		}
		var raw [maxUnquoted]byte
		m, ok1 := unquote(text[3:], raw[:], false)
		if !ok1 {
			return valuekey.None
		}
		n, ok = unescapeUnicode(raw[:m], esc, buf[:])
	case '$':
		open := 1
		for open < len(text) && text[open] != '$' {
			open++
		}
		open++ // length of $tag$
		if len(text) < 2*open {
			return valuekey.None // the lexer makes no such token
		}
		return plainKey(text[open : len(text)-open])
	}
	if !ok || !validValue(buf[:n]) {
		return valuekey.None
	}
	return valuekey.Text(buf[:n])
}

// plainKey is the key of a string value written as is: a text holds no
// NUL byte (analyze cuts it at the first), so only UTF-8 is checked.
func plainKey(v string) valuekey.Key {
	if len(v) > valuekey.MaxValueBytes || !utf8.ValidString(v) {
		return valuekey.None
	}
	return valuekey.String(v)
}

// validValue reports whether b is a string value the server accepts:
// valid UTF-8 without NUL bytes.
func validValue(b []byte) bool {
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return utf8.Valid(b)
}

// uescapeChar reports whether c may follow UESCAPE (check_uescapechar).
func uescapeChar(c byte) bool {
	return !isHex(c) && c != '+' && c != '\'' && c != '"' && !isSpace(c)
}

// unquote writes into out the value of a quoted string whose opening quote
// ends where body starts and which runs to the end of body: two quotes
// stand for one, and a quote followed by whitespace and another quote
// continues the string (the lexer only joins sections a newline separates).
// With escapes, backslash escapes are decoded as in E'...'. It returns the
// value's length, and false when the value does not fit in out or holds an
// escape the server rejects.
func unquote(body string, out []byte, escapes bool) (int, bool) {
	n := 0
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '\'' && i+1 < len(body) && body[i+1] == '\'':
			i += 2 // '' stands for one quote
		case c == '\'':
			// The end of a section: whitespace, then the next one's quote.
			i++
			for i < len(body) && body[i] != '\'' {
				i++
			}
			i++
			continue
		case c == '\\' && escapes:
			var r rune
			var ok bool
			r, i, ok = backslashEscape(body, i)
			if !ok {
				return 0, false
			}
			if r < 0 {
				c = byte(-r - 1) // a byte, not a character
				break
			}
			if n+utf8.RuneLen(r) > len(out) {
				return 0, false
			}
			n += utf8.EncodeRune(out[n:], r)
			continue
		default:
			i++
		}
		if n == len(out) {
			return 0, false
		}
		out[n] = c
		n++
	}
	return n, true
}

// backslashEscape decodes the escape at body[i] (a backslash) of an E'...'
// string, as PostgreSQL's scanner does, and returns where it ends. A
// Unicode escape gives a character r >= 0; every other escape gives a byte
// c as r = -c-1. ok is false for an escape the server rejects: \u or \U
// without enough hex digits, a code point out of range, or a surrogate not
// in a pair.
func backslashEscape(body string, i int) (r rune, end int, ok bool) {
	if i+1 >= len(body) {
		return 0, 0, false // the lexer never ends an E'...' string so
	}
	c := body[i+1]
	switch c {
	case 'b':
		return -'\b' - 1, i + 2, true
	case 'f':
		return -'\f' - 1, i + 2, true
	case 'n':
		return -'\n' - 1, i + 2, true
	case 'r':
		return -'\r' - 1, i + 2, true
	case 't':
		return -'\t' - 1, i + 2, true
	case 'v':
		return -'\v' - 1, i + 2, true
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v, j := 0, i+1
		for ; j < i+4 && j < len(body) && body[j] >= '0' && body[j] <= '7'; j++ {
			v = v<<3 | int(body[j]-'0')
		}
		return -rune(byte(v)) - 1, j, true // \777 is truncated to a byte, as strtoul to unsigned char
	case 'x':
		j := i + 2
		if j >= len(body) || !isHex(body[j]) {
			return -'x' - 1, i + 2, true // \x without digits is x
		}
		v := hexVal(body[j])
		j++
		if j < len(body) && isHex(body[j]) {
			v = v<<4 | hexVal(body[j])
			j++
		}
		return -rune(v) - 1, j, true
	case 'u', 'U':
		cp, j, ok := hexEscape(body, i)
		if !ok || cp <= 0 || cp > 0x10FFFF || isSurrogateLow(cp) {
			return 0, 0, false
		}
		if isSurrogateHigh(cp) {
			// Must be followed at once by the low half, \uXXXX or \UXXXXXXXX.
			if j+1 >= len(body) || body[j] != '\\' || body[j+1] != 'u' && body[j+1] != 'U' {
				return 0, 0, false
			}
			lo, k, ok := hexEscape(body, j)
			if !ok || !isSurrogateLow(lo) {
				return 0, 0, false
			}
			return (cp-0xD800)<<10 + (lo - 0xDC00) + 0x10000, k, true
		}
		return cp, j, true
	}
	return -rune(c) - 1, i + 2, true
}

// hexEscape reads \uXXXX or \UXXXXXXXX at body[i].
func hexEscape(body string, i int) (rune, int, bool) {
	digits := 4
	if body[i+1] == 'U' {
		digits = 8
	}
	j := i + 2
	if j+digits > len(body) {
		return 0, 0, false
	}
	var v rune
	for k := j; k < j+digits; k++ {
		if !isHex(body[k]) {
			return 0, 0, false
		}
		v = v<<4 | rune(hexVal(body[k]))
	}
	return v, j + digits, true
}

func isSurrogateHigh(r rune) bool { return r >= 0xD800 && r <= 0xDBFF }
func isSurrogateLow(r rune) bool  { return r >= 0xDC00 && r <= 0xDFFF }

// unescapeUnicode decodes the Unicode escapes of a U&'...' string's value,
// as str_udeescape does: esc esc is esc, esc XXXX and esc +XXXXXX a code
// point, surrogates in pairs. It returns false for anything the server
// rejects, or a value that does not fit in out.
func unescapeUnicode(in []byte, esc byte, out []byte) (int, bool) {
	n := 0
	var high rune
	for i := 0; i < len(in); {
		if in[i] != esc {
			if high != 0 || n == len(out) {
				return 0, false
			}
			out[n] = in[i]
			n++
			i++
			continue
		}
		if i+1 < len(in) && in[i+1] == esc {
			if high != 0 || n == len(out) {
				return 0, false
			}
			out[n] = esc
			n++
			i += 2
			continue
		}
		j, digits := i+1, 4
		if j < len(in) && in[j] == '+' {
			j, digits = j+1, 6
		}
		if j+digits > len(in) {
			return 0, false
		}
		var cp rune
		for k := j; k < j+digits; k++ {
			if !isHex(in[k]) {
				return 0, false
			}
			cp = cp<<4 | rune(hexVal(in[k]))
		}
		i = j + digits
		if cp == 0 || cp > 0x10FFFF {
			return 0, false
		}
		switch {
		case high != 0:
			if !isSurrogateLow(cp) {
				return 0, false
			}
			cp = (high-0xD800)<<10 + (cp - 0xDC00) + 0x10000
			high = 0
		case isSurrogateLow(cp):
			return 0, false
		case isSurrogateHigh(cp):
			high = cp
			continue
		}
		if n+utf8.RuneLen(cp) > len(out) {
			return 0, false
		}
		n += utf8.EncodeRune(out[n:], cp)
	}
	return n, high == 0
}
