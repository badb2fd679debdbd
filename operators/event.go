package operators

import (
	"time"
)

// Mode says why an event is being processed (DESIGN.md section 4).
type Mode uint8

const (
	// Live is an event processed for the first time, or read again after a crash whose
	// effects were never committed.
	Live Mode = iota
	// Hydrated is an event processed again on purpose (rebuild, replay from an earlier
	// position): it rebuilds state but fires no `once` emit.
	Hydrated
)

// Event is one source event as it moves through a pipeline.
type Event struct {
	// Seq is the source stream sequence.
	Seq uint64
	// Subject is the subject the event was published on.
	Subject string
	// Header holds the message headers (nil when there are none).
	Header map[string][]string
	// Time is the event time: the `time:` expression's value, or the message time.
	Time time.Time
	// Data is the raw payload.
	Data []byte
	// Fields is the decoded event, the expression variable `event`.
	Fields map[string]any
	// Type is the event type (the `type:` expression's value).
	Type string
	// Key is the entity key (the `key:` expression's value, changed by the key operator).
	Key string
	// Mode is Live or Hydrated.
	Mode Mode
	// KeyErr, TypeErr and TimeErr hold the failures of the pipeline's key, type and time
	// expressions. They are raised by [Event.Require] in the operators that need them (fold,
	// emit), so that an event a filter drops first is not a dead letter for lacking a field.
	KeyErr, TypeErr, TimeErr error

	// Outdated is set by a fold that found the event older than its key's last event time.
	Outdated bool
	// Duplicate is set by a fold that found the event already applied to its key (it was
	// committed before a crash and is read again): its effects are already committed.
	Duplicate bool
	// State is the state of the key after the last fold (the expression variable `state`).
	State map[string]any
	// Writes are the state changes staged by folds.
	Writes []Write
	// Outputs are the derived events staged by emits.
	Outputs []Output

	flatHeaders map[string]string // Header as the expression variable `headers`, made once
	undo        []undo            // in-place state changes, for Rollback
}

// undo restores one field of a state a fold changed in place.
type undo struct {
	m     map[string]any
	field string
	old   any
	had   bool
}

// Reset clears e for reuse, keeping its slices' capacity.
func (e *Event) Reset() {
	clear(e.undo)
	w, o, u := e.Writes[:0], e.Outputs[:0], e.undo[:0]
	*e = Event{Writes: w, Outputs: o, undo: u}
}

// Rollback undoes the changes folds made in place to states the Store owns. It must be
// called when the event's staged effects are dropped (an operator failed or dropped the
// event), before any other event runs.
func (e *Event) Rollback() {
	for i := len(e.undo) - 1; i >= 0; i-- {
		u := e.undo[i]
		if u.had {
			u.m[u.field] = u.old
		} else {
			delete(u.m, u.field)
		}
	}
	clear(e.undo)
	e.undo = e.undo[:0]
}

// Write is a staged change of one key's state in one projection.
type Write struct {
	Projection string
	Key        string
	// State is the new state; the write replaces the previous one.
	State map[string]any
	// Seq is the source sequence that produced the state.
	Seq uint64
	// Time is the newest event time applied to the key.
	Time time.Time
	// Entry is the entry the state was read from (nil for a state staged by an earlier
	// fold of the same event).
	Entry *Entry
	// Roomy is set when the state's estimated JSON size is known to be far below the
	// Store's value limit: the fold replaced, in place, only numbers, bools and nulls of a
	// roomy state by values of the same kinds, which leaves the estimate unchanged. The
	// Store measures the other writes.
	Roomy bool
}

// Output is a staged derived event.
type Output struct {
	Subject string
	// Type is the CloudEvents type (ce-type).
	Type string
	// Data is the JSON body.
	Data []byte
}

// Require returns the error of the type, key or time expression, if any.
func (e *Event) Require() error {
	switch {
	case e.TypeErr != nil:
		return e.TypeErr
	case e.KeyErr != nil:
		return e.KeyErr
	default:
		return e.TimeErr
	}
}

// staged returns the state staged for projection/key by an earlier fold of this event.
func (e *Event) staged(projection, key string) (*Write, bool) {
	for i := len(e.Writes) - 1; i >= 0; i-- {
		if e.Writes[i].Projection == projection && e.Writes[i].Key == key {
			return &e.Writes[i], true
		}
	}
	return nil, false
}
