package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestBatchBounds replays a backlog and checks each commit against the batch's bounds: the
// catch-up ones while the backlog lasts, the cache's when its changed keys fill it.
func TestBatchBounds(t *testing.T) {
	const events, users = 10000, 300
	tests := []struct {
		name  string
		batch string // the pipeline's batch: section
		cache int
		// each commit holds at most maxEvents events and maxKeys keys; there are at most
		// maxCommits and at least minCommits commits; the first holds at least minFirst events
		maxEvents, maxKeys, minCommits, maxCommits, minFirst int
	}{
		{
			name:      "catch-up batches write each key once for many events",
			batch:     "{size: 100, max_wait: 10ms, catch_up: {size: 2000, max_wait: 1m}}",
			cache:     100000,
			maxEvents: 2000, maxKeys: users, minCommits: events / 2000, maxCommits: events/2000 + 3,
		},
		{
			name:      "catch-up bounds equal to the batch's",
			batch:     "{size: 100, max_wait: 1m, catch_up: {size: 100, max_wait: 1m}}",
			cache:     100000,
			maxEvents: 100, maxKeys: 100, minCommits: events / 100, maxCommits: events/100 + 1,
		},
		{
			name:  "a full cache of changed keys ends the batch",
			batch: "{size: 100, max_wait: 10ms, catch_up: {size: 5000, max_wait: 1m}}",
			cache: 50,
			// the event that goes over the bound is in the batch: one key more
			maxEvents: 5000, maxKeys: 51, minCommits: users / 51, maxCommits: events,
		},
		{
			// Not cut when fewer than size events are left (at 9,001), which would make the
			// tail wait for that commit, then commit on its own.
			name:      "a replay commits its tail with the catch-up batch that reaches it",
			batch:     "{size: 1000, max_wait: 1m, catch_up: {size: 100000, max_wait: 1m}}",
			cache:     100000,
			maxEvents: events, maxKeys: users, minCommits: 1, maxCommits: 2, minFirst: 9500,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			payloads := shoptest.Workload(7, events, users)
			yaml := strings.Replace(fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "end", 0, tt.cache),
				"batch: {size: 0, max_wait: 10ms}", "batch: "+tt.batch, 1)
			ps := e.pipelines("p.yaml", yaml)
			e.publish(payloads)
			var commits []pipeline.CommitInfo
			if err := e.run(ps, pipeline.Options{OnCommit: func(c pipeline.CommitInfo) {
				commits = append(commits, c) // commits of one pipeline run one at a time
			}}); err != nil {
				t.Fatal(err)
			}
			e.check(payloads)
			if n := len(commits); n < tt.minCommits || n > tt.maxCommits {
				t.Errorf("%d commits, want %d to %d", n, tt.minCommits, tt.maxCommits)
			}
			if len(commits) > 0 && commits[0].Events < tt.minFirst {
				t.Errorf("the first commit holds %d events, want at least %d", commits[0].Events, tt.minFirst)
			}
			total := 0
			for i, c := range commits {
				total += c.Events
				if c.Events > tt.maxEvents || c.Keys > tt.maxKeys {
					t.Errorf("commit %d: %d events, %d keys; want at most %d and %d", i, c.Events, c.Keys, tt.maxEvents, tt.maxKeys)
				}
			}
			if total != events {
				t.Errorf("commits hold %d events, want %d", total, events)
			}
		})
	}
}

// TestSourceRetention: a stream with limits retention is read without acknowledgements and
// keeps its messages; on interest retention the pipeline acknowledges what it committed, so
// the server removes it, and a restart does not lose what is not committed; work-queue
// retention is refused.
func TestSourceRetention(t *testing.T) {
	tests := []struct {
		name      string
		retention jetstream.RetentionPolicy
		wantMsgs  uint64 // left in SHOP once the acknowledgements are processed
		durables  int    // durable consumers of the pipeline left
	}{
		{"limits", jetstream.LimitsPolicy, 2000, 0},
		{"interest", jetstream.InterestPolicy, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			s, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "SHOP", Subjects: []string{"shop.>"}, Retention: tt.retention,
			})
			if err != nil {
				t.Fatal(err)
			}
			payloads := shoptest.Workload(8, 2000, 50)
			ps := e.build("all", 100, 100000)
			// A first run on the empty stream: on interest retention, its consumer is what
			// keeps the events published next until the second run, which replaces it.
			if err := e.run(ps, pipeline.Options{}); err != nil {
				t.Fatal(err)
			}
			e.publish(payloads)
			if err := e.run(ps, pipeline.Options{}); err != nil {
				t.Fatal(err)
			}
			e.check(payloads)
			durables := 0
			list := s.ListConsumers(ctx)
			for info := range list.Info() {
				if info.Config.Durable != "" && strings.HasPrefix(info.Name, "jetfold_carts") {
					durables++
				}
			}
			if err := list.Err(); err != nil {
				t.Fatal(err)
			}
			if durables != tt.durables {
				t.Errorf("%d durable consumers of the pipeline, want %d", durables, tt.durables)
			}
			natstest.Eventually(t, 10*time.Second, fmt.Sprintf("SHOP to hold %d messages", tt.wantMsgs), func() bool {
				info, err := s.Info(ctx)
				return err == nil && info.State.Msgs == tt.wantMsgs
			})
		})
	}
	t.Run("work queue", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: "SHOP", Subjects: []string{"shop.>"}, Retention: jetstream.WorkQueuePolicy,
		}); err != nil {
			t.Fatal(err)
		}
		err := e.run(e.build("all", 100, 100000), pipeline.Options{})
		if !errors.Is(err, pipeline.ErrStopped) || !strings.Contains(err.Error(), "work-queue retention") {
			t.Fatalf("err = %v, want ErrStopped about work-queue retention", err)
		}
	})
}
