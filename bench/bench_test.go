package bench_test

import (
	"context"
	"testing"

	"github.com/jetfold/jetfold/bench"
)

// BenchmarkPipeline runs the same code as `processor bench` (with fewer events; set
// -benchtime=1x and read the events/s metrics, not ns/op).
func BenchmarkPipeline(b *testing.B) {
	for b.Loop() {
		res, err := bench.Run(context.Background(), bench.Options{Events: 200_000})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.RawRate, "raw-events/s")
		b.ReportMetric(res.PipelineRate, "pipeline-events/s")
		b.ReportMetric(res.Ratio, "ratio")
		b.ReportMetric(res.AllocBytesPerEvent, "B/event")
	}
}

// TestSmoke runs a small bench: every event folded, the 1% emitted, rates measured.
func TestSmoke(t *testing.T) {
	res, err := bench.Run(context.Background(), bench.Options{Events: 20_000, Keys: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.RawRate <= 0 || res.PipelineRate <= 0 || res.Emitted != 200 {
		t.Errorf("result %+v: want positive rates and 200 emitted", res)
	}
	if res.PayloadBytes < 190 || res.PayloadBytes > 230 {
		t.Errorf("payload %d bytes, want about 200", res.PayloadBytes)
	}
}
