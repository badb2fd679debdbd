package dedupe_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/opstest"
	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/dedupe"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func build(t testing.TB, raw any) operators.Operator {
	t.Helper()
	return opstest.Build(t, dedupe.Spec(), raw)
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		raw   any
		field string
		msg   string
	}{
		{"not a map", "event.id", "", "want a map"},
		{"missing id", map[string]any{"within": "1h"}, "id", "missing expression"},
		{"bad id", map[string]any{"id": "event.", "within": "1h"}, "id", "unexpected"},
		{"id not a string", map[string]any{"id": "event.n > 1", "within": "1h"}, "id", "string"},
		{"missing within", map[string]any{"id": "event.id"}, "within", "missing duration"},
		{"zero within", map[string]any{"id": "event.id", "within": "0h"}, "within", "must be positive"},
		{"negative within", map[string]any{"id": "event.id", "within": "-1h"}, "within", "must not be negative"},
		{"bad projection", map[string]any{"id": "event.id", "within": "1h", "projection": "a b"}, "projection", "letters, digits"},
		{"unknown field", map[string]any{"id": "event.id", "within": "1h", "key": "x"}, "key", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { opstest.BuildError(t, dedupe.Spec(), tt.raw, tt.field, tt.msg) })
	}
}

func TestBuild(t *testing.T) {
	op := build(t, map[string]any{"id": "event.id", "within": "24h"})
	tp, ok := op.(operators.TTLProjector)
	if !ok || !tp.UsesTTL() || tp.Projection() != "p_dedupe" {
		t.Fatalf("not a TTL projector of p_dedupe: %v", op)
	}
	if fields, all := expr.EventFields(op.(operators.Expressioner).Exprs()...); all || !slices.Equal(fields, []string{"id"}) {
		t.Errorf("event fields %v, %v", fields, all)
	}
	if dedupe.TTL(24*time.Hour) != 49*time.Hour {
		t.Errorf("TTL(24h) = %s", dedupe.TTL(24*time.Hour))
	}
	op, err := dedupe.Spec().Build(operators.BuildContext{Pipeline: "p", Vars: []string{"user"}},
		map[string]any{"id": `user.id + "/" + event.id`, "within": "1m", "projection": "seen"})
	if err != nil || op.(operators.Projector).Projection() != "seen" {
		t.Errorf("with a variable and a projection: %v", err)
	}
}

// gen returns n events with ids among ids, mostly in order with jitter, some late by more
// than within, some invalid, some that do not reach the operator or that an operator after it
// drops.
func gen(rng *rand.Rand, n, ids int, within time.Duration) []opstest.Input {
	var out []opstest.Input
	clock := t0
	step := within / 5
	for i := range n {
		clock = clock.Add(time.Duration(rng.Int64N(int64(step))))
		at := clock.Add(time.Duration(rng.Int64N(int64(step))) - step/2)
		if rng.IntN(20) == 0 {
			at = clock.Add(-within - time.Duration(rng.Int64N(int64(within))))
		}
		in := opstest.Input{Event: oracle.Event{
			Seq: uint64(i + 1), Key: fmt.Sprintf("k%d", rng.IntN(3)), Type: "t", Time: at.Truncate(time.Millisecond),
			Fields: map[string]any{"id": fmt.Sprintf("id%d", rng.IntN(ids))},
			Valid:  rng.IntN(30) != 0, Reaches: rng.IntN(10) != 0,
		}}
		in.DroppedAfter = in.Reaches && rng.IntN(15) == 0
		out = append(out, in)
	}
	return out
}

var spec = func(within time.Duration) oracle.DedupeSpec {
	return oracle.DedupeSpec{ID: func(e oracle.Event) string { return e.Fields["id"].(string) }, Within: within}
}

// check compares the decisions of the committed batches, and the committed entries, with the
// oracle's.
// It returns how many events the oracle drops.
func check(t *testing.T, what string, d *opstest.Driver, events []opstest.Input, within time.Duration) int {
	t.Helper()
	kept := oracle.Dedupe(opstest.OracleEvents(events), spec(within))
	type entry struct {
		first   string
		earlier []any
	}
	want := map[string]entry{}
	lastSeq := map[string]uint64{} // the last sighting of each id
	dropped := 0
	for i, in := range events {
		if !in.Valid || !in.Reaches || in.DroppedAfter {
			continue
		}
		if got, ok := d.Decided[in.Seq]; !ok || got != kept[i] {
			t.Fatalf("%s: seq %d (%s at %s): kept %v (decided %v), want %v", what, in.Seq, in.Fields["id"], in.Time.Sub(t0), got, ok, kept[i])
		}
		if !kept[i] {
			dropped++
			continue
		}
		id := in.Fields["id"].(string)
		w := want[id]
		if w.first != "" {
			w.earlier = append(w.earlier, float64(lastSeq[id]))
			if len(w.earlier) > dedupe.MaxEarlier {
				w.earlier = w.earlier[1:]
			}
		}
		w.first = oracle.Timestamp(in.Time)
		want[id] = w
		lastSeq[id] = in.Seq
	}
	got := map[string]entry{}
	for id, v := range d.Store.Values("p_dedupe", "") {
		e := entry{first: v[dedupe.StateFirst].(string)}
		e.earlier, _ = v[dedupe.StateEarlier].([]any)
		got[id] = e
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: entries\n got %v\nwant %v", what, got, want)
	}
	for k, v := range d.Store.Committed {
		if v.TTL != dedupe.TTL(within) {
			t.Fatalf("%s: entry %q has TTL %s", what, k, v.TTL)
		}
	}
	return dropped
}

// TestMatchesOracle runs the operator over generated events and compares whether it keeps
// each event, and the entries it leaves, with the oracle; with crashes in the middle of
// commits, an event's decision is the one of the run that committed it, and must be the
// oracle's too.
func TestMatchesOracle(t *testing.T) {
	variants := []struct {
		name     string
		ids      int
		within   time.Duration
		maxBatch int
		crash    float64
	}{
		{"few ids", 5, time.Hour, 8, 0},
		{"many ids", 60, 24 * time.Hour, 8, 0},
		{"few ids with crashes", 5, 10 * time.Minute, 20, 0.3},
		{"many ids with crashes", 60, time.Hour, 20, 0.3},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			for seed := range uint64(20) {
				rng := rand.New(rand.NewPCG(seed, 2))
				events := gen(rng, 400, v.ids, v.within)
				d := opstest.NewDriver(t, build(t, map[string]any{"id": "event.id", "within": v.within.String()}))
				d.Run(events, rng, v.maxBatch, v.crash)
				if dropped := check(t, fmt.Sprintf("seed %d (%d restarts)", seed, d.Restarts), d, events, v.within); dropped < 20 {
					t.Fatalf("seed %d: %d events dropped: the events cannot tell", seed, dropped)
				}
			}
		})
	}
}

// id is a valid event with id that reaches the operator, at offset when from t0.
func id(seq uint64, ident, when string) opstest.Input {
	d, err := time.ParseDuration(when)
	if err != nil {
		panic(err)
	}
	return opstest.Input{Event: oracle.Event{Seq: seq, Key: "a", Type: "t", Time: t0.Add(d), Valid: true, Reaches: true, Fields: map[string]any{"id": ident}}}
}

// TestCases runs the cases of the oracle's own tests through the operator.
func TestCases(t *testing.T) {
	filtered := func(in opstest.Input) opstest.Input { in.Reaches = false; return in }
	invalid := func(in opstest.Input) opstest.Input { in.Valid = false; return in }
	dropped := func(in opstest.Input) opstest.Input { in.DroppedAfter = true; return in }
	tests := []struct {
		name   string
		events []opstest.Input
		kept   []bool
	}{
		{"within is measured from the first sighting, its end excluded", []opstest.Input{
			id(1, "x", "0"), id(2, "x", "59m59.999s"), id(3, "x", "1h"), id(4, "x", "1h30m"), id(5, "x", "2h"),
		}, []bool{true, false, true, false, true}},
		{"a dropped repeat does not refresh the sighting", []opstest.Input{
			id(1, "x", "0"), id(2, "x", "50m"), id(3, "x", "1h"),
		}, []bool{true, false, true}},
		{"out of order: remembered until the watermark reaches first + within", []opstest.Input{
			id(1, "x", "10h"), id(2, "y", "10h30m"), id(3, "x", "8h"), id(4, "z", "11h"), id(5, "x", "10h59m"), id(6, "x", "10h59m30s"),
		}, []bool{true, true, false, true, true, false}},
		{"a sighting already forgotten when it is made", []opstest.Input{
			id(1, "y", "5h"), id(2, "x", "1h"), id(3, "x", "1h"),
		}, []bool{true, true, true}},
		{"events that do not reach the operator are not sightings but move the watermark", []opstest.Input{
			filtered(id(1, "x", "0")), id(2, "x", "10m"), invalid(id(3, "w", "2h")), id(4, "x", "30m"), filtered(id(5, "v", "1h10m")), id(6, "x", "1h5m"),
		}, []bool{false, true, false, false, false, true}},
		{"a sighting dropped after the operator is not remembered", []opstest.Input{
			dropped(id(1, "x", "0")), id(2, "x", "10m"), id(3, "x", "20m"),
		}, []bool{false, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oracle.Dedupe(opstest.OracleEvents(tt.events), spec(time.Hour)); !reflect.DeepEqual(got, tt.kept) {
				t.Fatalf("the oracle keeps %v, the case says %v", got, tt.kept)
			}
			d := opstest.NewDriver(t, build(t, map[string]any{"id": "event.id", "within": "1h"}))
			d.Run(tt.events, rand.New(rand.NewPCG(1, 1)), 1, 0)
			check(t, tt.name, d, tt.events, time.Hour)
		})
	}
}

// TestReplay: what a restart after a crash in the middle of a commit finds, and decides.
// Committed: id x first sighted at seq 10 (0m), forgotten, sighted again at seq 20 (1h) and
// at seq 30 (2h), the last two in the batch that was being committed (from seq 15).
func TestReplay(t *testing.T) {
	d := opstest.NewDriver(t, build(t, map[string]any{"id": "event.id", "within": "1h"}))
	for _, in := range []opstest.Input{id(10, "x", "0"), id(20, "x", "1h"), id(30, "x", "2h")} {
		d.Step(in)
	}
	if got := d.Store.Cache[opstest.Key("p_dedupe", "x")].State.Map()[dedupe.StateEarlier]; !reflect.DeepEqual(got, []any{10.0, 20.0}) {
		t.Fatalf("earlier = %v", got)
	}
	d.Store.Commit(func(string) bool { return true })
	tests := []struct {
		seq     uint64
		when    string
		keep    bool
		because string
	}{
		{30, "2h", true, "the entry's own sighting"},
		{20, "1h", true, "an earlier sighting the entry lists"},
		{25, "1h30m", false, "between two known sightings: a repeat"},
		{15, "50m", false, "between two known sightings: a repeat"},
		{5, "0m", true, "before the oldest known sighting: cannot be told, kept"},
		{31, "2h30m", false, "after the entry: remembered"},
		{32, "3h", true, "after the entry: forgotten"},
	}
	for _, tt := range tests {
		d.Start() // a restart: the cache is empty, the entry is read back
		in := id(tt.seq, "x", tt.when)
		ev := &event.Event{Seq: in.Seq, Key: in.Key, Time: in.Time, Fields: in.Fields}
		d.X.Watermark = in.Time
		keep, err := d.Op.Process(&d.X, ev)
		if err != nil || keep != tt.keep || ev.Duplicate == keep {
			t.Errorf("seq %d (%s): keep %v (duplicate %v), err %v; want keep %v", tt.seq, tt.because, keep, ev.Duplicate, err, tt.keep)
		}
		if wrote := len(ev.Writes) > 0; wrote != (tt.seq == 32) {
			t.Errorf("seq %d (%s): writes %v", tt.seq, tt.because, ev.Writes)
		}
	}
}

// TestProcessErrors: an event without a time, or whose id fails or is empty, is an error (a
// dead letter); the key and type are not needed.
func TestProcessErrors(t *testing.T) {
	op := build(t, map[string]any{"id": "event.id", "within": "1h"})
	d := opstest.NewDriver(t, op)
	tests := []struct {
		name string
		ev   *event.Event
		ok   bool
	}{
		{"no time", &event.Event{Seq: 1, Fields: map[string]any{"id": "x"}, TimeErr: errors.New("bad time")}, false},
		{"no id", &event.Event{Seq: 1, Fields: map[string]any{}, Time: t0}, false},
		{"empty id", &event.Event{Seq: 1, Fields: map[string]any{"id": ""}, Time: t0}, false},
		{"a number id", &event.Event{Seq: 1, Fields: map[string]any{"id": 12.0}, Time: t0, KeyErr: errors.New("no key")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, err := op.Process(&d.X, tt.ev)
			if (err == nil) != tt.ok || keep != tt.ok {
				t.Errorf("keep %v, err %v", keep, err)
			}
			if tt.ok && (len(tt.ev.Writes) != 1 || tt.ev.Writes[0].Key != "12") {
				t.Errorf("writes %v", tt.ev.Writes)
			}
		})
	}
}
