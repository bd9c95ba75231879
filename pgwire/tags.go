package pgwire

import (
	"bytes"
	"math"
)

// txCommand reports the tags of transaction-control commands.
func txCommand(cmd string) bool {
	switch cmd {
	case "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
		"PREPARE TRANSACTION":
		return true
	}
	return false
}

// parseTag splits a CommandComplete tag into its command words and the row
// count, its last number ("INSERT 0 5" is INSERT, 5; "BEGIN" is BEGIN, -1).
func parseTag(tag []byte) (string, int64) {
	rows := int64(-1)
	end := len(tag)
	for {
		i := bytes.LastIndexByte(tag[:end], ' ')
		if i < 0 {
			break
		}
		n, ok := parseCount(tag[i+1 : end])
		if !ok {
			break
		}
		if rows < 0 {
			rows = n
		}
		end = i
	}
	return internCommand(tag[:end]), rows
}

func parseCount(w []byte) (int64, bool) {
	if len(w) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range w {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-9)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// internCommand returns common tags without allocating.
func internCommand(b []byte) string {
	switch string(b) {
	case "SELECT":
		return "SELECT"
	case "INSERT":
		return "INSERT"
	case "UPDATE":
		return "UPDATE"
	case "DELETE":
		return "DELETE"
	case "MERGE":
		return "MERGE"
	case "COPY":
		return "COPY"
	case "FETCH":
		return "FETCH"
	case "MOVE":
		return "MOVE"
	case "BEGIN":
		return "BEGIN"
	case "COMMIT":
		return "COMMIT"
	case "ROLLBACK":
		return "ROLLBACK"
	case "SET":
		return "SET"
	case "SHOW":
		return "SHOW"
	case "SAVEPOINT":
		return "SAVEPOINT"
	case "RELEASE":
		return "RELEASE"
	case "DEALLOCATE":
		return "DEALLOCATE"
	case "DEALLOCATE ALL":
		return "DEALLOCATE ALL"
	case "DISCARD ALL":
		return "DISCARD ALL"
	case "LISTEN":
		return "LISTEN"
	case "NOTIFY":
		return "NOTIFY"
	case "CALL":
		return "CALL"
	case "DO":
		return "DO"
	case "LOCK TABLE":
		return "LOCK TABLE"
	case "RESET":
		return "RESET"
	}
	return string(b)
}

// deallocateTarget returns the statement named by SQL text that is exactly one
// DEALLOCATE [PREPARE] name statement. Other texts (several statements) are
// not understood: the stale entry is harmless, it is replaced by the next
// Parse of that name or evicted.
func deallocateTarget(sql string) (string, bool) {
	s := skipBlank(sql)
	if !hasPrefixFold(s, "deallocate") {
		return "", false
	}
	s = s[len("deallocate"):]
	if s == "" || !(isBlank(s[0]) || s[0] == '"' || s[0] == '/' || s[0] == '-') {
		return "", false
	}
	s = skipBlank(s)
	if hasPrefixFold(s, "prepare") {
		if rest := s[len("prepare"):]; rest == "" || isBlank(rest[0]) || rest[0] == '"' || rest[0] == '/' || rest[0] == '-' {
			if r := skipBlank(rest); r != "" && r[0] != ';' {
				s = r
			}
		}
	}
	var name []byte
	switch {
	case s == "":
		return "", false
	case s[0] == '"':
		i := 1
		for ; ; i++ {
			if i >= len(s) {
				return "", false
			}
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					name = append(name, '"')
					i++
					continue
				}
				break
			}
			name = append(name, s[i])
		}
		s = s[i+1:]
	default:
		i := 0
		for ; i < len(s) && isIdentByte(s[i]); i++ {
			c := s[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name = append(name, c)
		}
		if i == 0 {
			return "", false
		}
		s = s[i:]
	}
	s = skipBlank(s)
	if s != "" && s[0] == ';' {
		s = skipBlank(s[1:])
	}
	if s != "" || len(name) == 0 {
		return "", false
	}
	if len(name) > maxNameBytes {
		name = name[:maxNameBytes]
	}
	return string(name), true
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// skipBlank skips white space and comments (-- to end of line, nested /* */).
func skipBlank(s string) string {
	for {
		switch {
		case s != "" && isBlank(s[0]):
			s = s[1:]
		case len(s) >= 2 && s[0] == '-' && s[1] == '-':
			if i := indexByteString(s, '\n'); i >= 0 {
				s = s[i+1:]
			} else {
				s = ""
			}
		case len(s) >= 2 && s[0] == '/' && s[1] == '*':
			depth, i := 1, 2
			for i < len(s) && depth > 0 {
				switch {
				case i+1 < len(s) && s[i] == '/' && s[i+1] == '*':
					depth++
					i += 2
				case i+1 < len(s) && s[i] == '*' && s[i+1] == '/':
					depth--
					i += 2
				default:
					i++
				}
			}
			s = s[i:]
		default:
			return s
		}
	}
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}
