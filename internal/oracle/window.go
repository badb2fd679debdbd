package oracle

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WindowSpec is a window operator. Exactly one of Tumbling, Hopping and Session is set.
type WindowSpec struct {
	// Tumbling is the size of tumbling windows (`tumbling: 1m`).
	Tumbling time.Duration
	// Hopping is the size and advance of hopping windows (`hopping: {size, advance}`).
	Hopping Hopping
	// Session is the gap of session windows (`session: {gap}`).
	Session time.Duration
	// Lateness is how far behind the watermark a window still accepts events (default 0).
	Lateness time.Duration
	// Retention is how long, in event time, a closed window is kept after its end (0: the
	// default, 24h).
	Retention time.Duration
	// Aggregates are the fields of a window's value, in any order.
	Aggregates []Aggregate
	// Once models `emit: {handler: once}`: a window closed by a hydrated event's step emits
	// nothing ([ClosedWindow.Emit] is false).
	Once bool
}

// Hopping is the shape of hopping windows: windows of Size start at every multiple of Advance
// since the Unix epoch. 0 < Advance <= Size.
type Hopping struct {
	Size, Advance time.Duration
}

// DefaultRetention is the retention of closed windows when [WindowSpec.Retention] is 0.
const DefaultRetention = 24 * time.Hour

// Aggregate is one field of a window's value (`name: fn(EXPR)`).
type Aggregate struct {
	// Name is the field's name; not start, end or closed.
	Name string
	// Fn is count, sum, min, max, avg, last or distinct.
	Fn string
	// Value is EXPR: the value an event contributes (nil for count). For sum, min, max and
	// avg it must return a finite number (any Go integer or float type, or json.Number); for
	// last and distinct any value JSON can encode (nil is null). Otherwise the event is a
	// dead letter.
	Value func(Event) any
}

// WindowResult is what a window operator leaves after the events.
type WindowResult struct {
	// State maps each KV key of the projection to its value as JSON decodes it (numbers are
	// float64): the open windows and the closed windows still retained. It holds only the
	// documented fields (start, end, closed and one per aggregate). Keys are as the model
	// makes them, before the pipeline's `_b64.` encoding of keys KV does not allow.
	State map[string]map[string]any
	// Closed lists every window that closed, in closing order, with its final value.
	Closed []ClosedWindow
	// Dead lists the events the operator refused, in stream order.
	Dead []DeadLetter
	// Watermark is the watermark after the last event.
	Watermark time.Time
}

// ClosedWindow is a window as it closed: the source of its derived event.
type ClosedWindow struct {
	// KVKey is the window's key in the projection: <key>.<start in Unix milliseconds>.
	KVKey string
	// Key is the entity key.
	Key string
	// Start and End bound the window: [Start, End). A session ends at its last event time
	// plus the gap.
	Start, End time.Time
	// Value is the window's final value (closed is true).
	Value map[string]any
	// By is the sequence of the event whose step closed the window.
	By uint64
	// Emit is false when [WindowSpec.Once] is set and that event was hydrated.
	Emit bool
}

// window is one window of one key, open or closed.
type window struct {
	key        string
	start, end time.Time
	last       time.Time // sessions: the greatest event time applied
	members    []member  // the events applied, in stream order
	closed     bool
}

// member is one event applied to a window, with what it contributes to each aggregate
// (nil for count).
type member struct {
	seq  uint64
	vals []any
}

// Windows runs a window operator over events (see the package comment for the steps).
//
// Fixed windows (tumbling, which is hopping with advance = size, and hopping): a window is
// [start, start+size), starts at a multiple of advance since the Unix epoch, and an event
// at t belongs to every window with start <= t < start+size. Sessions: an event at t joins
// every open session s of its key with s.first - gap <= t <= s.last + gap (both bounds
// inclusive, as in Kafka Streams and Flink, where sessions that touch merge), and the
// sessions it joins merge into one: first is the earliest first time, last the latest event
// time, and the value is computed from all their events. A session is the window
// [first, last+gap), keyed by its first event time: when a session's first time changes
// (an earlier event, a merge) its KV key changes, and the keys of the sessions merged into it
// are deleted. Only open sessions are joined: a non-late event near a closed session starts a
// new session, which may overlap the closed one.
//
// Closing: with horizon = watermark - lateness, a window closes at the step where its end
// <= horizon. Windows that close at one step close in order of end, then key, then start.
// A window never opens already closed (that event would be late), so windows close only
// when the watermark moves, and closing order is also order of end. A closed window stays
// in the state with closed: true until the step where its end + retention <= watermark, and
// then it is deleted.
//
// Late events: an event is late when none of its windows is open, that is, every window it
// belongs to has end <= horizon, whether or not the window ever existed. For hopping windows
// this is decided per window: an event counts in those of its windows that are still open
// and is late only when all of them are closed. For sessions, an event is late when it
// joins no open session and t + gap <= horizon. A late event is a dead letter whose reason
// starts with "late" and is counted nowhere. An
// event older than the watermark whose window is still open is counted normally. Lateness
// is checked before the aggregate values; an event an aggregate refuses (see
// [Aggregate.Value]) is a dead letter and is applied to none of its windows.
//
// Values: start and end are [Timestamp] strings; closed is a bool; count is the number of
// events applied; sum, min, max and avg are over the numbers of those events; last is the
// value of the event applied last in stream order (not the one with the latest event
// time); distinct is the number of distinct values, where two values are the same when
// their JSON encodings are (so 1 and 1.0 are one value, "1" another, null one more). When
// sessions merge, the event that bridges them is the one applied last. Sums are added in
// stream order; an implementation that adds them in another order (merging two sessions'
// sums) may differ in the last bits, so compare numbers with a tolerance.
func Windows(events []Event, spec WindowSpec) WindowResult {
	size, advance, gap := spec.shape()
	retention := spec.Retention
	if retention == 0 {
		retention = DefaultRetention
	}
	res := WindowResult{State: map[string]map[string]any{}}
	set := newWindowSet()
	var c clock
	for _, e := range events {
		if !e.Valid {
			continue
		}
		wm := c.step(e)
		horizon := wm.Add(-spec.Lateness)
		for _, w := range set.close(horizon) {
			res.Closed = append(res.Closed, ClosedWindow{
				KVKey: w.kvKey(), Key: w.key, Start: w.start, End: w.end,
				Value: w.value(spec.Aggregates), By: e.Seq, Emit: !(spec.Once && e.Hydrated),
			})
		}
		set.expire(wm, retention)

		if !e.Reaches {
			continue
		}
		var reason string
		if gap > 0 {
			reason = set.applySession(e, gap, horizon, spec.Aggregates)
		} else {
			reason = set.applyFixed(e, size, advance, horizon, spec.Aggregates)
		}
		if reason != "" {
			res.Dead = append(res.Dead, DeadLetter{Seq: e.Seq, Reason: reason})
		}
	}
	for k, w := range set.kept {
		res.State[k] = w.value(spec.Aggregates)
	}
	res.Watermark = c.w
	return res
}

// windowSet holds the windows of a window operator.
type windowSet struct {
	kept   map[string]*window            // every window still kept, by KV key
	open   map[string]map[string]*window // the open ones among them, by key, then KV key
	closed []*window                     // the closed ones among them, in closing order
	// soonest is at or before the end of every open window ([never] when none is open): no
	// window closes before the horizon reaches it, so that close need not look before.
	soonest time.Time
}

// never is later than any event time.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

func newWindowSet() *windowSet {
	return &windowSet{kept: map[string]*window{}, open: map[string]map[string]*window{}, soonest: never}
}

// add puts a new open window in the set. It panics when its KV key is taken, which the rules
// of [Windows] never allow.
func (s *windowSet) add(w *window) {
	k := w.kvKey()
	if s.kept[k] != nil {
		panic("oracle: two windows with the KV key " + k)
	}
	s.kept[k] = w
	if s.open[w.key] == nil {
		s.open[w.key] = map[string]*window{}
	}
	s.open[w.key][k] = w
	if w.end.Before(s.soonest) {
		s.soonest = w.end
	}
}

// remove takes an open window out of the set (a session merged into another).
func (s *windowSet) remove(w *window) {
	delete(s.kept, w.kvKey())
	delete(s.open[w.key], w.kvKey())
}

// close closes every open window whose end <= horizon and returns them in closing order: by
// end, then key, then start.
func (s *windowSet) close(horizon time.Time) []*window {
	if horizon.Before(s.soonest) {
		return nil
	}
	var closing []*window
	s.soonest = never
	for _, byKey := range s.open {
		for _, w := range byKey {
			if !w.end.After(horizon) {
				closing = append(closing, w)
			} else if w.end.Before(s.soonest) {
				s.soonest = w.end
			}
		}
	}
	slices.SortFunc(closing, func(a, b *window) int {
		if c := a.end.Compare(b.end); c != 0 {
			return c
		}
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return a.start.Compare(b.start)
	})
	for _, w := range closing {
		w.closed = true
		delete(s.open[w.key], w.kvKey())
		s.closed = append(s.closed, w)
	}
	return closing
}

// expire deletes the closed windows whose end + retention <= wm. Closing order is order of
// end (see [Windows]), so they are at the front of s.closed.
func (s *windowSet) expire(wm time.Time, retention time.Duration) {
	for len(s.closed) > 0 && !s.closed[0].end.Add(retention).After(wm) {
		delete(s.kept, s.closed[0].kvKey())
		s.closed = s.closed[1:]
	}
}

// applyFixed applies e to its open tumbling or hopping windows and returns why it cannot
// ("" when it is applied).
func (s *windowSet) applyFixed(e Event, size, advance time.Duration, horizon time.Time, aggs []Aggregate) string {
	var live []time.Time
	for _, start := range fixedStarts(e.Time, size, advance) {
		if start.Add(size).After(horizon) {
			live = append(live, start)
		}
	}
	if len(live) == 0 {
		return fmt.Sprintf("late: every window of %s is closed (watermark - lateness %s)", Timestamp(e.Time), Timestamp(horizon))
	}
	vals, err := evaluate(aggs, e)
	if err != nil {
		return err.Error()
	}
	for _, start := range live {
		w := s.open[e.Key][kvKey(e.Key, start)]
		if w == nil {
			w = &window{key: e.Key, start: start, end: start.Add(size)}
			s.add(w)
		}
		w.members = append(w.members, member{seq: e.Seq, vals: vals})
	}
	return ""
}

// fixedStarts returns, in ascending order, the start of every window of size starting at a
// multiple of advance since the Unix epoch that holds t: start <= t < start+size.
func fixedStarts(t time.Time, size, advance time.Duration) []time.Time {
	ns, a := t.UnixNano(), int64(advance)
	k := ns / a // floor division, also before 1970
	if ns%a != 0 && ns < 0 {
		k--
	}
	var starts []time.Time
	for ; k*a+int64(size) > ns; k-- {
		starts = append(starts, time.Unix(0, k*a).UTC())
	}
	slices.Reverse(starts)
	return starts
}

// applySession applies e to the sessions of its key, merging those it joins, and returns
// why it cannot ("" when it is applied).
func (s *windowSet) applySession(e Event, gap time.Duration, horizon time.Time, aggs []Aggregate) string {
	t := e.Time
	merged := &window{key: e.Key, start: t, last: t}
	var joined []*window
	for _, o := range s.open[e.Key] {
		if !t.Before(o.start.Add(-gap)) && !t.After(o.last.Add(gap)) {
			joined = append(joined, o)
			if o.start.Before(merged.start) {
				merged.start = o.start
			}
			if o.last.After(merged.last) {
				merged.last = o.last
			}
		}
	}
	merged.end = merged.last.Add(gap)
	if !merged.end.After(horizon) { // joined is empty: open sessions end after horizon
		return fmt.Sprintf("late: a session at %s would end at %s, not after watermark - lateness %s", Timestamp(t), Timestamp(merged.end), Timestamp(horizon))
	}
	vals, err := evaluate(aggs, e)
	if err != nil {
		return err.Error()
	}
	for _, o := range joined {
		s.remove(o)
		merged.members = append(merged.members, o.members...)
	}
	merged.members = append(merged.members, member{seq: e.Seq, vals: vals})
	slices.SortFunc(merged.members, func(a, b member) int {
		if a.seq < b.seq {
			return -1
		}
		return 1
	})
	s.add(merged)
	return ""
}

// kvKey is the KV key of key's window starting at start.
func kvKey(key string, start time.Time) string {
	return key + "." + strconv.FormatInt(start.UnixMilli(), 10)
}

func (w *window) kvKey() string { return kvKey(w.key, w.start) }

// value is w's value as JSON decodes it.
func (w *window) value(aggs []Aggregate) map[string]any {
	v := map[string]any{"start": Timestamp(w.start), "end": Timestamp(w.end), "closed": w.closed}
	n := len(w.members)
	for i, a := range aggs {
		num := func(m member) float64 { return m.vals[i].(float64) }
		switch a.Fn {
		case "count":
			v[a.Name] = float64(n)
		case "sum", "avg":
			sum := 0.0
			for _, m := range w.members {
				sum += num(m)
			}
			if a.Fn == "avg" {
				sum /= float64(n)
			}
			v[a.Name] = sum
		case "min", "max":
			x := num(w.members[0])
			for _, m := range w.members[1:] {
				if a.Fn == "min" {
					x = min(x, num(m))
				} else {
					x = max(x, num(m))
				}
			}
			v[a.Name] = x
		case "last":
			v[a.Name] = w.members[n-1].vals[i]
		case "distinct":
			seen := map[string]bool{}
			for _, m := range w.members {
				b, _ := json.Marshal(m.vals[i]) // it was decoded from JSON: it encodes
				seen[string(b)] = true
			}
			v[a.Name] = float64(len(seen))
		}
	}
	return v
}

// evaluate returns what e contributes to each aggregate, or the error that makes e a dead
// letter.
func evaluate(aggs []Aggregate, e Event) ([]any, error) {
	vals := make([]any, len(aggs))
	for i, a := range aggs {
		switch a.Fn {
		case "count":
		case "sum", "min", "max", "avg":
			x := a.Value(e)
			f, ok := number(x)
			if !ok {
				return nil, fmt.Errorf("aggregate %s: %s(%#v): not a finite number", a.Name, a.Fn, x)
			}
			vals[i] = f
		case "last", "distinct":
			x := a.Value(e)
			b, err := json.Marshal(x)
			if err == nil {
				err = json.Unmarshal(b, &vals[i])
			}
			if err != nil {
				return nil, fmt.Errorf("aggregate %s: %s(%#v): %v", a.Name, a.Fn, x, err)
			}
		}
	}
	return vals, nil
}

// number converts x to a finite float64.
func number(x any) (float64, bool) {
	var f float64
	switch v := x.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case int:
		f = float64(v)
	case int8:
		f = float64(v)
	case int16:
		f = float64(v)
	case int32:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint:
		f = float64(v)
	case uint8:
		f = float64(v)
	case uint16:
		f = float64(v)
	case uint32:
		f = float64(v)
	case uint64:
		f = float64(v)
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// shape checks spec and returns the fixed windows' size and advance, or the session gap. It
// panics on a spec the operator's configuration would refuse.
func (spec WindowSpec) shape() (size, advance, gap time.Duration) {
	set := 0
	if spec.Tumbling != 0 {
		set++
		size, advance = spec.Tumbling, spec.Tumbling
	}
	if spec.Hopping != (Hopping{}) {
		set++
		size, advance = spec.Hopping.Size, spec.Hopping.Advance
	}
	if spec.Session != 0 {
		set++
		gap = spec.Session
	}
	bad := func(format string, args ...any) { panic("oracle: window spec: " + fmt.Sprintf(format, args...)) }
	switch {
	case set != 1:
		bad("set exactly one of Tumbling, Hopping and Session")
	case gap < 0, gap == 0 && (advance <= 0 || advance > size):
		bad("need 0 < advance <= size, or gap > 0")
	case spec.Lateness < 0 || spec.Retention < 0:
		bad("negative lateness or retention")
	}
	names := map[string]bool{"start": true, "end": true, "closed": true}
	for _, a := range spec.Aggregates {
		if names[a.Name] || a.Name == "" {
			bad("aggregate name %q empty, reserved or repeated", a.Name)
		}
		names[a.Name] = true
		switch a.Fn {
		case "count":
		case "sum", "min", "max", "avg", "last", "distinct":
			if a.Value == nil {
				bad("aggregate %s: %s needs a Value", a.Name, a.Fn)
			}
		default:
			bad("aggregate %s: unknown function %q", a.Name, a.Fn)
		}
	}
	return size, advance, gap
}
