// Package timeout is the timeout operator: per key, a timer that events of the start types
// set and events of the cancel types end, which fires when the watermark reaches its deadline
// (start + after): it emits a derived event and ends. A cart abandoned for 30 minutes:
//
//	operators:
//	  - timeout:
//	      name: abandoned                  # unique within the pipeline
//	      start: [product-added-to-cart]   # a type, or a list
//	      cancel: [order-placed]           # optional; no type both starts and cancels
//	      after: 30m
//	      restart: true                    # a start while pending moves the deadline (default)
//	      emit:
//	        subject: '"shop.derived.cart-abandoned." + key'
//	        data: {user_id: key, started: timer.started, deadline: timer.deadline}
//	        handler: once                  # once (default) | on | all
//	        type: cart-abandoned           # optional CloudEvents type (default: the subject)
//	      projection: carts_timers         # optional, default "<pipeline>_timers"
//
// The semantics are internal/oracle.Timeouts': at each event's step the watermark moves, every
// timer whose deadline <= watermark fires, by deadline then key, then the event is applied in
// stream order: a cancel ends its key's timer (one at or after the deadline comes too late), a
// start sets it (with restart: false, not while one is pending), and fires it at once if its
// deadline is already <= watermark. With the pipeline's `idle`, timers fire on the wall clock
// too. An event's effects apply unless an operator fails on it (a dead letter).
//
// A pending timer is the key "<name>.<key>" of the projection, valued {started, deadline,
// event, seq}: the start's time and the deadline (RFC 3339, UTC), the start event whole and
// its sequence. The event is kept only when the emit reads timer.event (or the timer whole),
// since the pipeline must then decode every event whole. In memory the operator
// keeps an index of the keys by a lower bound of their deadlines (see index), rebuilt from the
// projection at every start: a step at which nothing is due costs one comparison.
//
// The emit runs on the tick of the step that fires the timer, with `key` the timer's key,
// `time` the watermark and the variable `timer` as stored (`event` is empty). The derived
// event's id, "timeout:<name>:<key>:<deadline in Unix ms>:<start seq>", is the same whichever
// event fires the timer, so that it is published once across crashes, restarts and replays.
// With handler: once, a timer fired at a hydrated event's step ends without emitting. An emit
// that cannot be made when the timer fires (an expression fails, the subject is invalid) is
// staged as unmade (event.Output.Err): the pipeline dead-letters it, with the timer as its
// payload, and goes on.
//
// Exactly once: after a crash the pipeline processes again the events after its checkpoint, on
// keys that may hold the last effect on them of the batch whose commit was cut, written with
// its sequence. An event whose key holds its own sequence or a later one (other than from its
// own step's tick, which runs before it) was applied: it changes nothing there and is marked
// Duplicate. A timer fired again has the id of the derived event already published. With
// restart: true that is enough, as a start or a cancel leaves the same whatever was there. With
// restart: false a start depends on it, and a deleted key would lose the sequence of what
// ended its timer (the pipeline's store does not read it back): so an ended timer's key is not
// deleted but holds {ended: its start's sequence}, written with the sequence of what ended it
// and a KV TTL of [EndedTTL] (a restart more than that after a crash may start it again).
package timeout
