package shoptest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/streams"
)

// Stateful is a second `pipelines:` entry over the workload, with the stateful operators: a
// window of orders per minute of event time (with lateness, so late events are dead
// letters), a dedupe of repeated ids and a timeout that fires when a user added to the cart
// and did not order within 90 s. Format it like [Pipeline] (start, stop, batch size, cache
// size).
//
// The window comes first: an event it refuses (late) then reaches no other operator, which
// is what the oracle models (an operator's effects on an event that a later operator
// dead-letters are dropped with the event).
const Stateful = `
  - name: stateful
    source: {stream: SHOP, start: %s, stop: %s}
    key: event.user_id
    time: event.ts
    batch: {size: %d, max_wait: 10ms}
    cache: {max_keys: %d}
    operators:
      - filter: event.type != "heartbeat"
      - window:
          projection: per_minute
          tumbling: 1m
          lateness: 5s
          retention: 10m
          aggregate: {n: count(), total: 'sum(event.amount ?? 0)'}
          emit:
            subject: '"derived.window." + key'
            data: {user_id: key, start: window.start, n: window.n, total: window.total}
      - dedupe: {id: event.id, within: 2m}
      - timeout:
          name: idle
          start: [add]
          cancel: [order]
          after: 90s
          emit:
            subject: '"derived.timer." + key'
            data: {user_id: key, started: timer.started, deadline: timer.deadline}
`

// StatefulWant is what the oracle expects of [Stateful].
type StatefulWant struct {
	Windows oracle.WindowResult
	Timers  oracle.TimeoutResult
	// Dead is the number of dead letters of the stateful pipeline.
	Dead int
	// Watermarks is each partition's watermark after the last event (one for an
	// unpartitioned pipeline; zero for a partition that read no valid time). Windows.Watermark
	// and Timers.Watermark are the greatest of them.
	Watermarks []time.Time
}

// StatefulOracle runs the models of internal/oracle over payloads as stored (the i-th has
// stream sequence i+1), for the unpartitioned pipeline: [StatefulOracleN] with one partition.
func StatefulOracle(payloads [][]byte) StatefulWant { return StatefulOracleN(payloads, 1) }

// StatefulMismatches compares the windows bucket, the window and timer derived events, the
// pending timers and the stateful pipeline's dead letters with the oracle, and returns every
// difference (none: nil).
func StatefulMismatches(t testing.TB, js jetstream.JetStream, dlqStream string, want StatefulWant) []string {
	t.Helper()
	var bad []string
	ctx := context.Background()

	// Window values: every key the oracle keeps, with its documented fields, and no other.
	got, err := bucket(ctx, js, "per_minute")
	if err != nil {
		return []string{err.Error()}
	}
	for k, w := range want.Windows.State {
		g, ok := got[k]
		if !ok {
			bad = append(bad, fmt.Sprintf("window %s missing, want %v", k, w))
			continue
		}
		if d := diff(g, w); d != "" {
			bad = append(bad, fmt.Sprintf("window %s: %s", k, d))
		}
	}
	for k, g := range got {
		if _, ok := want.Windows.State[k]; !ok {
			bad = append(bad, fmt.Sprintf("window %s = %v, want none", k, g))
		}
	}

	// Close events: one per closed window, once.
	wantClosed := map[string]map[string]any{}
	for _, c := range want.Windows.Closed {
		if c.Emit {
			wantClosed[c.Key+"@"+oracle.Timestamp(c.Start)] = c.Value
		}
	}
	seen := map[string]bool{}
	for _, m := range natstest.ReadAll(t, js, "SHOP_DERIVED", "derived.window.>") {
		var b struct {
			UserID string  `json:"user_id"`
			Start  string  `json:"start"`
			N      float64 `json:"n"`
			Total  float64 `json:"total"`
		}
		if err := json.Unmarshal(m.Data(), &b); err != nil {
			bad = append(bad, fmt.Sprintf("window close event %s: %v", m.Data(), err))
			continue
		}
		id := b.UserID + "@" + b.Start
		if seen[id] {
			bad = append(bad, fmt.Sprintf("window %s closed twice", id))
		}
		seen[id] = true
		w, ok := wantClosed[id]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("window %s closed, want it open or absent: %s", id, m.Data()))
		case w["n"] != b.N || !near(w["total"], b.Total):
			bad = append(bad, fmt.Sprintf("window %s closed with n %v total %v, want %v %v", id, b.N, b.Total, w["n"], w["total"]))
		}
	}
	for id := range wantClosed {
		if !seen[id] {
			bad = append(bad, fmt.Sprintf("window %s never closed", id))
		}
	}

	// Fired timers: one derived event each, once.
	wantFired := map[string]bool{}
	for _, f := range want.Timers.Fired {
		if f.Emit {
			wantFired[f.Key+"@"+oracle.Timestamp(f.Deadline)+"@"+oracle.Timestamp(f.Started)] = true
		}
	}
	seen = map[string]bool{}
	for _, m := range natstest.ReadAll(t, js, "SHOP_DERIVED", "derived.timer.>") {
		var b struct {
			UserID   string `json:"user_id"`
			Started  string `json:"started"`
			Deadline string `json:"deadline"`
		}
		if err := json.Unmarshal(m.Data(), &b); err != nil {
			bad = append(bad, fmt.Sprintf("timer event %s: %v", m.Data(), err))
			continue
		}
		id := b.UserID + "@" + b.Deadline + "@" + b.Started
		if seen[id] {
			bad = append(bad, fmt.Sprintf("timer %s fired twice", id))
		}
		seen[id] = true
		if !wantFired[id] {
			bad = append(bad, fmt.Sprintf("timer %s fired, want it not to", id))
		}
	}
	for id := range wantFired {
		if !seen[id] {
			bad = append(bad, fmt.Sprintf("timer %s never fired", id))
		}
	}

	// Pending timers.
	timers, err := bucket(ctx, js, "stateful_timers")
	if err != nil {
		return append(bad, err.Error())
	}
	pending := map[string]oracle.Timer{}
	for _, p := range want.Timers.Pending {
		pending["idle."+p.Key] = p
	}
	for k, v := range timers {
		p, ok := pending[k]
		if !ok {
			bad = append(bad, fmt.Sprintf("timer %s pending, want none: %v", k, v))
			continue
		}
		if v["deadline"] != oracle.Timestamp(p.Deadline) || v["started"] != oracle.Timestamp(p.Started) {
			bad = append(bad, fmt.Sprintf("timer %s = %v, want started %s deadline %s", k, v, oracle.Timestamp(p.Started), oracle.Timestamp(p.Deadline)))
		}
	}
	if len(timers) != len(pending) {
		bad = append(bad, fmt.Sprintf("%d timers pending, want %d", len(timers), len(pending)))
	}

	// Dead letters: late events (reason "late...") and malformed ones.
	dl := natstest.ReadAll(t, js, dlqStream, streams.DLQSubject("stateful"))
	late := 0
	for _, m := range dl {
		if strings.HasPrefix(m.Headers().Get("Jetfold-Error"), "late") {
			late++
		}
	}
	if len(dl) != want.Dead || late != len(want.Windows.Dead) {
		bad = append(bad, fmt.Sprintf("%d dead letters (%d late), want %d (%d late)", len(dl), late, want.Dead, len(want.Windows.Dead)))
	}
	sort.Strings(bad)
	return bad
}

// bucket reads every key of a KV bucket as JSON objects (an absent bucket is empty).
func bucket(ctx context.Context, js jetstream.JetStream, name string) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	kv, err := js.KeyValue(ctx, name)
	if err == jetstream.ErrBucketNotFound {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", name, err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err == jetstream.ErrKeyNotFound {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("get %s/%s: %w", name, k, err)
		}
		var v map[string]any
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", name, k, err)
		}
		key, err := streams.DecodeKey(k)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

// diff compares a window's value with the oracle's on the oracle's fields (the operator may
// keep fields of its own, named with a leading underscore); "" when they match.
func diff(got, want map[string]any) string {
	var d []string
	for k, w := range want {
		g := got[k]
		if f, ok := w.(float64); ok {
			if !near(f, g) {
				d = append(d, fmt.Sprintf("%s %v, want %v", k, g, w))
			}
			continue
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			d = append(d, fmt.Sprintf("%s %v, want %v", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, "_") {
			d = append(d, fmt.Sprintf("field %s not in the oracle's value", k))
		}
	}
	return strings.Join(d, "; ")
}

// near compares two numbers with a tolerance for sums added in another order.
func near(a, b any) bool {
	x, ok1 := a.(float64)
	y, ok2 := b.(float64)
	return ok1 && ok2 && math.Abs(x-y) <= 1e-6*max(1, math.Abs(x), math.Abs(y))
}
