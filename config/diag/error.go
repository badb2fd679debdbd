package diag

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every [*Error]: errors.Is(err, ErrInvalid) reports whether loading
// or validating rejected the configuration (as opposed to, say, failing to read the file).
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in the configuration, at a place in the file.
type Error struct {
	// Pos is where the problem is; for a missing field, the nearest enclosing one.
	Pos Pos
	// Path is the field path, with dots and list indices: pipelines.0.batch.size.
	Path string
	// Msg says what is wrong.
	Msg string
	// Hint, when not empty, says how to fix it.
	Hint string
}

// Error returns "file:line:col: message", followed by " (hint: ...)" when there is a hint.
func (e *Error) Error() string {
	var b strings.Builder
	if p := e.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns [ErrInvalid].
func (e *Error) Unwrap() error { return ErrInvalid }

// Pos is a place in the configuration file. Line and Col start at 1; zero means unknown.
type Pos struct {
	File string // the path of the configuration file
	Line int    // 1-based line
	Col  int    // 1-based column, in characters
}

// String returns "file:line:col", or less when parts are unknown.
func (p Pos) String() string {
	var parts []string
	if p.File != "" {
		parts = append(parts, p.File)
	}
	if p.Line > 0 {
		parts = append(parts, strconv.Itoa(p.Line))
		if p.Col > 0 {
			parts = append(parts, strconv.Itoa(p.Col))
		}
	}
	return strings.Join(parts, ":")
}

// JoinSorted sorts errs by position, keeping the order of those at the same place, and joins
// them with [errors.Join], every one kept; nil when there are none.
func JoinSorted(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// Join joins configuration errors into one report in file order, one problem per place:
// of two *Error values at the same line and column, the first is kept. Errors that are not
// *Error values keep their order at the end. nil errors are skipped.
func Join(errs ...error) error {
	var list []*Error
	var other []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *Error
		if errors.As(err, &ce) {
			list = append(list, ce)
		} else if err != nil {
			other = append(other, err)
		}
	}
	for _, e := range errs {
		walk(e)
	}
	seen := map[[2]int]bool{}
	kept := list[:0]
	for _, e := range list {
		at := [2]int{e.Pos.Line, e.Pos.Col}
		if e.Pos.Line > 0 && seen[at] {
			continue
		}
		seen[at] = true
		kept = append(kept, e)
	}
	return errors.Join(JoinSorted(kept), errors.Join(other...))
}
