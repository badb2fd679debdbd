package oracle

import (
	"fmt"
	"time"
)

// DedupeSpec is a dedupe operator (`dedupe: {id: EXPR, within: D}`).
type DedupeSpec struct {
	// ID is EXPR: the id of an event. The model does not handle an id that fails: give such
	// events without Reaches, as the dead letters of an earlier operator.
	ID func(Event) string
	// Within is how long, in event time, an id is remembered after its first sighting; it is
	// positive.
	Within time.Duration
}

// Dedupe runs a dedupe operator over events (see the package comment for the steps) and
// returns, for each event, whether it is kept: false for an event dropped as a repeat, and
// for an event that is not valid or does not reach the operator.
//
// Ids are per operator (one pipeline), not per key. An event whose id is not remembered is
// kept and is the id's first sighting: the id is remembered from the sighting's event time
// f until the watermark reaches f + Within. An event whose id is remembered is dropped,
// whatever its own event time, and does not refresh the sighting. Whether an id is
// remembered is decided with the watermark moved to the event's own time first, like a
// timer that fires at f + Within:
//
//   - in order (the event's time is the watermark), an event is dropped exactly when it
//     comes less than Within after the first sighting: t - f < Within;
//   - out of order, an event earlier than its first sighting (t < f) is dropped while the id
//     is remembered, even when f - t >= Within, and an event in [f, f+Within) is kept when
//     the watermark already reached f + Within; it is then a new first sighting at its own
//     time t, remembered until the watermark reaches t + Within (which may already be the
//     case: such an event and its repeats are all kept).
//
// This is the rule of an implementation that stores each id's first sighting time and
// forgets it (or treats it as absent) once the watermark reaches it plus Within: it needs
// no memory of ids beyond that point.
func Dedupe(events []Event, spec DedupeSpec) []bool {
	if spec.ID == nil || spec.Within <= 0 {
		panic(fmt.Sprintf("oracle: dedupe spec: need an ID and within > 0, got %s", spec.Within))
	}
	kept := make([]bool, len(events))
	first := map[string]time.Time{} // id -> its last first sighting, remembered or not
	var c clock
	for i, e := range events {
		if !e.Valid {
			continue
		}
		wm := c.step(e)
		if !e.Reaches {
			continue
		}
		id := spec.ID(e)
		if f, seen := first[id]; seen && f.Add(spec.Within).After(wm) {
			continue // remembered: a repeat
		}
		first[id] = e.Time
		kept[i] = true
	}
	return kept
}
