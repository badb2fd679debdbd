package pipeline_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline"
)

// rollbackYAML folds every event, then drops or fails some of them after the fold: a dropped
// event keeps the fold's effect (the chain stops at the filter), a dead-lettered one must
// leave no trace in the state, though the fold may have changed the cached state in place.
const rollbackYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: OUT, subjects: ["out.>"]}
pipelines:
  - name: counter
    source: {stream: EV, start: all, stop: end}
    key: event.k
    batch: {size: %d, max_wait: 10ms}
    operators:
      - fold:
          projection: counts
          on:
            "*": {n: "(state.n ?? 0) + 1", sum: "(state.sum ?? 0) + event.i"}
      - fold:
          projection: counts
          on:
            "*": {twice: "state.n * 2"}
      - filter: %s
      - emit:
          subject: '"out." + key'
          data: {n: 'state.n', q: 'event.i / (event.bad ? 0 : 1)'}
`

// sharedShape checks that the operators of p writing proj hold its states in one shape with
// the given fields: each can then change in place what the others wrote, which the rollback
// tests rely on.
func sharedShape(t *testing.T, p *pipeline.Pipeline, proj string, fields ...string) {
	t.Helper()
	var shape *event.Shape
	for _, op := range pipeline.Operators(p) {
		pr, ok := op.(operators.Projector)
		if !ok || pr.Projection() != proj {
			continue
		}
		if shape != nil && pr.Shape() != shape {
			t.Fatalf("the operators writing %s hold states in different shapes", proj)
		}
		shape = pr.Shape()
	}
	if got := shape.Names(); !slices.Equal(got, fields) {
		t.Fatalf("%s is held in a shape of %v, want %v", proj, got, fields)
	}
}

// TestFailedEventsLeaveNoState: per key, the state after a run equals the fold of every event
// but the dead-lettered ones (those that fail at the emit after the filter): an event the
// filter drops keeps the folds' effects. With batches of one event (every fold changes the
// state in place) and of many.
func TestFailedEventsLeaveNoState(t *testing.T) {
	tests := []struct {
		name   string
		filter string // keeps an event after the folds
		pass   func(i, n int) bool
	}{
		// n is the count the folds give the event
		{"filter after the fold", "state.n <= 3", func(i, n int) bool { return n <= 3 }},
		{"filter on the event", "event.i < 20 || event.i > 40", func(i, n int) bool { return i < 20 || i > 40 }},
	}
	for _, tt := range tests {
		for _, batch := range []int{1, 100} {
			t.Run(fmt.Sprintf("%s/batch %d", tt.name, batch), func(t *testing.T) {
				e := newEnv(t)
				ps := e.pipelines("rb.yaml", fmt.Sprintf(rollbackYAML, e.srv.ClientURL(), batch, tt.filter))
				sharedShape(t, ps[0], "counts", "n", "sum", "twice")
				// the oracle: per key, the count and sum of the events not dead-lettered
				n, sum := map[string]int{}, map[string]int{}
				dead := 0
				for i := range 60 {
					k := fmt.Sprintf("k%d", i%4)
					bad := i%7 == 0 // its emit fails: a dead letter, if the filter lets it reach the emit
					e.pub("ev.x", fmt.Sprintf(`{"type":"t","k":%q,"i":%d,"bad":%v}`, k, i, bad))
					if bad && tt.pass(i, n[k]+1) {
						dead++
						continue
					}
					n[k]++
					sum[k] += i
				}
				if dead == 0 {
					t.Fatal("no event is dead-lettered: the test checks no rollback")
				}
				if err := e.run(ps, pipeline.Options{}); err != nil {
					t.Fatal(err)
				}
				got := e.states("counts")
				for k, want := range n {
					st := got[k]
					if st["n"] != float64(want) || st["sum"] != float64(sum[k]) || st["twice"] != float64(2*want) {
						t.Errorf("%s = %v, want n %d, sum %d, twice %d", k, st, want, sum[k], 2*want)
					}
				}
			})
		}
	}
}

// snapshotYAML keeps the state as it was before a fold in the event (set: {before: state}):
// the fold must not change that snapshot, so it cannot change the state in place.
const snapshotYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: snap
    source: {stream: EV, start: all, stop: end}
    key: event.k
    batch: {size: 100, max_wait: 10ms}
    operators:
      - fold:
          projection: counts
          on: {"*": {n: "(state.n ?? 0) + 1"}}
      - set: {before: %s}
      - fold:
          projection: counts
          on: {"*": {n: "state.n + 1"}}
      - fold:
          projection: seen
          on: {"*": {before: "event.before.n"}}
`

func TestStateSnapshotInEvent(t *testing.T) {
	for _, snapshot := range []string{"state", "$env.state"} {
		t.Run(snapshot, func(t *testing.T) {
			e := newEnv(t)
			ps := e.pipelines("snap.yaml", fmt.Sprintf(snapshotYAML, e.srv.ClientURL(), snapshot))
			for range 3 {
				e.pub("ev.x", `{"type":"t","k":"a"}`)
			}
			if err := e.run(ps, pipeline.Options{}); err != nil {
				t.Fatal(err)
			}
			// the third event: n was 4, the first fold makes it 5, the snapshot says 5, the
			// second fold makes it 6
			if got := e.states("counts")["a"]["n"]; got != 6.0 {
				t.Errorf("counts a.n = %v, want 6", got)
			}
			if got := e.states("seen")["a"]["before"]; got != 5.0 {
				t.Errorf("seen a.before = %v, want 5 (the state when the snapshot was taken)", got)
			}
		})
	}
}
