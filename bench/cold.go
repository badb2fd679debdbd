package bench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// Cold is the result of the cold mode (Options.Cold): the second half of a workload of twice
// Options.Events events, folded once by the runner that folded the first half (its cache
// warm) and once by a new runner started on the first half's projection (its cache empty), in
// the same round.
type Cold struct {
	// WarmRate is the rate of the runner that goes on: from its first commit at or past the
	// middle of the stream to its last.
	WarmRate float64 `json:"warm_events_per_s"`
	// ColdRate is the rate of the new runner, from its start to its last commit.
	ColdRate float64 `json:"cold_events_per_s"`
	// FirstCommit is the time from the new runner's start to its first commit.
	FirstCommit time.Duration `json:"first_commit_ns"`
	// WarmToCold is WarmRate / ColdRate: how many times slower a restart folds.
	WarmToCold float64 `json:"warm_to_cold"`
}

// runCold runs one round of the cold mode into res: the warm runner over the whole stream,
// then, from scratch, a runner up to its middle and a new one from there.
func runCold(ctx context.Context, conn *streams.Conn, cfg []config.Stream, ps []*pipeline.Pipeline, o Options, res *Result) error {
	middle := uint64(o.Events)
	var mu sync.Mutex
	var first time.Time // of the warm runner's first commit at or past the middle
	var firstSeq, lastSeq uint64
	var last time.Time
	o.Logger.Info("cold mode: the runner that goes on")
	err := pipeline.RunAll(ctx, ps, pipeline.Options{JS: conn.JS, OnCommit: func(c pipeline.CommitInfo) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if c.Seq >= middle && first.IsZero() {
			first, firstSeq = now, c.Seq
		}
		last, lastSeq = now, c.Seq
	}})
	if err != nil {
		return err
	}
	if lastSeq <= firstSeq {
		return fmt.Errorf("bench: the warm runner committed once past the middle (at %d): use more events", firstSeq)
	}
	warm := float64(lastSeq-firstSeq) / last.Sub(first).Seconds()

	if err := resetPipeline(ctx, conn.JS, cfg, ps); err != nil {
		return err
	}
	o.Logger.Info("cold mode: a runner up to the middle")
	if err := pipeline.RunAll(ctx, ps, pipeline.Options{JS: conn.JS, StopAt: middle}); err != nil {
		return err
	}
	o.Logger.Info("cold mode: a new runner from the middle")
	var firstCommit time.Duration
	var done uint64
	began := time.Now()
	err = pipeline.RunAll(ctx, ps, pipeline.Options{JS: conn.JS, OnCommit: func(c pipeline.CommitInfo) {
		mu.Lock()
		defer mu.Unlock()
		if firstCommit == 0 {
			firstCommit = time.Since(began)
		}
		done = c.Seq
	}})
	elapsed := time.Since(began)
	if err != nil {
		return err
	}
	if done != 2*middle {
		return fmt.Errorf("bench: the cold runner stopped at %d, want %d", done, 2*middle)
	}
	cold := float64(done-middle) / elapsed.Seconds()
	res.Cold = &Cold{WarmRate: warm, ColdRate: cold, FirstCommit: firstCommit, WarmToCold: warm / cold}
	return nil
}

// runColdRounds publishes twice o.Events events and runs o.Rounds rounds of the raw consume
// and the cold mode; the round of the median WarmToCold stands for the run.
func runColdRounds(ctx context.Context, conn *streams.Conn, cfg []config.Stream, ps []*pipeline.Pipeline, o Options, res Result) (Result, error) {
	whole := o
	whole.Events = 2 * o.Events
	var err error
	if res.PublishRate, res.PayloadBytes, err = publish(ctx, conn.JS, whole, ""); err != nil {
		return res, err
	}
	rounds := make([]Result, 0, o.Rounds)
	for r := range o.Rounds {
		if r > 0 {
			if err := resetPipeline(ctx, conn.JS, cfg, ps); err != nil {
				return res, err
			}
		}
		rr := res
		if rr.RawRate, err = rawConsume(ctx, conn.JS, "BENCH", whole.Events); err != nil {
			return res, err
		}
		if err := runCold(ctx, conn, cfg, ps, o, &rr); err != nil {
			return res, err
		}
		o.Logger.Info("round", "round", r+1, "raw", int(rr.RawRate), "warm", int(rr.Cold.WarmRate), "cold", int(rr.Cold.ColdRate))
		rounds = append(rounds, rr)
	}
	slices.SortStableFunc(rounds, func(a, b Result) int { return cmp.Compare(a.Cold.WarmToCold, b.Cold.WarmToCold) })
	res = rounds[len(rounds)/2]
	for _, rr := range rounds {
		res.Rounds = append(res.Rounds, Round{RawRate: rr.RawRate, PipelineRate: rr.Cold.ColdRate, Ratio: rr.Cold.ColdRate / rr.RawRate})
	}
	return res, nil
}
