package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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
	// the commit's duration, events and keys (for the breakdown)
	dur          time.Duration
	events, keys int
	pending      uint64
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
	bd := newBreakdown()
	go func() {
		done <- pipeline.RunAll(runCtx, ps, pipeline.Options{JS: js, Metrics: bd.metrics(), OnCommit: func(c pipeline.CommitInfo) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			commits = append(commits, mark{c.Seq, now, c.Duration, c.Events, c.Keys, c.Pending})
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
	bd.start(js)

	type sent struct {
		at  time.Time
		fut jetstream.PubAckFuture
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var out []sent
	stalls := 0
	perMs := max(o.Rate/1000, 1)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	began := time.Now()
	for i := 0; time.Since(began) < o.Duration; {
		<-tick.C
		// publish what the rate owes by now, so a late tick catches up
		owed := int(time.Since(began).Seconds()*float64(o.Rate)) - i
		for range min(owed, 10*perMs) {
			data := Payload(i, o.Keys, o.EmitEvery, o.EventRate, rng)
			at := time.Now()
			f, err := js.PublishAsync("bench.ev", data)
			for errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				// the server is behind the offered rate: wait for it rather than fail, and
				// count the wait in the event's latency (it is measured from the first try)
				stalls++
				select {
				case <-js.PublishAsyncComplete():
				case <-time.After(10 * time.Millisecond):
				case <-ctx.Done():
					return res, ctx.Err()
				}
				f, err = js.PublishAsync("bench.ev", data)
			}
			if err != nil {
				return res, fmt.Errorf("publish: %w", err)
			}
			out = append(out, sent{at, f})
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
	if bd != nil {
		bd.stop()
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
	if bd != nil {
		pubs := make([]time.Time, len(out))
		for i, s := range out {
			pubs[i] = s.at
		}
		fmt.Fprintf(os.Stderr, "publisher stalls (too many outstanding async publishes): %d\n", stalls)
		bd.report(os.Stderr, pubs, seqs, commits, lat)
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
