package operators

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// Operator is one step of a pipeline.
//
// Process returns keep=false to drop the event: the rest of the chain is skipped, the effects
// the operators before it staged are applied, and the event counts as filtered (as a
// duplicate when the operator set event.Event.Duplicate). An error sends the event to the
// pipeline's on_error policy (dead letter by default); every effect staged on the event is
// then discarded.
// Operators never acknowledge messages and never write to NATS.
type Operator interface {
	Process(x *Exec, ev *event.Event) (keep bool, err error)
}

// Store reads per-key state. The pipeline implements it with its state cache. Writes are not
// made through it: an operator stages them on the event ([Write]), and the pipeline applies
// them when the event is kept, or drops them with the event.
type Store interface {
	// Get returns the committed-or-cached state of key in projection, one the pipeline
	// writes. A key without state yet is a nil *event.Entry or an Entry with a nil State.
	Get(ctx context.Context, projection, key string) (*event.Entry, error)
	// Lookup returns the state of key in any projection, nil when the key has none: for a
	// projection the pipeline writes, its latest state (that of the batch in hand included);
	// for another pipeline's (a stream-table join), the committed state as this process last
	// saw it (the pipeline's Store keeps a replica kept current by a watch of the bucket).
	// The map is the caller's own.
	Lookup(ctx context.Context, projection, key string) (map[string]any, error)
	// Scan calls fn, in key order, with every key of projection (one the pipeline writes)
	// that starts with prefix and has state, as committed or as changed by the events before,
	// until fn returns false.
	Scan(ctx context.Context, projection, prefix string, fn func(key string, e *event.Entry) bool) error
	// Keys returns, sorted, the keys of projection (one the pipeline writes) that start with
	// prefix and have state, as committed or as changed by the events before, without reading
	// their states: an operator rebuilds its index of them at start ([Starter]).
	Keys(ctx context.Context, projection, prefix string) ([]string, error)
}

// Starter is implemented by operators that keep something in memory besides the Store (an
// index of their keys by time): the pipeline calls Start at every start, after loading the
// checkpoint, before the first event, with the watermark of the checkpoint in x.Watermark. An
// operator rebuilds there what it keeps from the Store, forgetting what an earlier run left
// (a restart discards every effect that was not committed).
type Starter interface {
	Start(x *Exec) error
}

// Claimer is implemented by operators that need keys of their projection to themselves (a
// window's, a timer's, a dedupe's): Claims returns the projection and the prefix of the keys
// they write ("" for all). The pipeline refuses two operators whose claims overlap, and an
// operator writing a projection of which another claims every key.
type Claimer interface {
	Claims() (projection, prefix string)
}

// Reader is implemented by operators that read projections through [Store.Lookup]: the
// pipeline warns at load about a projection that no pipeline writes.
type Reader interface {
	Reads() []string
}

// KeyReader is implemented by operators that read one key of a projection through
// [Store.Lookup], the key computed by an expression of the event: while reads are frequent,
// the pipeline computes those keys for the events at hand and reads them ahead, many at once.
// A key computed wrongly there (the expression reads a variable an earlier operator sets)
// only costs a read: the operator computes its own.
type KeyReader interface {
	ReadsKey() (projection string, key *expr.Expr)
}

// Binder is implemented by operators that set expression variables for the operators after
// them (see event.Event.SetVar): a lookup's `as`. The pipeline compiles the later operators'
// expressions with these names (see [BuildContext.Vars]).
type Binder interface {
	Binds() []string
}

// Clock is implemented by operators that act on the passing of event time. The pipeline's
// watermark is the greatest event time of the events it has read (those whose time does not
// decode excepted), kept with the checkpoint. After each event that moves it, the pipeline
// calls Advance with the watermark before (from) and after (to) and a tick: an event of its
// own, with the moving event's sequence, subject and mode and the new watermark as its time,
// on which Advance stages writes and derived events. from and to make the call stateless: an
// operator finds what came due between them (a window end, a timer) without remembering
// anything, so a restart from the checkpoint, which replays the same moves, closes the same
// windows. A tick's effects are applied whether or not the event that moved the
// watermark was kept, and are committed, or dropped after a failure, with it. A derived event
// fired by time should set [event.Output.ID]: the event that moves the watermark past a point may
// differ between two runs (a rebuild from another position), the point does not.
type Clock interface {
	Advance(x *Exec, tick *event.Event, from, to time.Time) error
}

// Exec is what an operator needs to run besides the event: the context of the batch, the
// state store, the watermark and an expression VM that the pipeline's goroutine reuses. An Exec is used by one
// goroutine at a time.
type Exec struct {
	Ctx   context.Context
	Store Store
	// Watermark is the pipeline's watermark, the event in hand included (see [Clock]).
	Watermark time.Time
	// Owns tells whether an entity key is this runner's, nil meaning every key: a partition
	// of a partitioned pipeline owns the keys of its partition. Operators that index their
	// projection at start (windows, timers) index the keys it owns only, since the others'
	// windows close and timers fire with the others' watermarks.
	Owns func(key string) bool

	// Runner evaluates expressions with a VM the pipeline's goroutine reuses.
	expr.Runner
}

// OwnsKey tells whether key is this runner's (see Exec.Owns).
func (x *Exec) OwnsKey(key string) bool { return x.Owns == nil || x.Owns(key) }

// Projector is implemented by operators that write a projection.
type Projector interface {
	Projection() string
	// StateFields returns the state fields the operator names.
	StateFields() []string
	// Shape returns the shape of the records the operator makes.
	Shape() *event.Shape
	// UseShape makes the operator hold states in records of shape s, which has every field
	// of StateFields. A pipeline gives all the operators of one projection one shape, so that
	// each can change the records the others made in place.
	UseShape(s *event.Shape)
}

// TTLProjector is implemented by operators whose writes may carry a TTL: the pipeline lets
// the buckets of their projections hold per-key TTLs.
type TTLProjector interface {
	Projector
	UsesTTL() bool
}

// Expressioner is implemented by operators that evaluate expressions; the pipeline reads them
// to decode only the event fields that some expression uses.
type Expressioner interface {
	Exprs() []*expr.Expr
}

// StateChecker is implemented by operators whose expressions read `state`.
type StateChecker interface {
	// CheckState type-checks the operator's expressions that read `state` against st, the
	// state they see; it returns every problem as a *[expr.FieldError].
	CheckState(st *expr.StateType) error
}

// StateFieldsAssigned is implemented by operators that assign state fields (folds).
type StateFieldsAssigned interface {
	Projector
	// InitialTypes returns the type of each field of `initial` (see [expr.TypeOf]).
	InitialTypes() map[string]reflect.Type
	// Assigned returns the fields the operator's handlers assign.
	Assigned() []string
}

// Spec describes an operator kind: its name in YAML, its documentation and its constructor.
type Spec struct {
	// Name is the YAML key (`filter`, `fold`, ...).
	Name string
	// Summary is a one-line description for docs and errors.
	Summary string
	// Build constructs the operator from its raw YAML value. Problems are returned as
	// [FieldError] values (joined) so they can be reported at their place in the file.
	Build func(b BuildContext, raw any) (Operator, error)
}

// BuildContext is what a constructor knows about where it is built.
type BuildContext struct {
	// Pipeline is the name of the pipeline the operator is built for.
	Pipeline string
	// Vars are the expression variables the operators before this one set ([Binder]): the
	// operator compiles its expressions with them (expr.Compile's vars).
	Vars []string
}

// Registry maps operator names to their specs.
type Registry struct {
	specs map[string]Spec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{specs: map[string]Spec{}} }

// Core returns a registry with the operators this package implements (filter, set, map, key,
// fold, emit); package builtin adds the stateful ones.
func Core() *Registry {
	r := NewRegistry()
	for _, s := range []Spec{filterSpec(), setSpec(), mapSpec(), keySpec(), foldSpec(), emitSpec()} {
		if err := r.Register(s); err != nil {
			panic(err) // a programming error in this package, never user input
		}
	}
	return r
}

// Register adds s; it returns [ErrDuplicateOperator] when the name is taken.
func (r *Registry) Register(s Spec) error {
	if s.Name == "" || s.Build == nil {
		return fmt.Errorf("register operator %q: %w", s.Name, ErrInvalidSpec)
	}
	if _, ok := r.specs[s.Name]; ok {
		return fmt.Errorf("register operator %q: %w", s.Name, ErrDuplicateOperator)
	}
	r.specs[s.Name] = s
	return nil
}

// Lookup returns the spec named name.
func (r *Registry) Lookup(name string) (Spec, bool) {
	s, ok := r.specs[name]
	return s, ok
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.specs))
	for n := range r.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
