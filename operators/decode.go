package operators

import (
	"errors"
	"maps"
	"slices"

	"github.com/jetfold/jetfold/operators/expr"
)

// compileFields compiles a map of field -> expression, sorted by field name.
func compileFields(raw any, vars []string) ([]assign, error) {
	m, err := fieldMap(raw)
	if err != nil {
		return nil, FieldErr("", err)
	}
	var errs []error
	out := make([]assign, 0, len(m))
	for _, name := range sortedKeys(m) {
		e, err := CompileExpr(m[name], expr.AnyResult, vars)
		if err != nil {
			errs = append(errs, FieldErr(name, err))
			continue
		}
		out = append(out, assign{field: name, expr: e})
	}
	return out, errors.Join(errs...)
}

type assign struct {
	field string
	expr  *expr.Expr
	slot  int // the field's slot in the fold's shape
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
