package fingerprint

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Facts come from two places. Most are properties of the parse tree that
// pg_query's fingerprint keeps, so texts with one fingerprint share them and a
// Cache computes them once per fingerprint (parseFacts). Some depend on what
// the fingerprint throws away (literal values, parameter numbers, the length
// of a VALUES list, and LIMIT and OFFSET, which pg_query ignores when they
// are constants or parameters: "SELECT * FROM t" and "... LIMIT 5 OFFSET 10"
// have one fingerprint, and so do VALUES ($1) and VALUES ($1), ($2), and
// id = $1, id IN ($1, $2) and id = ANY($1)). Those are read from each text's
// tokens (withTextFacts): HasLimit, HasOffset, Offset, OffsetParam,
// LeadingWildcardLike, LikeParams, ValuesRows and KeyList, and, for the
// lost_update rule, KeyValues (which parameter or literal a key column is
// compared with) and Isolation (BEGIN ISOLATION LEVEL SERIALIZABLE and
// BEGIN may share a fingerprint; SET default_transaction_isolation's value
// is a literal).
// facts_test.go checks the token reading against the parse tree.

// parseFacts parses one statement, which pg_query could fingerprint, and
// reads its facts.
func parseFacts(text string) (*Facts, error) {
	// The parse tree reaches Go as protobuf, whose strings must be UTF-8:
	// replace invalid bytes (the server would reject them anyway).
	text = strings.ToValidUTF8(text, "\uFFFD")
	tree, err := pg_query.Parse(text)
	if err != nil || len(tree.GetStmts()) != 1 || tree.Stmts[0].GetStmt() == nil {
		// Too deep a tree for the protobuf decoder, say.
		return &Facts{Kind: KindUnknown}, &ParseError{Message: "statement parsed but could not be analyzed"}
	}
	return treeFacts(tree.Stmts[0].Stmt), nil
}

// treeFacts reads the facts of one statement's parse tree. The four facts
// withTextFacts sets are left zero.
func treeFacts(stmt *pg_query.Node) *Facts {
	f := &Facts{Kind: kindOf(stmt)}
	var (
		written []*pg_query.RangeVar // targets, by identity
		scope   []protoreflect.ProtoMessage
		sel     *pg_query.SelectStmt
	)
	switch n := stmt.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		sel = n.SelectStmt
		if sel.GetIntoClause().GetRel() != nil {
			written = append(written, sel.IntoClause.Rel)
		}
		scope = append(scope, sel)
		f.AggregateOnly = aggregateOnly(sel)
		f.EqualityColumns = equalityColumns(sel.WhereClause)
		f.ReadColumns = readColumns(sel)
	case *pg_query.Node_InsertStmt:
		scope = append(scope, n.InsertStmt)
	case *pg_query.Node_UpdateStmt:
		scope = append(scope, n.UpdateStmt)
		f.EqualityColumns = equalityColumns(n.UpdateStmt.WhereClause)
		f.NoWhere = n.UpdateStmt.WhereClause == nil
		f.SetValues, f.SetSelf = setColumns(n.UpdateStmt.TargetList)
	case *pg_query.Node_DeleteStmt:
		scope = append(scope, n.DeleteStmt)
		f.EqualityColumns = equalityColumns(n.DeleteStmt.WhereClause)
		f.NoWhere = n.DeleteStmt.WhereClause == nil
	case *pg_query.Node_MergeStmt:
		scope = append(scope, n.MergeStmt)
	case *pg_query.Node_CopyStmt:
		if n.CopyStmt.IsFrom {
			written = append(written, n.CopyStmt.Relation)
		}
		scope = append(scope, n.CopyStmt)
	case *pg_query.Node_CreateTableAsStmt:
		if n.CreateTableAsStmt.GetInto().GetRel() != nil {
			written = append(written, n.CreateTableAsStmt.Into.Rel)
		}
		scope = append(scope, n.CreateTableAsStmt)
	case *pg_query.Node_TruncateStmt:
		for _, r := range n.TruncateStmt.Relations {
			if rv := r.GetRangeVar(); rv != nil {
				written = append(written, rv)
			}
		}
	case *pg_query.Node_ExplainStmt:
		scope = appendNode(scope, n.ExplainStmt.Query)
	case *pg_query.Node_PrepareStmt:
		scope = appendNode(scope, n.PrepareStmt.Query)
	case *pg_query.Node_DeclareCursorStmt:
		scope = appendNode(scope, n.DeclareCursorStmt.Query)
	}

	var refs []*pg_query.RangeVar
	ctes := map[string]*pg_query.SelectStmt{}
	for _, m := range scope {
		walk(m, func(m protoreflect.ProtoMessage) bool {
			switch x := m.(type) {
			case *pg_query.RangeVar:
				refs = append(refs, x)
			case *pg_query.CommonTableExpr:
				ctes[x.Ctename] = x.GetCtequery().GetSelectStmt() // nil for INSERT ... RETURNING and such
			case *pg_query.InsertStmt:
				written = append(written, x.Relation) // in WITH queries too
			case *pg_query.UpdateStmt:
				written = append(written, x.Relation)
			case *pg_query.DeleteStmt:
				written = append(written, x.Relation)
			case *pg_query.MergeStmt:
				written = append(written, x.Relation)
			case *pg_query.LockingClause:
				f.Locking = true
				return false // FOR UPDATE OF names aliases, not tables
			case *pg_query.A_Expr:
				if isLike(x) {
					if c := likeColumn(x.Lexpr); c != "" {
						f.LikeColumns = append(f.LikeColumns, c)
					}
				}
			}
			return true
		})
	}
	f.LikeColumns = sortedSet(f.LikeColumns)
	for _, rv := range written {
		if rv != nil {
			f.TablesWritten = append(f.TablesWritten, tableName(rv))
		}
	}
	if sel != nil {
		sc := starContext{ctes: ctes}
		f.SelectStar = sc.selectStar(sel)
	}
	for _, rv := range refs {
		if _, cte := ctes[rv.Relname]; slices.Contains(written, rv) || rv.Schemaname == "" && rv.Catalogname == "" && cte {
			continue
		}
		f.TablesRead = append(f.TablesRead, tableName(rv))
	}
	f.TablesRead = sortedSet(f.TablesRead)
	f.TablesWritten = sortedSet(f.TablesWritten)
	return f
}

func appendNode(scope []protoreflect.ProtoMessage, n *pg_query.Node) []protoreflect.ProtoMessage {
	if n != nil {
		scope = append(scope, n)
	}
	return scope
}

func kindOf(stmt *pg_query.Node) Kind {
	switch stmt.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		return KindSelect
	case *pg_query.Node_InsertStmt:
		return KindInsert
	case *pg_query.Node_UpdateStmt:
		return KindUpdate
	case *pg_query.Node_DeleteStmt:
		return KindDelete
	case *pg_query.Node_MergeStmt:
		return KindMerge
	case *pg_query.Node_CopyStmt:
		return KindCopy
	case *pg_query.Node_ExplainStmt, *pg_query.Node_CallStmt, *pg_query.Node_DoStmt,
		*pg_query.Node_PrepareStmt, *pg_query.Node_ExecuteStmt, *pg_query.Node_DeclareCursorStmt,
		*pg_query.Node_FetchStmt, *pg_query.Node_ClosePortalStmt:
		return KindOther
	}
	return KindUtility
}

func tableName(rv *pg_query.RangeVar) string {
	name := rv.Relname
	if rv.Schemaname != "" {
		name = rv.Schemaname + "." + name
	}
	if rv.Catalogname != "" {
		name = rv.Catalogname + "." + name
	}
	return name
}

// sortedSet sorts names and drops duplicates; nil stays nil.
func sortedSet(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// walk calls visit for m and every message below it. visit returns false to
// skip what lies below a message. The order of siblings is unspecified.
func walk(m protoreflect.ProtoMessage, visit func(protoreflect.ProtoMessage) bool) {
	if m == nil {
		return
	}
	walkMessage(m.ProtoReflect(), visit)
}

func walkMessage(m protoreflect.Message, visit func(protoreflect.ProtoMessage) bool) {
	if !m.IsValid() || !visit(m.Interface()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkMessage(l.Get(i).Message(), visit)
			}
			return true
		}
		walkMessage(v.Message(), visit)
		return true
	})
}

// starContext decides whether a SELECT's star reaches a stored table.
type starContext struct {
	ctes  map[string]*pg_query.SelectStmt
	depth int // guards against WITH RECURSIVE loops
}

func (c *starContext) selectStar(s *pg_query.SelectStmt) bool {
	if s == nil || c.depth > 16 {
		return false
	}
	c.depth++
	defer func() { c.depth-- }()
	if s.Op != pg_query.SetOperation_SETOP_NONE && s.Op != pg_query.SetOperation_SET_OPERATION_UNDEFINED {
		return c.selectStar(s.Larg) || c.selectStar(s.Rarg)
	}
	for _, t := range s.TargetList {
		fields := t.GetResTarget().GetVal().GetColumnRef().GetFields()
		if len(fields) == 0 || fields[len(fields)-1].GetAStar() == nil {
			continue
		}
		if len(fields) == 1 {
			for _, item := range s.FromClause {
				if c.itemStar(item) {
					return true
				}
			}
			continue
		}
		item := findFromItem(s.FromClause, fields[len(fields)-2].GetString_().GetSval())
		if item == nil || c.itemStar(item) {
			return true // a t.* we cannot resolve counts
		}
	}
	return false
}

func (c *starContext) itemStar(item *pg_query.Node) bool {
	switch x := item.GetNode().(type) {
	case *pg_query.Node_RangeVar:
		if rv := x.RangeVar; rv.Schemaname == "" {
			if q, ok := c.ctes[rv.Relname]; ok {
				return q != nil && c.selectStar(q)
			}
		}
		return true
	case *pg_query.Node_RangeSubselect:
		return c.selectStar(x.RangeSubselect.GetSubquery().GetSelectStmt())
	case *pg_query.Node_JoinExpr:
		return c.itemStar(x.JoinExpr.Larg) || c.itemStar(x.JoinExpr.Rarg)
	case *pg_query.Node_RangeTableSample:
		return c.itemStar(x.RangeTableSample.Relation)
	}
	return false
}

// findFromItem finds the FROM item a qualifier names: by alias, or for a
// table without alias by its name.
func findFromItem(items []*pg_query.Node, name string) *pg_query.Node {
	for _, item := range items {
		switch x := item.GetNode().(type) {
		case *pg_query.Node_RangeVar:
			if a := x.RangeVar.GetAlias(); a != nil && a.Aliasname == name || a == nil && x.RangeVar.Relname == name {
				return item
			}
		case *pg_query.Node_RangeSubselect:
			if x.RangeSubselect.GetAlias().GetAliasname() == name {
				return item
			}
		case *pg_query.Node_RangeFunction:
			if x.RangeFunction.GetAlias().GetAliasname() == name {
				return item
			}
		case *pg_query.Node_RangeTableSample:
			if findFromItem([]*pg_query.Node{x.RangeTableSample.Relation}, name) != nil {
				return item
			}
		case *pg_query.Node_JoinExpr:
			if x.JoinExpr.GetAlias().GetAliasname() == name {
				return item
			}
			if found := findFromItem([]*pg_query.Node{x.JoinExpr.Larg, x.JoinExpr.Rarg}, name); found != nil {
				return found
			}
		}
	}
	return nil
}

// isAggregateName reports whether name is one of PostgreSQL's built-in
// aggregate functions that may be called without aggregate syntax.
func isAggregateName(name string) bool {
	switch name {
	case "count", "sum", "avg", "min", "max", "bool_and", "bool_or", "every", "any_value",
		"array_agg", "string_agg", "json_agg", "jsonb_agg", "json_agg_strict", "jsonb_agg_strict",
		"json_object_agg", "jsonb_object_agg", "json_object_agg_strict", "jsonb_object_agg_strict",
		"json_object_agg_unique", "jsonb_object_agg_unique",
		"json_object_agg_unique_strict", "jsonb_object_agg_unique_strict",
		"xmlagg", "bit_and", "bit_or", "bit_xor", "range_agg", "range_intersect_agg",
		"stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
		"corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy", "regr_count",
		"regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy":
		return true
	}
	return false
}

func isAggregate(fc *pg_query.FuncCall) bool {
	if fc.AggStar || fc.AggDistinct || fc.AggWithinGroup || len(fc.AggOrder) > 0 || fc.AggFilter != nil {
		return true
	}
	name := fc.Funcname
	if len(name) == 2 && name[0].GetString_().GetSval() == "pg_catalog" {
		name = name[1:]
	}
	return len(name) == 1 && isAggregateName(name[0].GetString_().GetSval())
}

func aggregateOnly(s *pg_query.SelectStmt) bool {
	if s.Op != pg_query.SetOperation_SETOP_NONE || len(s.GroupClause) > 0 || len(s.TargetList) == 0 {
		return false
	}
	found, other := false, false
	for _, t := range s.TargetList {
		walk(t.GetResTarget().GetVal(), func(m protoreflect.ProtoMessage) bool {
			switch x := m.(type) {
			case *pg_query.FuncCall:
				if x.Over != nil {
					other = true // a window function returns a row per input row
					return false
				}
				if isAggregate(x) {
					found = true
					return false
				}
			case *pg_query.ColumnRef:
				other = true
				return false
			case *pg_query.SubLink:
				return false
			}
			return true
		})
	}
	return found && !other
}

// equalityColumns lists the columns a WHERE clause compares for equality
// with values.
func equalityColumns(where *pg_query.Node) []string {
	var cols []string
	var visit func(n *pg_query.Node)
	visit = func(n *pg_query.Node) {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_BoolExpr:
			if x.BoolExpr.Boolop == pg_query.BoolExprType_AND_EXPR || x.BoolExpr.Boolop == pg_query.BoolExprType_OR_EXPR {
				for _, a := range x.BoolExpr.Args {
					visit(a)
				}
			}
		case *pg_query.Node_AExpr:
			e := x.AExpr
			if operatorName(e.Name) != "=" {
				return
			}
			switch e.Kind {
			case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT:
				addPair(e.Lexpr, e.Rexpr, &cols)
			case pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_IN:
				if !isValue(e.Rexpr) {
					return
				}
				if c := columnName(e.Lexpr); c != "" {
					cols = append(cols, c)
				} else if row := e.Lexpr.GetRowExpr(); row != nil {
					for _, a := range row.Args {
						if c := columnName(a); c != "" {
							cols = append(cols, c)
						}
					}
				}
			}
		}
	}
	visit(where)
	return sortedSet(cols)
}

// readColumns lists the columns a SELECT's top-level list reads, by the
// last part of their name; subqueries in the list are not looked into.
func readColumns(s *pg_query.SelectStmt) []string {
	if s.Op != pg_query.SetOperation_SETOP_NONE {
		return nil
	}
	var cols []string
	for _, t := range s.TargetList {
		walk(t.GetResTarget().GetVal(), func(m protoreflect.ProtoMessage) bool {
			switch x := m.(type) {
			case *pg_query.ColumnRef:
				if f := x.Fields; len(f) > 0 && f[len(f)-1].GetString_() != nil {
					cols = append(cols, f[len(f)-1].GetString_().Sval)
				}
				return false
			case *pg_query.SubLink:
				return false
			}
			return true
		})
	}
	return sortedSet(cols)
}

// setColumns sorts the columns of an UPDATE's SET list into those assigned
// a value the client sent (a bare parameter or literal) and those assigned
// an expression of the column itself.
func setColumns(targets []*pg_query.Node) (values, self []string) {
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil || rt.Name == "" {
			continue
		}
		val := rt.Val
		if ma := val.GetMultiAssignRef(); ma != nil {
			// SET (a, b) = ($1, b + 1): the column's element of the row.
			row := ma.GetSource().GetRowExpr()
			if row == nil || ma.Colno < 1 || int(ma.Colno) > len(row.Args) {
				continue
			}
			val = row.Args[ma.Colno-1]
		}
		switch {
		case bareValue(val):
			values = append(values, rt.Name)
		case refersTo(val, rt.Name):
			self = append(self, rt.Name)
		}
	}
	return sortedSet(values), sortedSet(self)
}

// bareValue reports whether n is a parameter or a constant, through casts.
func bareValue(n *pg_query.Node) bool {
	for {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
			continue
		case *pg_query.Node_ParamRef, *pg_query.Node_AConst:
			return true
		}
		return false
	}
}

// refersTo reports whether the expression n reads the column col (by the
// last part of its name), outside subqueries.
func refersTo(n *pg_query.Node, col string) bool {
	found := false
	walk(n, func(m protoreflect.ProtoMessage) bool {
		switch x := m.(type) {
		case *pg_query.ColumnRef:
			if f := x.Fields; len(f) > 0 && f[len(f)-1].GetString_().GetSval() == col {
				found = true
			}
			return false
		case *pg_query.SubLink:
			return false
		}
		return !found
	})
	return found
}

// isLike reports whether e is a LIKE or ILIKE, negated or not, in either
// spelling (a LIKE b, a ~~ b).
func isLike(e *pg_query.A_Expr) bool {
	switch e.Kind {
	case pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE:
		return true
	case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
		switch operatorName(e.Name) {
		case "~~", "~~*", "!~~", "!~~*":
			return true
		}
	}
	return false
}

// likeColumn returns the column a LIKE matches, looking through casts,
// COLLATE and function calls (UPPER(name), lower(name::text)), or "".
func likeColumn(n *pg_query.Node) string {
	for depth := 0; n != nil && depth < 8; depth++ {
		if c := columnName(n); c != "" {
			return c
		}
		switch x := n.GetNode().(type) {
		case *pg_query.Node_FuncCall:
			if len(x.FuncCall.Args) == 0 {
				return ""
			}
			n = x.FuncCall.Args[0]
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
		case *pg_query.Node_CollateClause:
			n = x.CollateClause.Arg
		default:
			return ""
		}
	}
	return ""
}

// addPair adds the column of "l = r" when the other side is a value, and
// for row comparisons, (a, b) = ($1, $2), the columns pair by pair.
func addPair(l, r *pg_query.Node, cols *[]string) {
	if c := columnName(l); c != "" && isValue(r) {
		*cols = append(*cols, c)
		return
	}
	if c := columnName(r); c != "" && isValue(l) {
		*cols = append(*cols, c)
		return
	}
	if lr, rr := l.GetRowExpr(), r.GetRowExpr(); lr != nil && rr != nil && len(lr.Args) == len(rr.Args) {
		for i := range lr.Args {
			addPair(lr.Args[i], rr.Args[i], cols)
		}
	}
}

// operatorName returns an operator's name without schema ("=" for
// OPERATOR(pg_catalog.=)).
func operatorName(name []*pg_query.Node) string {
	if len(name) == 0 {
		return ""
	}
	return name[len(name)-1].GetString_().GetSval()
}

// columnName returns the column a node refers to, qualified as written, or
// "". Casts and COLLATE around the column are looked through.
func columnName(n *pg_query.Node) string {
	for {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
			continue
		case *pg_query.Node_CollateClause:
			n = x.CollateClause.Arg
			continue
		case *pg_query.Node_ColumnRef:
			parts := make([]string, 0, len(x.ColumnRef.Fields))
			for _, f := range x.ColumnRef.Fields {
				s := f.GetString_()
				if s == nil {
					return ""
				}
				parts = append(parts, s.Sval)
			}
			return strings.Join(parts, ".")
		}
		return ""
	}
}

// isValue reports whether an expression involves no column and no subquery.
func isValue(n *pg_query.Node) bool {
	if n == nil {
		return false
	}
	ok := true
	walk(n, func(m protoreflect.ProtoMessage) bool {
		switch m.(type) {
		case *pg_query.ColumnRef, *pg_query.SubLink:
			ok = false
			return false
		}
		return ok
	})
	return ok
}

// textFacts are the facts read from a statement's tokens.
type textFacts struct {
	hasLimit, hasOffset bool
	offset              int64
	offsetParam         int
	leadingWildcardLike bool
	likeParams          uint64
	valuesRows          int
	keyList             bool
}

// withTextFacts returns base with the token-read facts of this text: base
// itself when they agree, which is the common case, else a copy.
func withTextFacts(base *Facts, sql string, toks []token) *Facts {
	tf := readTextFacts(sql, toks, base.Kind)
	rf := readRMWFacts(sql, toks, base)
	if base.HasLimit == tf.hasLimit && base.HasOffset == tf.hasOffset && base.Offset == tf.offset &&
		base.OffsetParam == tf.offsetParam && base.LeadingWildcardLike == tf.leadingWildcardLike &&
		base.LikeParams == tf.likeParams && base.ValuesRows == tf.valuesRows && base.KeyList == tf.keyList &&
		rf.same(base) {
		return base
	}
	f := *base
	tf.apply(&f)
	rf.apply(&f)
	return &f
}

func (tf textFacts) apply(f *Facts) {
	f.HasLimit, f.HasOffset, f.Offset, f.OffsetParam = tf.hasLimit, tf.hasOffset, tf.offset, tf.offsetParam
	f.LeadingWildcardLike, f.LikeParams = tf.leadingWildcardLike, tf.likeParams
	f.ValuesRows, f.KeyList = tf.valuesRows, tf.keyList
}

// readTextFacts reads LIMIT, OFFSET, LIKE patterns and the rows of an
// INSERT's VALUES list from a statement's tokens (comments removed). The
// top-level LIMIT and OFFSET of a SELECT, and the VALUES list of an INSERT,
// are the ones outside all parentheses (after removing parentheses around
// the whole statement): those inside belong to subqueries, WITH queries and
// parenthesized UNION branches.
func readTextFacts(sql string, toks []token, kind Kind) textFacts {
	var tf textFacts
	switch kind {
	case KindSelect, KindInsert, KindUpdate, KindDelete, KindMerge:
	default:
		return tf
	}
	lo, hi := 0, len(toks)
	for hi-lo >= 2 && isOp(sql, toks[lo], "(") && closingParen(sql, toks, lo) == hi-1 {
		lo++
		hi--
	}
	depth := 0
	for i := lo; i < hi; i++ {
		t := toks[i]
		if t.kind == tkOp {
			switch sql[t.start:t.end] {
			case "(", "[":
				depth++
			case ")", "]":
				depth--
			case "~~", "~~*", "!~~", "!~~*":
				tf.like(sql, toks[i+1:hi])
			case "=":
				// = ANY (...), = SOME (...) over values, not a subquery.
				if i+2 < hi && (isWord(sql, toks[i+1], "any") || isWord(sql, toks[i+1], "some")) &&
					isOp(sql, toks[i+2], "(") && !startsQuery(sql, toks[i+3:hi]) {
					tf.keyList = true
				}
			}
			continue
		}
		if t.kind != tkWord {
			continue
		}
		if i > lo && (isOp(sql, toks[i-1], ".") || isWord(sql, toks[i-1], "as")) {
			continue // a column label, as in t.limit or AS offset
		}
		switch {
		case isWord(sql, t, "like") || isWord(sql, t, "ilike"):
			tf.like(sql, toks[i+1:hi])
		case isWord(sql, t, "in"):
			// IN (list), not NOT IN, not IN (subquery).
			if i+1 < hi && isOp(sql, toks[i+1], "(") && !startsQuery(sql, toks[i+2:hi]) &&
				(i == lo || !isWord(sql, toks[i-1], "not")) {
				tf.keyList = true
			}
		case kind == KindInsert && depth == 0 && tf.valuesRows == 0 && isWord(sql, t, "values"):
			tf.valuesRows = valuesRows(sql, toks[i+1:hi])
		case kind != KindSelect || depth != 0:
		case isWord(sql, t, "limit"):
			if i+1 < hi && !isWord(sql, toks[i+1], "all") && !isWord(sql, toks[i+1], "null") {
				tf.hasLimit = true
			}
		case isWord(sql, t, "fetch"):
			if i+1 < hi && (isWord(sql, toks[i+1], "first") || isWord(sql, toks[i+1], "next")) {
				tf.hasLimit = true
			}
		case isWord(sql, t, "offset"):
			tf.hasOffset = true
			tf.offset = offsetValue(sql, toks[i+1:hi])
			tf.offsetParam = offsetParam(sql, toks[i+1:hi])
		}
	}
	return tf
}

// like notes the pattern that follows a LIKE (the tokens after it): a
// literal that starts with a wildcard, or a parameter the pattern starts
// with.
func (tf *textFacts) like(sql string, toks []token) {
	tf.leadingWildcardLike = tf.leadingWildcardLike || leadingWildcard(sql, toks)
	if n := patternParam(sql, toks); n > 0 {
		tf.likeParams |= 1 << (n - 1)
	}
}

// startsQuery reports whether toks start a subquery.
func startsQuery(sql string, toks []token) bool {
	return len(toks) > 0 && (isWord(sql, toks[0], "select") || isWord(sql, toks[0], "with") ||
		isWord(sql, toks[0], "values") || isWord(sql, toks[0], "table"))
}

// valuesRows counts the rows of the VALUES list whose tokens follow VALUES:
// parenthesized lists separated by commas.
func valuesRows(sql string, toks []token) int {
	rows := 0
	for i := 0; i < len(toks) && isOp(sql, toks[i], "("); {
		end := closingParen(sql, toks, i)
		if end < 0 {
			break
		}
		rows++
		if end+1 >= len(toks) || !isOp(sql, toks[end+1], ",") {
			break
		}
		i = end + 2
	}
	return rows
}

// paramOf returns n for a $n token (up to 64, the parameters the
// execution's bits cover), or 0.
func paramOf(sql string, t token) int {
	if t.kind != tkParam {
		return 0
	}
	if n := paramNumber(sql[t.start+1 : t.end]); n <= 64 {
		return int(n)
	}
	return 0
}

// patternParam returns n when the tokens after LIKE start, possibly inside
// UPPER(...), LOWER(...), ANY (ARRAY[...]) and the like, with the parameter
// $n, else 0.
func patternParam(sql string, toks []token) int {
	for _, t := range toks {
		switch {
		case isOp(sql, t, "("), isOp(sql, t, "["),
			isWord(sql, t, "upper"), isWord(sql, t, "lower"), isWord(sql, t, "any"),
			isWord(sql, t, "all"), isWord(sql, t, "some"), isWord(sql, t, "array"):
			continue
		}
		return paramOf(sql, t)
	}
	return 0
}

// offsetParam returns n when the tokens after OFFSET are the parameter $n
// alone (in parentheses or not, then nothing or a keyword), else 0.
func offsetParam(sql string, toks []token) int {
	i, open := 0, 0
	for i < len(toks) && isOp(sql, toks[i], "(") {
		i++
		open++
	}
	if i >= len(toks) {
		return 0
	}
	n := paramOf(sql, toks[i])
	j := i + 1
	for ; open > 0; open-- {
		if j >= len(toks) || !isOp(sql, toks[j], ")") {
			return 0
		}
		j++
	}
	if j < len(toks) && toks[j].kind != tkWord {
		return 0 // $1 + 1, $1::int8
	}
	return n
}

// closingParen returns the index of the parenthesis closing toks[open].
func closingParen(sql string, toks []token, open int) int {
	depth := 0
	for i := open; i < len(toks); i++ {
		switch {
		case isOp(sql, toks[i], "("):
			depth++
		case isOp(sql, toks[i], ")"):
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// offsetValue reads the integer literal that follows OFFSET, or returns -1
// when OFFSET is followed by anything else: a parameter, an expression. A
// string constant that holds an integer ('1500', as drivers that inline
// parameters write one) is read as the server reads it, as that integer.
func offsetValue(sql string, toks []token) int64 {
	i, open := 0, 0
	for i < len(toks) && isOp(sql, toks[i], "(") {
		i++
		open++
	}
	neg := false // a minus sign folds into the constant; a plus sign does not
	if i < len(toks) && isOp(sql, toks[i], "-") {
		neg = true
		i++
	}
	if i >= len(toks) {
		return -1
	}
	lit := sql[toks[i].start:toks[i].end]
	switch t := toks[i]; {
	case t.kind == tkNumber:
	case t.kind == tkString && t.read != readEither && len(lit) > 2 && lit[0] == '\'' && !strings.ContainsAny(lit[1:len(lit)-1], "'\\"):
		lit = lit[1 : len(lit)-1]
		if neg || lit[0] == '-' || lit[0] == '+' {
			return -1 // a sign inside the string: rare; not read
		}
	default:
		return -1
	}
	v, ok := parseInteger(lit)
	if !ok {
		return -1
	}
	// The number must be the whole expression: then come the closing
	// parentheses, and then nothing or a keyword (ROWS, FETCH, FOR, LIMIT).
	j := i + 1
	for ; open > 0; open-- {
		if j >= len(toks) || !isOp(sql, toks[j], ")") {
			return -1
		}
		j++
	}
	if j < len(toks) && toks[j].kind != tkWord {
		return -1
	}
	if neg {
		v = -v
	}
	return v
}

// parseInteger parses an integer literal in any of PostgreSQL's notations
// (42, 1_000, 0x2A, 0o52, 0b101010).
func parseInteger(s string) (int64, bool) {
	base := int64(10)
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x', 'X':
			base, s = 16, s[2:]
		case 'o', 'O':
			base, s = 8, s[2:]
		case 'b', 'B':
			base, s = 2, s[2:]
		}
	}
	var v int64
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d int64
		switch {
		case c == '_':
			continue
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return 0, false // a numeric: 1.5, 1e3
		}
		if d >= base || v > (1<<63-1-d)/base {
			return 0, false
		}
		v = v*base + d
		digits++
	}
	return v, digits > 0
}

// leadingWildcard reports whether the tokens after LIKE start, possibly
// inside UPPER(...), LOWER(...), ANY (ARRAY[...]) and the like, with a string
// literal whose first character is % or _.
func leadingWildcard(sql string, toks []token) bool {
	for _, t := range toks {
		switch {
		case isOp(sql, t, "("), isOp(sql, t, "["),
			isWord(sql, t, "upper"), isWord(sql, t, "lower"), isWord(sql, t, "any"),
			isWord(sql, t, "all"), isWord(sql, t, "some"), isWord(sql, t, "array"):
			continue
		case t.kind == tkString:
			c, ok := firstChar(sql[t.start:t.end], t.read)
			return ok && (c == '%' || c == '_')
		}
		return false
	}
	return false
}

// firstChar returns the first character of a string constant's value, as a
// byte, for the forms '...', E'...', U&'...' and $tag$...$tag$; read is the
// token's (a '...' read with escapes reads as E'...'; one whose reading is
// not known is read as pg_query reads it, with the setting on).
func firstChar(lit string, read strRead) (byte, bool) {
	switch {
	case lit[0] == '$':
		open := strings.IndexByte(lit[1:], '$') + 2 // length of $tag$
		if len(lit) <= 2*open {
			return 0, false // $$$$: empty
		}
		return lit[open], true
	case lit[0] == 'e' || lit[0] == 'E':
		if len(lit) < 3 {
			return 0, false
		}
		return firstEscaped(lit[2:])
	case lit[0] == '\'' && read == readEscapes:
		return firstEscaped(lit[1:])
	case lit[0] == 'u' || lit[0] == 'U':
		body := lit[3:]
		if len(body) > 1 && body[0] == '\\' {
			if body[1] == '\\' {
				return '\\', true
			}
			if body[1] == '+' {
				return unicodeEscape(body[2:])
			}
			return unicodeEscape(body[1:])
		}
		return firstPlain(body)
	}
	return firstPlain(lit[1:])
}

// firstEscaped returns the first character of the body (after the opening
// quote) of a string with backslash escapes.
func firstEscaped(body string) (byte, bool) {
	if len(body) == 0 {
		return 0, false
	}
	if body[0] != '\\' {
		return firstPlain(body)
	}
	if len(body) < 2 {
		return 0, false
	}
	switch c := body[1]; {
	case c == 'x' && len(body) > 2 && isHex(body[2]):
		v := hexVal(body[2])
		if len(body) > 3 && isHex(body[3]) {
			v = v<<4 | hexVal(body[3])
		}
		return v, true
	case c >= '0' && c <= '7':
		v := c - '0'
		for i := 2; i < 4 && i < len(body) && body[i] >= '0' && body[i] <= '7'; i++ {
			v = v<<3 | (body[i] - '0')
		}
		return v, true
	case c == 'u' || c == 'U':
		return unicodeEscape(body[2:])
	default:
		return c, true
	}
}

// firstPlain returns the first character of a quoted body (after the opening
// quote) in which two quotes stand for one.
func firstPlain(body string) (byte, bool) {
	if len(body) == 0 || body[0] == '\'' && (len(body) == 1 || body[1] != '\'') {
		return 0, false // empty string
	}
	return body[0], true
}

// unicodeEscape decodes the hex digits of a Unicode escape far enough to
// tell an ASCII character.
func unicodeEscape(s string) (byte, bool) {
	var v int
	n := 0
	for n < len(s) && n < 8 && isHex(s[n]) {
		v = v<<4 | int(hexVal(s[n]))
		n++
	}
	if n < 4 || v > 0x7f {
		return 0, n >= 4
	}
	return byte(v), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// rmwFacts are the facts of a read-modify-write that depend on the text
// (Facts.KeyValues, Facts.Isolation): read per text, as textFacts are.
type rmwFacts struct {
	keys       [MaxKeyValues]KeyValue
	n          int
	iso        Isolation
	isoSession bool
}

// readRMWFacts reads the key values of a SELECT or UPDATE with equality
// columns, and the isolation level a utility statement sets.
func readRMWFacts(sql string, toks []token, base *Facts) rmwFacts {
	var rf rmwFacts
	switch base.Kind {
	case KindSelect, KindUpdate:
		if len(base.EqualityColumns) > 0 {
			rf.readKeys(sql, toks, base.EqualityColumns)
		}
	case KindUtility:
		rf.iso, rf.isoSession = readIsolation(sql, toks)
	}
	return rf
}

// same reports whether f already holds these facts.
func (rf *rmwFacts) same(f *Facts) bool {
	return f.Isolation == rf.iso && f.IsolationSession == rf.isoSession && slices.Equal(f.KeyValues, rf.keys[:rf.n])
}

func (rf *rmwFacts) apply(f *Facts) {
	f.Isolation, f.IsolationSession = rf.iso, rf.isoSession
	f.KeyValues = nil
	if rf.n > 0 {
		f.KeyValues = slices.Clone(rf.keys[:rf.n])
	}
}

// readKeys finds, in the top-level WHERE clause (outside subqueries, inside
// any other parentheses), each "col = value" where col is one of the
// equality columns eq and value one parameter or literal, cast or not, that
// nothing else follows but a keyword or a closing parenthesis. The column
// stands after WHERE, AND, OR or an opening parenthesis.
func (rf *rmwFacts) readKeys(sql string, toks []token, eq []string) {
	lo, hi := 0, len(toks)
	for hi-lo >= 2 && isOp(sql, toks[lo], "(") && closingParen(sql, toks, lo) == hi-1 {
		lo++
		hi--
	}
	var (
		depth int    // open parentheses
		subs  uint64 // bit d: the parenthesis at depth d opens a subquery
		where bool
		lits  int // literals up to this token
	)
	for i := 0; i < lo; i++ {
		if isLiteralAt(sql, toks, i) {
			lits++
		}
	}
	for i := lo; i < hi && rf.n < MaxKeyValues; i++ {
		t := toks[i]
		if isLiteralAt(sql, toks, i) {
			lits++
		}
		switch {
		case isOp(sql, t, "("):
			depth++
			if depth < 64 && startsQuery(sql, toks[i+1:hi]) || depth >= 64 {
				subs |= 1 << min(depth, 63)
			}
		case isOp(sql, t, ")"):
			if depth > 0 {
				subs &^= 1 << min(depth, 63)
				depth--
			}
		case depth == 0 && t.kind == tkWord:
			switch {
			case isWord(sql, t, "where"):
				where = true
			case endsWhere(sql, t):
				where = false
			}
		case where && subs == 0 && isOp(sql, t, "="):
			if kv, ok := keyValueAt(sql, toks[:hi], i, eq, lits); ok {
				rf.keys[rf.n] = kv
				rf.n++
			}
		}
	}
}

// endsWhere reports whether the keyword t starts the clause after WHERE.
func endsWhere(sql string, t token) bool {
	for _, w := range []string{"group", "having", "window", "order", "limit", "offset", "fetch", "for", "returning", "union", "intersect", "except"} {
		if isWord(sql, t, w) {
			return true
		}
	}
	return false
}

// keyValueAt reads "col = value" around the = at toks[i]; lits is the
// index in Statement.LiteralKeys the value has if it is a literal.
func keyValueAt(sql string, toks []token, i int, eq []string, lits int) (KeyValue, bool) {
	if i < 1 || i+1 >= len(toks) {
		return KeyValue{}, false
	}
	// The column: a name, maybe qualified, after WHERE, AND, OR or "(".
	j := i - 1
	for j >= 2 && isOp(sql, toks[j-1], ".") {
		j -= 2
	}
	if j > 0 {
		p := toks[j-1]
		if !isOp(sql, p, "(") && !isWord(sql, p, "where") && !isWord(sql, p, "and") && !isWord(sql, p, "or") {
			return KeyValue{}, false
		}
	}
	col, ok := matchColumn(sql, toks[i-1], eq)
	if !ok {
		return KeyValue{}, false
	}
	// The value, then nothing, a cast, a keyword or ")".
	v := toks[i+1]
	if k := i + 2; k < len(toks) {
		n := toks[k]
		if n.kind != tkWord && !isOp(sql, n, ")") && !isOp(sql, n, "::") {
			return KeyValue{}, false
		}
	}
	if n := paramOf(sql, v); n > 0 {
		return KeyValue{Column: col, Param: n}, true
	}
	if isLiteralAt(sql, toks, i+1) {
		return KeyValue{Column: col, Literal: lits}, true
	}
	return KeyValue{}, false
}

// matchColumn finds the equality column whose last name part the
// identifier t spells (an unquoted word folded to lower case, a quoted one
// as written) and returns that part as the parse tree spells it.
func matchColumn(sql string, t token, eq []string) (string, bool) {
	text := sql[t.start:t.end]
	for _, c := range eq {
		name := c[strings.LastIndexByte(c, '.')+1:]
		switch t.kind {
		case tkWord:
			if isWord(sql, t, name) {
				return name, true
			}
		case tkQuoted:
			if len(text) == len(name)+2 && text[0] == '"' && text[1:len(text)-1] == name {
				return name, true
			}
		}
	}
	return "", false
}

// readIsolation reads the isolation level a utility statement sets, and
// whether it sets the session's default rather than the transaction's (see
// Facts.Isolation).
func readIsolation(sql string, toks []token) (Isolation, bool) {
	if len(toks) == 0 {
		return IsolationNone, false
	}
	switch w := toks[0]; {
	case isWord(sql, w, "begin"), isWord(sql, w, "start"):
		return levelAfter(sql, toks[1:]), false
	case isWord(sql, w, "reset"):
		if len(toks) == 2 && (isWord(sql, toks[1], "all") || isWord(sql, toks[1], "default_transaction_isolation")) {
			return IsolationDefault, true
		}
	case isWord(sql, w, "discard"):
		if len(toks) == 2 && isWord(sql, toks[1], "all") {
			return IsolationDefault, true
		}
	case isWord(sql, w, "set"):
		rest, local := toks[1:], false
		if len(rest) > 0 && (isWord(sql, rest[0], "session") || isWord(sql, rest[0], "local")) {
			local = isWord(sql, rest[0], "local")
			rest = rest[1:]
		}
		if len(rest) == 0 {
			break
		}
		switch {
		case isWord(sql, rest[0], "characteristics"):
			return levelAfter(sql, rest[1:]), true
		case isWord(sql, rest[0], "transaction"):
			return levelAfter(sql, rest[1:]), false
		case isWord(sql, rest[0], "default_transaction_isolation"):
			return settingLevel(sql, rest[1:]), !local
		case isWord(sql, rest[0], "transaction_isolation"):
			return settingLevel(sql, rest[1:]), false
		}
	}
	return IsolationNone, false
}

// levelAfter reads ISOLATION LEVEL <level> among the tokens.
func levelAfter(sql string, toks []token) Isolation {
	for i := 0; i+2 < len(toks); i++ {
		if !isWord(sql, toks[i], "isolation") || !isWord(sql, toks[i+1], "level") {
			continue
		}
		switch l := toks[i+2]; {
		case isWord(sql, l, "serializable"):
			return IsolationSerializable
		case isWord(sql, l, "repeatable"):
			return IsolationRepeatableRead
		case isWord(sql, l, "read") && i+3 < len(toks) && isWord(sql, toks[i+3], "committed"):
			return IsolationReadCommitted
		case isWord(sql, l, "read") && i+3 < len(toks) && isWord(sql, toks[i+3], "uncommitted"):
			return IsolationReadUncommitted
		}
	}
	return IsolationNone
}

// settingLevel reads the value of SET default_transaction_isolation or
// transaction_isolation: = or TO, then a string, a word or DEFAULT.
func settingLevel(sql string, toks []token) Isolation {
	if len(toks) != 2 || !isOp(sql, toks[0], "=") && !isWord(sql, toks[0], "to") {
		return IsolationNone
	}
	v := toks[1]
	text := sql[v.start:v.end]
	switch {
	case isWord(sql, v, "default"):
		return IsolationDefault
	case v.kind == tkString && len(text) >= 2 && text[0] == '\'':
		text = text[1 : len(text)-1]
	case v.kind != tkWord:
		return IsolationNone
	}
	switch {
	case strings.EqualFold(text, "serializable"):
		return IsolationSerializable
	case strings.EqualFold(text, "repeatable read"):
		return IsolationRepeatableRead
	case strings.EqualFold(text, "read committed"):
		return IsolationReadCommitted
	case strings.EqualFold(text, "read uncommitted"):
		return IsolationReadUncommitted
	}
	return IsolationNone
}
