package pipeline_test

import (
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
	ps := e.build("all", 500, 100000)
	e.publish(payloads[:6000])
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	e.publish(payloads[6000:])
	m := pipeline.NewMetrics(nil)
	if err := e.run(ps, pipeline.Options{Metrics: m}); err != nil {
		t.Fatal(err)
	}
	e.check(payloads)
	prefetched := testutil.ToFloat64(m.StateReads.WithLabelValues("carts", "", pipeline.ReadPrefetch))
	onDemand := testutil.ToFloat64(m.StateReads.WithLabelValues("carts", "", pipeline.ReadOnDemand))
	if prefetched == 0 {
		t.Errorf("no key was read ahead (%v read on demand)", onDemand)
	}
	if prefetched+onDemand > users {
		t.Errorf("%v keys read ahead and %v on demand: more than the %d keys there are", prefetched, onDemand, users)
	}
	t.Logf("%v keys read ahead, %v on demand", prefetched, onDemand)
}
