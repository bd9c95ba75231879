package fingerprint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// TestSameFingerprint checks that texts differing only in what pg_query's
// fingerprint ignores share an ID, through Of and through a Cache.
func TestSameFingerprint(t *testing.T) {
	groups := [][]string{
		{
			"SELECT id, name FROM users WHERE id = 1",
			"SELECT id, name FROM users WHERE id = 42",
			"SELECT id, name FROM users WHERE id = $1",
			"SELECT id, name FROM users WHERE id = 'abc'",
			"select ID, Name from USERS where ID = 7",
			"SELECT   id,\n\tname\nFROM users -- lookup\nWHERE id = 1 /* by key */",
			"/*controller='users',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/ SELECT id, name FROM users WHERE id = 9",
			"SELECT id, name FROM users WHERE id = 1;",
		},
		{
			"SELECT * FROM posts WHERE user_id IN (1)",
			"SELECT * FROM posts WHERE user_id IN (1, 2, 3)",
			"SELECT * FROM posts WHERE user_id IN ($1, $2)",
			"SELECT * FROM posts WHERE user_id = ANY($1)",
			"SELECT * FROM posts WHERE user_id = ANY('{1,2,3}')",
			"SELECT * FROM posts WHERE user_id = 5",
		},
		{
			"SELECT * FROM t ORDER BY id LIMIT 10",
			"SELECT * FROM t ORDER BY id LIMIT 20 OFFSET 40",
			"SELECT * FROM t ORDER BY id LIMIT $1 OFFSET $2",
		},
		{
			"INSERT INTO t (a, b) VALUES (1, 'x')",
			"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
			"INSERT INTO t (a, b) VALUES ($1, $2)",
		},
		{
			"SELECT x FROM t WHERE a = -5",
			"SELECT x FROM t WHERE a = -7",
			"SELECT x FROM t WHERE a = true",
			"SELECT x FROM t WHERE a = false",
			"SELECT x FROM t WHERE a = NULL",
		},
	}
	cache := New(Options{})
	for _, g := range groups {
		want := ofOn(g[0]).Statements[0]
		for _, q := range g {
			for _, st := range []Statement{ofOn(q).Statements[0], cache.ofOn(q).Statements[0], cache.ofOn(q).Statements[0]} {
				if st.Err != nil {
					t.Errorf("%q: %v", q, st.Err)
				}
				if st.ID != want.ID {
					t.Errorf("%q: got ID %s, want %s (as %q)", q, st.Hex, want.Hex, g[0])
				}
			}
		}
	}
	// Different shapes stay apart.
	seen := map[uint64]string{}
	for _, g := range groups {
		id := ofOn(g[0]).Statements[0].ID
		if other, ok := seen[id]; ok {
			t.Errorf("%q and %q share ID %x", g[0], other, id)
		}
		seen[id] = g[0]
	}
}

func TestDifferentFingerprint(t *testing.T) {
	pairs := [][2]string{
		{"SELECT id FROM users WHERE id = 1", "SELECT id FROM accounts WHERE id = 1"},
		{"SELECT id FROM users WHERE id = 1", "SELECT name FROM users WHERE id = 1"},
		{"SELECT id FROM users", "SELECT id FROM public.users"},
		{`SELECT id FROM "Users"`, "SELECT id FROM users"},
		{"SELECT x::float(10) FROM t", "SELECT x::float(30) FROM t"},
		{"SELECT x::int[3] FROM t", "SELECT x::int[4] FROM t"},
		{"SELECT - 1 FROM t", "SELECT - '1' FROM t"},
	}
	cache := New(Options{})
	for _, p := range pairs {
		a, b := ofOn(p[0]).Statements[0], ofOn(p[1]).Statements[0]
		if a.ID == b.ID {
			t.Errorf("%q and %q: same ID %s", p[0], p[1], a.Hex)
		}
		// Through a cache, in both orders, the template cache must not
		// merge them either.
		for _, q := range []string{p[0], p[1], p[0]} {
			if got, want := cache.ofOn(q).Statements[0].ID, ofOn(q).Statements[0].ID; got != want {
				t.Errorf("%q: cache gives ID %x, want %x", q, got, want)
			}
		}
	}
}

// TestIDIsPgQueryFingerprint checks the ID is pg_query's, not our own.
func TestIDIsPgQueryFingerprint(t *testing.T) {
	for _, q := range []string{"SELECT 1", "UPDATE t SET a = 1 WHERE b = 2", "BEGIN"} {
		want, err := pg_query.FingerprintToUInt64(q)
		if err != nil {
			t.Fatal(err)
		}
		hex, _ := pg_query.Fingerprint(q)
		st := ofOn(q).Statements[0]
		if st.ID != want || st.Hex != hex {
			t.Errorf("%q: got %x %s, want %x %s", q, st.ID, st.Hex, want, hex)
		}
	}
	if got, err := pg_query.FingerprintToUInt64(""); err != nil || got != emptyID {
		t.Errorf("pg_query fingerprint of \"\" is %x (%v); emptyID is %x", got, err, emptyID)
	}
}

// stableIDs are fingerprints recorded once: they must never change, since
// they are exported as metric labels and compared between processes.
var stableIDs = map[string]string{
	"SELECT id, name FROM users WHERE id = 1":        "5fbceaffe99a37f0",
	"SELECT * FROM posts WHERE user_id IN (1, 2, 3)": "932dbaa709df2968",
	"SELEC * FROM users WHERE id IN (1, 2, 3)":       "6f50d34246a19b6a", // fallback
	"UPDATE accounts SET balance = 0 WHERE id = 7":   "3b4f9b94ae84f13e",
	`SELECT "users".* FROM "users" WHERE "id" = $1`:  "49ed7bf6d32d0ad2",
	"": "d8d13f8b2da6c9ad",
}

// TestStableAcrossProcesses computes fingerprints in a child process and
// compares them with this one's, and with the recorded values.
func TestStableAcrossProcesses(t *testing.T) {
	var queries []string
	for q := range stableIDs {
		queries = append(queries, q)
	}
	line := func(q string) string {
		r := ofOn(q)
		var b strings.Builder
		for _, st := range r.Statements {
			fmt.Fprintf(&b, "%s %016x %q|", st.Hex, st.LiteralsHash, st.Normalized)
		}
		return b.String()
	}
	if os.Getenv("NPLUS1_FINGERPRINT_CHILD") == "1" {
		for _, q := range queries {
			fmt.Printf("%q\t%s\n", q, line(q))
		}
		return
	}
	for q, want := range stableIDs {
		if got := ofOn(q).Statements[0].Hex; got != want {
			t.Errorf("%q: got %s, want the recorded %s", q, got, want)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStableAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NPLUS1_FINGERPRINT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	for _, q := range queries {
		want := fmt.Sprintf("%q\t%s\n", q, line(q))
		if !strings.Contains(string(out), want) {
			t.Errorf("child process disagrees on %q: want %q in\n%s", q, want, out)
		}
	}
}

func TestStatements(t *testing.T) {
	tests := []struct {
		sql  string
		want []string // normalized statements
	}{
		{"", []string{""}},
		{"  \n ", []string{""}},
		{"-- c\n/* d */", []string{""}},
		{";;;", []string{""}},
		{"SELECT 1", []string{"SELECT $1"}},
		{"SELECT 1; SELECT 'a;b'; SELECT $$;$$", []string{"SELECT $1", "SELECT $1", "SELECT $1"}},
		{"SELECT 1;;\n;SELECT 2;", []string{"SELECT $1", "SELECT $1"}},
		{"SELECT 1 /* ; */; SELECT \";\" FROM t -- ;\n", []string{"SELECT $1", `SELECT ";" FROM t`}},
		{
			"CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END; CALL p()",
			[]string{"CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES ($1); END", "CALL p()"},
		},
		{"BEGIN; SELECT 1; COMMIT", []string{"BEGIN", "SELECT $1", "COMMIT"}},
		{"SELECT 1\x00; SELECT 2", []string{"SELECT $1"}},
	}
	for _, tt := range tests {
		r := ofOn(tt.sql)
		var got []string
		for _, st := range r.Statements {
			got = append(got, st.Normalized)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Of(%q): got statements %q, want %q", tt.sql, got, tt.want)
		}
	}
}

func TestNormalized(t *testing.T) {
	tests := []struct{ sql, want string }{
		{"SELECT 1", "SELECT $1"},
		{"select  a,b\n\tFROM t", "select a,b FROM t"},
		{"SELECT $2, 'x', $1, 5", "SELECT $2, $3, $1, $4"},
		{"SELECT x FROM t WHERE a = -1.5e3 AND b = 0x1F AND c = B'01' AND d = X'AB'", "SELECT x FROM t WHERE a = -$1 AND b = $2 AND c = $3 AND d = $4"},
		{"SELECT E'it\\'s', U&'\\0041' UESCAPE '!', N'n', $tag$a$b$tag$", "SELECT $1, $2 UESCAPE $3, N $4, $5"},
		{"SELECT 'a'\n'b'", "SELECT $1"},
		{"SELECT a/**/FROM t", "SELECT a FROM t"},
		{"SELECT a--c\nFROM t", "SELECT a FROM t"},
		{"SELECT x::varchar(10) FROM t ORDER BY 1 LIMIT 5", "SELECT x::varchar($1) FROM t ORDER BY $2 LIMIT $3"},
		{"SELECT true, false FROM t WHERE a IS TRUE AND b IS NOT FALSE AND c = NULL", "SELECT $1, $2 FROM t WHERE a IS TRUE AND b IS NOT FALSE AND c = NULL"},
		{"SELECT $99999999999999, 1", "SELECT $99999999999999, $1099511627777"},
		{`SELECT "a""b" FROM "T"`, `SELECT "a""b" FROM "T"`},
		{"SELECT x FROM t WHERE y = 'unterminated", "SELECT x FROM t WHERE y = $1"},
		{`SELECT "unterminated`, "SELECT"},
		{"SELECT 1 /* unterminated", "SELECT $1"},
	}
	for _, tt := range tests {
		if got := ofOn(tt.sql).Statements[0].Normalized; got != tt.want {
			t.Errorf("Of(%q).Normalized\n got: %q\nwant: %q", tt.sql, got, tt.want)
		}
	}
}

func TestLiteralsHash(t *testing.T) {
	h := func(q string) uint64 { return ofOn(q).Statements[0].LiteralsHash }
	if got := h("SELECT a FROM t WHERE b = $1"); got != 0 {
		t.Errorf("no literals: got %x, want 0", got)
	}
	base := h("SELECT a FROM t WHERE b = 1 AND c = 'x'")
	if base == 0 {
		t.Fatal("literals hash to 0")
	}
	same := []string{
		"SELECT a FROM t WHERE b = 1 AND c = 'x' /* traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' */",
		"select a from t where b = 1 and c = 'x'",
	}
	for _, q := range same {
		if got := h(q); got != base {
			t.Errorf("%q: got %x, want %x", q, got, base)
		}
	}
	different := []string{
		"SELECT a FROM t WHERE b = 2 AND c = 'x'",
		"SELECT a FROM t WHERE b = 1 AND c = 'y'",
		"SELECT a FROM t WHERE b = 'x' AND c = 1",
		"SELECT a FROM t WHERE b = 1 AND c = 'x' AND d = true",
	}
	for _, q := range different {
		if got := h(q); got == base {
			t.Errorf("%q: same literals hash as the base text", q)
		}
	}
	if h("SELECT a FROM t WHERE d = true") == h("SELECT a FROM t WHERE d = false") {
		t.Error("true and false hash alike")
	}
}

func TestFallback(t *testing.T) {
	bad := []string{
		"SELEC * FROM users WHERE id = 'secret-value'",
		"SELECT * FROM users WHERE note = 'secret-value",
		"SELECT $body$secret-value",
		"SELECT 12345secret",
		"UPDATE users SET WHERE id = 'secret-value'",
		"\xff\xfe SELECT 'secret-value'",
	}
	for _, q := range bad {
		st := ofOn(q).Statements[0]
		if st.Facts.Kind != KindUnknown {
			t.Errorf("%q: got kind %q, want unknown", q, st.Facts.Kind)
		}
		var pe *ParseError
		if !errors.As(st.Err, &pe) {
			t.Fatalf("%q: got error %v, want a *ParseError", q, st.Err)
		}
		if strings.Contains(st.Err.Error(), "secret") || strings.Contains(st.Normalized, "secret-value") {
			t.Errorf("%q: the error %q or normalized text %q quotes the statement", q, st.Err, st.Normalized)
		}
		if st.ID == 0 || len(st.Hex) != 16 || st.Hex != hex16(st.ID) {
			t.Errorf("%q: bad fallback ID %x %q", q, st.ID, st.Hex)
		}
	}
	same := [][2]string{
		{"SELEC * FROM users WHERE id = 1", "selec *\nFROM users /* x */ WHERE id = 'a'"},
		{"SELEC * FROM users WHERE id IN (1, 2)", "SELEC * FROM users WHERE id IN ($1, 'x', 3, 4)"},
	}
	for _, p := range same {
		if a, b := ofOn(p[0]).Statements[0], ofOn(p[1]).Statements[0]; a.ID != b.ID {
			t.Errorf("%q and %q: fallback IDs %s and %s, want equal", p[0], p[1], a.Hex, b.Hex)
		}
	}
	differ := [][2]string{
		{"SELEC * FROM users WHERE id = 1", "SELEC * FROM accounts WHERE id = 1"},
		{"SELEC * FROM users WHERE id = 1", `SELEC * FROM "Users" WHERE id = 1`},
		{"SELEC a, 1 FROM t", "SELEC a FROM t"},
	}
	for _, p := range differ {
		if a, b := ofOn(p[0]).Statements[0], ofOn(p[1]).Statements[0]; a.ID == b.ID {
			t.Errorf("%q and %q: same fallback ID %s", p[0], p[1], a.Hex)
		}
	}
}

func TestParseErrorMessage(t *testing.T) {
	st := ofOn("SELECT * FROM t WHERE a = 'abc").Statements[0]
	var pe *ParseError
	if !errors.As(st.Err, &pe) {
		t.Fatalf("got %v, want a *ParseError", st.Err)
	}
	if pe.Message != "unterminated quoted string" || pe.Position != 27 {
		t.Errorf("got %+v, want unterminated quoted string at 27", *pe)
	}
	if got, want := pe.Error(), "parse statement: unterminated quoted string at position 27"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
