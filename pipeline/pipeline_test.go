package pipeline_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
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
	return pipetest.Build(e.t, e.js, filepath.Join(e.dir, name), yaml, nil)
}

// publish publishes payloads to the workload's subject through a bounded window.
func (e *env) publish(payloads [][]byte) {
	e.t.Helper()
	natstest.Publish(e.t, e.js, shoptest.Subject, payloads)
}

// run runs the pipelines until they stop at the end of their streams (stop: end), and fails
// the test when they do not (see pipetest.Run).
func (e *env) run(ps []*pipeline.Pipeline, o pipeline.Options) error {
	e.t.Helper()
	return pipetest.Run(context.Background(), e.t, e.js, ps, o)
}

// runCtx runs the pipelines until they stop or ctx ends (see pipetest.Run).
func (e *env) runCtx(ctx context.Context, ps []*pipeline.Pipeline, o pipeline.Options) error {
	e.t.Helper()
	return pipetest.Run(ctx, e.t, e.js, ps, o)
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
