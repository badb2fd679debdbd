package oracle_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
)

// timer is the timer of key started at `started` (an offset from t0) by event seq, 30m.
func timer(key, started string, seq uint64) oracle.Timer {
	return oracle.Timer{Key: key, Started: at(started), Deadline: at(started).Add(30 * time.Minute), Event: seq}
}

// fired is timer(key, started, seq) fired at the step of event by.
func fired(key, started string, seq, by uint64) oracle.FiredTimer {
	return oracle.FiredTimer{Timer: timer(key, started, seq), By: by, Emit: true}
}

func TestTimeouts(t *testing.T) {
	abandoned := oracle.TimeoutSpec{Start: []string{"add"}, Cancel: []string{"order"}, After: 30 * time.Minute}
	keepFirst := abandoned
	keepFirst.KeepFirst = true
	once := abandoned
	once.Once = true
	tests := []struct {
		name    string
		spec    oracle.TimeoutSpec
		events  []oracle.Event
		fired   []oracle.FiredTimer
		pending []oracle.Timer
	}{{
		name: "fires when the watermark reaches the deadline",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "a", "add", "0"),
			ev(2, "b", "view", "29m59s"),
			ev(3, "b", "view", "30m"),
		},
		fired: []oracle.FiredTimer{fired("a", "0", 1, 3)},
	}, {
		name: "restart moves the timer to the new start",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "a", "add", "0"),
			ev(2, "a", "add", "20m"),
			ev(3, "x", "view", "30m"),
			ev(4, "x", "view", "50m"),
		},
		fired: []oracle.FiredTimer{fired("a", "20m", 2, 4)},
	}, {
		name: "restart false keeps the first start",
		spec: keepFirst,
		events: []oracle.Event{
			ev(1, "a", "add", "0"),
			ev(2, "a", "add", "20m"),
			ev(3, "x", "view", "30m"),
			ev(4, "x", "view", "50m"),
			ev(5, "a", "add", "55m"), // nothing pending: starts
		},
		fired:   []oracle.FiredTimer{fired("a", "0", 1, 3)},
		pending: []oracle.Timer{timer("a", "55m", 5)},
	}, {
		name: "a cancel at the deadline is too late, one before it cancels",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "a", "add", "0"),
			ev(2, "a", "order", "30m"),
			ev(3, "c", "add", "31m"),
			ev(4, "c", "order", "1h0m59.999s"),
			ev(5, "x", "view", "2h"),
		},
		fired: []oracle.FiredTimer{fired("a", "0", 1, 2)},
	}, {
		name: "a cancel that comes after the watermark passed the deadline is too late",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "a", "add", "0"),
			ev(2, "b", "view", "40m"),
			ev(3, "a", "order", "10m"),
		},
		fired: []oracle.FiredTimer{fired("a", "0", 1, 2)},
	}, {
		name: "starts and cancels act in stream order",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "a", "add", "10m"),
			ev(2, "a", "order", "5m"), // older than the start, still cancels
			ev(3, "b", "add", "20m"),
			ev(4, "b", "add", "0"), // older than the pending start, still restarts
			ev(5, "x", "view", "30m"),
		},
		fired: []oracle.FiredTimer{fired("b", "0", 4, 5)},
	}, {
		name: "a late start fires at once",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "x", "view", "1h"),
			ev(2, "a", "add", "10m"),
			ev(3, "a", "add", "45m"), // deadline 1h15m: pending
		},
		fired:   []oracle.FiredTimer{fired("a", "10m", 2, 2)},
		pending: []oracle.Timer{timer("a", "45m", 3)},
	}, {
		name: "timers due at one step fire by deadline, then key",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "b", "add", "0"),
			ev(2, "a", "add", "0"),
			ev(3, "c", "add", "-1m"),
			ev(4, "x", "view", "1h"),
		},
		fired: []oracle.FiredTimer{fired("c", "-1m", 3, 4), fired("a", "0", 2, 4), fired("b", "0", 1, 4)},
	}, {
		name: "filtered events fire timers but start none; invalid ones do nothing",
		spec: abandoned,
		events: []oracle.Event{
			filtered(ev(1, "a", "add", "0")),
			ev(2, "b", "add", "0"),
			filtered(ev(3, "x", "view", "30m")),
			invalid(ev(4, "c", "add", "2h")),
			ev(5, "c", "add", "1h"),
			invalid(ev(6, "x", "view", "3h")),
		},
		fired:   []oracle.FiredTimer{fired("b", "0", 2, 3)},
		pending: []oracle.Timer{timer("c", "1h", 5)},
	}, {
		name: "handler once: a hydrated event's fires do not emit",
		spec: once,
		events: []oracle.Event{
			ev(1, "a", "add", "0"),
			hydrated(ev(2, "b", "add", "30m")),
			ev(3, "x", "view", "1h"),
		},
		fired: []oracle.FiredTimer{{Timer: timer("a", "0", 1), By: 2}, fired("b", "30m", 2, 3)},
	}, {
		name: "pending timers in key order",
		spec: abandoned,
		events: []oracle.Event{
			ev(1, "b", "add", "0"),
			ev(2, "a", "add", "1m"),
			ev(3, "c", "add", "2m"),
			ev(4, "c", "order", "3m"),
		},
		pending: []oracle.Timer{timer("a", "1m", 2), timer("b", "0", 1)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := oracle.Timeouts(tt.events, tt.spec)
			if !reflect.DeepEqual(got.Fired, tt.fired) {
				t.Errorf("fired:\n got %+v\nwant %+v", got.Fired, tt.fired)
			}
			if !reflect.DeepEqual(got.Pending, tt.pending) {
				t.Errorf("pending:\n got %+v\nwant %+v", got.Pending, tt.pending)
			}
		})
	}
}

func TestTimeoutSpecPanics(t *testing.T) {
	for name, spec := range map[string]oracle.TimeoutSpec{
		"no after": {Start: []string{"add"}},
		"no start": {After: time.Minute},
		"both":     {Start: []string{"add"}, Cancel: []string{"add"}, After: time.Minute},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			oracle.Timeouts(nil, spec)
		}()
	}
}
