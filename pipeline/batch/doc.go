// Package batch is the batch loop: it cuts batches by size, age, catch-up and tail, and
// overlaps processing with the commit in flight; it knows nothing of NATS.
//
// A [Loop] takes messages from a [Feed] (the pipeline's source) and hands them to a [Stage]
// (the runner), which processes each into the batch in hand and commits the batches the loop
// cuts. Batches follow the source in small, quick commits while the pipeline is caught up, and
// grow to the catch-up bounds during a replay or a backlog, so that a busy key is written once
// for many events; a stage over its own bound (a cache full of changed keys) ends a batch too,
// so memory stays bounded.
package batch
