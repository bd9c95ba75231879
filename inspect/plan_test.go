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

func TestLikeColumns(t *testing.T) {
	cases := []struct {
		filter string
		want   []string
	}{
		{"((people.name)::text ~~ $1)", []string{"name"}},
		{"((people.name)::text ~~* $1)", []string{"name"}},
		{"(name ~~ (($1 || $2) || $3))", []string{"name"}},                                  // '%' || $1 || '%'
		{"(lower((p.name)::text) ~~ lower($1))", []string{"name"}},                          // through calls
		{"((p.name)::text ~~ ANY ($1))", []string{"name"}},                                  // LIKE ANY
		{"((p.status = $1) AND ((p.name)::text ~~ $2))", []string{"name"}},                  // with a comparison
		{"(((p.name)::text ~~ $1) OR ((p.email)::text ~~* $1))", []string{"name", "email"}}, // in order
		{"((p.name)::text !~~ $1)", nil},                                                    // NOT LIKE: no index serves it
		{"((p.name)::text ~~ (p.pattern)::text)", nil},                                      // a column's pattern
		{"(p.name = $1)", nil},                                                              // a comparison, not a LIKE
		{"(NOT (hashed SubPlan 1))", nil},
	}
	for _, c := range cases {
		if got := likeColumns(c.filter); !slices.Equal(got, c.want) {
			t.Errorf("likeColumns(%q) = %v, want %v", c.filter, got, c.want)
		}
	}
	if got := filterColumns("((p.status = $1) AND ((p.name)::text ~~ $2))"); !slices.Equal(got, []string{"status"}) {
		t.Errorf("filterColumns with a LIKE = %v, want only status", got)
	}
}

// TestReadPlanLikeScan: a Seq Scan whose filter is a LIKE alone is read,
// with no compared column; one whose filter is neither is not.
func TestReadPlanLikeScan(t *testing.T) {
	raw := []byte(`[{"Plan": {"Node Type": "Gather", "Plans": [
		{"Node Type": "Seq Scan", "Relation Name": "people", "Schema": "public", "Filter": "((people.name)::text ~~ $1)"},
		{"Node Type": "Seq Scan", "Relation Name": "tags", "Schema": "app", "Filter": "((tags.name)::text !~~ $1)"}]}}]`)
	scans, rels, err := readPlan(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(scans) != 1 || scans[0].rel.key() != "people" || scans[0].columns == nil || len(scans[0].columns) != 0 || !slices.Equal(scans[0].likes, []string{"name"}) {
		t.Errorf("scans %+v, want the scan of people matching name, comparing none", scans)
	}
	if len(rels) != 2 || rels[1].key() != "app.tags" {
		t.Errorf("relations %+v, want people and app.tags", rels)
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
