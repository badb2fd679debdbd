package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/config/diag"
)

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[time.Duration]()
	operatorType = reflect.TypeFor[Operator]()
)

// field is one configuration field of a struct type.
type field struct {
	name  string // the koanf tag
	index int
	typ   reflect.Type
}

// fieldsOf returns the configuration fields of struct type t: the exported fields with a koanf
// tag other than "-".
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		out = append(out, field{name: tag, index: i, typ: f.Type})
	}
	return out
}

// fieldNames returns the names of the configuration fields of struct type t.
func fieldNames(t reflect.Type) []string {
	fs := fieldsOf(t)
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

// lookupField returns the configuration field of struct type t called name.
func lookupField(t reflect.Type, name string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// typeAt returns the Go type that decodes the value at a field path, or nil when the path
// names no field.
func typeAt(path string) reflect.Type {
	t := configType
	if path == "" {
		return t
	}
	for _, seg := range strings.Split(path, ".") {
		switch {
		case t == operatorType || t.Kind() == reflect.Map:
			t = t.Elem()
		case t.Kind() == reflect.Struct:
			f, ok := lookupField(t, seg)
			if !ok {
				return nil
			}
			t = f.typ
		case t.Kind() == reflect.Slice:
			if !diag.IsIndex(seg) {
				return nil
			}
			t = t.Elem()
		default:
			return nil
		}
	}
	return t
}

// describe names the YAML kind of a decoded value, for messages: "a string", "a list".
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "an empty value"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64, int32, uint, uint32, float32:
		return "a number"
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a map"
	default:
		return reflect.TypeOf(v).String()
	}
}

// isScalar reports whether v is a YAML scalar (not a list or a map).
func isScalar(v any) bool {
	switch v.(type) {
	case []any, map[string]any, map[any]any:
		return false
	}
	return true
}

// quoteValue formats a scalar for a message: strings quoted, other scalars as written.
func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	if v == nil {
		return "null"
	}
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// wantName names what a Go type expects, for messages: "an integer", "a map".
func wantName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration"
	case t == operatorType:
		return "a map with one key, the operator name"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a map"
	}
	return t.String()
}

// rawChild returns the child seg of a decoded YAML value (a map key or a list index).
func rawChild(v any, seg string) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		c, ok := x[seg]
		return c, ok
	case map[any]any:
		for k, c := range x {
			if keyString(k) == seg {
				return c, true
			}
		}
	case []any:
		i, err := strconv.Atoi(seg)
		if err == nil && diag.IsIndex(seg) && i < len(x) {
			return x[i], true
		}
	}
	return nil, false
}

// rawAt returns the decoded YAML value at a field path.
func rawAt(root any, path string) (any, bool) {
	v := root
	if path == "" {
		return v, true
	}
	for _, seg := range strings.Split(path, ".") {
		c, ok := rawChild(v, seg)
		if !ok {
			return nil, false
		}
		v = c
	}
	return v, true
}

// keyString is the path segment of a map key.
func keyString(k any) string {
	return fmt.Sprint(k)
}
