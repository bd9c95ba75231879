package fingerprint

import (
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/nplus1/nplus1/internal/valuekey"
)

func TestFacts(t *testing.T) {
	tests := []struct {
		sql  string
		want Facts
	}{
		{"SELECT * FROM users WHERE id = 1", Facts{Kind: KindSelect, TablesRead: []string{"users"}, SelectStar: true, EqualityColumns: []string{"id"}}},
		{"SELECT u.* FROM users u", Facts{Kind: KindSelect, TablesRead: []string{"users"}, SelectStar: true}},
		{"SELECT s.* FROM (SELECT a FROM t) s", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT x.* FROM t", Facts{Kind: KindSelect, TablesRead: []string{"t"}, SelectStar: true}},
		{"SELECT * FROM a JOIN (SELECT b.id FROM b) s ON true", Facts{Kind: KindSelect, TablesRead: []string{"a", "b"}, SelectStar: true}},
		{"SELECT count(*) FROM t", Facts{Kind: KindSelect, TablesRead: []string{"t"}, AggregateOnly: true}},
		{"SELECT count(*) FILTER (WHERE a) , my_agg(DISTINCT b) FROM t", Facts{Kind: KindSelect, TablesRead: []string{"t"}, AggregateOnly: true}},
		{"SELECT pg_catalog.sum(a) FROM t", Facts{Kind: KindSelect, TablesRead: []string{"t"}, AggregateOnly: true}},
		{"SELECT lower(name) FROM t", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT 1", Facts{Kind: KindSelect}},
		{"SELECT count(*), (SELECT max(id) FROM u) FROM t", Facts{Kind: KindSelect, TablesRead: []string{"t", "u"}, AggregateOnly: true}},
		{"SELECT a FROM t LIMIT 5", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasLimit: true}},
		{"SELECT a FROM t LIMIT NULL", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT a FROM t FETCH NEXT ROW ONLY", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasLimit: true}},
		{"SELECT a FROM t OFFSET 0x10", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasOffset: true, Offset: 16}},
		{"SELECT a FROM t OFFSET (7) ROWS", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasOffset: true, Offset: 7}},
		{"SELECT a FROM t OFFSET 7.5", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasOffset: true, Offset: -1}},
		{"SELECT a FROM t OFFSET $1", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasOffset: true, Offset: -1, OffsetParam: 1}},
		{"SELECT a FROM t LIMIT $1 OFFSET ($2) ROWS", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasLimit: true, HasOffset: true, Offset: -1, OffsetParam: 2}},
		{"SELECT a FROM t OFFSET $1::int8", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasOffset: true, Offset: -1}},
		{"SELECT a FROM t LIMIT 5 OFFSET  '1500' ", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasLimit: true, HasOffset: true, Offset: 1500}},
		{"SELECT a FROM t OFFSET $1 * 50", Facts{Kind: KindSelect, TablesRead: []string{"t"}, HasOffset: true, Offset: -1}},
		{"WITH c AS (SELECT a FROM t LIMIT 1 OFFSET 5) SELECT a FROM c", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT a FROM public.t JOIN s.u ON true JOIN db.s.v ON true", Facts{Kind: KindSelect, TablesRead: []string{"db.s.v", "public.t", "s.u"}}},
		{"SELECT a FROM t WHERE (a, b) IN (($1, $2), ($3, $4))", Facts{Kind: KindSelect, TablesRead: []string{"t"}, EqualityColumns: []string{"a", "b"}, KeyList: true}},
		{"SELECT a FROM t WHERE id = ANY($1) AND b = $2", Facts{Kind: KindSelect, TablesRead: []string{"t"}, EqualityColumns: []string{"b", "id"}, KeyList: true}},
		{"SELECT a FROM t WHERE x = y", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT a FROM t WHERE x = (SELECT 1)", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT a FROM t WHERE x OPERATOR(pg_catalog.=) 1", Facts{Kind: KindSelect, TablesRead: []string{"t"}, EqualityColumns: []string{"x"}}},
		{"SELECT a FROM t WHERE x COLLATE \"C\" = 'a'", Facts{Kind: KindSelect, TablesRead: []string{"t"}, EqualityColumns: []string{"x"}}},
		{"SELECT a FROM t WHERE NOT (x = 1)", Facts{Kind: KindSelect, TablesRead: []string{"t"}}},
		{"SELECT a FROM t WHERE a LIKE ANY (ARRAY['%x', 'y'])", Facts{Kind: KindSelect, TablesRead: []string{"t"}, LeadingWildcardLike: true, LikeColumns: []string{"a"}}},
		{"SELECT a FROM t WHERE a NOT LIKE U&'\\0025x'", Facts{Kind: KindSelect, TablesRead: []string{"t"}, LeadingWildcardLike: true, LikeColumns: []string{"a"}}},
		{"SELECT a FROM t WHERE a LIKE ''", Facts{Kind: KindSelect, TablesRead: []string{"t"}, LikeColumns: []string{"a"}}},
		{"SELECT a FROM t WHERE a LIKE '''%'", Facts{Kind: KindSelect, TablesRead: []string{"t"}, LikeColumns: []string{"a"}}},
		{`SELECT a FROM t WHERE "t"."name"::text LIKE $2 AND id = $1`, Facts{Kind: KindSelect, TablesRead: []string{"t"}, EqualityColumns: []string{"id"}, LikeParams: 1 << 1, LikeColumns: []string{"t.name"}}},
		{"SELECT a FROM t WHERE UPPER(b::text) LIKE UPPER($1) OR c ILIKE $3 || '%'", Facts{Kind: KindSelect, TablesRead: []string{"t"}, LikeParams: 1<<0 | 1<<2, LikeColumns: []string{"b", "c"}}},
		{"SELECT a FROM t WHERE b ~~* ('%' || $1 || '%')", Facts{Kind: KindSelect, TablesRead: []string{"t"}, LeadingWildcardLike: true, LikeColumns: []string{"b"}}},
		{"SELECT a FROM t FOR KEY SHARE", Facts{Kind: KindSelect, TablesRead: []string{"t"}, Locking: true}},
		{"INSERT INTO t SELECT * FROM u LIMIT 5", Facts{Kind: KindInsert, TablesRead: []string{"u"}, TablesWritten: []string{"t"}}},
		{"INSERT INTO t VALUES (1) RETURNING *", Facts{Kind: KindInsert, TablesWritten: []string{"t"}, ValuesRows: 1}},
		{"INSERT INTO t (a, b) VALUES ($1, $2), ($3, (4)), ($5, $6) ON CONFLICT (a) DO UPDATE SET b = excluded.b", Facts{Kind: KindInsert, TablesWritten: []string{"t"}, ValuesRows: 3}},
		{"INSERT INTO t SELECT * FROM (VALUES (1), (2)) v", Facts{Kind: KindInsert, TablesWritten: []string{"t"}}},
		{"INSERT INTO t DEFAULT VALUES", Facts{Kind: KindInsert, TablesWritten: []string{"t"}}},
		{"UPDATE t SET a = 1 WHERE id = $1 RETURNING *", Facts{Kind: KindUpdate, TablesWritten: []string{"t"}, EqualityColumns: []string{"id"}}},
		{"UPDATE t SET a = 1 WHERE id IN ($1, $2)", Facts{Kind: KindUpdate, TablesWritten: []string{"t"}, EqualityColumns: []string{"id"}, KeyList: true}},
		{"DELETE FROM t WHERE id = ANY($1)", Facts{Kind: KindDelete, TablesWritten: []string{"t"}, EqualityColumns: []string{"id"}, KeyList: true}},
		{"UPDATE t SET a = 1 WHERE CURRENT OF c", Facts{Kind: KindUpdate, TablesWritten: []string{"t"}}},
		{"DELETE FROM t", Facts{Kind: KindDelete, TablesWritten: []string{"t"}, NoWhere: true}},
		{"DELETE FROM t WHERE name LIKE '_x'", Facts{Kind: KindDelete, TablesWritten: []string{"t"}, LeadingWildcardLike: true, LikeColumns: []string{"name"}}},
		{"COPY t TO STDOUT", Facts{Kind: KindCopy, TablesRead: []string{"t"}}},
		{"PREPARE q AS SELECT * FROM t WHERE id = $1", Facts{Kind: KindOther, TablesRead: []string{"t"}}},
		{"DECLARE c CURSOR FOR SELECT a FROM t", Facts{Kind: KindOther, TablesRead: []string{"t"}}},
		{"EXECUTE q(1)", Facts{Kind: KindOther}},
		{"DO $$BEGIN PERFORM 1; END$$", Facts{Kind: KindOther}},
		{"FETCH 10 FROM c", Facts{Kind: KindOther}},
		{"BEGIN", Facts{Kind: KindUtility}},
		{"CREATE TABLE t (LIKE '%x')", Facts{Kind: KindUnknown}},
		{"CREATE TABLE t (a int)", Facts{Kind: KindUtility}},
		{"LOCK TABLE t", Facts{Kind: KindUtility}},
		{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r", Facts{Kind: KindSelect}},
	}
	for _, tt := range tests {
		got := *ofOn(tt.sql).Statements[0].Facts
		// The facts of a read-modify-write are TestRMWFacts's.
		got.ReadColumns, got.SetValues, got.SetSelf, got.KeyValues = nil, nil, nil, nil
		got.Isolation, got.IsolationSession = IsolationNone, false
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Of(%q).Facts\n got: %+v\nwant: %+v", tt.sql, got, tt.want)
		}
	}
}

// rmw is what TestRMWFacts compares: the facts of a read-modify-write.
type rmw struct {
	read, set, self []string
	keys            []KeyValue
	iso             Isolation
	session         bool
}

func TestRMWFacts(t *testing.T) {
	p := func(col string, n int) KeyValue { return KeyValue{Column: col, Param: n} }
	l := func(col string, k int) KeyValue { return KeyValue{Column: col, Literal: k} }
	tests := []struct {
		sql  string
		want rmw
	}{
		{"SELECT id, stock FROM products WHERE id = $1", rmw{read: []string{"id", "stock"}, keys: []KeyValue{p("id", 1)}}},
		{"SELECT p.stock * 2 AS s, (SELECT max(x) FROM u) FROM products p WHERE p.id = 7", rmw{read: []string{"stock"}, keys: []KeyValue{l("id", 1)}}},
		{"SELECT * FROM products WHERE id = $1 FOR UPDATE", rmw{keys: []KeyValue{p("id", 1)}}},
		{"SELECT a FROM t WHERE status = 'paid' AND id = 42 LIMIT 1", rmw{read: []string{"a"}, keys: []KeyValue{l("status", 0), l("id", 1)}}},
		{"SELECT a FROM t WHERE id = $2::bigint AND b = $1", rmw{read: []string{"a"}, keys: []KeyValue{p("id", 2), p("b", 1)}}},
		{`SELECT "public"."Product"."stock" FROM "public"."Product" WHERE ("public"."Product"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`,
			rmw{read: []string{"stock"}, keys: []KeyValue{p("id", 1)}}},
		{`SELECT * FROM "products" WHERE "products"."id" = $1 AND "products"."deleted_at" IS NULL ORDER BY "products"."id" LIMIT $2`,
			rmw{keys: []KeyValue{p("id", 1)}}},
		{`SELECT "Id" FROM t WHERE "Id" = $1`, rmw{read: []string{"Id"}, keys: []KeyValue{p("Id", 1)}}},
		// Not a key value: an expression, a subquery's, a list, a column.
		{"SELECT a FROM t WHERE id = $1 + 1", rmw{read: []string{"a"}}},
		{"SELECT a FROM t WHERE id = -5", rmw{read: []string{"a"}}},
		{"SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE c = $1) AND id = $2", rmw{read: []string{"a"}, keys: []KeyValue{p("id", 2)}}},
		{"SELECT a FROM t WHERE id = ANY($1)", rmw{read: []string{"a"}}},
		{"SELECT a FROM t WHERE x = y", rmw{read: []string{"a"}}},
		{"SELECT a FROM t WHERE lower(b) = $1", rmw{read: []string{"a"}}},
		{"SELECT a FROM t UNION SELECT b FROM u WHERE id = $1", rmw{}},
		{"UPDATE products SET stock = $1 WHERE id = $2", rmw{set: []string{"stock"}, keys: []KeyValue{p("id", 2)}}},
		{"UPDATE products SET stock = stock - $1, note = 'x'::text WHERE id = $2 AND stock >= $1", rmw{set: []string{"note"}, self: []string{"stock"}, keys: []KeyValue{p("id", 2)}}},
		{"UPDATE t SET (a, b) = ($1, b + 1), c = now() WHERE id = 3", rmw{set: []string{"a"}, self: []string{"b"}, keys: []KeyValue{l("id", 1)}}},
		{`UPDATE "products" SET "name"=$1,"stock"=$2 WHERE "products"."deleted_at" IS NULL AND "id" = $3`, rmw{set: []string{"name", "stock"}, keys: []KeyValue{p("id", 3)}}},
		{"UPDATE t SET a = $1 WHERE id = $2 AND version = $3 RETURNING a", rmw{set: []string{"a"}, keys: []KeyValue{p("id", 2), p("version", 3)}}},
		{"UPDATE t SET a = (SELECT b FROM u WHERE u.id = 1) WHERE id = 2", rmw{keys: []KeyValue{l("id", 1)}}},
		{"DELETE FROM t WHERE id = $1", rmw{}},
		// Isolation levels.
		{"BEGIN", rmw{}},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE", rmw{iso: IsolationSerializable}},
		{"begin transaction read write, isolation level repeatable read", rmw{iso: IsolationRepeatableRead}},
		{"START TRANSACTION ISOLATION LEVEL READ COMMITTED", rmw{iso: IsolationReadCommitted}},
		{"SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", rmw{iso: IsolationReadUncommitted}},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", rmw{iso: IsolationSerializable, session: true}},
		{"SET default_transaction_isolation = 'repeatable read'", rmw{iso: IsolationRepeatableRead, session: true}},
		{"SET SESSION default_transaction_isolation TO serializable", rmw{iso: IsolationSerializable, session: true}},
		{"SET LOCAL default_transaction_isolation TO 'serializable'", rmw{iso: IsolationSerializable}},
		{"SET transaction_isolation = 'SERIALIZABLE'", rmw{iso: IsolationSerializable}},
		{"SET default_transaction_isolation TO DEFAULT", rmw{iso: IsolationDefault, session: true}},
		{"RESET default_transaction_isolation", rmw{iso: IsolationDefault, session: true}},
		{"RESET ALL", rmw{iso: IsolationDefault, session: true}},
		{"DISCARD ALL", rmw{iso: IsolationDefault, session: true}},
		{"SET search_path = 'serializable'", rmw{}},
		{"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", rmw{}},
	}
	for _, tt := range tests {
		f := ofOn(tt.sql).Statements[0].Facts
		got := rmw{read: f.ReadColumns, set: f.SetValues, self: f.SetSelf, keys: f.KeyValues, iso: f.Isolation, session: f.IsolationSession}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Of(%q)\n got: %+v\nwant: %+v", tt.sql, got, tt.want)
		}
	}
}

// TestKeyValuesShared checks that texts of one fingerprint get the key
// values and isolation level of their own text, and that a literal key
// value's index finds its digest.
func TestKeyValuesShared(t *testing.T) {
	c := New(Options{})
	a := c.ofOn("SELECT a FROM t WHERE status = 'x' AND id = $1").Statements[0]
	b := c.ofOn("SELECT a FROM t WHERE status = 'y' AND id = 42").Statements[0]
	if a.ID != b.ID {
		t.Fatalf("IDs differ: %s %s", a.Hex, b.Hex)
	}
	if want := []KeyValue{{Column: "status", Literal: 0}, {Column: "id", Param: 1}}; !reflect.DeepEqual(a.Facts.KeyValues, want) {
		t.Errorf("first text: %+v, want %+v", a.Facts.KeyValues, want)
	}
	kv := b.Facts.KeyValues
	if len(kv) != 2 || kv[1].Column != "id" || kv[1].Param != 0 || b.LiteralKeys[kv[1].Literal] != valuekey.String("42") {
		t.Errorf("second text: %+v with literal keys %v", kv, b.LiteralKeys)
	}
	plain := c.ofOn("BEGIN").Statements[0]
	ser := c.ofOn("BEGIN ISOLATION LEVEL SERIALIZABLE").Statements[0]
	if plain.Facts.Isolation != IsolationNone || ser.Facts.Isolation != IsolationSerializable {
		t.Errorf("BEGIN: %v, BEGIN ISOLATION LEVEL SERIALIZABLE: %v", plain.Facts.Isolation, ser.Facts.Isolation)
	}
	rc := c.ofOn("SET default_transaction_isolation = 'read committed'").Statements[0]
	sz := c.ofOn("SET default_transaction_isolation = 'serializable'").Statements[0]
	if rc.Facts.Isolation != IsolationReadCommitted || sz.Facts.Isolation != IsolationSerializable {
		t.Errorf("SET default_transaction_isolation: %v and %v", rc.Facts.Isolation, sz.Facts.Isolation)
	}
}

// TestFactsShared checks that texts of one fingerprint get the facts of
// their own text where the facts depend on literals or LIMIT, and share the
// Facts value where they agree.
func TestFactsShared(t *testing.T) {
	c := New(Options{})
	a := c.ofOn("SELECT a FROM t WHERE b LIKE 'x%' LIMIT 10 OFFSET 20").Statements[0]
	b := c.ofOn("SELECT a FROM t WHERE b LIKE '%x' OFFSET 40").Statements[0]
	d := c.ofOn("SELECT a FROM t WHERE b LIKE 'y%' LIMIT 5 OFFSET 20").Statements[0]
	if a.ID != b.ID || a.ID != d.ID {
		t.Fatalf("IDs differ: %s %s %s", a.Hex, b.Hex, d.Hex)
	}
	if !a.Facts.HasLimit || a.Facts.Offset != 20 || a.Facts.LeadingWildcardLike {
		t.Errorf("first text: got %+v", *a.Facts)
	}
	if b.Facts.HasLimit || b.Facts.Offset != 40 || !b.Facts.LeadingWildcardLike {
		t.Errorf("second text: got %+v", *b.Facts)
	}
	if a.Facts != d.Facts {
		t.Errorf("texts with equal facts got two Facts values")
	}
}

// treeTextFacts reads from the parse tree what readTextFacts reads from
// tokens, to check the two agree.
func treeTextFacts(t *testing.T, text string) (textFacts, Kind) {
	t.Helper()
	tree, err := pg_query.Parse(text)
	if err != nil || len(tree.Stmts) != 1 {
		return textFacts{}, KindUnknown
	}
	stmt := tree.Stmts[0].Stmt
	kind := kindOf(stmt)
	var tf textFacts
	if sel := stmt.GetSelectStmt(); sel != nil {
		if c := sel.LimitCount; c != nil && !c.GetAConst().GetIsnull() {
			tf.hasLimit = true
		}
		if o := sel.LimitOffset; o != nil {
			tf.hasOffset, tf.offset = true, -1
			if pr := o.GetParamRef(); pr != nil && pr.Number <= 64 {
				tf.offsetParam = int(pr.Number)
			}
			if ac := o.GetAConst(); ac != nil {
				if iv := ac.GetIval(); iv != nil {
					tf.offset = int64(iv.Ival)
				} else if fv := ac.GetFval(); fv != nil {
					if v, err := strconv.ParseInt(fv.Fval, 10, 64); err == nil {
						tf.offset = v
					}
				} else if sv := ac.GetSval(); sv != nil {
					// OFFSET '1500': the server reads the string as bigint.
					if v, err := strconv.ParseInt(sv.Sval, 10, 64); err == nil && sv.Sval[0] != '+' && sv.Sval[0] != '-' {
						tf.offset = v
					}
				}
			}
		}
	}
	if sel := stmt.GetInsertStmt().GetSelectStmt().GetSelectStmt(); sel != nil {
		tf.valuesRows = len(sel.ValuesLists)
	}
	switch kind {
	case KindSelect, KindInsert, KindUpdate, KindDelete, KindMerge:
	default:
		return tf, kind
	}
	walk(stmt, func(m protoreflect.ProtoMessage) bool {
		e, ok := m.(*pg_query.A_Expr)
		if !ok {
			return true
		}
		switch name := operatorName(e.Name); {
		case e.Kind == pg_query.A_Expr_Kind_AEXPR_LIKE, e.Kind == pg_query.A_Expr_Kind_AEXPR_ILIKE,
			name == "~~" || name == "~~*" || name == "!~~" || name == "!~~*":
			if patternLeadingWildcard(e.Rexpr) {
				tf.leadingWildcardLike = true
			}
			if n := patternParamOf(e.Rexpr); n > 0 && n <= 64 {
				tf.likeParams |= 1 << (n - 1)
			}
		case operatorName(e.Name) == "=" && (e.Kind == pg_query.A_Expr_Kind_AEXPR_OP_ANY ||
			e.Kind == pg_query.A_Expr_Kind_AEXPR_IN && e.Rexpr.GetList() != nil):
			tf.keyList = true
		}
		return true
	})
	return tf, kind
}

// patternParamOf is patternLeadingWildcard for a parameter: n when the
// pattern starts with $n.
func patternParamOf(n *pg_query.Node) int {
	for n != nil {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_ParamRef:
			return int(x.ParamRef.Number)
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
		case *pg_query.Node_FuncCall:
			if len(x.FuncCall.Args) == 0 {
				return 0
			}
			n = x.FuncCall.Args[0]
		case *pg_query.Node_AExpr:
			n = x.AExpr.Lexpr
		case *pg_query.Node_AArrayExpr:
			if len(x.AArrayExpr.Elements) == 0 {
				return 0
			}
			n = x.AArrayExpr.Elements[0]
		default:
			return 0
		}
	}
	return 0
}

func patternLeadingWildcard(n *pg_query.Node) bool {
	for n != nil {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_AConst:
			s := x.AConst.GetSval().GetSval()
			return s != "" && (s[0] == '%' || s[0] == '_')
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
		case *pg_query.Node_FuncCall:
			if len(x.FuncCall.Args) == 0 {
				return false
			}
			n = x.FuncCall.Args[0]
		case *pg_query.Node_AExpr:
			n = x.AExpr.Lexpr
		case *pg_query.Node_AArrayExpr:
			if len(x.AArrayExpr.Elements) == 0 {
				return false
			}
			n = x.AArrayExpr.Elements[0]
		default:
			return false
		}
	}
	return false
}

// TestTextFactsAgreeWithTree compares the token reading of LIMIT, OFFSET
// and LIKE patterns with the parse tree over every statement the tests know.
func TestTextFactsAgreeWithTree(t *testing.T) {
	corpus := []string{
		"SELECT a FROM t LIMIT ALL", "SELECT a FROM t OFFSET -5", "SELECT a FROM t OFFSET +5",
		"SELECT a FROM t OFFSET 99999999999", "SELECT a FROM t OFFSET 1_000", "SELECT a FROM t OFFSET 0b101",
		"SELECT a FROM t OFFSET (1) + 2", "SELECT a FROM t OFFSET ((3))", "SELECT a FROM t OFFSET 5 FOR UPDATE",
		"SELECT a FROM t WHERE b ILIKE LOWER('%x')", "SELECT a FROM t WHERE b LIKE 'x' || '%'",
		"SELECT a FROM t WHERE b LIKE E'\\\\%'", "SELECT a FROM t WHERE b LIKE $q$%$q$",
		"((SELECT a FROM t LIMIT 1))", "SELECT (SELECT a FROM t LIMIT 1) FROM u OFFSET 3",
		"SELECT a FROM t LIMIT 1 OFFSET 1 FOR UPDATE OF t", "SELECT a AS limit FROM t",
		"SELECT t.offset FROM t OFFSET 2",
		"SELECT a FROM t OFFSET $3", "SELECT a FROM t LIMIT 5 OFFSET (($2)) FOR UPDATE", "SELECT a FROM t OFFSET $1::bigint",
		"SELECT a FROM t LIMIT 5 OFFSET  '7654321' ", "SELECT a FROM t OFFSET ('1500')", "SELECT a FROM t OFFSET '15x'", "SELECT a FROM t OFFSET '-5'",
		"SELECT a FROM t WHERE b LIKE $2", "SELECT a FROM t WHERE lower(b) LIKE lower($1)", "SELECT a FROM t WHERE b LIKE ANY ($4)",
		"SELECT a FROM t WHERE b ILIKE $1 || '%' AND c NOT LIKE '%' || $2",
		"INSERT INTO t VALUES ($1, $2)", "INSERT INTO t (a) VALUES (1), ((2)), (3) RETURNING id", "INSERT INTO t DEFAULT VALUES",
		"INSERT INTO t SELECT * FROM (VALUES (1), (2)) v", "WITH x AS (INSERT INTO u VALUES (1), (2) RETURNING a) INSERT INTO t SELECT a FROM x",
		"SELECT a FROM t WHERE b IN (1, 2) AND c NOT IN (3)", "SELECT a FROM t WHERE b NOT IN (1)", "SELECT a FROM t WHERE b IN (SELECT c FROM u)",
		"SELECT a FROM t WHERE b = ANY (SELECT c FROM u)", "SELECT a FROM t WHERE b = any($1)", "SELECT a FROM t WHERE b <> ALL ($1)",
		"UPDATE t SET a = 1 WHERE (b, c) IN ((1, 2), (3, 4))", "DELETE FROM t WHERE b = SOME (ARRAY[1, 2])", "SELECT position('a' IN b) FROM t",
	}
	files, _ := filepath.Glob("testdata/*.sql")
	for _, f := range files {
		for _, c := range readCases(t, f) {
			corpus = append(corpus, c.SQL)
		}
	}
	for _, s := range lexerCases {
		corpus = append(corpus, s)
	}
	for _, sql := range corpus {
		all := lex(sql, nil)
		var toks []token
		for _, tk := range all {
			if tk.kind != tkComment && tk.kind != tkBadComment {
				toks = append(toks, tk)
			}
		}
		for _, sp := range splitStatements(sql, toks) {
			stoks := toks[sp.lo:sp.hi]
			text := sql[stoks[0].start:stoks[len(stoks)-1].end]
			want, kind := treeTextFacts(t, text)
			if kind == KindUnknown {
				continue
			}
			if got := readTextFacts(sql, stoks, kind); got != want {
				t.Errorf("%q: tokens give %+v, the parse tree %+v", text, got, want)
			}
		}
	}
}

func TestFirstChar(t *testing.T) {
	tests := []struct {
		lit  string
		want byte
		ok   bool
	}{
		{"'abc'", 'a', true},
		{"''", 0, false},
		{"''''", '\'', true},
		{"E'\\x25a'", '%', true},
		{"E'\\045'", '%', true},
		{"E'\\%'", '%', true},
		{"E'\\u0025'", '%', true},
		{"e'x'", 'x', true},
		{"U&'\\0025'", '%', true},
		{"U&'\\+000025'", '%', true},
		{"u&'_'", '_', true},
		{"$$%$$", '%', true},
		{"$t$_x$t$", '_', true},
		{"$$$$", 0, false},
		{"$t$$t$", 0, false},
	}
	for _, tt := range tests {
		got, ok := firstChar(tt.lit, readStandard)
		if got != tt.want || ok != tt.ok {
			t.Errorf("firstChar(%q) = %q, %v; want %q, %v", tt.lit, got, ok, tt.want, tt.ok)
		}
	}
	// standard_conforming_strings off: '...' reads as E'...'.
	for _, tt := range []struct {
		lit  string
		read strRead
		want byte
		ok   bool
	}{
		{"'\\%x'", readEscapes, '%', true},
		{"'\\%x'", readStandard, '\\', true},
		{"'\\%x'", readEither, '\\', true},
		{"'\\x5f'", readEscapes, '_', true},
		{"'\\''", readEscapes, '\'', true},
		{"''", readEscapes, 0, false},
	} {
		if got, ok := firstChar(tt.lit, tt.read); got != tt.want || ok != tt.ok {
			t.Errorf("firstChar(%q, %d) = %q, %v; want %q, %v", tt.lit, tt.read, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseInteger(t *testing.T) {
	tests := []struct {
		s    string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42", 42, true}, {"1_000", 1000, true}, {"0x1F", 31, true}, {"0o17", 15, true},
		{"0b101", 5, true}, {"9223372036854775807", 1<<63 - 1, true}, {"9223372036854775808", 0, false},
		{"1.5", 0, false}, {"1e3", 0, false}, {".5", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseInteger(tt.s)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseInteger(%q) = %d, %v; want %d, %v", tt.s, got, ok, tt.want, tt.ok)
		}
	}
	if !strings.HasPrefix(strconv.Itoa(1<<31-1), "2147483647") || !fitsInt32("2147483647") || fitsInt32("2147483648") {
		t.Error("fitsInt32 is off at 2^31")
	}
}
