package oracle_test

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
)

// amount is the aggregate expression event.amount.
func amount(e oracle.Event) any { return e.Fields["amount"] }

// tag is the aggregate expression event.tag.
func tag(e oracle.Event) any { return e.Fields["tag"] }

// revenue is `orders: count()` and `revenue: sum(event.amount)`.
var revenue = []oracle.Aggregate{
	{Name: "orders", Fn: "count"},
	{Name: "revenue", Fn: "sum", Value: amount},
}

// val is a window value with start and end given as offsets from t0 and the aggregates in
// pairs (name, value).
func val(start, end string, closed bool, aggs ...any) map[string]any {
	v := map[string]any{"start": oracle.Timestamp(at(start)), "end": oracle.Timestamp(at(end)), "closed": closed}
	for i := 0; i+1 < len(aggs); i += 2 {
		v[aggs[i].(string)] = aggs[i+1]
	}
	return v
}

// closedAs is an expected closed window: its KV key, the event that closed it, and whether
// it emits (its value is the state's, or the state's at closing when it is gone).
type closedAs struct {
	kvKey string
	by    uint64
	emit  bool
}

func TestWindows(t *testing.T) {
	tests := []struct {
		name   string
		spec   oracle.WindowSpec
		events []oracle.Event
		state  map[string]map[string]any
		closed []closedAs
		dead   []uint64
		// gone are the values of closed windows no longer in the state.
		gone map[string]map[string]any
	}{{
		name: "tumbling window is [start, end)",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			ev(2, "a", "order", "59.999s", "amount", 2.0),
			ev(3, "a", "order", "1m", "amount", 4.0),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m", true, "orders", 2.0, "revenue", 3.0),
			"a." + ms("1m"): val("1m", "2m", false, "orders", 1.0, "revenue", 4.0),
		},
		closed: []closedAs{{"a." + ms("0"), 3, true}},
	}, {
		name: "lateness keeps a window open",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Lateness: 10 * time.Second, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "30s", "amount", 1.0),
			ev(2, "a", "order", "1m5s", "amount", 2.0),  // horizon 55s: [0, 1m) stays open
			ev(3, "a", "order", "50s", "amount", 4.0),   // older than the watermark, counted
			ev(4, "b", "order", "1m10s", "amount", 8.0), // horizon 1m: [0, 1m) closes
			ev(5, "a", "order", "40s", "amount", 16.0),  // late
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m", true, "orders", 2.0, "revenue", 5.0),
			"a." + ms("1m"): val("1m", "2m", false, "orders", 1.0, "revenue", 2.0),
			"b." + ms("1m"): val("1m", "2m", false, "orders", 1.0, "revenue", 8.0),
		},
		closed: []closedAs{{"a." + ms("0"), 4, true}},
		dead:   []uint64{5},
	}, {
		name: "late events are dead letters, also for a window that never existed",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "30s", "amount", 1.0),
			ev(2, "a", "order", "1m5s", "amount", 2.0),
			ev(3, "a", "order", "50s", "amount", 4.0),
			ev(4, "b", "order", "10s", "amount", 8.0),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("1m"): val("1m", "2m", false, "orders", 1.0, "revenue", 2.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}},
		dead:   []uint64{3, 4},
	}, {
		name: "hopping membership, counted in open windows only, late when all are closed",
		spec: oracle.WindowSpec{Hopping: oracle.Hopping{Size: 3 * time.Minute, Advance: time.Minute}, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "2m30s", "amount", 1.0), // [0,3m) [1m,4m) [2m,5m)
			ev(2, "a", "order", "3m", "amount", 2.0),    // closes [0,3m); [1m,4m) [2m,5m) [3m,6m)
			ev(3, "a", "order", "1m30s", "amount", 4.0), // [-1m,2m) and [0,3m) closed: [1m,4m) only
			ev(4, "a", "order", "30s", "amount", 8.0),   // [-2m,1m) [-1m,2m) [0,3m) all closed
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "3m", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("1m"): val("1m", "4m", false, "orders", 3.0, "revenue", 7.0),
			"a." + ms("2m"): val("2m", "5m", false, "orders", 2.0, "revenue", 3.0),
			"a." + ms("3m"): val("3m", "6m", false, "orders", 1.0, "revenue", 2.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}},
		dead:   []uint64{4},
	}, {
		name: "hopping with a size that is no multiple of the advance",
		spec: oracle.WindowSpec{Hopping: oracle.Hopping{Size: 90 * time.Second, Advance: time.Minute}, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "1m15s", "amount", 1.0), // [0,1m30s) [1m,2m30s)
			ev(2, "a", "order", "1m45s", "amount", 2.0), // closes [0,1m30s); [1m,2m30s)
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m30s", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("1m"): val("1m", "2m30s", false, "orders", 2.0, "revenue", 3.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}},
	}, {
		name: "tumbling before the epoch is aligned too",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			{Seq: 1, Key: "a", Time: time.Unix(-30, 0), Fields: map[string]any{"amount": 1}, Valid: true, Reaches: true},
		},
		state: map[string]map[string]any{
			"a.-60000": {"start": "1969-12-31T23:59:00Z", "end": "1970-01-01T00:00:00Z", "closed": false, "orders": 1.0, "revenue": 1.0},
		},
	}, {
		name: "sessions merge, extend, close; a late event and one near a closed session",
		spec: oracle.WindowSpec{Session: 10 * time.Minute, Lateness: 30 * time.Minute,
			Aggregates: append([]oracle.Aggregate{{Name: "last", Fn: "last", Value: amount}}, revenue...)},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),    // [0, 10m)
			ev(2, "a", "order", "18m", "amount", 2.0),  // 18m > 0+10m: [18m, 28m)
			ev(3, "a", "order", "9m", "amount", 4.0),   // within 10m of both: merged [0, 28m)
			ev(4, "b", "order", "58m", "amount", 8.0),  // horizon 28m: a's session closes
			ev(5, "a", "order", "10m", "amount", 16.0), // no open session, 10m+10m <= 28m: late
			ev(6, "a", "order", "20m", "amount", 32.0), // 20m+10m > 28m: a new session
		},
		state: map[string]map[string]any{
			"a." + ms("0"):   val("0", "28m", true, "orders", 3.0, "revenue", 7.0, "last", 4.0),
			"b." + ms("58m"): val("58m", "1h8m", false, "orders", 1.0, "revenue", 8.0, "last", 8.0),
			"a." + ms("20m"): val("20m", "30m", false, "orders", 1.0, "revenue", 32.0, "last", 32.0),
		},
		closed: []closedAs{{"a." + ms("0"), 4, true}},
		dead:   []uint64{5},
	}, {
		name: "a session that would end at watermark - lateness is late",
		spec: oracle.WindowSpec{Session: 10 * time.Minute, Lateness: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "21m", "amount", 1.0),
			ev(2, "b", "order", "10m", "amount", 2.0),       // ends 20m = horizon: late
			ev(3, "c", "order", "10m0.001s", "amount", 4.0), // ends after the horizon: open
		},
		state: map[string]map[string]any{
			"a." + ms("21m"):       val("21m", "31m", false, "orders", 1.0, "revenue", 1.0),
			"c." + ms("10m0.001s"): val("10m0.001s", "20m0.001s", false, "orders", 1.0, "revenue", 4.0),
		},
		dead: []uint64{2},
	}, {
		name: "sessions that touch close first without lateness",
		spec: oracle.WindowSpec{Session: 10 * time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			ev(2, "a", "order", "10m", "amount", 2.0),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):   val("0", "10m", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("10m"): val("10m", "20m", false, "orders", 1.0, "revenue", 2.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}},
	}, {
		name: "session bounds are inclusive: touching open sessions join, an earlier first moves the key",
		spec: oracle.WindowSpec{Session: 10 * time.Minute, Lateness: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			ev(2, "a", "order", "10m", "amount", 2.0),  // = last + gap: joins, [0, 20m)
			ev(3, "a", "order", "-10m", "amount", 4.0), // = first - gap: joins, [-10m, 20m)
		},
		state: map[string]map[string]any{
			"a." + ms("-10m"): val("-10m", "20m", false, "orders", 3.0, "revenue", 7.0),
		},
	}, {
		name: "retention deletes closed windows; a deleted window is not made again",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Retention: time.Hour, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			ev(2, "b", "order", "1m", "amount", 2.0),      // closes a [0, 1m)
			ev(3, "b", "order", "1h0m59s", "amount", 4.0), // a kept (1m+1h > watermark); closes b [1m, 2m)
			ev(4, "c", "order", "1h1m", "amount", 8.0),    // a gone; closes b [1h, 1h1m)
			ev(5, "a", "order", "30s", "amount", 16.0),    // late
		},
		state: map[string]map[string]any{
			"b." + ms("1m"):   val("1m", "2m", true, "orders", 1.0, "revenue", 2.0),
			"b." + ms("1h"):   val("1h", "1h1m", true, "orders", 1.0, "revenue", 4.0),
			"c." + ms("1h1m"): val("1h1m", "1h2m", false, "orders", 1.0, "revenue", 8.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}, {"b." + ms("1m"), 3, true}, {"b." + ms("1h"), 4, true}},
		dead:   []uint64{5},
		gone:   map[string]map[string]any{"a." + ms("0"): val("0", "1m", true, "orders", 1.0, "revenue", 1.0)},
	}, {
		name: "default retention is 24h",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			ev(2, "b", "order", "24h0m59s", "amount", 2.0),
			filtered(ev(3, "b", "order", "24h1m", "amount", 4.0)),
		},
		state: map[string]map[string]any{
			"b." + ms("24h"): val("24h", "24h1m", true, "orders", 1.0, "revenue", 2.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}, {"b." + ms("24h"), 3, true}},
		gone:   map[string]map[string]any{"a." + ms("0"): val("0", "1m", true, "orders", 1.0, "revenue", 1.0)},
	}, {
		name: "every aggregate; an event an aggregate refuses is a dead letter",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: []oracle.Aggregate{
			{Name: "n", Fn: "count"},
			{Name: "sum", Fn: "sum", Value: amount},
			{Name: "min", Fn: "min", Value: amount},
			{Name: "max", Fn: "max", Value: amount},
			{Name: "avg", Fn: "avg", Value: amount},
			{Name: "last", Fn: "last", Value: tag},
			{Name: "tags", Fn: "distinct", Value: tag},
		}},
		events: []oracle.Event{
			ev(1, "a", "order", "10s", "amount", 3.0, "tag", "x"),
			ev(2, "a", "order", "50s", "amount", 1.0, "tag", "y"),
			ev(3, "a", "order", "20s", "amount", 2.0, "tag", "x"),
			ev(4, "a", "order", "30s", "amount", 2, "tag", 1),
			ev(5, "a", "order", "40s", "amount", "oops", "tag", "z"),
			ev(6, "a", "order", "45s", "amount", int64(4), "tag", 1.0), // last in stream order
		},
		state: map[string]map[string]any{
			"a." + ms("0"): val("0", "1m", false, "n", 5.0, "sum", 12.0, "min", 1.0, "max", 4.0, "avg", 2.4, "last", 1.0, "tags", 3.0),
		},
		dead: []uint64{5},
	}, {
		name: "filtered events move the watermark, invalid ones do not",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			filtered(ev(2, "b", "order", "1m", "amount", 2.0)), // closes a [0, 1m)
			invalid(ev(3, "a", "order", "5m", "amount", 4.0)),
			ev(4, "a", "order", "1m30s", "amount", 8.0),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("1m"): val("1m", "2m", false, "orders", 1.0, "revenue", 8.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}},
	}, {
		name: "handler once: a hydrated event's closes do not emit",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Once: true, Aggregates: revenue},
		events: []oracle.Event{
			hydrated(ev(1, "a", "order", "0", "amount", 1.0)),
			hydrated(ev(2, "a", "order", "1m", "amount", 2.0)),
			ev(3, "a", "order", "2m", "amount", 4.0),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("1m"): val("1m", "2m", true, "orders", 1.0, "revenue", 2.0),
			"a." + ms("2m"): val("2m", "3m", false, "orders", 1.0, "revenue", 4.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, false}, {"a." + ms("1m"), 3, true}},
	}, {
		name: "without once every close emits",
		spec: oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			hydrated(ev(1, "a", "order", "0", "amount", 1.0)),
			hydrated(ev(2, "a", "order", "1m", "amount", 2.0)),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):  val("0", "1m", true, "orders", 1.0, "revenue", 1.0),
			"a." + ms("1m"): val("1m", "2m", false, "orders", 1.0, "revenue", 2.0),
		},
		closed: []closedAs{{"a." + ms("0"), 2, true}},
	}, {
		name: "windows close one by one as the watermark passes their ends",
		spec: oracle.WindowSpec{Session: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "a", "order", "0", "amount", 1.0),
			ev(2, "b", "order", "30s", "amount", 2.0),
			filtered(ev(3, "x", "order", "1m", "amount", 4.0)),
			filtered(ev(4, "x", "order", "1m29s", "amount", 4.0)),
			filtered(ev(5, "x", "order", "2m", "amount", 4.0)),
		},
		state: map[string]map[string]any{
			"a." + ms("0"):   val("0", "1m", true, "orders", 1.0, "revenue", 1.0),
			"b." + ms("30s"): val("30s", "1m30s", true, "orders", 1.0, "revenue", 2.0),
		},
		closed: []closedAs{{"a." + ms("0"), 3, true}, {"b." + ms("30s"), 5, true}},
	}, {
		name: "windows closing at one step close by end, then key",
		spec: oracle.WindowSpec{Session: time.Minute, Aggregates: revenue},
		events: []oracle.Event{
			ev(1, "b", "order", "0", "amount", 1.0),
			ev(2, "c", "order", "30s", "amount", 2.0),
			ev(3, "a", "order", "5s", "amount", 4.0),
			ev(4, "d", "order", "0", "amount", 8.0),
			ev(5, "z", "order", "10m", "amount", 16.0),
		},
		state: map[string]map[string]any{
			"a." + ms("5s"):  val("5s", "1m5s", true, "orders", 1.0, "revenue", 4.0),
			"b." + ms("0"):   val("0", "1m", true, "orders", 1.0, "revenue", 1.0),
			"c." + ms("30s"): val("30s", "1m30s", true, "orders", 1.0, "revenue", 2.0),
			"d." + ms("0"):   val("0", "1m", true, "orders", 1.0, "revenue", 8.0),
			"z." + ms("10m"): val("10m", "11m", false, "orders", 1.0, "revenue", 16.0),
		},
		closed: []closedAs{{"b." + ms("0"), 5, true}, {"d." + ms("0"), 5, true}, {"a." + ms("5s"), 5, true}, {"c." + ms("30s"), 5, true}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := oracle.Windows(tt.events, tt.spec)
			if !reflect.DeepEqual(got.State, tt.state) {
				t.Errorf("state:\n got %v\nwant %v", got.State, tt.state)
			}
			if len(got.Closed) != len(tt.closed) {
				t.Fatalf("closed %+v, want %+v", got.Closed, tt.closed)
			}
			for i, c := range got.Closed {
				w := tt.closed[i]
				if c.KVKey != w.kvKey || c.By != w.by || c.Emit != w.emit {
					t.Errorf("closed[%d] = %s by %d emit %t, want %s by %d emit %t", i, c.KVKey, c.By, c.Emit, w.kvKey, w.by, w.emit)
				}
				want, ok := tt.state[c.KVKey]
				if !ok {
					want = tt.gone[c.KVKey]
				}
				if !reflect.DeepEqual(c.Value, want) {
					t.Errorf("closed[%d] %s value %v, want %v", i, c.KVKey, c.Value, want)
				}
				if oracle.Timestamp(c.Start) != want["start"] || oracle.Timestamp(c.End) != want["end"] {
					t.Errorf("closed[%d] %s bounds %s %s, want %v %v", i, c.KVKey, c.Start, c.End, want["start"], want["end"])
				}
			}
			var dead []uint64
			for _, d := range got.Dead {
				dead = append(dead, d.Seq)
				if d.Reason == "" {
					t.Errorf("dead letter %d without reason", d.Seq)
				}
			}
			if !reflect.DeepEqual(dead, tt.dead) {
				t.Errorf("dead %+v, want seqs %v", got.Dead, tt.dead)
			}
		})
	}
}

func TestWindowDeadReasons(t *testing.T) {
	spec := oracle.WindowSpec{Tumbling: time.Minute, Aggregates: revenue}
	got := oracle.Windows([]oracle.Event{
		ev(1, "a", "order", "1m", "amount", 1.0),
		ev(2, "a", "order", "0", "amount", 1.0),
		ev(3, "a", "order", "1m", "amount", nil),
		ev(4, "a", "order", "0", "amount", nil), // late before refused
	}, spec)
	if len(got.Dead) != 3 || !strings.HasPrefix(got.Dead[0].Reason, "late") ||
		!strings.HasPrefix(got.Dead[1].Reason, "aggregate revenue") || !strings.HasPrefix(got.Dead[2].Reason, "late") {
		t.Errorf("dead %+v", got.Dead)
	}
	sess := oracle.Windows([]oracle.Event{ev(1, "a", "order", "1h", "amount", 1.0), ev(2, "a", "order", "0", "amount", 1.0)},
		oracle.WindowSpec{Session: time.Minute, Aggregates: revenue})
	if len(sess.Dead) != 1 || !strings.HasPrefix(sess.Dead[0].Reason, "late") {
		t.Errorf("session dead %+v", sess.Dead)
	}
}

func TestWindowSpecPanics(t *testing.T) {
	for name, spec := range map[string]oracle.WindowSpec{
		"none":           {},
		"two":            {Tumbling: time.Minute, Session: time.Minute},
		"advance > size": {Hopping: oracle.Hopping{Size: time.Minute, Advance: 2 * time.Minute}},
		"reserved name":  {Tumbling: time.Minute, Aggregates: []oracle.Aggregate{{Name: "end", Fn: "count"}}},
		"repeated name":  {Tumbling: time.Minute, Aggregates: []oracle.Aggregate{{Name: "n", Fn: "count"}, {Name: "n", Fn: "count"}}},
		"no value":       {Tumbling: time.Minute, Aggregates: []oracle.Aggregate{{Name: "s", Fn: "sum"}}},
		"unknown fn":     {Tumbling: time.Minute, Aggregates: []oracle.Aggregate{{Name: "m", Fn: "median", Value: amount}}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			oracle.Windows(nil, spec)
		}()
	}
}

// TestWindowInvariants checks, on random workloads, what must hold whatever the rules'
// details: closes come in order of end, every closed window still kept is in the state as it
// closed and only those past retention are gone, and each applied event is counted in one
// tumbling window or session and in one to size/advance hopping windows.
func TestWindowInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var events []oracle.Event
	for i := range 5000 {
		// Times mostly increase, some jump back by up to 20 minutes.
		when := time.Duration(i)*time.Second - time.Duration(rng.IntN(3))*time.Duration(rng.IntN(1200))*time.Second
		e := oracle.Event{Seq: uint64(i + 1), Key: string(rune('a' + rng.IntN(5))), Time: t0.Add(when),
			Fields: map[string]any{"amount": float64(rng.IntN(100))}, Valid: rng.IntN(50) != 0, Reaches: rng.IntN(10) != 0}
		events = append(events, e)
	}
	for name, spec := range map[string]oracle.WindowSpec{
		"tumbling": {Tumbling: time.Minute, Lateness: 5 * time.Minute, Retention: 30 * time.Minute},
		"hopping":  {Hopping: oracle.Hopping{Size: 5 * time.Minute, Advance: 2 * time.Minute}, Lateness: time.Minute, Retention: time.Hour},
		"session":  {Session: 30 * time.Second, Lateness: 10 * time.Minute, Retention: 20 * time.Minute},
	} {
		spec.Aggregates = revenue
		for _, retention := range []time.Duration{spec.Retention, 1000 * time.Hour} {
			spec.Retention = retention
			got := oracle.Windows(events, spec)
			applied := 0
			for _, e := range events {
				if e.Valid && e.Reaches {
					applied++
				}
			}
			applied -= len(got.Dead)
			if applied < 1000 || len(got.Dead) < 10 || len(got.Closed) < 100 {
				t.Fatalf("%s: a weak workload: %d applied, %d dead, %d closed", name, applied, len(got.Dead), len(got.Closed))
			}
			for i, c := range got.Closed {
				if i > 0 && c.End.Before(got.Closed[i-1].End) {
					t.Errorf("%s: %s closes after %s", name, c.KVKey, got.Closed[i-1].KVKey)
				}
				v, kept := got.State[c.KVKey]
				if expired := !c.End.Add(retention).After(got.Watermark); expired == kept {
					t.Errorf("%s: %s ends %s, kept %t at watermark %s", name, c.KVKey, c.End, kept, got.Watermark)
				}
				if kept && !reflect.DeepEqual(v, c.Value) {
					t.Errorf("%s: %s is %v, closed as %v", name, c.KVKey, v, c.Value)
				}
			}
			if retention != 1000*time.Hour {
				continue
			}
			counted := 0.0
			for _, v := range got.State {
				counted += v["orders"].(float64)
			}
			hops := (spec.Hopping.Size + spec.Hopping.Advance - 1) / max(spec.Hopping.Advance, 1) // at most ceil(size/advance)
			if name == "hopping" && (counted < float64(applied) || counted > float64(applied)*float64(hops)) ||
				name != "hopping" && counted != float64(applied) {
				t.Errorf("%s: %v counted for %d applied events", name, counted, applied)
			}
		}
	}
}
