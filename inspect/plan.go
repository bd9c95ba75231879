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
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node the rule reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	Schema       string     `json:"Schema"`
	Filter       string     `json:"Filter"`
	Plans        []planNode `json:"Plans"`
}

// readPlan reads EXPLAIN's JSON: the Seq Scans under a filter, and every
// relation the plan reads (at most maxRelations), in plan order.
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
				if cols := filterColumns(n.Filter); len(cols) > 0 {
					scans = append(scans, seqScan{rel: r, columns: cols})
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
	tree, err := pg_query.ParseToJSON("SELECT WHERE " + filter)
	if err != nil {
		return nil
	}
	var doc any
	if json.Unmarshal([]byte(tree), &doc) != nil {
		return nil
	}
	var cols []string
	visit(doc, func(m map[string]any) bool {
		e, ok := m["A_Expr"].(map[string]any)
		if !ok {
			return true
		}
		if !comparison(e) {
			return true
		}
		l, r := e["lexpr"], e["rexpr"]
		col, ok := columnOf(l)
		if !ok || hasColumn(r) {
			col, ok = columnOf(r)
			if !ok || hasColumn(l) {
				return true
			}
		}
		if !slices.Contains(cols, col) {
			cols = append(cols, col)
		}
		return false
	})
	return cols
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
	names, _ := e["name"].([]any)
	if len(names) != 1 {
		return false
	}
	s, _ := names[0].(map[string]any)["String"].(map[string]any)
	switch s["sval"] {
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
