package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
)

// errShed is the cause of a partition's run context when its process hands the partition
// over to even out the partitions between processes (see [Share]).
var errShed = errors.New("partition handed over to even out the processes")

// Share spreads the partitions of partitioned pipelines evenly over the processes that run
// them, on top of the partitions' leases ([Options.Share]). Each process announces itself per
// pipeline (checkpoint.Leases.Announce) and takes at most its fair share of the pipeline's N
// partitions, ceil(N / processes announced); a process that holds more (another process
// joined) hands partitions over, one per TTL/4, finishing the batch in hand first. A process
// that dies drops out within the lease TTL: its partitions' leases expire, and the fair
// share of the others grows to take them. The leases stay the only fence.
type Share struct {
	leases *checkpoint.Leases
	log    *slog.Logger

	mu     sync.Mutex
	groups map[string]*shareGroup
}

// NewShare returns a Share over leases; log (nil: discard) says when partitions move.
func NewShare(leases *checkpoint.Leases, log *slog.Logger) *Share {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Share{leases: leases, log: log, groups: map[string]*shareGroup{}}
}

// shareGroup is one pipeline's partitions in this process.
type shareGroup struct {
	n    int
	mu   sync.Mutex
	fair int                             // this process's fair share (at least 1)
	held map[int]context.CancelCauseFunc // the partitions this process runs: their runs' cancel
	last int                             // the partition taken last (handed over first)
}

// group returns the share of pipeline with n partitions, starting its announcement and its
// watch of the members when it is the first call for pipeline; they end with ctx.
func (s *Share) group(ctx context.Context, pipeline string, n int) *shareGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.groups[pipeline]; ok {
		return g
	}
	g := &shareGroup{n: n, fair: n, held: map[int]context.CancelCauseFunc{}}
	s.groups[pipeline] = g
	// Announced, then counted, before any partition is taken: a process that joins running
	// ones takes its fair share only, instead of what it finds free before it knows of them.
	stop := s.leases.Announce(pipeline)
	s.update(ctx, pipeline, g)
	go func() {
		defer stop()
		tick := time.NewTicker(s.leases.TTL() / 4)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.update(ctx, pipeline, g)
		}
	}()
	return g
}

// update reads the members of pipeline, sets the fair share and hands one partition over when
// this process holds more.
func (s *Share) update(ctx context.Context, pipeline string, g *shareGroup) {
	rctx, cancel := context.WithTimeout(ctx, s.leases.TTL()/4)
	members, err := s.leases.Members(rctx, pipeline)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot read the processes running the pipeline; partitions stay where they are", "pipeline", pipeline, "err", err)
		}
		return
	}
	m := max(len(members), 1)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fair = (g.n + m - 1) / m
	if len(g.held) <= g.fair {
		return
	}
	shed := g.last
	if _, ok := g.held[shed]; !ok {
		for p := range g.held {
			shed = p
			break
		}
	}
	s.log.Info("handing a partition over to even out the processes", "pipeline", pipeline, "partition", shed,
		"held", len(g.held), "fair_share", g.fair, "processes", m)
	g.held[shed](errShed)
	delete(g.held, shed)
}

// room tells whether this process may take one more partition.
func (g *shareGroup) room() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held) < g.fair
}

// take records partition p as run by this process, with the cancel of its run; false when the
// process has its fair share already (another partition was taken meanwhile).
func (g *shareGroup) take(p int, cancel context.CancelCauseFunc) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.held) >= g.fair {
		return false
	}
	g.held[p], g.last = cancel, p
	return true
}

// none tells whether this process runs none of the partitions.
func (g *shareGroup) none() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held) == 0
}

// drop records that partition p no longer runs here.
func (g *shareGroup) drop(p int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.held, p)
}

// acquire stands by until the runner holds its lease, and, for a partition under a Share (g
// not nil), until its process has room for it (see [Share]); the returned context ends when
// the lease is lost or handed over (causes as checkpoint.Leases', or errShed), and release
// gives the lease up. It returns checkpoint.ErrHeld after Options.MaxStandby (under a Share,
// only while the process runs none of the pipeline's partitions), and ctx's error when ctx
// ends first.
func (r *Runner) acquire(ctx context.Context, g *shareGroup) (context.Context, func(), error) {
	if g == nil {
		return r.o.Leases.AcquireWithin(ctx, r.ownKey(), r.o.MaxStandby)
	}
	since := time.Now()
	poll := r.o.Leases.TTL() / 4
	quiet := r.o.Leases.Quiet() // each try would say it stands by: say it once here
	r.log.Info("standing by: this partition runs in the process that holds its lease, within each process's fair share")
	for {
		if r.o.MaxStandby > 0 && time.Since(since) > r.o.MaxStandby && g.none() {
			// Only a process that got none of the pipeline's partitions gives up: one at its
			// fair share keeps the others standing by.
			return nil, nil, fmt.Errorf("%w: no partition of %s taken within %s", checkpoint.ErrHeld, r.p.Name, r.o.MaxStandby)
		}
		if g.room() {
			held, release, err := quiet.AcquireWithin(ctx, r.ownKey(), poll)
			switch {
			case err == nil:
				run, cancel := context.WithCancelCause(held)
				if g.take(r.o.Partition.Index, cancel) {
					return run, func() {
						release()
						g.drop(r.o.Partition.Index)
						cancel(context.Canceled)
					}, nil
				}
				cancel(context.Canceled) // another partition took the room meanwhile
				release()
			case errors.Is(err, checkpoint.ErrHeld):
				continue // it looked for poll already
			default:
				return nil, nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(poll):
		}
	}
}
