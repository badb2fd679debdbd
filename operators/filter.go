package operators

// filterOp drops events for which its expression is false.
type filterOp struct{ cond *Expr }

func filterSpec() Spec {
	return Spec{
		Name:    "filter",
		Summary: "filter: EXPR drops events for which EXPR is false",
		Build: func(_ BuildContext, raw any) (Operator, error) {
			e, err := singleExpr(raw, BoolResult)
			if err != nil {
				return nil, err
			}
			return &filterOp{cond: e}, nil
		},
	}
}

// Process implements [Operator].
func (f *filterOp) Process(x *Exec, ev *Event) (bool, error) {
	return x.EvalBool(f.cond, ev)
}
