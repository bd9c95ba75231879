package detector

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Ignore is one safelist entry: findings it matches are dropped (and counted
// in Stats.Ignored). The zero Ignore matches nothing.
//
// Its text form, accepted by ParseIgnore and produced by String, is
// "what:value":
//
//	fingerprint:0a1b2c3d4e5f6789   the finding's fingerprint (16 hex digits)
//	query:^SELECT .* FROM pg_      a Go regexp over the normalized query
//	table:schema_migrations        a table the query touches; an unqualified
//	                               name matches it in any schema, a qualified
//	                               one only in that schema (case-insensitive,
//	                               double quotes ignored)
//	app:healthcheck                the connection's application_name, exactly
type Ignore struct {
	what  string
	value string         // normalized: lower-case hex, unquoted lower-case table name
	re    *regexp.Regexp // for query
}

// The kinds of Ignore entry.
const (
	ignoreFingerprint = "fingerprint"
	ignoreQuery       = "query"
	ignoreTable       = "table"
	ignoreApp         = "app"
)

// errIgnoreSyntax is wrapped by every ParseIgnore error about the overall form.
var errIgnoreSyntax = errors.New("want fingerprint:HEX, query:REGEXP, table:NAME or app:NAME")

// ParseIgnore parses one safelist entry such as "table:schema_migrations".
func ParseIgnore(s string) (Ignore, error) {
	what, value, ok := strings.Cut(s, ":")
	what = strings.TrimSpace(what)
	if !ok {
		return Ignore{}, fmt.Errorf("ignore %q: missing ':': %w", s, errIgnoreSyntax)
	}
	if value == "" {
		return Ignore{}, fmt.Errorf("ignore %q: empty %s: %w", s, what, errIgnoreSyntax)
	}
	switch what {
	case ignoreFingerprint:
		hex := strings.ToLower(strings.TrimSpace(value))
		if len(hex) != 16 || strings.Trim(hex, "0123456789abcdef") != "" {
			return Ignore{}, fmt.Errorf("ignore %q: fingerprint must be 16 hex digits, as printed in findings", s)
		}
		return Ignore{what: what, value: hex}, nil
	case ignoreQuery:
		re, err := regexp.Compile(value)
		if err != nil {
			return Ignore{}, fmt.Errorf("ignore %q: bad query regexp: %w", s, err)
		}
		return Ignore{what: what, value: value, re: re}, nil
	case ignoreTable:
		name := strings.TrimSpace(normTable(value))
		if name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") {
			return Ignore{}, fmt.Errorf("ignore %q: bad table name", s)
		}
		return Ignore{what: what, value: name}, nil
	case ignoreApp:
		return Ignore{what: what, value: value}, nil
	}
	return Ignore{}, fmt.Errorf("ignore %q: unknown kind %q: %w", s, what, errIgnoreSyntax)
}

// MustParseIgnore is ParseIgnore for constants in code and tests; it panics on error.
func MustParseIgnore(s string) Ignore {
	ig, err := ParseIgnore(s)
	if err != nil {
		panic(err)
	}
	return ig
}

// String returns the entry's text form, which ParseIgnore accepts.
func (ig Ignore) String() string {
	if ig.what == "" {
		return ""
	}
	return ig.what + ":" + ig.value
}

// MarshalText implements encoding.TextMarshaler.
func (ig Ignore) MarshalText() ([]byte, error) { return []byte(ig.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseIgnore, so an
// Ignore can be a flag (flag.TextVar) or a YAML/JSON string.
func (ig *Ignore) UnmarshalText(b []byte) error {
	v, err := ParseIgnore(string(b))
	if err != nil {
		return err
	}
	*ig = v
	return nil
}

// Match reports whether the entry drops f.
func (ig Ignore) Match(f *Finding) bool {
	switch ig.what {
	case ignoreFingerprint:
		return f.Fingerprint == ig.value
	case ignoreQuery:
		return ig.re.MatchString(f.Query)
	case ignoreTable:
		qualified := strings.Contains(ig.value, ".")
		for _, t := range f.Tables {
			t = normTable(t)
			if t == ig.value {
				return true
			}
			if !qualified {
				if i := strings.LastIndexByte(t, '.'); i >= 0 && t[i+1:] == ig.value {
					return true
				}
			}
		}
		return false
	case ignoreApp:
		return f.Connection.ApplicationName == ig.value
	}
	return false
}

// normTable lower-cases a possibly qualified table name and drops double quotes.
func normTable(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, `"`, ""))
}

// sameNorm reports whether normTable(a) == normTable(b), without writing
// either when both are ASCII (the rules compare table names per candidate
// source).
func sameNorm(a, b string) bool {
	if !plainASCII(a) || !plainASCII(b) {
		return normTable(a) == normTable(b)
	}
	i, j := 0, 0
	for {
		for i < len(a) && a[i] == '"' {
			i++
		}
		for j < len(b) && b[j] == '"' {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		if lowerASCII(a[i]) != lowerASCII(b[j]) {
			return false
		}
		i++
		j++
	}
}

// foldedPrefix reports whether normTable(s) starts with prefix, a
// lower-case ASCII string; s must be ASCII (plainASCII).
func foldedPrefix(s, prefix string) bool {
	i := 0
	for k := 0; k < len(prefix); k++ {
		for i < len(s) && s[i] == '"' {
			i++
		}
		if i == len(s) || lowerASCII(s[i]) != prefix[k] {
			return false
		}
		i++
	}
	return true
}

// plainASCII reports whether s is all ASCII, where normTable's
// lower-casing is byte by byte.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases one ASCII letter.
func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
