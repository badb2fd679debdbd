package casetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The values the cases compare and print are JSON values that keep the order of object
// members: nil, bool, string, json.Number, []any and *object.

// object is a JSON object whose members keep their order.
type object struct {
	keys []string
	vals map[string]any
}

func newObject() *object { return &object{vals: map[string]any{}} }

// set adds or replaces a member; a new one goes last.
func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// parseJSON decodes JSON text into a value, members in their order, numbers as json.Number.
func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: more than one value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	switch d {
	case '{':
		o := newObject()
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			o.set(kt.(string), v)
		}
		_, err = dec.Token()
		return o, err
	case '[':
		l := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err = dec.Token()
		return l, err
	}
	return nil, fmt.Errorf("invalid JSON: unexpected %v", d)
}

// jsonText returns v as compact JSON.
func jsonText(v any) string {
	var b strings.Builder
	writeValue(&b, &jsonStyle, v)
	return b.String()
}

// A textStyle says how [writeValue] spells the parts of a value: JSON for jsonText, YAML
// flow style for yamlFlow. Arrays and objects are written the same way in both.
type textStyle struct {
	comma, colon string // between elements; between a key and its value
	number       func(json.Number) string
	str          func(string) string // a string value or key
	other        func(string) string // any other value, as fmt.Sprint spells it
}

var (
	jsonStyle = textStyle{comma: ",", colon: ":", number: json.Number.String, str: quote, other: strconv.Quote}
	flowStyle = textStyle{comma: ", ", colon: ": ", number: yamlNumber, str: yamlScalar, other: quote}
)

func writeValue(b *strings.Builder, st *textStyle, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		b.WriteString(st.number(x))
	case string:
		b.WriteString(st.str(x))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(st.comma)
			}
			writeValue(b, st, e)
		}
		b.WriteByte(']')
	case *object:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(st.comma)
			}
			b.WriteString(st.str(k))
			b.WriteString(st.colon)
			writeValue(b, st, x.vals[k])
		}
		b.WriteByte('}')
	default:
		b.WriteString(st.other(fmt.Sprint(x)))
	}
}

// quote returns s as a JSON string, without escaping <, > and &. It is also a YAML
// double-quoted scalar.
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// numberTolerance is the relative difference under which two numbers are equal: sums of
// decimal amounts are not exact in float64 (0.1 + 0.2 is 0.30000000000000004), and a case
// says 0.3.
const numberTolerance = 1e-9

// equal compares two values as JSON: objects by their members whatever their order, numbers
// by value within numberTolerance.
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numbersEqual(x, y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case *object:
		y, ok := b.(*object)
		if !ok || len(x.keys) != len(y.keys) {
			return false
		}
		for _, k := range x.keys {
			w, ok := y.vals[k]
			if !ok || !equal(x.vals[k], w) {
				return false
			}
		}
		return true
	}
	return false
}

func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, err1 := strconv.ParseFloat(string(a), 64)
	y, err2 := strconv.ParseFloat(string(b), 64)
	if err1 != nil || err2 != nil {
		return false
	}
	return x == y || math.Abs(x-y) <= numberTolerance*math.Max(math.Abs(x), math.Abs(y))
}

// withoutHidden returns actual without its members whose names start with "_" and that
// expected does not name: the bookkeeping of windows and the like, which cases ignore. Other
// values are returned as they are.
func withoutHidden(actual, expected any) any {
	a, ok := actual.(*object)
	if !ok {
		return actual
	}
	e, _ := expected.(*object)
	out := newObject()
	for _, k := range a.keys {
		if strings.HasPrefix(k, "_") && (e == nil || !hasKey(e, k)) {
			continue
		}
		out.set(k, a.vals[k])
	}
	return out
}

func hasKey(o *object, k string) bool {
	_, ok := o.vals[k]
	return ok
}

// fieldDiffs lists, for two objects, the members that differ, one line each; nil for other
// values.
func fieldDiffs(expected, actual any) []string {
	e, ok1 := expected.(*object)
	a, ok2 := actual.(*object)
	if !ok1 || !ok2 {
		return nil
	}
	var out []string
	for _, k := range e.keys {
		w, ok := a.vals[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: expected %s, missing", k, jsonText(e.vals[k])))
		case !equal(e.vals[k], w):
			out = append(out, fmt.Sprintf("%s: expected %s, actual %s", k, jsonText(e.vals[k]), jsonText(w)))
		}
	}
	for _, k := range a.keys {
		if !hasKey(e, k) {
			out = append(out, fmt.Sprintf("%s: not expected, actual %s", k, jsonText(a.vals[k])))
		}
	}
	return out
}

// plainRe matches the strings that can be written as plain YAML scalars, in flow collections
// too: letters, digits and a few punctuation marks, single spaces inside.
var plainRe = regexp.MustCompile(`^[A-Za-z0-9_./+@=-]+( [A-Za-z0-9_./+@=-]+)*$`)

// yamlScalar returns s as a YAML scalar: plain when that reads back as the same string
// (user-1, Grace 1), double-quoted otherwise ("true", "2026-11-01T09:00:00Z", "a, b").
func yamlScalar(s string) string {
	if plainRe.MatchString(s) && !strings.HasPrefix(s, "-") {
		var n yaml.Node
		if yaml.Unmarshal([]byte(s), &n) == nil && len(n.Content) == 1 &&
			n.Content[0].Kind == yaml.ScalarNode && n.Content[0].ShortTag() == "!!str" && n.Content[0].Value == s {
			return s
		}
	}
	return quote(s)
}

// yamlFlow returns v as YAML in flow style, on one line: {items: 0, name: Grace 1}.
func yamlFlow(v any) string {
	var b strings.Builder
	writeValue(&b, &flowStyle, v)
	return b.String()
}

// yamlNumber writes a JSON number for a case file: integers as they are, other numbers with
// at most 15 significant digits, so that a sum such as 257.33000000000004 reads 257.33
// (numbers are compared within numberTolerance).
func yamlNumber(n json.Number) string {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	out := strconv.FormatFloat(f, 'g', 15, 64)
	if !numbersEqual(json.Number(out), n) {
		return s
	}
	return out
}
