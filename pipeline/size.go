package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrStateTooLarge is returned for a state whose JSON is over the KV value limit. The event
// that produced it is dead-lettered and the key keeps its last good value.
var ErrStateTooLarge = errors.New("state over the KV value limit")

// checkSize returns ErrStateTooLarge when the JSON of state is longer than limit. It measures
// exactly only when a cheap estimate (at most 6 times short: JSON escapes a byte in up to 6)
// says the state could be that long, so small states cost a walk and no allocation. roomy
// reports that the estimate alone settled it.
func checkSize(state map[string]any, limit int) (roomy bool, err error) {
	if limit <= 0 || 6*estimate(state) <= limit {
		return true, nil
	}
	var n countWriter
	if err := json.NewEncoder(&n).Encode(state); err != nil {
		return false, fmt.Errorf("encode state: %w", err)
	}
	if int(n) > limit {
		return false, fmt.Errorf("%w: %d bytes, limit %d", ErrStateTooLarge, n, limit)
	}
	return false, nil
}

// estimate returns a lower bound of the JSON length of v, give or take escapes.
func estimate(v any) int {
	switch t := v.(type) {
	case string:
		return len(t) + 2
	case map[string]any:
		n := 2
		for k, e := range t {
			n += len(k) + 4 + estimate(e)
		}
		return n
	case []any:
		n := 2
		for _, e := range t {
			n += 1 + estimate(e)
		}
		return n
	case float64:
		return 24
	case nil:
		return 4
	case bool:
		return 5
	default:
		return 32
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

var _ io.Writer = (*countWriter)(nil)
