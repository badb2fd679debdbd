package window

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/expr"
)

// DefaultRetention is how long, in event time, a closed window is kept after its end when
// the configuration does not say.
const DefaultRetention = 24 * time.Hour

// Handlers of the emit, as for the emit operator.
const (
	handlerOnce = "once"
	handlerOn   = "on"
	handlerAll  = "all"
)

// Spec returns the spec of the window operator, to register in an operators.Registry.
func Spec() operators.Spec {
	return operators.Spec{
		Name:    "window",
		Summary: "window: {projection, tumbling | hopping | session, lateness, retention, aggregate, emit} aggregates events per key in windows of event time",
		Build:   build,
	}
}

// config is the operator's configuration once decoded.
type config struct {
	projection string
	// size and advance are those of fixed windows (tumbling: advance = size); gap is a
	// session's (0 for fixed windows).
	size, advance, gap  time.Duration
	lateness, retention time.Duration
	aggs                []aggregate
	emit                *emitSpec
}

// emitSpec is the derived event of a closed window.
type emitSpec struct {
	subject *expr.Expr
	fields  []field    // data as a map of field -> expression
	data    *expr.Expr // or data as one expression
	handler string
	typ     string
}

// field is one field of an emit's data.
type field struct {
	name string
	expr *expr.Expr
}

// build is the Spec's constructor.
func build(b operators.BuildContext, raw any) (operators.Operator, error) {
	c, err := decode(b, raw)
	if err != nil {
		return nil, err
	}
	return newOp(c), nil
}

// decode reads and validates the configuration; every problem is an *expr.FieldError at its
// field, all of them joined.
func decode(b operators.BuildContext, raw any) (*config, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fieldErr("", fmt.Errorf("want a map, got %s", yamlKind(raw)))
	}
	c := &config{retention: DefaultRetention}
	errs := []error{checkKeys("", m, "projection", "tumbling", "hopping", "session", "lateness", "retention", "aggregate", "emit")}
	c.projection, _ = m["projection"].(string)
	if !validBucket(c.projection) {
		errs = append(errs, fieldErr("projection", fmt.Errorf("projection %v: want a name of letters, digits, - and _", m["projection"])))
	}
	errs = append(errs, c.decodeKind(m)...)
	if v, ok := m["lateness"]; ok {
		d, err := duration(v, true)
		errs = append(errs, fieldErr("lateness", err))
		c.lateness = d
	}
	if v, ok := m["retention"]; ok {
		d, err := duration(v, false)
		errs = append(errs, fieldErr("retention", err))
		c.retention = d
	}
	var err error
	if c.aggs, err = decodeAggregates(m["aggregate"], b.Vars); err != nil {
		errs = append(errs, err)
	}
	if v, ok := m["emit"]; ok {
		if c.emit, err = decodeEmit(v, b.Vars); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeKind reads the one of tumbling, hopping and session that is set.
func (c *config) decodeKind(m map[string]any) []error {
	var set []string
	for _, k := range []string{"tumbling", "hopping", "session"} {
		if _, ok := m[k]; ok {
			set = append(set, k)
		}
	}
	if len(set) == 0 {
		return []error{fieldErr("", errors.New("want one of tumbling, hopping and session"))}
	}
	var errs []error
	for _, k := range set[1:] {
		errs = append(errs, fieldErr(k, fmt.Errorf("only one of tumbling, hopping and session may be set, and %s is", set[0])))
	}
	switch set[0] {
	case "tumbling":
		d, err := windowDuration(m["tumbling"])
		c.size, c.advance = d, d
		errs = append(errs, fieldErr("tumbling", err))
	case "hopping":
		errs = append(errs, c.decodeHopping(m["hopping"])...)
	case "session":
		errs = append(errs, c.decodeSession(m["session"])...)
	}
	return errs
}

// decodeHopping reads hopping: {size, advance}.
func (c *config) decodeHopping(raw any) []error {
	m, ok := raw.(map[string]any)
	if !ok {
		return []error{fieldErr("hopping", fmt.Errorf("want {size: DURATION, advance: DURATION}, got %s", yamlKind(raw)))}
	}
	errs := []error{checkKeys("hopping.", m, "size", "advance")}
	var err error
	c.size, err = windowDuration(m["size"])
	errs = append(errs, fieldErr("hopping.size", err))
	c.advance, err = windowDuration(m["advance"])
	errs = append(errs, fieldErr("hopping.advance", err))
	if c.size > 0 && c.advance > c.size {
		errs = append(errs, fieldErr("hopping.advance", fmt.Errorf("advance %s is greater than size %s: events between windows would be counted nowhere", c.advance, c.size)))
	}
	return errs
}

// decodeSession reads session: {gap}.
func (c *config) decodeSession(raw any) []error {
	m, ok := raw.(map[string]any)
	if !ok {
		return []error{fieldErr("session", fmt.Errorf("want {gap: DURATION}, got %s", yamlKind(raw)))}
	}
	errs := []error{checkKeys("session.", m, "gap")}
	var err error
	c.gap, err = duration(m["gap"], false)
	return append(errs, fieldErr("session.gap", err))
}

// decodeEmit reads emit: {subject, data, handler, type}.
func decodeEmit(raw any, vars []string) (*emitSpec, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fieldErr("emit", fmt.Errorf("want a map, got %s", yamlKind(raw)))
	}
	vars = append(slices.Clone(vars), "window")
	e := &emitSpec{handler: handlerOnce}
	errs := []error{checkKeys("emit.", m, "subject", "data", "handler", "type")}
	var err error
	e.subject, err = compile(m["subject"], expr.StringResult, vars)
	errs = append(errs, fieldErr("emit.subject", err))
	switch d := m["data"].(type) {
	case map[string]any:
		for _, name := range slices.Sorted(maps.Keys(d)) {
			x, err := compile(d[name], expr.AnyResult, vars)
			errs = append(errs, fieldErr("emit.data."+name, err))
			e.fields = append(e.fields, field{name: name, expr: x})
		}
	case nil:
		e.data, err = expr.Compile("window", expr.AnyResult, "window") // the window itself
		errs = append(errs, fieldErr("emit.data", err))
	default:
		e.data, err = compile(d, expr.AnyResult, vars)
		errs = append(errs, fieldErr("emit.data", err))
	}
	if h, ok := m["handler"]; ok {
		e.handler, _ = h.(string)
		if e.handler != handlerOnce && e.handler != handlerOn && e.handler != handlerAll {
			errs = append(errs, fieldErr("emit.handler", fmt.Errorf("handler %v: want one of once, on, all", h)))
		}
	}
	if t, ok := m["type"]; ok {
		if e.typ, ok = t.(string); !ok || e.typ == "" {
			errs = append(errs, fieldErr("emit.type", errors.New("want a non-empty string (the CloudEvents type)")))
		}
	}
	return e, errors.Join(errs...)
}

// compile compiles a raw YAML value that must be an expression.
func compile(raw any, kind int, vars []string) (*expr.Expr, error) {
	switch t := raw.(type) {
	case string:
		return expr.Compile(t, kind, vars...)
	case bool, int, int64, uint64, float64:
		src, err := expr.Text(t)
		if err != nil {
			return nil, err
		}
		return expr.Compile(src, kind, vars...)
	case nil:
		return nil, errors.New("missing expression")
	default:
		return nil, fmt.Errorf("want an expression string, got %s", yamlKind(raw))
	}
}

// duration reads a duration such as "10s"; zero is allowed (as a bare 0 too) when zeroOK,
// negative ones never.
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
		return 0, fmt.Errorf("want a duration such as 90s, 10m or 24h, got %s", yamlKind(raw))
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s: must not be negative", d)
	case d == 0 && !zeroOK:
		return 0, errors.New("must be positive")
	case d > maxDuration:
		return 0, fmt.Errorf("%s: at most %s", d, maxDuration)
	}
	return d, nil
}

// maxDuration bounds every duration, so that adding one to a time does not overflow.
const maxDuration = 100 * 365 * 24 * time.Hour

// windowDuration reads the size or advance of fixed windows: positive and a whole number of
// milliseconds, as window starts are in milliseconds in KV keys.
func windowDuration(raw any) (time.Duration, error) {
	d, err := duration(raw, false)
	if err == nil && d%time.Millisecond != 0 {
		err = fmt.Errorf("%s: want a whole number of milliseconds (window keys hold their start in milliseconds)", d)
	}
	return d, err
}

// checkKeys reports the fields of m that are not in allowed; prefix is m's path with its dot.
func checkKeys(prefix string, m map[string]any, allowed ...string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(allowed, k) {
			errs = append(errs, fieldErr(prefix+k, fmt.Errorf("unknown field %q (valid: %s)", k, strings.Join(allowed, ", "))))
		}
	}
	return errors.Join(errs...)
}

// fieldErr places err (nil: none) at field, keeping the column of an expression's error.
func fieldErr(field string, err error) error {
	if err == nil {
		return nil
	}
	var fe *expr.FieldError
	if errors.As(err, &fe) && fe.Field == "" {
		return &expr.FieldError{Field: field, Column: fe.Column, Err: fe.Err}
	}
	return &expr.FieldError{Field: field, Err: err}
}

// validBucket tells whether s can name a KV bucket.
func validBucket(s string) bool {
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

// yamlKind names the kind of a raw YAML value in errors.
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
