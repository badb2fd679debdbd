package operators

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// emitOp stages a derived event when its condition holds.
type emitOp struct {
	when    *expr.Expr
	subject *expr.Expr
	fields  []assign   // data as a map of field -> expression
	data    *expr.Expr // or data as one expression
	handler Handler
	typ     string
}

func emitSpec() Spec {
	return Spec{
		Name:    "emit",
		Summary: "emit: {when, subject, data, handler, type} publishes a derived event",
		Build:   buildEmit,
	}
}

func buildEmit(b BuildContext, raw any) (Operator, error) {
	m, errs := Fields(raw, "", "when", "subject", "data", "handler", "type")
	if m == nil {
		return nil, errors.Join(errs...)
	}
	var err error
	e := &emitOp{}
	if w, ok := m["when"]; ok {
		if e.when, err = CompileExpr(w, expr.BoolResult, b.Vars); err != nil {
			errs = append(errs, FieldErr("when", err))
		}
	}
	if e.subject, err = CompileExpr(m["subject"], expr.StringResult, b.Vars); err != nil {
		errs = append(errs, FieldErr("subject", err))
	}
	switch d := m["data"].(type) {
	case map[string]any:
		if e.fields, err = compileFields(d, b.Vars); err != nil {
			errs = append(errs, PrefixFieldErrs("data", err))
		}
	case string:
		if e.data, err = expr.Compile(d, expr.AnyResult, b.Vars...); err != nil {
			errs = append(errs, FieldErr("data", err))
		}
	case nil:
		e.data = expr.MustCompile("event", expr.AnyResult)
	default:
		errs = append(errs, FieldErr("data", fmt.Errorf("want a map of field -> expression or one expression, got %s", YAMLKind(d))))
	}
	if e.handler, err = ParseHandler(m["handler"], On, Once, All); err != nil {
		errs = append(errs, FieldErr("handler", err))
	}
	e.typ, err = EmitType(m)
	errs = append(errs, FieldErr("type", err))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

// Process implements [Operator].
func (e *emitOp) Process(x *Exec, ev *event.Event) (bool, error) {
	if err := ev.Require(); err != nil {
		return false, err
	}
	if !e.fires(ev) {
		return true, nil
	}
	if e.when != nil {
		ok, err := x.EvalBool(e.when, ev)
		if err != nil || !ok {
			return err == nil, err
		}
	}
	subject, err := x.EvalString(e.subject, ev)
	if err != nil {
		return false, err
	}
	if err := CheckSubject(e.subject, subject); err != nil {
		return false, err
	}
	var body any
	if e.data != nil {
		if body, err = x.Eval(e.data, ev); err != nil {
			return false, err
		}
	} else {
		m := make(map[string]any, len(e.fields))
		for _, a := range e.fields {
			v, err := x.Eval(a.expr, ev)
			if err != nil {
				return false, err
			}
			m[a.field] = v
		}
		body = m
	}
	b, err := EncodeData(body)
	if err != nil {
		return false, err
	}
	typ := e.typ
	if typ == "" {
		typ = subject
	}
	ev.Outputs = append(ev.Outputs, event.Output{Subject: subject, Type: typ, Data: b})
	return true, nil
}

// EmitType reads the `type` of an emit's fields m: "" when it has none (the subject is then
// the type), an error when it is not a non-empty string.
func EmitType(m map[string]any) (string, error) {
	t, ok := m["type"]
	if !ok {
		return "", nil
	}
	if s, ok := t.(string); ok && s != "" {
		return s, nil
	}
	return "", errors.New("want a non-empty string (the CloudEvents type)")
}

// CheckSubject returns nil when s, what the expression subject gave, is a subject a derived
// event can be published on (see [ValidSubject]); an error wrapping expr.ErrEval otherwise.
func CheckSubject(subject *expr.Expr, s string) error {
	if !ValidSubject(s) {
		return fmt.Errorf("%w: %s: %q is not a valid subject to publish on", expr.ErrEval, subject.Source, s)
	}
	return nil
}

// EncodeData returns the JSON encoding of a derived event's body; an error wrapping
// expr.ErrEval when it does not encode.
func EncodeData(body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: emit data: %v", expr.ErrEval, err)
	}
	return b, nil
}

// fires tells whether the handler lets this event emit.
func (e *emitOp) fires(ev *event.Event) bool {
	if ev.Duplicate {
		return false // committed before a restart, with its derived events
	}
	switch e.handler {
	case Once:
		return ev.Mode == event.Live && !ev.Outdated
	case On:
		return !ev.Outdated
	default:
		return true
	}
}

// CheckState implements [StateChecker].
func (e *emitOp) CheckState(st *expr.StateType) error {
	errs := []error{}
	if err := st.Check(e.when, expr.BoolResult, nil); err != nil {
		errs = append(errs, FieldErr("when", err))
	}
	if err := st.Check(e.subject, expr.StringResult, nil); err != nil {
		errs = append(errs, FieldErr("subject", err))
	}
	if err := st.Check(e.data, expr.AnyResult, nil); err != nil {
		errs = append(errs, FieldErr("data", err))
	}
	for _, a := range e.fields {
		if err := st.Check(a.expr, expr.AnyResult, nil); err != nil {
			errs = append(errs, FieldErr("data."+a.field, err))
		}
	}
	return errors.Join(errs...)
}
