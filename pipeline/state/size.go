package state

import (
	"errors"
	"fmt"

	"github.com/jetfold/jetfold/operators/event"
)

// ErrStateTooLarge is returned for a state whose JSON is over the KV value limit. The event
// that produced it is dead-lettered and the key keeps its last good value.
var ErrStateTooLarge = errors.New("state over the KV value limit")

// CheckSize returns ErrStateTooLarge when the JSON of state is longer than limit. It measures
// exactly only when a cheap estimate (at most 6 times short: JSON escapes a byte in up to 6)
// says the state could be that long, so small states cost a walk and no allocation. roomy
// reports that the estimate alone settled it.
func CheckSize(state *event.Record, limit int) (roomy bool, err error) {
	if limit <= 0 || 6*state.EstimateJSON() <= limit {
		return true, nil
	}
	b, err := state.AppendJSON(nil)
	if err != nil {
		return false, fmt.Errorf("encode state: %w", err)
	}
	if len(b) > limit {
		return false, fmt.Errorf("%w: %d bytes, limit %d", ErrStateTooLarge, len(b), limit)
	}
	return false, nil
}
