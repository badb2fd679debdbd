package timeout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/opstest"
	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
	"github.com/jetfold/jetfold/operators/timeout"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// config is a timeout's YAML value, as the configuration loader gives it.
func config(restart bool, handler string) map[string]any {
	return map[string]any{
		"name": "abandoned", "start": []any{"add"}, "cancel": []any{"order"}, "after": "30m", "restart": restart,
		"emit": map[string]any{
			"subject": `"cart." + key`,
			"data":    map[string]any{"key": "key", "started": "timer.started", "deadline": "timer.deadline", "seq": "timer.seq", "own": "timer.event.own"},
			"handler": handler,
		},
	}
}

func build(t testing.TB, raw any) operators.Operator {
	t.Helper()
	return opstest.Build(t, timeout.Spec(), raw)
}

func TestBuildErrors(t *testing.T) {
	with := func(k string, v any) map[string]any {
		m := config(true, "once")
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	emitWith := func(k string, v any) map[string]any {
		m := config(true, "once")
		m["emit"].(map[string]any)[k] = v
		return m
	}
	tests := []struct {
		name  string
		raw   any
		field string
		msg   string
	}{
		{"not a map", "x", "", "want a map"},
		{"missing name", with("name", nil), "name", "want a name"},
		{"name with a dot", with("name", "a.b"), "name", "want a name"},
		{"unknown field", with("bogus", 1), "bogus", "unknown field"},
		{"cancel type also starts", with("cancel", []any{"order", "add"}), "cancel", `"add" both starts and cancels`},
		{"missing start", with("start", nil), "start", "want an event type"},
		{"empty start", with("start", []any{}), "start", "want an event type"},
		{"start not a type", with("start", []any{1}), "start", "item 0"},
		{"zero after", with("after", "0s"), "after", "must be positive"},
		{"bad after", with("after", "soon"), "after", "want a duration such as"},
		{"after a number", with("after", 30), "after", "with its unit"},
		{"missing after", with("after", nil), "after", "missing duration"},
		{"restart not a bool", with("restart", "yes"), "restart", "true or false"},
		{"bad projection", with("projection", "a.b"), "projection", "letters, digits"},
		{"name not a string", with("name", 3), "name", "want a name"},
		{"missing emit", with("emit", nil), "emit", "want a map"},
		{"emit missing subject", emitWith("subject", nil), "emit.subject", "missing expression"},
		{"emit bad subject", emitWith("subject", `"a" +`), "emit.subject", "unexpected token"},
		{"emit bad data field", emitWith("data", map[string]any{"x": "timer.("}), "emit.data.x", ""},
		{"emit unknown variable", emitWith("data", "tmr.started"), "emit.data", "unknown name tmr"},
		{"emit bad handler", emitWith("handler", "twice"), "emit.handler", "want one of"},
		{"emit empty type", emitWith("type", ""), "emit.type", "non-empty string"},
		{"emit unknown field", emitWith("when", "true"), "emit.when", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { opstest.BuildError(t, timeout.Spec(), tt.raw, tt.field, tt.msg) })
	}
	if _, err := timeout.Spec().Build(operators.BuildContext{Pipeline: "bad.name"}, config(true, "once")); err == nil {
		t.Error("the default projection of pipeline bad.name was accepted")
	}
}

// TestBuild: the configuration of the package comment builds, with its defaults, into an
// operator of every interface the pipeline looks for.
func TestBuild(t *testing.T) {
	op := build(t, map[string]any{
		"name": "abandoned", "start": []any{"product-added-to-cart"}, "cancel": []any{"order-placed"}, "after": "30m",
		"emit": map[string]any{"subject": `"shop.derived.cart-abandoned." + key`, "data": map[string]any{"user_id": "key", "started": "timer.started", "deadline": "timer.deadline"}},
	})
	pr, ok := op.(operators.Projector)
	if !ok || pr.Projection() != "p_timers" {
		t.Fatalf("projection: %v", op)
	}
	if _, ok := op.(operators.Clock); !ok {
		t.Error("not a Clock")
	}
	if _, ok := op.(operators.Starter); !ok {
		t.Error("not a Starter")
	}
	if _, ok := op.(operators.Expressioner); !ok {
		t.Error("not an Expressioner")
	}
	// One start type as a string, and an expression of the pipeline's variables.
	spec := timeout.Spec()
	_, err := spec.Build(operators.BuildContext{Pipeline: "p", Vars: []string{"user"}}, map[string]any{
		"name": "n", "start": "add", "after": "1h", "projection": "mine", "emit": map[string]any{"subject": `"x." + user.name`},
	})
	if err != nil {
		t.Errorf("build with a variable: %v", err)
	}
}

// TestExprs: the operator tells the pipeline to decode the events whole, as the timer keeps
// the start event.
func TestExprs(t *testing.T) {
	op := build(t, config(true, "once")).(operators.Expressioner)
	if _, all := expr.EventFields(op.Exprs()...); !all {
		t.Error("the events are not decoded whole")
	}
}

// gen returns n events of keys k0..k<keys-1>, types add, order and view, mostly in order
// with jitter, some late by more than the timeout, some invalid, some that do not reach the
// operator or that an operator after it drops, each with an id field (some repeated). The
// first hydrated events are hydrated.
func gen(rng *rand.Rand, n, keys, hydrated int) []opstest.Input {
	var out []opstest.Input
	clock := t0
	for i := range n {
		clock = clock.Add(time.Duration(rng.IntN(240)) * time.Second)
		at := clock.Add(time.Duration(rng.IntN(361)-180) * time.Second)
		if rng.IntN(20) == 0 {
			at = clock.Add(-time.Duration(30+rng.IntN(40)) * time.Minute)
		}
		typ := []string{"add", "add", "order", "view", "view"}[rng.IntN(5)]
		id := fmt.Sprintf("id%d", i)
		if i > 0 && rng.IntN(3) == 0 {
			id = fmt.Sprintf("id%d", i-1-rng.IntN(min(i, 40)))
		}
		in := opstest.Input{Event: oracle.Event{
			Seq: uint64(i + 1), Key: fmt.Sprintf("k%d", rng.IntN(keys)), Type: typ, Time: at,
			Fields: map[string]any{"id": id, "own": float64(i + 1)},
			Valid:  rng.IntN(30) != 0, Reaches: rng.IntN(10) != 0, Hydrated: i < hydrated,
		}}
		in.DroppedAfter = in.Reaches && rng.IntN(15) == 0
		out = append(out, in)
	}
	return out
}

// fired reads the fired timers from the derived events, in order.
func fired(t testing.TB, outs []opstest.Output) []oracle.FiredTimer {
	t.Helper()
	var got []oracle.FiredTimer
	for _, o := range outs {
		var body struct {
			Key, Started, Deadline string
			Seq, Own               float64 // the timer's start, and the one its event holds
		}
		if err := json.Unmarshal(o.Data, &body); err != nil {
			t.Fatal(err)
		}
		started, err1 := time.Parse(time.RFC3339Nano, body.Started)
		deadline, err2 := time.Parse(time.RFC3339Nano, body.Deadline)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("derived event %s: %v", o.Data, err)
		}
		if o.Key != body.Key || o.Subject != "cart."+body.Key {
			t.Errorf("derived event of %s: key %q, subject %q", body.Key, o.Key, o.Subject)
		}
		if want := fmt.Sprintf("timeout:abandoned:%s:%d:%d", body.Key, deadline.UnixMilli(), uint64(body.Seq)); o.ID != want {
			t.Errorf("id %q, want %q", o.ID, want)
		}
		if body.Own != body.Seq {
			t.Errorf("timer of seq %v holds the event of seq %v", body.Seq, body.Own)
		}
		got = append(got, oracle.FiredTimer{Timer: oracle.Timer{Key: body.Key, Started: started, Deadline: deadline, Event: uint64(body.Seq)}, By: o.By, Emit: true})
	}
	return got
}

// emitted returns the fired timers that emit.
func emitted(fs []oracle.FiredTimer) []oracle.FiredTimer {
	var out []oracle.FiredTimer
	for _, f := range fs {
		if f.Emit {
			out = append(out, f)
		}
	}
	return out
}

// pending reads the committed timers.
func pending(t testing.TB, s *opstest.Store) []oracle.Timer {
	t.Helper()
	vals := s.Values("p_timers", "abandoned.")
	var out []oracle.Timer
	for key, v := range vals {
		if _, ended := v["ended"]; ended {
			if len(v) != 1 {
				t.Errorf("end marker of %s: %v", key, v)
			}
			continue
		}
		started, err1 := time.Parse(time.RFC3339Nano, v["started"].(string))
		deadline, err2 := time.Parse(time.RFC3339Nano, v["deadline"].(string))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		out = append(out, oracle.Timer{Key: key, Started: started, Deadline: deadline, Event: uint64(v["seq"].(float64))})
	}
	slices.SortFunc(out, func(a, b oracle.Timer) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// TestMatchesOracle runs the operator over generated events and compares the timers it fires
// (key, start, deadline, start event, and the event at whose step it fired), in order, and
// the timers left pending with the oracle's: restart true and false, handler once with
// hydrated events and on, without crashes and with crashes in the middle of commits (where
// each timer must still be published once, as the oracle fires it).
func TestMatchesOracle(t *testing.T) {
	variants := []struct {
		name     string
		restart  bool
		handler  string
		hydrated int
		crash    float64
	}{
		{"restart", true, "once", 0, 0},
		{"keep first", false, "once", 0, 0},
		{"once with hydrated events", true, "once", 150, 0},
		{"on with hydrated events", false, "on", 150, 0},
		{"restart with crashes", true, "once", 0, 0.3},
		{"keep first with crashes", false, "all", 0, 0.3},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			for seed := range uint64(20) {
				rng := rand.New(rand.NewPCG(seed, 1))
				events := gen(rng, 400, 6, v.hydrated)
				want := oracle.Timeouts(opstest.OracleEvents(events), oracle.TimeoutSpec{
					Start: []string{"add"}, Cancel: []string{"order"}, After: 30 * time.Minute,
					KeepFirst: !v.restart, Once: v.handler == "once",
				})
				d := opstest.NewDriver(t, build(t, config(v.restart, v.handler)))
				d.Run(events, rng, 8, v.crash)
				var outs []opstest.Output
				for _, id := range d.Order {
					outs = append(outs, d.Published[id])
				}
				got := fired(t, outs)
				wantFired := emitted(want.Fired)
				if v.crash > 0 {
					// After a crash, a timer's derived event may be published by the run
					// that crashed, before those of the replay: compare them as sets.
					sortFired(got)
					sortFired(wantFired)
				}
				if !reflect.DeepEqual(got, wantFired) {
					t.Fatalf("seed %d (%d restarts): fired\n got %v\nwant %v", seed, d.Restarts, got, wantFired)
				}
				if len(want.Fired) < 10 || len(want.Fired) == len(wantFired) && v.hydrated > 0 && v.handler == "once" {
					t.Fatalf("seed %d: the events fire too few timers to tell (%d, %d emitting)", seed, len(want.Fired), len(wantFired))
				}
				if got := pending(t, d.Store); !reflect.DeepEqual(got, want.Pending) {
					t.Fatalf("seed %d (%d restarts): pending\n got %v\nwant %v", seed, d.Restarts, got, want.Pending)
				}
			}
		})
	}
}

func sortFired(fs []oracle.FiredTimer) {
	slices.SortFunc(fs, func(a, b oracle.FiredTimer) int {
		return strings.Compare(fmt.Sprint(a.Key, a.Deadline.UnixNano(), a.Event), fmt.Sprint(b.Key, b.Deadline.UnixNano(), b.Event))
	})
}

// ev is a valid event that reaches the operator, at offset when from t0.
func ev(seq uint64, key, typ, when string) opstest.Input {
	d, err := time.ParseDuration(when)
	if err != nil {
		panic(err)
	}
	return opstest.Input{Event: oracle.Event{Seq: seq, Key: key, Type: typ, Time: t0.Add(d), Valid: true, Reaches: true,
		Fields: map[string]any{"id": fmt.Sprintf("id%d", seq), "own": float64(seq)}}}
}

// TestCases runs the cases of the oracle's own tests, and some more, through the operator.
func TestCases(t *testing.T) {
	hydrated := func(in opstest.Input) opstest.Input { in.Hydrated = true; return in }
	filtered := func(in opstest.Input) opstest.Input { in.Reaches = false; return in }
	dropped := func(in opstest.Input) opstest.Input { in.DroppedAfter = true; return in }
	tests := []struct {
		name      string
		restart   bool
		handler   string
		events    []opstest.Input
		firedAtBy [][2]uint64 // (start seq, by) of each timer that emits, in order
	}{
		{name: "fires when the watermark reaches the deadline", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "0"), ev(2, "b", "view", "29m59s"), ev(3, "b", "view", "30m"),
		}, firedAtBy: [][2]uint64{{1, 3}}},
		{name: "a cancel at the deadline is too late, one before it cancels", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "0"), ev(2, "a", "order", "30m"), ev(3, "c", "add", "31m"), ev(4, "c", "order", "1h0m59.999s"), ev(5, "x", "view", "2h"),
		}, firedAtBy: [][2]uint64{{1, 2}}},
		{name: "restart false keeps the first start", events: []opstest.Input{
			ev(1, "a", "add", "0"), ev(2, "a", "add", "20m"), ev(3, "x", "view", "30m"), ev(4, "x", "view", "50m"), ev(5, "a", "add", "55m"),
		}, firedAtBy: [][2]uint64{{1, 3}}},
		{name: "a late start fires at once, after what its step fired", restart: true, events: []opstest.Input{
			ev(1, "b", "add", "0"), ev(2, "x", "view", "1h"), ev(3, "a", "add", "10m"), ev(4, "a", "add", "45m"),
		}, firedAtBy: [][2]uint64{{1, 2}, {3, 3}}},
		{name: "timers due at one step fire by deadline, then key", restart: true, events: []opstest.Input{
			ev(1, "b", "add", "0"), ev(2, "a", "add", "0"), ev(3, "c", "add", "-1m"), ev(4, "x", "view", "1h"),
		}, firedAtBy: [][2]uint64{{3, 4}, {2, 4}, {1, 4}}},
		{name: "a start restarts a timer to an earlier deadline", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "20m"), ev(2, "a", "add", "0"), ev(3, "x", "view", "30m"), ev(4, "x", "view", "50m"),
		}, firedAtBy: [][2]uint64{{2, 3}}},
		{name: "handler once: a hydrated event's fires clear without emitting", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "0"), hydrated(ev(2, "b", "add", "30m")), ev(3, "x", "view", "1h"),
		}, firedAtBy: [][2]uint64{{2, 3}}},
		{name: "handler on: a hydrated event's fires emit", restart: true, handler: "on", events: []opstest.Input{
			ev(1, "a", "add", "0"), hydrated(ev(2, "b", "add", "30m")), ev(3, "x", "view", "1h"),
		}, firedAtBy: [][2]uint64{{1, 2}, {2, 3}}},
		{name: "a filtered start moves the watermark and starts nothing", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "0"), filtered(ev(2, "b", "add", "30m")), ev(3, "x", "view", "1h"),
		}, firedAtBy: [][2]uint64{{1, 2}}},
		{name: "a cancel dropped after the operator cancels nothing", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "0"), dropped(ev(2, "a", "order", "10m")), ev(3, "x", "view", "1h"),
		}, firedAtBy: [][2]uint64{{1, 3}}},
		{name: "a start dropped after the operator starts nothing", restart: true, events: []opstest.Input{
			dropped(ev(1, "a", "add", "0")), ev(2, "b", "add", "10m"), ev(3, "x", "view", "1h"),
		}, firedAtBy: [][2]uint64{{2, 3}}},
		{name: "a restart dropped after the operator leaves the first deadline", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "0"), dropped(ev(2, "a", "add", "10m")), ev(3, "x", "view", "35m"),
		}, firedAtBy: [][2]uint64{{1, 3}}},
		{name: "restart dropped after an earlier one", restart: true, events: []opstest.Input{
			ev(1, "a", "add", "10m"), dropped(ev(2, "a", "add", "0")), ev(3, "x", "view", "35m"), ev(4, "x", "view", "45m"),
		}, firedAtBy: [][2]uint64{{1, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.handler == "" {
				tt.handler = "once"
			}
			want := oracle.Timeouts(opstest.OracleEvents(tt.events), oracle.TimeoutSpec{
				Start: []string{"add"}, Cancel: []string{"order"}, After: 30 * time.Minute, KeepFirst: !tt.restart, Once: tt.handler == "once",
			})
			var wantAtBy [][2]uint64
			for _, f := range emitted(want.Fired) {
				wantAtBy = append(wantAtBy, [2]uint64{f.Event, f.By})
			}
			if !reflect.DeepEqual(wantAtBy, tt.firedAtBy) {
				t.Fatalf("the oracle fires %v, the case says %v", wantAtBy, tt.firedAtBy)
			}
			d := opstest.NewDriver(t, build(t, config(tt.restart, tt.handler)))
			d.Run(tt.events, rand.New(rand.NewPCG(1, 1)), 1, 0)
			var outs []opstest.Output
			for _, id := range d.Order {
				outs = append(outs, d.Published[id])
			}
			if got := fired(t, outs); !reflect.DeepEqual(got, emitted(want.Fired)) {
				t.Errorf("fired\n got %v\nwant %v", got, emitted(want.Fired))
			}
			if got := pending(t, d.Store); !reflect.DeepEqual(got, want.Pending) {
				t.Errorf("pending\n got %v\nwant %v", got, want.Pending)
			}
		})
	}
}

// TestAdvanceNothingDue: a step at which no timer is due reads no state.
func TestAdvanceNothingDue(t *testing.T) {
	d := opstest.NewDriver(t, build(t, config(true, "once")))
	for i := range 100 {
		d.Step(ev(uint64(i+1), fmt.Sprintf("k%d", i), "add", fmt.Sprintf("%dm", i)))
	}
	// Pending: the timers started at 70m..99m, due at 100m..129m.
	d.Store.Gets = 0
	c := d.Op.(operators.Clock)
	tick := &event.Event{Seq: 101, Time: t0.Add(99*time.Minute + 59*time.Second)}
	if err := c.Advance(&d.X, tick, t0.Add(99*time.Minute), tick.Time); err != nil {
		t.Fatal(err)
	}
	if d.Store.Gets != 0 || len(tick.Writes) != 0 {
		t.Errorf("nothing due: %d reads, %d writes", d.Store.Gets, len(tick.Writes))
	}
	tick.Time = t0.Add(101 * time.Minute)
	if err := c.Advance(&d.X, tick, t0.Add(99*time.Minute+59*time.Second), tick.Time); err != nil {
		t.Fatal(err)
	}
	if d.Store.Gets != 2 || len(tick.Writes) != 2 || len(tick.Outputs) != 2 {
		t.Errorf("two due: %d reads, %d writes, %d outputs", d.Store.Gets, len(tick.Writes), len(tick.Outputs))
	}
}

// TestStartRebuildsIndex: a new operator (a restart) fires the timers committed by an earlier
// one, and forgets what an earlier run did not commit.
func TestStartRebuildsIndex(t *testing.T) {
	first := opstest.NewDriver(t, build(t, config(true, "once")))
	first.Step(ev(1, "a", "add", "0"))
	first.Step(ev(2, "b", "add", "5m"))
	first.Store.Commit(func(string) bool { return true })
	first.CheckpointWM = first.WM
	first.Step(ev(3, "c", "add", "6m")) // not committed

	op := build(t, config(true, "once"))
	d := opstest.NewDriver(t, op)
	d.Store.Committed = first.Store.Committed
	d.CheckpointWM = first.CheckpointWM
	d.Start()
	d.Step(ev(3, "x", "view", "2h"))
	got := fired(t, d.Batch)
	if len(got) != 2 || got[0].Key != "a" || got[1].Key != "b" {
		t.Errorf("after a restart fired %v, want a and b", got)
	}
	// The same operator started again forgets its index: nothing of the uncommitted run fires.
	d.Store.Committed = map[string]opstest.Stored{}
	d.Start()
	d.Step(ev(4, "x", "view", "3h"))
	if len(d.Batch) != 0 {
		t.Errorf("fired %v from a run that was not committed", fired(t, d.Batch))
	}
}

// TestBadTimer: a committed timer whose deadline does not parse does not stop the operator
// from starting; the next tick dead-letters it (an unmade derived event with the timer as
// payload) and ends it, and the other timers fire as usual.
func TestBadTimer(t *testing.T) {
	d := opstest.NewDriver(t, build(t, config(true, "once")))
	d.Step(ev(1, "a", "add", "0"))
	d.Step(ev(2, "b", "add", "1m"))
	d.Store.Commit(func(string) bool { return true })
	d.CheckpointWM = d.WM
	k := opstest.Key("p_timers", "abandoned.b")
	st := d.Store.Committed[k]
	st.Data = []byte(`{"deadline": "soon", "seq": 2, "started": "x"}`)
	d.Store.Committed[k] = st
	d.Start()
	d.Step(ev(3, "x", "view", "2h"))
	if len(d.Batch) != 2 {
		t.Fatalf("derived events %+v, want b's dead letter and a's", d.Batch)
	}
	b, a := d.Batch[0], d.Batch[1]
	if b.Key != "b" || !errors.Is(b.Err, timeout.ErrBadTimer) || !strings.Contains(string(b.Data), `"soon"`) {
		t.Errorf("bad timer: key %q, err %v, data %s", b.Key, b.Err, b.Data)
	}
	if a.Key != "a" || a.Err != nil {
		t.Errorf("timer a: key %q, err %v", a.Key, a.Err)
	}
	d.Store.Commit(func(string) bool { return true })
	if v := d.Store.Values("p_timers", ""); len(v) != 0 {
		t.Errorf("timers left: %v", v)
	}
}

// TestApplied: an event whose effect on its key was committed before a restart changes
// nothing there and is marked a duplicate; a cancel is not undone by it.
func TestApplied(t *testing.T) {
	d := opstest.NewDriver(t, build(t, config(true, "once")))
	d.Step(ev(1, "a", "add", "0"))
	d.Step(ev(2, "a", "add", "10m"))
	d.Store.Commit(func(string) bool { return true })
	d.Start() // the checkpoint is still at 0: events 1 and 2 are processed again
	for _, in := range []opstest.Input{ev(1, "a", "add", "0"), ev(2, "a", "add", "10m")} {
		e := &event.Event{Seq: in.Seq, Key: in.Key, Type: in.Type, Time: in.Time, Fields: in.Fields}
		d.X.Watermark = in.Time
		keep, err := d.Op.Process(&d.X, e)
		if err != nil || !keep || !e.Duplicate || len(e.Writes) != 0 {
			t.Errorf("seq %d again: keep %v, err %v, duplicate %v, writes %v", in.Seq, keep, err, e.Duplicate, e.Writes)
		}
	}
	e := &event.Event{Seq: 1, Key: "a", Type: "order", Time: t0}
	if keep, err := d.Op.Process(&d.X, e); err != nil || !keep || len(e.Writes) != 0 {
		t.Errorf("an earlier cancel again: keep %v, err %v, writes %v", keep, err, e.Writes)
	}
}

// TestProcessErrors: a start or cancel without a key or time is an error (a dead letter); a
// type that neither starts nor cancels needs neither.
func TestProcessErrors(t *testing.T) {
	op := build(t, config(true, "once"))
	d := opstest.NewDriver(t, op)
	bad := errors.New("no time")
	tests := []struct {
		name string
		ev   *event.Event
		ok   bool
	}{
		{"start without time", &event.Event{Seq: 1, Key: "a", Type: "add", TimeErr: bad}, false},
		{"cancel without key", &event.Event{Seq: 1, Type: "order", KeyErr: bad}, false},
		{"no type", &event.Event{Seq: 1, Key: "a", TypeErr: bad}, false},
		{"other type without time", &event.Event{Seq: 1, Key: "a", Type: "view", TimeErr: bad}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, err := op.Process(&d.X, tt.ev)
			if (err == nil) != tt.ok || keep != tt.ok || len(tt.ev.Writes) != 0 && !tt.ok {
				t.Errorf("keep %v, err %v, writes %v", keep, err, tt.ev.Writes)
			}
		})
	}
}

// TestTimerVariable: the emit sees the timer as stored, on a tick of the timer's key.
func TestTimerVariable(t *testing.T) {
	raw := config(true, "once")
	raw["emit"] = map[string]any{"subject": `"cart." + key`, "type": "cart-abandoned"}
	d := opstest.NewDriver(t, build(t, raw))
	in := ev(1, "a", "add", "1.5s")
	in.Fields = map[string]any{"sku": "x1", "qty": 2.0}
	d.Step(in)
	d.Step(ev(2, "b", "view", "31m"))
	if len(d.Batch) != 1 {
		t.Fatalf("fired %d", len(d.Batch))
	}
	o := d.Batch[0]
	want := `{"deadline":"2024-01-01T00:30:01.5Z","event":{"qty":2,"sku":"x1"},"key":"a","started":"2024-01-01T00:00:01.5Z"}`
	if string(o.Data) != want || o.Type != "cart-abandoned" || o.Key != "a" || o.By != 2 {
		t.Errorf("derived event %s (type %s, key %s, by %d), want %s", o.Data, o.Type, o.Key, o.By, want)
	}
}

// TestIdleTick: while the source is quiet the pipeline moves the watermark on the wall clock,
// on a tick of the last sequence read: a timer that event started fires on it. After a crash
// that committed the firing but not the checkpoint, the events are processed again and the
// quiet source ticks again: the timer is published once, and nothing is left pending (with
// restart: false, the events processed again do not start the timer the first run kept from
// starting).
func TestIdleTick(t *testing.T) {
	for _, restart := range []bool{true, false} {
		t.Run(fmt.Sprint("restart ", restart), func(t *testing.T) {
			d := opstest.NewDriver(t, build(t, config(restart, "once")))
			idle := func() {
				tick := &event.Event{Seq: 2, Time: t0.Add(45 * time.Minute)} // no subject
				if err := d.Op.(operators.Clock).Advance(&d.X, tick, d.WM, tick.Time); err != nil {
					t.Fatal(err)
				}
				d.WM = tick.Time
				d.Apply(tick)
			}
			d.Step(ev(1, "a", "add", "0"))
			d.Step(ev(2, "a", "add", "10m"))
			idle()
			wantStart := uint64(2)
			if !restart {
				wantStart = 1
			}
			if got := fired(t, d.Batch); len(got) != 1 || got[0].Event != wantStart || got[0].By != 2 {
				t.Fatalf("fired %v, want the timer of seq %d", got, wantStart)
			}
			// The commit lands the keys, not the checkpoint (still before seq 1).
			d.Publish(len(d.Batch))
			d.Store.Commit(func(string) bool { return true })
			d.Start()
			d.Step(ev(1, "a", "add", "0"))
			d.Step(ev(2, "a", "add", "10m"))
			idle()
			d.Publish(len(d.Batch))
			d.Store.Commit(func(string) bool { return true })
			if len(d.Published) != 1 {
				t.Errorf("published %v", d.Order)
			}
			if p := pending(t, d.Store); len(p) != 0 {
				t.Errorf("left %v pending", p)
			}
		})
	}
}

// TestUnmadeEmit: a timer whose emit cannot be made when it fires (its key makes the subject
// invalid) is staged as unmade, with the timer as payload, and ended: the pipeline
// dead-letters it and goes on.
func TestUnmadeEmit(t *testing.T) {
	d := opstest.NewDriver(t, build(t, config(true, "once")))
	d.Step(opstest.Input{Event: oracle.Event{Seq: 1, Key: "a b", Type: "add", Time: t0, Valid: true, Reaches: true}})
	d.Step(opstest.Input{Event: oracle.Event{Seq: 2, Key: "c", Type: "view", Time: t0.Add(time.Hour), Valid: true, Reaches: true}})
	if len(d.Batch) != 1 {
		t.Fatalf("outputs %v, want the unmade one", d.Batch)
	}
	o := d.Batch[0]
	if o.Err == nil || !strings.Contains(o.Err.Error(), "not a valid subject") || !strings.Contains(string(o.Data), `"deadline"`) || o.ID == "" || o.Key != "a b" {
		t.Errorf("output %+v, want an unmade emit with the timer as data, an id and the key", o)
	}
	if e, _ := d.Store.Get(context.Background(), "p_timers", "abandoned.a b"); e != nil && e.State != nil {
		t.Errorf("the timer is still pending: %v", e.State.Map())
	}
}
