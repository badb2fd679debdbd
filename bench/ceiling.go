package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// ceilingBucket is the scratch bucket of [kvWrites].
const ceilingBucket = "bench_ceiling"

// kvWrites measures the projection writes alone: n compare-and-set writes of a state of about
// the fold's size, with the fold's headers, to keys drawn as the workload draws them, in
// commits of perCommit distinct keys published as a commit publishes them (asynchronously,
// through a window of the committer's size, on a context of their own, every
// acknowledgement awaited at the end of each). It returns keys written per second: with
// KeysWritten, the time the pipeline's writes cost by themselves, which bounds its rate.
func kvWrites(ctx context.Context, nc *nats.Conn, n, perCommit, keys int) (float64, error) {
	js, err := streams.NewPublisher(nc)
	if err != nil {
		return 0, err
	}
	defer js.CleanupPublisher()
	if err := js.DeleteKeyValue(ctx, ceilingBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, fmt.Errorf("kv writes: %w", err)
	}
	if _, err := streams.EnsureBucket(ctx, js, ceilingBucket); err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteKeyValue(context.WithoutCancel(ctx), ceilingBucket) }()
	rng := rand.New(rand.NewPCG(3, 4))
	revs := make(map[int]uint64, min(n, keys))
	value := []byte(`{"count":12,"sum":3456.5,"last":"r-123456","flags":3}`)
	perCommit = min(max(perCommit, 1), keys)
	began := time.Now()
	for done := 0; done < n; {
		commit := make([]int, 0, min(perCommit, n-done))
		seen := make(map[int]struct{}, cap(commit))
		for len(commit) < cap(commit) {
			k := rng.IntN(keys)
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				commit = append(commit, k)
			}
		}
		w := streams.NewWindow(js, streams.DefaultWindow)
		w.OnAck = func(i int, a *jetstream.PubAck) { revs[commit[i]] = a.Sequence }
		for i, k := range commit {
			h := nats.Header{}
			h[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(revs[k], 10)}
			h["Jetfold-Seq"] = []string{strconv.Itoa(done + i + 1)}
			h["Jetfold-Time"] = []string{"2026-01-01T00:00:00.123456Z"}
			h["Jetfold-Writer"] = []string{"bench@1"}
			m := &nats.Msg{Subject: streams.KVSubject(ceilingBucket, "k"+strconv.Itoa(k)), Data: value, Header: h}
			if err := w.Publish(ctx, m); err != nil {
				return 0, fmt.Errorf("kv writes: %w", err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			return 0, fmt.Errorf("kv writes: %w", err)
		}
		done += len(commit)
	}
	return float64(n) / time.Since(began).Seconds(), nil
}
