package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/pipeline"
)

type mark struct {
	seq uint64
	at  time.Time
}

// runLatency publishes at a fixed rate through a following pipeline and measures, per event,
// the time from its publish to the end of the commit that made its effect visible.
func runLatency(ctx context.Context, js jetstream.JetStream, ps []*pipeline.Pipeline, o Options) (Result, error) {
	res := Result{Keys: o.Keys, Latency: &Latency{Rate: o.Rate, Duration: o.Duration}}
	var mu sync.Mutex
	var commits []mark
	var target uint64 // the last published sequence, once known
	caught := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- pipeline.RunAll(runCtx, ps, pipeline.Options{JS: js, OnCommit: func(c pipeline.CommitInfo) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			commits = append(commits, mark{c.Seq, now})
			if target > 0 && c.Seq >= target {
				select {
				case <-caught:
				default:
					close(caught)
				}
			}
		}})
	}()
	if err := waitConsumer(ctx, js, done); err != nil {
		return res, err
	}

	type sent struct {
		at  time.Time
		fut jetstream.PubAckFuture
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var out []sent
	perMs := max(o.Rate/1000, 1)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	began := time.Now()
	for i := 0; time.Since(began) < o.Duration; {
		<-tick.C
		// publish what the rate owes by now, so a late tick catches up
		owed := int(time.Since(began).Seconds()*float64(o.Rate)) - i
		for range min(owed, 10*perMs) {
			f, err := js.PublishAsync("bench.ev", Payload(i, o.Keys, o.EmitEvery, o.EventRate, rng))
			if err != nil {
				return res, fmt.Errorf("publish: %w", err)
			}
			out = append(out, sent{time.Now(), f})
			i++
		}
	}
	seqs := make([]uint64, len(out))
	for i, s := range out {
		select {
		case a := <-s.fut.Ok():
			seqs[i] = a.Sequence
		case err := <-s.fut.Err():
			return res, fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	mu.Lock()
	target = slices.Max(seqs)
	if len(commits) > 0 && commits[len(commits)-1].seq >= target {
		close(caught)
	}
	mu.Unlock()
	select {
	case <-caught:
	case <-time.After(30 * time.Second):
		return res, errors.New("the pipeline did not catch up within 30s of the last publish")
	case <-ctx.Done():
		return res, ctx.Err()
	}
	cancel()
	if err := <-done; err != nil {
		return res, err
	}
	lat := make([]time.Duration, len(out))
	for i, s := range out {
		j := sort.Search(len(commits), func(k int) bool { return commits[k].seq >= seqs[i] })
		lat[i] = commits[j].at.Sub(s.at)
	}
	slices.Sort(lat)
	l := res.Latency
	l.Events = len(lat)
	l.P50 = lat[len(lat)/2]
	l.P99 = lat[len(lat)*99/100]
	l.Max = lat[len(lat)-1]
	res.Events = len(lat)
	return res, nil
}

// waitConsumer waits until the pipeline's consumer exists (the pipeline has started).
func waitConsumer(ctx context.Context, js jetstream.JetStream, done <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if started(ctx, js) {
			return nil
		}
		select {
		case err := <-done:
			return fmt.Errorf("pipeline ended before it started: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the pipeline did not start within 30s")
		}
	}
}

// started tells whether the bench pipeline's consumer exists on BENCH.
func started(ctx context.Context, js jetstream.JetStream) bool {
	s, err := js.Stream(ctx, "BENCH")
	if err != nil {
		return false
	}
	names := s.ConsumerNames(ctx)
	ok := false
	for n := range names.Name() {
		ok = ok || strings.HasPrefix(n, "jetfold_bench_")
	}
	return ok && names.Err() == nil
}
