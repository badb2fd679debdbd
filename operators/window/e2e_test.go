package window_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// e2eYAML has two pipelines over one stream: the specification's tumbling window (with its
// emit) and sessions whose emit sends the window itself.
const e2eYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: DERIVED, subjects: ["shop.derived.>"]}
pipelines:
  - name: revenue
    source: {stream: EV, stop: end}
    key: event.user
    type: '"order"'
    time: event.ts
    batch: {size: 7, max_wait: 10ms}
    operators:
      - window:
          projection: revenue_per_minute
          tumbling: 1m
          lateness: 10s
          retention: 24h
          aggregate:
            orders: count()
            revenue: sum(event.amount)
            biggest: max(event.amount)
            products: distinct(event.product)
          emit:
            subject: '"shop.derived.revenue." + key'
            data: {user_id: key, start: window.start, end: window.end, orders: window.orders, revenue: window.revenue}
            handler: once
  - name: visits
    source: {stream: EV, stop: end}
    key: event.user
    type: '"order"'
    time: event.ts
    batch: {size: 5, max_wait: 10ms}
    operators:
      - window:
          projection: visits
          session: {gap: 2m}
          lateness: 30s
          retention: 10m
          aggregate: {n: count(), mean: avg(event.amount), lastp: last(event.product)}
          emit: {subject: '"shop.derived.visits." + key', type: visit}
`

// e2ePipeline is what the test knows of one pipeline of e2eYAML.
type e2ePipeline struct {
	name, projection, subject string
	spec                      oracle.WindowSpec
	// data is the emitted body of a closed window as the oracle has it.
	data func(c oracle.ClosedWindow) map[string]any
}

var e2ePipelines = []e2ePipeline{{
	name: "revenue", projection: "revenue_per_minute", subject: "shop.derived.revenue.",
	spec: oracle.WindowSpec{Tumbling: time.Minute, Lateness: 10 * time.Second, Retention: 24 * time.Hour, Once: true, Aggregates: []oracle.Aggregate{
		{Name: "biggest", Fn: "max", Value: field("amount")},
		{Name: "orders", Fn: "count"},
		{Name: "products", Fn: "distinct", Value: field("product")},
		{Name: "revenue", Fn: "sum", Value: field("amount")},
	}},
	data: func(c oracle.ClosedWindow) map[string]any {
		return map[string]any{"user_id": c.Key, "start": c.Value["start"], "end": c.Value["end"], "orders": c.Value["orders"], "revenue": c.Value["revenue"]}
	},
}, {
	name: "visits", projection: "visits", subject: "shop.derived.visits.",
	spec: oracle.WindowSpec{Session: 2 * time.Minute, Lateness: 30 * time.Second, Retention: 10 * time.Minute, Aggregates: []oracle.Aggregate{
		{Name: "lastp", Fn: "last", Value: field("product")},
		{Name: "mean", Fn: "avg", Value: field("amount")},
		{Name: "n", Fn: "count"},
	}},
	data: func(c oracle.ClosedWindow) map[string]any {
		d := maps.Clone(c.Value)
		delete(d, "closed")
		return d
	},
}}

// TestEndToEnd runs the pipelines of e2eYAML on an embedded NATS server in two runs (the
// second restarts from the first's checkpoint, its index rebuilt by Start) and compares, after
// each, the committed windows, the derived events and the dead letters with the oracle's.
func TestEndToEnd(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	reg := builtin.Registry()
	ps := pipetest.Build(t, js, filepath.Join(t.TempDir(), "w.yaml"), fmt.Sprintf(e2eYAML, srv.ClientURL()), reg)
	events := e2eEvents()
	half := len(events) / 2
	for i, upto := range []int{half, len(events)} {
		var payloads [][]byte
		for _, e := range events[i*half : upto] {
			payloads = append(payloads, e2ePayload(e))
		}
		natstest.Publish(t, js, "ev.order", payloads)
		if err := pipetest.Run(context.Background(), t, js, ps, pipeline.Options{OutputStreams: []string{"DERIVED"}}); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		for _, p := range e2ePipelines {
			want := oracle.Windows(events[:upto], p.spec)
			if i == 1 && (len(want.Closed) < 20 || len(want.Dead) < 3) {
				t.Fatalf("%s: weak workload: %d closed, %d dead letters", p.name, len(want.Closed), len(want.Dead))
			}
			t.Run(fmt.Sprintf("run %d %s", i+1, p.name), func(t *testing.T) {
				compareState(t, readBucket(t, js, p.projection), want.State)
				checkDerived(t, js, p, want)
				checkDeadLetters(t, js, p.name, want.Dead)
				checkDeleted(t, js, p.projection, want)
			})
		}
	}
}

// e2eEvents returns the workload: five users' orders over about an hour, some out of order,
// some late, some with an amount that is no number.
func e2eEvents() []oracle.Event {
	rng := rand.New(rand.NewPCG(13, 13))
	var out []oracle.Event
	now := t0
	for i := range 400 {
		now = now.Add(time.Duration(rng.IntN(15_000)) * time.Millisecond)
		if rng.IntN(40) == 0 {
			now = now.Add(4 * time.Minute) // sessions close
		}
		at := now
		switch {
		case rng.IntN(6) == 0:
			at = at.Add(-time.Duration(rng.IntN(80)) * time.Second)
		case rng.IntN(60) == 0:
			at = at.Add(-time.Hour) // late
		}
		amount := any(float64(rng.IntN(10_000)) / 100)
		if rng.IntN(80) == 0 {
			amount = "n/a"
		}
		out = append(out, oracle.Event{
			Seq: uint64(i + 1), Key: "u" + strconv.Itoa(rng.IntN(5)), Type: "order", Time: at, Valid: true, Reaches: true,
			Fields: map[string]any{"amount": amount, "product": []any{"p1", "p2", "p3", 7.0}[rng.IntN(4)]},
		})
	}
	return out
}

// e2ePayload is e as published.
func e2ePayload(e oracle.Event) []byte {
	b, err := json.Marshal(map[string]any{"user": e.Key, "ts": oracle.Timestamp(e.Time), "amount": e.Fields["amount"], "product": e.Fields["product"]})
	if err != nil {
		panic(err)
	}
	return b
}

// readBucket returns the committed values of every key of the projection, without the
// internal fields, and checks that state.Read reads one the same.
func readBucket(t *testing.T, js jetstream.JetStream, projection string) map[string]map[string]any {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, projection)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for k := range keys.Keys() {
		key, err := streams.DecodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		v, err := state.Read(ctx, js, projection, key)
		if errors.Is(err, state.ErrNoState) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(v.Value, &m); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		out[key] = public(m)
	}
	return out
}

// checkDerived compares the derived events of pipeline p with the oracle's closes, in order:
// subject, id, source sequence and data; none is published twice.
func checkDerived(t *testing.T, js jetstream.JetStream, p e2ePipeline, want oracle.WindowResult) {
	t.Helper()
	msgs := natstest.ReadAll(t, js, "DERIVED", p.subject+">")
	var wantEmits []oracle.ClosedWindow
	for _, c := range want.Closed {
		if c.Emit {
			wantEmits = append(wantEmits, c)
		}
	}
	if len(msgs) != len(wantEmits) {
		t.Fatalf("%d derived events, want %d", len(msgs), len(wantEmits))
	}
	for i, m := range msgs {
		c := wantEmits[i]
		id := p.name + ":window:" + p.projection + ":" + c.KVKey
		if m.Subject() != p.subject+c.Key || m.Headers().Get(jetstream.MsgIDHeader) != id ||
			m.Headers().Get(commit.HeaderSourceSeq) != strconv.FormatUint(c.By, 10) {
			t.Fatalf("derived event %d: %s id %s by %s; want %s%s id %s by %d", i, m.Subject(),
				m.Headers().Get(jetstream.MsgIDHeader), m.Headers().Get(commit.HeaderSourceSeq), p.subject, c.Key, id, c.By)
		}
		var got map[string]any
		if err := json.Unmarshal(m.Data(), &got); err != nil {
			t.Fatal(err)
		}
		if d := diffValues(got, p.data(c)); len(d) > 0 {
			t.Errorf("derived event of %s: %s", c.KVKey, strings.Join(d, "; "))
		}
	}
}

// checkDeadLetters compares the dead letters of the pipeline with the oracle's: source
// sequence and kind of reason (Jetfold-Error), late ones starting with "late".
func checkDeadLetters(t *testing.T, js jetstream.JetStream, pipelineName string, want []oracle.DeadLetter) {
	t.Helper()
	var got []oracle.DeadLetter
	for _, m := range natstest.ReadAll(t, js, streams.DLQStream, streams.DLQSubject(pipelineName)) {
		seq, err := strconv.ParseUint(m.Headers().Get(commit.HeaderSourceSeq), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, oracle.DeadLetter{Seq: seq, Reason: m.Headers().Get(commit.HeaderError)})
	}
	if !slices.ContainsFunc(got, func(d oracle.DeadLetter) bool { return strings.HasPrefix(d.Reason, "late") }) && len(want) > 0 {
		t.Errorf("no late dead letter among %v", got)
	}
	compareDead(t, got, want)
}

// checkDeleted checks that the windows deleted after retention are deleted in KV by a marker
// that the server removes in its turn (Nats-TTL), so that the keys Start lists do not grow.
func checkDeleted(t *testing.T, js jetstream.JetStream, projection string, want oracle.WindowResult) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, streams.KVStream(projection))
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowMsgTTL {
		t.Errorf("bucket %s does not allow per-key TTLs", projection)
	}
	for _, c := range want.Closed {
		if _, kept := want.State[c.KVKey]; kept {
			continue
		}
		m, err := s.GetLastMsgForSubject(ctx, streams.KVSubject(projection, streams.EncodeKey(c.KVKey)))
		if err != nil {
			t.Fatalf("deleted window %s: %v", c.KVKey, err)
		}
		if m.Header.Get("KV-Operation") != "DEL" || m.Header.Get(jetstream.MsgTTLHeader) != "60" {
			t.Errorf("deleted window %s: headers %v, want a delete marker with a TTL of 60s", c.KVKey, m.Header)
		}
	}
}
