package status

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// States of a pipeline, as [Health] reports them.
const (
	// Running: the pipeline processes its source, or starts to.
	Running = "running"
	// Failing: the pipeline cannot make progress; it keeps retrying (`stop: follow`) or
	// has stopped with the error (`stop: end`).
	Failing = "failing"
	// Standby: another process holds the pipeline's lease; this one waits to take over.
	Standby = "standby"
	// Stopped: the process stopped the pipeline (SIGTERM, the end of its stream).
	Stopped = "stopped"
	// Paused: an operator paused the pipeline (processor pause): it reads nothing until
	// resumed.
	Paused = "paused"
)

// Health is what the process running a pipeline reports of it.
type Health struct {
	State string `json:"state"`
	// Error is the last error while failing.
	Error string `json:"error,omitempty"`
	// Since is when the pipeline entered State.
	Since time.Time `json:"since"`
	// Instance is the process that reports it (processor.instance).
	Instance string `json:"instance,omitempty"`
}

// Board holds the health of the pipelines of a process, for the HTTP API and readiness. It is
// safe for concurrent use; the zero value is not: use [NewBoard].
type Board struct {
	mu sync.Mutex
	m  map[string]Health
}

// NewBoard returns an empty board.
func NewBoard() *Board { return &Board{m: map[string]Health{}} }

// Get returns the health of pipeline, and false when no runner reported it.
func (b *Board) Get(pipeline string) (Health, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.m[pipeline]
	return h, ok
}

// Failing returns the names of the failing pipelines, sorted.
func (b *Board) Failing() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for name, h := range b.m {
		if h.State == Failing {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Set records the health of pipeline. Runners call it on every change of state.
func (b *Board) Set(pipeline string, h Health) {
	b.mu.Lock()
	b.m[pipeline] = h
	b.mu.Unlock()
}

// Store stores h as the health of pipeline in the health bucket, for `processor status` and
// GET /v1/pipelines of other processes.
func Store(ctx context.Context, js jetstream.JetStream, pipeline string, h Health) error {
	kv, err := streams.EnsureBucket(ctx, js, streams.HealthBucket)
	if err != nil {
		return err
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, pipeline, data)
	return err
}

// readHealth reads the health a process stored for pipeline; ok is false when there is none.
func readHealth(ctx context.Context, js jetstream.JetStream, pipeline string) (h Health, ok bool, err error) {
	kv, err := js.KeyValue(ctx, streams.HealthBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return h, false, nil
	}
	if err != nil {
		return h, false, err
	}
	e, err := kv.Get(ctx, pipeline)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return h, false, nil
	}
	if err != nil {
		return h, false, err
	}
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return h, false, err
	}
	return h, true, nil
}
