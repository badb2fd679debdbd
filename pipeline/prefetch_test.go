package pipeline_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestPrefetchAfterRestart: a second run starts with an empty cache over keys that are all in
// their bucket, so most events need a read: the reads are made ahead, many at once, each key
// is read once, and the result is the fold of every event.
func TestPrefetchAfterRestart(t *testing.T) {
	const users = 2000
	e := newEnv(t)
	payloads := shoptest.Workload(9, 12000, users)
	m := prefetchRun(e, payloads, nil)
	prefetched := testutil.ToFloat64(m.StateReads.WithLabelValues("carts", pipeline.ReadPrefetch))
	onDemand := testutil.ToFloat64(m.StateReads.WithLabelValues("carts", pipeline.ReadOnDemand))
	if prefetched == 0 {
		t.Errorf("no key was read ahead (%v read on demand)", onDemand)
	}
	if prefetched+onDemand > users {
		t.Errorf("%v keys read ahead and %v on demand: more than the %d keys there are", prefetched, onDemand, users)
	}
	batches := testutil.ToFloat64(m.BatchReads.WithLabelValues("carts", pipeline.BatchComplete))
	failed := testutil.ToFloat64(m.BatchReads.WithLabelValues("carts", pipeline.BatchFailed))
	if batches == 0 || failed > 0 || batches > prefetched/10 {
		t.Errorf("%v batch reads complete, %v failed, for %v keys read ahead: want few batches of many keys, none failed", batches, failed, prefetched)
	}
	t.Logf("%v keys read ahead in %v batches, %v on demand", prefetched, batches, onDemand)
}

// prefetchRun folds the first half of payloads, calls between (if set), then folds the rest
// from a cold cache, checks the result and returns the second run's metrics.
func prefetchRun(e *env, payloads [][]byte, between func()) *pipeline.Metrics {
	e.t.Helper()
	ps := e.build("all", 500, 100000)
	half := len(payloads) / 2
	e.publish(payloads[:half])
	if err := e.run(ps, pipeline.Options{}); err != nil {
		e.t.Fatal(err)
	}
	if between != nil {
		between()
	}
	e.publish(payloads[half:])
	m := pipeline.NewMetrics(nil)
	if err := e.run(ps, pipeline.Options{Metrics: m}); err != nil {
		e.t.Fatal(err)
	}
	e.check(payloads)
	return m
}

// TestPrefetchWithoutBatchReads: when batch reads fail (here the projection's stream does not
// allow direct gets, as on a server without batch reads), the keys are read one by one and the
// result is the same.
func TestPrefetchWithoutBatchReads(t *testing.T) {
	e := newEnv(t)
	m := prefetchRun(e, shoptest.Workload(9, 12000, 2000), func() {
		ctx := context.Background()
		s, err := e.js.Stream(ctx, "KV_carts")
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.AllowDirect = false
		if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	})
	complete := testutil.ToFloat64(m.BatchReads.WithLabelValues("carts", pipeline.BatchComplete))
	failed := testutil.ToFloat64(m.BatchReads.WithLabelValues("carts", pipeline.BatchFailed))
	prefetched := testutil.ToFloat64(m.StateReads.WithLabelValues("carts", pipeline.ReadPrefetch))
	if complete > 0 || failed == 0 || prefetched == 0 {
		t.Errorf("%v batch reads complete, %v failed, %v keys read ahead: want only failed batches, keys read ahead one by one", complete, failed, prefetched)
	}
}
