package expr

import (
	"github.com/expr-lang/expr/ast"

	"github.com/jetfold/jetfold/operators/event"
)

// arith is the fast path of the most common fold expression, `A op B` with op one of +, - and
// *, and A and B each a member read (`state.count`, `event.amount`) or a number literal, as in
// `state.count + 1`. When both sides are numbers, which they are for JSON values, it computes
// what the VM computes (expr turns an integer literal into a float64 against a float64)
// without running the VM; otherwise (a string, nil, a missing field) the VM runs, so results
// and errors stay the VM's own.
type arith struct {
	op   byte
	a, b operand
}

// operandKind says what an operand reads.
type operandKind uint8

const (
	literal    operandKind = iota // a number
	eventField                    // event.x
	stateField                    // state.x
)

// operand is one side of an arith: a member read or a number.
type operand struct {
	root, field string // event or state, and the member name; "" for a number
	kind        operandKind
	slot        int          // the field's slot (see BindLayout and BindShape), -1 for none
	shape       *event.Shape // a state field's slot is in this shape
	num         float64
}

// bind sets the slot of an event field in l.
func (o *operand) bind(l *event.Layout) {
	if o.kind == eventField {
		o.slot = slotOf(l, o.field)
	}
}

// bindShape sets the slot of a state field in s.
func (o *operand) bindShape(s *event.Shape) {
	if o.kind == stateField {
		if i, ok := s.Slot(o.field); ok {
			o.slot, o.shape = i, s
		}
	}
}

// arithOf returns the fast path of n, or nil when n is not of that form.
func arithOf(n *ast.BinaryNode) *arith {
	if len(n.Operator) != 1 {
		return nil
	}
	op := n.Operator[0]
	if op != '+' && op != '-' && op != '*' {
		return nil
	}
	a, ok := operandOf(n.Left)
	if !ok {
		return nil
	}
	b, ok := operandOf(n.Right)
	if !ok || (a.root == "" && b.root == "") {
		return nil // two literals keep the VM's integer arithmetic
	}
	return &arith{op: op, a: a, b: b}
}

func operandOf(n ast.Node) (operand, bool) {
	switch t := n.(type) {
	case *ast.IntegerNode:
		return operand{num: float64(t.Value)}, true
	case *ast.FloatNode:
		return operand{num: t.Value}, true
	case *ast.CallNode:
		root, field := memberRead(t)
		if root != "event" && root != "state" {
			return operand{}, false
		}
		kind := eventField
		if root == "state" {
			kind = stateField
		}
		return operand{root: root, field: field, kind: kind, slot: -1}, true
	}
	return operand{}, false
}

// value returns the operand's number, false when it is not a float64.
func (o *operand) value(ev *event.Event) (float64, bool) {
	switch o.kind {
	case literal:
		return o.num, true
	case eventField:
		return ev.Number(o.slot, o.field)
	}
	if o.shape != nil {
		return ev.State.NumAt(o.shape, o.slot, o.field)
	}
	f, ok := ev.State.Get(o.field).(float64)
	return f, ok
}

// num computes a on ev; false when an operand is not a number (the VM decides then).
func (a *arith) num(ev *event.Event) (float64, bool) {
	x, ok := a.a.value(ev)
	if !ok {
		return 0, false
	}
	y, ok := a.b.value(ev)
	if !ok {
		return 0, false
	}
	switch a.op {
	case '+':
		return x + y, true
	case '-':
		return x - y, true
	default:
		return x * y, true
	}
}
