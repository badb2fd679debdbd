package dlq

import "errors"

var (
	// ErrNotFound is returned by [Get] when the pipeline has no dead letter at that sequence
	// (none was ever there, it was deleted, or the sequence holds another pipeline's).
	ErrNotFound = errors.New("dead letter not found")
	// ErrBadSeqs is returned by [ParseSeqs] for a spec that is not a list of sequences and
	// ranges.
	ErrBadSeqs = errors.New("invalid sequence list")
)

// Why [Redrive] skips a dead letter: the event it would publish is not the original.
var (
	// ErrTruncated: the payload was cut to fit the payload limit (Jetfold-Truncated), so
	// the original is lost.
	ErrTruncated = errors.New("payload truncated")
	// ErrHeadersDropped: the source's headers were left out for their size
	// (Jetfold-Headers-Dropped), so the original's headers are lost.
	ErrHeadersDropped = errors.New("source headers dropped")
	// ErrNoSubject: the dead letter names no subject to publish to (neither
	// Jetfold-Source-Subject nor Jetfold-Emit-Subject).
	ErrNoSubject = errors.New("no original subject")
)
