// Package checkpoint stores each pipeline's offset (its [Checkpoint], written with
// compare-and-set so that of two instances only one advances it) and its lease (one writer per
// pipeline). The commit protocol that uses them, and why it is effectively once, is documented
// in package pipeline/commit.
//
// # Fencing: one writer per pipeline
//
// Of several processes running the same pipeline, only the holder of its lease processes it
// ([Leases]): a KV entry with a per-message TTL, renewed every TTL/4. The others stand by and
// watch it: they take it over as soon as it is released, or a TTL after a dead holder's last
// renewal, when the entry expires. A holder whose last successful
// renewal was sent more than TTL/2 ago (a lost connection, a long pause) stops processing by
// itself, before anyone else may take the lease (the server's TTL runs from a later moment). If a paused holder still writes after that, its writes fail: every
// key write expects the revision it read, and the checkpoint is compare-and-set; a process
// whose write is refused gives up the batch, logs it, counts jetfold_fenced_total and
// restarts from the checkpoint the winner wrote (or stops after repeated refusals with
// [ErrFenced]). Two writers can therefore never lose each other's updates, and since both
// fold the same events deterministically, any value either writes is a correct prefix fold.
//
// # Versions of a projection
//
// A rebuild (package pipeline/rebuild) writes a projection anew into the bucket of its next
// version ([BucketName]: `<projection>_v<N>`), then switches to it: one atomic batch of the
// checkpoint bucket ([Store.Switch]) replaces the pipeline's checkpoint, which names the
// buckets it writes (Checkpoint.Buckets), and moves the pointers readers follow
// (`version.<projection>`, see [Current]), so that the pipeline and every reader move at the
// same checkpoint. The pipeline's holder hands its lease over for the switch
// ([Leases.Yield]): it commits what it has in hand and stands by.
package checkpoint
