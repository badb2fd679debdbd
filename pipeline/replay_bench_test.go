package pipeline_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
)

// BenchmarkReplay measures pipeline.Replay (get --at, history) on the workload of `processor
// bench` (JETFOLD_REPLAY_EVENTS events, default 1,000,000, over 10,000 keys, the standard
// fold), each event published on bench.ev.<its key> so that a subject filter can select one
// key's: "full" replays the whole stream for one key, "subject" reads that key's subject
// alone. events/s is stream positions covered per second; read/s the events read.
func BenchmarkReplay(b *testing.B) {
	const keys = 10_000
	srv := natstest.Server(b)
	_, js := natstest.Connect(b, srv)
	ps := pipetest.Build(b, js, filepath.Join(b.TempDir(), "p.yaml"), bench.PipelineYAML("end", config.Batch{}, keys), nil)
	ctx := context.Background()
	began := time.Now()
	n := pipetest.PublishWorkload(b, js, "REPLAY_EVENTS", 1_000_000, keys, func(p []byte) string { return "bench.ev." + keyOf(p) })
	b.Logf("published %d events in %s", n, time.Since(began).Round(time.Millisecond))

	for _, tt := range []struct {
		name     string
		subjects []string
	}{
		{"full", nil},
		{"subject", []string{"bench.ev.k42"}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			read := 0
			for b.Loop() {
				res, err := pipeline.Replay(ctx, js, ps[0], pipeline.ReplayOptions{Projection: "bench", Key: "k42", Subjects: tt.subjects})
				if err != nil {
					b.Fatal(err)
				}
				if res.State == nil || res.UpTo != uint64(n) {
					b.Fatalf("k42 at %d: %s", res.UpTo, res.State)
				}
				read += res.Read
			}
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*n)/s, "events/s")
			b.ReportMetric(float64(read)/s, "read/s")
		})
	}
}

// keyOf returns the key of a workload payload (its "key" field).
func keyOf(p []byte) string {
	_, rest, _ := bytes.Cut(p, []byte(`"key":"`))
	k, _, _ := bytes.Cut(rest, []byte(`"`))
	return string(k)
}
