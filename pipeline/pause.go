package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/pipeline/status"
)

// errPaused ends a run when the pipeline is paused.
var errPaused = errors.New("paused")

// runGated is run, paused while the pipeline's control entry asks it (package control): a
// pause ends the run in hand as a SIGTERM would (what is in hand is committed), and the
// pipeline reads nothing more until it is resumed. The lease, if any, stays held. A rebuild's
// run (under a checkpoint of its own) is not the pipeline's, and pauses with it not.
func (r *Runner) runGated(ctx context.Context) error {
	if r.rebuilding() {
		return r.run(ctx)
	}
	g := &gate{changed: make(chan struct{})}
	var stop func()
	for wait := firstBackoff; ; wait = min(wait*2, maxBackoff) {
		var err error
		if stop, err = control.Watch(ctx, r.o.JS, r.p.Name, g.set); err == nil {
			break
		}
		r.log.Warn("cannot read whether the pipeline is paused: retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	defer stop()
	for {
		if g.wait(ctx, func() {
			r.setHealth(status.Paused, nil)
			r.log.Info("pipeline paused: it reads nothing until resumed")
		}) {
			r.setHealth(status.Running, nil)
			r.log.Info("pipeline resumed")
		}
		if ctx.Err() != nil {
			return nil
		}
		pctx, cancel := context.WithCancelCause(ctx)
		g.arm(cancel)
		err := r.run(pctx)
		g.arm(nil)
		cancel(nil)
		if ctx.Err() == nil && errors.Is(context.Cause(pctx), errPaused) {
			continue
		}
		return err
	}
}

// gate is the pause state of a runner, as its control watch reports it.
type gate struct {
	mu      sync.Mutex
	known   bool // the watch delivered the state
	paused  bool
	changed chan struct{}           // closed at every change
	cancel  context.CancelCauseFunc // of the run in hand
}

// set records s (from the watch) and ends the run in hand when s pauses it.
func (g *gate) set(s control.State) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.known, g.paused = true, s.Paused
	close(g.changed)
	g.changed = make(chan struct{})
	if s.Paused && g.cancel != nil {
		g.cancel(errPaused)
	}
}

// arm sets the cancel function of the run in hand (nil: none).
func (g *gate) arm(cancel context.CancelCauseFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancel = cancel
	if cancel != nil && g.paused {
		cancel(errPaused) // paused between wait and arm
	}
}

// wait returns once the state is known and not paused, or ctx ends; it calls onPause when it
// finds the pipeline paused, and tells whether it did.
func (g *gate) wait(ctx context.Context, onPause func()) (waited bool) {
	for {
		g.mu.Lock()
		known, paused, ch := g.known, g.paused, g.changed
		g.mu.Unlock()
		if known && !paused {
			return waited
		}
		if paused && !waited {
			waited = true
			onPause()
		}
		select {
		case <-ctx.Done():
			return waited
		case <-ch:
		}
	}
}
