package pipeline

import (
	"hash/fnv"
	"strconv"

	"github.com/jetfold/jetfold/checkpoint"
)

// Partition names the partition a [Runner] runs of a pipeline with `partitions: N` (Count N,
// Index 0 to N-1). The zero value, or a Count of 1, runs the whole pipeline.
//
// An event belongs to the partition of its key, [PartitionOf]; an event whose key cannot be
// computed (it does not decode, the key expression fails) to the partition of its stream
// sequence modulo Count, so that exactly one partition dead-letters or filters it. Every
// partition reads the whole source and passes over the events of the others (their sequences
// still advance its checkpoint); its watermark moves with its own events only.
type Partition struct {
	Index, Count int
}

// partitioned tells whether p is one partition of several.
func (p Partition) partitioned() bool { return p.Count > 1 }

// ownsKey tells whether the event of key belongs to p.
func (p Partition) ownsKey(key string) bool {
	return !p.partitioned() || PartitionOf(key, p.Count) == p.Index
}

// ownsSeq tells whether the event of sequence seq whose key cannot be computed belongs to p.
func (p Partition) ownsSeq(seq uint64) bool {
	return !p.partitioned() || seq%uint64(p.Count) == uint64(p.Index)
}

// PartitionOf returns the partition of key among n: FNV-1a (32 bits) of the key modulo n, the
// function nats-server's `{{partition(n,...)}}` subject mapping applies to subject tokens, so
// that a stream partitioned by a subject token that is the key agrees with it.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// Partitions returns the partitions a pipeline runs as: one per partition of `partitions: N`,
// or the zero Partition (the whole pipeline) for one.
func Partitions(p *Pipeline) []Partition {
	n := p.Config.Partitions
	if n <= 1 {
		return []Partition{{}}
	}
	out := make([]Partition, n)
	for i := range out {
		out[i] = Partition{Index: i, Count: n}
	}
	return out
}

// ownKey is the key of the runner's own checkpoint and the name of its lease: the pipeline's
// name, or its partition's (checkpoint.PartitionKey).
func (r *Runner) ownKey() string {
	if r.o.Partition.partitioned() {
		return checkpoint.PartitionKey(r.p.Name, r.o.Partition.Index)
	}
	return r.p.Name
}

// consumerName names the runner's source consumers: the pipeline's name, with "_p<i>" for a
// partition (consumer names hold no dots).
func (r *Runner) consumerName() string {
	if r.o.Partition.partitioned() {
		return r.p.Name + "_p" + strconv.Itoa(r.o.Partition.Index)
	}
	return r.p.Name
}
