package checkpoint

import "strconv"

// PartitionKey is the key of the checkpoint, and the name of the lease, of partition i of a
// partitioned pipeline (config partitions): "<pipeline>.p<i>". A pipeline with one partition
// keeps its own name.
func PartitionKey(pipeline string, i int) string { return pipeline + ".p" + strconv.Itoa(i) }

// PartitionsUnknown is what [RanIn] says of a partition's checkpoint written before
// checkpoints recorded the number of partitions: several, how many unknown.
const PartitionsUnknown = -1

// RanIn tells in how many partitions a pipeline ran, as its checkpoints say: own is its
// checkpoint under its own name, part that of one of its partitions ([PartitionKey]); nil
// for none. It returns 1 when own exists, else part's recorded count (Checkpoint.Partitions,
// or [PartitionsUnknown]), and 0 when neither exists (the pipeline never ran).
func RanIn(own, part *Checkpoint) int {
	switch {
	case own != nil:
		return 1
	case part == nil:
		return 0
	case part.Partitions == 0:
		return PartitionsUnknown
	}
	return part.Partitions
}

// Agrees tells whether a pipeline with partitions: n (0 or 1: one) may go on from checkpoints
// that say it ran in ran partitions ([RanIn]): a partition's keys are those of its index among
// n, so a checkpoint is a position of its partition only under the same count.
func Agrees(ran, n int) bool {
	n = max(n, 1)
	return ran == 0 || ran == n || ran == PartitionsUnknown && n > 1
}
