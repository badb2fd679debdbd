package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/state"
)

// timeYAML folds with event time and emits with each handler kind.
const timeYAML = `
nats: {url: %q}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: OUT, subjects: ["out.>"]}
pipelines:
  - name: timed
    source: {stream: EV, stop: end}
    key: event.k
    time: event.ts
    batch: {size: %d, max_wait: 10ms}
    cache: {max_keys: 3}
    operators:
      - fold:
          projection: timed
          initial: {n: 0, seqs: []}
          on:
            e: {n: state.n + 1, seqs: 'concat(state.seqs, [event.i])'}
      - emit: {subject: '"out.once." + key', data: {i: event.i}, handler: once}
      - emit: {subject: '"out.on." + key', data: {i: event.i}, handler: on}
      - emit: {subject: '"out.all." + key', data: {i: event.i}, handler: all}
`

func buildTimed(t *testing.T, e *env, batch int) []*pipeline.Pipeline {
	t.Helper()
	return e.pipelines("timed.yaml", fmt.Sprintf(timeYAML, e.srv.ClientURL(), batch))
}

func emitted(t *testing.T, e *env, kind string) []float64 {
	t.Helper()
	var out []float64
	for _, m := range natstest.ReadAll(t, e.js, "OUT", "out."+kind+".>") {
		var body struct{ I float64 }
		if err := json.Unmarshal(m.Data(), &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, body.I)
	}
	return out
}

// TestEventTimeAndHandlers: outdated events never change state; `once` fires for live in-order
// events only, `on` for live and hydrated ones, `all` for every event (the README's handlers).
func TestEventTimeAndHandlers(t *testing.T) {
	e := newEnv(t)
	ps := buildTimed(t, e, 100)
	// i: 1 and 2 are replayed on purpose (hydrated); 3 is older than 2 (outdated); 4 is live.
	for _, ev := range []string{
		`{"type":"e","k":"a","i":1,"ts":"2026-01-01T00:00:01Z"}`,
		`{"type":"e","k":"a","i":2,"ts":"2026-01-01T00:00:03.5Z"}`,
		`{"type":"e","k":"a","i":3,"ts":1767225602000}`, // 00:00:02 in Unix ms
		`{"type":"e","k":"a","i":4,"ts":"2026-01-01T00:00:04Z"}`,
	} {
		e.pub("ev.a", ev)
	}
	if err := e.run(ps, pipeline.Options{HydrateUntil: 2}); err != nil {
		t.Fatal(err)
	}
	var st struct {
		N    float64
		Seqs []float64
	}
	readJSON(t, e.js, "timed", "a", &st)
	if st.N != 3 || !slices.Equal(st.Seqs, []float64{1, 2, 4}) {
		t.Errorf("state = %+v, want the outdated event 3 left out", st)
	}
	for kind, want := range map[string][]float64{"once": {4}, "on": {1, 2, 4}, "all": {1, 2, 3, 4}} {
		if got := emitted(t, e, kind); !slices.Equal(got, want) {
			t.Errorf("%s emitted for %v, want %v", kind, got, want)
		}
	}
	st2, err := state.Read(context.Background(), e.js, "timed", "a")
	if err != nil || st2.Time == nil || st2.Time.UTC().Format("15:04:05") != "00:00:04" {
		t.Errorf("stored event time = %v, %v; want 00:00:04", st2.Time, err)
	}
}

// TestPerKeyOrder: each key's events are applied in stream order, exactly once, across batches
// and a cache far smaller than the number of keys.
func TestPerKeyOrder(t *testing.T) {
	e := newEnv(t)
	ps := buildTimed(t, e, 13)
	rng := rand.New(rand.NewPCG(7, 7))
	want := map[string][]float64{}
	for i := 1; i <= 600; i++ {
		k := fmt.Sprintf("k%d", rng.IntN(20))
		want[k] = append(want[k], float64(i))
		e.pub("ev."+k, fmt.Sprintf(`{"type":"e","k":%q,"i":%d,"ts":%d}`, k, i, 1_700_000_000_000+i))
	}
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	for k, seqs := range want {
		var st struct{ Seqs []float64 }
		readJSON(t, e.js, "timed", k, &st)
		if !slices.Equal(st.Seqs, seqs) {
			t.Errorf("%s applied %v, want %v", k, st.Seqs, seqs)
		}
	}
	if got := len(emitted(t, e, "once")); got != 600 {
		t.Errorf("%d once emits, want 600", got)
	}
}
