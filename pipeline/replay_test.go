package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// userOf returns the user of a shop payload, "none" for one without (a heartbeat, a
// malformed event): the last token of the subject it is published on.
func userOf(p []byte) string {
	var ev struct {
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(p, &ev) != nil || ev.UserID == "" {
		return "none"
	}
	return ev.UserID
}

// publishByUser publishes payloads in order, each on shop.events.<its user>: the i-th gets
// stream sequence i+1.
func (e *env) publishByUser(payloads [][]byte) {
	e.t.Helper()
	e.publishUnder(shoptest.Subject, payloads)
}

// publishUnder publishes payloads in order, each on <prefix>.<its user> (see userOf).
func (e *env) publishUnder(prefix string, payloads [][]byte) {
	e.t.Helper()
	ctx := context.Background()
	w := streams.NewWindow(e.js, natstest.PublishWindow)
	for i, p := range payloads {
		if err := w.Publish(ctx, &nats.Msg{Subject: prefix + "." + userOf(p), Data: p}); err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// replay replays carts/key up to at, failing the test on an error.
func replay(t *testing.T, js jetstream.JetStream, p *pipeline.Pipeline, o pipeline.ReplayOptions) pipeline.ReplayResult {
	t.Helper()
	res, err := pipeline.Replay(context.Background(), js, p, o)
	if err != nil {
		t.Fatalf("replay %s/%s at %s: %v", o.Projection, o.Key, o.At, err)
	}
	return res
}

// sameCart tells whether the JSON value got is the oracle's cart want.
func sameCart(t *testing.T, got json.RawMessage, want shoptest.Cart) bool {
	t.Helper()
	var c shoptest.Cart
	if err := json.Unmarshal(got, &c); err != nil {
		t.Fatalf("state %s: %v", got, err)
	}
	return c.Items == want.Items && c.Orders == want.Orders && c.LastOrder == want.LastOrder &&
		fmt.Sprintf("%.2f", c.Revenue) == fmt.Sprintf("%.2f", want.Revenue)
}

// TestReplayAtSequences checks the state of keys at several sequences against the oracle
// on the prefix of the workload up to there, with and without a subject filter, and at
// the end against what a run wrote, byte for byte.
func TestReplayAtSequences(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(7, 3000, 40)
	ps := e.build("all", 500, 100000)
	e.publishByUser(payloads)
	p := ps[0]
	users := []string{"user-0", "user-7", "user-39", "user-404"}
	for _, seq := range []uint64{1, 5, 96, 97, 1234, 2999, 3000} {
		want := shoptest.Oracle(payloads[:seq]).Carts
		for _, user := range users {
			for _, subjects := range [][]string{nil, {shoptest.Subject + "." + user}} {
				res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: user, At: pipeline.At{Seq: seq}, Subjects: subjects})
				w, ok := want[user]
				switch {
				case res.UpTo != seq:
					t.Errorf("at %d: replayed to %d", seq, res.UpTo)
				case !ok && res.State != nil:
					t.Errorf("carts/%s at %d (subjects %v) = %s, want no state", user, seq, subjects, res.State)
				case ok && (res.State == nil || !sameCart(t, res.State, w)):
					t.Errorf("carts/%s at %d (subjects %v) = %s, want %+v", user, seq, subjects, res.State, w)
				}
				if subjects == nil && res.Read != int(seq) {
					t.Errorf("at %d without a filter: %d events read", seq, res.Read)
				}
				if subjects != nil && res.Read >= int(seq)/10+5 {
					t.Errorf("at %d with subjects %v: %d events read, want those of one user of 40", seq, subjects, res.Read)
				}
			}
		}
	}

	// Nothing was written: no bucket, no checkpoint, no consumer left on the source.
	if _, err := e.js.KeyValue(context.Background(), "carts"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("carts bucket after replays: %v, want none", err)
	}
	if _, err := e.js.KeyValue(context.Background(), streams.CheckpointBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("checkpoint bucket after replays: %v, want none", err)
	}
	noConsumers(t, e.js, "SHOP")

	// At the end, the replay is what a run of the pipeline wrote, for every key.
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	for user := range shoptest.Oracle(payloads).Carts {
		st, err := state.Read(context.Background(), e.js, "carts", user)
		if err != nil {
			t.Fatal(err)
		}
		res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: user})
		if !bytes.Equal(res.State, st.Value) || res.Seq != st.Seq || res.UpTo != 3000 {
			t.Errorf("carts/%s replayed to the end = %s (seq %d), the run wrote %s (seq %d)", user, res.State, res.Seq, st.Value, st.Seq)
		}
	}
}

// noConsumers fails the test unless stream has no consumer.
func noConsumers(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("stream %s has %d consumers after the replays, want 0", stream, info.State.Consumers)
	}
}

// TestReplayAtTime checks that an instant selects the last sequence stored at or before it.
func TestReplayAtTime(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(8, 1000, 10)
	p := e.build("all", 500, 100000)[0]
	before := time.Now().Add(-time.Hour)
	e.publishByUser(payloads[:600])
	time.Sleep(20 * time.Millisecond)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	e.publishByUser(payloads[600:])

	// The instant of a message itself selects it.
	msgs := natstest.ReadAll(t, e.js, "SHOP", "")
	md, err := msgs[299].Metadata()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		at   time.Time
		want uint64
	}{
		{before, 0},
		{md.Timestamp, 300},
		{between, 600},
		{time.Now().Add(time.Hour), 1000},
	} {
		want := shoptest.Oracle(payloads[:tt.want]).Carts
		for _, user := range []string{"user-1", "user-2"} {
			res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: user, At: pipeline.At{Time: tt.at}})
			if res.UpTo != tt.want {
				t.Errorf("at %s: position %d, want %d", tt.at, res.UpTo, tt.want)
			}
			w, ok := want[user]
			if ok != (res.State != nil) || ok && !sameCart(t, res.State, w) {
				t.Errorf("carts/%s at %s = %s, want %+v (has state: %t)", user, tt.at, res.State, w, ok)
			}
		}
	}
}

// TestReplayHistory checks the changes of a key against a fold by hand of its events.
func TestReplayHistory(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(9, 2000, 8)
	p := e.build("all", 500, 100000)[0]
	e.publishByUser(payloads)
	const user = "user-3"

	// By hand: the shop fold (shoptest.Pipeline) of user's events, and its changes.
	type change struct {
		seq  uint64
		typ  string
		cart shoptest.Cart
	}
	var want []change
	var cur shoptest.Cart
	has := false
	for i, pl := range payloads {
		var ev struct {
			Type    string   `json:"type"`
			UserID  string   `json:"user_id"`
			Amount  *float64 `json:"amount"`
			OrderID string   `json:"order_id"`
		}
		if json.Unmarshal(pl, &ev) != nil || ev.UserID != user || ev.Type == "heartbeat" {
			continue
		}
		next := cur
		switch ev.Type {
		case "add":
			next.Items++
		case "remove":
			next.Items = max(next.Items-1, 0)
		case "order":
			if ev.Amount == nil {
				continue // a dead letter
			}
			next = shoptest.Cart{Orders: cur.Orders + 1, Revenue: cur.Revenue + *ev.Amount, LastOrder: ev.OrderID}
		}
		if !has || next != cur {
			want = append(want, change{seq: uint64(i + 1), typ: ev.Type, cart: next})
		}
		cur, has = next, true
	}
	if len(want) < 20 {
		t.Fatalf("only %d changes of %s: not much of a test", len(want), user)
	}

	for _, subjects := range [][]string{nil, {shoptest.Subject + "." + user}} {
		var got []pipeline.Change
		res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: user, Subjects: subjects,
			OnChange: func(c pipeline.Change) bool { got = append(got, c); return true }})
		if len(got) != len(want) || res.Changes != len(want) {
			t.Fatalf("subjects %v: %d changes (result %d), want %d", subjects, len(got), res.Changes, len(want))
		}
		for i, c := range got {
			w := want[i]
			if c.Seq != w.seq || c.Type != w.typ || c.ByWatermark || c.Subject != shoptest.Subject+"."+user || !sameCart(t, c.State, w.cart) {
				t.Errorf("subjects %v: change %d = seq %d %s %s, want seq %d %s %+v", subjects, i, c.Seq, c.Type, c.State, w.seq, w.typ, w.cart)
			}
		}
		if !bytes.Equal(res.State, got[len(got)-1].State) {
			t.Errorf("final state %s, last change %s", res.State, got[len(got)-1].State)
		}
	}

	// OnChange ends the replay.
	n := 0
	res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: user,
		OnChange: func(pipeline.Change) bool { n++; return n < 3 }})
	if !res.Stopped || n != 3 || res.Read >= len(payloads) {
		t.Errorf("stopped at the third change: stopped %t, %d calls, %d events read", res.Stopped, n, res.Read)
	}
}

// TestReplayStateful checks a pipeline with a window, a dedupe and a timeout: replayed to
// the end, every key of its projections is what a run wrote (windows closed and timers
// fired by other keys' events included), and a subject filter is refused. In 4 partitions,
// the replay computes each key with its partition's watermark, as the run did.
func TestReplayStateful(t *testing.T) {
	for _, n := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d partitions", n), func(t *testing.T) { replayStateful(t, n) })
	}
}

func replayStateful(t *testing.T, partitions int) {
	e := newEnv(t)
	payloads := shoptest.Workload(10, 1500, 6)
	stateful := fmt.Sprintf(shoptest.Stateful, "all", "end", 200, 100000)
	if partitions > 1 {
		stateful = shoptest.WithPartitions(t, stateful, partitions)
	}
	ps := e.pipelines("p.yaml", fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n", e.srv.ClientURL())+
		shoptest.Streams+"\npipelines:"+stateful)
	p := ps[0]
	e.publishByUser(payloads)
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	checked, closedWindows, timers := 0, 0, 0
	for _, proj := range []string{"per_minute", "stateful_timers"} {
		kv, err := e.js.KeyValue(context.Background(), proj)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for k := range keys.Keys() {
			all = append(all, k)
		}
		for _, k := range all {
			key, err := streams.DecodeKey(k)
			if err != nil {
				t.Fatal(err)
			}
			st, err := state.Read(context.Background(), e.js, proj, key)
			if err != nil {
				t.Fatal(err)
			}
			var changes []pipeline.Change
			res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: proj, Key: key,
				OnChange: func(c pipeline.Change) bool { changes = append(changes, c); return true }})
			if !sameJSON(t, res.State, st.Value) {
				t.Errorf("%s/%s replayed = %s, the run wrote %s", proj, key, res.State, st.Value)
			}
			checked++
			// A window that closed changed when the watermark passed its end, by another
			// event than the last that counted in it.
			var closed map[string]any
			_ = json.Unmarshal(st.Value, &closed)
			if proj == "per_minute" && closed["closed"] == true {
				closedWindows++
				if len(changes) == 0 || !changes[len(changes)-1].ByWatermark {
					t.Errorf("%s/%s: closed, but its last change was not the watermark's: %+v", proj, key, changes)
				}
			}
			if proj == "stateful_timers" {
				timers++
			}
		}
	}
	if checked < 10 || closedWindows == 0 || timers == 0 {
		t.Fatalf("only %d keys checked, %d closed windows, %d timers", checked, closedWindows, timers)
	}
	t.Logf("%d keys checked, %d closed windows, %d timers", checked, closedWindows, timers)
	if partitions > 1 {
		return
	}
	_, err := pipeline.Replay(context.Background(), e.js, p, pipeline.ReplayOptions{Projection: "per_minute", Key: "user-1.0", Subjects: []string{"shop.events.user-1"}})
	if !errors.Is(err, pipeline.ErrSubjectsRefused) || !strings.Contains(err.Error(), "operator 2 (window) acts on the watermark") {
		t.Errorf("subject filter on a window pipeline: %v, want %v naming the window", err, pipeline.ErrSubjectsRefused)
	}
}

// sameJSON tells whether two JSON values are equal as values.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestReplayRefuses checks the errors: a projection the pipeline does not write, a
// position past the end, an empty key, a pipeline starting at `new`, a stream whose
// limits removed its first events.
func TestReplayRefuses(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(11, 100, 5)
	p := e.build("all", 500, 100000)[0]
	e.publishByUser(payloads)
	ctx := context.Background()
	for _, tt := range []struct {
		o    pipeline.ReplayOptions
		want error
		msg  string
	}{
		{pipeline.ReplayOptions{Projection: "users", Key: "a"}, pipeline.ErrUnknownProjection, `unknown projection "users": pipeline carts writes carts`},
		{pipeline.ReplayOptions{Projection: "carts", Key: "a", At: pipeline.At{Seq: 101}}, pipeline.ErrInvalidAt, "stream SHOP ends at sequence 100"},
		{pipeline.ReplayOptions{Projection: "carts", Key: ""}, nil, "the key is empty"},
	} {
		_, err := pipeline.Replay(ctx, e.js, p, tt.o)
		if err == nil || tt.want != nil && !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%+v: %v, want %v: ...%s", tt.o, err, tt.want, tt.msg)
		}
	}

	pNew := e.pipelines("new.yaml", fmt.Sprintf(shopYAML, e.srv.ClientURL(), "new", "end", 500, 1000))[0]
	if _, err := pipeline.Replay(ctx, e.js, pNew, pipeline.ReplayOptions{Projection: "carts", Key: "user-1"}); !errors.Is(err, pipeline.ErrNoHistory) || !strings.Contains(err.Error(), "--from") {
		t.Errorf("start: new: %v, want %v", err, pipeline.ErrNoHistory)
	}
	// With From, it reads from there: the state is that of the events from 51 on.
	res := replay(t, e.js, pNew, pipeline.ReplayOptions{Projection: "carts", Key: "user-1", From: 51})
	if w, ok := shoptest.Oracle(payloads[50:]).Carts["user-1"]; !ok || res.State == nil || !sameCart(t, res.State, w) || res.Read != 50 {
		t.Errorf("from 51: %s after %d events, want %+v", res.State, res.Read, w)
	}

	// The stream's limits removed its first events.
	s, err := e.js.Stream(ctx, "SHOP")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(61)); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.Replay(ctx, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: "user-1"}); !errors.Is(err, pipeline.ErrNoHistory) || !strings.Contains(err.Error(), "begins at sequence 61") {
		t.Errorf("purged stream: %v, want %v", err, pipeline.ErrNoHistory)
	}

	for _, tt := range []struct {
		in   string
		want pipeline.At
		err  bool
	}{
		{"42", pipeline.At{Seq: 42}, false},
		{"2026-03-01T12:00:00Z", pipeline.At{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, false},
		{"2026-03-01T13:00:00.5+01:00", pipeline.At{Time: time.Date(2026, 3, 1, 12, 0, 0, 5e8, time.UTC)}, false},
		{"0", pipeline.At{}, true},
		{"yesterday", pipeline.At{}, true},
		{"-3", pipeline.At{}, true},
		{"2026-03-01", pipeline.At{}, true},
	} {
		got, err := pipeline.ParseAt(tt.in)
		if (err != nil) != tt.err || !tt.err && (got.Seq != tt.want.Seq || !got.Time.Equal(tt.want.Time)) {
			t.Errorf("ParseAt(%q) = %+v, %v, want %+v (error: %t)", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, pipeline.ErrInvalidAt) {
			t.Errorf("ParseAt(%q): %v, want %v", tt.in, err, pipeline.ErrInvalidAt)
		}
	}
}

// TestReplaySubjectsWithinSource checks that a subject filter reads only within the
// pipeline's own source.subjects: an event of the key on another subject is not applied.
func TestReplaySubjectsWithinSource(t *testing.T) {
	e := newEnv(t)
	payloads := shoptest.Workload(12, 400, 4)
	yaml := strings.Replace(fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "end", 500, 1000),
		"source: {stream: SHOP,", `source: {stream: SHOP, subjects: ["shop.events.>"],`, 1)
	p := e.pipelines("p.yaml", yaml)[0]
	e.publishByUser(payloads)
	natstest.Publish(t, e.js, "shop.other.user-1", [][]byte{[]byte(`{"type":"add","user_id":"user-1"}`)})
	want := shoptest.Oracle(payloads).Carts["user-1"]
	for _, subjects := range [][]string{nil, {"shop.>"}, {"shop.*.user-1"}} {
		res := replay(t, e.js, p, pipeline.ReplayOptions{Projection: "carts", Key: "user-1", Subjects: subjects})
		if res.State == nil || !sameCart(t, res.State, want) || res.UpTo != 401 {
			t.Errorf("subjects %v: %s up to %d, want %+v up to 401", subjects, res.State, res.UpTo, want)
		}
	}
}
