package operators_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/opstest"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

// memStore is a Store over a map, for operator tests (the pipeline's real store is tested
// against NATS in package pipeline).
type memStore map[string]*event.Entry

func (m memStore) Get(_ context.Context, proj, key string) (*event.Entry, error) {
	return m[proj+"/"+key], nil
}

func (m memStore) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

func (m memStore) Scan(context.Context, string, string, func(string, *event.Entry) bool) error {
	return nil
}

func (m memStore) Keys(context.Context, string, string) ([]string, error) { return nil, nil }

func build(t *testing.T, name string, raw any) operators.Operator {
	t.Helper()
	spec, ok := operators.Core().Lookup(name)
	if !ok {
		t.Fatalf("no operator %s", name)
	}
	op, err := spec.Build(operators.BuildContext{Pipeline: "p"}, raw)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return op
}

func exec(store memStore) *operators.Exec {
	return &operators.Exec{Ctx: context.Background(), Store: store}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name, op string
		raw      any
		field    string // FieldError.Field of the first error
		msg      string
	}{
		{"filter not compiling", "filter", "event.x ==", "", "unexpected token"},
		{"filter not bool", "filter", `"text"`, "", "expected bool"},
		{"filter unknown variable", "filter", "evnt.x == 1", "", "unknown name evnt"},
		{"set not a map", "set", "x", "", "want a map"},
		{"fold unknown field", "fold", map[string]any{"projection": "p", "on": map[string]any{}, "bogus": 1}, "bogus", "unknown field"},
		{"fold bad handler expr", "fold", map[string]any{"projection": "p", "on": map[string]any{"t": map[string]any{"a": "state.a +"}}}, "on.t.a", "unexpected token"},
		{"fold bad projection", "fold", map[string]any{"projection": "a.b", "on": map[string]any{}}, "projection", "letters, digits"},
		{"fold missing on", "fold", map[string]any{"projection": "p"}, "on", "want a map"},
		{"fold handler once", "fold", map[string]any{"projection": "p", "on": map[string]any{}, "handler": "once"}, "handler", "want one of"},
		{"emit missing subject", "emit", map[string]any{"data": map[string]any{}}, "subject", "missing expression"},
		{"emit bad when", "emit", map[string]any{"subject": `"a"`, "when": "1 +"}, "when", "unexpected token"},
		{"emit bad data field", "emit", map[string]any{"subject": `"a"`, "data": map[string]any{"x": "(("}}, "data.x", "unexpected token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, _ := operators.Core().Lookup(tt.op)
			opstest.BuildError(t, spec, tt.raw, tt.field, tt.msg)
		})
	}
}

func TestLiteralNumbersAndBoolsAreExpressions(t *testing.T) {
	op := build(t, "set", map[string]any{"n": 0, "f": 1.5, "b": true})
	ev := &event.Event{Fields: map[string]any{}}
	if _, err := op.Process(exec(nil), ev); err != nil {
		t.Fatal(err)
	}
	if ev.Fields["n"] != 0.0 || ev.Fields["f"] != 1.5 || ev.Fields["b"] != true {
		t.Errorf("fields = %v", ev.Fields)
	}
}

func TestFilterSetMapKey(t *testing.T) {
	x := exec(nil)
	ev := &event.Event{Fields: map[string]any{"type": "a", "n": 2.0, "user": "u1"}, Type: "a", Key: "k"}
	if keep, err := build(t, "filter", `event.type == "b"`).Process(x, ev); err != nil || keep {
		t.Fatalf("filter kept=%v err=%v", keep, err)
	}
	if keep, err := build(t, "filter", `type == "a" && event.n > 1`).Process(x, ev); err != nil || !keep {
		t.Fatalf("filter kept=%v err=%v", keep, err)
	}
	if _, err := build(t, "set", map[string]any{"n": "event.n * 10", "m": "event.n"}).Process(x, ev); err != nil {
		t.Fatal(err)
	}
	if ev.Fields["n"] != 20.0 || ev.Fields["m"] != 2.0 {
		t.Errorf("set: both expressions see the event before the set: %v", ev.Fields)
	}
	if _, err := build(t, "key", `"user/" + event.user`).Process(x, ev); err != nil || ev.Key != "user/u1" {
		t.Errorf("key = %q, %v", ev.Key, err)
	}
	if _, err := build(t, "map", `{"only": event.m}`).Process(x, ev); err != nil || len(ev.Fields) != 1 || ev.Fields["only"] != 2.0 {
		t.Errorf("map: %v %v", ev.Fields, err)
	}
	if _, err := build(t, "map", `1`).Process(x, ev); !errors.Is(err, expr.ErrEval) {
		t.Errorf("map to a number: err = %v, want ErrEval", err)
	}
	ev.Fields = map[string]any{}
	if _, err := build(t, "key", `event.missing`).Process(x, ev); !errors.Is(err, expr.ErrEval) {
		t.Errorf("key of a missing field: err = %v, want ErrEval", err)
	}
}

func foldSpec() map[string]any {
	return map[string]any{
		"projection": "carts",
		"initial":    map[string]any{"items": 0, "orders": 0},
		"on": map[string]any{
			"add":   map[string]any{"items": "state.items + 1"},
			"order": map[string]any{"items": 0, "orders": "state.orders + 1", "last": "event.id"},
		},
	}
}

func TestFold(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		stored    *event.Entry
		ev        event.Event
		wantState map[string]any // nil: no write
		outdated  bool
		duplicate bool
	}{
		{"new key gets initial then handler", nil,
			event.Event{Seq: 1, Type: "add", Key: "k", Time: t0},
			map[string]any{"items": 1.0, "orders": 0.0}, false, false},
		{"existing key", &event.Entry{State: rec(map[string]any{"items": 3.0, "orders": 1.0}), Seq: 5, Time: t0},
			event.Event{Seq: 6, Type: "order", Key: "k", Time: t0, Fields: map[string]any{"id": "o1"}},
			map[string]any{"items": 0.0, "orders": 2.0, "last": "o1"}, false, false},
		{"type without handler writes nothing", &event.Entry{State: rec(map[string]any{"items": 3.0}), Seq: 5},
			event.Event{Seq: 6, Type: "other", Key: "k", Time: t0}, nil, false, false},
		{"already applied is a duplicate", &event.Entry{State: rec(map[string]any{"items": 3.0}), Seq: 9},
			event.Event{Seq: 9, Type: "add", Key: "k", Time: t0}, nil, false, true},
		{"older event time is outdated", &event.Entry{State: rec(map[string]any{"items": 3.0}), Seq: 5, Time: t0.Add(time.Hour)},
			event.Event{Seq: 6, Type: "add", Key: "k", Time: t0}, nil, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := memStore{}
			var before map[string]any
			if tt.stored != nil {
				store["carts/k"] = tt.stored
				before = tt.stored.State.Map()
			}
			ev := tt.ev
			keep, err := build(t, "fold", foldSpec()).Process(exec(store), &ev)
			if err != nil || !keep {
				t.Fatalf("keep=%v err=%v", keep, err)
			}
			if ev.Outdated != tt.outdated || ev.Duplicate != tt.duplicate {
				t.Errorf("outdated=%v duplicate=%v, want %v %v", ev.Outdated, ev.Duplicate, tt.outdated, tt.duplicate)
			}
			if tt.wantState == nil {
				if len(ev.Writes) != 0 {
					t.Errorf("writes = %+v, want none", ev.Writes)
				}
				return
			}
			if len(ev.Writes) != 1 {
				t.Fatalf("writes = %+v, want one", ev.Writes)
			}
			w := ev.Writes[0]
			if w.Seq != ev.Seq || w.Key != "k" || w.Projection != "carts" || !equal(w.State.Map(), tt.wantState) {
				t.Errorf("write = %+v, want state %v at seq %d", w, tt.wantState, ev.Seq)
			}
			if tt.stored != nil && !equal(tt.stored.State.Map(), before) {
				t.Errorf("fold changed the stored state %v in place: now %v", before, tt.stored.State.Map())
			}
		})
	}
}

func TestFoldErrorStagesNothing(t *testing.T) {
	spec := foldSpec()
	spec["on"].(map[string]any)["pay"] = map[string]any{"items": "state.items + 1", "orders": "state.orders + event.amount"}
	ev := event.Event{Seq: 1, Type: "pay", Key: "k"}
	_, err := build(t, "fold", spec).Process(exec(memStore{}), &ev)
	if !errors.Is(err, expr.ErrEval) {
		t.Fatalf("err = %v, want ErrEval", err)
	}
	if len(ev.Writes) != 0 {
		t.Errorf("a failed handler staged %+v", ev.Writes)
	}
}

func TestEmitHandlers(t *testing.T) {
	tests := []struct {
		handler            string
		mode               event.Mode
		outdated, dup, out bool
	}{
		{"once", event.Live, false, false, true},
		{"once", event.Hydrated, false, false, false},
		{"once", event.Live, true, false, false},
		{"on", event.Hydrated, false, false, true},
		{"on", event.Live, true, false, false},
		{"all", event.Hydrated, true, false, true},
		{"all", event.Live, false, true, false},
	}
	for _, tt := range tests {
		op := build(t, "emit", map[string]any{
			"subject": `"derived." + key`, "data": map[string]any{"k": "key", "n": "state.n"}, "handler": tt.handler,
		})
		ev := event.Event{Seq: 3, Key: "k1", Mode: tt.mode, Outdated: tt.outdated, Duplicate: tt.dup, State: rec(map[string]any{"n": 2.0})}
		if _, err := op.Process(exec(nil), &ev); err != nil {
			t.Fatal(err)
		}
		if got := len(ev.Outputs) == 1; got != tt.out {
			t.Errorf("%s mode=%d outdated=%v dup=%v: emitted=%v, want %v", tt.handler, tt.mode, tt.outdated, tt.dup, got, tt.out)
			continue
		}
		if tt.out && (ev.Outputs[0].Subject != "derived.k1" || string(ev.Outputs[0].Data) != `{"k":"k1","n":2}`) {
			t.Errorf("output = %s %s", ev.Outputs[0].Subject, ev.Outputs[0].Data)
		}
	}
}

func TestEmitRejectsBadSubject(t *testing.T) {
	op := build(t, "emit", map[string]any{"subject": `"derived.*"`})
	ev := event.Event{Seq: 1, Key: "k", Fields: map[string]any{}}
	if _, err := op.Process(exec(nil), &ev); !errors.Is(err, expr.ErrEval) {
		t.Errorf("err = %v, want ErrEval for a wildcard subject", err)
	}
}

func TestRegistry(t *testing.T) {
	r := operators.Core()
	want := "emit filter fold key map set"
	if got := strings.Join(r.Names(), " "); got != want {
		t.Errorf("names = %s, want %s", got, want)
	}
	spec, _ := r.Lookup("filter")
	if err := r.Register(spec); !errors.Is(err, operators.ErrDuplicateOperator) {
		t.Errorf("duplicate register: %v", err)
	}
	if err := r.Register(operators.Spec{Name: "x"}); !errors.Is(err, operators.ErrInvalidSpec) {
		t.Errorf("spec without constructor: %v", err)
	}
}

func equal(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestEventFields(t *testing.T) {
	tests := []struct {
		srcs   []string
		fields string
		all    bool
	}{
		{[]string{"event.a + event.b", `event["c"] == 1`, "event?.d"}, "a b c d", false},
		{[]string{"event.a.b.c", "state.x + 1", "key"}, "a", false},
		{[]string{"event.a", "event"}, "a", true},
		{[]string{`event[type]`}, "", true},
		{[]string{"len(event) > 0"}, "", true},
		{[]string{"event.a", "$env.event"}, "a", true},
		{[]string{`$env["event"].b`}, "", true},
	}
	for _, tt := range tests {
		var exprs []*expr.Expr
		for _, s := range tt.srcs {
			exprs = append(exprs, expr.MustCompile(s, expr.AnyResult))
		}
		fields, all := expr.EventFields(exprs...)
		if strings.Join(fields, " ") != tt.fields || all != tt.all {
			t.Errorf("EventFields(%q) = %v, %v; want %q, %v", tt.srcs, fields, all, tt.fields, tt.all)
		}
	}
	emit := build(t, "emit", map[string]any{"subject": `"x." + event.k`})
	if _, all := expr.EventFields(emit.(operators.Expressioner).Exprs()...); !all {
		t.Error("an emit without data sends the whole event: it must be decoded whole")
	}
}

// TestArithFastPath: `A op B` computed without the VM gives what the VM gives, for every
// kind of operand, errors included.
// TestWholeState: an expression that uses `state` other than by field name gets it as a map,
// with or without a state, and reads it as the map it was before states were records.
// TestMemberReadFastPath: a bare member read gives what the VM gives, missing fields included.
// BenchmarkEval measures one fold-style expression against a decoded event and a state.
// TestSlotsReadLikeMap: an event whose fields are in slots (converted, or left as text to
// convert on read) gives every expression what the same event as a map gives, through the
// member read, the arithmetic and the VM, and after set and map operators change it.
func TestSlotsReadLikeMap(t *testing.T) {
	fields := map[string]any{"a": 1.5, "s": "x", "n": nil, "o": map[string]any{"k": 2.0}}
	slotted := func(ev *event.Event, l *event.Layout) {
		slots := make([]event.Slot, len(l.Names())) // "missing" and the rest: nil
		slots[0], slots[1] = event.NumberSlot([]byte("1.5")), event.TextSlot([]byte("x"))
		slots[2], slots[3] = event.ValueSlot(nil), event.ValueSlot(map[string]any{"k": 2.0})
		ev.SetSlots(l, slots)
	}
	x := exec(nil)
	for _, src := range []string{"event.a", "event.s", "event.n", "event.missing", "event.o",
		"event.a + 1", "event.a * event.a", "event.s + event.a", `event.s + "y"`, "event.o.k",
		"event?.missing ?? 3", "event.a > 1 && event.s == 'x'", `event["a"] + 0`} {
		t.Run(src, func(t *testing.T) {
			e := expr.MustCompile(src, expr.AnyResult)
			l := event.NewLayout([]string{"a", "s", "n", "o", "missing"})
			expr.BindLayout(l, e)
			ev := &event.Event{Fields: fields, State: rec(map[string]any{})}
			want, werr := x.Eval(e, ev)
			ev = &event.Event{State: rec(map[string]any{})}
			slotted(ev, l)
			got, gerr := x.Eval(e, ev)
			if fmt.Sprintf("%T %v %v", got, got, gerr) != fmt.Sprintf("%T %v %v", want, want, werr) {
				t.Errorf("slots %T %v (%v), map %T %v (%v)", got, got, gerr, want, want, werr)
			}
		})
	}
	t.Run("set then read", func(t *testing.T) {
		reg := operators.Core()
		spec, _ := reg.Lookup("set")
		op, err := spec.Build(operators.BuildContext{Pipeline: "p"}, map[string]any{"b": "event.a + 1"})
		if err != nil {
			t.Fatal(err)
		}
		read := expr.MustCompile("event.b + event.a", expr.AnyResult)
		l := event.NewLayout([]string{"a", "s", "n", "o", "missing", "b"})
		expr.BindLayout(l, append(op.(operators.Expressioner).Exprs(), read)...)
		ev := &event.Event{State: rec(map[string]any{})}
		slotted(ev, l)
		if _, err := op.Process(x, ev); err != nil {
			t.Fatal(err)
		}
		if got, err := x.Eval(read, ev); err != nil || got != 4.0 {
			t.Errorf("event.b + event.a after set = %v (%v), want 4", got, err)
		}
		if ev.FieldMap()["s"] != "x" || len(ev.FieldMap()) != 4 {
			t.Errorf("event after set: %v, want a, s, o and b", ev.FieldMap())
		}
	})
}

// rec returns m as a record of no shape: every field found by name.
func rec(m map[string]any) *event.Record { return event.NewRecord(nil, m) }

// TestMissingHeaderIsNil: a header the event does not have is nil, so that `??` falls back;
// one it has is its first value, under its name as sent and its lower-case name.
func TestMissingHeaderIsNil(t *testing.T) {
	tests := []struct {
		name   string
		header map[string][]string
		want   string
	}{
		{"no headers at all", nil, "anon"},
		{"other headers", map[string][]string{"X-Other": {"o"}}, "anon"},
		{"the header", map[string][]string{"X-User": {"u1", "u2"}}, "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &event.Event{Fields: map[string]any{}, Header: tt.header, Type: "a", Key: "k"}
			if _, err := build(t, "key", `headers["x-user"] ?? "anon"`).Process(exec(nil), ev); err != nil || ev.Key != tt.want {
				t.Errorf("key = %q, %v; want %q", ev.Key, err, tt.want)
			}
		})
	}
}
