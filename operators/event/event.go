package event

import (
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Mode says why an event is being processed: live, or hydrated (replayed on purpose).
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
	// Fields is the decoded event, the expression variable `event`. It is nil while the
	// event's fields are held in slots (see [Event.SetSlots]); [Event.FieldMap] returns it in
	// either case.
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
	// committed before a crash and is read again): its effects are already committed. An
	// operator that drops the event as a repeat (dedupe) sets it too: the event then counts
	// as a duplicate, not as filtered.
	Duplicate bool
	// State is the state of the key after the last fold (the expression variable `state`).
	State *Record
	// Writes are the state changes staged by folds.
	Writes []Write
	// Outputs are the derived events staged by emits.
	Outputs []Output
	// Vars are the expression variables that operators set for the ones after them (a
	// lookup's `as`): see expr.Env.Vars. Reset empties it.
	Vars map[string]any

	headerMap map[string]any // Header as the expression variable `headers`, made once
	undo      []undo         // in-place state changes, for Rollback

	// slots hold the decoded fields in layout's order while Fields is nil; spare is the map
	// FieldMap fills from them, reused from event to event.
	slots  []Slot
	layout *Layout
	spare  map[string]any
}

// Layout is the order of the event fields that a pipeline's expressions read by name. A
// decoder that knows it hands the event its fields as slots in this order ([Event.SetSlots]),
// and expressions bound to it (expr.BindLayout) read them by index, without a map.
type Layout struct {
	names []string
	index map[string]int
}

// NewLayout returns the layout of the given field names, in their order.
func NewLayout(names []string) *Layout {
	l := &Layout{names: names, index: make(map[string]int, len(names))}
	for i, n := range names {
		l.index[n] = i
	}
	return l
}

// Names returns the field names in slot order.
func (l *Layout) Names() []string { return l.names }

// Slot returns the slot of the field name.
func (l *Layout) Slot(name string) (int, bool) {
	if len(l.names) <= 8 { // faster than hashing the name
		for i, n := range l.names {
			if n == name {
				return i, true
			}
		}
		return 0, false
	}
	i, ok := l.index[name]
	return i, ok
}

// SetSlots gives the event its fields as vals, in l's order (the zero Slot, which reads as
// nil, for a field the payload lacks). The event reads vals until it is reset, and the caller
// keeps them unchanged until then. Only a pipeline whose expressions read the event by field
// name (never as a whole) may use slots: nothing can then tell a missing field from a null one.
func (e *Event) SetSlots(l *Layout, vals []Slot) {
	e.Fields, e.layout, e.slots = nil, l, vals
}

// Slot is one decoded event field. A plain string or number may be left as its JSON text
// until an expression reads it: most events read few of the fields that their pipeline's
// expressions name (a handler per type reads its own).
type Slot struct {
	v    any
	raw  []byte
	num  float64
	lazy slotState
}

// slotState says where a slot's value is.
type slotState uint8

const (
	converted slotState = iota // v is the value
	rawText                    // raw is a string's text (no escapes)
	rawNumber                  // raw is a number's text
	unboxed                    // num is the number
)

// ValueSlot returns a slot holding v.
func ValueSlot(v any) Slot { return Slot{v: v} }

// TextSlot returns a slot for the JSON string whose text between the quotes is raw, which
// must hold no escape. raw must stay unchanged while the slot is in use.
func TextSlot(raw []byte) Slot { return Slot{raw: raw, lazy: rawText} }

// NumberSlot returns a slot for the JSON number raw, which must convert to a float64 without
// error (within the float64 range). raw must stay unchanged while the slot is in use.
func NumberSlot(raw []byte) Slot { return Slot{raw: raw, lazy: rawNumber} }

// value returns the slot's value, converting it on the first read.
func (s *Slot) value() any {
	switch s.lazy {
	case converted:
		return s.v
	case rawText:
		s.v = string(s.raw)
	case rawNumber:
		s.v, _ = strconv.ParseFloat(unsafe.String(unsafe.SliceData(s.raw), len(s.raw)), 64)
	case unboxed:
		s.v = s.num
	}
	s.raw, s.lazy = nil, converted
	return s.v
}

// number returns the slot's number without boxing it; false when it holds no number.
func (s *Slot) number() (float64, bool) {
	switch s.lazy {
	case rawNumber:
		s.num, _ = strconv.ParseFloat(unsafe.String(unsafe.SliceData(s.raw), len(s.raw)), 64)
		s.raw, s.lazy = nil, unboxed
		return s.num, true
	case unboxed:
		return s.num, true
	case converted:
		f, ok := s.v.(float64)
		return f, ok
	}
	return 0, false
}

// FieldMap returns the event as the `event` map, building it from the slots when the event
// has them; from then on the map is the event's fields.
func (e *Event) FieldMap() map[string]any {
	if e.slots == nil {
		return e.Fields
	}
	if e.spare == nil {
		e.spare = make(map[string]any, len(e.slots))
	} else {
		clear(e.spare)
	}
	for i := range e.slots {
		if v := e.slots[i].value(); v != nil {
			e.spare[e.layout.names[i]] = v
		}
	}
	e.Fields, e.slots = e.spare, nil
	return e.Fields
}

// Field reads the field name, at slot in the event's layout (-1 for none, or when the
// caller does not know it).
func (e *Event) Field(slot int, name string) any {
	if e.slots == nil {
		return e.Fields[name]
	}
	if slot < 0 {
		var ok bool
		if slot, ok = e.layout.Slot(name); !ok {
			return nil
		}
	}
	return e.slots[slot].value()
}

// Number reads the field name as [Event.Field] does, without boxing a number; false when
// the field holds no number.
func (e *Event) Number(slot int, name string) (float64, bool) {
	if e.slots == nil {
		f, ok := e.Fields[name].(float64)
		return f, ok
	}
	if slot < 0 {
		var ok bool
		if slot, ok = e.layout.Slot(name); !ok {
			return 0, false
		}
	}
	return e.slots[slot].number()
}

// undo restores one field of a state a fold changed in place.
type undo struct {
	r    *Record
	slot int
	old  Value
}

// SetVar sets the expression variable name (see [Event.Vars]).
func (e *Event) SetVar(name string, v any) {
	if e.Vars == nil {
		e.Vars = map[string]any{}
	}
	e.Vars[name] = v
}

// Reset clears e for reuse, keeping its slices' capacity.
func (e *Event) Reset() {
	clear(e.undo)
	w, o, u := e.Writes[:0], e.Outputs[:0], e.undo[:0]
	clear(e.Vars)
	*e = Event{Writes: w, Outputs: o, undo: u, spare: e.spare, Vars: e.Vars}
}

// SetInPlace sets the field at slot of r, a record the Store owns (see [Entry.Owned]), to v,
// recording how to undo it: [Event.Rollback] restores the old value.
func (e *Event) SetInPlace(r *Record, slot int, v Value) {
	e.undo = append(e.undo, undo{r: r, slot: slot, old: r.vals[slot]})
	r.vals[slot] = v
}

// Rollback undoes the changes folds made in place to states the Store owns. It must be
// called when the event's staged effects are dropped (an operator failed or dropped the
// event), before any other event runs.
func (e *Event) Rollback() {
	for i := len(e.undo) - 1; i >= 0; i-- {
		u := &e.undo[i]
		u.r.vals[u.slot] = u.old
	}
	clear(e.undo)
	e.undo = e.undo[:0]
}

// Write is a staged change of one key's state in one projection.
type Write struct {
	Projection string
	Key        string
	// State is the new state; the write replaces the previous one.
	State *Record
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
	// Delete removes the key (State is ignored): it has no state from then on.
	Delete bool
	// TTL, when set, makes the server remove the key that long after the write, unless it
	// is written again (the projection's bucket must allow per-key TTLs: the operator
	// says so, see operators.TTLProjector).
	TTL time.Duration
}

// Output is a staged derived event.
type Output struct {
	Subject string
	// Type is the CloudEvents type (ce-type).
	Type string
	// Key is the entity key the derived event is about (ce-subject); "" for the key of the
	// event it is staged on. Operators acting on time (which stage on a tick) set it.
	Key string
	// Data is the JSON body.
	Data []byte
	// Err, when set, says that the derived event could not be made (its expression failed,
	// its subject is not one to publish on): the pipeline publishes a dead letter in its
	// place, with Err as its reason, Data (what the operator had, say a window's state) as its
	// payload and Subject, if known, as its Jetfold-Emit-Subject. Only operators acting on
	// time use it, on a tick, where no event could be dead-lettered instead; on an event, an
	// operator returns the error.
	Err error
	// ID, when set, is the derived event's own deterministic id (the pipeline prefixes it
	// with its name): for events fired by time, whose source event may differ between runs.
	// It must not start with a digit (ids made of a source sequence do). Otherwise the id is
	// made of the source sequence and the output's index.
	ID string
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

// Staged returns the write staged for projection/key by an earlier operator of this event.
func (e *Event) Staged(projection, key string) (*Write, bool) {
	for i := len(e.Writes) - 1; i >= 0; i-- {
		if e.Writes[i].Projection == projection && e.Writes[i].Key == key {
			return &e.Writes[i], true
		}
	}
	return nil, false
}

// HeaderMap returns the headers as the expression variable `headers`: each header's first
// value under its name as sent and, so that `headers["ce-type"]` finds "Ce-Type" too, under
// its lower-case name. It is made once per event; nil when the event has no headers.
func (e *Event) HeaderMap() map[string]any {
	if e.Header == nil {
		return nil
	}
	if e.headerMap == nil {
		e.headerMap = make(map[string]any, 2*len(e.Header))
		for k, v := range e.Header {
			if len(v) > 0 {
				e.headerMap[k] = v[0]
				if lk := strings.ToLower(k); lk != k {
					if _, ok := e.headerMap[lk]; !ok {
						e.headerMap[lk] = v[0]
					}
				}
			}
		}
	}
	return e.headerMap
}

// Entry is the state of one key as a Store of the operators package sees it.
type Entry struct {
	State *Record
	// Seq is the last source sequence applied to the key.
	Seq uint64
	// Time is the newest event time applied to the key.
	Time time.Time
	// Handle is the Store's own reference to the entry; a fold passes it back in
	// [Write.Entry] so that applying the write needs no second lookup.
	Handle any
	// Owned tells that State is the entry's own record, which nothing else references (no
	// commit in flight holds it): a fold may change it in place, recording how to undo it
	// on the event (see [Event.SetInPlace]). The Store sets it.
	Owned bool
	// Roomy tells that the estimated JSON size of State is far below the Store's value
	// limit (see [Write.Roomy]). The Store sets it.
	Roomy bool
}
