// Package commit makes a pipeline's batches durable with a protocol that is effectively
// once: after any crash (SIGKILL at any instant, a NATS restart, a lost connection) and
// restart, every projection equals the fold of every source event exactly once, and every
// derived event and dead letter is in its stream exactly once. It also builds the messages it
// publishes: derived events (CloudEvents, deterministic ids) and dead letters.
//
// # What is stored
//
//   - The checkpoint of a pipeline (checkpoint.Checkpoint) is a KV entry in bucket jetfold_checkpoints,
//     key = pipeline name: the last source sequence whose effects are all committed, the wall
//     time of that commit, and, per stream that received derived events or dead letters, the
//     last sequence acknowledged to us there.
//   - A projection value is a KV entry in the bucket named after the projection. The value is
//     the state as a plain JSON object (what `nats kv get` shows); headers carry what the
//     protocol needs: Jetfold-Seq, the last source sequence applied to that key, and
//     Jetfold-Time, the newest event time applied.
//   - Derived events carry Nats-Msg-Id "<pipeline>:<source seq>:<n>" (n counts the emits of
//     one event); dead letters "<pipeline>:<source seq>:dlq".
//
// # The commit
//
// Events are processed in batches against an in-memory state cache; nothing is written while
// a batch is processed. Then the batch is committed, in this order:
//
//  1. Publish the batch's derived events and dead letters (asynchronously, then wait for every
//     acknowledgement).
//  2. Write every projection key the batch changed, each with the expected last subject
//     sequence (the KV revision) it was read at, and wait for every acknowledgement.
//  3. Write the checkpoint with compare-and-set on the revision this process last read or
//     wrote.
//  4. On a source with interest retention, acknowledge the source (AckAll on the batch's
//     last message), which lets the server remove what is committed. A source with limits
//     retention is read in order without acknowledgements: the checkpoint is the only
//     position that counts.
//
// # Why every crash point is safe
//
// On start, and after any error, a pipeline reloads its checkpoint, creates a new consumer at
// the checkpoint's next sequence, drops its cache and reads state from the KV
// buckets again. It then processes the events after the checkpoint again. Every crash leaves
// one of these states:
//
//   - Before or during step 1: some derived events of the batch are in their streams, no key
//     and no checkpoint changed. The events are processed again against the same state and
//     produce the same messages with the same ids. Those already stored are found when the
//     pipeline starts: it reads back, from each output stream, the messages published after
//     the sequence (or, for a stream the checkpoint does not name yet, the time) of its
//     checkpoint, and does not publish their ids again. JetStream's duplicate window drops
//     them too, but the read-back makes the guarantee hold for a restart after any delay.
//   - During or after step 2, before step 3: some keys hold the batch's state, with Jetfold-Seq
//     past the checkpoint. When an event is processed again, a fold that finds its key's
//     Jetfold-Seq at or past the event's sequence skips it: its effect is already in that
//     value, and its derived events were published in step 1, before any key was written.
//     Keys not yet written are folded again from their committed values.
//   - After step 3, before step 4: the checkpoint is ahead of the consumer's ack floor; the
//     new consumer starts after the checkpoint, so nothing is read twice. On interest
//     retention it is created before the old one is deleted, so the server keeps every
//     message after the checkpoint meanwhile.
//
// Because the checkpoint is written last and each key remembers what it has applied, no
// state is ever ahead of what its value says and nothing is applied twice. A batch whose
// commit fails (timeout, lost connection) restarts the pipeline in-process from the last
// checkpoint, which is the same as a crash.
//
// Restrictions that follow:
//   - Expressions must be deterministic (no now(), no random): an event processed again must
//     produce the same state and the same derived events. State is normalised to what it
//     reads back from JSON (numbers float64, times RFC3339 text) for the same reason, and a
//     value JSON cannot hold (NaN, ±Inf) makes the event a dead letter.
//   - A derived stream that the checkpoint does not name yet, and that is not declared under
//     streams:, is only protected by its duplicate window.
//   - When a fold skips an event already applied to its key, the operators after it see the
//     key's latest committed state, not the state right after that event; a later fold of
//     another key or projection is still applied exactly once, but a filter or set between two
//     folds that reads `state` could decide differently than the first time.
//
// # Why not atomic batch publish
//
// JetStream's atomic batch publish (nats-server 2.12+, ADR-50) would write the keys and the
// checkpoint in one all-or-nothing batch, but one batch covers one stream: the projection
// buckets, the checkpoint bucket and the derived streams are different streams, a batch holds
// at most 1000 messages, and it was measured here at about 46,000 keys/s against about 90,000
// for asynchronous publishes. Per-key idempotence (Jetfold-Seq) gives the same result for any
// number of buckets and streams at the speed of asynchronous publishes, so jetfold uses that.
//
// # Durability
//
// A commit is acknowledged by JetStream once stored, which for a file stream means written to
// the operating system, flushed to disk every sync_interval (nats-server default: 2 minutes).
// A published analysis of NATS 2.12 found that acknowledged writes can be lost on power loss
// or an OS crash under that default. The embedded server exposes nats.embedded.sync_interval;
// set it to "always" to survive power loss at the cost of throughput. A process crash
// (SIGKILL, OOM) loses nothing under either setting.
package commit
