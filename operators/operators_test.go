package operators_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/operators"
)

// memStore is a Store over a map, for operator tests (the pipeline's real store is tested
// against NATS in package pipeline).
type memStore map[string]*operators.Entry

func (m memStore) Get(_ context.Context, proj, key string) (*operators.Entry, error) {
	return m[proj+"/"+key], nil
}

func (m memStore) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

func (m memStore) Scan(context.Context, string, string, func(string, *operators.Entry) bool) error {
	return nil
}

func build(t *testing.T, name string, raw any) operators.Operator {
	t.Helper()
	spec, ok := operators.Builtin().Lookup(name)
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
			spec, _ := operators.Builtin().Lookup(tt.op)
			_, err := spec.Build(operators.BuildContext{Pipeline: "p"}, tt.raw)
			if err == nil {
				t.Fatal("no error")
			}
			var fe *operators.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Err.Error(), tt.msg) {
				t.Errorf("got field %q error %q, want field %q containing %q", fe.Field, fe.Err, tt.field, tt.msg)
			}
		})
	}
}

func TestLiteralNumbersAndBoolsAreExpressions(t *testing.T) {
	op := build(t, "set", map[string]any{"n": 0, "f": 1.5, "b": true})
	ev := &operators.Event{Fields: map[string]any{}}
	if _, err := op.Process(exec(nil), ev); err != nil {
		t.Fatal(err)
	}
	if ev.Fields["n"] != 0.0 || ev.Fields["f"] != 1.5 || ev.Fields["b"] != true {
		t.Errorf("fields = %v", ev.Fields)
	}
}

func TestFilterSetMapKey(t *testing.T) {
	x := exec(nil)
	ev := &operators.Event{Fields: map[string]any{"type": "a", "n": 2.0, "user": "u1"}, Type: "a", Key: "k"}
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
	if _, err := build(t, "map", `1`).Process(x, ev); !errors.Is(err, operators.ErrEval) {
		t.Errorf("map to a number: err = %v, want ErrEval", err)
	}
	ev.Fields = map[string]any{}
	if _, err := build(t, "key", `event.missing`).Process(x, ev); !errors.Is(err, operators.ErrEval) {
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
		stored    *operators.Entry
		ev        operators.Event
		wantState map[string]any // nil: no write
		outdated  bool
		duplicate bool
	}{
		{"new key gets initial then handler", nil,
			operators.Event{Seq: 1, Type: "add", Key: "k", Time: t0},
			map[string]any{"items": 1.0, "orders": 0.0}, false, false},
		{"existing key", &operators.Entry{State: rec(map[string]any{"items": 3.0, "orders": 1.0}), Seq: 5, Time: t0},
			operators.Event{Seq: 6, Type: "order", Key: "k", Time: t0, Fields: map[string]any{"id": "o1"}},
			map[string]any{"items": 0.0, "orders": 2.0, "last": "o1"}, false, false},
		{"type without handler writes nothing", &operators.Entry{State: rec(map[string]any{"items": 3.0}), Seq: 5},
			operators.Event{Seq: 6, Type: "other", Key: "k", Time: t0}, nil, false, false},
		{"already applied is a duplicate", &operators.Entry{State: rec(map[string]any{"items": 3.0}), Seq: 9},
			operators.Event{Seq: 9, Type: "add", Key: "k", Time: t0}, nil, false, true},
		{"older event time is outdated", &operators.Entry{State: rec(map[string]any{"items": 3.0}), Seq: 5, Time: t0.Add(time.Hour)},
			operators.Event{Seq: 6, Type: "add", Key: "k", Time: t0}, nil, true, false},
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
	ev := operators.Event{Seq: 1, Type: "pay", Key: "k"}
	_, err := build(t, "fold", spec).Process(exec(memStore{}), &ev)
	if !errors.Is(err, operators.ErrEval) {
		t.Fatalf("err = %v, want ErrEval", err)
	}
	if len(ev.Writes) != 0 {
		t.Errorf("a failed handler staged %+v", ev.Writes)
	}
}

func TestEmitHandlers(t *testing.T) {
	tests := []struct {
		handler            string
		mode               operators.Mode
		outdated, dup, out bool
	}{
		{"once", operators.Live, false, false, true},
		{"once", operators.Hydrated, false, false, false},
		{"once", operators.Live, true, false, false},
		{"on", operators.Hydrated, false, false, true},
		{"on", operators.Live, true, false, false},
		{"all", operators.Hydrated, true, false, true},
		{"all", operators.Live, false, true, false},
	}
	for _, tt := range tests {
		op := build(t, "emit", map[string]any{
			"subject": `"derived." + key`, "data": map[string]any{"k": "key", "n": "state.n"}, "handler": tt.handler,
		})
		ev := operators.Event{Seq: 3, Key: "k1", Mode: tt.mode, Outdated: tt.outdated, Duplicate: tt.dup, State: rec(map[string]any{"n": 2.0})}
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
	ev := operators.Event{Seq: 1, Key: "k", Fields: map[string]any{}}
	if _, err := op.Process(exec(nil), &ev); !errors.Is(err, operators.ErrEval) {
		t.Errorf("err = %v, want ErrEval for a wildcard subject", err)
	}
}

func TestRegistry(t *testing.T) {
	r := operators.Builtin()
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

func TestText(t *testing.T) {
	tests := []struct {
		in   any
		want string
		err  bool
	}{
		{"a", "a", false}, {42.0, "42", false}, {1.5, "1.5", false}, {7, "7", false},
		{"", "", true}, {nil, "", true}, {map[string]any{}, "", true},
	}
	for _, tt := range tests {
		got, err := operators.Text(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("Text(%v) = %q, %v", tt.in, got, err)
		}
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
		var exprs []*operators.Expr
		for _, s := range tt.srcs {
			exprs = append(exprs, operators.MustCompile(s, operators.AnyResult))
		}
		fields, all := operators.EventFields(exprs...)
		if strings.Join(fields, " ") != tt.fields || all != tt.all {
			t.Errorf("EventFields(%q) = %v, %v; want %q, %v", tt.srcs, fields, all, tt.fields, tt.all)
		}
	}
	emit := build(t, "emit", map[string]any{"subject": `"x." + event.k`})
	if _, all := operators.EventFields(emit.(operators.Expressioner).Exprs()...); !all {
		t.Error("an emit without data sends the whole event: it must be decoded whole")
	}
}

// TestArithFastPath: `A op B` computed without the VM gives what the VM gives, for every
// kind of operand, errors included.
func TestArithFastPath(t *testing.T) {
	state := map[string]any{"c": 2.0, "neg": -0.25, "s": "y"}
	// by name, and by slot in a record of the shape the expression is bound to
	shape := operators.NewShape("c", "neg", "s", "none")
	for _, shaped := range []bool{false, true} {
		ev := &operators.Event{Fields: map[string]any{"a": 1.5, "big": 1e300, "s": "x", "n": nil, "i": 3}, State: rec(state)}
		if shaped {
			ev.State = operators.NewRecord(shape, state)
		}
		x := exec(nil)
		operands := []string{"event.a", "event.big", "event.s", "event.n", "event.i", "event.missing",
			"state.c", "state.neg", "state.s", "state.none", "1", "0", "2.5", "7"}
		for _, op := range []string{"+", "-", "*"} {
			for _, l := range operands {
				for _, r := range operands {
					src := l + " " + op + " " + r
					fast, err := operators.Compile(src, operators.AnyResult)
					if err != nil {
						continue // a type error at compile time (two literals of other kinds)
					}
					if shaped {
						operators.BindState(shape, fast)
					}
					slow := operators.MustCompile("("+src+") ?? nil", operators.AnyResult) // runs the VM
					got, err1 := x.Eval(fast, ev)
					want, err2 := x.Eval(slow, ev)
					if fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", want, want) || (err1 == nil) != (err2 == nil) {
						t.Errorf("%s (shaped %v): fast %T %v (%v), VM %T %v (%v)", src, shaped, got, got, err1, want, want, err2)
					}
				}
			}
		}
	}
}

// TestWholeState: an expression that uses `state` other than by field name gets it as a map,
// with or without a state, and reads it as the map it was before states were records.
func TestWholeState(t *testing.T) {
	tests := []struct {
		src         string
		whole       bool
		want, empty string // the value with a state, and without
	}{
		{"state.n + 1", false, "3", "<nil> error"},
		{`state["n"] ?? 0`, false, "2", "0"},
		{"state.items.a", false, "1", "<nil> error"},
		{"state?.missing ?? 1", false, "1", "1"},
		{"event.state", false, "<nil>", "<nil>"},
		{"state", true, "map[items:map[a:1] n:2]", "map[]"},
		{"{s: state}", true, "map[s:map[items:map[a:1] n:2]]", "map[s:map[]]"},
		{"state[type]", true, "2", "<nil>"},
		{"len(state)", true, "2", "0"},
		{`"n" in state`, true, "true", "false"},
		{"state == nil", true, "false", "true"},
		{"$env.state", true, "map[items:map[a:1] n:2]", "map[]"},
		{`$env["state"].n`, true, "2", "<nil>"},
	}
	full := rec(map[string]any{"n": 2.0, "items": map[string]any{"a": 1.0}})
	for _, tt := range tests {
		e := operators.MustCompile(tt.src, operators.AnyResult)
		if got := operators.WholeState(e); got != tt.whole {
			t.Errorf("%q uses the whole state: %v, want %v", tt.src, got, tt.whole)
		}
		for _, c := range []struct {
			state *operators.Record
			want  string
		}{{full, tt.want}, {nil, tt.empty}} {
			v, err := exec(nil).Eval(e, &operators.Event{Type: "n", State: c.state})
			got := fmt.Sprint(v)
			if err != nil {
				got += " error"
			}
			if got != c.want {
				t.Errorf("%q with state %v = %s, want %s", tt.src, c.state.Map(), got, c.want)
			}
		}
	}
}

// TestMemberReadFastPath: a bare member read gives what the VM gives, missing fields included.
func TestMemberReadFastPath(t *testing.T) {
	ev := &operators.Event{Fields: map[string]any{"a": 1.5, "s": "x"}, State: rec(map[string]any{"n": 2.0})}
	x := exec(nil)
	for _, src := range []string{"event.a", "event.s", "event.missing", "state.n", "state.none", `event["a"]`} {
		fast := operators.MustCompile(src, operators.AnyResult)
		slow := operators.MustCompile("("+src+") ?? nil", operators.AnyResult) // not a bare read: runs the VM
		got, err1 := x.Eval(fast, ev)
		want, err2 := x.Eval(slow, ev)
		if got != want || err1 != nil || err2 != nil {
			t.Errorf("%s: fast %v (%v), VM %v (%v)", src, got, err1, want, err2)
		}
	}
}

func TestNormalize(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	nested := map[string]any{"n": 1, "deep": map[string]any{"k": int64(2)}, "list": []any{3, "x"}}
	got, err := operators.Normalize(map[string]any{"m": nested, "t": when, "d": time.Second, "s": []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"d":1000000000,"m":{"deep":{"k":2},"list":[3,"x"],"n":1},"s":["a"],"t":"2026-01-02T03:04:05.000000006Z"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("Normalize = %s, want %s", b, want)
	}
	m := got.(map[string]any)
	if _, ok := m["m"].(map[string]any)["n"].(float64); !ok {
		t.Errorf("nested int not turned into float64: %T", m["m"].(map[string]any)["n"])
	}
	if _, ok := nested["n"].(int); !ok {
		t.Error("Normalize changed its input (a state being committed may share it)")
	}
	if _, ok := m["t"].(string); !ok {
		t.Errorf("time kept as %T, want the string it reads back as", m["t"])
	}
	same := map[string]any{"a": 1.0}
	if out, _ := operators.Normalize(same); fmt.Sprintf("%p", out) != fmt.Sprintf("%p", same) {
		t.Error("a map that needs no change was copied")
	}
	for _, bad := range []any{math.Inf(1), math.NaN(), map[string]any{"x": []any{math.Inf(-1)}}} {
		if _, err := operators.Normalize(bad); !errors.Is(err, operators.ErrNotJSON) {
			t.Errorf("Normalize(%v) = %v, want ErrNotJSON", bad, err)
		}
	}
}

// BenchmarkEval measures one fold-style expression against a decoded event and a state.
func BenchmarkEval(b *testing.B) {
	e := operators.MustCompile("state.total + event.amount", operators.AnyResult)
	ev := &operators.Event{Fields: map[string]any{"amount": 12.5}, State: rec(map[string]any{"total": 100.0})}
	x := exec(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Eval(e, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSlotsReadLikeMap: an event whose fields are in slots (converted, or left as text to
// convert on read) gives every expression what the same event as a map gives, through the
// member read, the arithmetic and the VM, and after set and map operators change it.
func TestSlotsReadLikeMap(t *testing.T) {
	fields := map[string]any{"a": 1.5, "s": "x", "n": nil, "o": map[string]any{"k": 2.0}}
	slotted := func(ev *operators.Event, l *operators.Layout) {
		slots := make([]operators.Slot, len(l.Names())) // "missing" and the rest: nil
		slots[0], slots[1] = operators.NumberSlot([]byte("1.5")), operators.TextSlot([]byte("x"))
		slots[2], slots[3] = operators.ValueSlot(nil), operators.ValueSlot(map[string]any{"k": 2.0})
		ev.SetSlots(l, slots)
	}
	x := exec(nil)
	for _, src := range []string{"event.a", "event.s", "event.n", "event.missing", "event.o",
		"event.a + 1", "event.a * event.a", "event.s + event.a", `event.s + "y"`, "event.o.k",
		"event?.missing ?? 3", "event.a > 1 && event.s == 'x'", `event["a"] + 0`} {
		t.Run(src, func(t *testing.T) {
			e := operators.MustCompile(src, operators.AnyResult)
			l := operators.NewLayout([]string{"a", "s", "n", "o", "missing"})
			operators.BindLayout(l, e)
			ev := &operators.Event{Fields: fields, State: rec(map[string]any{})}
			want, werr := x.Eval(e, ev)
			ev = &operators.Event{State: rec(map[string]any{})}
			slotted(ev, l)
			got, gerr := x.Eval(e, ev)
			if fmt.Sprintf("%T %v %v", got, got, gerr) != fmt.Sprintf("%T %v %v", want, want, werr) {
				t.Errorf("slots %T %v (%v), map %T %v (%v)", got, got, gerr, want, want, werr)
			}
		})
	}
	t.Run("set then read", func(t *testing.T) {
		reg := operators.Builtin()
		spec, _ := reg.Lookup("set")
		op, err := spec.Build(operators.BuildContext{Pipeline: "p"}, map[string]any{"b": "event.a + 1"})
		if err != nil {
			t.Fatal(err)
		}
		read := operators.MustCompile("event.b + event.a", operators.AnyResult)
		l := operators.NewLayout([]string{"a", "s", "n", "o", "missing", "b"})
		operators.BindLayout(l, append(op.(operators.Expressioner).Exprs(), read)...)
		ev := &operators.Event{State: rec(map[string]any{})}
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
func rec(m map[string]any) *operators.Record { return operators.NewRecord(nil, m) }

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
			ev := &operators.Event{Fields: map[string]any{}, Header: tt.header, Type: "a", Key: "k"}
			if _, err := build(t, "key", `headers["x-user"] ?? "anon"`).Process(exec(nil), ev); err != nil || ev.Key != tt.want {
				t.Errorf("key = %q, %v; want %q", ev.Key, err, tt.want)
			}
		})
	}
}
