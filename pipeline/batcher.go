package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/pipeline/source"
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

// feed is where the batcher takes events from: the pipeline's source.
type feed interface {
	// Next returns the next message at hand, false when there is none: then wait on Ready.
	Next() (source.Msg, bool)
	// AtHand returns up to n of the next messages without taking them.
	AtHand(n int) []source.Msg
	Ready() <-chan struct{}
	// Empty tells whether no message is at hand.
	Empty() bool
	// Errs delivers the error that ends the run.
	Errs() <-chan error
}

// stage is what the batcher does with events and batches: the runner.
type stage interface {
	// process adds the effects of m to b.
	process(b *batch, m source.Msg) error
	// over tells whether the state cache is over its bound with keys no commit has written:
	// the batch must be committed before it takes more.
	over() bool
	// beginBurst and endBurst frame a burst of events taken from f (reads ahead of them).
	beginBurst(f feed)
	endBurst()
	// commit seals b and starts its commit.
	commit(ctx context.Context, b *batch) *job
	// committed is called when j's commit has ended. It returns the error that ends the
	// run (the commit's, or an event's under on_error: stop), and whether the pipeline
	// reached the end of its stream (stop: end).
	committed(j *job) (end bool, err error)
	// quiet is called while the feed has been idle for the batcher's idleAfter (and then
	// every second or idleAfter, the shorter): it may stage effects on b, and tells whether it
	// did.
	quiet(b *batch) (bool, error)
}

// batcher cuts the events of a feed into batches and commits each while the next is
// processed. The batch in hand is due by the bounds of its regime (see [bounds]), or when it
// is `linger` old and the feed has nothing more to hand while the pipeline follows (so a light
// load commits within milliseconds and a replay in large batches). At most one commit is in
// flight; a full batch waits for it (backpressure). When ctx ends, what is processed is
// committed before run returns. It knows nothing of NATS: the runner is its stage and the
// source its feed.
type batcher struct {
	follow, catchUp bounds
	feed            feed
	stage           stage

	cur, spare *batch
	lim        bounds // of the batch in hand
	inflight   *job
	timer      *time.Timer // the batch's age
	idle       *time.Timer // the feed running dry
	// idleAfter, when set, is how long the feed may stay idle, while following, before
	// stage.quiet is called; quietT counts it down.
	idleAfter time.Duration
	quietT    *time.Timer
	quietC    <-chan time.Time
	timerC     <-chan time.Time
	idleC      <-chan time.Time
	due        bool
	end        bool // the stream's end is committed (stop: end)
}

func newBatcher(c config.Batch, f feed, s stage) *batcher {
	l := &batcher{
		follow:  bounds{size: c.Size, wait: c.MaxWait},
		catchUp: bounds{size: c.CatchUp.Size, wait: c.CatchUp.MaxWait, catchUp: true},
		feed:    f, stage: s,
		cur: &batch{}, spare: &batch{},
		timer: time.NewTimer(time.Hour), idle: time.NewTimer(linger),
	}
	l.timer.Stop()
	l.idle.Stop()
	l.lim = l.follow
	return l
}

// full tells whether the batch in hand must be committed before it takes more events: it
// reached its bounds, or the cache is over its own because its entries are changed (and so
// cannot be evicted before a commit).
func (l *batcher) full() bool {
	c := l.cur
	return c.n >= l.lim.size || c.stopErr != nil || len(c.outputs) >= l.follow.size || (c.n > 0 && l.stage.over())
}

// regime sets the bounds by how far behind the last event was. A batch that started while
// catching up and reaches the tail follows from then on: it ends when it runs dry at the head
// (see bounds.tail), or at most one follow batch (size and wait) later. What it took while
// catching up then commits with the tail in one commit, instead of one commit now and a second
// one for the tail, which could only start once the first had ended. Events that arrive after
// the switch wait no longer than under the follow bounds.
func (l *batcher) regime() {
	if l.lim.catchUp && l.cur.pending < uint64(l.follow.size) {
		l.lim = bounds{size: min(l.cur.n+l.follow.size, l.catchUp.size), wait: l.follow.wait, tail: true}
		l.timer.Reset(l.follow.wait)
		l.idle.Reset(linger)
		l.timerC, l.idleC = l.timer.C, l.idle.C
	}
}

// wait ends the commit in flight, if any, and returns its error.
func (l *batcher) wait() error {
	if l.inflight == nil {
		return nil
	}
	<-l.inflight.done
	j := l.inflight
	l.inflight = nil
	l.spare = j.b
	end, err := l.stage.committed(j)
	l.end = l.end || end
	return err
}

// launch starts the commit of the batch in hand.
func (l *batcher) launch(ctx context.Context) {
	l.inflight = l.stage.commit(ctx, l.cur)
	l.cur, l.spare = l.spare, nil
	l.cur.reset()
	l.timer.Stop()
	l.idle.Stop()
	l.timerC, l.idleC, l.due = nil, nil, false
	l.lim = l.follow
}

// drain commits what is in hand and waits for it: the way out on every exit.
func (l *batcher) drain(ctx context.Context) error {
	if err := l.wait(); err != nil {
		return err
	}
	if l.cur.due() {
		l.launch(ctx)
		return l.wait()
	}
	return nil
}

// take processes the events at hand, at most burstLen of them so that the timers and the
// commit in flight are looked at often. It returns how many it took.
func (l *batcher) take() (int, error) {
	if !l.full() {
		l.stage.beginBurst(l.feed)
	}
	defer l.stage.endBurst()
	n := 0
	for n < burstLen && !l.full() {
		m, ok := l.feed.Next()
		if !ok {
			break
		}
		n++
		empty := l.cur.n == 0
		if err := l.stage.process(l.cur, m); err != nil {
			return n, err
		}
		if empty && l.cur.n > 0 {
			// the batch's first event (a redelivery skipped before it does not count)
			l.due = false
			l.cur.began = time.Now()
			if l.cur.pending >= uint64(l.follow.size) {
				l.lim = l.catchUp
			}
			l.timer.Reset(l.lim.wait)
			l.timerC = l.timer.C
			if l.lim.catchUp {
				l.idle.Stop()
				l.idleC = nil
			} else {
				l.idle.Reset(min(linger, l.lim.wait))
				l.idleC = l.idle.C
			}
		}
	}
	if n > 0 {
		l.regime()
		l.armQuiet(l.idleAfter)
	}
	return n, nil
}

// run processes the feed until ctx ends (nil, after committing what is in hand; nothing more
// once the lease is lost), the end of the stream is committed (errCaughtUp), or an error.
// armQuiet (re)starts the idle countdown for d, when the batcher has one.
func (l *batcher) armQuiet(d time.Duration) {
	if l.idleAfter <= 0 {
		return
	}
	if l.quietT == nil {
		l.quietT = time.NewTimer(d)
	} else {
		l.quietT.Reset(d)
	}
	l.quietC = l.quietT.C
}

func (l *batcher) run(ctx context.Context) error {
	l.armQuiet(l.idleAfter)
	defer func() {
		if l.quietT != nil {
			l.quietT.Stop()
		}
	}()
	for {
		var jobDone chan struct{}
		if l.inflight != nil {
			jobDone = l.inflight.done
		}
		n, err := l.take()
		if err != nil {
			_ = l.wait()
			return err
		}
		ready := l.feed.Ready()
		switch {
		case n > 0:
			ready = closed // events keep coming: look at the rest without waiting
		case l.full():
			ready = nil // backpressure: the batch waits for the commit in flight
		}
		select {
		case <-ready:
		case <-l.timerC:
			l.timerC, l.due = nil, true
		case <-l.idleC:
			if l.feed.Empty() && (!l.lim.tail || l.cur.pending == 0) { // dry
				l.idleC, l.due = nil, true
			} else {
				l.idle.Reset(linger)
			}
		case <-l.quietC:
			if !l.lim.catchUp && l.feed.Empty() {
				ticked, err := l.stage.quiet(l.cur)
				if err != nil {
					_ = l.wait()
					return err
				}
				if ticked {
					l.cur.ticked, l.due = true, true
				}
			}
			l.armQuiet(min(l.idleAfter, time.Second))
		case <-jobDone:
			if err := l.wait(); err != nil {
				return err
			}
			if l.end {
				if err := l.drain(ctx); err != nil {
					return err
				}
				return errCaughtUp
			}
		case err := <-l.feed.Errs():
			_ = l.wait()
			return err
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
				_ = l.wait()
				return nil // another process owns the pipeline now: do not commit more
			}
			return l.drain(ctx)
		}
		if l.inflight == nil && l.cur.due() && (l.due || l.full()) {
			if errors.Is(context.Cause(ctx), checkpoint.ErrLeaseLost) {
				return nil // another process owns the pipeline now: commit nothing more
			}
			l.launch(ctx)
		}
	}
}
