package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/status"
)

// job is a commit running on its own goroutine.
type job struct {
	b    *batch
	done chan struct{}
	err  error
}

// linger is how long a batch waits for more events once the source runs dry (none at hand):
// short enough for low latency under light load, long enough not to commit every event.
const linger = 5 * time.Millisecond

// bounds are the limits of a batch in one regime: following the source (the pipeline is
// less than a batch behind) or catching up (a replay or a backlog: larger batches write each
// busy key once for more events).
type bounds struct {
	size    int           // most events
	wait    time.Duration // oldest the batch gets
	catchUp bool
	// tail is set for a catch-up batch that reached the tail: it runs dry only at the head
	// (the last event said none was waiting), as with both cores busy the source's buffer
	// can be empty for a moment in a backlog.
	tail bool
}

// closed is a channel that is always ready, for a select that must not wait.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// burstLen is how many waiting events are processed in a row before the loop looks at its
// timers and the commit in flight again.
const burstLen = 256

// runOnce sets the pipeline up from its checkpoint, then processes events as they arrive
// while the previous batch commits. The batch in hand is due by the bounds of its regime (see
// [bounds]), or when it is `linger` old and the source has nothing more to hand while the
// pipeline follows (so a light load commits within milliseconds and a replay in large
// batches). At most one commit is in flight; a full batch waits for it (backpressure). When
// ctx ends, what is processed is committed before runOnce returns.
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

	bs := r.p.Config.Batch
	follow := bounds{size: bs.Size, wait: bs.MaxWait}
	catchUp := bounds{size: bs.CatchUp.Size, wait: bs.CatchUp.MaxWait, catchUp: true}
	cur, spare := &batch{}, &batch{}
	lim := follow // the bounds of the batch in hand
	var inflight *job
	timer := time.NewTimer(follow.wait)
	timer.Stop()
	idle := time.NewTimer(linger)
	idle.Stop()
	var timerC, idleC <-chan time.Time
	due := false

	// full tells whether the batch in hand must be committed before it takes more events:
	// it reached its bounds, or the cache is over its own because its entries are changed
	// (and so cannot be evicted before a commit).
	full := func() bool {
		return cur.n >= lim.size || cur.stopErr != nil ||
			len(cur.outputs) >= follow.size || (cur.n > 0 && r.store.Over())
	}
	// regime sets the bounds by how far behind the last event was. A batch that started
	// while catching up and reaches the tail follows from then on: it ends when it runs dry
	// at the head (see bounds.tail), or at most one follow batch (size and wait) later. What it
	// took while catching up then commits with the tail in one commit, instead of one commit
	// now and a second one for the tail, which could only start once the first had ended.
	// Events that arrive after the switch wait no longer than under the follow bounds.
	regime := func() {
		if lim.catchUp && cur.pending < uint64(follow.size) {
			lim = bounds{size: min(cur.n+follow.size, catchUp.size), wait: follow.wait, tail: true}
			timer.Reset(follow.wait)
			idle.Reset(linger)
			timerC, idleC = timer.C, idle.C
		}
	}

	// wait ends the commit in flight, if any, and returns its error.
	wait := func() error {
		if inflight == nil {
			return nil
		}
		<-inflight.done
		j := inflight
		inflight = nil
		r.store.Committed(j.b.writes)
		r.m.StateKeys.WithLabelValues(r.p.Name).Set(float64(r.store.Len()))
		spare = j.b
		if j.err != nil {
			return j.err
		}
		r.committed = true
		if r.health.State != status.Running {
			r.setHealth(status.Running, nil)
		}
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
		if !cur.began.IsZero() {
			r.m.BatchDuration.WithLabelValues(r.p.Name).Observe(time.Since(cur.began).Seconds())
		}
		r.seal(cur)
		inflight = r.startCommit(ctx, cur)
		cur, spare = spare, nil
		cur.reset()
		timer.Stop()
		idle.Stop()
		timerC, idleC, due = nil, nil, false
		lim = follow
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

	// take processes the events at hand, at most burstLen of them so that the timers and the
	// commit in flight are looked at often. It returns how many it took.
	take := func() (int, error) {
		if !full() {
			r.readAhead(src)
		}
		defer r.readsDone()
		n := 0
		for n < burstLen && !full() {
			m, ok := src.Next()
			if !ok {
				break
			}
			n++
			empty := cur.n == 0
			if err := r.processMsg(cur, m); err != nil {
				return n, err
			}
			if empty && cur.n > 0 {
				// the batch's first event (a redelivery skipped before it does not count)
				due = false
				cur.began = time.Now()
				if cur.pending >= uint64(follow.size) {
					lim = catchUp
				}
				timer.Reset(lim.wait)
				timerC = timer.C
				if lim.catchUp {
					idle.Stop()
					idleC = nil
				} else {
					idle.Reset(min(linger, lim.wait))
					idleC = idle.C
				}
			}
		}
		if n > 0 {
			regime()
		}
		return n, nil
	}
	for {
		var jobDone chan struct{}
		if inflight != nil {
			jobDone = inflight.done
		}
		n, err := take()
		if err != nil {
			_ = wait()
			return err
		}
		ready := src.Ready()
		switch {
		case n > 0:
			ready = closed // events keep coming: look at the rest without waiting
		case full():
			ready = nil // backpressure: the batch waits for the commit in flight
		}
		select {
		case <-ready:
		case <-timerC:
			timerC, due = nil, true
		case <-idleC:
			if src.Empty() && (!lim.tail || cur.pending == 0) { // dry
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
		case err := <-src.Errs():
			_ = wait()
			return err
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
				_ = wait()
				return nil // another process owns the pipeline now: do not commit more
			}
			return drain()
		}
		if inflight == nil && (cur.n > 0 || cur.stopErr != nil) && (due || full()) {
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
		began := time.Now()
		defer close(j.done)
		defer cancel()
		defer stop()
		res, err := r.committer.Commit(wctx, commit.Batch{Outputs: b.outputs, Writes: b.writes, LastSeq: b.lastSeq, Ack: b.ackMsg, Watermark: b.watermark})
		if j.err = err; err == nil && b.lastSeq > 0 {
			r.report(b, time.Since(began), res)
		}
	}()
	return j
}

// report updates the metrics and calls OnCommit after a commit.
func (r *Runner) report(b *batch, d time.Duration, res commit.Result) {
	name := r.p.Name
	r.m.Refused.WithLabelValues(name).Add(float64(res.Refused))
	r.m.CommitDuration.WithLabelValues(name).Observe(d.Seconds())
	r.m.Checkpoint.WithLabelValues(name).Set(float64(b.lastSeq))
	r.m.Pending.WithLabelValues(name).Set(float64(b.pending))
	r.m.Emitted.WithLabelValues(name).Add(float64(b.emitted))
	for i, n := range b.counts {
		if n > 0 {
			r.m.Events.WithLabelValues(name, result(i).String()).Add(float64(n))
		}
	}
	if !b.oldest.IsZero() {
		r.m.Latency.WithLabelValues(name).Observe(time.Since(b.oldest).Seconds())
	}
	r.total += b.events()
	if r.o.OnCommit != nil {
		r.o.OnCommit(CommitInfo{Pipeline: name, Seq: b.lastSeq, Events: b.events(), Total: r.total,
			Pending: b.pending, Keys: len(b.writes), Outputs: res.Outputs, Duration: d})
	}
}
