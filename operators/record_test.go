package operators

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// TestRecordJSON: a record writes what encoding/json writes for its map, flat or not, in a
// shape or not.
func TestRecordJSON(t *testing.T) {
	tests := []map[string]any{
		{},
		{"a": 1.0, "b": math.Copysign(0, -1), "c": 1e21, "d": 1e-7, "e": 123456.789, "f": 1e20, "g": 5e-324, "h": -1.5e-9},
		{"s": "plain", "t": "<tag> & \"q\" \\ \n\t\u00e9\u2028", "n": nil, "y": true, "z": false},
		{"nested": map[string]any{"k": []any{1.0, "x", nil}}, "a": 2.0},
		{"é": 1.0, "<k>": "v", "": 0.0},
		{"bad utf8": "a\xffb"},
	}
	shapes := []*Shape{nil, NewShape("a", "b", "c", "s", "t", "nested", "<k>", "", "bad utf8"), NewShape("a")}
	for _, m := range tests {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range shapes {
			got, err := NewRecord(s, m).AppendJSON(nil)
			if err != nil || string(got) != string(want) {
				t.Errorf("record of %v in shape %v wrote %s (%v), want %s", m, s.Names(), got, err, want)
			}
		}
	}
	if _, err := NewRecord(NewShape("a"), map[string]any{"a": math.Inf(1)}).AppendJSON(nil); err == nil {
		t.Error("an infinite number was encoded")
	}
}

// TestAppendFloat: numbers are written as encoding/json writes them, over many magnitudes.
func TestAppendFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f); string(got) != string(want) {
			t.Fatalf("appendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

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
		stored := &Entry{State: NewRecord(fold.shape, map[string]any{"n": 5.0}), Seq: 1, Owned: owned}
		x := &Exec{Store: oneEntry{stored}}
		ev := &Event{Seq: 2, Type: "t", Key: "k", Fields: map[string]any{"id": "e2"}}
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
type oneEntry struct{ e *Entry }

func (o oneEntry) Get(_ context.Context, _, _ string) (*Entry, error) { return o.e, nil }

func (o oneEntry) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

func (o oneEntry) Scan(context.Context, string, string, func(string, *Entry) bool) error { return nil }

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
	shape := NewShape(names...)
	for _, f := range folds {
		f.UseShape(shape)
	}
	stored := &Entry{State: NewRecord(shape, map[string]any{"n": 1.0}), Seq: 1, Owned: true}
	ev := &Event{Seq: 2, Type: "t", Key: "k"}
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
		e := MustCompile(src, AnyResult)
		if fields, _ := identFields("state", []*Expr{e}); len(fields) > 0 {
			t.Errorf("%s names state fields %v", src, fields)
		}
		ev := &Event{State: NewRecord(NewShape("n"), map[string]any{"n": 1.0})}
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
	st := NewRecord(NewShape("items"), map[string]any{"items": map[string]any{"a": 1.0}})
	ev := &Event{State: st, Fields: map[string]any{}}
	for _, op := range []Operator{m, s} {
		if _, err := op.Process(&Exec{}, ev); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := st.AppendJSON(nil); string(b) != `{"items":{"a":1}}` {
		t.Errorf("the state changed to %s", b)
	}
}

// BenchmarkAppendJSONNested writes a state that is not flat (a nested map and list, a string
// with characters JSON escapes), which AppendJSON leaves to its general encoder.
func BenchmarkAppendJSONNested(b *testing.B) {
	s := NewShape("items", "last_order", "orders", "revenue", "tags", "city")
	r := NewRecord(s, map[string]any{
		"items": 3.0, "orders": 12.0, "revenue": 1234.5, "last_order": "o-991",
		"tags": []any{"vip", "eu"}, "city": "Zürich",
		"address": map[string]any{"street": "Bahnhofstrasse 1", "zip": "8001", "geo": []any{47.37, 8.54}},
	})
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = r.AppendJSON(dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
