package operators

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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
	m, err := fieldMap(raw)
	if err != nil {
		return nil, fieldErr("", err)
	}
	var errs []error
	errs = append(errs, checkKeys(m, "when", "subject", "data", "handler", "type"))
	e := &emitOp{}
	if w, ok := m["when"]; ok {
		if e.when, err = singleExpr(w, expr.BoolResult, b.Vars); err != nil {
			errs = append(errs, fieldErr("when", err))
		}
	}
	if e.subject, err = singleExpr(m["subject"], expr.StringResult, b.Vars); err != nil {
		errs = append(errs, fieldErr("subject", err))
	}
	switch d := m["data"].(type) {
	case map[string]any:
		if e.fields, err = compileFields(d, b.Vars); err != nil {
			errs = append(errs, prefixFieldErrs("data", err))
		}
	case string:
		if e.data, err = expr.Compile(d, expr.AnyResult, b.Vars...); err != nil {
			errs = append(errs, fieldErr("data", err))
		}
	case nil:
		e.data = expr.MustCompile("event", expr.AnyResult)
	default:
		errs = append(errs, fieldErr("data", fmt.Errorf("want a map of field -> expression or one expression, got %s", yamlKind(d))))
	}
	if e.handler, err = parseHandler(m["handler"], Once, On, All); err != nil {
		errs = append(errs, fieldErr("handler", err))
	}
	if t, ok := m["type"]; ok {
		if e.typ, ok = t.(string); !ok || e.typ == "" {
			errs = append(errs, fieldErr("type", errors.New("want a non-empty string (the CloudEvents type)")))
		}
	}
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
	if !validSubject(subject) {
		return false, fmt.Errorf("%w: %s: %q is not a valid subject to publish on", expr.ErrEval, e.subject.Source, subject)
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
	b, err := json.Marshal(body)
	if err != nil {
		return false, fmt.Errorf("%w: emit data: %v", expr.ErrEval, err)
	}
	typ := e.typ
	if typ == "" {
		typ = subject
	}
	ev.Outputs = append(ev.Outputs, event.Output{Subject: subject, Type: typ, Data: b})
	return true, nil
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

// maxSubjectLen bounds a derived event's subject (NATS control lines are at most 4 KiB).
const maxSubjectLen = 1024

func validSubject(s string) bool {
	if s == "" || len(s) > maxSubjectLen || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	return !strings.ContainsAny(s, " \t\r\n*>")
}

// CheckState implements [StateChecker].
func (e *emitOp) CheckState(st *expr.StateType) error {
	errs := []error{}
	if err := st.Check(e.when, expr.BoolResult, nil); err != nil {
		errs = append(errs, fieldErr("when", err))
	}
	if err := st.Check(e.subject, expr.StringResult, nil); err != nil {
		errs = append(errs, fieldErr("subject", err))
	}
	if err := st.Check(e.data, expr.AnyResult, nil); err != nil {
		errs = append(errs, fieldErr("data", err))
	}
	for _, a := range e.fields {
		if err := st.Check(a.expr, expr.AnyResult, nil); err != nil {
			errs = append(errs, fieldErr("data."+a.field, err))
		}
	}
	return errors.Join(errs...)
}
