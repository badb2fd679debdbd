package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/jetfold/jetfold/pipeline/status"
)

// failAfter is how many restarts in a row, each without a commit and with NATS connected,
// make a pipeline failing. With the restart backoff (200ms, doubling) that is about 6 s of
// the same trouble. Time spent disconnected from NATS does not count: that is retried
// forever and shown by /readyz and the connection's own logs.
const failAfter = 5

// ErrFailing is returned by [Runner.Run] for a `stop: end` pipeline that became failing: it
// wraps the error that kept repeating.
var ErrFailing = errors.New("pipeline failing")

// setHealth moves the pipeline to state (with the error while failing): on a change it
// updates the board, the jetfold_pipeline_failing gauge and the health bucket, and logs one
// line (ERROR when it becomes failing). The same state again changes nothing, so a retry
// does not log.
func (r *Runner) setHealth(state string, cause error) {
	if r.health.State == state {
		return
	}
	prev := r.health.State
	h := status.Health{State: state, Since: time.Now().UTC(), Instance: r.o.Instance}
	if cause != nil && state == status.Failing {
		h.Error = cause.Error()
	}
	r.health = h
	if r.o.Board != nil {
		r.o.Board.Set(r.ownKey(), h) // a partition's under its own name (checkpoint.PartitionKey)
	}
	failing := 0.0
	switch state {
	case status.Failing:
		failing = 1
		r.log.Error("pipeline failing: the same trouble repeats at every restart", "restarts", failAfter, "err", cause)
	case status.Running:
		if prev == status.Failing {
			r.log.Info("pipeline recovered: committing again")
		}
	}
	r.mx.failing.Set(failing)
	paused := 0.0
	if state == status.Paused {
		paused = 1
	}
	r.mx.paused.Set(paused)
	r.writeHealth(h)
}

// writeHealth stores h in the health bucket, for `processor status` and GET /v1/pipelines of
// other processes. It is best effort: a NATS in trouble may refuse it.
func (r *Runner) writeHealth(h status.Health) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := status.Store(ctx, r.o.JS, r.ownKey(), h); err != nil {
		r.log.Debug("health not stored", "state", h.State, "err", err)
	}
}
