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

// TestSmoke runs a small bench of two rounds: every event folded, the 1% emitted, rates
// measured; the second round starts from scratch (Run fails if it emits or writes otherwise).
func TestSmoke(t *testing.T) {
	res, err := bench.Run(context.Background(), bench.Options{Events: 20_000, Keys: 500, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.RawRate <= 0 || res.PipelineRate <= 0 || res.Emitted != 200 || res.Projected != 500 {
		t.Errorf("result %+v: want positive rates, 200 emitted and 500 keys in the projection", res)
	}
	if len(res.Rounds) != 2 || res.Ratio != res.Rounds[0].Ratio && res.Ratio != res.Rounds[1].Ratio {
		t.Errorf("rounds %+v, ratio %v: want two rounds, the ratio one of theirs", res.Rounds, res.Ratio)
	}
	if res.KVWriteRate <= 0 || res.KVBound <= 0 {
		t.Errorf("kv writes %v/s, bound %v: want the writes alone measured", res.KVWriteRate, res.KVBound)
	}
	if res.PayloadBytes < 190 || res.PayloadBytes > 230 {
		t.Errorf("payload %d bytes, want about 200", res.PayloadBytes)
	}
}

// TestColdSmoke runs a small cold mode: both halves folded, the cold runner from the middle to
// the end (runCold fails otherwise), both rates and the first commit measured.
func TestColdSmoke(t *testing.T) {
	res, err := bench.Run(context.Background(), bench.Options{Events: 20_000, Keys: 5_000, CacheKeys: 500, Rounds: 1, Cold: true})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Cold
	if c == nil || c.WarmRate <= 0 || c.ColdRate <= 0 || c.FirstCommit <= 0 || c.WarmToCold <= 0 || res.RawRate <= 0 {
		t.Errorf("result %+v, cold %+v: want every rate and the first commit measured", res, c)
	}
}
