package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

const shopYAML = `
nats: {url: %q}
streams:
  - {name: SHOP, subjects: ["shop.>"]}
  - {name: SHOP_DERIVED, subjects: ["derived.>"], duplicate_window: 10m}
pipelines:
  - name: carts
    source: {stream: SHOP, start: %s, stop: end}
    key: event.user_id
    batch: {size: %d, max_wait: 20ms}
    cache: {max_keys: %d}
    operators:
      - filter: event.type != "heartbeat"
      - fold:
          projection: carts
          initial: {items: 0, orders: 0, revenue: 0.0, last_order: ""}
          on:
            add:    {items: state.items + 1}
            remove: {items: 'max(state.items - 1, 0)'}
            order:  {items: 0, orders: state.orders + 1, revenue: state.revenue + event.amount, last_order: event.order_id}
      - emit:
          when: type == "order" && state.orders == 1
          subject: '"derived.first-order." + key'
          data: {user_id: key, order_id: event.order_id}
          handler: once
`

type shopEvent struct {
	Type    string   `json:"type"`
	UserID  string   `json:"user_id,omitempty"`
	Amount  *float64 `json:"amount,omitempty"`
	OrderID string   `json:"order_id,omitempty"`
}

type cart struct {
	Items     float64 `json:"items"`
	Orders    float64 `json:"orders"`
	Revenue   float64 `json:"revenue"`
	LastOrder string  `json:"last_order"`
}

// workload returns n payloads over users keys: adds, removes, orders, heartbeats, and every
// 97th payload malformed in one of three ways.
func workload(seed uint64, n, users int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([][]byte, 0, n)
	for i := range n {
		user := "user-" + strconv.Itoa(rng.IntN(users))
		var ev shopEvent
		switch r := rng.IntN(10); {
		case i%97 == 96:
			switch i % 3 {
			case 0:
				out = append(out, []byte(`{"type": "add", "user_id": `)) // truncated JSON
			case 1:
				out = append(out, []byte(`{"type":"add"}`)) // no key
			default:
				out = append(out, []byte(`{"type":"order","user_id":"`+user+`","order_id":"x"}`)) // no amount
			}
			continue
		case r < 5:
			ev = shopEvent{Type: "add", UserID: user}
		case r < 7:
			ev = shopEvent{Type: "remove", UserID: user}
		case r < 9:
			amt := float64(rng.IntN(10000)) / 100
			ev = shopEvent{Type: "order", UserID: user, Amount: &amt, OrderID: fmt.Sprintf("o-%d", i)}
		default:
			ev = shopEvent{Type: "heartbeat"}
		}
		b, _ := json.Marshal(ev)
		out = append(out, b)
	}
	return out
}

// oracle folds payloads independently of the pipeline code.
func oracle(payloads [][]byte) (carts map[string]cart, firstOrders map[string]string, dead int) {
	carts, firstOrders = map[string]cart{}, map[string]string{}
	for _, p := range payloads {
		var ev shopEvent
		if json.Unmarshal(p, &ev) != nil {
			dead++
			continue
		}
		if ev.Type == "heartbeat" {
			continue
		}
		if ev.UserID == "" {
			dead++
			continue
		}
		c := carts[ev.UserID]
		switch ev.Type {
		case "add":
			c.Items++
		case "remove":
			c.Items = max(c.Items-1, 0)
		case "order":
			if ev.Amount == nil {
				dead++
				continue
			}
			c = cart{Orders: c.Orders + 1, Revenue: c.Revenue + *ev.Amount, LastOrder: ev.OrderID}
			if c.Orders == 1 {
				firstOrders[ev.UserID] = ev.OrderID
			}
		}
		carts[ev.UserID] = c
	}
	return carts, firstOrders, dead
}

type env struct {
	t   *testing.T
	srv *server.Server
	js  jetstream.JetStream
	dir string
}

func newEnv(t *testing.T) *env {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	return &env{t: t, srv: s, js: js, dir: t.TempDir()}
}

func (e *env) build(start string, batch, cacheKeys int) []*pipeline.Pipeline {
	e.t.Helper()
	path := filepath.Join(e.dir, "p.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, shopYAML, e.srv.ClientURL(), start, batch, cacheKeys), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		e.t.Fatalf("load: %v", err)
	}
	ps, err := pipeline.Build(cfg, operators.Builtin())
	if err != nil {
		e.t.Fatalf("build: %v", err)
	}
	ctx := context.Background()
	if err := streams.EnsureStreams(ctx, e.js, cfg.Streams, nil); err != nil {
		e.t.Fatal(err)
	}
	return ps
}

func (e *env) publish(payloads [][]byte) {
	e.t.Helper()
	ctx := context.Background()
	for i, p := range payloads {
		if _, err := e.js.PublishAsync("shop.events", p); err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		e.t.Fatal("publish did not complete")
	}
	_ = ctx
}

func (e *env) run(ps []*pipeline.Pipeline, o pipeline.Options) error {
	e.t.Helper()
	o.JS = e.js
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return pipeline.RunAll(ctx, ps, o)
}

// check compares the carts bucket, the derived stream and the dead letters with the oracle.
func (e *env) check(payloads [][]byte) {
	e.t.Helper()
	want, firstOrders, dead := oracle(payloads)
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, "carts")
	if err != nil {
		e.t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for k := range keys.Keys() {
		n++
		entry, err := kv.Get(ctx, k)
		if err != nil {
			e.t.Fatalf("get %s: %v", k, err)
		}
		var got cart
		if err := json.Unmarshal(entry.Value(), &got); err != nil {
			e.t.Fatalf("%s: %v", k, err)
		}
		w := want[k]
		if got.Items != w.Items || got.Orders != w.Orders || got.LastOrder != w.LastOrder || fmt.Sprintf("%.2f", got.Revenue) != fmt.Sprintf("%.2f", w.Revenue) {
			e.t.Errorf("carts/%s = %+v, want %+v", k, got, w)
		}
	}
	if n != len(want) {
		e.t.Errorf("carts has %d keys, want %d", n, len(want))
	}
	derived := natstest.ReadAll(e.t, e.js, "SHOP_DERIVED", "")
	if len(derived) != len(firstOrders) {
		e.t.Errorf("%d derived events, want %d", len(derived), len(firstOrders))
	}
	for _, m := range derived {
		var body struct{ UserID, OrderID string }
		_ = json.Unmarshal(m.Data(), &body)
		var raw map[string]string
		_ = json.Unmarshal(m.Data(), &raw)
		if firstOrders[raw["user_id"]] != raw["order_id"] {
			e.t.Errorf("derived %s: %s, want order %q", m.Subject(), m.Data(), firstOrders[raw["user_id"]])
		}
		if m.Headers().Get("ce-specversion") != "1.0" || m.Headers().Get("ce-type") == "" || m.Headers().Get(jetstream.MsgIDHeader) == "" {
			e.t.Errorf("derived %s: CloudEvents headers missing: %v", m.Subject(), m.Headers())
		}
	}
	dl := natstest.ReadAll(e.t, e.js, streams.DLQStream, "")
	if len(dl) != dead {
		e.t.Errorf("%d dead letters, want %d", len(dl), dead)
	}
	for _, m := range dl {
		if m.Headers().Get(pipeline.HeaderError) == "" || m.Headers().Get(pipeline.HeaderSourceSeq) == "" {
			e.t.Errorf("dead letter without reason headers: %v", m.Headers())
		}
	}
}

func TestFoldEndToEnd(t *testing.T) {
	e := newEnv(t)
	payloads := workload(1, 5000, 200)
	ps := e.build("all", 500, 100000)
	e.publish(payloads)
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	e.check(payloads)
}

func TestRestartResumesWithoutDoubleApplying(t *testing.T) {
	e := newEnv(t)
	payloads := workload(2, 6000, 150)
	// a small cache forces evictions and reads back from KV
	ps := e.build("all", 250, 50)
	e.publish(payloads[:4000])
	for round := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		commits := 0
		err := pipeline.RunAll(ctx, ps, pipeline.Options{JS: e.js, OnCommit: func(pipeline.CommitInfo) {
			if commits++; commits == 3+round {
				cancel()
			}
		}})
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	e.publish(payloads[4000:])
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	e.check(payloads)
}
