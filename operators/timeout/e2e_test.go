package timeout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/operators/timeout"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/streams"
)

// shopYAML is a pipeline (name, batch size, fold projection) with a dedupe, the timeout of the
// package comment and a fold that counts, per user, the events the dedupe keeps.
const shopYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: SHOP, subjects: ["shop.events.>"]}
  - {name: DERIVED, subjects: ["shop.derived.>"]}
pipelines:
  - name: %s
    source: {stream: SHOP, stop: end}
    key: event.user
    type: event.type
    time: event.ts
    batch: {size: %d, max_wait: 10ms}
    operators:
      - dedupe: {id: event.id, within: 1h}
      - timeout:
          name: abandoned
          start: [product-added-to-cart]
          cancel: [order-placed]
          after: 30m
          restart: true
          emit:
            subject: '"shop.derived.cart-abandoned." + key'
            data: {user_id: key, started: timer.started, deadline: timer.deadline, seq: timer.seq, sku: timer.event.sku}
            handler: once
            type: cart-abandoned
      - fold: {projection: %s, initial: {n: 0}, on: {"*": {n: "state.n + 1"}}, handler: all}
`

// shopEvent is a published event.
type shopEvent struct {
	ID   string `json:"id"`
	User string `json:"user"`
	Type string `json:"type"`
	TS   string `json:"ts,omitempty"`
	SKU  string `json:"sku"`
}

// shopEvents returns n events from seq first on: users u0..u5, carts filled and ordered,
// products viewed, in time order with jitter, some late by more than the timeout, some
// without a time (dead letters), some sent again (the same event, later in the stream).
func shopEvents(rng *rand.Rand, first uint64, n int, clock *time.Time, sent *[]shopEvent) ([]shopEvent, []oracle.Event) {
	var pub []shopEvent
	var evs []oracle.Event
	for i := range n {
		*clock = clock.Add(time.Duration(rng.IntN(180)) * time.Second)
		var e shopEvent
		if len(*sent) > 0 && rng.IntN(5) == 0 {
			e = (*sent)[len(*sent)-1-rng.IntN(min(len(*sent), 30))] // sent again
		} else {
			at := clock.Add(time.Duration(rng.IntN(241)-120) * time.Second)
			if rng.IntN(25) == 0 {
				at = clock.Add(-time.Duration(35+rng.IntN(30)) * time.Minute)
			}
			e = shopEvent{
				ID: fmt.Sprintf("e%d", int(first)+i), User: fmt.Sprintf("u%d", rng.IntN(6)),
				Type: []string{"product-added-to-cart", "product-added-to-cart", "order-placed", "product-viewed"}[rng.IntN(4)],
				TS:   at.Format(time.RFC3339), SKU: fmt.Sprintf("sku-%d", rng.IntN(100)),
			}
			if rng.IntN(40) == 0 {
				e.TS = "" // no time: a dead letter
			}
			*sent = append(*sent, e)
		}
		ts, err := time.Parse(time.RFC3339, e.TS)
		pub = append(pub, e)
		evs = append(evs, oracle.Event{
			Seq: first + uint64(i), Key: e.User, Type: e.Type, Time: ts,
			Fields: map[string]any{"id": e.ID, "sku": e.SKU}, Valid: err == nil, Reaches: err == nil,
		})
	}
	return pub, evs
}

// shop is the end-to-end environment: a server, its streams, and what was published.
type shop struct {
	t      *testing.T
	js     jetstream.JetStream
	url    string
	dir    string
	reg    *operators.Registry
	events []oracle.Event
}

func (s *shop) publish(payloads []shopEvent) {
	s.t.Helper()
	raw := make([][]byte, len(payloads))
	for i, p := range payloads {
		raw[i], _ = json.Marshal(p)
	}
	natstest.Publish(s.t, s.js, "shop.events.x", raw)
}

// build builds pipeline name (batch size batch, fold projection counts) and creates the
// streams.
func (s *shop) build(name string, batch int, counts string) []*pipeline.Pipeline {
	s.t.Helper()
	return pipetest.Build(s.t, s.js, filepath.Join(s.dir, name+".yaml"), fmt.Sprintf(shopYAML, s.url, name, batch, counts), s.reg)
}

// run runs ps to the end of the stream.
func (s *shop) run(ps []*pipeline.Pipeline, m *pipeline.Metrics) {
	s.t.Helper()
	if err := pipetest.Run(context.Background(), s.t, s.js, ps, pipeline.Options{OutputStreams: []string{"DERIVED"}, Metrics: m}); err != nil {
		s.t.Fatalf("run %s: %v", ps[0].Name, err)
	}
}

// check compares what pipeline name left with the oracle over the events published so far:
// its derived events (in order, with their ids and the events whose steps fired them), its
// pending timers, its counts of kept events per user, its duplicates and its dead letters.
// It returns the fired timers.
func (s *shop) check(name, counts string, m *pipeline.Metrics) []oracle.FiredTimer {
	t := s.t
	t.Helper()
	kept := oracle.Dedupe(s.events, oracle.DedupeSpec{ID: func(e oracle.Event) string { return e.Fields["id"].(string) }, Within: time.Hour})
	want := oracle.Timeouts(oracle.Passed(s.events, kept), oracle.TimeoutSpec{
		Start: []string{"product-added-to-cart"}, Cancel: []string{"order-placed"}, After: 30 * time.Minute, Once: true,
	})
	sku := map[uint64]string{}
	for _, e := range s.events {
		sku[e.Seq] = e.Fields["sku"].(string)
	}

	var got []oracle.FiredTimer
	for _, msg := range natstest.ReadAll(t, s.js, "DERIVED", "") {
		id := msg.Headers().Get(jetstream.MsgIDHeader)
		if !strings.HasPrefix(id, name+":") {
			continue
		}
		var body struct {
			UserID   string `json:"user_id"`
			Started  string
			Deadline string
			SKU      string
			Seq      float64
		}
		if err := json.Unmarshal(msg.Data(), &body); err != nil {
			t.Fatal(err)
		}
		started, err1 := time.Parse(time.RFC3339Nano, body.Started)
		deadline, err2 := time.Parse(time.RFC3339Nano, body.Deadline)
		by, err3 := strconv.ParseUint(msg.Headers().Get(commit.HeaderSourceSeq), 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("derived event %s: %v", msg.Data(), err)
		}
		seq := uint64(body.Seq)
		if wantID := fmt.Sprintf("%s:timeout:abandoned:%s:%d:%d", name, body.UserID, deadline.UnixMilli(), seq); id != wantID {
			t.Errorf("derived event id %q, want %q", id, wantID)
		}
		if msg.Subject() != "shop.derived.cart-abandoned."+body.UserID || body.SKU != sku[seq] || msg.Headers().Get("ce-type") != "cart-abandoned" || msg.Headers().Get("ce-subject") != body.UserID {
			t.Errorf("derived event on %s with sku %q (the start's: %q), headers %v", msg.Subject(), body.SKU, sku[seq], msg.Headers())
		}
		got = append(got, oracle.FiredTimer{Timer: oracle.Timer{Key: body.UserID, Started: started, Deadline: deadline, Event: seq}, By: by, Emit: true})
	}
	if !reflect.DeepEqual(got, want.Fired) {
		t.Errorf("%s: fired\n got %v\nwant %v", name, got, want.Fired)
	}

	var pending []oracle.Timer
	for key, v := range kvStates(t, s.js, name+"_timers") {
		started, err1 := time.Parse(time.RFC3339Nano, v[timeout.StateStarted].(string))
		deadline, err2 := time.Parse(time.RFC3339Nano, v[timeout.StateDeadline].(string))
		if err := errors.Join(err1, err2); err != nil || !strings.HasPrefix(key, "abandoned.") {
			t.Fatalf("timer %s = %v: %v", key, v, err)
		}
		seq := uint64(v[timeout.StateSeq].(float64))
		if ev, _ := v[timeout.StateEvent].(map[string]any); ev["sku"] != sku[seq] {
			t.Errorf("timer %s holds the event %v, want its sku %s", key, ev, sku[seq])
		}
		pending = append(pending, oracle.Timer{Key: strings.TrimPrefix(key, "abandoned."), Started: started, Deadline: deadline, Event: seq})
	}
	slices.SortFunc(pending, func(a, b oracle.Timer) int { return strings.Compare(a.Key, b.Key) })
	if !reflect.DeepEqual(pending, want.Pending) {
		t.Errorf("%s: pending\n got %v\nwant %v", name, pending, want.Pending)
	}

	wantCounts, dups, dead := map[string]float64{}, 0, 0
	for i, e := range s.events {
		switch {
		case !e.Valid:
			dead++
		case kept[i]:
			wantCounts[e.Key]++
		default:
			dups++
		}
	}
	gotCounts := map[string]float64{}
	for k, v := range kvStates(t, s.js, counts) {
		gotCounts[k] = v["n"].(float64)
	}
	if !reflect.DeepEqual(gotCounts, wantCounts) {
		t.Errorf("%s: counts of kept events %v, want %v", name, gotCounts, wantCounts)
	}
	if got := testutil.ToFloat64(m.Events.WithLabelValues(name, "", pipeline.ResultDuplicate)); got != float64(dups) || dups == 0 {
		t.Errorf("%s: %v duplicates counted, want %d", name, got, dups)
	}
	if got := testutil.ToFloat64(m.Events.WithLabelValues(name, "", pipeline.ResultDeadLetter)); got != float64(dead) {
		t.Errorf("%s: %v dead letters, want %d", name, got, dead)
	}
	t.Logf("%s: %d events: %d timers fired, %d pending, %d duplicates, %d dead letters", name, len(s.events), len(want.Fired), len(want.Pending), dups, dead)
	if len(want.Fired) < 5 || len(want.Pending) == 0 {
		t.Fatalf("the events fire %d timers and leave %d pending: too few to tell", len(want.Fired), len(want.Pending))
	}
	return want.Fired
}

// kvStates returns every value of a projection's bucket, by key.
func kvStates(t *testing.T, js jetstream.JetStream, bucket string) map[string]map[string]any {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	out := map[string]map[string]any{}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		v, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatalf("%s/%s: %v", bucket, k, err)
		}
		var st map[string]any
		if err := json.Unmarshal(v.Value(), &st); err != nil {
			t.Fatal(err)
		}
		key, err := streams.DecodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out[key] = st
	}
	return out
}

// TestEndToEnd runs a pipeline with a dedupe, a timeout and a fold on an embedded server and
// compares with the oracle what it leaves: after a first run; after more events and a second
// run (a restart: the timers' index is rebuilt from KV); and for a second pipeline that reads
// the same stream from its start in batches of another size (a replay), which fires the same
// timers at the same events.
func TestEndToEnd(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	reg := builtin.Registry()
	s := &shop{t: t, js: js, url: srv.ClientURL(), dir: t.TempDir(), reg: reg}
	rng := rand.New(rand.NewPCG(7, 7))
	clock, sent := t0, []shopEvent{}
	m := pipeline.NewMetrics(nil)

	carts := s.build("carts", 7, "counts")
	pub, evs := shopEvents(rng, 1, 150, &clock, &sent)
	s.publish(pub)
	s.events = append(s.events, evs...)
	s.run(carts, m)
	s.check("carts", "counts", m)

	// More events, and a second run of the same pipeline: a restart, which starts the
	// operators again from what KV holds.
	pub, evs = shopEvents(rng, 151, 150, &clock, &sent)
	s.publish(pub)
	s.events = append(s.events, evs...)
	s.run(carts, m)
	fired := s.check("carts", "counts", m)
	rebuilt, late := 0, 0
	for _, f := range fired {
		if f.Event <= 150 && f.By > 150 {
			rebuilt++ // pending at the restart: fired from the index rebuilt from KV
		}
		if f.By == f.Event {
			late++ // a late start, fired at once
		}
	}
	if rebuilt == 0 || late == 0 {
		t.Fatalf("%d timers fired after the restart, %d late: the events do not tell", rebuilt, late)
	}

	s.run(s.build("replay", 50, "counts_replay"), m)
	if again := s.check("replay", "counts_replay", m); !reflect.DeepEqual(again, fired) {
		t.Errorf("the replay fired\n%v\nthe first pipeline\n%v", again, fired)
	}

	// The dedupe's entries carry their TTL.
	st, err := js.Stream(context.Background(), streams.KVStream("carts_dedupe"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(context.Background(), streams.KVSubject("carts_dedupe", streams.EncodeKey("e1")))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(jetstream.MsgTTLHeader); got != "10800" {
		t.Errorf("dedupe entry TTL %q, want 10800 (3h: 2*within + 1h)", got)
	}
}
