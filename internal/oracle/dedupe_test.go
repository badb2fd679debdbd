package oracle_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
)

// id is an event with id (key a, type t) at `when`.
func id(seq uint64, ident, when string) oracle.Event { return ev(seq, "a", "t", when, "id", ident) }

func TestDedupe(t *testing.T) {
	spec := oracle.DedupeSpec{ID: func(e oracle.Event) string { return e.Fields["id"].(string) }, Within: time.Hour}
	tests := []struct {
		name   string
		events []oracle.Event
		kept   []bool
	}{{
		name: "within is measured from the first sighting, its end excluded",
		events: []oracle.Event{
			id(1, "x", "0"),
			id(2, "x", "59m59.999s"),
			id(3, "x", "1h"), // a new first sighting
			id(4, "x", "1h30m"),
			id(5, "x", "2h"),
		},
		kept: []bool{true, false, true, false, true},
	}, {
		name: "a dropped repeat does not refresh the sighting",
		events: []oracle.Event{
			id(1, "x", "0"),
			id(2, "x", "50m"),
			id(3, "x", "1h"),
		},
		kept: []bool{true, false, true},
	}, {
		name: "out of order: remembered until the watermark reaches first + within",
		events: []oracle.Event{
			id(1, "x", "10h"),
			id(2, "y", "10h30m"),
			id(3, "x", "8h"), // before the first sighting by more than within: remembered
			id(4, "z", "11h"),
			id(5, "x", "10h59m"),    // the watermark reached 10h + 1h: forgotten, a new sighting
			id(6, "x", "10h59m30s"), // remembered until the watermark reaches 11h59m
		},
		kept: []bool{true, true, false, true, true, false},
	}, {
		name: "a sighting already forgotten when it is made",
		events: []oracle.Event{
			id(1, "y", "5h"),
			id(2, "x", "1h"),
			id(3, "x", "1h"),
		},
		kept: []bool{true, true, true},
	}, {
		name: "ids are per pipeline, not per key",
		events: []oracle.Event{
			ev(1, "a", "t", "0", "id", "x"),
			ev(2, "b", "t", "1m", "id", "x"),
		},
		kept: []bool{true, false},
	}, {
		name: "events that do not reach the operator are not sightings but move the watermark",
		events: []oracle.Event{
			filtered(id(1, "x", "0")),
			id(2, "x", "10m"),
			invalid(id(3, "w", "2h")),
			id(4, "x", "30m"),
			filtered(id(5, "v", "1h10m")),
			id(6, "x", "1h5m"), // the watermark is 1h10m = 10m + 1h: forgotten
		},
		kept: []bool{false, true, false, false, false, true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oracle.Dedupe(tt.events, spec); !reflect.DeepEqual(got, tt.kept) {
				t.Errorf("kept %v, want %v", got, tt.kept)
			}
		})
	}
}

func TestDedupeSpecPanics(t *testing.T) {
	for name, spec := range map[string]oracle.DedupeSpec{
		"no id":     {Within: time.Hour},
		"no within": {ID: func(oracle.Event) string { return "" }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			oracle.Dedupe(nil, spec)
		}()
	}
}

func TestPassed(t *testing.T) {
	spec := oracle.DedupeSpec{ID: func(e oracle.Event) string { return e.Fields["id"].(string) }, Within: time.Hour}
	events := []oracle.Event{
		ev(1, "a", "add", "0", "id", "x"),
		ev(2, "a", "add", "10m", "id", "x"), // a duplicate: does not start, moves the watermark
		ev(3, "b", "add", "40m", "id", "y"),
	}
	got := oracle.Timeouts(oracle.Passed(events, oracle.Dedupe(events, spec)), oracle.TimeoutSpec{Start: []string{"add"}, After: 30 * time.Minute})
	if want := []oracle.FiredTimer{fired("a", "0", 1, 3)}; !reflect.DeepEqual(got.Fired, want) {
		t.Errorf("fired %+v, want %+v", got.Fired, want)
	}
	if !events[1].Reaches {
		t.Error("Passed changed its input")
	}
}
