package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/oracle"
)

// TestShopExample runs the README's first command on the shop example (against a test
// server instead of the embedded one) and checks every derived event against what the events
// file says, computed here: the first orders, the enriched orders (lookup), the windows of
// revenue per minute that the watermark closed and the abandoned carts (internal/oracle).
func TestShopExample(t *testing.T) {
	srv := natstest.Server(t)
	t.Setenv("JETFOLD_NATS_URL", srv.ClientURL())
	t.Setenv("JETFOLD_HTTP_LISTEN", "none")
	var out, errOut bytes.Buffer
	if code := Main([]string{"run", "-c", "../../examples/shop/pipelines.yaml", "--seed", "../../examples/shop/events.jsonl"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "dead letters 4") {
		t.Errorf("summary without the 4 dead letters:\n%s", out.String())
	}

	// What the file says.
	f, err := os.Open("../../examples/shop/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	users := map[string]map[string]any{}
	firstOrders := map[string]bool{}
	orders := map[string]string{} // order id -> "user name country amount"
	var events []oracle.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		ev := oracle.Event{Seq: uint64(len(events) + 1)}
		var m map[string]any
		if json.Unmarshal(line.Data, &m) == nil {
			ts, _ := m["ts"].(string)
			t0, err := time.Parse(time.RFC3339Nano, ts)
			ev.Fields, ev.Time, ev.Valid = m, t0, err == nil
			ev.Type, _ = m["type"].(string)
			ev.Key, _ = m["user_id"].(string)
			ev.Reaches = ev.Valid && ev.Key != "" && ev.Type != "heartbeat"
		}
		events = append(events, ev)
		if !ev.Reaches {
			continue
		}
		switch ev.Type {
		case "user-registered":
			users[ev.Key] = m
		case "order-placed":
			firstOrders[ev.Key] = true
			u := users[ev.Key]
			orders[m["order_id"].(string)] = fmt.Sprintf("%s %v %v %v", ev.Key, u["name"], u["country"], m["amount"])
		}
	}
	timers := oracle.Timeouts(events, oracle.TimeoutSpec{Start: []string{"product-added-to-cart"}, Cancel: []string{"order-placed"}, After: 10 * time.Minute, Once: true})
	orderEvents := make([]oracle.Event, len(events))
	for i, e := range events {
		e.Reaches = e.Reaches && e.Type == "order-placed"
		orderEvents[i] = e
	}
	amount := func(e oracle.Event) any { return e.Fields["amount"] }
	windows := oracle.Windows(orderEvents, oracle.WindowSpec{Tumbling: time.Minute, Once: true, Aggregates: []oracle.Aggregate{
		{Name: "orders", Fn: "count"}, {Name: "revenue", Fn: "sum", Value: amount}, {Name: "biggest", Fn: "max", Value: amount},
	}})

	// What the pipelines published.
	got := map[string]int{}
	_, js := natstest.Connect(t, srv)
	for _, m := range natstest.ReadAll(t, js, "SHOP_DERIVED", "") {
		kind := strings.Split(m.Subject(), ".")[2]
		got[kind]++
		var b map[string]any
		if err := json.Unmarshal(m.Data(), &b); err != nil {
			t.Fatal(err)
		}
		switch kind {
		case "order":
			if want := orders[b["order_id"].(string)]; fmt.Sprintf("%s %v %v %v", b["user_id"], b["name"], b["country"], b["amount"]) != want {
				t.Errorf("enriched order %v, want %s", b, want)
			}
		case "revenue":
			key := fmt.Sprintf("%s.%d", b["user_id"], mustTime(t, b["start"]).UnixMilli())
			if w := windows.State[key]; w == nil || w["orders"] != b["orders"] || fmt.Sprintf("%.2f", w["revenue"]) != fmt.Sprintf("%.2f", b["revenue"]) {
				t.Errorf("revenue %v, want %v", b, w)
			}
		}
	}
	want := map[string]int{"first-order": len(firstOrders), "order": len(orders), "revenue": len(windows.Closed), "cart-abandoned": len(timers.Fired)}
	for k, n := range want {
		if got[k] != n || n == 0 {
			t.Errorf("%d %s events, want %d (not 0)", got[k], k, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("derived events %v, want the kinds of %v", got, want)
	}
}

func mustTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %v: %v", v, err)
	}
	return tm
}
