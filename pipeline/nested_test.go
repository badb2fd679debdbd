package pipeline_test

import (
	"fmt"
	"testing"

	"github.com/jetfold/jetfold/pipeline"
)

// nestedYAML folds a nested object of the state forward, in small batches on few keys, so
// that a key's next state is computed while its previous one is being committed.
const nestedYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: nested
    source: {stream: EV, start: all, stop: end}
    key: event.k
    batch: {size: 20, max_wait: 1ms}
    operators:
      - fold:
          projection: nest
          on:
            "*": {n: "(state.n ?? 0) + 1", meta: "state.meta ?? {a: 1, b: 2, c: 3, d: 4}"}
`

// TestNestedStateIsNotSharedWithACommit: with -race, a fold that changed a nested map of the
// state in place while the commit goroutine encoded it was reported (and crashed the process
// without -race, with "concurrent map iteration and map write").
func TestNestedStateIsNotSharedWithACommit(t *testing.T) {
	e := newEnv(t)
	ps := e.pipelines("n.yaml", fmt.Sprintf(nestedYAML, e.srv.ClientURL()))
	var p []string
	for i := range 5000 {
		p = append(p, fmt.Sprintf(`{"k":"k%d","type":"t"}`, i%3))
	}
	e.pub("ev.x", p...)
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	var st struct {
		N    float64
		Meta map[string]float64
	}
	readJSON(t, e.js, "nest", "k0", &st)
	if st.N != 1667 || st.Meta["d"] != 4 {
		t.Errorf("k0 = %+v, want n 1667 and the nested object", st)
	}
}
