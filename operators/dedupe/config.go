package dedupe

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetfold/jetfold/operators/expr"
)

// The helpers below read a raw YAML value as package operators reads its operators' (its
// helpers are unexported): each problem is an *expr.FieldError at its field path.

// fieldErr places err at field, keeping the column of an expression's error; nil for nil.
func fieldErr(field string, err error) error {
	var fe *expr.FieldError
	if errors.As(err, &fe) {
		return &expr.FieldError{Field: field, Column: fe.Column, Err: fe.Err}
	} else if err != nil {
		return &expr.FieldError{Field: field, Err: err}
	}
	return nil
}

// fieldMap reads a raw YAML value that must be a map, reporting at prefix each field of it
// that is not in allowed.
func fieldMap(raw any, prefix string, allowed ...string) (map[string]any, []error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, []error{fieldErr(strings.TrimSuffix(prefix, "."), fmt.Errorf("want a map, got %T", raw))}
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(allowed, k) {
			errs = append(errs, fieldErr(prefix+k, fmt.Errorf("unknown field %q (valid: %s)", k, strings.Join(allowed, ", "))))
		}
	}
	return m, errs
}

// compile compiles the expression raw (a YAML number or bool is the literal it spells).
func compile(raw any, kind int, vars []string) (*expr.Expr, error) {
	if raw == nil {
		return nil, errors.New("missing expression")
	}
	src, err := expr.Text(raw)
	if s, ok := raw.(string); ok {
		src, err = s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("want an expression: %w", err)
	}
	return expr.Compile(src, kind, vars...)
}

// duration reads a positive duration written as Go writes one (30m, 1h30m, 45s).
func duration(raw any) (time.Duration, error) {
	s, _ := raw.(string)
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	} else if raw == nil {
		raw = "missing"
	}
	return 0, fmt.Errorf("%v: want a positive duration such as 30m or 24h", raw)
}

// validName tells whether s is a name of letters, digits, - and _ (a KV bucket's).
func validName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
}
