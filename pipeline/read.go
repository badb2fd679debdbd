package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// ErrNoState is returned by [ReadState] for a key without state.
var ErrNoState = errors.New("no state for key")

// State is a projection value as read back, with its metadata.
type State struct {
	Projection string          `json:"projection"`
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"state"`
	Seq        uint64          `json:"seq"`
	Revision   uint64          `json:"revision"`
	Time       *time.Time      `json:"time,omitempty"`
}

// ReadState reads the committed state of key in projection. It returns [ErrNoState] when the
// key (or the projection) has none.
func ReadState(ctx context.Context, js jetstream.JetStream, projection, key string) (State, error) {
	s, err := js.Stream(ctx, streams.KVStream(projection))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return State{}, fmt.Errorf("projection %s: %w", projection, ErrNoState)
	}
	if err != nil {
		return State{}, fmt.Errorf("projection %s: %w", projection, err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, streams.KVSubject(projection, streams.EncodeKey(key)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return State{}, fmt.Errorf("%s/%s: %w", projection, key, ErrNoState)
	}
	if err != nil {
		return State{}, fmt.Errorf("read %s/%s: %w", projection, key, err)
	}
	meta := state.ReadMeta(msg.Header)
	if meta.Deleted {
		return State{}, fmt.Errorf("%s/%s: %w", projection, key, ErrNoState)
	}
	st := State{Projection: projection, Key: key, Value: msg.Data, Revision: msg.Sequence, Seq: meta.Seq}
	if !meta.Time.IsZero() {
		st.Time = &meta.Time
	}
	return st, nil
}

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

// ReadStatus reads the status of p from NATS; it does not need p to be running.
func ReadStatus(ctx context.Context, js jetstream.JetStream, p *Pipeline) (Status, error) {
	st := Status{Pipeline: p.Name, Stream: p.Config.Source.Stream, Keys: map[string]uint64{}}
	stream, err := js.Stream(ctx, st.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, nil // not started yet: `run` creates the declared streams
	}
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", st.Stream, err)
	}
	st.Head = stream.CachedInfo().State.LastSeq
	if kv, err := js.KeyValue(ctx, streams.CheckpointBucket); err == nil {
		if cp, err := checkpoint.NewStore(kv).Load(ctx, p.Name); err == nil {
			st.Checkpoint = cp.Seq
			t := cp.Committed
			st.LastCommit = &t
		} else if !errors.Is(err, checkpoint.ErrNotFound) {
			return st, err
		}
	}
	st.Lag = st.Head - min(st.Checkpoint, st.Head)
	if len(p.Config.Source.Subjects) > 0 && st.Checkpoint < st.Head {
		// Only events that match the filter count.
		n, err := countAfter(ctx, stream, p.Config.Source.Subjects, st.Checkpoint)
		if err != nil {
			return st, err
		}
		st.Lag = n
	}
	if name, err := js.StreamNameBySubject(ctx, streams.DLQSubject(p.Name)); err == nil {
		if s, err := js.Stream(ctx, name); err == nil {
			if st.DeadLetters, err = countAfter(ctx, s, []string{streams.DLQSubject(p.Name)}, 0); err != nil {
				return st, err
			}
		}
	}
	if h, ok, err := readHealth(ctx, js, p.Name); err != nil {
		return st, fmt.Errorf("health: %w", err)
	} else if ok {
		st = st.WithHealth(h)
	}
	for _, proj := range p.Projections {
		s, err := js.Stream(ctx, streams.KVStream(proj))
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

// countAfter counts the messages on subjects after seq with a short-lived ordered consumer's
// pending count.
func countAfter(ctx context.Context, s jetstream.Stream, subjects []string, seq uint64) (uint64, error) {
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
