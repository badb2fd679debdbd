package window_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/window"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// aggregatesYAML are every aggregate function, over event.amount and event.product.
const aggregatesYAML = `
aggregate:
  orders: count()
  revenue: sum(event.amount)
  biggest: max(event.amount)
  smallest: min(event.amount)
  mean: avg(event.amount)
  lastp: last(event.product)
  products: distinct(event.product)
`

// oracleAggregates are aggregatesYAML for the oracle, sorted by name as the operator
// evaluates them (so that the first to refuse an event is the same).
var oracleAggregates = []oracle.Aggregate{
	{Name: "biggest", Fn: "max", Value: field("amount")},
	{Name: "lastp", Fn: "last", Value: field("product")},
	{Name: "mean", Fn: "avg", Value: field("amount")},
	{Name: "orders", Fn: "count"},
	{Name: "products", Fn: "distinct", Value: field("product")},
	{Name: "revenue", Fn: "sum", Value: field("amount")},
	{Name: "smallest", Fn: "min", Value: field("amount")},
}

// field is the aggregate expression event.<name>.
func field(name string) func(oracle.Event) any {
	return func(e oracle.Event) any { return e.Fields[name] }
}

// workload shapes generated events.
type workload struct {
	n, keys int
	// step is the most event time advances per event; pause, one time in 50, a longer
	// advance (sessions close); back, one time in 5, how far an event may lag (out of order),
	// and far, one time in 50, how far a late one lags.
	step, pause, back, far time.Duration
	// hydrated events are the first ones (a replay), with dropped and bad ones one in
	// dropEvery and badEvery (0: none).
	hydrated, dropEvery, badEvery int
}

// products are the values of event.product: 1 and 1.0 are one distinct value, "1" another,
// null one more.
var products = []any{"a", "b", 1.0, "1", nil, 2.5, map[string]any{"x": 1.0}}

// generate returns the events of w and which of them a later operator drops.
func generate(seed uint64, w workload) ([]oracle.Event, []bool) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var events []oracle.Event
	var dropped []bool
	now := t0
	for i := range w.n {
		now = now.Add(time.Duration(rng.Int64N(int64(w.step))))
		if rng.IntN(50) == 0 {
			now = now.Add(time.Duration(rng.Int64N(int64(w.pause))))
		}
		at := now
		switch {
		case rng.IntN(5) == 0:
			at = at.Add(-time.Duration(rng.Int64N(int64(w.back))))
		case rng.IntN(50) == 0:
			at = at.Add(-time.Duration(rng.Int64N(int64(w.far))))
		}
		at = at.Truncate(time.Millisecond).Add(time.Duration(rng.IntN(3)) * time.Millisecond / 2) // some sub-millisecond times
		amount := any(float64(rng.IntN(10000)) / 100)
		if w.badEvery > 0 && rng.IntN(w.badEvery) == 0 {
			amount = "n/a"
		}
		fields := map[string]any{"amount": amount, "product": products[rng.IntN(len(products))]}
		events = append(events, oracle.Event{
			Seq: uint64(i + 1), Key: fmt.Sprintf("k%d", rng.IntN(w.keys)), Type: "order", Time: at,
			Fields: fields, Valid: true, Reaches: true, Hydrated: i < w.hydrated,
		})
		dropped = append(dropped, w.dropEvery > 0 && rng.IntN(w.dropEvery) == 0)
	}
	return events, dropped
}

// reaching returns events with those dropped by a later operator not reaching the window.
func reaching(events []oracle.Event, dropped []bool) []oracle.Event {
	out := slices.Clone(events)
	for i := range out {
		out[i].Reaches = !dropped[i]
	}
	return out
}

// windowCase is a window configuration and its oracle model.
type windowCase struct {
	name string
	yaml string
	spec oracle.WindowSpec
	work workload
}

var fast = workload{n: 3000, keys: 5, step: 4 * time.Second, pause: 3 * time.Minute, back: 90 * time.Second, far: 30 * time.Minute, dropEvery: 40, badEvery: 60}

var windowCases = []windowCase{{
	name: "tumbling",
	yaml: "tumbling: 1m\nlateness: 10s\nretention: 5m\n",
	spec: oracle.WindowSpec{Tumbling: time.Minute, Lateness: 10 * time.Second, Retention: 5 * time.Minute},
	work: fast,
}, {
	name: "tumbling without lateness, default retention",
	yaml: "tumbling: 1m\n",
	spec: oracle.WindowSpec{Tumbling: time.Minute},
	work: fast,
}, {
	name: "hopping",
	yaml: "hopping: {size: 3m, advance: 1m}\nlateness: 20s\nretention: 4m\n",
	spec: oracle.WindowSpec{Hopping: oracle.Hopping{Size: 3 * time.Minute, Advance: time.Minute}, Lateness: 20 * time.Second, Retention: 4 * time.Minute},
	work: fast,
}, {
	name: "hopping, size no multiple of advance",
	yaml: "hopping: {size: 90s, advance: 1m}\nretention: 3m\n",
	spec: oracle.WindowSpec{Hopping: oracle.Hopping{Size: 90 * time.Second, Advance: time.Minute}, Retention: 3 * time.Minute},
	work: fast,
}, {
	name: "session",
	yaml: "session: {gap: 30s}\nlateness: 1m\nretention: 3m\n",
	spec: oracle.WindowSpec{Session: 30 * time.Second, Lateness: time.Minute, Retention: 3 * time.Minute},
	work: workload{n: 3000, keys: 5, step: 8 * time.Second, pause: 3 * time.Minute, back: 2 * time.Minute, far: 30 * time.Minute, dropEvery: 40, badEvery: 60},
}, {
	name: "session without lateness",
	yaml: "session: {gap: 2m}\nretention: 10m\n",
	spec: oracle.WindowSpec{Session: 2 * time.Minute, Retention: 10 * time.Minute},
	work: workload{n: 3000, keys: 8, step: 10 * time.Second, pause: 10 * time.Minute, back: 5 * time.Minute, far: time.Hour, dropEvery: 40, badEvery: 60},
}, {
	name: "handler once with a replay",
	yaml: "tumbling: 1m\nlateness: 10s\nretention: 5m\n",
	spec: oracle.WindowSpec{Tumbling: time.Minute, Lateness: 10 * time.Second, Retention: 5 * time.Minute, Once: true},
	work: func() workload { w := fast; w.hydrated = 1000; return w }(),
}}

// opYAML is the operator's YAML for c.
func (c windowCase) opYAML() string {
	handler := "on"
	if c.spec.Once {
		handler = "once"
	}
	return "projection: w\n" + c.yaml + aggregatesYAML + "emit: {subject: '\"out.\" + key', handler: " + handler + "}\n"
}

// oracleSpec is c's spec with the aggregates.
func (c windowCase) oracleSpec() oracle.WindowSpec {
	s := c.spec
	s.Aggregates = oracleAggregates
	return s
}

// TestAgainstOracle runs each window kind over generated events (random keys, times out of
// order, late ones, refused ones, some dropped by a later operator) and compares the KV
// values, the derived events of the closes in order, and the dead letters with the oracle's;
// with states changed in place and copied.
func TestAgainstOracle(t *testing.T) {
	for _, c := range windowCases {
		for _, owned := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/owned=%t", c.name, owned), func(t *testing.T) {
				events, dropped := generate(uint64(len(c.name)), c.work)
				want := oracle.Windows(reaching(events, dropped), c.oracleSpec())
				checkWorkload(t, want, c.spec.Retention > 0)
				op := build(t, c.opYAML())
				r := newRunner(t, op, newMemStore(t, op.Shape(), owned), time.Time{})
				for i, e := range events {
					r.step(e, dropped[i])
				}
				compareState(t, r.state(), want.State)
				compareEmitted(t, r.out, wantEmitted(want, "w"))
				compareDead(t, r.dead, want.Dead)
			})
		}
	}
}

// checkWorkload fails a test whose workload is too weak to find much: few closes, no late or
// refused events, no expired windows.
func checkWorkload(t *testing.T, res oracle.WindowResult, expiring bool) {
	t.Helper()
	kinds := map[string]int{}
	for _, d := range res.Dead {
		kinds[strings.Fields(deadKind(d.Reason))[0]]++
	}
	closedKept := 0
	for _, v := range res.State {
		if v["closed"] == true {
			closedKept++
		}
	}
	if len(res.Closed) < 50 || kinds["late"] < 5 || kinds["aggregate"] < 5 || expiring && (closedKept == 0 || closedKept == len(res.Closed)) {
		t.Fatalf("weak workload: %d closed (%d kept), dead letters %v", len(res.Closed), closedKept, kinds)
	}
}

// TestRestartAgainstOracle crashes a run and restarts it from an earlier checkpoint: the KV
// values are those of a later batch (some of the next batch's keys too, for fixed windows, as
// a crash in the middle of a commit leaves them), the derived events published are those of
// the batches whose keys were written. The rerun from the checkpoint, with an index rebuilt
// by Start, must end as the oracle does, publish nothing twice with different contents, never
// close again a window closed in KV, and miss no derived event or dead letter.
func TestRestartAgainstOracle(t *testing.T) {
	for _, c := range windowCases {
		t.Run(c.name, func(t *testing.T) {
			events, dropped := generate(uint64(len(c.name))+7, c.work)
			want := oracle.Windows(reaching(events, dropped), c.oracleSpec())
			rng := rand.New(rand.NewPCG(uint64(len(c.name)), 9))
			for crash := range 8 {
				restart(t, c, events, dropped, want, crashPoint(rng, c, events), crash)
			}
		})
	}
}

// crash is where a run breaks: its checkpoint is after event cp, the KV values are those after
// event kv, and, from the batch that ends at event end, the keys in partial.
type crash struct {
	cp, kv, end int
	partial     bool
}

// crashPoint picks a crash whose span (from checkpoint to the batch in commit) is shorter
// than retention - lateness: a window closed and deleted within it, and committed so, would be
// made again by its events (a documented limitation).
func crashPoint(rng *rand.Rand, c windowCase, events []oracle.Event) crash {
	retention := c.spec.Retention
	if retention == 0 {
		retention = oracle.DefaultRetention
	}
	for {
		cp := 100 + rng.IntN(len(events)-300)
		kv := cp + rng.IntN(20)
		cr := crash{cp: cp, kv: kv, end: kv + 1 + rng.IntN(20), partial: c.spec.Session == 0 && rng.IntN(2) == 0}
		if watermark(events[:cr.end]).Sub(watermark(events[:cr.cp])) < retention-c.spec.Lateness {
			return cr
		}
	}
}

// watermark is the greatest event time of events.
func watermark(events []oracle.Event) time.Time {
	var w time.Time
	for _, e := range events {
		if e.Time.After(w) {
			w = e.Time
		}
	}
	return w
}

func restart(t *testing.T, c windowCase, events []oracle.Event, dropped []bool, want oracle.WindowResult, cr crash, n int) {
	t.Helper()
	op := build(t, c.opYAML())
	store := newMemStore(t, op.Shape(), true)
	r := newRunner(t, op, store, time.Time{})
	var kv map[string]stored
	published, deadPublished := 0, 0
	rng := rand.New(rand.NewPCG(uint64(n), 3))
	for i, e := range events[:cr.end] {
		r.step(e, dropped[i])
		switch i + 1 {
		case cr.kv:
			kv = store.snapshot(nil)
			published, deadPublished = len(r.out), len(r.dead)
			clear(store.dirty)
		case cr.end:
			if !cr.partial {
				break
			}
			// A crash in the middle of the keys: the derived events are published, some keys written.
			only := map[string]bool{}
			for k := range store.dirty {
				only[k] = rng.IntN(2) == 0
			}
			maps.Copy(kv, store.snapshot(only))
			published, deadPublished = len(r.out), len(r.dead)
		}
	}
	first := r.out[:published]
	closedInKV := map[string]bool{}
	for k, v := range kv {
		if strings.Contains(string(v.json), `"closed":true`) {
			closedInKV["window:w:"+k] = true
		}
	}

	op2 := build(t, c.opYAML())
	r2 := newRunner(t, op2, load(t, op2.Shape(), true, kv), watermark(events[:cr.cp]))
	for i, e := range events[cr.cp:] {
		r2.step(e, dropped[cr.cp+i])
	}
	label := fmt.Sprintf("crash %d %+v", n, cr)
	t.Run(label, func(t *testing.T) {
		compareState(t, r2.state(), want.State)
		for _, o := range r2.out {
			if closedInKV[o.id] {
				t.Errorf("%s closed in KV before the crash, emitted again", o.id)
			}
		}
		compareEmitted(t, dedupe(t, append(slices.Clone(first), r2.out...)), wantEmitted(want, "w"))
		compareDead(t, append(slices.Clone(r.dead[:deadPublished]), r2.dead...), want.Dead)
	})
}

// dedupe drops the derived events published again (JetStream drops them by id), after
// checking that they are the same as the first.
func dedupe(t *testing.T, out []emitted) []emitted {
	seen := map[string]emitted{}
	var kept []emitted
	for _, o := range out {
		if f, ok := seen[o.id]; ok {
			if d := diffValues(o.data, f.data); len(d) > 0 {
				t.Errorf("%s published again with other data: %v", o.id, d)
			}
			continue
		}
		seen[o.id] = o
		kept = append(kept, o)
	}
	return kept
}

// TestLate checks the late dead letter's reason and that a late event counts nowhere, for
// each kind, and that an event older than the watermark whose window is open counts.
func TestLate(t *testing.T) {
	tests := []struct {
		name, yaml string
		late       string // the late event's offset from t0, after one at 10m
		counted    string // an event older than the watermark, still counted
	}{
		{"tumbling", "tumbling: 1m\nlateness: 30s", "8m59s", "9m1s"},
		{"hopping", "hopping: {size: 2m, advance: 1m}\nlateness: 30s", "7m59s", "8m1s"},
		{"session", "session: {gap: 1m}\nlateness: 30s", "8m30s", "8m31s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := build(t, "projection: w\n"+tt.yaml+"\naggregate: {n: count()}")
			r := newRunner(t, op, newMemStore(t, op.Shape(), true), time.Time{})
			r.step(ev(1, "a", "10m"), false)
			r.step(ev(2, "a", tt.late), false)
			r.step(ev(3, "b", tt.counted), false)
			if len(r.dead) != 1 || r.dead[0].Seq != 2 || !strings.HasPrefix(r.dead[0].Reason, "late") {
				t.Fatalf("dead letters %v, want event 2's, late", r.dead)
			}
			total := 0.0
			for _, v := range r.state() {
				total += v["n"].(float64)
			}
			if want := max(map[string]float64{"hopping": 3}[tt.name], 2); total != want {
				t.Errorf("counted %v, want events 1 and 3 in their windows: %v", total, r.state())
			}
			_, err := op.Process(&r.x, evOf(ev(4, "a", tt.late)))
			if !errors.Is(err, window.ErrLate) {
				t.Errorf("late event: %v, want ErrLate", err)
			}
		})
	}
}

// ev is an event of key at t0 + offset, with amount 1.
func ev(seq uint64, key, offset string) oracle.Event {
	d, err := time.ParseDuration(offset)
	if err != nil {
		panic(err)
	}
	return oracle.Event{Seq: seq, Key: key, Type: "order", Time: t0.Add(d), Fields: map[string]any{"amount": 1.0}, Valid: true, Reaches: true}
}

// evOf is e as the operator sees it.
func evOf(e oracle.Event) *event.Event {
	return &event.Event{Seq: e.Seq, Key: e.Key, Type: e.Type, Time: e.Time, Fields: e.Fields}
}

// TestAdvanceCheapWhenNothingIsDue checks that a tick that closes and deletes nothing reads
// no state and stages nothing, and that the one that closes a window does.
func TestAdvanceCheapWhenNothingIsDue(t *testing.T) {
	for _, kind := range []string{"tumbling: 1m", "session: {gap: 1m}"} {
		op := build(t, "projection: w\n"+kind+"\naggregate: {n: count()}")
		store := newMemStore(t, op.Shape(), true)
		r := newRunner(t, op, store, time.Time{})
		for i := range 100 {
			r.step(ev(uint64(i+1), fmt.Sprintf("k%d", i), "10s"), false)
		}
		gets := store.gets
		tick := &event.Event{Seq: 101}
		if err := op.Advance(&r.x, tick, t0.Add(10*time.Second), t0.Add(20*time.Second)); err != nil {
			t.Fatal(err)
		}
		if store.gets != gets || len(tick.Writes) != 0 {
			t.Errorf("%s: a tick with nothing due read %d states and staged %d writes", kind, store.gets-gets, len(tick.Writes))
		}
		if err := op.Advance(&r.x, tick, t0.Add(20*time.Second), t0.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if len(tick.Writes) != 100 {
			t.Errorf("%s: the tick past the windows' end staged %d writes, want 100 closes", kind, len(tick.Writes))
		}
	}
}

// TestStart checks the index Start rebuilds: keys that are no windows of the operator are
// ignored, open windows close when due, closed ones are deleted after retention, and what
// remains of a merge whose deletion a crash lost is deleted on the first tick.
func TestStart(t *testing.T) {
	const emit = "\nemit: {subject: '\"out.\" + key'}"
	session := build(t, "projection: w\nsession: {gap: 1m}\naggregate: {n: count()}"+emit)
	fixed := build(t, "projection: w\ntumbling: 1m\nretention: 10m\naggregate: {n: count()}"+emit)
	tests := []struct {
		name string
		op   *window.Op
		kv   map[string]map[string]any
		// after a tick at t0+to, the keys left and the derived events' ids
		to   string
		left []string
		emit []string
	}{{
		name: "fixed",
		op:   fixed,
		kv: map[string]map[string]any{
			"a." + ms("0"):     win("0", "1m", true, 1),
			"a." + ms("5m"):    win("5m", "6m", false, 2),
			"a." + ms("6m"):    win("6m", "7m", false, 2),
			"not-a-window":     {"x": 1.0},
			"a.12345":          {"x": 1.0}, // no multiple of the size
			"b." + ms("5m30s"): {"x": 1.0},
		},
		to:   "11m", // a.0 ends at 1m: deleted at 1m + retention exactly
		left: []string{"a." + ms("5m"), "a." + ms("6m"), "a.12345", "b." + ms("5m30s"), "not-a-window"},
		emit: []string{"window:w:a." + ms("5m"), "window:w:a." + ms("6m")},
	}, {
		name: "session remnant",
		op:   session,
		kv: map[string]map[string]any{
			"a." + ms("5m"):    win("5m", "9m", false, 3), // merged, last event at 8m
			"a." + ms("7m"):    win("7m", "8m", false, 1), // merged into it: a remnant
			"a." + ms("9m30s"): win("9m30s", "10m30s", false, 1),
			"b." + ms("0"):     win("0", "1m", true, 1),
		},
		to:   "8m30s",
		left: []string{"a." + ms("5m"), "a." + ms("9m30s"), "b." + ms("0")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := map[string]stored{}
			for k, v := range tt.kv {
				b, _ := json.Marshal(v)
				kv[k] = stored{json: b, seq: 1}
			}
			store := load(t, tt.op.Shape(), true, kv)
			r := newRunner(t, tt.op, store, t0.Add(5*time.Minute))
			r.step(ev(2, "z", tt.to), false)
			var left []string
			for k, e := range store.entries {
				if e.State != nil && !strings.HasPrefix(k, "z.") {
					left = append(left, k)
				}
			}
			slices.Sort(left)
			slices.Sort(tt.left)
			if fmt.Sprint(left) != fmt.Sprint(tt.left) {
				t.Errorf("keys left %v, want %v", left, tt.left)
			}
			var ids []string
			for _, o := range r.out {
				ids = append(ids, o.id)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.emit) {
				t.Errorf("emitted %v, want %v", ids, tt.emit)
			}
		})
	}
}

// ms is the Unix milliseconds of t0 + offset, as in a KV key.
func ms(offset string) string {
	d, _ := time.ParseDuration(offset)
	return fmt.Sprint(t0.Add(d).UnixMilli())
}

// win is a window's value with n events.
func win(start, end string, closed bool, n float64) map[string]any {
	at := func(o string) string { d, _ := time.ParseDuration(o); return oracle.Timestamp(t0.Add(d)) }
	return map[string]any{"start": at(start), "end": at(end), "closed": closed, "n": n}
}

// TestUnmadeEmit: a window whose emit cannot be made when it closes (its key makes the
// subject invalid) is staged as unmade, with the window as payload; the window still closes.
func TestUnmadeEmit(t *testing.T) {
	op := build(t, "projection: w\ntumbling: 1m\naggregate: {n: count()}\nemit: {subject: '\"w.\" + key', data: {n: window.n}}")
	r := newRunner(t, op, newMemStore(t, op.Shape(), true), time.Time{})
	r.step(ev(1, "a b", "1m"), false)
	r.tick.Reset()
	r.x.Watermark = r.x.Watermark.Add(time.Hour)
	if err := op.Advance(&r.x, &r.tick, r.x.Watermark.Add(-time.Hour), r.x.Watermark); err != nil {
		t.Fatal(err)
	}
	if len(r.tick.Outputs) != 1 {
		t.Fatalf("outputs %v, want one", r.tick.Outputs)
	}
	o := r.tick.Outputs[0]
	if o.Err == nil || !strings.Contains(o.Err.Error(), "not a valid subject") || !strings.Contains(string(o.Data), `"n":1`) || o.ID == "" {
		t.Errorf("output %+v, want an unmade emit with the window as data and an id", o)
	}
	r.applyEffects(&r.tick)
	st := r.state()
	if len(st) != 1 {
		t.Fatalf("windows %v, want one", st)
	}
	for k, v := range st {
		if v["closed"] != true {
			t.Errorf("window %s = %v, want it closed", k, v)
		}
	}
}
