// Package pipeline is jetfold's runtime. [Build] turns a validated configuration into compiled
// [Pipeline] values (expressions compiled, operators constructed) without touching NATS; a
// [Runner] then consumes each pipeline's stream in batches, runs the operators against a
// bounded per-key state cache and commits every batch with the protocol of package checkpoint:
// derived events and dead letters, then dirty projection keys, then the checkpoint, then the
// source acknowledgement.
//
// Ack semantics live here and only here: operators never ack. A message is acknowledged (AckAll,
// on the last message of a batch) only after its batch is committed; a poison message is
// dead-lettered within the same commit and acknowledged with it.
package pipeline
