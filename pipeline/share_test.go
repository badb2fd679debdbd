package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestShareMovesPartitions runs the shop pipeline in 4 partitions in one process, then a
// second (two RunAll with their own leases and Share): the partitions even out, 2 and 2; when
// the second stops, the first takes them all back. Events arrive all along; the result equals
// the oracle of the unpartitioned pipeline.
func TestShareMovesPartitions(t *testing.T) {
	const n = 4
	e := newEnv(t)
	payloads := shoptest.Workload(4, 9000, 300)
	yaml := fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "follow", 300, 100000)
	yaml = shoptest.WithPartitions(t, yaml, n)
	ps := e.pipelines("p.yaml", yaml)
	ctx := context.Background()
	holders := partitionHolders(t, e.js, "carts", n)
	type proc struct {
		cancel  context.CancelFunc
		done    chan error
		metrics *pipeline.Metrics
	}
	start := func(name string) proc {
		l, err := checkpoint.OpenLeases(ctx, e.js, checkpoint.LeaseOptions{TTL: shareTTL, Holder: name})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		p := proc{cancel: cancel, done: make(chan error, 1), metrics: pipeline.NewMetrics(nil)}
		go func() {
			p.done <- pipeline.RunAll(rctx, ps, pipeline.Options{JS: e.js, Instance: name, Leases: l, Share: pipeline.NewShare(l, nil), Metrics: p.metrics})
		}()
		t.Cleanup(func() { cancel(); <-p.done })
		return p
	}
	stop := func(name string, p proc) {
		p.cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			p.done <- nil // for the cleanup
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop", name)
		}
	}
	caughtUp := func(what string, upTo int) {
		low := func() uint64 {
			kv, err := e.js.KeyValue(ctx, streams.CheckpointBucket)
			if err != nil {
				return 0 // not created yet
			}
			m := uint64(0)
			for i := range n {
				cp, err := checkpoint.NewStore(kv).Load(ctx, checkpoint.PartitionKey("carts", i))
				if err != nil {
					return 0
				}
				if i == 0 || cp.Seq < m {
					m = cp.Seq
				}
			}
			return m
		}
		natstest.Progress(t, what, 30*time.Second, 2*time.Minute, low, func() bool { return low() >= uint64(upTo) })
	}

	e.publish(payloads[:3000])
	a := start("A")
	natstest.Eventually(t, 30*time.Second, "A to hold every partition", func() bool { return holders()["A"] == n })
	caughtUp("A alone", 3000)

	b := start("B")
	natstest.Eventually(t, 30*time.Second, "the partitions to even out", func() bool {
		h := holders()
		return h["A"] == n/2 && h["B"] == n/2
	})
	// Each process exports the checkpoints of the partitions it runs, and no longer those of
	// the partitions it handed over.
	natstest.Eventually(t, 30*time.Second, "each process to export the checkpoints of its 2 partitions", func() bool {
		return len(checkpointSeries(t, a.metrics)) == n/2 && len(checkpointSeries(t, b.metrics)) == n/2
	})
	if pa, pb := checkpointSeries(t, a.metrics), checkpointSeries(t, b.metrics); slices.ContainsFunc(pa, func(p string) bool { return slices.Contains(pb, p) }) {
		t.Errorf("A exports the checkpoints of partitions %v, B of %v: both export one", pa, pb)
	}
	e.publish(payloads[3000:6000])
	caughtUp("A and B", 6000)

	stop("B", b)
	natstest.Eventually(t, 30*time.Second, "A to take every partition back", func() bool { return holders()["A"] == n })
	natstest.Eventually(t, 30*time.Second, "A to export the checkpoints of every partition", func() bool {
		return slices.Equal(checkpointSeries(t, a.metrics), []string{"0", "1", "2", "3"})
	})
	e.publish(payloads[6000:])
	caughtUp("A alone again", len(payloads))
	stop("A", a)
	e.check(payloads)
}

// TestShareWait checks Options.MaxStandby (run --wait) under a Share: a process that got
// partitions keeps running past it, though some of its runners still stand by; one that got
// none (every process is at its fair share) gives up with checkpoint.ErrHeld.
func TestShareWait(t *testing.T) {
	const n, wait = 4, time.Second
	e := newEnv(t)
	yaml := fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "follow", 300, 100000)
	yaml = shoptest.WithPartitions(t, yaml, n)
	ps := e.pipelines("p.yaml", yaml)
	e.publish(shoptest.Workload(5, 500, 50))
	ctx := context.Background()
	holders := partitionHolders(t, e.js, "carts", n)
	start := func(name string, maxStandby time.Duration) (chan error, time.Time) {
		l, err := checkpoint.OpenLeases(ctx, e.js, checkpoint.LeaseOptions{TTL: shareTTL, Holder: name})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- pipeline.RunAll(rctx, ps, pipeline.Options{JS: e.js, Instance: name, Leases: l,
				Share: pipeline.NewShare(l, nil), MaxStandby: maxStandby})
		}()
		t.Cleanup(func() { cancel(); <-done })
		return done, time.Now()
	}
	running := func(name string, done chan error) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("%s returned %v, want it running", name, err)
		default:
		}
	}

	a, _ := start("A", 0)
	natstest.Eventually(t, 30*time.Second, "A to hold every partition", func() bool { return holders()["A"] == n })
	b, bStarted := start("B", wait)
	natstest.Eventually(t, 30*time.Second, "the partitions to even out", func() bool {
		h := holders()
		return h["A"] == n/2 && h["B"] == n/2
	})
	// B holds 2 and its 2 other runners stand by: it keeps running well past its wait.
	natstest.Eventually(t, 30*time.Second, "3 waits after B started", func() bool {
		running("B", b)
		return time.Since(bStarted) > 3*wait
	})
	running("A", a)

	c, _ := start("C", wait) // ceil(4/3) = 2: A and B are at their share, C gets none
	select {
	case err := <-c:
		if !errors.Is(err, checkpoint.ErrHeld) {
			t.Fatalf("C returned %v, want ErrHeld", err)
		}
		c <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("C did not give up; holders %v", holders())
	}
	if h := holders(); h["C"] != 0 {
		t.Errorf("C held %d partitions", h["C"])
	}
}

// TestShareCountsMembersFirst starts a process while another one is announced (a member that
// holds nothing yet): the process counts it before taking any partition, so it takes its fair
// share, 2 of 4, and never runs the other 2 (which would then have a checkpoint). Before it
// counted the members, a starting process took every free partition and handed the extra
// ones over only later.
func TestShareCountsMembersFirst(t *testing.T) {
	const n = 4
	e := newEnv(t)
	yaml := fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "follow", 300, 100000)
	ps := e.pipelines("p.yaml", shoptest.WithPartitions(t, yaml, n))
	payloads := shoptest.Workload(6, 2000, 200)
	e.publish(payloads)
	ctx := context.Background()
	other, err := checkpoint.OpenLeases(ctx, e.js, checkpoint.LeaseOptions{TTL: shareTTL, Holder: "other"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Announce("carts"))
	l, err := checkpoint.OpenLeases(ctx, e.js, checkpoint.LeaseOptions{TTL: shareTTL, Holder: "A"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- pipeline.RunAll(rctx, ps, pipeline.Options{JS: e.js, Instance: "A", Leases: l, Share: pipeline.NewShare(l, nil)})
	}()
	t.Cleanup(func() { cancel(); <-done })

	kv := func() jetstream.KeyValue {
		var kv jetstream.KeyValue
		natstest.Eventually(t, 30*time.Second, "the checkpoint bucket", func() bool {
			kv, err = e.js.KeyValue(ctx, streams.CheckpointBucket)
			return err == nil
		})
		return kv
	}()
	// checkpoints returns the checkpoints of the partitions that have one.
	checkpoints := func() map[int]uint64 {
		out := map[int]uint64{}
		for i := range n {
			if cp, err := checkpoint.NewStore(kv).Load(ctx, checkpoint.PartitionKey("carts", i)); err == nil && cp.Seq > 0 {
				out[i] = cp.Seq
			}
		}
		return out
	}
	holders := partitionHolders(t, e.js, "carts", n)
	// A's two partitions read the whole stream (the default layout): both reach its end.
	natstest.Eventually(t, 30*time.Second, "A's partitions to reach the end of the stream", func() bool {
		cps := checkpoints()
		if len(cps) < n/2 {
			return false
		}
		for _, seq := range cps {
			if seq < uint64(len(payloads)) {
				return false
			}
		}
		return true
	})
	if h := holders(); h["A"] != n/2 {
		t.Errorf("A holds %d partitions, want %d (its fair share beside the other member)", h["A"], n/2)
	}
	if cps := checkpoints(); len(cps) != n/2 {
		t.Errorf("partitions with a checkpoint: %v, want %d: A ran more than its fair share", cps, n/2)
	}
}

// checkpointSeries returns the partition label of each carts series of m's checkpoint gauge,
// sorted.
func checkpointSeries(t *testing.T, m *pipeline.Metrics) []string {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() { m.Checkpoint.Collect(ch); close(ch) }()
	var out []string
	for metric := range ch {
		var d dto.Metric
		if err := metric.Write(&d); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["pipeline"] == "carts" {
			out = append(out, labels["partition"])
		}
	}
	slices.Sort(out)
	return out
}

// shareTTL is the lease TTL of the share tests: short, so that partitions move within
// seconds, yet twice the 1 s minimum, so that a loaded machine does not make a holder give
// its leases up (it does past TTL/2 without a renewal).
const shareTTL = 2 * time.Second

// partitionHolders returns a function that counts, by holder, the leases of the n partitions
// of pipeline that are held.
func partitionHolders(t *testing.T, js jetstream.JetStream, pipeline string, n int) func() map[string]int {
	t.Helper()
	ctx := context.Background()
	observer, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{TTL: time.Second, Holder: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	return func() map[string]int {
		out := map[string]int{}
		for i := range n {
			if h, err := observer.Holder(ctx, checkpoint.PartitionKey(pipeline, i)); err == nil && h != "" {
				out[h]++
			}
		}
		return out
	}
}
