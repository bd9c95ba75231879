package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo command as a user does and checks its table: every
// pattern found as written, nothing flagged once fixed.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"demo"}, mapEnv(nil), &stdout, &stderr); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		"n_plus_one         n_plus_one              -      n_plus_one              yes",
		"nested_n_plus_one  n_plus_one, n_plus_one  -      n_plus_one, n_plus_one  yes",
		"duplicate_query    duplicate_query         -      duplicate_query         yes",
		"unpaginated        unpaginated             -      unpaginated             yes",
		"select_star        select_star             -      select_star             yes",
		"leading_wildcard   leading_wildcard        -      leading_wildcard        yes",
		"deep_offset        deep_offset             -      deep_offset             yes",
		"source: SELECT id FROM orders WHERE user_id = $1 ORDER BY id (6 rows)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "'open'") || strings.Contains(out, "example.com") {
		t.Errorf("demo output holds a literal:\n%s", out)
	}
}
