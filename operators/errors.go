package operators

import "errors"

var (
	// ErrDuplicateOperator is returned by [Registry.Register] for a name already taken.
	ErrDuplicateOperator = errors.New("operator already registered")
	// ErrInvalidSpec is returned by [Registry.Register] for a spec without name or constructor.
	ErrInvalidSpec = errors.New("invalid operator spec")
)
