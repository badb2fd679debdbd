package operators

import (
	"context"
	"testing"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// TestRecordInPlaceRollback: a fold that changes its entry's own record in place leaves it as
// it was when the event is rolled back, and a record it does not own untouched.
func TestRecordInPlaceRollback(t *testing.T) {
	f, err := buildFold(BuildContext{}, map[string]any{
		"projection": "p",
		"initial":    map[string]any{"n": 0},
		"on":         map[string]any{"t": map[string]any{"n": "state.n + 1", "last": "event.id"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	fold := f.(*foldOp)
	for _, owned := range []bool{true, false} {
		stored := &event.Entry{State: event.NewRecord(fold.shape, map[string]any{"n": 5.0}), Seq: 1, Owned: owned}
		x := &Exec{Store: oneEntry{stored}}
		ev := &event.Event{Seq: 2, Type: "t", Key: "k", Fields: map[string]any{"id": "e2"}}
		if _, err := fold.Process(x, ev); err != nil {
			t.Fatal(err)
		}
		if got := ev.Writes[0].State.Map(); got["n"] != 6.0 || got["last"] != "e2" {
			t.Fatalf("owned %v: staged %v, want n 6 and last e2", owned, got)
		}
		if inPlace := ev.Writes[0].State == stored.State; inPlace != owned {
			t.Errorf("owned %v: changed in place %v", owned, inPlace)
		}
		ev.Rollback()
		if got := stored.State.Map(); len(got) != 1 || got["n"] != 5.0 {
			t.Errorf("owned %v: after rollback the stored state is %v, want n 5 alone", owned, got)
		}
	}
}

// oneEntry is a Store holding one entry for every key.
type oneEntry struct{ e *event.Entry }

func (o oneEntry) Get(_ context.Context, _, _ string) (*event.Entry, error) { return o.e, nil }

func (o oneEntry) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

func (o oneEntry) Scan(context.Context, string, string, func(string, *event.Entry) bool) error {
	return nil
}

func (o oneEntry) Keys(context.Context, string, string) ([]string, error) { return nil, nil }

// TestFoldsShareShape: two folds of one projection given one shape, as a pipeline does, each
// change in place the record the other made (the entry's own); records of another shape are
// copied into the fold's.
func TestFoldsShareShape(t *testing.T) {
	specs := []map[string]any{
		{"projection": "p", "on": map[string]any{"t": map[string]any{"n": "(state.n ?? 0) + 1"}}},
		{"projection": "p", "on": map[string]any{"t": map[string]any{"m": "(state.m ?? 0) + 2"}}},
	}
	var folds []*foldOp
	var names []string
	for _, spec := range specs {
		f, err := buildFold(BuildContext{}, spec)
		if err != nil {
			t.Fatal(err)
		}
		folds = append(folds, f.(*foldOp))
		names = append(names, f.(Projector).StateFields()...)
	}
	if folds[0].Shape() == folds[1].Shape() {
		t.Fatal("two folds built apart share a shape")
	}
	shape := event.NewShape(names...)
	for _, f := range folds {
		f.UseShape(shape)
	}
	stored := &event.Entry{State: event.NewRecord(shape, map[string]any{"n": 1.0}), Seq: 1, Owned: true}
	ev := &event.Event{Seq: 2, Type: "t", Key: "k"}
	for _, f := range folds {
		if _, err := f.Process(&Exec{Store: oneEntry{stored}}, ev); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range ev.Writes {
		if w.State != stored.State {
			t.Errorf("fold %d copied the entry's record instead of changing it in place", i)
		}
	}
	if got := stored.State.Map(); got["n"] != 2.0 || got["m"] != 2.0 {
		t.Errorf("state %v, want n 2 and m 2", got)
	}
	ev.Rollback()
	if got := stored.State.Map(); len(got) != 1 || got["n"] != 1.0 {
		t.Errorf("after rollback the state is %v, want n 1 alone", got)
	}
}

// TestStateMethodsHidden: an expression cannot call the record's methods: `state` with a
// method is the whole state, a map, as it was before states were records.
func TestStateMethodsHidden(t *testing.T) {
	for _, src := range []string{"state.Len()", "state.Map()", "state.EstimateJSON()"} {
		e := expr.MustCompile(src, expr.AnyResult)
		if fields, _ := expr.Fields("state", e); len(fields) > 0 {
			t.Errorf("%s names state fields %v", src, fields)
		}
		ev := &event.Event{State: event.NewRecord(event.NewShape("n"), map[string]any{"n": 1.0})}
		if v, err := (&Exec{}).Eval(e, ev); err == nil {
			t.Errorf("%s = %v, want an error", src, v)
		}
	}
}

// TestMapCopiesState: `map: state.items` then `set` leaves the state as it was.
func TestMapCopiesState(t *testing.T) {
	m, err := mapSpec().Build(BuildContext{}, "state.items")
	if err != nil {
		t.Fatal(err)
	}
	s, err := setSpec().Build(BuildContext{}, map[string]any{"x": "1"})
	if err != nil {
		t.Fatal(err)
	}
	st := event.NewRecord(event.NewShape("items"), map[string]any{"items": map[string]any{"a": 1.0}})
	ev := &event.Event{State: st, Fields: map[string]any{}}
	for _, op := range []Operator{m, s} {
		if _, err := op.Process(&Exec{}, ev); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := st.AppendJSON(nil); string(b) != `{"items":{"a":1}}` {
		t.Errorf("the state changed to %s", b)
	}
}

// TestInitialFillsOldStates: a field added to initial after a key got state reads as its
// initial value, not nil (a changed pipeline is not an outage), and the stored record is left
// as it was.
func TestInitialFillsOldStates(t *testing.T) {
	f, err := buildFold(BuildContext{}, map[string]any{
		"projection": "p",
		"initial":    map[string]any{"n": 0, "adds": 0},
		"on":         map[string]any{"t": map[string]any{"n": "state.n + 1", "adds": "state.adds + 1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	fold := f.(*foldOp)
	for _, owned := range []bool{true, false} {
		stored := &event.Entry{State: event.NewRecord(fold.shape, map[string]any{"n": 5.0}), Seq: 1, Owned: owned}
		ev := &event.Event{Seq: 2, Type: "t", Key: "k"}
		if _, err := fold.Process(&Exec{Store: oneEntry{stored}}, ev); err != nil {
			t.Fatalf("owned %v: %v", owned, err)
		}
		if got := ev.Writes[0].State.Map(); got["n"] != 6.0 || got["adds"] != 1.0 {
			t.Errorf("owned %v: staged %v, want n 6 and adds 1", owned, got)
		}
		if got := stored.State.Map(); len(got) != 1 {
			t.Errorf("owned %v: the stored state changed to %v", owned, got)
		}
	}
}
