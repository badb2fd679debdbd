package operators

import (
	"sort"

	"github.com/expr-lang/expr/ast"
)

// Expressioner is implemented by operators that evaluate expressions; the pipeline reads them
// to decode only the event fields that some expression uses.
type Expressioner interface {
	Exprs() []*Expr
}

// EventFields returns the top-level event fields that exprs read (`event.amount`,
// `event["amount"]`, `event?.amount`), sorted, and all=true when one of them uses `event` in
// any other way (as a whole, or with a computed index), so that the event must be decoded whole.
func EventFields(exprs ...*Expr) (fields []string, all bool) {
	return identFields("event", exprs)
}

// identFields is EventFields for the variable ident.
func identFields(ident string, exprs []*Expr) (fields []string, all bool) {
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

// Exprs implements [Expressioner].
func (f *filterOp) Exprs() []*Expr { return []*Expr{f.cond} }

// Exprs implements [Expressioner].
func (s *setOp) Exprs() []*Expr { return assignExprs(s.fields) }

// Exprs implements [Expressioner].
func (m *mapOp) Exprs() []*Expr { return []*Expr{m.expr} }

// Exprs implements [Expressioner].
func (k *keyOp) Exprs() []*Expr { return []*Expr{k.expr} }

// Exprs implements [Expressioner].
func (f *foldOp) Exprs() []*Expr {
	var out []*Expr
	for _, a := range f.on {
		out = append(out, assignExprs(a)...)
	}
	return out
}

// Exprs implements [Expressioner].
func (e *emitOp) Exprs() []*Expr {
	return append(assignExprs(e.fields), e.when, e.subject, e.data)
}

func assignExprs(as []assign) []*Expr {
	out := make([]*Expr, len(as))
	for i, a := range as {
		out[i] = a.expr
	}
	return out
}
