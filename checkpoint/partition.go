package checkpoint

import "strconv"

// PartitionKey is the key of the checkpoint, and the name of the lease, of partition i of a
// partitioned pipeline (config partitions): "<pipeline>.p<i>". A pipeline with one partition
// keeps its own name.
func PartitionKey(pipeline string, i int) string { return pipeline + ".p" + strconv.Itoa(i) }
