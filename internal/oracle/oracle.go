package oracle

import (
	"fmt"
	"slices"
	"time"
)

// Event is one source event as an operator sees it.
type Event struct {
	// Seq is the source stream sequence. It increases along the slice given to a model.
	Seq uint64
	// Key is the entity key (the pipeline's key expression, possibly changed by a key
	// operator). The models do not check it: an event with a key no projection accepts
	// should not be given with Reaches set.
	Key string
	// Type is the event type (the pipeline's type expression).
	Type string
	// Time is the event time.
	Time time.Time
	// Fields is the decoded event (the expression variable `event`), read by the caller's
	// functions ([Aggregate.Value], [DedupeSpec.ID]), never by the models themselves.
	Fields map[string]any
	// Valid is false for an event that does not decode or has no valid time: it neither
	// moves the watermark nor reaches any operator.
	Valid bool
	// Reaches tells that a valid event reaches the operator modelled: it was not filtered,
	// dropped as a duplicate or dead-lettered by an operator before. A valid event that does
	// not reach the operator still moves the watermark. Ignored when Valid is false.
	Reaches bool
	// Hydrated marks an event processed again on purpose (rebuild, replay): what its step
	// closes or fires emits nothing for a `handler: once` emit.
	Hydrated bool
}

// DeadLetter is an event an operator refuses, with the reason of the refusal.
type DeadLetter struct {
	// Seq is the event's source sequence.
	Seq uint64
	// Reason says why. Reasons of late events start with "late".
	Reason string
}

// Timestamp formats t as the state values and timers show it: RFC 3339 in UTC, with a
// fraction of a second only when t has one (time.RFC3339Nano).
func Timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// clock is the watermark as the models step through the events.
type clock struct {
	w       time.Time
	started bool
	lastSeq uint64
}

// step moves the watermark to e's time if that is later, and returns the watermark. It
// panics when e's sequence does not increase, a mistake of the caller.
func (c *clock) step(e Event) time.Time {
	if c.started && e.Seq <= c.lastSeq {
		panic(fmt.Sprintf("oracle: event seq %d after seq %d: events must be in stream order", e.Seq, c.lastSeq))
	}
	if !c.started || e.Time.After(c.w) {
		c.w = e.Time
	}
	c.started, c.lastSeq = true, e.Seq
	return c.w
}

// Passed returns a copy of events in which an event reaches the next operator when kept[i]
// is true (kept as [Dedupe] returns it): the input of an operator after a dedupe. The
// events keep moving the watermark.
func Passed(events []Event, kept []bool) []Event {
	out := slices.Clone(events)
	for i := range out {
		out[i].Reaches = kept[i]
	}
	return out
}
