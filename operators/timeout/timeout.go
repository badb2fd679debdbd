package timeout

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// Var is the expression variable the emit reads the fired timer from.
const Var = "timer"

// The fields of a timer, in its projection and in [Var], and of an end marker.
const (
	StateStarted  = "started"
	StateDeadline = "deadline"
	StateEvent    = "event"
	StateSeq      = "seq"
	StateEnded    = "ended"
)

// EndedTTL is how long, in wall-clock time, the marker of an ended timer stays.
const EndedTTL = 24 * time.Hour

// defaultData is the body of a derived event when `emit.data` is not set.
const defaultData = `{"key": key, "started": timer.started, "deadline": timer.deadline, "event": timer.event}`

// ErrBadTimer is the reason of the dead letter of a timer in the projection whose deadline
// does not parse: the first tick ends it (see Start).
var ErrBadTimer = errors.New("not a timer")

// Spec returns the spec of the timeout operator (Name "timeout"), for a registry.
func Spec() operators.Spec {
	return operators.Spec{
		Name:    "timeout",
		Summary: "timeout: {name, start, cancel, after, restart, emit, projection} emits when a start is not cancelled in time",
		Build:   build,
	}
}

// op is a timeout: see the package comment.
type op struct {
	name, projection string
	prefix           string // of the projection's keys: name + "."
	start, cancel    []string
	after            time.Duration
	restart          bool
	shape            *event.Shape
	subject, data    *expr.Expr // the emit's (data as one expression, a map of fields made one)
	once             bool       // handler: once
	typ              string     // CloudEvents type ("": the subject)
	// keepEvent tells that the emit reads timer.event (or the timer whole): the timer then
	// keeps its start event, which the pipeline must decode whole.
	keepEvent bool
	// slots are the timer's fields in shape, which has them all.
	slots struct{ started, deadline, seq, event int }

	idx     index
	ticked  []string    // the keys whose timers the tick of sequence tickSeq ended
	tickSeq uint64      // (the last tick that ended any)
	scratch event.Event // what the emit runs on outside a tick
}

// build builds a timeout from its raw YAML value; every problem is an *expr.FieldError.
func build(b operators.BuildContext, raw any) (operators.Operator, error) {
	m, errs := operators.Fields(raw, "", "name", "start", "cancel", "after", "restart", "emit", "projection")
	if m == nil {
		return nil, errors.Join(errs...)
	}
	var err error
	o := &op{restart: true, once: true, projection: b.Pipeline + "_timers"}
	o.name, _ = m["name"].(string)
	if !operators.ValidName(o.name) {
		errs = append(errs, operators.FieldErr("name", fmt.Errorf("%q: want a name of letters, digits, - and _, unique within the pipeline", o.name)))
	}
	o.start, err = operators.EventTypes(m["start"])
	errs = append(errs, operators.FieldErr("start", err))
	if c, ok := m["cancel"]; ok {
		o.cancel, err = operators.EventTypes(c)
		errs = append(errs, operators.FieldErr("cancel", err))
	}
	for _, t := range o.cancel {
		if slices.Contains(o.start, t) {
			errs = append(errs, operators.FieldErr("cancel", fmt.Errorf("type %q both starts and cancels the timer", t)))
		}
	}
	o.after, err = operators.Duration(m["after"])
	errs = append(errs, operators.FieldErr("after", err))
	if r, ok := m["restart"]; ok {
		if o.restart, ok = r.(bool); !ok {
			errs = append(errs, operators.FieldErr("restart", fmt.Errorf("%v: want true or false", r)))
		}
	}
	if p, ok := m["projection"]; ok {
		o.projection, _ = p.(string)
	}
	if !operators.ValidName(o.projection) {
		errs = append(errs, operators.FieldErr("projection", fmt.Errorf("%q: want a name of letters, digits, - and _ (set one when the pipeline's name makes the default <pipeline>_timers invalid)", o.projection)))
	}
	errs = append(errs, o.buildEmit(m["emit"], append(slices.Clone(b.Vars), Var))...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o.prefix = o.name + "."
	o.UseShape(event.NewShape(o.StateFields()...))
	o.idx.reset()
	return o, nil
}

// buildEmit compiles `emit` with vars (the pipeline's and [Var]).
func (o *op) buildEmit(raw any, vars []string) []error {
	m, errs := operators.Fields(raw, "emit", "subject", "data", "handler", "type")
	if m == nil {
		return errs
	}
	var err error
	o.subject, err = operators.CompileExpr(m["subject"], expr.StringResult, vars)
	errs = append(errs, operators.FieldErr("emit.subject", err))
	var data any = defaultData
	if d, ok := m["data"]; ok {
		data = d
	}
	if fields, ok := data.(map[string]any); ok { // made one expression: {"field": (expr), ...}
		var srcs []string
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			x, err := operators.CompileExpr(fields[name], expr.AnyResult, vars)
			if errs = append(errs, operators.FieldErr("emit.data."+name, err)); err == nil {
				srcs = append(srcs, strconv.Quote(name)+": ("+x.Source+")")
			}
		}
		data = "{" + strings.Join(srcs, ", ") + "}"
	}
	o.data, err = operators.CompileExpr(data, expr.AnyResult, vars)
	errs = append(errs, operators.FieldErr("emit.data", err))
	members, whole := expr.VarMembers(Var, o.subject, o.data)
	o.keepEvent = whole || slices.Contains(members, StateEvent)
	// on and all are the same for a timer: a tick is never outdated
	h, err := operators.ParseHandler(m["handler"], operators.Once, operators.On, operators.All)
	o.once = h == operators.Once
	errs = append(errs, operators.FieldErr("emit.handler", err))
	o.typ, err = operators.EmitType(m)
	errs = append(errs, operators.FieldErr("emit.type", err))
	return errs
}

// Projection implements [operators.Projector].
func (o *op) Projection() string { return o.projection }

// StateFields implements [operators.Projector].
func (o *op) StateFields() []string {
	return []string{StateDeadline, StateEnded, StateEvent, StateSeq, StateStarted}
}

// Shape implements [operators.Projector].
func (o *op) Shape() *event.Shape { return o.shape }

// UseShape implements [operators.Projector].
func (o *op) UseShape(s *event.Shape) {
	o.shape = s
	o.slots.started, _ = s.Slot(StateStarted)
	o.slots.deadline, _ = s.Slot(StateDeadline)
	o.slots.seq, _ = s.Slot(StateSeq)
	o.slots.event, _ = s.Slot(StateEvent)
}

// UsesTTL implements [operators.TTLProjector]: with restart: false the markers of ended
// timers carry a TTL.
func (o *op) UsesTTL() bool { return !o.restart }

// Exprs implements [operators.Expressioner]: the emit's expressions, and `event` whole when
// the timer keeps the start event (the emit reads timer.event).
func (o *op) Exprs() []*expr.Expr {
	if o.keepEvent {
		return []*expr.Expr{o.subject, o.data, expr.MustCompile("event", expr.AnyResult)}
	}
	return []*expr.Expr{o.subject, o.data}
}

// Claims implements [operators.Claimer]: the keys of its name.
func (o *op) Claims() (string, string) { return o.projection, o.prefix }
