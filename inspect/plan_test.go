package inspect

import (
	"slices"
	"testing"
)

func TestFilterColumns(t *testing.T) {
	cases := []struct {
		filter string
		want   []string
	}{
		{"(orders.customer_id = $1)", []string{"customer_id"}},
		{"((users.email)::text = $1)", []string{"email"}},
		{"(($1)::text = (users.email)::text)", []string{"email"}},
		{"((a.status = $1) AND (a.created_at > $2))", []string{"status", "created_at"}},
		{"(id = ANY ($1))", []string{"id"}},
		{`(t."userId" = $1)`, []string{"userId"}},
		{"(a.x = a.y)", nil},              // a column against a column: no index on one serves it
		{"((a.name)::text ~~ $1)", nil},   // LIKE: leading_wildcard's business
		{"(NOT (hashed SubPlan 1))", nil}, // does not parse as an expression
		{"(lower(a.email) = $1)", nil},    // an expression: no plain column index serves it
		{"((a.n <> $1) OR (a.m <= $2))", []string{"m"}},
	}
	for _, c := range cases {
		if got := filterColumns(c.filter); !slices.Equal(got, c.want) {
			t.Errorf("filterColumns(%q) = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestUnquote(t *testing.T) {
	for in, want := range map[string]string{
		"user_id":              "user_id",
		`"userId"`:             "userId",
		`public."User"`:        "public.User",
		`"a""b"`:               `a"b`,
		`lower((email)::text)`: `lower((email)::text)`,
		`"open`:                `"open`,
	} {
		if got := unquote(in); got != want {
			t.Errorf("unquote(%q) = %q, want %q", in, got, want)
		}
	}
}
