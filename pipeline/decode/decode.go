package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/valyala/fastjson"
)

// ErrDecode wraps every payload that does not decode.
var ErrDecode = errors.New("payload does not decode")

// Payload turns a payload into the `event` variable. json wants a JSON object; raw gives
// {"data": payload as text}; cloudevents takes the data of a structured-mode envelope, or the
// body of a binary-mode message (its attributes are in the ce-* headers), and fills header
// with the envelope's attributes as ce-* headers.
func Payload(kind string, data []byte, header map[string][]string) (map[string]any, map[string][]string, error) {
	switch kind {
	case "raw":
		return map[string]any{"data": string(data)}, header, nil
	case "cloudevents":
		if len(header["Ce-Specversion"]) > 0 || len(header["ce-specversion"]) > 0 {
			m, err := decodeJSON(data)
			return m, header, err
		}
		var env map[string]any
		if err := json.Unmarshal(data, &env); err != nil {
			return nil, header, fmt.Errorf("%w: %s", ErrDecode, jsonReason(data, err))
		}
		if _, ok := env["specversion"]; !ok {
			return nil, header, fmt.Errorf("%w: not a CloudEvent (no ce-specversion header, no specversion field)", ErrDecode)
		}
		h := make(map[string][]string, len(header)+len(env))
		for k, v := range header {
			h[k] = v
		}
		for k, v := range env {
			if s, ok := v.(string); ok && k != "data" {
				h["ce-"+k] = []string{s}
			}
		}
		d, ok := env["data"].(map[string]any)
		if !ok {
			return nil, h, fmt.Errorf("%w: CloudEvent data is not a JSON object", ErrDecode)
		}
		return d, h, nil
	default:
		m, err := decodeJSON(data)
		return m, header, err
	}
}

func decodeJSON(data []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDecode, jsonReason(data, err))
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrDecode)
	}
	return m, nil
}

// jsonReason says why encoding/json refused data as an event, in a user's terms rather than
// Go's ("json: cannot unmarshal string into Go value of type map[string]interface {}").
func jsonReason(data []byte, err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return "empty payload, want a JSON object"
	case errors.As(err, &te):
		return "want a JSON object, got " + map[string]string{"string": "a string", "number": "a number",
			"array": "an array", "bool": "a bool"}[te.Value]
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names the JSON kind of a decoded value (or a Go type for anything else).
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case bool:
		return "a bool"
	case float64, int, int64:
		return "a number"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", v)
}

// Time converts the value of a `time:` expression: an RFC3339 string (fractions allowed)
// or a number of Unix milliseconds.
func Time(v any) (time.Time, error) {
	switch t := v.(type) {
	case string:
		ts, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(t))
		if err != nil {
			return time.Time{}, fmt.Errorf("event time %q: want RFC3339: %w", t, err)
		}
		return ts, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return time.Time{}, fmt.Errorf("event time %v: not a number of milliseconds", t)
		}
		return time.UnixMilli(int64(t)), nil
	case int:
		return time.UnixMilli(int64(t)), nil
	case int64:
		return time.UnixMilli(t), nil
	case time.Time:
		return t, nil
	case nil:
		return time.Time{}, errors.New("event time is nil (missing field?)")
	default:
		return time.Time{}, fmt.Errorf("event time: got %s, want RFC3339 text or Unix milliseconds", jsonKind(v))
	}
}

// Decoder decodes payloads for one pipeline. For `decode: json` it validates the payload
// strictly while it walks its top-level members (see [members]), without building a tree,
// and converts only the fields that some expression reads, into the event's slots (see
// [event.Layout]); when an expression uses the event as a whole, every field, into a map.
// A malformed payload is a dead letter all the same. A decoder is used by one goroutine.
type Decoder struct {
	kind string
	// layout is the slot order of the fields to decode; nil: every field, into a map.
	layout *event.Layout
	// want tells, by slot, whether to convert the field (prefetch converts only those its
	// expressions read).
	want  []bool
	slots []event.Slot // the fields of the last event; reused
	// strs intern the text values of each slot, names the field names of map mode.
	strs  []interner
	names interner
	walk  members
	p     fastjson.Parser
	num   []byte // scratch for number text
	err   error  // the first conversion error of the payload being decoded
}

// New returns a decoder of kind. With a layout it converts the fields of the layout
// named in only (all of them when only is nil) into slots; without one, every field into a map.
func New(kind string, layout *event.Layout, only []string) *Decoder {
	d := &Decoder{kind: kind, layout: layout}
	if layout != nil {
		n := len(layout.Names())
		d.want, d.slots, d.strs = make([]bool, n), make([]event.Slot, n), make([]interner, n)
		for i, name := range layout.Names() {
			d.want[i] = only == nil || slices.Contains(only, name)
		}
	}
	return d
}

// Decode decodes data into ev's fields (slots or map) and sets ev.Header.
func (d *Decoder) Decode(ev *event.Event, data []byte, header map[string][]string) error {
	if d.kind != "json" && d.kind != "" {
		m, h, err := Payload(d.kind, data, header)
		ev.Fields, ev.Header = m, h
		return err
	}
	ev.Header = header
	d.err = nil
	var m map[string]any // map mode: every field
	if d.layout == nil {
		m = make(map[string]any)
	} else {
		clear(d.slots)
	}
	for ok := d.walk.reset(data); ok; {
		k, v, esc, more := d.walk.next()
		if !more {
			break
		}
		if esc {
			name, ok := d.convert(k, true).(string)
			if !ok {
				d.walk.odd = true // cannot happen after the walk: encoding/json decides
				break
			}
			k = []byte(name)
		}
		if m != nil {
			m[d.names.text(k)] = d.convert(v, false)
		} else if i, found := d.layout.Slot(string(k)); found && d.want[i] {
			d.slots[i] = d.slot(i, v)
		}
	}
	if m != nil {
		ev.Fields = m
	} else {
		ev.SetSlots(d.layout, d.slots)
	}
	if d.walk.bad || d.walk.odd {
		// Not a JSON object, or one that encoding/json takes differently from the walk's
		// conversions (invalid UTF-8, escaped surrogates, deep nesting): encoding/json
		// decides, and words the error, so both paths give the same events.
		m, _, err := Payload("json", data, header)
		if err == nil && d.layout != nil {
			d.fromMap(ev, m)
			return nil
		}
		ev.Fields = m
		return err
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, d.err)
	}
	return nil
}

// fromMap puts the fields of m that the decoder wants into ev's slots.
func (d *Decoder) fromMap(ev *event.Event, m map[string]any) {
	clear(d.slots)
	for i, name := range d.layout.Names() {
		if d.want[i] {
			d.slots[i] = event.ValueSlot(m[name])
		}
	}
	ev.SetSlots(d.layout, d.slots)
}

// slot returns the slot of the value v of field i. Strings of fields with few values are
// interned; other plain strings and numbers are left to convert when they are read (a number
// the walk let through converts without error: it refuses those beyond the float64 range).
func (d *Decoder) slot(i int, v []byte) event.Slot {
	switch c := v[0]; {
	case c == '"':
		s := v[1 : len(v)-1]
		if bytes.IndexByte(s, '\\') >= 0 {
			break
		}
		if t := &d.strs[i]; !t.off && len(s) <= internLen {
			return event.ValueSlot(t.get(s))
		}
		return event.TextSlot(s)
	case c == '-' || c >= '0' && c <= '9':
		return event.NumberSlot(v)
	}
	return event.ValueSlot(d.convert(v, false))
}

// convert converts the text of a valid JSON value; with key set, v is the inside of a
// member's key (without its quotes).
func (d *Decoder) convert(v []byte, key bool) any {
	if key {
		q := make([]byte, 0, len(v)+2)
		q = append(append(append(q, '"'), v...), '"')
		v = q
	}
	switch v[0] {
	case '"':
		if bytes.IndexByte(v, '\\') < 0 {
			return string(v[1 : len(v)-1])
		}
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	case '{', '[':
	default:
		return d.parseFloat(v)
	}
	// An object, an array, or a string with escapes: fastjson converts it. BenchmarkDecodeNested,
	// 10 alternating runs: 3.25 µs per event with fastjson, 4.99 µs with encoding/json's
	// Unmarshal (+53%, benchstat p=0.000; 39 allocations against 51).
	fv, err := d.p.ParseBytes(v)
	if err != nil {
		if d.err == nil {
			d.err = err
		}
		return nil
	}
	return d.value(fv)
}

// interner hands out text values as interned strings, already boxed in an any, so that the
// values of fields with few of them (types, countries, flags) cost no allocation. It holds at
// most internMax values; once full, it turns itself off unless at least half of the lookups
// find a value. Fields with many values (keys) are left to the allocator: lookups in a large
// table miss the CPU caches (with a table of 16,384 keys they took 0.48 µs per event in the
// bench's profile, more than the rest of the decoding).
type interner struct {
	m             map[string]any
	lookups, hits int
	off           bool
}

const (
	internMax = 256
	internLen = 64 // longer values are not interned: the table stays small
)

// get returns b as a string boxed in an any.
func (t *interner) get(b []byte) any {
	if t.off {
		return string(b)
	}
	t.lookups++
	if v, ok := t.m[string(b)]; ok {
		t.hits++
		return v
	}
	s := string(b)
	var v any = s
	switch {
	case len(t.m) < internMax:
		if t.m == nil {
			t.m = make(map[string]any)
		}
		t.m[s] = v
		if len(t.m) == internMax {
			t.lookups, t.hits = 0, 0 // judge it on what follows
		}
	case t.lookups >= internMax:
		if 2*t.hits < t.lookups {
			t.off, t.m = true, nil
		}
		t.lookups, t.hits = 0, 0
	}
	return v
}

// text is get for a string.
func (t *interner) text(b []byte) string { return t.get(b).(string) }

// value converts a fastjson value to what encoding/json would give: float64, string, bool,
// nil, map[string]any, []any. A number out of the float64 range sets d.err (see parseFloat),
// refuses it.
func (d *Decoder) value(v *fastjson.Value) any {
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		return d.float(v)
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeObject:
		o, _ := v.Object()
		m := make(map[string]any, o.Len())
		o.Visit(func(k []byte, e *fastjson.Value) { m[string(k)] = d.value(e) })
		return m
	case fastjson.TypeArray:
		a, _ := v.Array()
		out := make([]any, len(a))
		for i, e := range a {
			out[i] = d.value(e)
		}
		return out
	default:
		return nil
	}
}

// float parses a number as encoding/json does (strconv, correctly rounded); fastjson's own
// parser can be off in the last digit for some exponents.
func (d *Decoder) float(v *fastjson.Value) float64 {
	d.num = v.MarshalTo(d.num[:0])
	return d.parseFloat(d.num)
}

// parseFloat parses the text of a valid JSON number. The walk refuses numbers beyond the
// float64 range, so this does not fail on text it let through; if it did, d.err is set rather
// than an infinity passed on.
func (d *Decoder) parseFloat(num []byte) float64 {
	// The string does not outlive the call: the error message is built from a copy.
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(num), len(num)), 64)
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("number %s out of range", string(num))
	}
	return f
}

// states decode loaded states: loads run on several goroutines at once (read-ahead).
var states = sync.Pool{New: func() any { return New("json", nil, nil) }}

// State decodes a projection value, as encoding/json would (null is an empty state), with the
// events' decoder in map mode: several times faster than encoding/json.
func State(data []byte) (map[string]any, error) {
	if string(bytes.TrimSpace(data)) == "null" {
		return map[string]any{}, nil
	}
	d := states.Get().(*Decoder)
	defer states.Put(d)
	var ev event.Event
	if err := d.Decode(&ev, data, nil); err != nil {
		return nil, err
	}
	return ev.Fields, nil
}
