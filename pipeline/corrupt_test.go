package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// TestCorruptStateIsADeadLetter: a projection value that is not a JSON object (written by
// someone else) makes the events of its key dead letters, with the reason; the pipeline goes
// on to the end of its stream, and the other keys fold.
func TestCorruptStateIsADeadLetter(t *testing.T) {
	e := newEnv(t)
	ps := e.pipelines("c.yaml", fmt.Sprintf(changeYAML, e.srv.ClientURL(), "n: 0", "n: state.n + 1"))
	ctx := context.Background()
	kv, err := streams.EnsureBucket(ctx, e.js, "counts")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	e.pub("ev.x", `{"k":"bad"}`, `{"k":"good"}`, `{"k":"bad"}`)
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	dl := natstest.ReadAll(t, e.js, streams.DLQStream, "")
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want the 2 events of the corrupt key", len(dl))
	}
	for _, m := range dl {
		if r := m.Headers().Get("Jetfold-Error"); !strings.Contains(r, "not a JSON object") {
			t.Errorf("dead letter reason %q", r)
		}
	}
	if v, err := kv.Get(ctx, "good"); err != nil || string(v.Value()) != `{"n":1}` {
		t.Errorf("good = %v (%v), want n 1", v, err)
	}
}
