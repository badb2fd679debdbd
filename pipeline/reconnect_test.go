package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestReconnectsLoseNothing forces the pipeline's connection to reconnect every 40ms (100ms
// under the race detector, which slows the pipeline down about tenfold; four times as long
// for a durable consumer, which restarts the pipeline at each), with a commit at least every
// three (see repeat), while it replays a backlog in small batches, on both kinds of source consumer (the ordered one of a limits-retention
// stream, the durable one of an interest-retention stream): every event is folded exactly
// once all the same, and the connection did reconnect during the run.
//
// JETFOLD_LONG_TESTS=1 replays 30,000 events instead of 6,000 (about five times as many
// reconnects).
func TestReconnectsLoseNothing(t *testing.T) {
	events := 6000
	if natstest.Long() {
		events = 30000
	}
	tests := []struct {
		retention jetstream.RetentionPolicy
		every     time.Duration
	}{
		{jetstream.LimitsPolicy, reconnectEvery},
		// a durable consumer restarts the pipeline at every reconnect: give it time to commit
		{jetstream.InterestPolicy, 4 * reconnectEvery},
	}
	for _, tt := range tests {
		retention := tt.retention
		t.Run(retention.String(), func(t *testing.T) {
			s := natstest.Server(t)
			nc, js := natstest.Connect(t, s)
			var reconnected atomic.Int64
			nc.SetReconnectHandler(func(*nats.Conn) { reconnected.Add(1) })
			e := &env{t: t, srv: s, js: js, dir: t.TempDir()}
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
				Name: "SHOP", Subjects: []string{"shop.>"}, Retention: retention,
			}); err != nil {
				t.Fatal(err)
			}
			payloads := shoptest.Workload(3, events, 500)
			ps := e.build("all", 20, 100000)
			if retention == jetstream.InterestPolicy {
				if err := e.run(ps, pipeline.Options{}); err != nil { // its consumer keeps what follows
					t.Fatal(err)
				}
			}
			e.publish(payloads)
			onCommit, stop := repeat(tt.every, func() int {
				if nc.ForceReconnect() == nil {
					return 1
				}
				return 0
			})
			err := e.run(ps, pipeline.Options{OnCommit: onCommit})
			forced := stop()
			if err != nil {
				t.Fatal(err)
			}
			if forced == 0 {
				t.Fatal("no reconnect was forced during the run")
			}
			natstest.Eventually(t, 10*time.Second, "the connection back", nc.IsConnected)
			natstest.Eventually(t, 10*time.Second, "a reconnect", func() bool { return reconnected.Load() > 0 })
			e.check(payloads)
			t.Logf("%d forced reconnects, %d reconnects", forced, reconnected.Load())
		})
	}
}

// TestDeletedSourceConsumerLosesNothing deletes the consumer of a limits-retention source
// again and again (see repeat) while the pipeline replays a backlog: the source recreates it after the last
// message it took, and every event is folded exactly once all the same.
//
// JETFOLD_LONG_TESTS=1 replays 30,000 events instead of 6,000 (about five times as many
// deletions).
func TestDeletedSourceConsumerLosesNothing(t *testing.T) {
	events := 6000
	if natstest.Long() {
		events = 30000
	}
	e := newEnv(t)
	ctx := context.Background()
	payloads := shoptest.Workload(5, events, 500)
	ps := e.build("all", 20, 100000)
	stream := e.stream("SHOP")
	e.publish(payloads)
	onCommit, stop := repeat(reconnectEvery, func() int {
		n := 0
		names := stream.ConsumerNames(ctx)
		for name := range names.Name() {
			if stream.DeleteConsumer(ctx, name) == nil {
				n++
			}
		}
		return n
	})
	err := e.run(ps, pipeline.Options{OnCommit: onCommit})
	n := stop()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no consumer was deleted during the run")
	}
	e.check(payloads)
	t.Logf("%d consumers deleted", n)
}

// TestNoSourceConsumerLeft: a run that replays to the end, and one that finds nothing to
// read, leave no consumer on the source stream.
func TestNoSourceConsumerLeft(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payloads := shoptest.Workload(5, 1000, 50)
	ps := e.build("all", 20, 100000)
	stream := e.stream("SHOP")
	e.publish(payloads)
	for run := range 2 {
		if err := e.run(ps, pipeline.Options{}); err != nil {
			t.Fatal(err)
		}
		var left []string
		names := stream.ConsumerNames(ctx)
		for name := range names.Name() {
			left = append(left, name)
		}
		if len(left) > 0 {
			t.Errorf("run %d left consumers %v", run+1, left)
		}
	}
	e.check(payloads)
}

// TestLargeEventsSlowProcessing: events of 200 KB processed one batch at a time, so that the
// source's callback waits for room while pulled messages arrive: the pulls are bounded in
// bytes, so the client does not drop messages as a slow consumer (which at the tail would leave
// a replay waiting forever), and the replay ends. Without the bound, the server sends what one
// pull asks for (1,000 messages) while the callback waits, more than the 64 MB a subscription
// holds: the 450 events of the default form are 90 MB.
//
// JETFOLD_LONG_TESTS=1 publishes 900 events instead of 450.
func TestLargeEventsSlowProcessing(t *testing.T) {
	events := 450
	if natstest.Long() {
		events = 900
	}
	e := newEnv(t)
	pad := strings.Repeat("x", 200_000)
	var payloads [][]byte
	for i := range events {
		payloads = append(payloads, []byte(fmt.Sprintf(`{"type":"added","cart":"c%d","sku":"s","qty":1,"price":1,"pad":%q}`, i%7, pad)))
	}
	ps := e.build("all", 1, 100000)
	e.publish(payloads)
	if err := e.run(ps, pipeline.Options{}); err != nil { // fails the test when the replay stalls
		t.Fatal(err)
	}
	e.check(payloads)
}

// repeat calls do at once, then every interval, on a goroutine of its own, until the returned
// stop is called,
// but no more than repeatUncommitted times in a row without a commit between them: the faults
// come as often as every, some of them while the pipeline recovers from the last ones, and
// however slow a loaded machine makes the pipeline, it commits between them, so that the run
// ends. onCommit counts the commits: pass it as the run's pipeline.Options.OnCommit. stop
// returns the sum of what the calls returned.
func repeat(every time.Duration, do func() int) (onCommit func(pipeline.CommitInfo), stop func() int) {
	var commits atomic.Int64
	quit := make(chan struct{})
	done := make(chan int)
	go func() {
		// The first call at once: a short run (an idle machine replays the backlog in a few
		// hundred milliseconds) must still meet a fault.
		n, seen, streak := do(), int64(0), 1
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				done <- n
				return
			case <-tick.C:
				if c := commits.Load(); c != seen {
					seen, streak = c, 0
				}
				if streak < repeatUncommitted {
					streak++
					n += do()
				}
			}
		}
	}()
	onCommit = func(pipeline.CommitInfo) { commits.Add(1) }
	return onCommit, func() int {
		close(quit)
		return <-done
	}
}

// repeatUncommitted is how many calls repeat makes in a row without a commit between them.
const repeatUncommitted = 3

// stream returns the stream name, which the pipelines' configuration created.
func (e *env) stream(name string) jetstream.Stream {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), name)
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	return s
}
