// Package pipeline is jetfold's runtime. [Build] turns a validated configuration into compiled
// [Pipeline] values (expressions compiled, operators constructed) without touching NATS; a
// [Runner] then reads each pipeline's stream (package source) in batches (the batch loop of
// package batch cuts them, with the runner as its stage), decodes the events (package decode),
// runs the operators against a bounded per-key state cache (package state), advances the
// watermark for the operators that act on event time, and commits every batch with the
// protocol of package commit: derived events and dead letters, then dirty projection keys,
// then the checkpoint, then (on a source with interest retention) the source acknowledgement.
//
// Ack semantics live here and only here: operators never ack. A source with limits retention
// is read without acknowledgements (the checkpoint is the position); on interest retention a
// message is acknowledged (AckAll, on the last message of a batch) only after its batch is
// committed. A poison message is dead-lettered within the same commit.
package pipeline
