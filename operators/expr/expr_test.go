package expr_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

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
		got, err := expr.Text(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("Text(%v) = %q, %v", tt.in, got, err)
		}
	}
}

func TestArithFastPath(t *testing.T) {
	state := map[string]any{"c": 2.0, "neg": -0.25, "s": "y"}
	// by name, and by slot in a record of the shape the expression is bound to
	shape := event.NewShape("c", "neg", "s", "none")
	for _, shaped := range []bool{false, true} {
		ev := &event.Event{Fields: map[string]any{"a": 1.5, "big": 1e300, "s": "x", "n": nil, "i": 3}, State: rec(state)}
		if shaped {
			ev.State = event.NewRecord(shape, state)
		}
		x := &expr.Runner{}
		operands := []string{"event.a", "event.big", "event.s", "event.n", "event.i", "event.missing",
			"state.c", "state.neg", "state.s", "state.none", "1", "0", "2.5", "7"}
		for _, op := range []string{"+", "-", "*"} {
			for _, l := range operands {
				for _, r := range operands {
					src := l + " " + op + " " + r
					fast, err := expr.Compile(src, expr.AnyResult)
					if err != nil {
						continue // a type error at compile time (two literals of other kinds)
					}
					if shaped {
						expr.BindShape(shape, fast)
					}
					slow := expr.MustCompile("("+src+") ?? nil", expr.AnyResult) // runs the VM
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
		e := expr.MustCompile(tt.src, expr.AnyResult)
		if got := e.WholeState(); got != tt.whole {
			t.Errorf("%q uses the whole state: %v, want %v", tt.src, got, tt.whole)
		}
		for _, c := range []struct {
			state *event.Record
			want  string
		}{{full, tt.want}, {nil, tt.empty}} {
			v, err := (&expr.Runner{}).Eval(e, &event.Event{Type: "n", State: c.state})
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

func TestMemberReadFastPath(t *testing.T) {
	ev := &event.Event{Fields: map[string]any{"a": 1.5, "s": "x"}, State: rec(map[string]any{"n": 2.0})}
	x := &expr.Runner{}
	for _, src := range []string{"event.a", "event.s", "event.missing", "state.n", "state.none", `event["a"]`} {
		fast := expr.MustCompile(src, expr.AnyResult)
		slow := expr.MustCompile("("+src+") ?? nil", expr.AnyResult) // not a bare read: runs the VM
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
	got, err := expr.Normalize(map[string]any{"m": nested, "t": when, "d": time.Second, "s": []string{"a"}})
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
	if out, _ := expr.Normalize(same); fmt.Sprintf("%p", out) != fmt.Sprintf("%p", same) {
		t.Error("a map that needs no change was copied")
	}
	for _, bad := range []any{math.Inf(1), math.NaN(), map[string]any{"x": []any{math.Inf(-1)}}} {
		if _, err := expr.Normalize(bad); !errors.Is(err, expr.ErrNotJSON) {
			t.Errorf("Normalize(%v) = %v, want ErrNotJSON", bad, err)
		}
	}
}

func BenchmarkEval(b *testing.B) {
	e := expr.MustCompile("state.total + event.amount", expr.AnyResult)
	ev := &event.Event{Fields: map[string]any{"amount": 12.5}, State: rec(map[string]any{"total": 100.0})}
	x := &expr.Runner{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Eval(e, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func rec(m map[string]any) *event.Record { return event.NewRecord(nil, m) }

// TestVars: an expression compiled with further variables reads them from the event (nil
// when unset); without them the names are unknown; the state check knows them too.
func TestVars(t *testing.T) {
	if _, err := expr.Compile("user.name", expr.AnyResult); err == nil {
		t.Fatal("an unknown variable compiled")
	}
	e, err := expr.Compile(`(user?.name ?? "anon") + "/" + key`, expr.StringResult, "user")
	if err != nil {
		t.Fatal(err)
	}
	x := &expr.Runner{}
	ev := &event.Event{Key: "k"}
	if got, err := x.EvalString(e, ev); err != nil || got != "anon/k" {
		t.Errorf("unset: %q, %v", got, err)
	}
	ev.SetVar("user", map[string]any{"name": "Ada"})
	if got, err := x.EvalString(e, ev); err != nil || got != "Ada/k" {
		t.Errorf("set: %q, %v", got, err)
	}
	ev.Reset()
	if len(ev.Vars) != 0 {
		t.Errorf("reset kept %v", ev.Vars)
	}
	st := expr.NewStateType("p", map[string]reflect.Type{"n": reflect.TypeOf(0.0)})
	s, err := expr.Compile("state.n + (user?.n ?? 0)", expr.AnyResult, "user")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(s, expr.AnyResult, nil); err != nil {
		t.Errorf("state check: %v", err)
	}
}

// TestVarMembers: the members of a further variable that expressions read, or whole.
func TestVarMembers(t *testing.T) {
	tests := []struct {
		srcs    []string
		members string
		whole   bool
	}{
		{[]string{"timer.started", `timer["deadline"] + "x"`}, "deadline started", false},
		{[]string{"timer.event.id", "timer?.started"}, "event started", false},
		{[]string{"timer"}, "", true},
		{[]string{"timer[key]"}, "", true},
		{[]string{"key"}, "", false},
	}
	for _, tt := range tests {
		var exprs []*expr.Expr
		for _, src := range tt.srcs {
			exprs = append(exprs, expr.MustCompile(src, expr.AnyResult, "timer"))
		}
		members, whole := expr.VarMembers("timer", exprs...)
		if strings.Join(members, " ") != tt.members || whole != tt.whole {
			t.Errorf("%v: members %v whole %v, want %q %v", tt.srcs, members, whole, tt.members, tt.whole)
		}
	}
}
