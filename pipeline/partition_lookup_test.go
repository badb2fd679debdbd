package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// lookupStreams declares the profiles, the orders and the derived events of the lookup test.
const lookupStreams = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: PROF, subjects: ["prof.>"]}
  - {name: ORD, subjects: ["ord.>"]}
  - {name: OUT, subjects: ["out.>"], duplicate_window: 10m}
pipelines:`

// profilesYAML folds the profiles, a tier per user.
const profilesYAML = `
  - name: profiles
    source: {stream: PROF, start: all, stop: end}
    key: event.user_id
    operators:
      - fold: {projection: profiles, on: {'*': {tier: event.tier}}}
`

// enrichYAML (format with its name's suffix and its partitions) joins each order with its
// user's profile (another pipeline's projection) and with the pipeline's own state of the key
// (a lookup of its own projection), folds them, and emits each order enriched.
const enrichYAML = `
  - name: enrich%[1]s
    source: {stream: ORD, start: all, stop: end}
    key: event.user_id
    partitions: %[2]d
    batch: {size: 100, max_wait: 10ms}
    operators:
      - lookup: {projection: profiles, key: event.user_id, as: profile}
      - lookup: {projection: enriched%[1]s, key: key, as: before}
      - fold:
          projection: enriched%[1]s
          on:
            '*':
              orders: '(state.orders ?? 0) + 1'
              gold: '(state.gold ?? 0) + (profile?.tier == "gold" ? event.amount : 0)'
              tier: 'profile?.tier ?? "none"'
              previous: 'before?.tier ?? "first"'
      - emit:
          subject: '"out.%[1]s." + key'
          data: {user_id: key, tier: 'profile?.tier ?? "none"', was: 'before?.orders ?? 0', amount: event.amount}
`

// TestPartitionedLookup runs a pipeline that looks up another pipeline's projection (profiles,
// committed before it starts) and its own (the state of its key), in 4 partitions and
// unpartitioned over the same orders: the enriched projections and the derived events are
// the same, and the lookups found something (not every order's profile is missing).
func TestPartitionedLookup(t *testing.T) {
	e := newEnv(t)
	url := e.srv.ClientURL()
	prof := e.pipelines("profiles.yaml", fmt.Sprintf(lookupStreams, url)+profilesYAML)
	ps := e.pipelines("enrich.yaml", fmt.Sprintf(lookupStreams, url)+fmt.Sprintf(enrichYAML, "4", 4)+fmt.Sprintf(enrichYAML, "1", 1))
	if len(ps) != 2 || len(pipeline.Partitions(ps[0])) != 4 || len(pipeline.Partitions(ps[1])) != 1 {
		t.Fatalf("%d pipelines, want enrich4 in 4 partitions and enrich1 in one", len(ps))
	}

	ctx := context.Background()
	rng := rand.New(rand.NewPCG(4, 17))
	const users = 200
	tiers := []string{"gold", "silver", "bronze"}
	pub := func(subject string, v any) {
		b, _ := json.Marshal(v)
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b}); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	for u := range users {
		if u%5 == 4 {
			continue // no profile: the lookup gives nil
		}
		user := fmt.Sprintf("user-%d", u)
		for range 1 + rng.IntN(2) { // sometimes a change of tier: the last one counts
			pub("prof."+user, map[string]any{"type": "profile", "user_id": user, "tier": tiers[rng.IntN(len(tiers))]})
		}
	}
	if err := e.run(prof, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		pub("ord.o", map[string]any{"type": "order", "user_id": fmt.Sprintf("user-%d", rng.IntN(users)), "amount": float64(i%97 + 1)})
	}
	if err := e.run(ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"profiles", "enrich1", "enrich4"} {
		if dl := natstest.ReadAll(t, e.js, streams.DLQStream, streams.DLQSubject(name)); len(dl) != 0 {
			t.Errorf("%s: %d dead letters, the first %s: %s", name, len(dl), dl[0].Headers().Get("Jetfold-Error"), dl[0].Data())
		}
	}
	one, four := bucketOf(t, e.js, "enriched1"), bucketOf(t, e.js, "enriched4")
	if len(one) < users*9/10 {
		t.Fatalf("enriched1 has %d keys, want about %d", len(one), users)
	}
	found := map[string]int{}
	for k, v := range one {
		found[fmt.Sprint(v["tier"])]++
		if w := four[k]; !reflect.DeepEqual(v, w) {
			t.Errorf("%s: partitioned %v, unpartitioned %v", k, w, v)
		}
	}
	if len(four) != len(one) {
		t.Errorf("%d keys partitioned, %d unpartitioned", len(four), len(one))
	}
	t.Logf("%d users enriched; their last tiers %v", len(one), found)
	if found["none"] == 0 || found["gold"] == 0 || found["none"] == len(one) {
		t.Errorf("tiers found by the lookups %v: want some users without a profile and some gold", found)
	}

	// Derived events: per key the same enriched orders, in the same order.
	d1, d4 := derivedOf(t, e.js, "out.1.>"), derivedOf(t, e.js, "out.4.>")
	if derivedCount(d1) != 3000 || !reflect.DeepEqual(d1, d4) {
		t.Errorf("%d derived events unpartitioned, %d partitioned, want 3000 each and equal", derivedCount(d1), derivedCount(d4))
		for k, v := range d1 {
			if !slices.Equal(v, d4[k]) {
				t.Errorf("%s: partitioned %v, unpartitioned %v", k, d4[k], v)
				break
			}
		}
	}
}

// bucketOf reads every key of a projection's bucket as JSON objects.
func bucketOf(t *testing.T, js jetstream.JetStream, name string) map[string]map[string]any {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatalf("list %s: %v", name, err)
	}
	out := map[string]map[string]any{}
	for k := range keys.Keys() {
		en, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatalf("get %s/%s: %v", name, k, err)
		}
		var v map[string]any
		if err := json.Unmarshal(en.Value(), &v); err != nil {
			t.Fatalf("%s/%s: %v", name, k, err)
		}
		out[k] = v
	}
	return out
}

// derivedOf returns the data of the derived events on subject, per key (the last token), in
// stream order.
func derivedOf(t *testing.T, js jetstream.JetStream, subject string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range natstest.ReadAll(t, js, "OUT", subject) {
		key := m.Subject()[strings.LastIndex(m.Subject(), ".")+1:]
		out[key] = append(out[key], string(m.Data()))
	}
	return out
}

// derivedCount counts the events of a derivedOf result.
func derivedCount(d map[string][]string) int {
	n := 0
	for _, v := range d {
		n += len(v)
	}
	return n
}
