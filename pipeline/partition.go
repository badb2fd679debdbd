package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
)

// Partition names the partition a [Runner] runs of a pipeline with `partitions: N` (Count N,
// Index 0 to N-1). The zero value, or a Count of 1, runs the whole pipeline.
//
// An event belongs to the partition of its key, [PartitionOf]; an event whose key cannot be
// computed (it does not decode, the key expression fails) to the partition of its stream
// sequence modulo Count, so that exactly one partition dead-letters or filters it. Every
// partition reads the whole source and passes over the events of the others (their sequences
// still advance its checkpoint); its watermark moves with its own events only.
//
// With source.partitioned_by_subject, the stream stores each event under its partition
// (`<i>.…`) and each partition reads only its own subjects (see Runner.sourceSubjects): an
// event belongs to the partition its subject names, whether its key can be computed or not,
// and one whose key belongs to another is a dead letter ([errWrongPartition]). Its checkpoint
// is still a stream sequence, that of its own last event: a restart at checkpoint+1 with the
// same filter skips only other partitions' events.
type Partition struct {
	Index, Count int
}

// partitioned tells whether p is one partition of several.
func (p Partition) partitioned() bool { return p.Count > 1 }

// ownsKey tells whether the event of key belongs to p.
func (p Partition) ownsKey(key string) bool {
	return !p.partitioned() || PartitionOf(key, p.Count) == p.Index
}

// owns tells whether the event of sequence seq belongs to p (see [eventPartition]).
func (p Partition) owns(key string, keyErr error, seq uint64) bool {
	return !p.partitioned() || eventPartition(key, keyErr, seq, p.Count) == p.Index
}

// eventPartition returns the partition among n of the event of sequence seq: that of its key,
// or, when the key could not be computed (keyErr set: the payload or the key expression
// failed), that of its sequence, so that exactly one partition dead-letters it.
func eventPartition(key string, keyErr error, seq uint64, n int) int {
	if keyErr != nil {
		return int(seq % uint64(n))
	}
	return PartitionOf(key, n)
}

// errForeign is returned by Runner.processOne for an event of another partition, which the
// partition reads past.
var errForeign = errors.New("another partition's event")

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

// partRun is what one runner runs of a pipeline: a partition, and the pipeline it runs.
type partRun struct {
	p    *Pipeline
	part Partition
}

// partRuns returns the runs of p, one per partition ([Partitions]): the first partition runs
// p, the others instances of their own ([Pipeline.Instance]), since operators keep indexes
// and buffers for the one runner that runs them.
func partRuns(p *Pipeline) ([]partRun, error) {
	parts := Partitions(p)
	runs := make([]partRun, len(parts))
	for i, part := range parts {
		runs[i] = partRun{p, part}
		if i > 0 {
			var err error
			if runs[i].p, err = p.Instance(); err != nil {
				return nil, err
			}
		}
	}
	return runs, nil
}

// ownKey is the key of the runner's own checkpoint and the name of its lease: the pipeline's
// name, or its partition's (checkpoint.PartitionKey).
func (r *Runner) ownKey() string {
	if r.o.Partition.partitioned() {
		return checkpoint.PartitionKey(r.p.Name, r.o.Partition.Index)
	}
	return r.p.Name
}

// partitions is the pipeline's number of partitions as its checkpoints record it: 0 for one.
func (r *Runner) partitions() int {
	if r.o.Partition.partitioned() {
		return r.o.Partition.Count
	}
	return 0
}

// checkPartitions refuses to run a pipeline whose checkpoints were written with another number
// of partitions: its keys would move between partitions, and a partition would apply again
// events another had applied (or one starting anew, all of them). cp is the runner's own
// checkpoint when found. The rule is checkpoint.RanIn and checkpoint.Agrees, which a rebuild
// applies too. It returns an error wrapping [ErrStopped].
func (r *Runner) checkPartitions(ctx context.Context, cp checkpoint.Checkpoint, found bool) error {
	// The pipeline's own checkpoint, and a partition's: 0's, or the runner's own (partition 0
	// may not have started yet in any process).
	var own, part *checkpoint.Checkpoint
	keys := []string{r.p.Name, checkpoint.PartitionKey(r.p.Name, 0)}
	if k := r.ownKey(); !slices.Contains(keys, k) {
		keys = append(keys, k)
	}
	for _, key := range keys {
		c := cp
		if !found || key != r.ownKey() {
			var err error
			if c, err = r.cps.Load(ctx, key); errors.Is(err, checkpoint.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
		}
		switch {
		case key == r.p.Name:
			own = &c
		case part == nil:
			part = &c
		}
	}
	ran := checkpoint.RanIn(own, part)
	if checkpoint.Agrees(ran, r.o.Partition.Count) {
		return nil
	}
	now := "one"
	if r.o.Partition.partitioned() {
		now = strconv.Itoa(r.o.Partition.Count)
	}
	return fmt.Errorf("%w: %s ran in %s (its checkpoints say so), and the file now has partitions: %s: the keys would move between partitions and events be applied twice. Run it with its former partitions; to change them, give the pipeline and its projections new names (they are folded anew from the stream)",
		ErrStopped, r.p.Name, PartitionsText(ran), now)
}

// PartitionsText says ran, a number of partitions as checkpoint.RanIn gives it, in words:
// "one partition", "4 partitions", "several partitions" (a count not recorded).
func PartitionsText(ran int) string {
	switch {
	case ran == checkpoint.PartitionsUnknown:
		return "several partitions"
	case ran > 1:
		return strconv.Itoa(ran) + " partitions"
	}
	return "one partition"
}

// consumerName names the runner's source consumers: the pipeline's name, with "_p<i>" for a
// partition (consumer names hold no dots).
func (r *Runner) consumerName() string {
	if r.o.Partition.partitioned() {
		return r.p.Name + "_p" + strconv.Itoa(r.o.Partition.Index)
	}
	return r.p.Name
}

// errWrongPartition marks an event of a source partitioned by subject whose key belongs to
// another partition than the one the stream stored it under: the pipeline's key is not the
// subject token the stream partitions on. It is a dead letter (applying it would write the
// key from two partitions).
var errWrongPartition = errors.New("the event's key belongs to another partition than its subject's")

// sourceSubjects returns the subjects the runner's source reads, and sets r.bySubject. A
// partition of a pipeline with source.partitioned_by_subject reads only its own subjects,
// `<i>.>` (the source's one subject with its first token replaced by i), after checking that
// stream stores every message under its partition: its subject transform applies to every
// subject it captures and its destination starts with `{{partition(N,T)}}.`, N the
// pipeline's partitions. Otherwise the whole source is read, and each partition passes over
// the others' events. It returns an error wrapping [ErrStopped] when the stream is not so
// partitioned.
func (r *Runner) sourceSubjects(stream jetstream.Stream) ([]string, error) {
	pc := r.p.Config
	r.bySubject = false
	if !pc.Source.PartitionedBySubject || !r.o.Partition.partitioned() {
		return pc.Source.Subjects, nil
	}
	cfg := stream.CachedInfo().Config
	tr := cfg.SubjectTransform
	if tr == nil {
		return nil, fmt.Errorf("%w: %s: source.partitioned_by_subject: stream %s has no subject transform (declare subject_transform with dest {{partition(%d,<token>)}}.<rest>)",
			ErrStopped, r.p.Name, cfg.Name, r.o.Partition.Count)
	}
	if n, _, ok := config.PartitionToken(tr.Destination); !ok || n != r.o.Partition.Count {
		return nil, fmt.Errorf("%w: %s: source.partitioned_by_subject: stream %s stores its messages under %q, not under {{partition(%d,<token>)}}",
			ErrStopped, r.p.Name, cfg.Name, tr.Destination, r.o.Partition.Count)
	}
	for _, s := range cfg.Subjects {
		if !subjectWithin(s, tr.Source) {
			return nil, fmt.Errorf("%w: %s: source.partitioned_by_subject: stream %s captures %s, which its subject transform (on %s) leaves out of every partition",
				ErrStopped, r.p.Name, cfg.Name, s, tr.Source)
		}
	}
	r.bySubject = true
	return []string{config.PartitionSubject(pc.Source.Subjects, r.o.Partition.Index)}, nil
}

// subjectWithin tells whether every subject that filter sub matches is matched by filter
// within ("" matches everything, as in a subject transform).
func subjectWithin(sub, within string) bool {
	if within == "" || within == ">" {
		return true
	}
	st, wt := strings.Split(sub, "."), strings.Split(within, ".")
	for i, w := range wt {
		if w == ">" {
			return i < len(st)
		}
		if i >= len(st) || st[i] == ">" || w != "*" && (st[i] == "*" || st[i] != w) {
			return false
		}
	}
	return len(st) == len(wt)
}
