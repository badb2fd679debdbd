package pipeline_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
)

// TestCacheKeys: a pipeline may hold its cache bound for its own projections, as much again
// for each projection of another pipeline it looks up (its replica), and that per partition.
func TestCacheKeys(t *testing.T) {
	const yaml = `
nats: {url: "nats://127.0.0.1:1"}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: plain
    source: {stream: EV}
    key: event.id
    cache: {max_keys: 1000}
    operators:
      - fold: {projection: a, on: {'*': {n: '(state.n ?? 0) + 1'}}}
  - name: joins
    source: {stream: EV}
    key: event.id
    cache: {max_keys: 1000}
    operators:
      - fold: {projection: b, on: {'*': {n: '(state.n ?? 0) + 1'}}}
      - lookup: {projection: a, key: key, as: x}
      - lookup: {projection: a, key: event.other, as: y}
      - lookup: {projection: b, key: event.other, as: z}
      - lookup: {projection: c, key: key, as: w}
  - name: parts
    source: {stream: EV}
    key: event.id
    partitions: 4
    cache: {max_keys: 1000}
    operators:
      - fold: {projection: d, on: {'*': {n: '(state.n ?? 0) + 1'}}}
`
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pipeline.Build(cfg, builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"plain": 1000, "joins": 3000, "parts": 4000} // joins: b, and replicas of a and c
	for _, p := range ps {
		if got := p.CacheKeys(); got != want[p.Name] {
			t.Errorf("%s: CacheKeys() = %d, want %d", p.Name, got, want[p.Name])
		}
	}
}
