package operators

import "github.com/jetfold/jetfold/operators/expr"

// Exprs implements [Expressioner].
func (f *filterOp) Exprs() []*expr.Expr { return []*expr.Expr{f.cond} }

// Exprs implements [Expressioner].
func (s *setOp) Exprs() []*expr.Expr { return assignExprs(s.fields) }

// Exprs implements [Expressioner].
func (m *mapOp) Exprs() []*expr.Expr { return []*expr.Expr{m.expr} }

// Exprs implements [Expressioner].
func (k *keyOp) Exprs() []*expr.Expr { return []*expr.Expr{k.expr} }

// Exprs implements [Expressioner].
func (f *foldOp) Exprs() []*expr.Expr {
	var out []*expr.Expr
	for _, a := range f.on {
		out = append(out, assignExprs(a)...)
	}
	return out
}

// Exprs implements [Expressioner].
func (e *emitOp) Exprs() []*expr.Expr {
	return append(assignExprs(e.fields), e.when, e.subject, e.data)
}

func assignExprs(as []assign) []*expr.Expr {
	out := make([]*expr.Expr, len(as))
	for i, a := range as {
		out[i] = a.expr
	}
	return out
}
