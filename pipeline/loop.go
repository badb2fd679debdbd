package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/batch"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/source"
	"github.com/jetfold/jetfold/pipeline/status"
)

// runOnce sets the pipeline up from its checkpoint, then runs the batch loop ([batch.Loop])
// over its source, with the runner as its stage, until the loop returns.
func (r *Runner) runOnce(ctx context.Context) error {
	src, err := r.start(ctx)
	if err != nil {
		return err
	}
	if r.done {
		src.Discard()
		return errCaughtUp
	}
	if err := src.Start(); err != nil {
		src.Discard()
		return err
	}
	defer src.Stop()
	// Loads of state go on while ctx ends (the batch in hand is finished and committed).
	r.exec.Ctx = context.WithoutCancel(ctx)
	r.exec.Watermark = r.watermark
	for _, st := range r.p.starters {
		if err := st.Start(&r.exec); err != nil {
			return fmt.Errorf("start operators: %w", err)
		}
	}
	return batch.New[unit](r.p.Config.Batch, r.p.Config.Idle, src, stage{r}).Run(ctx)
}

// stage is the runner as the batch loop's [batch.Stage].
type stage struct{ *Runner }

// Process implements [batch.Stage].
func (r stage) Process(b *unit, m source.Msg) error { return r.processMsg(b, m) }

// Over implements [batch.Stage].
func (r stage) Over() bool { return r.store.Over() }

// Quiet implements [batch.Stage]: while the source is idle, the watermark follows the wall
// clock (pipeline `idle`); what comes due is staged on a tick of the last sequence read. It
// tells whether the tick staged anything to commit.
func (r stage) Quiet(b *unit) (bool, error) {
	now := time.Now().UTC()
	if r.lastSeq == 0 || len(r.p.clocks) == 0 || !now.After(r.watermark) {
		return false, nil
	}
	before := len(b.outputs)
	if err := r.advanceTo(b, now, r.lastSeq, event.Live, ""); err != nil {
		return false, err
	}
	if len(b.outputs) == before && r.store.Dirty() == 0 {
		return false, nil
	}
	if b.lastSeq == 0 {
		b.lastSeq = r.lastSeq // the checkpoint stays where it is, with the new watermark
	}
	return true, nil
}

// BeginBurst implements [batch.Stage]: while reads are frequent, it reads ahead the keys of
// the events at hand.
func (r stage) BeginBurst(f batch.Feed, max int) int { return r.readAhead(f, max) }

// EndBurst implements [batch.Stage].
func (r stage) EndBurst(took int) { r.readsDone(took) }

// Commit implements [batch.Stage]: it seals b and starts its commit.
func (r stage) Commit(ctx context.Context, b *unit) *batch.Job[*unit] {
	if !b.Began.IsZero() {
		r.mx.batch.Observe(time.Since(b.Began).Seconds())
	}
	r.seal(b)
	return r.startCommit(ctx, b)
}

// Committed implements [batch.Stage].
func (r stage) Committed(j *batch.Job[*unit]) (end bool, err error) {
	b := j.Batch
	r.store.Committed(b.writes)
	r.mx.setStateKeys(r.store.Len())
	if j.Err != nil {
		return false, j.Err
	}
	r.progressed = true
	if r.health.State != status.Running {
		r.setHealth(status.Running, nil)
	}
	if errors.Is(b.Stop, errStopAt) {
		return true, nil
	}
	if b.Stop != nil {
		r.log.Error("stopping on error (on_error: stop)", "err", b.Stop)
		return false, b.Stop
	}
	return r.p.Config.Source.Stop == "end" && b.Pending == 0, nil
}

// startCommit commits b on its own goroutine. The commit finishes even if ctx ends (SIGTERM:
// what is in flight is committed), but not when the lease is lost: another process owns the
// pipeline then.
func (r *Runner) startCommit(ctx context.Context, b *unit) *batch.Job[*unit] {
	j := &batch.Job[*unit]{Batch: b, Done: make(chan struct{})}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
			cancel()
		}
	})
	go func() {
		began := time.Now()
		defer close(j.Done)
		defer cancel()
		defer stop()
		res, err := r.committer.Commit(wctx, commit.Batch{Outputs: b.outputs, Writes: b.writes, LastSeq: b.lastSeq, Ack: b.ackMsg, Watermark: b.watermark})
		if j.Err = err; err == nil && b.lastSeq > 0 {
			r.report(b, time.Since(began), res)
		}
	}()
	return j
}

// report updates the metrics and calls OnCommit after a commit.
func (r *Runner) report(b *unit, d time.Duration, res commit.Result) {
	name := r.p.Name
	r.mx.refused.Add(float64(res.Refused))
	r.mx.commit.Observe(d.Seconds())
	r.mx.setCheckpoint(b.lastSeq)
	r.mx.setPending(uint64(b.Pending))
	r.mx.emitted.Add(float64(b.emitted))
	for i, n := range b.counts {
		if n > 0 {
			r.mx.events.WithLabelValues(result(i).String()).Add(float64(n))
		}
	}
	if !b.oldest.IsZero() {
		r.mx.latency.Observe(time.Since(b.oldest).Seconds())
	}
	r.total += b.events()
	if r.o.OnCommit != nil {
		r.o.OnCommit(CommitInfo{Pipeline: name, Seq: b.lastSeq, Events: b.events(), Total: r.total,
			Pending: b.Pending, Keys: len(b.writes), Outputs: res.Outputs, Duration: d})
	}
}
