package window_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/operators/expr"
	"github.com/jetfold/jetfold/operators/window"
)

// specYAML is the example of the specification (issue 13), which must keep working.
const specYAML = `
projection: revenue_per_minute
tumbling: 1m
lateness: 10s
retention: 24h
aggregate:
  orders: count()
  revenue: sum(event.amount)
  biggest: max(event.amount)
  products: distinct(event.product)
emit:
  subject: '"shop.derived.revenue." + key'
  data: {user_id: key, start: window.start, end: window.end, orders: window.orders, revenue: window.revenue}
  handler: once
  type: revenue-per-minute
`

// TestSpecExample builds the specification's example through a registry and checks what the
// pipeline reads of it: its projection, state fields and expressions.
func TestSpecExample(t *testing.T) {
	r := builtin.Registry()
	spec, ok := r.Lookup("window")
	if !ok {
		t.Fatal("window not registered")
	}
	op, err := spec.Build(operators.BuildContext{Pipeline: "p"}, parse(t, specYAML))
	if err != nil {
		t.Fatal(err)
	}
	p := op.(operators.Projector)
	if p.Projection() != "revenue_per_minute" {
		t.Errorf("projection %q", p.Projection())
	}
	want := []string{"start", "end", "closed", "biggest", "orders", "products", "_distinct.products", "revenue"}
	if fmt.Sprint(p.StateFields()) != fmt.Sprint(want) {
		t.Errorf("state fields %v, want %v", p.StateFields(), want)
	}
	fields, all := expr.EventFields(op.(operators.Expressioner).Exprs()...)
	if all || fmt.Sprint(fields) != "[amount product]" {
		t.Errorf("event fields read %v (all %t), want amount and product", fields, all)
	}
	for _, iface := range []bool{
		implements[operators.Clock](op), implements[operators.Starter](op),
	} {
		if !iface {
			t.Error("the operator is not a Clock and a Starter")
		}
	}
}

func implements[T any](op operators.Operator) bool {
	_, ok := op.(T)
	return ok
}

// TestBuildVars checks that expressions see the variables of the operators before (a
// lookup's `as`), and the emit's `window` too.
func TestBuildVars(t *testing.T) {
	raw := parse(t, "projection: w\ntumbling: 1m\naggregate: {s: sum(user.amount)}\nemit: {subject: 'user.id + window.start'}")
	if _, err := window.Spec().Build(operators.BuildContext{Vars: []string{"user"}}, raw); err != nil {
		t.Fatalf("with the variable: %v", err)
	}
	if _, err := window.Spec().Build(operators.BuildContext{}, raw); err == nil {
		t.Fatal("without the variable: no error")
	}
}

// TestConfigErrors checks each configuration problem's place and message.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		field      string // the place of the one error
		msg        string // a part of its message
	}{
		{"no projection", "tumbling: 1m", "projection", "want a name"},
		{"bad projection", "projection: a.b\ntumbling: 1m", "projection", "want a name"},
		{"no kind", "projection: w", "", "want one of tumbling, hopping and session"},
		{"two kinds", "projection: w\ntumbling: 1m\nsession: {gap: 1m}", "session", "only one of"},
		{"zero size", "projection: w\ntumbling: 0s", "tumbling", "positive"},
		{"negative size", "projection: w\ntumbling: -1m", "tumbling", "negative"},
		{"sub-millisecond size", "projection: w\ntumbling: 1500us", "tumbling", "milliseconds"},
		{"no duration", "projection: w\ntumbling: soon", "tumbling", "want a duration"},
		{"number as duration", "projection: w\ntumbling: 60", "tumbling", "with its unit"},
		{"advance over size", "projection: w\nhopping: {size: 1m, advance: 2m}", "hopping.advance", "greater than size"},
		{"no advance", "projection: w\nhopping: {size: 1m}", "hopping.advance", "missing"},
		{"hopping not a map", "projection: w\nhopping: 1m", "hopping", "want {size"},
		{"unknown hopping field", "projection: w\nhopping: {size: 1m, advance: 1m, every: 1m}", "hopping.every", "unknown field"},
		{"zero gap", "projection: w\nsession: {gap: 0s}", "session.gap", "positive"},
		{"negative lateness", "projection: w\ntumbling: 1m\nlateness: -1s", "lateness", "negative"},
		{"huge retention", "projection: w\ntumbling: 1m\nretention: 1000000h", "retention", "at most"},
		{"zero retention", "projection: w\ntumbling: 1m\nretention: 0s", "retention", "positive"},
		{"unknown field", "projection: w\ntumbling: 1m\nsize: 1m", "size", "unknown field"},
		{"unknown function", "projection: w\ntumbling: 1m\naggregate: {m: median(event.x)}", "aggregate.m", "unknown aggregate function \"median\" (valid: count, sum, min, max, avg, last, distinct)"},
		{"count with an expression", "projection: w\ntumbling: 1m\naggregate: {n: count(event.x)}", "aggregate.n", "no expression"},
		{"sum without one", "projection: w\ntumbling: 1m\naggregate: {s: sum()}", "aggregate.s", "needs an expression"},
		{"no call", "projection: w\ntumbling: 1m\naggregate: {s: event.x}", "aggregate.s", "want fn(EXPR)"},
		{"bad expression", "projection: w\ntumbling: 1m\naggregate: {s: 'sum(event.x +)'}", "aggregate.s", "event.x +"},
		{"internal name", "projection: w\ntumbling: 1m\naggregate: {_n: count()}", "aggregate._n", "start with _"},
		{"reserved name", "projection: w\ntumbling: 1m\naggregate: {end: count()}", "aggregate.end", "taken"},
		{"emit without subject", "projection: w\ntumbling: 1m\nemit: {data: {a: key}}", "emit.subject", "missing"},
		{"emit bad handler", "projection: w\ntumbling: 1m\nemit: {subject: key, handler: twice}", "emit.handler", "once, on, all"},
		{"emit bad data", "projection: w\ntumbling: 1m\nemit: {subject: key, data: {a: 'window.x +'}}", "emit.data.a", "window.x +"},
		{"emit unknown field", "projection: w\ntumbling: 1m\nemit: {subject: key, when: 'true'}", "emit.when", "unknown field"},
		{"emit unknown variable", "projection: w\ntumbling: 1m\nemit: {subject: 'user.id'}", "emit.subject", "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := window.Spec().Build(operators.BuildContext{}, parse(t, tt.yaml))
			fes := fieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("errors %v, want one at %q", err, tt.field)
			}
			if fes[0].Field != tt.field || !strings.Contains(fes[0].Err.Error(), tt.msg) {
				t.Errorf("error at %q: %v; want at %q with %q", fes[0].Field, fes[0].Err, tt.field, tt.msg)
			}
		})
	}
}

// TestConfigErrorsAll checks that every problem is reported at once.
func TestConfigErrorsAll(t *testing.T) {
	_, err := window.Spec().Build(operators.BuildContext{}, parse(t, "projection: ''\nhopping: {size: 0s, advance: x}\naggregate: {a: nope(), b: sum()}\nemit: {}"))
	var places []string
	for _, fe := range fieldErrors(err) {
		places = append(places, fe.Field)
	}
	slices.Sort(places)
	want := []string{"aggregate.a", "aggregate.b", "emit.subject", "hopping.advance", "hopping.size", "projection"}
	if fmt.Sprint(places) != fmt.Sprint(want) {
		t.Errorf("errors at %v, want %v (%v)", places, want, err)
	}
}

// fieldErrors flattens joined errors into their *expr.FieldError values; any other error is
// returned as one at "?".
func fieldErrors(err error) []*expr.FieldError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*expr.FieldError
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
		return out
	}
	var fe *expr.FieldError
	if errors.As(err, &fe) {
		return []*expr.FieldError{fe}
	}
	return []*expr.FieldError{{Field: "?", Err: err}}
}

// parse decodes YAML as the configuration hands it to an operator.
func parse(t *testing.T, src string) any {
	t.Helper()
	var raw any
	if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
		t.Fatal(err)
	}
	return raw
}
