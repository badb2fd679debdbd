package dlq

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Filter selects dead letters. The zero Filter selects every one.
type Filter struct {
	// Reason, when set, keeps the dead letters whose reason (Jetfold-Error) contains it,
	// ignoring case.
	Reason string
	// Seqs, when set, keeps the dead letters at these sequences of the dead-letter stream.
	Seqs Seqs
	// Limit, when positive, keeps the first Limit dead letters that match, in stream order.
	Limit int
}

// match tells whether l passes the filter's reason and sequences (not its limit).
func (f Filter) match(l Letter) bool {
	if f.Reason != "" && !strings.Contains(strings.ToLower(l.Reason), strings.ToLower(f.Reason)) {
		return false
	}
	return f.Seqs.Contains(l.Seq)
}

// SeqRange is the sequences First to Last, both included.
type SeqRange struct {
	First, Last uint64
}

// Seqs is a set of stream sequences, as ranges in the order they were given. An empty Seqs
// holds every sequence.
type Seqs []SeqRange

// ParseSeqs parses a comma-separated list of sequences (5) and ranges (3-9; 10- for 10 and
// every one after it), such as "1,4,10-12". Sequences start at 1. It returns an error
// wrapping [ErrBadSeqs] for anything else, and an empty Seqs for an empty spec.
func ParseSeqs(spec string) (Seqs, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	var out Seqs
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		from, to, isRange := strings.Cut(part, "-")
		bad := func(err error) error {
			if part == strings.TrimSpace(spec) {
				return fmt.Errorf("%w %q: %v", ErrBadSeqs, spec, err)
			}
			return fmt.Errorf("%w %q: %q: %v", ErrBadSeqs, spec, part, err)
		}
		first, err := parseSeq(from)
		if err != nil {
			return nil, bad(err)
		}
		last := first
		if isRange {
			if strings.TrimSpace(to) == "" {
				last = math.MaxUint64
			} else if last, err = parseSeq(to); err != nil {
				return nil, bad(err)
			}
		}
		if last < first {
			return nil, bad(errors.New("the range ends before it starts"))
		}
		out = append(out, SeqRange{First: first, Last: last})
	}
	return out, nil
}

func parseSeq(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("want a sequence or a range such as 3-9")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a sequence number", s)
	}
	if n == 0 {
		return 0, errors.New("sequences start at 1")
	}
	return n, nil
}

// Contains tells whether seq is in the set (always, for an empty set).
func (s Seqs) Contains(seq uint64) bool {
	if len(s) == 0 {
		return true
	}
	for _, r := range s {
		if seq >= r.First && seq <= r.Last {
			return true
		}
	}
	return false
}

// bounds returns the smallest and largest sequence of the set (1 and the largest uint64 for
// an empty set).
func (s Seqs) bounds() (first, last uint64) {
	if len(s) == 0 {
		return 1, math.MaxUint64
	}
	first, last = math.MaxUint64, 0
	for _, r := range s {
		first, last = min(first, r.First), max(last, r.Last)
	}
	return first, last
}

// String formats the set as [ParseSeqs] reads it.
func (s Seqs) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		switch {
		case r.First == r.Last:
			parts[i] = strconv.FormatUint(r.First, 10)
		case r.Last == math.MaxUint64:
			parts[i] = strconv.FormatUint(r.First, 10) + "-"
		default:
			parts[i] = strconv.FormatUint(r.First, 10) + "-" + strconv.FormatUint(r.Last, 10)
		}
	}
	return strings.Join(parts, ",")
}
