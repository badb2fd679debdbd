package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// countYAML counts events per key in projection `counts`.
const countYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: counter
    source: {stream: EV, start: %q, stop: %s}
    decode: %s
    key: %s
    on_error: %s
    batch: {size: 50, max_wait: 10ms}
    operators:
      - fold:
          projection: counts
          on:
            "*": {n: "(state.n ?? 0) + 1", last: seq}
`

type countOpts struct {
	start, stop, decode, key, onError string
}

func (e *env) buildCount(o countOpts) []*pipeline.Pipeline {
	e.t.Helper()
	if o.stop == "" {
		o.stop = "end"
	}
	if o.decode == "" {
		o.decode = "json"
	}
	if o.key == "" {
		o.key = "event.k"
	}
	if o.onError == "" {
		o.onError = "dead_letter"
	}
	return e.pipelines("count.yaml", fmt.Sprintf(countYAML, e.srv.ClientURL(), o.start, o.stop, o.decode, o.key, o.onError))
}

func (e *env) pub(subject string, payloads ...string) {
	e.t.Helper()
	for _, p := range payloads {
		if _, err := e.js.Publish(context.Background(), subject, []byte(p)); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) counts() map[string]float64 {
	e.t.Helper()
	out := map[string]float64{}
	for k, st := range e.states("counts") {
		out[k] = st["n"].(float64)
	}
	return out
}

// states returns every value of a projection, by key.
func (e *env) states(proj string) map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, proj)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out
	}
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := kv.ListKeys(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for k := range l.Keys() {
		v, err := kv.Get(ctx, k)
		if err != nil {
			e.t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(v.Value(), &st); err != nil {
			e.t.Fatal(err)
		}
		key, _ := streams.DecodeKey(k)
		out[key] = st
	}
	return out
}

func events(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf(`{"type":"t","k":"k%d","i":%d}`, i%5, i))
	}
	return out
}

func total(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func TestStartModes(t *testing.T) {
	tests := []struct {
		name  string
		start func(mid time.Time) string
		want  float64
	}{
		{"all", func(time.Time) string { return "all" }, 200},
		{"seq", func(time.Time) string { return "seq:151" }, 50},
		{"time", func(mid time.Time) string { return "time:" + mid.Format(time.RFC3339Nano) }, 100},
		{"new", func(time.Time) string { return "new" }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.buildCount(countOpts{start: "all"}) // creates the stream
			e.pub("ev.a", events(0, 100)...)
			s, _ := e.js.Stream(context.Background(), "EV")
			last, err := s.GetMsg(context.Background(), 100)
			if err != nil {
				t.Fatal(err)
			}
			mid := last.Time.Add(time.Nanosecond)
			natstest.Eventually(t, 5*time.Second, "the clock to pass the first half", func() bool { return time.Now().After(mid) })
			e.pub("ev.a", events(100, 200)...)
			ps := e.buildCount(countOpts{start: tt.start(mid)})
			if err := e.run(ps, pipeline.Options{}); err != nil {
				t.Fatal(err)
			}
			if got := total(e.counts()); got != tt.want {
				t.Errorf("applied %v events, want %v", got, tt.want)
			}
		})
	}
}

func TestStartNewFollowsOnlyNewEvents(t *testing.T) {
	e := newEnv(t)
	ps := e.buildCount(countOpts{start: "new", stop: "follow"})
	e.pub("ev.a", events(0, 40)...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var started = make(chan struct{})
	go func() {
		done <- pipeline.RunAll(ctx, ps, pipeline.Options{JS: e.js, OnCommit: func(c pipeline.CommitInfo) {
			if c.Seq == 70 {
				close(started)
			}
		}})
	}()
	// "new" pins its start to the stream head in a checkpoint before reading.
	natstest.Eventually(t, 10*time.Second, "the start checkpoint", func() bool {
		kv, err := e.js.KeyValue(context.Background(), streams.CheckpointBucket)
		if err != nil {
			return false
		}
		_, err = checkpoint.NewStore(kv).Load(context.Background(), "counter")
		return err == nil
	})
	e.pub("ev.a", events(40, 70)...)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the new events were not committed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := total(e.counts()); got != 30 {
		t.Errorf("applied %v events, want the 30 published after start", got)
	}
}

func TestStopEndOnEmptyStreamReturns(t *testing.T) {
	e := newEnv(t)
	ps := e.buildCount(countOpts{start: "all"})
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.counts()); n != 0 {
		t.Errorf("%d keys, want 0", n)
	}
}

func TestOnError(t *testing.T) {
	bad := []string{`{"type":"t","k":"a"}`, `not json`, `{"type":"t","k":"a"}`, `{"type":"t","nokey":1}`, `{"type":"t","k":"a"}`}
	t.Run("dead_letter", func(t *testing.T) {
		e := newEnv(t)
		ps := e.buildCount(countOpts{start: "all"})
		e.pub("ev.x", bad...)
		if err := e.run(ps, pipeline.Options{}); err != nil {
			t.Fatal(err)
		}
		if got := e.counts()["a"]; got != 3 {
			t.Errorf("a = %v, want 3", got)
		}
		dl := natstest.ReadAll(t, e.js, streams.DLQStream, "")
		if len(dl) != 2 {
			t.Fatalf("%d dead letters, want 2", len(dl))
		}
		for i, wantSeq := range []string{"2", "4"} {
			h := dl[i].Headers()
			if h.Get(commit.HeaderSourceSeq) != wantSeq || h.Get(commit.HeaderError) == "" || dl[i].Subject() != "_jetfold.dlq.counter" {
				t.Errorf("dead letter %d: subject %s headers %v", i, dl[i].Subject(), h)
			}
		}
		if string(dl[0].Data()) != "not json" {
			t.Errorf("dead letter payload %q, want the original", dl[0].Data())
		}
	})
	t.Run("skip", func(t *testing.T) {
		e := newEnv(t)
		ps := e.buildCount(countOpts{start: "all", onError: "skip"})
		e.pub("ev.x", bad...)
		if err := e.run(ps, pipeline.Options{}); err != nil {
			t.Fatal(err)
		}
		if got := e.counts()["a"]; got != 3 {
			t.Errorf("a = %v, want 3", got)
		}
		if dl := natstest.ReadAll(t, e.js, streams.DLQStream, ""); len(dl) != 0 {
			t.Errorf("%d dead letters with on_error: skip", len(dl))
		}
	})
	t.Run("stop", func(t *testing.T) {
		e := newEnv(t)
		ps := e.buildCount(countOpts{start: "all", onError: "stop"})
		e.pub("ev.x", bad...)
		err := e.run(ps, pipeline.Options{})
		if !errors.Is(err, pipeline.ErrStopped) {
			t.Fatalf("err = %v, want ErrStopped", err)
		}
		if got := e.counts()["a"]; got != 1 {
			t.Errorf("a = %v, want 1 (the event before the bad one)", got)
		}
		kv, _ := e.js.KeyValue(context.Background(), streams.CheckpointBucket)
		cp, err := checkpoint.NewStore(kv).Load(context.Background(), "counter")
		if err != nil || cp.Seq != 1 {
			t.Errorf("checkpoint = %d, %v; want 1", cp.Seq, err)
		}
	})
}

func TestCloudEventsAndKeyEncoding(t *testing.T) {
	e := newEnv(t)
	ps := e.buildCount(countOpts{start: "all", decode: "cloudevents", key: `headers["ce-subject"]`})
	// binary mode
	m := nats.NewMsg("ev.ce")
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("ce-type", "thing")
	m.Header.Set("ce-subject", "user 1/ä*") // characters KV does not allow
	m.Data = []byte(`{"x":1}`)
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// structured mode
	e.pub("ev.ce", `{"specversion":"1.0","type":"thing","subject":"user 1/ä*","id":"1","source":"t","data":{"x":2}}`)
	// a key that looks encoded must stay reversible
	m2 := nats.NewMsg("ev.ce")
	m2.Header.Set("ce-specversion", "1.0")
	m2.Header.Set("ce-subject", "_b64.abc")
	m2.Header.Set("ce-type", "thing")
	m2.Data = []byte(`{}`)
	if _, err := e.js.PublishMsg(context.Background(), m2); err != nil {
		t.Fatal(err)
	}
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	got := e.counts()
	if got["user 1/ä*"] != 2 || got["_b64.abc"] != 1 || len(got) != 2 {
		t.Errorf("counts = %v", got)
	}
	st, err := state.Read(context.Background(), e.js, "counts", "user 1/ä*")
	if err != nil || st.Seq != 2 {
		t.Errorf("ReadState = %+v, %v", st, err)
	}
}

// TestCheckpointOfAnotherStream: a pipeline whose source stream changed does not read the new
// stream from the old stream's position: it stops and says why.
func TestCheckpointOfAnotherStream(t *testing.T) {
	e := newEnv(t)
	ps := e.buildCount(countOpts{start: "all"})
	e.pub("ev.a", events(0, 5)...)
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	other := e.pipelines("other.yaml", fmt.Sprintf(`
nats: {url: %q}
streams: [{name: EV2, subjects: ["ev2.>"]}]
pipelines:
  - name: counter
    source: {stream: EV2, stop: end}
    key: event.k
    operators: [{fold: {projection: counts, on: {"*": {n: "(state.n ?? 0) + 1"}}}}]
`, e.srv.ClientURL()))
	err := e.run(other, pipeline.Options{})
	if !errors.Is(err, pipeline.ErrStopped) || !strings.Contains(err.Error(), "stream EV") {
		t.Fatalf("err = %v, want ErrStopped naming the old stream", err)
	}
}
