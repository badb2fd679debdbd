package expr

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
)

// StateType is what is known of a projection's state at load time: its fields (those of the
// folds' `initial`, and those their handlers assign) and, for the fields of `initial`, their
// types. Expressions that read `state` are type-checked against it, so that a field nobody
// writes or an operation on the wrong type is a load error, not a dead letter per event.
type StateType struct {
	// Projection is the projection the state belongs to.
	Projection string
	fields     map[string]reflect.Type // nil: any type
	env        any                     // a value of Env's type with State typed as the fields
}

// NewStateType returns the state type of projection with fields: a field's type is float64,
// string or bool when known, nil for any.
func NewStateType(projection string, fields map[string]reflect.Type) *StateType {
	st := &StateType{Projection: projection, fields: fields}
	names := st.Fields()
	sf := make([]reflect.StructField, len(names))
	for i, n := range names {
		t := fields[n]
		if t == nil {
			t = anyType
		}
		sf[i] = reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: t, Tag: reflect.StructTag(`expr:"` + n + `"`)}
	}
	state := reflect.StructOf(sf)
	envType := reflect.TypeOf(Env{})
	ef := make([]reflect.StructField, envType.NumField())
	for i := range ef {
		ef[i] = envType.Field(i)
		if ef[i].Name == "State" {
			ef[i].Type = state
		}
	}
	st.env = reflect.New(reflect.StructOf(ef)).Elem().Interface()
	return st
}

// Type returns the type of the field name: float64, string or bool when known, nil for any.
func (st *StateType) Type(name string) reflect.Type { return st.fields[name] }

// Fields returns the names of the state's fields, sorted.
func (st *StateType) Fields() []string {
	names := make([]string, 0, len(st.fields))
	for n := range st.fields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

var (
	anyType    = reflect.TypeOf((*any)(nil)).Elem()
	numberType = reflect.TypeOf(0.0)
)

// TypeOf returns the type a literal of `initial` gives its field: float64, string or bool, nil
// (any) for null, maps and lists.
func TypeOf(v any) reflect.Type {
	switch v.(type) {
	case float64, int, int64:
		return numberType
	case string:
		return reflect.TypeOf("")
	case bool:
		return reflect.TypeOf(false)
	}
	return nil
}

// UnknownStateFieldError is a `state.x` whose field no fold of the projection has in
// `initial` or assigns: it would always be nil.
type UnknownStateFieldError struct {
	Projection, Field string
	// Fields are the state's fields.
	Fields []string
}

// Error implements error.
func (e *UnknownStateFieldError) Error() string {
	return fmt.Sprintf("state of %s has no field %s", e.Projection, e.Field)
}

// noField matches expr's error for a struct field that does not exist.
var noField = regexp.MustCompile(`^type struct \{.*\} has no field (\S+)`)

// Check type-checks e against st, unless e uses `state` whole (its fields are then read by a
// name computed at run time) or not at all. want, when not nil, is the type of the state field
// e's value is assigned to: a value of another known type is an error.
func (st *StateType) Check(e *Expr, kind int, want reflect.Type) error {
	if e == nil {
		return nil
	}
	typed := e.program.Node().Type()
	if e.state && !e.wholeState {
		// Without fieldPatcher: member reads stay members, which the state type checks.
		p, err := expr.Compile(e.Source, options(st.env, kind, e.vars)...)
		if err != nil {
			var fe *file.Error
			if !errors.As(err, &fe) {
				return &FieldError{Err: fmt.Errorf("expression %q: %w", e.Source, err)}
			}
			if m := noField.FindStringSubmatch(fe.Message); m != nil {
				return &FieldError{Column: fe.Column, Err: &UnknownStateFieldError{Projection: st.Projection, Field: m[1], Fields: st.Fields()}}
			}
			return &FieldError{Column: fe.Column, Err: fmt.Errorf("expression %q: %s", e.Source, userTerms(fe.Message))}
		}
		typed = p.Node().Type()
	}
	if want != nil && typed != nil && typed.Kind() != reflect.Interface && kindName(typed) != kindName(want) {
		return &FieldError{Err: fmt.Errorf("expression %q gives a %s, but the field is a %s in initial (a field keeps the type of its initial value)", e.Source, kindName(typed), kindName(want))}
	}
	return nil
}

// userTerms says expr's type names as JSON does.
func userTerms(msg string) string {
	return strings.NewReplacer("map[string]interface {}", "object", "interface {}", "any", "float64", "number", "struct", "state").Replace(msg)
}

// kindName names a type as JSON does.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice, reflect.Array:
		return "list"
	}
	return t.String()
}
