package pipeline_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
)

// BenchmarkPartitions runs the standard fold of `processor bench` over its workload
// (JETFOLD_PARTITION_EVENTS events, default 200,000, over 10,000 keys) from the start of the
// stream to its end, in one process, with 1, 2 and 4 partitions. Every partition reads the
// whole stream and passes over the others' events, so events/s (stream positions per second)
// shows what that costs; each iteration is a new pipeline, from an empty checkpoint.
func BenchmarkPartitions(b *testing.B) {
	const keys = 10_000
	srv := natstest.Server(b)
	_, js := natstest.Connect(b, srv)
	dir := b.TempDir()
	// The streams first (a pipeline that is never run declares them).
	pipetest.Build(b, js, filepath.Join(dir, "streams.yaml"), bench.ConfigYAML(bench.Pipeline{Name: "none", Stop: "end",
		CacheKeys: keys, Operators: bench.FoldYAML("none")}), nil)
	n := pipetest.PublishWorkload(b, js, "PARTITION_EVENTS", 200_000, keys, func([]byte) string { return "bench.ev" })
	runs := 0
	for _, parts := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			for b.Loop() {
				runs++
				name := fmt.Sprintf("p%d_%d", parts, runs)
				yaml := bench.ConfigYAML(bench.Pipeline{Name: name, Stop: "end", CacheKeys: keys,
					Operators: bench.FoldYAML(name)})
				yaml = strings.Replace(yaml, "    key: event.key\n", fmt.Sprintf("    key: event.key\n    partitions: %d\n", parts), 1)
				ps := pipetest.Build(b, js, filepath.Join(dir, name+".yaml"), yaml, nil)
				began := time.Now()
				if err := pipetest.Run(context.Background(), b, js, ps, pipeline.Options{}); err != nil {
					b.Fatal(err)
				}
				b.Logf("%d partitions: %d events in %s", parts, n, time.Since(began).Round(time.Millisecond))
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
