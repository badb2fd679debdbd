package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
)

// job is a commit running on its own goroutine.
type job struct {
	b    *batch
	done chan struct{}
	err  error
}

// linger is how long a batch waits for more events once the source has none to hand: short
// enough for low latency under light load, long enough not to commit every event.
const linger = 5 * time.Millisecond

// burstLen is how many waiting events are processed in a row before the loop looks at its
// timers and the commit in flight again.
const burstLen = 256

// runOnce sets the pipeline up from its checkpoint, then processes events as they arrive
// while the previous batch commits. A batch is due when it holds batch.size events, when it
// is batch.max_wait old, or when it is `linger` old and the source has nothing more to hand
// (so a light load commits within milliseconds and a heavy one in large batches). At most
// one commit is in flight; a full batch waits for it (backpressure). When ctx ends, what is
// processed is committed before runOnce returns.
func (r *Runner) runOnce(ctx context.Context) error {
	cons, err := r.start(ctx)
	if err != nil {
		return err
	}
	if r.done {
		return errCaughtUp
	}
	src := newSource(cons, r.p.Config.Batch, r.log)
	if err := src.start(); err != nil {
		return err
	}
	defer src.stop()
	// Loads of state go on while ctx ends (the batch in hand is finished and committed).
	r.exec.Ctx = context.WithoutCancel(ctx)

	size, maxWait := r.p.Config.Batch.Size, r.p.Config.Batch.MaxWait
	cur, spare := &batch{}, &batch{}
	var inflight *job
	timer := time.NewTimer(maxWait)
	timer.Stop()
	idle := time.NewTimer(linger)
	idle.Stop()
	var timerC, idleC <-chan time.Time
	due := false

	// wait ends the commit in flight, if any, and returns its error.
	wait := func() error {
		if inflight == nil {
			return nil
		}
		<-inflight.done
		j := inflight
		inflight = nil
		r.cache.committed(j.b.writes)
		r.m.StateKeys.WithLabelValues(r.p.Name).Set(float64(r.cache.len()))
		spare = j.b
		if j.err != nil {
			return j.err
		}
		r.committed = true
		if j.b.stopErr != nil {
			r.log.Error("stopping on error (on_error: stop)", "err", j.b.stopErr)
			return j.b.stopErr
		}
		if r.p.Config.Source.Stop == "end" && j.b.pending == 0 {
			r.done = true
		}
		return nil
	}
	// launch seals cur and starts its commit.
	launch := func() {
		r.seal(cur)
		inflight = r.startCommit(ctx, cur)
		cur, spare = spare, nil
		cur.reset()
		timer.Stop()
		idle.Stop()
		timerC, idleC, due = nil, nil, false
	}
	// drain commits what is in hand and waits for it: the way out on every exit.
	drain := func() error {
		if err := wait(); err != nil {
			return err
		}
		if cur.n > 0 || cur.stopErr != nil {
			launch()
			return wait()
		}
		return nil
	}

	for {
		full := cur.n >= size || cur.stopErr != nil
		in := src.ch
		if full {
			in = nil // backpressure: the batch waits for the commit in flight
		}
		var jobDone chan struct{}
		if inflight != nil {
			jobDone = inflight.done
		}
		select {
		case m := <-in:
			if cur.n == 0 && timerC == nil {
				timer.Reset(maxWait)
				idle.Reset(min(linger, maxWait))
				timerC, idleC = timer.C, idle.C
			}
			if err := r.processMsg(cur, m); err != nil {
				_ = wait()
				return err
			}
			// Take what else is at hand without going through the full select each time;
			// a bounded burst, so the timers and the commit in flight are looked at often.
		burst:
			for range burstLen {
				if cur.n >= size || cur.stopErr != nil {
					break
				}
				select {
				case m := <-in:
					if err := r.processMsg(cur, m); err != nil {
						_ = wait()
						return err
					}
				default:
					break burst
				}
			}
		case <-timerC:
			timerC, due = nil, true
		case <-idleC:
			if len(src.ch) == 0 {
				idleC, due = nil, true
			} else {
				idle.Reset(linger)
			}
		case <-jobDone:
			if err := wait(); err != nil {
				return err
			}
			if r.done {
				if err := drain(); err != nil {
					return err
				}
				return errCaughtUp
			}
		case err := <-src.errs:
			_ = wait()
			return err
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
				_ = wait()
				return nil // another process owns the pipeline now: do not commit more
			}
			return drain()
		}
		if inflight == nil && (cur.n > 0 || cur.stopErr != nil) &&
			(due || cur.n >= size || cur.stopErr != nil) {
			if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
				return nil // another process owns the pipeline now: commit nothing more
			}
			launch()
		}
	}
}

// startCommit commits b on its own goroutine. The commit finishes even if ctx ends (SIGTERM:
// what is in flight is committed), but not when the lease is lost: another process owns the
// pipeline then.
func (r *Runner) startCommit(ctx context.Context, b *batch) *job {
	j := &job{b: b, done: make(chan struct{})}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
			cancel()
		}
	})
	go func() {
		defer close(j.done)
		defer cancel()
		defer stop()
		j.err = r.commit(wctx, b)
	}()
	return j
}
