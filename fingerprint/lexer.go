package fingerprint

// This file holds a lexer that splits SQL text into the same tokens as
// PostgreSQL's own scanner (src/backend/parser/scan.l, version 17), under
// either setting of standard_conforming_strings, and a merge of the two
// readings for a text whose setting is not known (see lexStrings). It exists
// because the work done for every new text (statement splitting, literal
// replacement, literal hashing, comment extraction) needs token boundaries
// only, and calling into the C scanner costs several microseconds of
// protobuf round trip per text. lexer_test.go compares it against pg_query's
// scanner token by token, strings_test.go does so with the setting off (the
// scanner reading the text rewritten to E'...' strings) and checks the
// merge, and the fuzz tests keep doing so.

// tokKind classifies a token. The classes are coarser than PostgreSQL's token
// numbers: keywords are words, and all operators and punctuation are ops.
type tokKind uint8

const (
	tkWord       tokKind = iota + 1 // unquoted identifier or keyword
	tkQuoted                        // "quoted identifier" or U&"quoted identifier"
	tkString                        // '...', E'...', U&'...', $tag$...$tag$ (N'...' is a word and a string)
	tkBitString                     // B'...' or X'...'
	tkNumber                        // integer or numeric constant
	tkParam                         // $1
	tkOp                            // operator or punctuation, including ; ( ) , . ::
	tkComment                       // -- comment or /* comment */
	tkBadString                     // string or dollar-quoted string with no closing quote
	tkBadNumber                     // number followed by identifier characters ("trailing junk")
	tkBadQuoted                     // quoted identifier with no closing quote, or ""
	tkBadComment                    // /* comment with no closing */
	tkBadUnicode                    // U&'...' with standard_conforming_strings off, which the server rejects
	tkDisputed                      // with the setting unknown: a stretch the two readings lex differently (lexStrings)
)

// isLiteral reports whether the token carries a literal value.
func (k tokKind) isLiteral() bool {
	switch k {
	case tkString, tkBitString, tkNumber, tkBadString, tkBadNumber, tkBadUnicode, tkDisputed:
		return true
	}
	return false
}

// isBad reports whether PostgreSQL's scanner would reject the token.
func (k tokKind) isBad() bool { return k >= tkBadString }

// token is a half-open byte range [start, end) of the lexed text.
type token struct {
	start, end int32
	kind       tokKind
	read       strRead // for a '...' string (tkString, tkBadString): how its body reads
}

// strRead says how the body of a '...' string token (N'...' included) reads,
// by the session's standard_conforming_strings.
type strRead uint8

const (
	readStandard strRead = iota // as written, '' for a quote (the setting on)
	readEscapes                 // with backslash escapes, as E'...' (the setting off)
	readEither                  // the setting unknown, and the body holds a backslash: its value differs
)

// maxLexLen bounds the texts lex accepts, so that offsets fit in an int32.
// PostgreSQL itself rejects messages over 1 GiB.
const maxLexLen = 1<<31 - 1

// Character classes of the scanner, as bits of charClass (one byte per
// byte value; lexer_test.go checks it against their definitions):
// space [ \t\n\r\f\v]; identifier start [A-Za-z_\x80-\xff]; digit;
// operator characters ~!@#^&|`?+-*/%<>=; identifier continuation, which
// adds digits and $ to the start set.
const (
	classSpace      = 1 << 0
	classIdentStart = 1 << 1
	classDigit      = 1 << 2
	classOp         = 1 << 3
	classIdentCont  = 1 << 4
)

const charClass = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x01\x01\x01\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x01\x08\x00\x08\x10\x08\x08\x00\x00\x00\x08\x08\x00\x08\x00\x08" +
	"\x14\x14\x14\x14\x14\x14\x14\x14\x14\x14\x00\x00\x08\x08\x08\x08" +
	"\x08\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x00\x00\x00\x08\x12" +
	"\x08\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x00\x08\x00\x08\x00" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12" +
	"\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12\x12"

func isSpace(c byte) bool      { return charClass[c]&classSpace != 0 }
func isIdentStart(c byte) bool { return charClass[c]&classIdentStart != 0 }
func isIdentCont(c byte) bool  { return charClass[c]&classIdentCont != 0 }
func isDigit(c byte) bool      { return charClass[c]&classDigit != 0 }
func isOpChar(c byte) bool     { return charClass[c]&classOp != 0 }

// lex appends the tokens of s, read with standard_conforming_strings on, to
// toks and returns them. It never fails: text PostgreSQL would reject yields
// tokens of a bad kind, and an unterminated quote or comment yields one bad
// token that runs to the end of s. Whitespace is not a token. s must be
// shorter than maxLexLen.
func lex(s string, toks []token) []token {
	l := lexer{s: s, toks: toks}
	l.run()
	return l.toks
}

// lexStrings is lex for a session whose standard_conforming_strings is
// mode. With StringsEscape, a '...' string takes backslash escapes as
// E'...' does (its tokens have readEscapes), and U&'...' is tkBadUnicode, as
// the server rejects it. With StringsUnknown, the text is read both ways:
// where the two readings agree, their tokens are kept (a '...' string whose
// body holds a backslash, so that its value differs, has readEither); each
// stretch where they differ, from the first token where they part to the
// first point where both start a token at the same offset again, becomes one
// tkDisputed token, a literal. So every byte that is inside a string
// constant under either reading is inside a literal token. tmp is scratch
// for the second reading; both slices are returned for reuse.
func lexStrings(s string, toks, tmp []token, mode Strings) (out, tmp2 []token) {
	switch mode {
	case StringsStandard:
		return lex(s, toks), tmp
	case StringsEscape:
		l := lexer{s: s, toks: toks, escapes: true, noUnicode: true}
		l.run()
		return l.toks, tmp
	}
	a := lex(s, toks)
	if !backslashInString(s, a) {
		return a, tmp // the two readings agree: only backslashes tell them apart
	}
	l := lexer{s: s, toks: tmp[:0], escapes: true}
	l.run()
	return mergeReadings(s, a, l.toks), l.toks
}

// backslashInString reports whether a '...' string token of toks holds a
// backslash: without one, a text lexes the same under both settings.
func backslashInString(s string, toks []token) bool {
	for _, t := range toks {
		if (t.kind == tkString || t.kind == tkBadString) && s[t.start] == '\'' &&
			indexByte(s[t.start:t.end], '\\') >= 0 {
			return true
		}
	}
	return false
}

// mergeReadings merges a, the tokens of s with standard_conforming_strings
// on, and b, with it off (U&'...' read as with it on), into a, in place, as
// lexStrings describes. The merge only ever writes at or before the token
// of a it reads, so a can hold the result.
//
// Why the stretches end where they do: the lexer keeps no state between
// tokens, so once both readings start a token at the same offset, they go on
// alike until the next '...' string with a backslash. And they do meet
// again: a stretch swallows every token of either reading that starts
// before its end, so after it both readings skip the same spaces to the
// same next token.
func mergeReadings(s string, a, b []token) []token {
	out := a[:0]
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ta, tb := a[i], b[j]
		if ta.start == tb.start && ta.end == tb.end && ta.kind == tb.kind {
			if (ta.kind == tkString || ta.kind == tkBadString) && s[ta.start] == '\'' &&
				indexByte(s[ta.start:ta.end], '\\') >= 0 {
				ta.read = readEither
			}
			out = append(out, ta)
			i++
			j++
			continue
		}
		start := min(ta.start, tb.start)
		end := max(ta.end, tb.end)
		i++
		j++
		for {
			grew := false
			for ; i < len(a) && a[i].start < end; i++ {
				end, grew = max(end, a[i].end), true
			}
			for ; j < len(b) && b[j].start < end; j++ {
				end, grew = max(end, b[j].end), true
			}
			if !grew {
				break
			}
		}
		out = append(out, token{start: start, end: end, kind: tkDisputed})
	}
	// The readings end together (see above); a defensive tail, should one
	// run on alone, is one disputed stretch.
	if i < len(a) || j < len(b) {
		start, end := int32(len(s)), int32(0)
		if i < len(a) {
			start, end = min(start, a[i].start), max(end, a[len(a)-1].end)
		}
		if j < len(b) {
			start, end = min(start, b[j].start), max(end, b[len(b)-1].end)
		}
		out = append(out, token{start: start, end: end, kind: tkDisputed})
	}
	return out
}

// indexByte is strings.IndexByte, written out to keep this file free of imports.
func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

type lexer struct {
	s    string
	toks []token
	// escapes: '...' strings take backslash escapes, as with
	// standard_conforming_strings off. noUnicode: U&'...' strings are
	// rejected, as with it off.
	escapes, noUnicode bool
}

func (l *lexer) emit(start, end int, k tokKind) {
	l.toks = append(l.toks, token{start: int32(start), end: int32(end), kind: k})
}

func (l *lexer) run() {
	s, emit := l.s, l.emit
	n := len(s)
	i := 0
	for i < n {
		c := s[i]
		var next byte
		if i+1 < n {
			next = s[i+1]
		}
		switch {
		case isSpace(c):
			i++
		case c == '-' && next == '-':
			j := lineEnd(s, i+2)
			emit(i, j, tkComment)
			i = j
		case c == '/' && next == '*':
			j, ok := blockCommentEnd(s, i+2)
			if ok {
				emit(i, j, tkComment)
			} else {
				emit(i, j, tkBadComment)
			}
			i = j
		case c == '\'':
			if l.escapes {
				j, ok := quotedEnd(s, i+1, quoteEscape)
				emit(i, j, stringKind(tkString, ok))
				l.toks[len(l.toks)-1].read = readEscapes
				i = j
				break
			}
			j, ok := quotedEnd(s, i+1, quoteStandard)
			emit(i, j, stringKind(tkString, ok))
			i = j
		case (c == 'e' || c == 'E') && next == '\'':
			j, ok := quotedEnd(s, i+2, quoteEscape)
			emit(i, j, stringKind(tkString, ok))
			i = j
		case (c == 'b' || c == 'B' || c == 'x' || c == 'X') && next == '\'':
			j, ok := quotedEnd(s, i+2, quoteBits)
			emit(i, j, stringKind(tkBitString, ok))
			i = j
		case (c == 'u' || c == 'U') && next == '&' && i+2 < n && s[i+2] == '\'':
			j, ok := quotedEnd(s, i+3, quoteStandard)
			if l.noUnicode && ok {
				// "unsafe use of string constant with Unicode escapes":
				// the server stops here. The extent is the one a client
				// that wrote U&'...' meant.
				emit(i, j, tkBadUnicode)
			} else {
				emit(i, j, stringKind(tkString, ok))
			}
			i = j
		case (c == 'u' || c == 'U') && next == '&' && i+2 < n && s[i+2] == '"':
			j, k := quotedIdentEnd(s, i+3)
			emit(i, j, k)
			i = j
		case c == '"':
			j, k := quotedIdentEnd(s, i+1)
			emit(i, j, k)
			i = j
		case c == '$':
			i = l.dollar(i)
		case isIdentStart(c):
			j := i + 1
			for j < n && isIdentCont(s[j]) {
				j++
			}
			emit(i, j, tkWord)
			i = j
		case isDigit(c) || c == '.' && isDigit(next):
			j, k := numberEnd(s, i)
			emit(i, j, k)
			i = j
		case c == '.' && next == '.', c == ':' && (next == ':' || next == '='):
			emit(i, i+2, tkOp)
			i += 2
		case isOpChar(c):
			j := operatorEnd(s, i)
			emit(i, j, tkOp)
			i = j
		default:
			// Punctuation, and any other byte PostgreSQL returns as itself.
			emit(i, i+1, tkOp)
			i++
		}
	}
}

func stringKind(k tokKind, ok bool) tokKind {
	if ok {
		return k
	}
	return tkBadString
}

// lineEnd returns the offset of the first newline at or after i, or len(s).
func lineEnd(s string, i int) int {
	for i < len(s) && s[i] != '\n' && s[i] != '\r' {
		i++
	}
	return i
}

// blockCommentEnd returns the offset just past the */ that closes a comment
// whose opening /* ends at i. Comments nest.
func blockCommentEnd(s string, i int) (int, bool) {
	depth := 0
	for i < len(s) {
		switch {
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*':
			j := i
			for j < len(s) && s[j] == '*' {
				j++
			}
			if j < len(s) && s[j] == '/' {
				if depth == 0 {
					return j + 1, true
				}
				depth--
				j++
			}
			i = j
		default:
			i++
		}
	}
	return len(s), false
}

type quoteMode uint8

const (
	quoteStandard quoteMode = iota // '...': '' is a quote
	quoteEscape                    // E'...': '' and \x are escapes
	quoteBits                      // B'...', X'...': no escapes at all
)

// quotedEnd returns the offset just past the closing quote of a string whose
// opening quote ends at i, following SQL's rule that two string constants
// separated only by whitespace containing a newline are one constant.
func quotedEnd(s string, i int, mode quoteMode) (int, bool) {
	n := len(s)
	for {
		for {
			if i >= n {
				return n, false
			}
			c := s[i]
			if c == '\\' && mode == quoteEscape {
				if i+1 >= n {
					return n, false
				}
				i += 2
				continue
			}
			if c == '\'' {
				if mode != quoteBits && i+1 < n && s[i+1] == '\'' {
					i += 2
					continue
				}
				i++
				break
			}
			i++
		}
		next, ok := continuation(s, i)
		if !ok {
			return i, true
		}
		i = next
	}
}

// continuation reports whether a string constant that ended at i continues
// in a new quoted section, and where that section's text starts. PostgreSQL
// joins constants separated by whitespace that holds a newline; in the
// scanner pg_query builds on, a comment in between ends the constant.
func continuation(s string, i int) (int, bool) {
	newline := false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n' || c == '\r':
			newline = true
		case isSpace(c):
		case c == '\'' && newline:
			return i + 1, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// quotedIdentEnd returns the end of a quoted identifier whose opening quote
// ends at i, and its kind.
func quotedIdentEnd(s string, i int) (int, tokKind) {
	start := i
	for i < len(s) {
		if s[i] == '"' {
			if i+1 < len(s) && s[i+1] == '"' {
				i += 2
				continue
			}
			if i == start {
				return i + 1, tkBadQuoted // zero-length delimited identifier
			}
			return i + 1, tkQuoted
		}
		i++
	}
	return len(s), tkBadQuoted
}

// lexDollar lexes a token starting with '$' at i and returns where it ends.
func (l *lexer) dollar(i int) int {
	s, emit := l.s, l.emit
	n := len(s)
	j := i + 1
	if j < n && isDigit(s[j]) {
		for j < n && isDigit(s[j]) {
			j++
		}
		emit(i, j, tkParam)
		return j
	}
	// Dollar quote delimiter: $$ or $tag$, tag an identifier without '$'.
	if j < n && isIdentStart(s[j]) {
		for j < n && (isIdentStart(s[j]) || isDigit(s[j])) {
			j++
		}
	}
	if j < n && s[j] == '$' {
		delim := s[i : j+1]
		body := j + 1
		if k := indexString(s[body:], delim); k >= 0 {
			end := body + k + len(delim)
			emit(i, end, tkString)
			return end
		}
		emit(i, n, tkBadString)
		return n
	}
	// A lone '$', or "$foo" with no closing '$': PostgreSQL returns the '$'
	// by itself and lexes what follows afresh.
	emit(i, i+1, tkOp)
	return i + 1
}

// indexString is strings.Index, written out to keep this file free of imports.
func indexString(s, sub string) int {
	m := len(sub)
	for i := 0; i+m <= len(s); i++ {
		if s[i] == sub[0] && s[i:i+m] == sub {
			return i
		}
	}
	return -1
}

// numberEnd lexes a numeric constant starting at i (a digit, or '.' followed
// by a digit) and returns its end and kind. Like PostgreSQL, it rejects a
// number run together with identifier characters ("trailing junk"): when an
// identifier could start inside the number and run on past its end, the whole
// run is one bad token.
func numberEnd(s string, i int) (int, tokKind) {
	end, ok := validNumberEnd(s, i)
	if !ok {
		return end, tkBadNumber
	}
	n := len(s)
	if end < n && isIdentCont(s[end]) {
		run := end
		for run > i && isIdentCont(s[run-1]) {
			run--
		}
		for p := run; p <= end; p++ {
			if p < n && isIdentStart(s[p]) {
				if e, ok := validNumberEnd(s[:p], i); p == end || ok && e == p {
					j := p
					for j < n && isIdentCont(s[j]) {
						j++
					}
					if j > end {
						return j, tkBadNumber
					}
					break
				}
			}
		}
	}
	return end, tkNumber
}

// validNumberEnd returns the end of the longest numeric constant starting at
// i, and false when PostgreSQL rejects what it found (1e+ with no digits).
func validNumberEnd(s string, i int) (int, bool) {
	n := len(s)
	digits := func(j int, ok func(byte) bool) int {
		// (_?digit)* after a first digit at j-1
		for j < n {
			if ok(s[j]) {
				j++
				continue
			}
			if s[j] == '_' && j+1 < n && ok(s[j+1]) {
				j += 2
				continue
			}
			break
		}
		return j
	}
	if s[i] == '0' && i+1 < n {
		var ok func(byte) bool
		switch s[i+1] {
		case 'x', 'X':
			ok = func(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
		case 'o', 'O':
			ok = func(c byte) bool { return c >= '0' && c <= '7' }
		case 'b', 'B':
			ok = func(c byte) bool { return c == '0' || c == '1' }
		}
		if ok != nil {
			j := i + 2
			if j < n && s[j] == '_' {
				j++
			}
			if j < n && ok(s[j]) {
				return digits(j+1, ok), true
			}
			// 0x with no digits: the number is "0", and the 'x' that
			// follows makes it trailing junk.
			return i + 1, true
		}
	}
	j := i
	if s[j] != '.' {
		j = digits(j+1, isDigit)
		if j+1 < n && s[j] == '.' && s[j+1] == '.' {
			return j, true // 1..10 is 1, .., 10
		}
	}
	if j < n && s[j] == '.' {
		j++
		if j < n && isDigit(s[j]) {
			j = digits(j+1, isDigit)
		}
	}
	if j < n && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < n && (s[k] == '+' || s[k] == '-') {
			k++
			if k >= n || !isDigit(s[k]) {
				return k, false // "trailing junk after numeric literal"
			}
		}
		if k < n && isDigit(s[k]) {
			j = digits(k+1, isDigit)
		}
	}
	return j, true
}

// operatorEnd returns the end of an operator starting at i, following
// PostgreSQL's rules: an operator stops before an embedded comment start,
// and a multi-character operator may end in + or - only if it contains one
// of ~ ! @ # ^ & | ` ? %.
func operatorEnd(s string, i int) int {
	j := i
	for j < len(s) && isOpChar(s[j]) {
		if j > i && (s[j] == '*' && s[j-1] == '/' || s[j] == '-' && s[j-1] == '-') {
			j--
			break
		}
		j++
	}
	if j-i > 1 && (s[j-1] == '+' || s[j-1] == '-') {
		special := false
		for k := i; k < j-1; k++ {
			switch s[k] {
			case '~', '!', '@', '#', '^', '&', '|', '`', '?', '%':
				special = true
			}
		}
		if !special {
			for j-i > 1 && (s[j-1] == '+' || s[j-1] == '-') {
				j--
			}
		}
	}
	return j
}
