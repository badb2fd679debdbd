package state

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jetfold/jetfold/operators/event"
)

// BenchmarkCacheBytesPerKey measures the heap a cached key costs: the state of the standard
// fold of `processor bench` (count, total, qty, last: four fields) under a key of the
// workload's form, committed (clean, evictable), plus the known-keys hash of an empty bucket.
// It reports B/key; the README quotes it.
//
//	go test -run XXX -bench CacheBytesPerKey -benchtime 1x ./pipeline/state/
func BenchmarkCacheBytesPerKey(b *testing.B) {
	const keys = 200_000
	shape := event.NewShape("count", "total", "qty", "last")
	ctx := context.Background()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(Options{MaxKeys: keys, Shapes: map[string]*event.Shape{"bench": shape}, InPlace: true})
		s.Track("bench")
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range keys {
			key := "k" + strconv.Itoa(i)
			e, err := s.Get(ctx, "bench", key)
			if err != nil {
				b.Fatal(err)
			}
			state := event.NewRecord(shape, map[string]any{
				"count": float64(i % 97), "total": float64(i) * 1.5, "qty": float64(i % 13), "last": "r-" + strconv.Itoa(i),
			})
			if err := s.Apply(event.Write{Projection: "bench", Key: key, State: state, Seq: uint64(i + 1), Time: ts, Entry: e}); err != nil {
				b.Fatal(err)
			}
		}
		ws := s.Seal(nil)
		s.Committed(ws)
		ws = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.Len() != keys {
			b.Fatalf("cached %d keys, want %d", s.Len(), keys)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/keys, "B/key")
		runtime.KeepAlive(s)
	}
}
