package expr

import (
	"maps"
	"slices"

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
	return collect(exprs, func(seen map[string]bool) collector {
		return &fieldCollector{ident: ident, covered: map[*ast.IdentifierNode]bool{}, seen: seen}
	})
}

// collector is an ast.Visitor that records in a map the members an expression reads and
// tells whether it uses the variable in some other way.
type collector interface {
	ast.Visitor
	uncovered() bool
}

// collect walks each expression of exprs with a collector of its own from mk, all recording
// in one map; it returns the members recorded, sorted, and whether one use was uncovered.
func collect(exprs []*Expr, mk func(seen map[string]bool) collector) ([]string, bool) {
	seen := map[string]bool{}
	whole := false
	for _, e := range exprs {
		if e == nil {
			continue
		}
		node := e.program.Node()
		c := mk(seen)
		ast.Walk(&node, c)
		whole = whole || c.uncovered()
	}
	return slices.Sorted(maps.Keys(seen)), whole
}

type fieldCollector struct {
	ident   string
	covered map[*ast.IdentifierNode]bool
	idents  []*ast.IdentifierNode
	seen    map[string]bool
}

func (c *fieldCollector) uncovered() bool {
	return slices.ContainsFunc(c.idents, func(id *ast.IdentifierNode) bool { return !c.covered[id] })
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

// VarMembers returns the members that exprs read of the further variable name (see
// [Compile]'s vars): `timer.event` and `timer["event"]` read "event" of timer. whole is true
// when one uses the variable in any other way (as a whole, with a computed index), so that
// every member may be read.
func VarMembers(name string, exprs ...*Expr) (members []string, whole bool) {
	return collect(exprs, func(seen map[string]bool) collector {
		return &varCollector{name: name, seen: seen, covered: map[ast.Node]bool{}}
	})
}

// varCollector finds the reads of a further variable (`_vars.name`, as varPatcher writes it).
type varCollector struct {
	name    string
	seen    map[string]bool
	refs    []ast.Node        // every `_vars.name`
	covered map[ast.Node]bool // those read by a constant member
}

func (c *varCollector) uncovered() bool {
	return slices.ContainsFunc(c.refs, func(n ast.Node) bool { return !c.covered[n] })
}

// Visit implements ast.Visitor.
func (c *varCollector) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok {
		return
	}
	if c.isVar(m) {
		c.refs = append(c.refs, m)
		return
	}
	if inner, ok := m.Node.(*ast.MemberNode); ok && c.isVar(inner) && !m.Method {
		if s, ok := m.Property.(*ast.StringNode); ok {
			c.seen[s.Value] = true
			c.covered[inner] = true
		}
	}
}

// isVar tells whether m is `_vars.name`.
func (c *varCollector) isVar(m *ast.MemberNode) bool {
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != varsName {
		return false
	}
	s, ok := m.Property.(*ast.StringNode)
	return ok && s.Value == c.name
}
