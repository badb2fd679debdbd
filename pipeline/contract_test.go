package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go/jetstream"
)

// tumbleOp is written against the operator contract only, to show that it carries the
// stateful operators to come; it is not shipped. It counts events per key in tumbling windows
// of event time, each window a key "<key>/<start>" of its projection written with a TTL, and
// when the watermark passes a window's end it emits the count as a derived event with an id
// of its own and deletes the window. It uses every part of the contract: event time, the
// watermark (Exec.Watermark, Clock.Advance), Store.Get, Store.Scan, Store.Lookup, Write.Delete,
// Write.TTL and Output.ID.
type tumbleOp struct {
	proj   string
	labels string // a projection of another pipeline, looked up for each closed window
	size   time.Duration
	shape  *event.Shape
}

func (t *tumbleOp) Projection() string      { return t.proj }
func (t *tumbleOp) StateFields() []string   { return []string{"key", "start", "n"} }
func (t *tumbleOp) Shape() *event.Shape     { return t.shape }
func (t *tumbleOp) UseShape(s *event.Shape) { t.shape = s }
func (t *tumbleOp) UsesTTL() bool           { return true }
func (t *tumbleOp) windowKey(key string, start time.Time) string {
	return key + "/" + start.UTC().Format(time.RFC3339)
}

// Process counts the event in its window; an event whose window the watermark has passed is
// late and dropped, and one applied before a restart is skipped.
func (t *tumbleOp) Process(x *operators.Exec, ev *event.Event) (bool, error) {
	if err := ev.Require(); err != nil {
		return false, err
	}
	start := ev.Time.Truncate(t.size)
	if !start.Add(t.size).After(x.Watermark) && ev.Time.Before(x.Watermark) {
		return false, nil // late: its window is closed
	}
	k := t.windowKey(ev.Key, start)
	e, err := x.Store.Get(x.Ctx, t.proj, k)
	if err != nil {
		return false, err
	}
	n := 0.0
	if e != nil && e.State != nil {
		if e.Seq >= ev.Seq {
			return true, nil // applied and committed before a restart
		}
		n = e.State.Map()["n"].(float64)
	}
	state := event.NewRecord(t.shape, map[string]any{"key": ev.Key, "start": start.UTC().Format(time.RFC3339), "n": n + 1})
	ev.Writes = append(ev.Writes, event.Write{Projection: t.proj, Key: k, State: state, Seq: ev.Seq, Time: ev.Time, Entry: e, TTL: time.Hour})
	return true, nil
}

// Advance closes the windows whose end the watermark passed between from and to: only when it
// crossed a window boundary, found with a scan.
func (t *tumbleOp) Advance(x *operators.Exec, tick *event.Event, from, to time.Time) error {
	if !to.Truncate(t.size).After(from.Truncate(t.size)) {
		return nil
	}
	type due struct {
		key string
		e   *event.Entry
	}
	var closing []due
	err := x.Store.Scan(x.Ctx, t.proj, "", func(k string, e *event.Entry) bool {
		start, err := time.Parse(time.RFC3339, e.State.Map()["start"].(string))
		if err == nil && !start.Add(t.size).After(to) {
			closing = append(closing, due{k, e})
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, d := range closing {
		st := d.e.State.Map()
		label, err := x.Store.Lookup(x.Ctx, t.labels, st["key"].(string))
		if err != nil {
			return err
		}
		data, err := json.Marshal(map[string]any{"key": st["key"], "start": st["start"], "n": st["n"], "label": label["name"]})
		if err != nil {
			return err
		}
		tick.Outputs = append(tick.Outputs, event.Output{Subject: "win." + st["key"].(string), Type: "window-closed", Data: data, ID: "tumble:" + d.key})
		tick.Writes = append(tick.Writes, event.Write{Projection: t.proj, Key: d.key, Delete: true, Seq: tick.Seq, Time: tick.Time, Entry: d.e})
	}
	return nil
}

func tumbleSpec() operators.Spec {
	return operators.Spec{Name: "tumble", Summary: "test only", Build: func(_ operators.BuildContext, raw any) (operators.Operator, error) {
		m, _ := raw.(map[string]any)
		proj, _ := m["projection"].(string)
		return &tumbleOp{proj: proj, labels: "labels", size: time.Minute, shape: event.NewShape("key", "start", "n")}, nil
	}}
}

const tumbleYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: WIN, subjects: ["win.>"]}
pipelines:
  - name: tumbling
    source: {stream: EV, stop: end}
    key: event.k
    type: '"count"'
    time: event.ts
    batch: {size: 7, max_wait: 10ms}
    operators:
      - tumble: {projection: win}
`

// TestOperatorContract runs the test operator over five minutes of events of two keys, in two
// runs (the watermark is kept with the checkpoint between them): every window the watermark
// passed is emitted once with its count, under the operator's own id, and deleted; the open
// one is kept, with its TTL; a late event is dropped.
func TestOperatorContract(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg := builtin.Registry()
	if err := reg.Register(tumbleSpec()); err != nil {
		t.Fatal(err)
	}
	ps := pipetest.Build(t, e.js, filepath.Join(e.dir, "tumble.yaml"), fmt.Sprintf(tumbleYAML, e.srv.ClientURL()), reg)
	// The projection another pipeline writes, that the operator looks up.
	labels, err := streams.EnsureBucket(ctx, e.js, "labels")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := labels.Put(ctx, "a", []byte(`{"name":"Alice"}`)); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(minute, second int) string {
		return base.Add(time.Duration(minute)*time.Minute + time.Duration(second)*time.Second).Format(time.RFC3339)
	}
	want := map[string]float64{} // window key -> count, for the windows that close
	var first, second []string
	for m := range 5 {
		for s := 0; s < 60; s += 20 {
			for _, k := range []string{"a", "b"} {
				if k == "b" && s == 40 {
					continue
				}
				ev := fmt.Sprintf(`{"k":%q,"ts":%q}`, k, at(m, s))
				if m < 2 {
					first = append(first, ev)
				} else {
					second = append(second, ev)
				}
				if m < 4 {
					want[k+"/"+at(m, 0)]++
				}
			}
		}
	}
	second = append(second, fmt.Sprintf(`{"k":"a","ts":%q}`, at(0, 30))) // late: minute 0 is closed
	e.pub("ev.x", first...)
	if err := e.run(ps, pipeline.Options{OutputStreams: []string{"WIN"}}); err != nil {
		t.Fatal(err)
	}
	e.pub("ev.x", second...)
	if err := e.run(ps, pipeline.Options{OutputStreams: []string{"WIN"}}); err != nil {
		t.Fatal(err)
	}

	got := map[string]float64{}
	for _, m := range natstest.ReadAll(t, e.js, "WIN", "") {
		var body struct {
			Key, Start, Label string
			N                 float64
		}
		if err := json.Unmarshal(m.Data(), &body); err != nil {
			t.Fatal(err)
		}
		k := body.Key + "/" + body.Start
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != "tumbling:tumble:"+k {
			t.Errorf("derived event of %s has id %q, want the operator's own", k, id)
		}
		if (body.Key == "a") != (body.Label == "Alice") {
			t.Errorf("window %s: looked-up label %q", k, body.Label)
		}
		if _, dup := got[k]; dup {
			t.Errorf("window %s emitted twice", k)
		}
		got[k] = body.N
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("closed windows %v, want %v", got, want)
	}
	for k := range want {
		if _, err := state.Read(ctx, e.js, "win", k); !errors.Is(err, state.ErrNoState) {
			t.Errorf("closed window %s: %v, want it deleted", k, err)
		}
	}
	for k, n := range map[string]int{"a": 3, "b": 2} {
		open := k + "/" + at(4, 0)
		s, err := e.js.Stream(ctx, streams.KVStream("win"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(ctx, streams.KVSubject("win", streams.EncodeKey(open)))
		if err != nil {
			t.Fatalf("open window %s: %v", open, err)
		}
		if !strings.Contains(string(m.Data), fmt.Sprintf(`"n":%d`, n)) || m.Header.Get("Nats-TTL") != "3600" {
			t.Errorf("open window %s = %s, TTL %q", open, m.Data, m.Header.Get("Nats-TTL"))
		}
	}
	st, err := pipeline.ReadStatus(ctx, e.js, ps[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != st.Head {
		t.Errorf("checkpoint %d, head %d", st.Checkpoint, st.Head)
	}
}
