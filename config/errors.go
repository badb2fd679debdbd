package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every [*Error]: errors.Is(err, ErrInvalid) reports whether [Load] or
// [Config.Validate] rejected the configuration (as opposed to, say, failing to read the file).
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

// joinErrors sorts errs by position and joins them; nil when there are none.
func joinErrors(errs []*Error) error {
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
	return errors.Join(joinErrors(kept), errors.Join(other...))
}

// displayPath turns a field path into the form shown in messages: pipelines.0.batch becomes
// pipelines[0].batch.
func displayPath(path string) string {
	if path == "" {
		return "the top level"
	}
	var b strings.Builder
	for i, seg := range strings.Split(path, ".") {
		if isIndex(seg) {
			b.WriteString("[" + seg + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// isIndex reports whether a path segment is a list index.
func isIndex(seg string) bool {
	if seg == "" {
		return false
	}
	for _, r := range seg {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// suggest returns the candidate closest to s when it is close enough to be a likely typo.
func suggest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, min(len(s), len(best))/3)
	if bestD < 0 || bestD > limit {
		return "", false
	}
	return best, true
}

// editDistance is the optimal string alignment distance between a and b, in bytes: the
// Levenshtein distance that also counts swapping two adjacent characters as one edit.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// HintFor suggests a close match for s among valid ("did you mean x?"), or lists valid under
// label.
func HintFor(s string, valid []string, label string) string {
	if m, ok := suggest(s, valid); ok {
		return "did you mean " + m + "?"
	}
	if len(valid) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %s", label, strings.Join(valid, ", "))
}
