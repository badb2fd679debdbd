package pipeline

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
	// StateRunning: the pipeline processes its source, or starts to.
	StateRunning = "running"
	// StateFailing: the pipeline cannot make progress; it keeps retrying (`stop: follow`) or
	// has stopped with the error (`stop: end`).
	StateFailing = "failing"
	// StateStandby: another process holds the pipeline's lease; this one waits to take over.
	StateStandby = "standby"
	// StateStopped: the process stopped the pipeline (SIGTERM, the end of its stream).
	StateStopped = "stopped"
)

// failAfter is how many restarts in a row, each without a commit and with NATS connected,
// make a pipeline failing. With the restart backoff (200ms, doubling) that is about 6 s of
// the same trouble. Time spent disconnected from NATS does not count: that is retried
// forever and shown by /readyz and the connection's own logs.
const failAfter = 5

// ErrFailing is returned by [Runner.Run] for a `stop: end` pipeline that became failing: it
// wraps the error that kept repeating.
var ErrFailing = errors.New("pipeline failing")

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
		if h.State == StateFailing {
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

// setHealth moves the pipeline to state (with the error while failing): on a change it
// updates the board, the jetfold_pipeline_failing gauge and the health bucket, and logs one
// line (ERROR when it becomes failing). The same state again changes nothing, so a retry
// does not log.
func (r *Runner) setHealth(state string, cause error) {
	if r.health.State == state {
		return
	}
	prev := r.health.State
	h := Health{State: state, Since: time.Now().UTC(), Instance: r.o.Instance}
	if cause != nil && state == StateFailing {
		h.Error = cause.Error()
	}
	r.health = h
	if r.o.Board != nil {
		r.o.Board.Set(r.p.Name, h)
	}
	failing := 0.0
	switch state {
	case StateFailing:
		failing = 1
		r.log.Error("pipeline failing: the same trouble repeats at every restart", "restarts", failAfter, "err", cause)
	case StateRunning:
		if prev == StateFailing {
			r.log.Info("pipeline recovered: committing again")
		}
	}
	r.m.Failing.WithLabelValues(r.p.Name).Set(failing)
	r.writeHealth(h)
}

// writeHealth stores h in the health bucket, for `processor status` and GET /v1/pipelines of
// other processes. It is best effort: a NATS in trouble may refuse it.
func (r *Runner) writeHealth(h Health) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := streams.EnsureBucket(ctx, r.o.JS, streams.HealthBucket)
	if err == nil {
		data, _ := json.Marshal(h)
		_, err = kv.Put(ctx, r.p.Name, data)
	}
	if err != nil {
		r.log.Debug("health not stored", "state", h.State, "err", err)
	}
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
