package recording

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// A scanner reads one JSON line. It is written for the recording format:
// strings are returned as byte slices of the line, or of the arena when
// they hold escapes, so that a line costs no allocation. The arena is sized
// to the line before scanning, and an unescaped string is never longer than
// its escaped form, so it never moves while a line is scanned.
type scanner struct {
	b     []byte
	i     int
	arena []byte
	depth int
}

var errSyntax = errors.New("invalid JSON")

// maxDepth bounds nesting in values that are skipped.
const maxDepth = 64

func (s *scanner) reset(line []byte) {
	s.b, s.i, s.depth = line, 0, 0
	if cap(s.arena) < len(line) {
		s.arena = make([]byte, 0, len(line))
	}
	s.arena = s.arena[:0]
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-blank byte, 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) && s.b[s.i] > ' ' { // the Writer writes no blanks
		return s.b[s.i]
	}
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

// str reads a JSON string.
func (s *scanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	s.i++
	start := s.i
	s.i += special(s.b[s.i:])
	if s.i >= len(s.b) {
		return nil, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		v := s.b[start:s.i]
		s.i++
		return v, true
	case c == '\\':
		return s.strEscaped(start)
	}
	return nil, false // a control character
}

// Masks for special: every byte 0x01, 0x80, or the byte the word is
// compared with.
const (
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	quotes = '"' * ones
	slashs = '\\' * ones
	blanks = 0x20 * ones
)

// special returns the index of the first quote, backslash or control
// character in b, len(b) when there is none. Most of a recording's bytes
// are in strings, so it tests eight bytes at a time: a byte of x is zero
// exactly where x^quotes has a zero byte, and x-0x20 borrows exactly where
// a byte is below 0x20; the lowest flagged byte is always a true one (a
// borrow only flags bytes above it).
func special(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^quotes, x^slashs
		m := ((q - ones) &^ q) | ((bs - ones) &^ bs) | ((x - blanks) &^ x)
		if m &= highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return len(b)
}

func (s *scanner) strEscaped(start int) ([]byte, bool) {
	a0 := len(s.arena)
	s.arena = append(s.arena, s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.arena[a0:len(s.arena):len(s.arena)], true
		case c < 0x20:
			return nil, false
		case c != '\\':
			s.arena = append(s.arena, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return nil, false
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			s.arena = append(s.arena, e)
		case 'b':
			s.arena = append(s.arena, '\b')
		case 'f':
			s.arena = append(s.arena, '\f')
		case 'n':
			s.arena = append(s.arena, '\n')
		case 'r':
			s.arena = append(s.arena, '\r')
		case 't':
			s.arena = append(s.arena, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(utf8.RuneError)
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					save := s.i
					s.i += 2
					if lo, ok := s.hex4(); ok {
						r2 = utf16.DecodeRune(r, lo)
					}
					if r2 == utf8.RuneError {
						s.i = save
					}
				}
				r = r2
			}
			s.arena = utf8.AppendRune(s.arena, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	s.i += 4
	return r, true
}

// literal reads a number, true, false or null and returns its text.
func (s *scanner) literal() ([]byte, bool) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			break
		}
		if c == '"' || c == '{' || c == '[' || c == ':' {
			return nil, false
		}
		s.i++
	}
	if s.i == start {
		return nil, false
	}
	return s.b[start:s.i], true
}

func (s *scanner) int() (int64, bool) {
	lit, ok := s.literal()
	if !ok {
		return 0, false
	}
	if n, ok := smallInt(lit); ok {
		return n, true
	}
	if n, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || f != f || f > 9.2e18 || f < -9.2e18 {
		return 0, false
	}
	return int64(f), true
}

// smallInt parses the integers a Writer writes (up to 18 digits, no sign
// but a minus) without strconv's generality.
func smallInt(b []byte) (int64, bool) {
	neg := len(b) > 1 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func (s *scanner) bool() (bool, bool) {
	lit, ok := s.literal()
	switch {
	case !ok:
		return false, false
	case string(lit) == "true":
		return true, true
	case string(lit) == "false", string(lit) == "null":
		return false, true
	}
	return false, false
}

// skip skips one value of any kind.
func (s *scanner) skip() bool {
	switch s.peek() {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		if s.depth >= maxDepth {
			return false
		}
		s.depth++
		defer func() { s.depth-- }()
		open := s.b[s.i]
		s.i++
		if open == '{' {
			return s.object(func([]byte) bool { return s.skip() })
		}
		if s.expect(']') {
			return true
		}
		for {
			if !s.skip() {
				return false
			}
			if s.expect(']') {
				return true
			}
			if !s.expect(',') {
				return false
			}
		}
	default:
		_, ok := s.literal()
		return ok
	}
}

// object reads the members of an object whose '{' was read, calling field
// for each key with the scanner before its value.
func (s *scanner) object(field func(key []byte) bool) bool {
	if s.expect('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.expect(':') || !field(key) {
			return false
		}
		if s.expect('}') {
			return true
		}
		if !s.expect(',') {
			return false
		}
	}
}

// decodeHexValue decodes a "\x..." parameter into the arena.
func (s *scanner) decodeHexValue(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '\\' || v[1] != 'x' || len(v)%2 != 0 {
		return nil, false
	}
	a0 := len(s.arena)
	if cap(s.arena)-a0 < (len(v)-2)/2 {
		// Cannot happen with an arena sized to the line; be safe.
		return nil, false
	}
	out, err := hex.AppendDecode(s.arena, v[2:])
	if err != nil {
		return nil, false
	}
	s.arena = out
	return out[a0:len(out):len(out)], true
}

// parseTime reads an RFC 3339 time, fast for the UTC form the Writer writes.
func parseTime(b []byte) (time.Time, bool) {
	// 2006-01-02T15:04:05[.frac](Z|±hh:mm)
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && (b[10] == 'T' || b[10] == ' ') && b[13] == ':' && b[16] == ':' {
		year, ok1 := digits(b[0:4])
		mon, ok2 := digits(b[5:7])
		day, ok3 := digits(b[8:10])
		hh, ok4 := digits(b[11:13])
		mm, ok5 := digits(b[14:16])
		ss, ok6 := digits(b[17:19])
		i := 19
		nsec := 0
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hh < 24 && mm < 60 && ss < 61 {
			if i < len(b) && b[i] == '.' {
				i++
				scale := 100000000
				start := i
				for i < len(b) && b[i] >= '0' && b[i] <= '9' {
					if i-start < 9 {
						nsec += int(b[i]-'0') * scale
						scale /= 10
					}
					i++
				}
				if i == start {
					return time.Time{}, false
				}
			}
			if i == len(b)-1 && b[i] == 'Z' {
				sec := daysFromCivil(year, mon, day)*86400 + int64(hh*3600+mm*60+ss)
				return time.Unix(sec, int64(nsec)).UTC(), true
			}
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t, err == nil
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysFromCivil is the number of days from 1970-01-01 to y-m-d (proleptic
// Gregorian), after Howard Hinnant's algorithm.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
