package window

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/expr"
)

// DefaultRetention is how long, in event time, a closed window is kept after its end when
// the configuration does not say.
const DefaultRetention = 24 * time.Hour

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
	handler operators.Handler
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
	m, errs := operators.Fields(raw, "", "projection", "tumbling", "hopping", "session", "lateness", "retention", "aggregate", "emit")
	if m == nil {
		return nil, errors.Join(errs...)
	}
	c := &config{retention: DefaultRetention}
	c.projection, _ = m["projection"].(string)
	if !operators.ValidName(c.projection) {
		errs = append(errs, operators.FieldErr("projection", fmt.Errorf("projection %v: want a name of letters, digits, - and _", m["projection"])))
	}
	errs = append(errs, c.decodeKind(m)...)
	if v, ok := m["lateness"]; ok {
		d, err := operators.DurationOrZero(v)
		errs = append(errs, operators.FieldErr("lateness", err))
		c.lateness = d
	}
	if v, ok := m["retention"]; ok {
		d, err := operators.Duration(v)
		errs = append(errs, operators.FieldErr("retention", err))
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
		return []error{operators.FieldErr("", errors.New("want one of tumbling, hopping and session"))}
	}
	var errs []error
	for _, k := range set[1:] {
		errs = append(errs, operators.FieldErr(k, fmt.Errorf("only one of tumbling, hopping and session may be set, and %s is", set[0])))
	}
	switch set[0] {
	case "tumbling":
		d, err := windowDuration(m["tumbling"])
		c.size, c.advance = d, d
		errs = append(errs, operators.FieldErr("tumbling", err))
	case "hopping":
		errs = append(errs, c.decodeHopping(m["hopping"])...)
	case "session":
		errs = append(errs, c.decodeSession(m["session"])...)
	}
	return errs
}

// decodeHopping reads hopping: {size, advance}.
func (c *config) decodeHopping(raw any) []error {
	if _, ok := raw.(map[string]any); !ok {
		return []error{operators.FieldErr("hopping", fmt.Errorf("want {size: DURATION, advance: DURATION}, got %s", operators.YAMLKind(raw)))}
	}
	m, errs := operators.Fields(raw, "hopping", "size", "advance")
	var err error
	c.size, err = windowDuration(m["size"])
	errs = append(errs, operators.FieldErr("hopping.size", err))
	c.advance, err = windowDuration(m["advance"])
	errs = append(errs, operators.FieldErr("hopping.advance", err))
	if c.size > 0 && c.advance > c.size {
		errs = append(errs, operators.FieldErr("hopping.advance", fmt.Errorf("advance %s is greater than size %s: events between windows would be counted nowhere", c.advance, c.size)))
	}
	return errs
}

// decodeSession reads session: {gap}.
func (c *config) decodeSession(raw any) []error {
	if _, ok := raw.(map[string]any); !ok {
		return []error{operators.FieldErr("session", fmt.Errorf("want {gap: DURATION}, got %s", operators.YAMLKind(raw)))}
	}
	m, errs := operators.Fields(raw, "session", "gap")
	var err error
	c.gap, err = operators.Duration(m["gap"])
	return append(errs, operators.FieldErr("session.gap", err))
}

// decodeEmit reads emit: {subject, data, handler, type}.
func decodeEmit(raw any, vars []string) (*emitSpec, error) {
	m, errs := operators.Fields(raw, "emit", "subject", "data", "handler", "type")
	if m == nil {
		return nil, errors.Join(errs...)
	}
	vars = append(slices.Clone(vars), "window")
	e := &emitSpec{}
	var err error
	e.subject, err = operators.CompileExpr(m["subject"], expr.StringResult, vars)
	errs = append(errs, operators.FieldErr("emit.subject", err))
	switch d := m["data"].(type) {
	case map[string]any:
		for _, name := range slices.Sorted(maps.Keys(d)) {
			x, err := operators.CompileExpr(d[name], expr.AnyResult, vars)
			errs = append(errs, operators.FieldErr("emit.data."+name, err))
			e.fields = append(e.fields, field{name: name, expr: x})
		}
	case nil:
		e.data, err = expr.Compile("window", expr.AnyResult, "window") // the window itself
		errs = append(errs, operators.FieldErr("emit.data", err))
	default:
		e.data, err = operators.CompileExpr(d, expr.AnyResult, vars)
		errs = append(errs, operators.FieldErr("emit.data", err))
	}
	e.handler, err = operators.ParseHandler(m["handler"], operators.Once, operators.On, operators.All)
	errs = append(errs, operators.FieldErr("emit.handler", err))
	e.typ, err = operators.EmitType(m)
	errs = append(errs, operators.FieldErr("emit.type", err))
	return e, errors.Join(errs...)
}

// windowDuration reads the size or advance of fixed windows: positive and a whole number of
// milliseconds, as window starts are in milliseconds in KV keys.
func windowDuration(raw any) (time.Duration, error) {
	d, err := operators.Duration(raw)
	if err == nil && d%time.Millisecond != 0 {
		err = fmt.Errorf("%s: want a whole number of milliseconds (window keys hold their start in milliseconds)", d)
	}
	return d, err
}
