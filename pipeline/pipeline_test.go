package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

func (e *env) publish(payloads [][]byte) {
	e.t.Helper()
	ctx := context.Background()
	for i, p := range payloads {
		if _, err := e.js.PublishAsync(shoptest.Subject, p); err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		e.t.Fatal("publish did not complete")
	}
	_ = ctx
}

func (e *env) run(ps []*pipeline.Pipeline, o pipeline.Options) error {
	e.t.Helper()
	o.JS = e.js
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := pipeline.RunAll(ctx, ps, o)
	if ctx.Err() != nil { // RunAll returns nil when its context ends: that is not stopping at the end
		e.t.Fatal("the pipelines did not stop at the end of their streams within 60s")
	}
	return err
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
		err := pipeline.RunAll(ctx, ps, pipeline.Options{JS: e.js, OnCommit: func(pipeline.CommitInfo) {
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
