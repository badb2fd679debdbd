package operators

import (
	"errors"
	"fmt"
)

var (
	// ErrDuplicateOperator is returned by [Registry.Register] for a name already taken.
	ErrDuplicateOperator = errors.New("operator already registered")
	// ErrInvalidSpec is returned by [Registry.Register] for a spec without name or constructor.
	ErrInvalidSpec = errors.New("invalid operator spec")
	// ErrEval wraps every error of an expression at run time.
	ErrEval = errors.New("expression failed")
)

// FieldError is a configuration problem at a field of an operator's configuration. Field is a
// dot path relative to the operator's value ("" for the value itself, "on.order-placed.items").
type FieldError struct {
	Field string
	// Column is the column inside the expression where the problem is, 0 when unknown.
	Column int
	Err    error
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field == "" {
		return &FieldError{Field: field, Column: fe.Column, Err: fe.Err}
	}
	return &FieldError{Field: field, Err: err}
}
