package dedupe

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// Name is the operator's YAML key.
const Name = "dedupe"

// The fields of the operator's configuration.
const (
	FieldID         = "id"
	FieldWithin     = "within"
	FieldProjection = "projection"
)

// The fields of an id's state in the projection.
const (
	// StateFirst is the event time of the id's first sighting (RFC 3339, UTC).
	StateFirst = "first"
	// StateEarlier lists the source sequences of the id's earlier first sightings, oldest
	// first, at most [MaxEarlier]: what a replay after a crash needs (see the package
	// comment). Absent until the id has been forgotten and sighted again.
	StateEarlier = "earlier"
)

// MaxEarlier bounds [StateEarlier].
const MaxEarlier = 8

// ErrBadState is returned for a value of the projection that is not an id's (a first sighting
// that does not parse): one written by something else. The event is a dead letter.
var ErrBadState = errors.New("not a dedupe entry")

// Spec returns the spec of the dedupe operator, for a registry.
func Spec() operators.Spec {
	return operators.Spec{
		Name:    Name,
		Summary: "dedupe: {id, within, projection} drops the repeats of an id within a span of event time",
		Build:   build,
	}
}

// op is a dedupe: see the package comment.
type op struct {
	id         *expr.Expr
	within     time.Duration
	ttl        time.Duration
	projection string
	shape      *event.Shape
	// firstSlot and earlierSlot are the slots of StateFirst and StateEarlier in shape.
	firstSlot, earlierSlot int
}

// build builds a dedupe from its raw YAML value. Every problem is returned, joined, as a
// *expr.FieldError at its field.
func build(b operators.BuildContext, raw any) (operators.Operator, error) {
	m, errs := operators.Fields(raw, "", FieldID, FieldWithin, FieldProjection)
	if m == nil {
		return nil, errors.Join(errs...)
	}
	o := &op{}
	var err error
	o.id, err = operators.CompileExpr(m[FieldID], expr.StringResult, b.Vars)
	errs = append(errs, operators.FieldErr(FieldID, err))
	o.within, err = operators.Duration(m[FieldWithin])
	errs = append(errs, operators.FieldErr(FieldWithin, err))
	o.projection = b.Pipeline + "_dedupe"
	if p, ok := m[FieldProjection]; ok {
		o.projection, _ = p.(string)
	}
	if !operators.ValidName(o.projection) {
		errs = append(errs, operators.FieldErr(FieldProjection, fmt.Errorf("projection %q: want a name of letters, digits, - and _ (set one when the pipeline's name makes the default <pipeline>_dedupe invalid)", o.projection)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o.ttl = TTL(o.within)
	o.UseShape(event.NewShape(o.StateFields()...))
	return o, nil
}

// TTL returns the KV TTL of the entries of a dedupe that remembers ids for within: 2*within +
// 1h after the last write, in wall-clock time (see the package comment).
func TTL(within time.Duration) time.Duration { return 2*within + time.Hour }

// Process implements [operators.Operator]: it drops a repeat of a remembered id (keep=false,
// ev.Duplicate set) and remembers a first sighting. An event without a valid time, or whose
// id expression fails or is empty, is an error (a dead letter).
func (o *op) Process(x *operators.Exec, ev *event.Event) (bool, error) {
	if ev.TimeErr != nil {
		return false, ev.TimeErr
	}
	id, err := x.EvalString(o.id, ev)
	if err != nil {
		return false, fmt.Errorf("dedupe id: %w", err)
	}
	e, err := x.Store.Get(x.Ctx, o.projection, id)
	if err != nil {
		return false, fmt.Errorf("dedupe: %w", err)
	}
	var earlier []uint64
	if e != nil && e.State != nil {
		first, prev, err := o.read(id, e.State)
		if err != nil {
			return false, err
		}
		switch {
		case e.Seq == ev.Seq || slices.Contains(prev, ev.Seq):
			return true, nil // this very sighting, committed before a restart
		case e.Seq > ev.Seq:
			// A later sighting was committed before a restart, during the batch of this
			// event: the sightings since the oldest known one are all known, and an event
			// between two of them was a repeat. Before the oldest known, it cannot be told:
			// kept, for the operators after to find it applied or not by their own keys.
			if ev.Seq > slices.Min(append(prev, e.Seq)) {
				ev.Duplicate = true
				return false, nil
			}
			return true, nil
		case x.Watermark.Before(first.Add(o.within)):
			ev.Duplicate = true // remembered: a repeat
			return false, nil
		}
		earlier = append(prev, e.Seq)
		if len(earlier) > MaxEarlier {
			earlier = earlier[len(earlier)-MaxEarlier:]
		}
	}
	st := event.NewRecord(o.shape, nil) // the fields set by slot: no map per event
	st.Set(o.firstSlot, event.ValueOf(ev.Time.UTC().Format(time.RFC3339Nano)))
	if len(earlier) > 0 {
		seqs := make([]any, len(earlier))
		for i, s := range earlier {
			seqs[i] = float64(s)
		}
		st.Set(o.earlierSlot, event.ValueOf(seqs))
	}
	ev.Writes = append(ev.Writes, event.Write{
		Projection: o.projection, Key: id, State: st,
		Seq: ev.Seq, Time: ev.Time, Entry: e, TTL: o.ttl,
	})
	return true, nil
}

// read reads an id's state: its first sighting and the sequences of the earlier ones.
func (o *op) read(id string, st *event.Record) (time.Time, []uint64, error) {
	s, _ := st.Get(StateFirst).(string)
	first, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("dedupe: %s/%s: first %q: %w", o.projection, id, s, ErrBadState)
	}
	raw, _ := st.Get(StateEarlier).([]any)
	earlier := make([]uint64, 0, len(raw)+1)
	for _, v := range raw {
		if f, ok := v.(float64); ok {
			earlier = append(earlier, uint64(f))
		}
	}
	return first, earlier, nil
}

// Projection implements [operators.Projector].
func (o *op) Projection() string { return o.projection }

// StateFields implements [operators.Projector].
func (o *op) StateFields() []string { return []string{StateEarlier, StateFirst} }

// Shape implements [operators.Projector].
func (o *op) Shape() *event.Shape { return o.shape }

// UseShape implements [operators.Projector].
func (o *op) UseShape(s *event.Shape) {
	o.shape = s
	o.firstSlot, _ = s.Slot(StateFirst)
	o.earlierSlot, _ = s.Slot(StateEarlier)
}

// UsesTTL implements [operators.TTLProjector]: every write carries a TTL.
func (o *op) UsesTTL() bool { return true }

// Exprs implements [operators.Expressioner].
func (o *op) Exprs() []*expr.Expr { return []*expr.Expr{o.id} }

// Claims implements [operators.Claimer]: a dedupe's keys are all its projection's.
func (o *op) Claims() (string, string) { return o.projection, "" }
