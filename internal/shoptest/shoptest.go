package shoptest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// Pipeline is the `pipelines:` entry that folds the workload; format it with start, stop,
// batch size and cache size.
const Pipeline = `
  - name: carts
    source: {stream: SHOP, start: %s, stop: %s}
    key: event.user_id
    batch: {size: %d, max_wait: 10ms}
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

// Streams is the `streams:` section the pipeline needs.
const Streams = `
streams:
  - {name: SHOP, subjects: ["shop.>"]}
  - {name: SHOP_DERIVED, subjects: ["derived.>"], duplicate_window: 10m}
`

// Subject is where the workload is published.
const Subject = "shop.events"

type event struct {
	Type    string   `json:"type"`
	UserID  string   `json:"user_id,omitempty"`
	Amount  *float64 `json:"amount,omitempty"`
	OrderID string   `json:"order_id,omitempty"`
	// ID and TS are read by the stateful pipeline only (dedupe, event time).
	ID string `json:"id,omitempty"`
	TS string `json:"ts,omitempty"`
}

// Base is the event time of the workload's first event; the i-th is about Step later.
var Base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Step is the event-time distance between two consecutive events, before their jitter.
const Step = 250 * time.Millisecond

// Cart is a value of the carts projection.
type Cart struct {
	Items     float64 `json:"items"`
	Orders    float64 `json:"orders"`
	Revenue   float64 `json:"revenue"`
	LastOrder string  `json:"last_order"`
}

// Workload returns n payloads over users keys: adds, removes, orders, heartbeats, and every
// 97th payload malformed in one of three ways (truncated JSON, no key, an order without amount).
// Every event but the malformed ones and the heartbeats has an id and an event time (ts):
// Step apart, each moved by a jitter between -10 s and +3 s, so some arrive out of order
// (and some after their window closed). Every 37th payload repeats the one 5 before it
// (same id, same time): a duplicate for a dedupe.
func Workload(seed uint64, n, users int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([][]byte, 0, n)
	for i := range n {
		if i%37 == 36 && i >= 5 && i%97 != 96 {
			out = append(out, out[i-5])
			continue
		}
		user := "user-" + strconv.Itoa(rng.IntN(users))
		var ev event
		switch r := rng.IntN(10); {
		case i%97 == 96:
			switch i % 3 {
			case 0:
				out = append(out, []byte(`{"type": "add", "user_id": `))
			case 1:
				out = append(out, []byte(`{"type":"add"}`))
			default:
				out = append(out, []byte(`{"type":"order","user_id":"`+user+`","order_id":"x"}`))
			}
			continue
		case r < 5:
			ev = event{Type: "add", UserID: user}
		case r < 7:
			ev = event{Type: "remove", UserID: user}
		case r < 9:
			amt := float64(rng.IntN(10000)) / 100
			ev = event{Type: "order", UserID: user, Amount: &amt, OrderID: fmt.Sprintf("o-%d", i)}
		default:
			ev = event{Type: "heartbeat"}
		}
		if ev.Type != "heartbeat" {
			ev.ID = "e-" + strconv.Itoa(i)
			jitter := time.Duration(rng.IntN(13_000)-10_000) * time.Millisecond
			ev.TS = Base.Add(time.Duration(i)*Step + jitter).Format(time.RFC3339Nano)
		}
		b, _ := json.Marshal(ev)
		out = append(out, b)
	}
	return out
}

// Want is what the oracle expects.
type Want struct {
	Carts map[string]Cart
	// FirstOrders maps a user to the order id of its first order.
	FirstOrders map[string]string
	// Dead is the number of dead letters.
	Dead int
}

// Oracle folds payloads (published in this order, each once).
func Oracle(payloads [][]byte) Want {
	w := Want{Carts: map[string]Cart{}, FirstOrders: map[string]string{}}
	for _, p := range payloads {
		var ev event
		if json.Unmarshal(p, &ev) != nil {
			w.Dead++
			continue
		}
		if ev.Type == "heartbeat" {
			continue
		}
		if ev.UserID == "" {
			w.Dead++
			continue
		}
		c := w.Carts[ev.UserID]
		switch ev.Type {
		case "add":
			c.Items++
		case "remove":
			c.Items = max(c.Items-1, 0)
		case "order":
			if ev.Amount == nil {
				w.Dead++
				continue
			}
			c = Cart{Orders: c.Orders + 1, Revenue: c.Revenue + *ev.Amount, LastOrder: ev.OrderID}
			if c.Orders == 1 {
				w.FirstOrders[ev.UserID] = ev.OrderID
			}
		}
		w.Carts[ev.UserID] = c
	}
	return w
}

// Mismatches compares the carts bucket, the SHOP_DERIVED stream and the dead letters of
// dlqStream with the oracle, and returns every difference (none: nil).
func Mismatches(t testing.TB, js jetstream.JetStream, dlqStream string, want Want) []string {
	t.Helper()
	var bad []string
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "carts")
	if err != nil {
		return []string{fmt.Sprintf("carts bucket: %v", err)}
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return []string{fmt.Sprintf("list carts: %v", err)}
	}
	n := 0
	for k := range keys.Keys() {
		n++
		entry, err := kv.Get(ctx, k)
		if err != nil {
			bad = append(bad, fmt.Sprintf("get %s: %v", k, err))
			continue
		}
		var got Cart
		if err := json.Unmarshal(entry.Value(), &got); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		w := want.Carts[k]
		if got.Items != w.Items || got.Orders != w.Orders || got.LastOrder != w.LastOrder ||
			fmt.Sprintf("%.2f", got.Revenue) != fmt.Sprintf("%.2f", w.Revenue) {
			bad = append(bad, fmt.Sprintf("carts/%s = %+v, want %+v", k, got, w))
		}
	}
	if n != len(want.Carts) {
		bad = append(bad, fmt.Sprintf("carts has %d keys, want %d", n, len(want.Carts)))
	}
	ids := map[string]bool{}
	derived := natstest.ReadAll(t, js, "SHOP_DERIVED", "derived.first-order.>")
	for _, m := range derived {
		var body map[string]string
		_ = json.Unmarshal(m.Data(), &body)
		if want.FirstOrders[body["user_id"]] != body["order_id"] {
			bad = append(bad, fmt.Sprintf("derived %s (source seq %s): %s, want order %q", m.Subject(), m.Headers().Get("Jetfold-Source-Seq"), m.Data(), want.FirstOrders[body["user_id"]]))
		}
		h := m.Headers()
		if h.Get("ce-specversion") != "1.0" || h.Get("ce-type") == "" || h.Get("ce-id") == "" {
			bad = append(bad, fmt.Sprintf("derived %s: CloudEvents headers missing: %v", m.Subject(), h))
		}
		id := h.Get(jetstream.MsgIDHeader)
		if ids[id] {
			bad = append(bad, fmt.Sprintf("derived event %s twice", id))
		}
		ids[id] = true
	}
	if len(derived) != len(want.FirstOrders) {
		bad = append(bad, fmt.Sprintf("%d derived events, want %d", len(derived), len(want.FirstOrders)))
	}
	dl := natstest.ReadAll(t, js, dlqStream, streams.DLQSubject("carts"))
	seqs := map[string]bool{}
	for _, m := range dl {
		h := m.Headers()
		if h.Get("Jetfold-Error") == "" || h.Get("Jetfold-Source-Seq") == "" {
			bad = append(bad, fmt.Sprintf("dead letter without reason headers: %v", h))
		}
		if seqs[h.Get("Jetfold-Source-Seq")] {
			bad = append(bad, fmt.Sprintf("dead letter of seq %s twice", h.Get("Jetfold-Source-Seq")))
		}
		seqs[h.Get("Jetfold-Source-Seq")] = true
	}
	if len(dl) != want.Dead {
		bad = append(bad, fmt.Sprintf("%d dead letters, want %d", len(dl), want.Dead))
	}
	return bad
}

// WithPartitions returns yaml with `partitions: n` added to the shop pipeline (after its
// `key: event.user_id`); the test fails when yaml has no such line.
func WithPartitions(t testing.TB, yaml string, n int) string {
	t.Helper()
	const keyLine = "    key: event.user_id\n"
	if !strings.Contains(yaml, keyLine) {
		t.Fatalf("no %q in the pipeline to partition", strings.TrimSpace(keyLine))
	}
	return strings.Replace(yaml, keyLine, fmt.Sprintf("%s    partitions: %d\n", keyLine, n), 1)
}
