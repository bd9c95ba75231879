package dashboards

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A careful metric-name extraction from PromQL, instead of Prometheus's own
// parser (a module far too large to add for a test). It does not validate
// syntax: promtool does (TestExpressionsParse).

// selector is one vector selector of an expression: the metric name (from
// the identifier or a __name__ matcher) and the text between its braces.
type selector struct {
	name     string
	matchers string
}

var (
	// keywords are PromQL's binary operators, modifiers and literals.
	keywords = map[string]bool{
		"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
	// labelLists are the keywords that may be followed by a parenthesized
	// list of label names.
	labelLists = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	}
	nameMatcher = regexp.MustCompile(`__name__\s*=\s*"([^"]*)"`)
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipSpace skips whitespace and # comments from i.
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d", i)
}

// skipGroup returns the index after the bracket group that opens at i,
// skipping string literals inside it.
func skipGroup(s string, i int) (int, error) {
	open := s[i]
	closer := map[byte]byte{'(': ')', '{': '}', '[': ']'}[open]
	depth := 0
	for j := i; j < len(s); {
		switch c := s[j]; c {
		case '"', '\'', '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = k
			continue
		case open:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return j + 1, nil
			}
		}
		j++
	}
	return 0, fmt.Errorf("unbalanced %q at offset %d", open, i)
}

// word returns the identifier at i ("" when there is none).
func word(s string, i int) string {
	j := i
	for j < len(s) && isIdentChar(s[j]) {
		j++
	}
	if j == i || !isIdentStart(s[i]) {
		return ""
	}
	return s[i:j]
}

// selectors lists the vector selectors of a PromQL expression. An
// identifier is a metric name unless it is a keyword, a function or
// aggregation (followed by "(" or by "by"/"without"), or a label name in a
// by/without/on/ignoring/group_left/group_right list.
func selectors(expr string) ([]selector, error) {
	var out []selector
	s := expr
	for i := skipSpace(s, 0); i < len(s); i = skipSpace(s, i) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			w := word(s, i)
			i += len(w)
			k := skipSpace(s, i)
			var next byte
			if k < len(s) {
				next = s[k]
			}
			switch {
			case labelLists[w]:
				if next == '(' {
					j, err := skipGroup(s, k)
					if err != nil {
						return nil, err
					}
					i = j
				}
			case keywords[w]:
			case next == '(':
				// A function or an aggregation.
			case word(s, k) == "by" || word(s, k) == "without":
				// An aggregation with its grouping first: sum by (x) (...).
			case next == '{':
				j, err := skipGroup(s, k)
				if err != nil {
					return nil, err
				}
				out = append(out, selector{name: w, matchers: s[k+1 : j-1]})
				i = j
			default:
				out = append(out, selector{name: w})
			}
		case c == '{':
			j, err := skipGroup(s, i)
			if err != nil {
				return nil, err
			}
			m := s[i+1 : j-1]
			sel := selector{matchers: m}
			if mm := nameMatcher.FindStringSubmatch(m); mm != nil {
				sel.name = mm[1]
			}
			out = append(out, sel)
			i = j
		case c == '[':
			j, err := skipGroup(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string // name|matchers
	}{
		{`up`, []string{"up|"}},
		{`sum by (le) (rate(nplus1_query_duration_seconds_bucket{job=~"$job"}[5m]))`,
			[]string{`nplus1_query_duration_seconds_bucket|job=~"$job"`}},
		{`histogram_quantile(0.99, sum without (instance) (rate(a_bucket[1m]))) > 1`, []string{"a_bucket|"}},
		{`sum(rate(x_total{kind="n_plus_one", q="}{[("}[$__rate_interval])) / on (job) group_left (query, tables) max by (job) (y_info) offset 5m`,
			[]string{`x_total|kind="n_plus_one", q="}{[("`, "y_info|"}},
		{`topk(10, a) * on(fingerprint) group_left(query) topk by (fingerprint) (1, b{c="d"})`, []string{"a|", `b|c="d"`}},
		{`{__name__="by_name", job="x"} and bool z unless inf`, []string{`by_name|__name__="by_name", job="x"`, "z|"}},
		{`job:nplus1_queries:rate5m{job="a"} > 1e-9 # a comment with words`, []string{`job:nplus1_queries:rate5m|job="a"`}},
		{`count_values("v", m) without (x)`, []string{"m|"}},
		{`absent(up{job="nplus1"}) or vector(0)`, []string{`up|job="nplus1"`}},
	} {
		sels, err := selectors(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.name+"|"+s.matchers)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("selectors(%s)\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`x{a="b}`, `sum(x{a="b\"})`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%s): no error", bad)
		}
	}
}

// grafanaVars replaces Grafana's interval variables with durations, so that
// a panel's expression is PromQL. Other variables ($job, ...) stand inside
// label matcher strings and are left alone.
var grafanaVars = strings.NewReplacer(
	"${__rate_interval}", "1m", "$__rate_interval", "1m",
	"${__interval}", "1m", "$__interval", "1m",
	"${__range}", "1h", "$__range", "1h",
)

func asPromQL(expr string) string { return grafanaVars.Replace(expr) }
