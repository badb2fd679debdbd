package rebuild_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
)

// BenchmarkRebuild measures a rebuild of the standard fold of `processor bench` over
// JETFOLD_REBUILD_EVENTS events (default 200,000; 10,000 keys), next to a run of the same
// pipeline over the same stream in the same process: run events/s is the pipeline's first
// run, rebuild events/s each rebuild's (hydrated, into a new version, then the switch), and
// ratio the second over the first. Each rebuild drops the version before it.
func BenchmarkRebuild(b *testing.B) {
	const keys = 10_000
	srv := natstest.Server(b)
	_, js := natstest.Connect(b, srv)
	dir := b.TempDir()
	build := func() *pipeline.Pipeline {
		return pipetest.Build(b, js, filepath.Join(dir, "p.yaml"), bench.PipelineYAML("end", config.Batch{}, keys), nil)[0]
	}
	p := build()
	ctx := context.Background()
	n := pipetest.PublishWorkload(b, js, "REBUILD_EVENTS", 200_000, keys, func([]byte) string { return "bench.ev" })
	began := time.Now()
	if err := pipeline.NewRunner(p, pipeline.Options{JS: js}).Run(ctx); err != nil {
		b.Fatal(err)
	}
	run := float64(n) / time.Since(began).Seconds()
	leases, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{Holder: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := rebuild.Run(ctx, rebuild.Options{JS: js, Pipeline: build(), Leases: leases, DropOld: true})
		if err != nil {
			b.Fatal(err)
		}
		if res.Seq != uint64(n) {
			b.Fatalf("switched at %d, want %d", res.Seq, n)
		}
	}
	rate := float64(b.N*n) / b.Elapsed().Seconds()
	b.ReportMetric(run, "run-events/s")
	b.ReportMetric(rate, "rebuild-events/s")
	b.ReportMetric(rate/run, "ratio")
}
