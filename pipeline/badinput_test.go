package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// badYAML folds text blobs per key, with an event time, to exercise the README's bad-input rules.
const badYAML = `
nats: {url: %q}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: bad
    source: {stream: EV, stop: end}
    key: event.k
    time: event.ts
    batch: {size: 7, max_wait: 10ms}
    operators:
      - filter: event.type != "ping"
      - fold:
          projection: blobs
          initial: {blob: ""}
          on:
            add: {blob: state.blob + event.blob, n: '(state.n ?? 0) + 1'}
            div: {r: event.a / event.b}
`

// TestBadInput has a row per bad-input rule of the README that concerns events: each bad event
// is a dead letter whose Jetfold-Error names the reason, and the pipeline goes on.
func TestBadInput(t *testing.T) {
	// A server whose largest message is 64 KiB, so that state can outgrow it.
	srv := natstest.ServerWith(t, &server.Options{MaxPayload: 64 * 1024})
	_, js := natstest.Connect(t, srv)
	e := &env{t: t, srv: srv, js: js, dir: t.TempDir()}
	ps := e.pipelines("bad.yaml", fmt.Sprintf(badYAML, srv.ClientURL()))
	ctx := context.Background()
	blob := strings.Repeat("x", 14*1024)
	ok := func(k string, ts int) string {
		return fmt.Sprintf(`{"type":"add","k":%q,"ts":%d,"blob":"y"}`, k, ts)
	}
	big := func(ts int) string { return fmt.Sprintf(`{"type":"add","k":"big","ts":%d,"blob":%q}`, ts, blob) }
	rows := []struct {
		name    string
		payload string
		reason  string // "" for a good event
	}{
		{"good", ok("a", 1000), ""},
		{"no key, no time, but filtered first: not a dead letter", `{"type":"ping"}`, ""},
		{"payload that does not decode", `{"type":"add",`, "payload does not decode"},
		{"payload that is not an object", `[1,2]`, "payload does not decode"},
		{"key expression on a missing field", `{"type":"add","ts":1}`, "key: expression failed: event.k"},
		{"type expression on a missing field", `{"k":"a","ts":1}`, "type: expression failed: event.type"},
		{"event time that does not parse", `{"type":"add","k":"a","ts":"yesterday"}`, `event time "yesterday"`},
		{"handler expression that fails", `{"type":"add","k":"a","ts":2000,"blob":1}`, "expression failed: state.blob + event.blob"},
		{"state that JSON cannot hold (+Inf)", `{"type":"div","k":"a","ts":2500,"a":1,"b":0}`, "value cannot be stored as JSON"},
		{"key too long to store", ok(strings.Repeat("k", 2000), 2600), "key too long"},
		{"good after bad ones", ok("a", 3000), ""},
		{"big 1", big(1), ""}, {"big 2", big(2), ""}, {"big 3", big(3), ""}, {"big 4", big(4), ""},
		{"state over the KV value limit", big(5), "state over the KV value limit"},
		{"still over the limit", big(6), "state over the KV value limit"},
		{"good at the end", ok("a", 4000), ""},
	}
	for _, r := range rows {
		if _, err := js.Publish(ctx, "ev.x", []byte(r.payload)); err != nil {
			t.Fatal(err)
		}
	}
	metrics := pipeline.NewMetrics(nil)
	if err := pipeline.RunAll(ctx, ps, pipeline.Options{JS: js, Metrics: metrics}); err != nil {
		t.Fatal(err)
	}
	dl := natstest.ReadAll(t, js, streams.DLQStream, "")
	bySeq := map[string]string{}
	for _, m := range dl {
		bySeq[m.Headers().Get(commit.HeaderSourceSeq)] = m.Headers().Get(commit.HeaderError)
	}
	for i, r := range rows {
		seq := fmt.Sprint(i + 1)
		got, dead := bySeq[seq]
		switch {
		case r.reason == "" && dead:
			t.Errorf("%s (seq %s): dead letter %q, want none", r.name, seq, got)
		case r.reason != "" && !dead:
			t.Errorf("%s (seq %s): no dead letter, want one with %q", r.name, seq, r.reason)
		case r.reason != "" && !strings.Contains(got, r.reason):
			t.Errorf("%s (seq %s): Jetfold-Error %q, want it to contain %q", r.name, seq, got, r.reason)
		}
	}
	var a, bigState map[string]any
	readJSON(t, js, "blobs", "a", &a)
	if a["blob"] != "yyy" || a["n"] != 3.0 {
		t.Errorf("blobs/a = %v, want the three good events applied", a)
	}
	readJSON(t, js, "blobs", "big", &bigState)
	if n := len(bigState["blob"].(string)); bigState["n"] != 4.0 || n != 4*len(blob) {
		t.Errorf("blobs/big holds %v events (%d bytes), want its last good value: 4 events", bigState["n"], n)
	}
	if got := testutil.ToFloat64(metrics.Oversize.WithLabelValues("bad", "")); got != 2 {
		t.Errorf("jetfold_state_oversize_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(metrics.Events.WithLabelValues("bad", "", pipeline.ResultDeadLetter)); got != 10 {
		t.Errorf("dead_letter events = %v, want 10", got)
	}
}

func readJSON(t *testing.T, js jetstream.JetStream, projection, key string, v any) {
	t.Helper()
	st, err := state.Read(context.Background(), js, projection, key)
	if err != nil {
		t.Fatalf("%s/%s: %v", projection, key, err)
	}
	if err := json.Unmarshal(st.Value, v); err != nil {
		t.Fatalf("%s/%s: %v", projection, key, err)
	}
}
