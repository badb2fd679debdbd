// Package backup writes the state jetfold keeps in JetStream KV into one archive ([Write]) and
// restores it into an empty system ([Restore]), while the pipelines run.
//
// # What is kept
//
// For each pipeline given: its checkpoint (bucket jetfold_checkpoints, key = the pipeline) or,
// for a pipeline with `partitions: N`, the checkpoint of each of its partitions (key
// `<pipeline>.p<i>`, checkpoint.PartitionKey; it has none of its own), every key of the
// current version of each projection it writes (the bucket the checkpoint names,
// `<projection>_v<N>` after a rebuild, see package checkpoint) with its headers, the version
// pointers of rebuilt projections (`version.<projection>`), its control entry
// (jetfold_control: paused or not), and the settings of each of those buckets. Leases and
// health reports (a partition's too) are not kept: they describe processes, which a restore does not bring back. A
// rebuild in progress is not kept either (its checkpoint `<pipeline>.rebuild` and the bucket it
// fills): run it again after a restore. The source and derived streams are not kept: they are
// JetStream's to back up (see Streams below).
//
// # The archive
//
// One gzip-compressed tar file (readable with `tar xzf`): the data files first, in the order a
// restore writes them (`buckets/<bucket>/<n>.jsonl` for the projections, then
// `meta/control.jsonl`, `meta/pointers.jsonl`, `meta/checkpoints.jsonl`), and `manifest.json`
// last. A data file holds one [Entry] per line: a KV key as stored, its value, its headers, its
// revision and when it was stored. The [Manifest] gives the format version, the jetfold
// version, when the backup was taken, per pipeline its checkpoint (for a partitioned one,
// Pipeline.Partitions: `"partitions": [{"index": i, "checkpoint": ...}]`, one per partition in
// index order, the checkpoint null for one that never committed) and per projection its
// bucket, version and number of keys, per bucket its settings, and per file its size, number of
// entries and SHA-256.
//
// The partitions did not change the format's version ([Format] is still 1): an archive of
// unpartitioned pipelines is what it was, and a reader from before them refuses an archive that
// holds partitions' checkpoints (their keys name no pipeline of its manifest: [ErrCorrupt])
// rather than restore it without them. An archive written before them holds no checkpoint of
// a partitioned pipeline (it was not read), which then starts where source.start says.
//
// # Consistency: one checkpoint per pipeline (or partition), online
//
// Write does not stop the pipelines. It reads the checkpoint C of every pipeline first, then the
// keys: a value read can be ahead of C (its pipeline went on committing meanwhile), never
// behind, and a restore of such values is correct:
//
//   - Values are never behind C. The commit protocol (package pipeline/commit) writes every key
//     a batch changed (step 2) before the checkpoint of that batch (step 3). When Write reads C,
//     every key holds the effect of every event up to C of that key, and its value only moves
//     forward after that: one writer per pipeline (fenced), and Jetfold-Seq, the last source
//     sequence applied to the key, only grows. Each value Write reads is therefore the fold of
//     its key's events up to its own Jetfold-Seq s, and s is at or past the key's last event
//     up to C. For that, every read must see what the server had acknowledged before it: Write
//     reads from each stream's leader (a follower can answer a direct get, and be behind; see
//     leader.go), and lists the keys from the leader's list of the bucket's subjects, which
//     holds every key that has a value (KeyValue.ListKeys can miss keys whose values are
//     replaced while it runs).
//   - Values ahead are what a crash leaves. A checkpoint with keys ahead of it, each saying in
//     its Jetfold-Seq how far, is the state a crash between steps 2 and 3 leaves, which the
//     protocol repairs: a restored pipeline resumes after C, processes the events after C again,
//     and a fold skips, per key, the events at or below the key's Jetfold-Seq (already in the
//     value, see state.ReadMeta) and applies the others. Every key ends as the fold of all its
//     events, each applied once: the same as a run that never stopped. The argument is per key,
//     so it does not matter that a backup's keys can be many batches ahead where a crash leaves
//     at most the batches in flight. It needs the headers: the archive keeps every value with
//     its Jetfold-Seq and Jetfold-Time (and every other header but those NATS adds), and
//     Restore writes them back.
//   - A key deleted after C (a window past its retention, a session merged into another) is
//     absent from the archive, as it reads after a crash: the pipeline's store takes no
//     Jetfold-Seq from a delete marker, and the operators that delete are written for that (a
//     timeout with `restart: false` keeps an `ended` marker rather than deleting, for one).
//   - Rebuilt projections. The bucket read for a projection is the one the checkpoint read
//     names (Checkpoint.Buckets; every partition's checkpoint must name it), and its pointer
//     must name the same bucket: a rebuild's switch
//     writes both in one atomic batch, so when they differ a switch came between the two reads,
//     and Write reads both again. A switch after them leaves the old version's bucket holding
//     every event up to the switch, which is past C: still consistent with C. A rebuild that
//     deletes that bucket (DropOld) before Write has read it makes Write fail with
//     [ErrChanged]: run it again.
//   - Derived events. Those of the events a key already holds were published before the key
//     was written (step 1); those of the other events after C are published again by the
//     restored pipeline, with the same ids, and are dropped if the restored derived streams
//     hold them (the read-back from the sequences the checkpoint recorded, and the streams'
//     duplicate windows).
//   - Partitions. A partitioned pipeline has a checkpoint per partition, each a source
//     sequence (where the partition got to, reading the whole stream; or, with
//     source.partitioned_by_subject, the sequence of its own last event), all read before any
//     key. Its partitions write the same buckets, each its own keys: a key belongs to exactly
//     one partition (pipeline.PartitionOf), whose single fenced writer commits its keys before
//     its checkpoint. So the argument above holds per partition: each key read is the fold of
//     its events up to its Jetfold-Seq, at or past its last event up to its own partition's
//     checkpoint, and the restored partition resumes after that checkpoint, skipping per key
//     what the key holds. The partitions' checkpoints need no common instant either. Each
//     records the number of partitions (Checkpoint.Partitions; 0 when written before it was
//     recorded), and a runner refuses to start a pipeline whose checkpoints say another count
//     than its configuration: Write refuses such a pipeline ([ErrPartitions]), as it cannot
//     pair its keys with the checkpoints that the configuration's runners would read.
//   - There is no common instant across pipelines: each is consistent with its own checkpoint.
//     A pipeline that looks up another's projection reads, after a restore, what the other's
//     restored keys hold, as it reads whatever is current while both run.
//
// # Restore
//
// Restore reads the whole archive before it writes anything: the manifest, and every file's
// size, SHA-256 and entries. A truncated archive is refused with [ErrTruncated], a damaged one
// with [ErrCorrupt] or [ErrChecksum]. It refuses a target that is not empty ([ErrNotEmpty],
// naming each bucket that holds keys and each checkpoint, pointer or control entry that
// exists, a checkpoint of any partition of the pipeline included) and, unless told not to
// check, source streams that do not reach the sequences the archive needs (its keys', and its
// highest checkpoint) or no longer hold the events after a checkpoint (its lowest: each
// partition resumes after its own) ([ErrSource]). Given the configuration, it refuses a
// pipeline that it runs in another number of partitions than the archive's checkpoints were
// written with ([ErrPartitions]): restored, that pipeline would refuse to start. Then it
// creates the buckets with the settings they had, writes the projection keys with their
// headers, then the control entries, then the version pointers, and the checkpoints last (each
// partition's), each of these only where none exists: a processor
// started before the restore ended makes it fail rather than be overwritten. A key written with
// a per-key TTL (Nats-TTL: dedupe entries, ended timers, window deletions) gets what was left of
// its TTL when the backup was taken (at least a second): the time between backup and restore
// does not count.
//
// # Streams
//
// The streams are the system of record: every projection can be rebuilt from its source
// stream; a backup saves the time that takes, and keeps the positions of the derived events the
// pipelines published. The streams themselves are backed up with JetStream's tools (`nats
// stream backup`, `nats account backup`) or kept by a mirrored cluster. Take this backup first
// and the streams' after it: the archive names source sequences up to its keys' Jetfold-Seq
// and derived-stream sequences up to its checkpoints, which a later stream backup holds. (A
// source on interest or work-queue retention drops what the pipelines acknowledge after this
// backup: pause them for both backups.) To recover: restore the streams first, then this
// archive, then start the processors.
package backup
