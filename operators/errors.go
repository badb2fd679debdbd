package operators

import (
	"errors"

	"github.com/jetfold/jetfold/operators/expr"
)

var (
	// ErrDuplicateOperator is returned by [Registry.Register] for a name already taken.
	ErrDuplicateOperator = errors.New("operator already registered")
	// ErrInvalidSpec is returned by [Registry.Register] for a spec without name or constructor.
	ErrInvalidSpec = errors.New("invalid operator spec")
)

// fieldErr places err at field, keeping the column of an expression's error.
func fieldErr(field string, err error) error {
	var fe *expr.FieldError
	if errors.As(err, &fe) && fe.Field == "" {
		return &expr.FieldError{Field: field, Column: fe.Column, Err: fe.Err}
	}
	return &expr.FieldError{Field: field, Err: err}
}
