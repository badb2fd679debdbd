package batch

import (
	"context"
	"errors"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
)

// linger is how long a batch waits for more events once the source runs dry (none at hand):
// short enough for low latency under light load, long enough not to commit every event. At
// 10,000 events/s (`processor bench --latency`, 3 alternating runs of 15 s, quiet 2-core
// machine) 2 ms gave p50 3.4-3.8 ms and p99 21.7-22.5 ms, 5 ms p50 6.7-6.8 and p99 27.0-28.1,
// 1 ms p50 2.9-3.0 and p99 19.5-26.1 (a tail no steadier, for more commits).
const linger = 2 * time.Millisecond

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

// Loop cuts the events of a feed into batches and commits each while the next is processed.
// The batch in hand is due by the bounds of its regime (see [bounds]), or when it is `linger`
// old and the feed has nothing more to hand while the pipeline follows (so a light load
// commits within milliseconds and a replay in large batches). At most one commit is in flight;
// a full batch waits for it (backpressure). When ctx ends, what is processed is committed
// before [Loop.Run] returns. It knows nothing of NATS: the runner is its [Stage] and the source
// its [Feed]. B and P are the stage's batch type and its pointer (see [Ptr]).
type Loop[B any, P Ptr[B]] struct {
	follow, catchUp bounds
	feed            Feed
	stage           Stage[P]

	// hand is the batch in hand, cur its Batch (what the loop reads and sets of it).
	hand, spare P
	cur         *Batch
	lim         bounds // of the batch in hand
	inflight    *Job[P]
	timer       *time.Timer // the batch's age
	idle        *time.Timer // the feed running dry
	// idleAfter, when set, is how long the feed may stay idle, while following, before
	// stage.Quiet is called; quietT counts it down.
	idleAfter time.Duration
	quietT    *time.Timer
	quietC    <-chan time.Time
	timerC    <-chan time.Time
	idleC     <-chan time.Time
	due       bool
	end       bool // the stream's end is committed (stop: end)
}

// New returns a loop that cuts the messages of f into batches by c's bounds for s. When idle
// is set, s.Quiet is called once the feed has been idle that long while following (0: never).
func New[B any, P Ptr[B]](c config.Batch, idle time.Duration, f Feed, s Stage[P]) *Loop[B, P] {
	l := &Loop[B, P]{
		follow:  bounds{size: c.Size, wait: c.MaxWait},
		catchUp: bounds{size: c.CatchUp.Size, wait: c.CatchUp.MaxWait, catchUp: true},
		feed:    f, stage: s,
		hand: new(B), spare: new(B),
		timer: time.NewTimer(time.Hour), idle: time.NewTimer(linger),
		idleAfter: idle,
	}
	l.cur = l.hand.base()
	l.timer.Stop()
	l.idle.Stop()
	l.lim = l.follow
	return l
}

// full tells whether the batch in hand must be committed before it takes more events: it
// reached its bounds, or the cache is over its own because its entries are changed (and so
// cannot be evicted before a commit).
func (l *Loop[B, P]) full() bool {
	c := l.cur
	return c.N >= l.lim.size || c.Stop != nil || c.Outputs >= l.follow.size || (c.N > 0 && l.stage.Over())
}

// regime sets the bounds by how far behind the last event was. A batch that started while
// catching up and reaches the tail follows from then on: it ends when it runs dry at the head
// (see bounds.tail), or at most one follow batch (size and wait) later. What it took while
// catching up then commits with the tail in one commit, instead of one commit now and a second
// one for the tail, which could only start once the first had ended. Events that arrive after
// the switch wait no longer than under the follow bounds.
func (l *Loop[B, P]) regime() {
	if l.lim.catchUp && l.cur.Pending < uint64(l.follow.size) {
		l.lim = bounds{size: min(l.cur.N+l.follow.size, l.catchUp.size), wait: l.follow.wait, tail: true}
		l.timer.Reset(l.follow.wait)
		l.idle.Reset(linger)
		l.timerC, l.idleC = l.timer.C, l.idle.C
	}
}

// wait ends the commit in flight, if any, and returns its error.
func (l *Loop[B, P]) wait() error {
	if l.inflight == nil {
		return nil
	}
	<-l.inflight.Done
	j := l.inflight
	l.inflight = nil
	l.spare = j.Batch
	end, err := l.stage.Committed(j)
	l.end = l.end || end
	return err
}

// launch starts the commit of the batch in hand.
func (l *Loop[B, P]) launch(ctx context.Context) {
	l.inflight = l.stage.Commit(ctx, l.hand)
	l.hand, l.spare = l.spare, nil
	l.hand.Reset()
	l.cur = l.hand.base()
	l.timer.Stop()
	l.idle.Stop()
	l.timerC, l.idleC, l.due = nil, nil, false
	l.lim = l.follow
}

// drain commits what is in hand and waits for it: the way out on every exit.
func (l *Loop[B, P]) drain(ctx context.Context) error {
	if err := l.wait(); err != nil {
		return err
	}
	if l.cur.due() {
		l.launch(ctx)
		return l.wait()
	}
	return nil
}

// take processes the events at hand, at most BurstLen of them so that the timers and the
// commit in flight are looked at often. It returns how many it took.
func (l *Loop[B, P]) take() (int, error) {
	if l.full() {
		return 0, nil
	}
	// The burst takes what the batch has room for: the next batch's events would be read
	// ahead now, and the next burst would find its keys read and nothing to read ahead.
	limit := BurstLen
	if covered := l.stage.BeginBurst(l.feed, min(BurstLen, max(l.lim.size-l.cur.N, 1))); covered > 0 {
		limit = covered
	}
	n := 0
	defer func() { l.stage.EndBurst(n) }()
	for n < limit && !l.full() {
		m, ok := l.feed.Next()
		if !ok {
			break
		}
		n++
		empty := l.cur.N == 0
		if err := l.stage.Process(l.hand, m); err != nil {
			return n, err
		}
		if empty && l.cur.N > 0 {
			// the batch's first event (a redelivery skipped before it does not count)
			l.due = false
			l.cur.Began = time.Now()
			if l.cur.Pending >= uint64(l.follow.size) {
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

// armQuiet (re)starts the idle countdown for d, when the loop has one.
func (l *Loop[B, P]) armQuiet(d time.Duration) {
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

// Run processes the feed until ctx ends (nil, after committing what is in hand; nothing more
// once the lease is lost: checkpoint.ErrLeaseLost is ctx's cause), the end of the stream is
// committed ([ErrCaughtUp]), or an error.
func (l *Loop[B, P]) Run(ctx context.Context) error {
	l.armQuiet(l.idleAfter)
	defer func() {
		if l.quietT != nil {
			l.quietT.Stop()
		}
	}()
	for {
		var jobDone chan struct{}
		if l.inflight != nil {
			jobDone = l.inflight.Done
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
			if l.feed.Empty() && (!l.lim.tail || l.cur.Pending == 0) { // dry
				l.idleC, l.due = nil, true
			} else {
				l.idle.Reset(linger)
			}
		case <-l.quietC:
			if !l.lim.catchUp && l.feed.Empty() {
				ticked, err := l.stage.Quiet(l.hand)
				if err != nil {
					_ = l.wait()
					return err
				}
				if ticked {
					l.cur.Ticked, l.due = true, true
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
				return ErrCaughtUp
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
