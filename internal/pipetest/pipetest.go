// Package pipetest builds pipelines from YAML for tests and runs them with a deadline that
// follows their progress.
package pipetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// Build writes yaml to path, loads it (no JETFOLD_ variables), builds it with the operators of
// reg (nil: builtin.Registry()) and creates its streams on js.
func Build(t testing.TB, js jetstream.JetStream, path, yaml string, reg *operators.Registry) []*pipeline.Pipeline {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if reg == nil {
		reg = builtin.Registry()
	}
	ps, err := pipeline.Build(cfg, reg)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if err := streams.EnsureStreams(context.Background(), js, cfg.Streams, nil); err != nil {
		t.Fatal(err)
	}
	return ps
}

// A run fails when no commit happens for Stall (the pipelines are stuck, or no longer stop at
// the end of their streams), or after Limit in all: its deadline follows the work it has left,
// which a loaded machine does more slowly, not one fixed figure.
const (
	Stall = 30 * time.Second
	Limit = 10 * time.Minute
)

// Run runs ps with o (o.JS set to js) until they stop at the end of their streams (stop: end)
// or ctx ends, and returns what pipeline.RunAll returns. It fails the test when no commit
// happens for Stall or the run lasts Limit. o.OnCommit, when set, is called as RunAll would.
func Run(ctx context.Context, t testing.TB, js jetstream.JetStream, ps []*pipeline.Pipeline, o pipeline.Options) error {
	t.Helper()
	o.JS = js
	var last atomic.Int64 // when the last commit (or the run) began, in Unix nanoseconds
	last.Store(time.Now().UnixNano())
	onCommit := o.OnCommit
	o.OnCommit = func(c pipeline.CommitInfo) {
		last.Store(time.Now().UnixNano())
		if onCommit != nil {
			onCommit(c)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pipeline.RunAll(rctx, ps, o) }()
	began := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var stuck string
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if idle := time.Since(time.Unix(0, last.Load())); idle > Stall {
				stuck = fmt.Sprintf("no commit for %s: the pipelines are stuck or do not stop at the end of their streams", idle.Round(time.Second))
			} else if time.Since(began) > Limit {
				stuck = fmt.Sprintf("the run still going after %s", Limit)
			}
		}
		if stuck == "" {
			continue
		}
		cancel()
		select {
		case err := <-done:
			t.Fatalf("%s (RunAll: %v)", stuck, err)
		case <-time.After(Stall):
			t.Fatalf("%s; RunAll did not return within %s of its context ending", stuck, Stall)
		}
	}
}

// PublishWorkload publishes the first n events of the workload of `processor bench` over keys
// keys (bench.Payload, seeded: the same events every time), each on the subject that subject
// gives for its payload; it returns once JetStream stored them all. n is JETFOLD_<env>, when
// that variable is set, else def.
func PublishWorkload(t testing.TB, js jetstream.JetStream, env string, def, keys int, subject func(payload []byte) string) int {
	t.Helper()
	n := def
	if v := os.Getenv("JETFOLD_" + env); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("JETFOLD_%s: %v", env, err)
		}
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	w := streams.NewWindow(js, 8192)
	for i := range n {
		p := bench.Payload(i, keys, 100, 10_000, rng)
		if err := w.Publish(ctx, &nats.Msg{Subject: subject(p), Data: p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}
