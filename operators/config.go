package operators

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jetfold/jetfold/operators/expr"
)

// The helpers below are for the constructors of operators ([Spec.Build]), this package's and
// the other operator packages'. They read an operator's configuration as the YAML decoder gives
// it (maps, lists, strings, numbers and bools in an any) and report each problem as an
// *expr.FieldError at its field, a dotted path inside the operator's value ("" for the value
// itself), which the pipeline reports at its place in the file.

// FieldErr places err at field, keeping the column of an expression's error (an
// *expr.FieldError without a field of its own); nil for nil.
func FieldErr(field string, err error) error {
	if err == nil {
		return nil
	}
	var fe *expr.FieldError
	if errors.As(err, &fe) && fe.Field == "" {
		return &expr.FieldError{Field: field, Column: fe.Column, Err: fe.Err}
	}
	return &expr.FieldError{Field: field, Err: err}
}

// PrefixFieldErrs places each of the (joined) errors of err under prefix: an
// *expr.FieldError's field becomes prefix.field, any other error is placed at prefix.
func PrefixFieldErrs(prefix string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, PrefixFieldErrs(prefix, e))
		}
		return errors.Join(errs...)
	}
	var fe *expr.FieldError
	if errors.As(err, &fe) {
		return &expr.FieldError{Field: fieldPath(prefix, fe.Field), Column: fe.Column, Err: fe.Err}
	}
	return &expr.FieldError{Field: prefix, Err: err}
}

// fieldPath returns the path of field inside the map at path prefix.
func fieldPath(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// Fields reads raw, a YAML map at path prefix ("" for the operator's value, "emit" for its
// emit), whose fields are among allowed: each other field is an error at its path. When raw is
// not a map, the map is nil and the one error says so.
func Fields(raw any, prefix string, allowed ...string) (map[string]any, []error) {
	m, err := fieldMap(raw)
	if err != nil {
		return nil, []error{FieldErr(prefix, err)}
	}
	var errs []error
	for _, k := range sortedKeys(m) {
		if !slices.Contains(allowed, k) {
			errs = append(errs, FieldErr(fieldPath(prefix, k), fmt.Errorf("unknown field %q (valid: %s)", k, strings.Join(allowed, ", "))))
		}
	}
	return m, errs
}

// fieldMap reads a raw YAML value that must be a map (a nil map is an empty one).
func fieldMap(raw any) (map[string]any, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a map, got %s", YAMLKind(raw))
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// CompileExpr compiles raw, a YAML value that must be an expression, to a result of kind (an
// expr result kind) with the variables vars. A YAML number or bool is the literal expression
// it spells (`items: 0`).
func CompileExpr(raw any, kind int, vars []string) (*expr.Expr, error) {
	var src string
	switch t := raw.(type) {
	case string:
		src = t
	case bool, int, int64, uint64, float64:
		var err error
		if src, err = expr.Text(t); err != nil {
			return nil, err
		}
	case nil:
		return nil, errors.New("missing expression (inside {...} a comma ends a value: quote an expression that holds a comma)")
	default:
		return nil, fmt.Errorf("want an expression string, got %s (quote it: %q)", YAMLKind(raw), fmt.Sprint(raw))
	}
	return expr.Compile(src, kind, vars...)
}

// MaxDuration bounds every duration of a configuration, so that adding one to a time does
// not overflow.
const MaxDuration = 100 * 365 * 24 * time.Hour

// Duration reads a positive duration written as Go writes one ("90s", "10m", "1h30m"), at
// most [MaxDuration].
func Duration(raw any) (time.Duration, error) { return duration(raw, false) }

// DurationOrZero reads a duration as [Duration] does, zero (also a bare 0) allowed.
func DurationOrZero(raw any) (time.Duration, error) { return duration(raw, true) }

func duration(raw any, zeroOK bool) (time.Duration, error) {
	var d time.Duration
	switch t := raw.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(t); err != nil {
			return 0, fmt.Errorf("want a duration such as 90s, 10m or 24h: %w", err)
		}
	case int:
		if t != 0 {
			return 0, fmt.Errorf("%d: want a duration with its unit, such as 10s", t)
		}
	case nil:
		return 0, errors.New("missing duration")
	default:
		return 0, fmt.Errorf("want a duration such as 90s, 10m or 24h, got %s", YAMLKind(raw))
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s: must not be negative", d)
	case d == 0 && !zeroOK:
		return 0, errors.New("must be positive")
	case d > MaxDuration:
		return 0, fmt.Errorf("%s: at most %s", d, MaxDuration)
	}
	return d, nil
}

// EventTypes reads one event type or a list of them (at least one).
func EventTypes(raw any) ([]string, error) {
	if s, ok := raw.(string); ok {
		raw = []any{s}
	}
	l, ok := raw.([]any)
	if raw == nil {
		raw = "missing"
	}
	if !ok || len(l) == 0 {
		return nil, fmt.Errorf("%v: want an event type or a list of them", raw)
	}
	out := make([]string, len(l))
	for i, v := range l {
		if out[i], ok = v.(string); !ok || out[i] == "" {
			return nil, fmt.Errorf("item %d: %v: want an event type (a non-empty string)", i, v)
		}
	}
	return out, nil
}

// ParseHandler reads the handler of a fold or an emit: one of allowed, the first of which is
// the default (when raw is absent).
func ParseHandler(raw any, allowed ...Handler) (Handler, error) {
	if raw == nil {
		return allowed[0], nil
	}
	if s, ok := raw.(string); ok && slices.Contains(allowed, Handler(s)) {
		return Handler(s), nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return "", fmt.Errorf("handler %v: want one of %s", raw, strings.Join(names, ", "))
}

// ValidName tells whether s can name a projection (a KV bucket): letters, digits, - and _.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// maxSubjectLen bounds a derived event's subject (NATS control lines are at most 4 KiB).
const maxSubjectLen = 1024

// ValidSubject tells whether s is a subject a derived event can be published on: not empty,
// at most 1024 bytes, no empty token, no wildcard, no white space.
func ValidSubject(s string) bool {
	if s == "" || len(s) > maxSubjectLen || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	return !strings.ContainsAny(s, " \t\r\n*>")
}

// YAMLKind names the kind of a raw YAML value in errors: "a string", "a map", "nothing"...
func YAMLKind(v any) string {
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
