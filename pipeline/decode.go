package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// ErrDecode wraps every payload that does not decode.
var ErrDecode = errors.New("payload does not decode")

// decodeEvent turns a payload into the `event` variable. json wants a JSON object; raw gives
// {"data": payload as text}; cloudevents takes the data of a structured-mode envelope, or the
// body of a binary-mode message (its attributes are in the ce-* headers), and fills header
// with the envelope's attributes as ce-* headers.
func decodeEvent(kind string, data []byte, header map[string][]string) (map[string]any, map[string][]string, error) {
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
			return nil, header, fmt.Errorf("%w: %v", ErrDecode, err)
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
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrDecode)
	}
	return m, nil
}

// eventTime converts the value of a `time:` expression: an RFC3339 string (fractions allowed)
// or a number of Unix milliseconds.
func eventTime(v any) (time.Time, error) {
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
		return time.Time{}, fmt.Errorf("event time: got %T, want RFC3339 text or Unix milliseconds", v)
	}
}

// decoder decodes payloads for one pipeline. For `decode: json` it parses with fastjson and
// converts only the top-level fields that some expression reads (all of them when an
// expression uses the event as a whole); the whole payload is still validated, so a malformed
// one is a dead letter all the same. A decoder is used by one goroutine.
type decoder struct {
	kind string
	// fields maps each field to decode to itself (an interned key); nil: every field.
	fields map[string]string
	// m is the map of the last event, reused for the next: when only some fields are read,
	// no expression can hold the event map itself (it would use `event` as a whole).
	m   map[string]any
	p   fastjson.Parser
	num []byte // scratch for number text
	err error  // the first conversion error of the payload being decoded
}

func newDecoder(kind string, fields []string, all bool) *decoder {
	d := &decoder{kind: kind}
	if !all {
		d.fields = make(map[string]string, len(fields))
		for _, f := range fields {
			d.fields[f] = f
		}
	}
	return d
}

func (d *decoder) decode(data []byte, header map[string][]string) (map[string]any, map[string][]string, error) {
	if d.kind != "json" && d.kind != "" {
		return decodeEvent(d.kind, data, header)
	}
	// The parser is lenient (it takes "." for a number); the validator is strict JSON. Where
	// fastjson and encoding/json could disagree (a payload fastjson refuses, say for its depth
	// limit; invalid UTF-8; escaped UTF-16 surrogates, which fastjson leaves as text),
	// encoding/json decides, so both paths give the same events.
	if fastjson.ValidateBytes(data) != nil || !utf8.Valid(data) || hasSurrogateEscape(data) {
		return decodeEvent("json", data, header)
	}
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return nil, header, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	o, err := v.Object()
	if err != nil {
		return nil, header, fmt.Errorf("%w: not a JSON object", ErrDecode)
	}
	var m map[string]any
	switch {
	case d.fields == nil:
		m = make(map[string]any, o.Len())
	case d.m != nil:
		clear(d.m)
		m = d.m
	default:
		d.m = make(map[string]any, len(d.fields))
		m = d.m
	}
	d.err = nil
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.fields == nil {
			m[string(k)] = d.value(v)
		} else if name, ok := d.fields[string(k)]; ok {
			m[name] = d.value(v)
		}
	})
	if d.err != nil {
		return nil, header, fmt.Errorf("%w: %v", ErrDecode, d.err)
	}
	return m, header, nil
}

// value converts a fastjson value to what encoding/json would give: float64, string, bool,
// nil, map[string]any, []any. A number out of the float64 range sets d.err, as encoding/json
// refuses it.
func (d *decoder) value(v *fastjson.Value) any {
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
func (d *decoder) float(v *fastjson.Value) float64 {
	d.num = v.MarshalTo(d.num[:0])
	// The string does not outlive the call: on an error (out of range, the only one left
	// after validation) the message is built from a copy.
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(d.num), len(d.num)), 64)
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("number %s out of range", string(d.num))
	}
	return f
}

// hasSurrogateEscape tells whether data holds a \uD800-\uDFFF escape.
func hasSurrogateEscape(data []byte) bool {
	for i := bytes.Index(data, []byte(`\u`)); i >= 0; {
		if i+2 < len(data) && (data[i+2] == 'd' || data[i+2] == 'D') && i+3 < len(data) && data[i+3] >= '8' {
			return true
		}
		next := bytes.Index(data[i+2:], []byte(`\u`))
		if next < 0 {
			return false
		}
		i += 2 + next
	}
	return false
}
