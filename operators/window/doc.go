// Package window implements the window operator: per-key aggregates over tumbling, hopping
// or session windows of event time, folded into a JetStream KV projection, closed by the
// watermark and optionally emitted as one derived event per window.
//
//	operators:
//	  - window:
//	      projection: revenue_per_minute
//	      tumbling: 1m        # or hopping: {size: 10m, advance: 1m}, or session: {gap: 30m}
//	      lateness: 10s       # default 0
//	      retention: 24h      # default 24h
//	      aggregate: {orders: count(), revenue: sum(event.amount)}
//	      emit: {subject: '"shop.derived.revenue." + key', data: {revenue: window.revenue}}
//
// The semantics are those of the reference model internal/oracle (see oracle.Windows):
// windows are per key and on event time; a window closes on the tick (operators.Clock) where
// its end <= watermark - lateness; an event none of whose windows is open is late, a dead
// letter whose reason starts with "late"; a closed window is deleted once its end + retention
// <= watermark.
//
// # KV layout
//
// Each window is the key <key>.<start in Unix milliseconds> of the projection (a session's
// start is its first event time). Its value is a JSON object with start and end (RFC 3339 UTC,
// oracle.Timestamp's format), closed, and one field per aggregate: count() the number of
// events, sum, min, max and avg numbers, last the value of the event applied last, distinct
// the number of distinct values (equal when their JSON encodings are). Internal fields, which
// a restart needs and readers should ignore, start with an underscore:
//
//   - _n: the number of events applied, present when an avg aggregate is;
//   - _avg.<name>: the sum behind the avg aggregate <name>;
//   - _distinct.<name>: the set behind the distinct aggregate <name>, as a sorted array of
//     the values' JSON encodings.
//
// A session needs no more: its last event time is its end minus the gap.
//
// # Exactly once
//
// Every write carries a source sequence (the event's, or the tick's for closes and
// deletions). An event is applied to each of its windows whose entry has an older sequence,
// and is a duplicate when every one of them already has it (it was committed before a crash
// and is read again from the checkpoint): a crash that committed only some keys of a batch
// leaves each window exact. A window found closed in KV when it comes due is not closed or
// emitted again: its derived event was published before its state. Derived events have the
// deterministic id window:<projection>:<KV key>. A session merge writes the merged session
// before deleting the others; what a crash leaves of those is deleted after the restart.
//
// Deletions carry a TTL of a minute (the operator is an operators.TTLProjector), so that the
// server removes the delete markers and the keys Start lists are those of live windows.
//
// # Memory
//
// The windows' states live in the pipeline's state cache like any projection's. Besides, the
// operator keeps an index, rebuilt by Start from the projection's keys (for sessions, from
// their values, read at start): each open window or session is an entry of a heap ordered by
// end (32 bytes, plus the key's string, shared by a key's windows made by one event), each
// closed window kept for retention an entry of a queue ordered by end (as much again), and
// each key with open sessions a map entry holding their bounds (16 bytes a session). A
// session that grows keeps its heap entry, moved to its new end when the old one comes due.
// Advance looks at the heads of the heap and the queue only: it costs nothing when nothing
// is due. A distinct aggregate holds its set in the window's state: a new distinct value
// copies it (O(size)), as states are never changed in place beyond scalars.
package window
