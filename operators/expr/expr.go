package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/jetfold/jetfold/operators/event"
)

// Env is the environment every expression is compiled against and runs in. Expressions see
// `event`, `type`, `key`, `subject`, `headers`, `seq`, `time` and `state`.
type Env struct {
	Event   map[string]any `expr:"event"`
	Type    string         `expr:"type"`
	Key     string         `expr:"key"`
	Subject string         `expr:"subject"`
	// Headers holds each header's first value; a missing header is nil, so that
	// `headers["x-user"] ?? "anon"` falls back.
	Headers map[string]any `expr:"headers"`
	Seq     uint64         `expr:"seq"`
	Time    time.Time      `expr:"time"`
	// State is the key's state: a *Record for expressions that only read its fields by name
	// (through Get), a map for the others. Typed any so that either can be given.
	State any `expr:"state"`
	// Get reads a member of a map; `event.x` and `state.x` are compiled to calls of it.
	Get func(m, k any) any `expr:"_get"`
	// Vars holds the variables that operators set for the ones after them (a lookup's `as`,
	// a window's `window`): an expression compiled with their names reads `user` as
	// `_vars.user`.
	Vars map[string]any `expr:"_vars"`
}

// Expr is a compiled expression.
type Expr struct {
	// Source is the expression as written.
	Source  string
	program *vm.Program
	// root and field are set for the expressions that only read one member, `event.x` or
	// `state.x`: Eval then reads the map directly instead of running the VM.
	root, field string
	// slot is the field's slot in the layout the expression is bound to (-1: none).
	slot int
	// event is set when the expression reads `event` (or `$env`): Eval then hands the VM the
	// event as a map.
	event bool
	// headers is set when the expression reads `headers`, which Eval then fills.
	headers bool
	// state is set when the expression reads `state`, wholeState when other than by field
	// name: Eval then hands the VM the state as a map.
	state, wholeState bool
	// arith is set for `A op B` (see arithOf): Eval computes it without the VM when both
	// sides are numbers.
	arith *arith
	// vars are the further variables the expression was compiled with.
	vars []string
}

// Result kinds for [Compile].
const (
	AnyResult = iota
	BoolResult
	StringResult
)

// Compile compiles src against [Env], type-checking it, with vars as further variables (see
// [Env.Vars]; their values are any). `now()` is not available: an
// expression must give the same value when its event is processed again. kind restricts the result type when it
// can be known at compile time (an `event.x` field is `any` and is checked at run time).
// A compile error is a *[FieldError] with Field "" and the column inside src.
func Compile(src string, kind int, vars ...string) (*Expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &FieldError{Err: errors.New("empty expression")}
	}
	p, err := expr.Compile(src, options(Env{}, kind, vars, fieldPatcher{})...)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			msg := fe.Message
			if strings.HasPrefix(msg, "unknown name now") {
				msg = "now() is not available: an expression must give the same value when its event is processed again (after a crash, in a replay); use the event's time, `time`"
			}
			return nil, &FieldError{Column: fe.Column, Err: fmt.Errorf("expression %q: %s", src, msg)}
		}
		return nil, &FieldError{Err: fmt.Errorf("expression %q: %w", src, err)}
	}
	e := &Expr{Source: src, program: p, slot: -1, vars: vars}
	node := p.Node()
	ast.Walk(&node, identFinder{name: "headers", found: &e.headers})
	ast.Walk(&node, identFinder{name: "event", found: &e.event})
	ast.Walk(&node, identFinder{name: "$env", found: &e.event})
	ast.Walk(&node, identFinder{name: "state", found: &e.state})
	ast.Walk(&node, identFinder{name: "$env", found: &e.state})
	_, e.wholeState = Fields("state", e)
	switch n := p.Node().(type) {
	case *ast.CallNode:
		e.root, e.field = memberRead(n)
	case *ast.BinaryNode:
		e.arith = arithOf(n)
	}
	return e, nil
}

// options are the compile options of an expression of result kind over env, with patches.
func options(env any, kind int, vars []string, patches ...ast.Visitor) []expr.Option {
	opts := []expr.Option{expr.Env(env), expr.DisableBuiltin("now")}
	for _, p := range patches {
		opts = append(opts, expr.Patch(p))
	}
	if len(vars) > 0 {
		opts = append(opts, expr.Patch(varPatcher(vars)))
	}
	switch kind {
	case BoolResult:
		opts = append(opts, expr.AsBool())
	case StringResult:
		opts = append(opts, expr.AsKind(reflect.String))
	}
	return opts
}

// varPatcher rewrites the identifiers it names into members of `_vars` (see [Env.Vars]).
type varPatcher []string

// Visit implements ast.Visitor.
func (v varPatcher) Visit(n *ast.Node) {
	id, ok := (*n).(*ast.IdentifierNode)
	if !ok || !slices.Contains(v, id.Value) {
		return
	}
	ast.Patch(n, &ast.MemberNode{Node: &ast.IdentifierNode{Value: varsName}, Property: &ast.StringNode{Value: id.Value}})
}

// varsName is the variable [Env.Vars] is read as.
const varsName = "_vars"

// BindLayout makes exprs read the event fields of l by slot. The pipeline binds all the
// expressions it runs to the layout its decoder fills.
func BindLayout(l *event.Layout, exprs ...*Expr) {
	for _, e := range exprs {
		if e == nil {
			continue
		}
		if e.root == "event" {
			e.slot = slotOf(l, e.field)
		}
		if a := e.arith; a != nil {
			a.a.bind(l)
			a.b.bind(l)
		}
	}
}

// BindShape makes the fast paths of exprs read the state fields of s by slot, from records
// of that shape.
func BindShape(s *event.Shape, exprs ...*Expr) {
	for _, e := range exprs {
		if a := e.arith; a != nil {
			a.a.bindShape(s)
			a.b.bindShape(s)
		}
	}
}

func slotOf(l *event.Layout, name string) int {
	if i, ok := l.Slot(name); ok {
		return i
	}
	return -1
}

// memberRead recognises _get(event, "x") and _get(state, "x") (see fieldPatcher).
func memberRead(call *ast.CallNode) (root, field string) {
	callee, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || callee.Value != getName || len(call.Arguments) != 2 {
		return "", ""
	}
	id, ok := call.Arguments[0].(*ast.IdentifierNode)
	if !ok {
		return "", ""
	}
	s, ok := call.Arguments[1].(*ast.StringNode)
	if !ok {
		return "", ""
	}
	return id.Value, s.Value
}

// getName is the function that `event.x` and `state.x` are compiled to: expr reads a
// map[string]any member through reflection, which allocates on every read; this does not.
// It is a field of [Env] of a type expr calls directly (no argument slice).
const getName = "_get"

func getMember(m, k any) any {
	s, _ := k.(string)
	switch t := m.(type) {
	case map[string]any:
		return t[s]
	case *event.Record:
		return t.Get(s)
	}
	return nil
}

// fieldPatcher rewrites `event.x` and `state.x` (x a constant) into _get(event, "x").
type fieldPatcher struct{}

// Visit implements ast.Visitor.
func (fieldPatcher) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok || m.Method {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || (id.Value != "event" && id.Value != "state") {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	call := &ast.CallNode{Callee: &ast.IdentifierNode{Value: getName}, Arguments: []ast.Node{id, &ast.StringNode{Value: prop.Value}}}
	ast.Patch(n, call)
}

// MustCompile is [Compile] for expressions known to be valid; it panics otherwise.
func MustCompile(src string, kind int, vars ...string) *Expr {
	e, err := Compile(src, kind, vars...)
	if err != nil {
		panic(err)
	}
	return e
}

// Runner runs expressions with a VM it reuses. The zero Runner is ready; a Runner is used by
// one goroutine at a time.
type Runner struct {
	vm  vm.VM
	env Env
}

// Eval runs e on ev. Errors wrap [ErrEval] and name the expression.
func (x *Runner) Eval(e *Expr, ev *event.Event) (any, error) {
	switch e.root {
	case "event":
		return ev.Field(e.slot, e.field), nil
	case "state":
		return ev.State.Get(e.field), nil
	}
	if e.arith != nil {
		if v, ok := e.arith.num(ev); ok {
			return v, nil
		}
	}
	fields := ev.Fields
	if e.event {
		fields = ev.FieldMap()
	}
	x.env = Env{
		Event: fields, Type: ev.Type, Key: ev.Key, Subject: ev.Subject,
		Seq: ev.Seq, Time: ev.Time, Get: getMember, Vars: ev.Vars,
	}
	switch {
	case e.wholeState:
		// A copy, as the value may keep it while the state changes; a nil map for no state.
		x.env.State = ev.State.Map()
	case e.state && ev.State != nil: // a nil *Record would not read as nil
		x.env.State = ev.State
	}
	if ev.Header != nil && e.headers {
		x.env.Headers = ev.HeaderMap()
	}
	v, err := x.vm.Run(e.program, &x.env)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrEval, e.Source, firstLine(err.Error()))
	}
	return v, nil
}

// EvalBool runs a boolean expression.
func (x *Runner) EvalBool(e *Expr, ev *event.Event) (bool, error) {
	v, err := x.Eval(e, ev)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s: got %T, want bool", ErrEval, e.Source, v)
	}
	return b, nil
}

// EvalString runs an expression whose value is used as text (a key, a type, a subject).
// Strings pass as they are, integers and integral floats print without a fraction; nil and
// empty strings are errors.
func (x *Runner) EvalString(e *Expr, ev *event.Event) (string, error) {
	v, err := x.Eval(e, ev)
	if err != nil {
		return "", err
	}
	s, err := Text(v)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrEval, e.Source, err)
	}
	return s, nil
}

// Text converts an expression value to text, as [Runner.EvalString] does.
func Text(v any) (string, error) {
	switch t := v.(type) {
	case string:
		if t == "" {
			return "", errors.New("empty string")
		}
		return t, nil
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return strconv.FormatInt(int64(t), 10), nil
		}
		return strconv.FormatFloat(t, 'g', -1, 64), nil
	case int:
		return strconv.Itoa(t), nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	case uint64:
		return strconv.FormatUint(t, 10), nil
	case bool:
		return strconv.FormatBool(t), nil
	case nil:
		return "", errors.New("value is nil (missing field?)")
	default:
		return "", fmt.Errorf("got %T, want a string or a number", v)
	}
}

// ErrNotJSON is returned by [Normalize] for a value that JSON cannot hold (NaN, ±Inf).
var ErrNotJSON = errors.New("value cannot be stored as JSON")

// Normalize returns v as it reads back from JSON, so that state built in memory behaves
// exactly like state read back from its bucket after a restart: integers become float64,
// times RFC3339 strings, durations float64 nanoseconds, other types their JSON round trip.
// NaN and ±Inf are errors (ErrNotJSON). v itself is never changed: maps and slices that
// need a change are copied, so values shared with a state being committed stay intact.
func Normalize(v any) (any, error) {
	out, _, err := normalize(v)
	return out, err
}

// normalize returns the normalised value and whether it differs from v.
func normalize(v any) (any, bool, error) {
	switch t := v.(type) {
	case nil, string, bool:
		return v, false, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil, false, fmt.Errorf("%w: %v", ErrNotJSON, t)
		}
		return v, false, nil
	case int:
		return float64(t), true, nil
	case int64:
		return float64(t), true, nil
	case int32:
		return float64(t), true, nil
	case uint64:
		return float64(t), true, nil
	case uint:
		return float64(t), true, nil
	case float32:
		return normalizeFloat(float64(t))
	case time.Time:
		return t.Format(time.RFC3339Nano), true, nil
	case time.Duration:
		return float64(t), true, nil
	case map[string]any:
		var out map[string]any
		for k, e := range t {
			n, changed, err := normalize(e)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = maps.Clone(t)
			}
			if out != nil {
				out[k] = n
			}
		}
		if out == nil {
			return t, false, nil
		}
		return out, true, nil
	case []any:
		var out []any
		for i, e := range t {
			n, changed, err := normalize(e)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = slices.Clone(t)
			}
			if out != nil {
				out[i] = n
			}
		}
		if out == nil {
			return t, false, nil
		}
		return out, true, nil
	default:
		// Anything else (a []string, a struct): what its JSON reads back as.
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
		var back any
		if err := json.Unmarshal(b, &back); err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
		return back, true, nil
	}
}

func normalizeFloat(f float64) (any, bool, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, false, fmt.Errorf("%w: %v", ErrNotJSON, f)
	}
	return f, true, nil
}

// identFinder sets *found when the AST holds the identifier name.
type identFinder struct {
	name  string
	found *bool
}

// Visit implements ast.Visitor.
func (f identFinder) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok && id.Value == f.name {
		*f.found = true
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// EvalValue runs e on ev for a state field: its value as it reads back from JSON (see
// [Normalize]), numbers unboxed.
func (x *Runner) EvalValue(e *Expr, ev *event.Event) (event.Value, error) {
	if e.arith != nil {
		if f, ok := e.arith.num(ev); ok {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return event.Value{}, fmt.Errorf("%w: %s: %w: %v", ErrEval, e.Source, ErrNotJSON, f)
			}
			return event.NumberValue(f), nil
		}
	}
	v, err := x.Eval(e, ev)
	if err != nil {
		return event.Value{}, err
	}
	n, err := Normalize(v)
	if err != nil {
		return event.Value{}, fmt.Errorf("%w: %s: %v", ErrEval, e.Source, err)
	}
	return event.ValueOf(n), nil
}

// WholeState tells whether e reads `state` other than by field name (the VM is then handed
// the state as a map).
func (e *Expr) WholeState() bool { return e.wholeState }

// ErrEval wraps every error of an expression at run time.
var ErrEval = errors.New("expression failed")

// FieldError is a configuration problem at a field of an operator's configuration. Field is a
// dot path relative to the operator's value ("" for the value itself, "on.order-placed.items").
// [Compile] returns one with Field "" for an expression that does not compile.
type FieldError struct {
	Field string
	// Column is the column inside the expression where the problem is, 0 when unknown.
	Column int
	Err    error
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }
