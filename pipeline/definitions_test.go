package pipeline_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

const changeYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: counter
    source: {stream: EV, stop: end}
    key: event.k
    type: '"t"'
    operators:
      - fold:
          projection: counts
          initial: {%s}
          on:
            t: {%s}
`

// TestChangedPipeline: a fold that gains a field in initial and uses it in a handler, run
// over keys that have state already, says what changed at start and folds on: the old keys
// read the new field as its initial value, nothing is dead-lettered.
func TestChangedPipeline(t *testing.T) {
	e := newEnv(t)
	run := func(initial, handler string) string {
		t.Helper()
		var logs natstest.Buffer
		ps := e.pipelines("c.yaml", fmt.Sprintf(changeYAML, e.srv.ClientURL(), initial, handler))
		if err := e.run(ps, pipeline.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	e.pipelines("c.yaml", fmt.Sprintf(changeYAML, e.srv.ClientURL(), "n: 0", "n: 1")) // the stream
	e.pub("ev.x", `{"k":"a"}`, `{"k":"b"}`, `{"k":"a"}`)
	if logs := run("n: 0", "n: state.n + 1"); strings.Contains(logs, "changed since its checkpoint") {
		t.Fatalf("a first run warns of a change:\n%s", logs)
	}
	e.pub("ev.x", `{"k":"a"}`, `{"k":"c"}`)
	logs := run("n: 0, adds: 0", "n: state.n + 1, adds: state.adds + 1")
	if !strings.Contains(logs, "changed since its checkpoint") || !strings.Contains(logs, "initial gains adds") || !strings.Contains(logs, "handler of t changed") {
		t.Errorf("no warning naming the change:\n%s", logs)
	}
	got := e.states("counts")
	want := map[string]string{"a": "map[adds:1 n:3]", "b": "map[n:1]", "c": "map[adds:1 n:1]"}
	for k, w := range want {
		if fmt.Sprint(got[k]) != w {
			t.Errorf("%s = %v, want %s", k, got[k], w)
		}
	}
	if dl := natstest.ReadAll(t, e.js, streams.DLQStream, ""); len(dl) > 0 {
		t.Errorf("%d dead letters, the first: %s", len(dl), dl[0].Headers().Get("Jetfold-Error"))
	}
	if logs := run("n: 0, adds: 0", "n: state.n + 1, adds: state.adds + 1"); strings.Contains(logs, "changed since its checkpoint") {
		t.Errorf("a run of the same pipeline again warns of a change:\n%s", logs)
	}
}
