// Package dedupe is the dedupe operator: it drops the events whose id the pipeline has
// already seen within a span of event time.
//
//	operators:
//	  - dedupe: {id: event.id, within: 24h}   # optional projection (default "<pipeline>_dedupe")
//
// # Semantics
//
// They are those of internal/oracle.Dedupe, with which the tests compare the operator. Ids are
// per pipeline (per operator), not per key. An id's first sighting, at event time f, is
// remembered until the watermark (the greatest event time read, the event in hand included)
// reaches f + within; an event whose id is remembered is dropped as a repeat, whatever its
// own time, and does not refresh the sighting; an event whose id is not (or no longer)
// remembered is kept and is a new first sighting. The decision depends on event time only
// (the watermark and the stored f), so that processing the same events again decides the
// same. A dropped repeat counts as `duplicate` in jetfold_events_total (event.Event.Duplicate
// is set). The id expression must give a non-empty string; an event for which it fails, or
// whose time does not decode, is a dead letter.
//
// A sighting is remembered only when the event passes the whole chain: an operator after the
// dedupe that drops or dead-letters the event drops the sighting with its other effects, and
// a later event with the same id is then a first sighting. Put the filters before the dedupe.
//
// # State
//
// No memory is kept besides the projection: one key per id (the id itself, as the store
// encodes keys that KV does not allow), whose value is {first}: the first sighting's event
// time (RFC 3339, UTC), and {earlier}: the source sequences of the id's earlier first
// sightings, when it has been forgotten and sighted again (at most [MaxEarlier], oldest first).
// The entry is written at each first sighting only, with the event's sequence, and with a KV
// TTL of 2*within + 1h ([TTL]), so that the server removes the ids long forgotten.
//
// The TTL runs on the wall clock, not on event time: it removes an entry that long after its
// write. It only collects entries that no longer matter as long as the pipeline does not fall
// more than within + 1h further behind its source between an id's first sighting and its
// repeats (a pipeline stopped for longer than that, with repeats still to read, forgets their
// ids). A replay of old events, far behind the wall clock but at a steady distance, is safe.
//
// # Exactly once
//
// After a crash the pipeline processes again the events after its checkpoint; the entries of
// some ids may already hold the effects of the batch that was being committed:
//
//   - An entry whose sequence is the event's (or lists it in earlier) is this very sighting,
//     committed before the crash: the event is kept, and nothing is written.
//   - An entry whose sequence is later than the event's is a later first sighting of the id,
//     committed before the crash. The sightings from the oldest one the entry knows (earlier,
//     then its own) are all known, and an event between two of them was a repeat: it is
//     dropped again. An event older than the oldest known one can only be met when more than
//     MaxEarlier sightings of one id fell in the batch that was being committed (or in a
//     replay over a projection already built): it cannot be told, and is kept, for the
//     operators after the dedupe to find it already applied, or not, by their own keys.
//     Nothing is written either way: the entry already holds the batch's outcome.
//   - Otherwise the entry is what the batch's events before this one left, and the rule above
//     decides as it did the first time.
package dedupe
