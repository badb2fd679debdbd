package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

const shopYAML = `
nats: {url: %q}
http: {listen: none}
` + shoptest.Streams + `
pipelines:` + shoptest.Pipeline

type env struct {
	t   *testing.T
	srv *server.Server
	js  jetstream.JetStream
	dir string
}

func newEnv(t *testing.T) *env {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	return &env{t: t, srv: s, js: js, dir: t.TempDir()}
}

func (e *env) build(start string, batch, cacheKeys int) []*pipeline.Pipeline {
	e.t.Helper()
	return e.pipelines("p.yaml", fmt.Sprintf(shopYAML, e.srv.ClientURL(), start, "end", batch, cacheKeys))
}

// pipelines writes yaml to the file name, loads and builds it and creates its streams.
func (e *env) pipelines(name, yaml string) []*pipeline.Pipeline {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		e.t.Fatalf("load: %v", err)
	}
	ps, err := pipeline.Build(cfg, operators.Builtin())
	if err != nil {
		e.t.Fatalf("build: %v", err)
	}
	ctx := context.Background()
	if err := streams.EnsureStreams(ctx, e.js, cfg.Streams, nil); err != nil {
		e.t.Fatal(err)
	}
	return ps
}

// publish publishes payloads to the workload's subject through a bounded window.
func (e *env) publish(payloads [][]byte) {
	e.t.Helper()
	natstest.Publish(e.t, e.js, shoptest.Subject, payloads)
}

// A run of the pipelines fails when no commit happens for runStall (they are stuck, or no
// longer stop at the end of their streams), or after runLimit in all: its deadline follows the
// work it has left, which a loaded machine does more slowly, not one fixed figure.
const (
	runStall = 30 * time.Second
	runLimit = 10 * time.Minute
)

// run runs the pipelines until they stop at the end of their streams (stop: end), and fails
// the test when they do not (see runStall).
func (e *env) run(ps []*pipeline.Pipeline, o pipeline.Options) error {
	e.t.Helper()
	return e.runCtx(context.Background(), ps, o)
}

// runCtx runs the pipelines until they stop or ctx ends, and fails the test when no commit
// happens for runStall or the run lasts runLimit. o.OnCommit, when set, is called as RunAll
// would.
func (e *env) runCtx(ctx context.Context, ps []*pipeline.Pipeline, o pipeline.Options) error {
	e.t.Helper()
	o.JS = e.js
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
			if idle := time.Since(time.Unix(0, last.Load())); idle > runStall {
				stuck = fmt.Sprintf("no commit for %s: the pipelines are stuck or do not stop at the end of their streams", idle.Round(time.Second))
			} else if time.Since(began) > runLimit {
				stuck = fmt.Sprintf("the run still going after %s", runLimit)
			}
		}
		if stuck == "" {
			continue
		}
		cancel()
		select {
		case err := <-done:
			e.t.Fatalf("%s (RunAll: %v)", stuck, err)
		case <-time.After(runStall):
			e.t.Fatalf("%s; RunAll did not return within %s of its context ending", stuck, runStall)
		}
	}
}

// check compares the projections, derived events and dead letters with the oracle.
func (e *env) check(payloads [][]byte) {
	e.t.Helper()
	for _, m := range shoptest.Mismatches(e.t, e.js, streams.DLQStream, shoptest.Oracle(payloads)) {
		e.t.Error(m)
	}
}

func TestFoldEndToEnd(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(1, 5000, 200)
	ps := e.build("all", 500, 100000)
	e.publish(payloads)
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	e.check(payloads)
}

func TestRestartResumesWithoutDoubleApplying(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(2, 6000, 150)
	// a small cache forces evictions and reads back from KV
	ps := e.build("all", 250, 50)
	e.publish(payloads[:4000])
	for round := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		commits := 0
		err := e.runCtx(ctx, ps, pipeline.Options{OnCommit: func(pipeline.CommitInfo) {
			if commits++; commits == 3+round {
				cancel()
			}
		}})
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	e.publish(payloads[4000:])
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	e.check(payloads)
}
