package detector

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseIgnore(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the result
		wantErr string // substring of the error
	}{
		{in: "fingerprint:0a1b2c3d4e5f6789", want: "fingerprint:0a1b2c3d4e5f6789"},
		{in: "fingerprint:0A1B2C3D4E5F6789", want: "fingerprint:0a1b2c3d4e5f6789"},
		{in: "query:^SELECT .* FROM pg_", want: "query:^SELECT .* FROM pg_"},
		{in: "query:a:b", want: "query:a:b"},
		{in: "table:schema_migrations", want: "table:schema_migrations"},
		{in: `table:"Public"."Users"`, want: "table:public.users"},
		{in: "app:healthcheck", want: "app:healthcheck"},
		{in: "app:my app", want: "app:my app"},

		{in: "", wantErr: "missing ':'"},
		{in: "schema_migrations", wantErr: "want fingerprint:HEX, query:REGEXP, table:NAME or app:NAME"},
		{in: "fingerprint:", wantErr: "empty fingerprint"},
		{in: "fingerprint:0a1b", wantErr: "16 hex digits"},
		{in: "fingerprint:0a1b2c3d4e5f678g", wantErr: "16 hex digits"},
		{in: "query:(", wantErr: "bad query regexp"},
		{in: "table:.users", wantErr: "bad table name"},
		{in: "tables:users", wantErr: `unknown kind "tables"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIgnore(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.in) {
					t.Errorf("error %q does not quote the entry", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got.String() != tt.want {
				t.Errorf("got %q, want %q", got.String(), tt.want)
			}
			again, err := ParseIgnore(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("String does not round-trip: %q → %q, %v", got, again, err)
			}
		})
	}
}

func TestIgnoreMatch(t *testing.T) {
	f := &Finding{
		Fingerprint: "0a1b2c3d4e5f6789",
		Query:       `SELECT id FROM "public"."Orders" JOIN users ON true WHERE id = $1`,
		Tables:      []string{`"public"."Orders"`, "users"},
		Connection:  Connection{ApplicationName: "shop-api"},
	}
	tests := []struct {
		ignore string
		want   bool
	}{
		{"fingerprint:0a1b2c3d4e5f6789", true},
		{"fingerprint:0a1b2c3d4e5f6788", false},
		{"query:^SELECT id FROM", true},
		{"query:^SELECT \\*", false},
		{"table:orders", true},
		{"table:public.orders", true},
		{"table:audit.orders", false},
		{"table:users", true},
		{"table:user", false},
		{"app:shop-api", true},
		{"app:shop", false},
	}
	for _, tt := range tests {
		if got := MustParseIgnore(tt.ignore).Match(f); got != tt.want {
			t.Errorf("%s: got match %v, want %v", tt.ignore, got, tt.want)
		}
	}
	if (Ignore{}).Match(f) {
		t.Error("the zero Ignore matched")
	}
}

func TestIgnoreText(t *testing.T) {
	var list []Ignore
	if err := json.Unmarshal([]byte(`["table:schema_migrations","app:healthcheck"]`), &list); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(list)
	if err != nil || string(b) != `["table:schema_migrations","app:healthcheck"]` {
		t.Errorf("got %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`["nope"]`), &list); err == nil {
		t.Error("bad entry accepted")
	}
}

func FuzzParseIgnore(f *testing.F) {
	for _, s := range []string{"fingerprint:0a1b2c3d4e5f6789", "query:^SELECT .* FROM pg_", "table:schema_migrations", "app:healthcheck", "table:\"a\".\"b\"", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ig, err := ParseIgnore(s)
		if err != nil {
			return
		}
		again, err := ParseIgnore(ig.String())
		if err != nil {
			t.Fatalf("%q parsed to %q, which does not parse: %v", s, ig.String(), err)
		}
		if again.String() != ig.String() {
			t.Fatalf("%q → %q → %q", s, ig.String(), again.String())
		}
		ig.Match(&Finding{Query: s, Tables: []string{s}})
	})
}
