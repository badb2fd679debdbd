package oracle

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// TimeoutSpec is a timeout operator.
type TimeoutSpec struct {
	// Start lists the event types that start (or restart) the timer of their key.
	Start []string
	// Cancel lists the event types that cancel it. A type may not be in both lists.
	Cancel []string
	// After is the time from a start to its deadline; it is positive.
	After time.Duration
	// KeepFirst models `restart: false`: a start while a timer is pending changes nothing.
	// The default (`restart: true`) moves the timer to the new start.
	KeepFirst bool
	// Once models an emit with `handler: once`: a timer fired at a hydrated event's step
	// emits nothing ([FiredTimer.Emit] is false).
	Once bool
}

// Timer is the pending timer of one key.
type Timer struct {
	// Key is the entity key.
	Key string
	// Started is the time of the start event (timer.started, a [Timestamp]).
	Started time.Time
	// Deadline is Started + After (timer.deadline, a [Timestamp]).
	Deadline time.Time
	// Event is the sequence of the start event (timer.event).
	Event uint64
}

// FiredTimer is a timer that fired: the source of its derived event.
type FiredTimer struct {
	Timer
	// By is the sequence of the event at whose step the timer fired.
	By uint64
	// Emit is false when [TimeoutSpec.Once] is set and that event was hydrated.
	Emit bool
}

// TimeoutResult is what a timeout operator leaves after the events.
type TimeoutResult struct {
	// Fired lists the timers that fired, in firing order. Each fires once and is then
	// cleared.
	Fired []FiredTimer
	// Pending lists the timers still pending after the last event, in key order.
	Pending []Timer
	// Watermark is the watermark after the last event.
	Watermark time.Time
}

// Timeouts runs a timeout operator over events (see the package comment for the steps).
//
// Each key has at most one timer. At an event's step, after the watermark moved, every
// pending timer whose deadline <= watermark fires (no lateness applies), in order of
// deadline, then key. Then the event, if it reaches the operator, is applied: a cancel type
// clears its key's pending timer; a start type sets the timer to {Started: the event's
// time, Deadline: Started + After, Event: its sequence}, unless KeepFirst is set and a timer
// is pending, which then stays as it is.
//
// So a cancel whose time is at or after the deadline comes too late: its own step fired the
// timer first. Starts and cancels act in stream order whatever their event times: a cancel
// older than the pending timer's start still cancels it, and with restart a start older
// than the pending one still replaces it (its deadline may be earlier). A start whose
// deadline is already at or before the watermark when it is applied (a late start) fires
// at once, at its own step, after the timers that fired before the apply.
func Timeouts(events []Event, spec TimeoutSpec) TimeoutResult {
	spec.check()
	var res TimeoutResult
	timers := map[string]Timer{}
	var c clock
	for _, e := range events {
		if !e.Valid {
			continue
		}
		wm := c.step(e)
		fire := func(t Timer) {
			delete(timers, t.Key)
			res.Fired = append(res.Fired, FiredTimer{Timer: t, By: e.Seq, Emit: !(spec.Once && e.Hydrated)})
		}

		var due []Timer
		for _, t := range timers {
			if !t.Deadline.After(wm) {
				due = append(due, t)
			}
		}
		slices.SortFunc(due, func(a, b Timer) int {
			if c := a.Deadline.Compare(b.Deadline); c != 0 {
				return c
			}
			return strings.Compare(a.Key, b.Key)
		})
		for _, t := range due {
			fire(t)
		}

		if !e.Reaches {
			continue
		}
		if slices.Contains(spec.Cancel, e.Type) {
			delete(timers, e.Key)
		}
		if slices.Contains(spec.Start, e.Type) {
			if _, pending := timers[e.Key]; !pending || !spec.KeepFirst {
				timers[e.Key] = Timer{Key: e.Key, Started: e.Time, Deadline: e.Time.Add(spec.After), Event: e.Seq}
			}
			if t := timers[e.Key]; !t.Deadline.After(wm) {
				fire(t)
			}
		}
	}
	for _, t := range timers {
		res.Pending = append(res.Pending, t)
	}
	slices.SortFunc(res.Pending, func(a, b Timer) int { return strings.Compare(a.Key, b.Key) })
	res.Watermark = c.w
	return res
}

// check panics on a spec the operator's configuration would refuse.
func (spec TimeoutSpec) check() {
	if spec.After <= 0 || len(spec.Start) == 0 {
		panic(fmt.Sprintf("oracle: timeout spec: need start types and after > 0, got %v and %s", spec.Start, spec.After))
	}
	for _, t := range spec.Start {
		if slices.Contains(spec.Cancel, t) {
			panic("oracle: timeout spec: type " + t + " both starts and cancels")
		}
	}
}
