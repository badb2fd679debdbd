package expr

import (
	"sort"

	"github.com/expr-lang/expr/ast"
)

// EventFields returns the top-level event fields that exprs read (`event.amount`,
// `event["amount"]`, `event?.amount`), sorted, and all=true when one of them uses `event` in
// any other way (as a whole, or with a computed index), so that the event must be decoded whole.
func EventFields(exprs ...*Expr) (fields []string, all bool) {
	return Fields("event", exprs...)
}

// Fields is [EventFields] for the variable ident (`state`, say).
func Fields(ident string, exprs ...*Expr) (fields []string, all bool) {
	seen := map[string]bool{}
	for _, e := range exprs {
		if e == nil {
			continue
		}
		node := e.program.Node()
		c := &fieldCollector{ident: ident, covered: map[*ast.IdentifierNode]bool{}, seen: seen}
		ast.Walk(&node, c)
		for _, id := range c.idents {
			if !c.covered[id] {
				all = true
			}
		}
	}
	for f := range seen {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	return fields, all
}

type fieldCollector struct {
	ident   string
	covered map[*ast.IdentifierNode]bool
	idents  []*ast.IdentifierNode
	seen    map[string]bool
}

// Visit implements ast.Visitor.
func (c *fieldCollector) Visit(n *ast.Node) {
	switch t := (*n).(type) {
	case *ast.IdentifierNode:
		// $env is the whole environment: `$env.state` or `$env["event"]` uses the variable
		// in a way no field list covers.
		if t.Value == c.ident || t.Value == "$env" {
			c.idents = append(c.idents, t)
		}
	case *ast.CallNode:
		// event.x compiled to _get(event, "x"): see fieldPatcher
		callee, ok := t.Callee.(*ast.IdentifierNode)
		if !ok || callee.Value != getName || len(t.Arguments) != 2 {
			return
		}
		id, ok := t.Arguments[0].(*ast.IdentifierNode)
		if !ok || id.Value != c.ident {
			return
		}
		if s, ok := t.Arguments[1].(*ast.StringNode); ok {
			c.seen[s.Value] = true
			c.covered[id] = true
		}
	case *ast.MemberNode:
		id, ok := t.Node.(*ast.IdentifierNode)
		if !ok || id.Value != c.ident || t.Method {
			return // a method call (`state.Len()`) uses the variable whole
		}
		if s, ok := t.Property.(*ast.StringNode); ok {
			c.seen[s.Value] = true
			c.covered[id] = true
		}
	}
}
