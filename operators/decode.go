package operators

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jetfold/jetfold/operators/expr"
)

// exprString reads a raw YAML value that must be an expression. A YAML number or bool is
// taken as the literal expression it spells (`items: 0`).
func exprString(raw any) (string, error) {
	switch t := raw.(type) {
	case string:
		return t, nil
	case bool, int, int64, uint64, float64:
		return expr.Text(t)
	case nil:
		return "", errors.New("missing expression (inside {...} a comma ends a value: quote an expression that holds a comma)")
	default:
		return "", fmt.Errorf("want an expression string, got %s (quote it: %q)", yamlKind(raw), fmt.Sprint(raw))
	}
}

// fieldMap reads a raw YAML value that must be a map.
func fieldMap(raw any) (map[string]any, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a map, got %s", yamlKind(raw))
	}
	return m, nil
}

// compileFields compiles a map of field -> expression string, sorted by field name.
func compileFields(raw any, vars []string) ([]assign, error) {
	m, err := fieldMap(raw)
	if err != nil {
		return nil, fieldErr("", err)
	}
	var errs []error
	out := make([]assign, 0, len(m))
	for _, name := range sortedKeys(m) {
		src, err := exprString(m[name])
		if err != nil {
			errs = append(errs, fieldErr(name, err))
			continue
		}
		e, err := expr.Compile(src, expr.AnyResult, vars...)
		if err != nil {
			errs = append(errs, fieldErr(name, err))
			continue
		}
		out = append(out, assign{field: name, expr: e})
	}
	return out, errors.Join(errs...)
}

// checkKeys reports fields of m that are not in allowed.
func checkKeys(m map[string]any, allowed ...string) error {
	var errs []error
	for _, k := range sortedKeys(m) {
		found := false
		for _, a := range allowed {
			if k == a {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, fieldErr(k, fmt.Errorf("unknown field %q (valid: %v)", k, allowed)))
		}
	}
	return errors.Join(errs...)
}

type assign struct {
	field string
	expr  *expr.Expr
	slot  int // the field's slot in the fold's shape
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func yamlKind(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case int, int64, float64, uint64:
		return "a number"
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// singleExpr builds the operators whose whole value is one expression (filter, map, key).
func singleExpr(raw any, kind int, vars []string) (*expr.Expr, error) {
	src, err := exprString(raw)
	if err != nil {
		return nil, fieldErr("", err)
	}
	return expr.Compile(src, kind, vars...)
}
