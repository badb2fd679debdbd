package lookup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/expr"
	"github.com/jetfold/jetfold/operators/lookup"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBuildErrors: each mistake is reported at its field.
func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		raw   any
		vars  []string
		field string
		msg   string
	}{
		{"not a map", "users", nil, "", "want a map"},
		{"unknown field", map[string]any{"projection": "u", "key": "event.k", "as": "u", "ttl": 1}, nil, "ttl", "unknown field"},
		{"bad projection", map[string]any{"projection": "a.b", "key": "event.k", "as": "u"}, nil, "projection", "letters, digits"},
		{"no key", map[string]any{"projection": "u", "as": "u"}, nil, "key", "missing expression"},
		{"key not compiling", map[string]any{"projection": "u", "key": "event.k ==", "as": "u"}, nil, "key", "unexpected token"},
		{"as reserved", map[string]any{"projection": "u", "key": "event.k", "as": "state"}, nil, "as", "taken"},
		{"as not a name", map[string]any{"projection": "u", "key": "event.k", "as": "1x"}, nil, "as", "variable name"},
		{"as twice", map[string]any{"projection": "u", "key": "event.k", "as": "u"}, []string{"u"}, "as", "already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lookup.Spec().Build(operators.BuildContext{Pipeline: "p", Vars: tt.vars}, tt.raw)
			var fe *expr.FieldError
			if err == nil || !asField(err, &fe) || fe.Field != tt.field || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want field %q with %q", err, tt.field, tt.msg)
			}
		})
	}
}

func asField(err error, fe **expr.FieldError) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return asField(j.Unwrap()[0], fe)
	}
	f, ok := err.(*expr.FieldError)
	*fe = f
	return ok
}

const joinYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["users.>", "orders.>"]}
  - {name: OUT, subjects: ["enriched.>"]}
pipelines:
  - name: users
    source: {stream: EV, stop: end}
    key: event.id
    type: '"user"'
    operators:
      - filter: subject startsWith "users."
      - fold: {projection: users, on: {'*': {name: event.name, orders: '(state.orders ?? 0)'}}}
  - name: orders
    source: {stream: EV, stop: %s}
    key: event.order
    type: '"order"'
    operators:
      - filter: subject startsWith "orders."
      - fold: {projection: totals, on: {'*': {n: '(state.n ?? 0) + 1'}}}
      - lookup: {projection: users, key: event.user, as: user}
      - lookup: {projection: totals, key: key, as: mine}
      - emit:
          subject: '"enriched." + key'
          data: {order: key, name: 'user?.name ?? "none"', n: mine.n}
`

// TestJoin: an order is enriched with another pipeline's committed state, nil for a user
// that has none or no user field, and with its own pipeline's latest state (the batch in
// hand's); a user changed while the pipeline runs is seen through the watch.
func TestJoin(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	dir := t.TempDir()
	ctx := context.Background()
	build := func(stop string) []*pipeline.Pipeline {
		return pipetest.Build(t, js, filepath.Join(dir, "p.yaml"), fmt.Sprintf(joinYAML, srv.ClientURL(), stop), nil)
	}
	ps := build("end") // and the streams
	natstest.Publish(t, js, "users.new", [][]byte{[]byte(`{"id":"u1","name":"Ada"}`), []byte(`{"id":"u2","name":"Bob"}`)})
	if err := pipetest.Run(ctx, t, js, ps[:1], pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	natstest.Publish(t, js, "orders.new", [][]byte{
		[]byte(`{"order":"o1","user":"u1"}`), []byte(`{"order":"o2","user":"u9"}`),
		[]byte(`{"order":"o3"}`), []byte(`{"order":"o1","user":"u2"}`),
	})
	if err := pipetest.Run(ctx, t, js, build("end")[1:], pipeline.Options{OutputStreams: []string{"OUT"}}); err != nil {
		t.Fatal(err)
	}
	want := []string{`o1 Ada 1`, `o2 none 1`, `o3 none 1`, `o1 Bob 2`}
	if dl := natstest.ReadAll(t, js, streams.DLQStream, ""); len(dl) > 0 {
		t.Fatalf("%d dead letters, the first: %s", len(dl), dl[0].Headers().Get("Jetfold-Error"))
	}
	if got := enriched(t, js); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("enriched %v, want %v", got, want)
	}

	// Following: a user written meanwhile reaches the replica.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- pipeline.RunAll(rctx, build("follow")[1:], pipeline.Options{JS: js, OutputStreams: []string{"OUT"}})
	}()
	out, err := js.Stream(ctx, "OUT")
	if err != nil {
		t.Fatal(err)
	}
	// One order at a time, each after the last one's derived event, until one has name.
	sent := len(want)
	until := func(name string) {
		t.Helper()
		natstest.Eventually(t, time.Minute, name+" in a derived event", func() bool {
			info, err := out.Info(ctx)
			if err != nil || info.State.Msgs < uint64(sent) {
				return false
			}
			if got := enriched(t, js); sent > len(want) && strings.HasSuffix(got[len(got)-1], " "+name+" 1") {
				return true
			}
			sent++
			natstest.Publish(t, js, "orders.new", [][]byte{[]byte(fmt.Sprintf(`{"order":"x%d","user":"u1"}`, sent))})
			return false
		})
	}
	until("Ada") // the replica holds u1 now: later lookups of it make no read
	kv, err := js.KeyValue(ctx, "users")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "u1", []byte(`{"name":"Ada L."}`)); err != nil {
		t.Fatal(err)
	}
	until("Ada L.")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// enriched returns the derived events as "order name n".
func enriched(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var out []string
	for _, m := range natstest.ReadAll(t, js, "OUT", "") {
		var b struct {
			Order, Name string
			N           float64
		}
		if err := json.Unmarshal(m.Data(), &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %g", b.Order, b.Name, b.N))
	}
	return out
}

// joinManyYAML is a join against a table larger than the pipeline's cache (and so than the
// lookup's replica): format it with the server's URL.
const joinManyYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["orders.>"]}
  - {name: OUT, subjects: ["enriched.>"]}
pipelines:
  - name: orders
    source: {stream: EV, stop: end}
    key: event.order
    type: '"order"'
    cache: {max_keys: 1200}
    batch: {size: 200}
    operators:
      - lookup: {projection: people, key: event.user, as: user}
      - emit:
          subject: '"enriched." + key'
          data: {order: key, name: 'user?.name ?? "none"', n: 1}
`

// TestJoinReadAhead: a join against a table of 2,000 keys with a replica of 1,200: the keys the
// events look up are read ahead, many at once, and every order is enriched with its user's
// committed value (or none) as an oracle of the written table says.
func TestJoinReadAhead(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	kv, err := streams.EnsureBucket(ctx, js, "people")
	if err != nil {
		t.Fatal(err)
	}
	const people, orders = 2000, 3000
	names := map[string]string{}
	for i := range people {
		if i%10 == 3 {
			continue // absent
		}
		u, name := fmt.Sprintf("u%d", i), fmt.Sprintf("name-%d", i)
		if _, err := kv.Put(ctx, u, []byte(fmt.Sprintf(`{"name":%q}`, name))); err != nil {
			t.Fatal(err)
		}
		names[u] = name
	}
	ps := pipetest.Build(t, js, filepath.Join(t.TempDir(), "p.yaml"), fmt.Sprintf(joinManyYAML, srv.ClientURL()), nil)
	var payloads [][]byte
	var want []string
	for i := range orders {
		u := fmt.Sprintf("u%d", (i*7919)%people)
		payloads = append(payloads, []byte(fmt.Sprintf(`{"order":"o%d","user":%q}`, i, u)))
		name, ok := names[u]
		if !ok {
			name = "none"
		}
		want = append(want, fmt.Sprintf("o%d %s 1", i, name))
	}
	natstest.Publish(t, js, "orders.new", payloads)
	m := pipeline.NewMetrics(nil)
	if err := pipetest.Run(ctx, t, js, ps, pipeline.Options{OutputStreams: []string{"OUT"}, Metrics: m}); err != nil {
		t.Fatal(err)
	}
	if got := enriched(t, js); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("enriched %d events, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	prefetched := testutil.ToFloat64(m.StateReads.WithLabelValues("orders", "", pipeline.ReadPrefetch))
	onDemand := testutil.ToFloat64(m.StateReads.WithLabelValues("orders", "", pipeline.ReadOnDemand))
	// The first burst reads on demand, and so does a burst that starts with few events at
	// hand on a loaded machine; most lookups are read ahead.
	if prefetched < people/2 || onDemand >= prefetched {
		t.Errorf("%v lookups read ahead, %v on demand: want most read ahead", prefetched, onDemand)
	}
	t.Logf("%v lookups read ahead, %v on demand", prefetched, onDemand)
}

// firstDiff returns the first index where a and b differ.
func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
