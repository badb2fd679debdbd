package status

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/streams"
)

// Status is what `processor status` and GET /v1/pipelines report of a pipeline.
type Status struct {
	Pipeline string `json:"pipeline"`
	Stream   string `json:"stream"`
	// Checkpoint is the last committed source sequence (0: never committed).
	Checkpoint uint64 `json:"checkpoint"`
	// Head is the stream's last sequence.
	Head uint64 `json:"head"`
	// Lag is the number of source events after the checkpoint that the pipeline will read.
	Lag uint64 `json:"lag"`
	// Keys is the number of keys per projection.
	Keys map[string]uint64 `json:"keys"`
	// DeadLetters is the number of dead letters on the pipeline's dead-letter subject.
	DeadLetters uint64 `json:"dead_letters"`
	// LastCommit is the wall time of the last commit.
	LastCommit *time.Time `json:"last_commit,omitempty"`
	// State is the pipeline's state as the process running it last reported it (see
	// [Health]): running, failing, standby, stopped, or empty when no process ever ran it.
	State string `json:"state,omitempty"`
	// Error is the error that repeats while the pipeline is failing.
	Error string `json:"error,omitempty"`
	// Since is when the pipeline entered State.
	Since *time.Time `json:"since,omitempty"`
	// Instance is the process that reported State.
	Instance string `json:"instance,omitempty"`
	// Versions is the current version of each projection rebuilt at least once (see
	// checkpoint.Current).
	Versions map[string]int `json:"versions,omitempty"`
	// Rebuild is the rebuild in progress (or interrupted), if any.
	Rebuild *Rebuild `json:"rebuild,omitempty"`
	// Paused is set while the pipeline is asked to pause (processor pause), by PausedBy.
	Paused   bool   `json:"paused,omitempty"`
	PausedBy string `json:"paused_by,omitempty"`
	// Partitions holds each partition of a partitioned pipeline (config partitions); then
	// Checkpoint is the lowest of theirs, Lag counts from it (or, for a source partitioned by
	// subject, is the sum of theirs), LastCommit is the latest, and
	// State is failing when one is, else running when one is.
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is the status of one partition of a pipeline.
type Partition struct {
	Partition  int        `json:"partition"`
	Checkpoint uint64     `json:"checkpoint"`
	Lag        uint64     `json:"lag"`
	LastCommit *time.Time `json:"last_commit,omitempty"`
	// State and Instance are as the process that runs the partition last reported them:
	// Instance is the replica that holds it while State is running.
	State    string     `json:"state,omitempty"`
	Since    *time.Time `json:"since,omitempty"`
	Instance string     `json:"instance,omitempty"`
}

// Rebuild is where a rebuild of the pipeline is.
type Rebuild struct {
	// Version is the version it writes, Checkpoint the last source sequence it committed,
	// Started when it started and By which process.
	Version    int       `json:"version"`
	Checkpoint uint64    `json:"checkpoint"`
	Started    time.Time `json:"started"`
	By         string    `json:"by,omitempty"`
}

// WithHealth returns st with the state, error, since and instance of h.
func (st Status) WithHealth(h Health) Status {
	st.State, st.Error, st.Instance = h.State, h.Error, h.Instance
	if !h.Since.IsZero() {
		t := h.Since
		st.Since = &t
	}
	return st
}

// Of names what [Read] reports on.
type Of struct {
	// Pipeline is the pipeline's name, Stream its source stream.
	Pipeline, Stream string
	// Subjects filter the source (all when empty); Projections are those it writes.
	Subjects, Projections []string
	// Partitions is the pipeline's number of partitions (0 or 1: not partitioned).
	Partitions int
	// PartitionSubjects, when set, gives the subjects partition i reads (a source partitioned
	// by subject): a partition's lag counts those only, and the pipeline's is their sum.
	PartitionSubjects func(i int) []string
}

// Read reads the status of pipeline p from NATS; it does not need p to be running. A source
// stream that does not exist yet is a pipeline not started.
func Read(ctx context.Context, js jetstream.JetStream, p Of) (Status, error) {
	st := Status{Pipeline: p.Pipeline, Stream: p.Stream, Keys: map[string]uint64{}}
	stream, err := js.Stream(ctx, st.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, nil // not started yet: `run` creates the declared streams
	}
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", st.Stream, err)
	}
	st.Head = stream.CachedInfo().State.LastSeq
	kv, kvErr := js.KeyValue(ctx, streams.CheckpointBucket)
	var cps *checkpoint.Store // nil: no checkpoint bucket
	if kvErr == nil {
		cps = checkpoint.NewStore(kv)
		if p.Partitions > 1 {
			// The partitions' checkpoints, read below, are the pipeline's.
		} else if cp, err := cps.Load(ctx, p.Pipeline); err == nil {
			st.Checkpoint = cp.Seq
			t := cp.Committed
			st.LastCommit = &t
		} else if !errors.Is(err, checkpoint.ErrNotFound) {
			return st, err
		}
		if rb, err := cps.Load(ctx, checkpoint.RebuildKey(p.Pipeline)); err == nil && rb.Rebuild != nil {
			st.Rebuild = &Rebuild{Version: rb.Rebuild.Version, Checkpoint: rb.Seq, Started: rb.Rebuild.Started, By: rb.Rebuild.By}
		} else if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
			return st, err
		}
	}
	if p.Partitions > 1 {
		if kvErr != nil && !errors.Is(kvErr, jetstream.ErrBucketNotFound) {
			return st, fmt.Errorf("checkpoints: %w", kvErr)
		}
		if err := readPartitions(ctx, js, stream, cps, p, &st); err != nil {
			return st, err
		}
	}
	st.Lag = st.Head - min(st.Checkpoint, st.Head)
	if p.Partitions > 1 && p.PartitionSubjects != nil {
		st.Lag = 0
		for _, ps := range st.Partitions {
			st.Lag += ps.Lag
		}
	} else if len(p.Subjects) > 0 && st.Checkpoint < st.Head {
		// Only events that match the filter count.
		n, err := CountAfter(ctx, stream, p.Subjects, st.Checkpoint)
		if err != nil {
			return st, err
		}
		st.Lag = n
	}
	if name, err := js.StreamNameBySubject(ctx, streams.DLQSubject(p.Pipeline)); err == nil {
		if s, err := js.Stream(ctx, name); err == nil {
			if st.DeadLetters, err = CountAfter(ctx, s, []string{streams.DLQSubject(p.Pipeline)}, 0); err != nil {
				return st, err
			}
		}
	}
	if c, err := control.Get(ctx, js, p.Pipeline); err != nil {
		return st, err
	} else if c.Paused {
		st.Paused, st.PausedBy = true, c.By
	}
	if p.Partitions <= 1 {
		if h, ok, err := readHealth(ctx, js, p.Pipeline); err != nil {
			return st, fmt.Errorf("health: %w", err)
		} else if ok {
			st = st.WithHealth(h)
		}
	}
	for _, proj := range p.Projections {
		cur, err := checkpoint.Current(ctx, js, proj)
		if err != nil {
			return st, err
		}
		if cur.Version > 1 {
			if st.Versions == nil {
				st.Versions = map[string]int{}
			}
			st.Versions[proj] = cur.Version
		}
		s, err := js.Stream(ctx, streams.KVStream(cur.Bucket))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st.Keys[proj] = 0
			continue
		}
		if err != nil {
			return st, fmt.Errorf("projection %s: %w", proj, err)
		}
		st.Keys[proj] = s.CachedInfo().State.Msgs
	}
	return st, nil
}

// readPartitions reads the checkpoint (from cps, nil when there is no checkpoint bucket) and
// health of each partition of p into st.Partitions, and sums them up in st (see
// Status.Partitions).
func readPartitions(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, cps *checkpoint.Store, p Of, st *Status) error {
	st.Checkpoint, st.LastCommit = 0, nil
	for i := range p.Partitions {
		key := checkpoint.PartitionKey(p.Pipeline, i)
		ps := Partition{Partition: i}
		if cps != nil {
			cp, err := cps.Load(ctx, key)
			switch {
			case err == nil:
				ps.Checkpoint = cp.Seq
				t := cp.Committed
				ps.LastCommit = &t
				if st.LastCommit == nil || t.After(*st.LastCommit) {
					st.LastCommit = &t
				}
			case !errors.Is(err, checkpoint.ErrNotFound):
				return err
			}
		}
		ps.Lag = st.Head - min(ps.Checkpoint, st.Head)
		// Only the subjects the partition reads count: its own (partitioned by subject), or
		// the source's filter.
		subjects := p.Subjects
		if p.PartitionSubjects != nil {
			subjects = p.PartitionSubjects(i)
		}
		if len(subjects) > 0 && ps.Lag > 0 {
			n, err := CountAfter(ctx, stream, subjects, ps.Checkpoint)
			if err != nil {
				return fmt.Errorf("lag of partition %d: %w", i, err)
			}
			ps.Lag = n
		}
		if i == 0 || ps.Checkpoint < st.Checkpoint {
			st.Checkpoint = ps.Checkpoint
		}
		h, ok, err := readHealth(ctx, js, key)
		if err != nil {
			return fmt.Errorf("health of partition %d: %w", i, err)
		}
		if ok {
			ps.State, ps.Instance = h.State, h.Instance
			if !h.Since.IsZero() {
				t := h.Since
				ps.Since = &t
			}
			switch {
			case st.State == Failing:
			case h.State == Failing:
				st.State, st.Error = Failing, h.Error
			case h.State == Running || st.State == "":
				st.State = h.State
			}
		}
		st.Partitions = append(st.Partitions, ps)
	}
	return nil
}

// CountAfter counts the messages on subjects (none: all) after seq, with a short-lived
// ordered consumer's pending count.
func CountAfter(ctx context.Context, s jetstream.Stream, subjects []string, seq uint64) (uint64, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1,
	})
	if err != nil {
		return 0, fmt.Errorf("count pending: %w", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("count pending: %w", err)
	}
	return info.NumPending, nil
}
