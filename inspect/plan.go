package inspect

import (
	"encoding/json"
	"errors"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// maxRelations bounds the tables of one plan whose catalogs are read.
const maxRelations = 16

// relation is a table a plan node reads.
type relation struct {
	schema, name string
}

// key is the relation as the detector and the API name it: schema-qualified
// unless in public.
func (r relation) key() string {
	if r.schema == "" || r.schema == "public" {
		return r.name
	}
	return r.schema + "." + r.name
}

// seqScan is a Seq Scan node under a filter.
type seqScan struct {
	rel     relation
	columns []string // the filter's columns compared with a value
	likes   []string // the filter's columns matched with LIKE or ILIKE
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node the rule reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	Schema       string     `json:"Schema"`
	Filter       string     `json:"Filter"`
	Plans        []planNode `json:"Plans"`
}

// readPlan reads EXPLAIN's JSON: the Seq Scans under a filter that compares
// a column with a value or matches one with LIKE, and every relation the
// plan reads (at most maxRelations), in plan order.
func readPlan(raw []byte) ([]seqScan, []relation, error) {
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, err
	}
	if len(doc) == 0 {
		return nil, nil, errors.New("EXPLAIN returned no plan")
	}
	var scans []seqScan
	var rels []relation
	var walk func(n *planNode)
	walk = func(n *planNode) {
		if n.RelationName != "" {
			r := relation{schema: n.Schema, name: n.RelationName}
			if !slices.Contains(rels, r) && len(rels) < maxRelations {
				rels = append(rels, r)
			}
			if n.NodeType == "Seq Scan" && n.Filter != "" {
				if cols, likes := readFilter(n.Filter); len(cols) > 0 || len(likes) > 0 {
					if cols == nil {
						cols = []string{} // filter_columns is a list in the API's JSON
					}
					scans = append(scans, seqScan{rel: r, columns: cols, likes: likes})
				}
			}
		}
		for i := range n.Plans {
			walk(&n.Plans[i])
		}
	}
	walk(&doc[0].Plan)
	return scans, rels, nil
}

// filterColumns reads a plan's Filter expression ("((users.email)::text =
// $1)") and returns the columns it compares with a value (=, <, >, <=, >=,
// IN, = ANY), by their last name part, in order, without repeats. A filter
// that does not parse as an expression (it names a SubPlan) gives none.
func filterColumns(filter string) []string {
	cols, _ := readFilter(filter)
	return cols
}

// likeColumns reads a plan's Filter expression ("((users.name)::text ~~
// $1)") and returns the columns it matches with LIKE or ILIKE (~~, ~~*, ~~
// ANY, ~~* ANY) against a pattern that involves no column, looked through
// casts and function calls (lower(name)), by their last name part, in
// order, without repeats. NOT LIKE (!~~) is none: no index serves it,
// whatever the pattern.
func likeColumns(filter string) []string {
	_, likes := readFilter(filter)
	return likes
}

// readFilter parses a plan's Filter expression once and returns what
// filterColumns and likeColumns return.
func readFilter(filter string) (cols, likes []string) {
	tree, err := pg_query.ParseToJSON("SELECT WHERE " + filter)
	if err != nil {
		return nil, nil
	}
	var doc any
	if json.Unmarshal([]byte(tree), &doc) != nil {
		return nil, nil
	}
	visit(doc, func(m map[string]any) bool {
		e, ok := m["A_Expr"].(map[string]any)
		if !ok {
			return true
		}
		var col string
		var to *[]string
		switch {
		case comparison(e):
			col, ok = comparedColumn(e)
			to = &cols
		case like(e):
			col, ok = likeColumn(e["lexpr"])
			ok = ok && !hasColumn(e["rexpr"])
			to = &likes
		default:
			return true
		}
		if !ok {
			return true
		}
		if !slices.Contains(*to, col) {
			*to = append(*to, col)
		}
		return false
	})
	return cols, likes
}

// comparedColumn returns the column one side of the comparison e is when
// the other side involves no column.
func comparedColumn(e map[string]any) (string, bool) {
	l, r := e["lexpr"], e["rexpr"]
	if col, ok := columnOf(l); ok && !hasColumn(r) {
		return col, true
	}
	if col, ok := columnOf(r); ok && !hasColumn(l) {
		return col, true
	}
	return "", false
}

// like reports whether the A_Expr e is a LIKE or ILIKE as EXPLAIN prints
// it: the operators ~~ and ~~*, alone or with ANY.
func like(e map[string]any) bool {
	if k := e["kind"]; k != "AEXPR_OP" && k != "AEXPR_OP_ANY" {
		return false
	}
	op := operator(e)
	return op == "~~" || op == "~~*"
}

// operator is the name of the A_Expr e's operator, "" when it is
// schema-qualified or absent.
func operator(e map[string]any) string {
	names, _ := e["name"].([]any)
	if len(names) != 1 {
		return ""
	}
	s, _ := names[0].(map[string]any)["String"].(map[string]any)
	op, _ := s["sval"].(string)
	return op
}

// likeColumn returns the column a LIKE matches: n looked through casts,
// COLLATE and the first argument of function calls (lower((name)::text)),
// by the last part of its name.
func likeColumn(n any) (string, bool) {
	for range 8 {
		m, ok := n.(map[string]any)
		if !ok {
			return "", false
		}
		if fc, ok := m["FuncCall"].(map[string]any); ok {
			args, _ := fc["args"].([]any)
			if len(args) == 0 {
				return "", false
			}
			n = args[0]
			continue
		}
		if tc, ok := m["TypeCast"].(map[string]any); ok {
			n = tc["arg"]
			continue
		}
		if cc, ok := m["CollateClause"].(map[string]any); ok {
			n = cc["arg"]
			continue
		}
		return columnOf(n)
	}
	return "", false
}

// comparison reports whether the A_Expr e compares in a way a B-tree serves.
func comparison(e map[string]any) bool {
	switch e["kind"] {
	case "AEXPR_IN":
		return true
	case "AEXPR_OP", "AEXPR_OP_ANY":
	default:
		return false
	}
	switch operator(e) {
	case "=":
		return true
	case "<", ">", "<=", ">=":
		return e["kind"] == "AEXPR_OP"
	}
	return false
}

// columnOf returns the column n is, looked through casts, by the last part
// of its name.
func columnOf(n any) (string, bool) {
	for {
		m, ok := n.(map[string]any)
		if !ok {
			return "", false
		}
		if tc, ok := m["TypeCast"].(map[string]any); ok {
			n = tc["arg"]
			continue
		}
		cr, ok := m["ColumnRef"].(map[string]any)
		if !ok {
			return "", false
		}
		fields, _ := cr["fields"].([]any)
		if len(fields) == 0 {
			return "", false
		}
		s, _ := fields[len(fields)-1].(map[string]any)["String"].(map[string]any)
		name, ok := s["sval"].(string)
		return name, ok && name != ""
	}
}

// hasColumn reports whether n refers to a column anywhere.
func hasColumn(n any) bool {
	found := false
	visit(n, func(m map[string]any) bool {
		if _, ok := m["ColumnRef"]; ok {
			found = true
		}
		return !found
	})
	return found
}

// visit calls fn on every object of a parsed JSON tree, depth first; fn
// returns false to skip an object's children.
func visit(n any, fn func(map[string]any) bool) {
	switch x := n.(type) {
	case map[string]any:
		if !fn(x) {
			return
		}
		for _, v := range x {
			visit(v, fn)
		}
	case []any:
		for _, v := range x {
			visit(v, fn)
		}
	}
}
