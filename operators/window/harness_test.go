package window_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/window"
)

// memStore is an in-memory operators.Store of one projection, as the pipeline's state cache
// behaves: Get caches an entry (without state for a new key), writes are applied only to keys
// read first, and entries are owned (changed in place) when owned is set.
type memStore struct {
	t       testing.TB
	shape   *event.Shape
	owned   bool
	entries map[string]*event.Entry
	gets    int
	dirty   map[string]bool // keys written since the last reset
}

func newMemStore(t testing.TB, shape *event.Shape, owned bool) *memStore {
	return &memStore{t: t, shape: shape, owned: owned, entries: map[string]*event.Entry{}, dirty: map[string]bool{}}
}

func (s *memStore) Get(_ context.Context, _, key string) (*event.Entry, error) {
	s.gets++
	e, ok := s.entries[key]
	if !ok {
		e = &event.Entry{}
		s.entries[key] = e
	}
	return e, nil
}

func (s *memStore) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

func (s *memStore) Scan(ctx context.Context, proj, prefix string, fn func(string, *event.Entry) bool) error {
	keys, _ := s.Keys(ctx, proj, prefix)
	for _, k := range keys {
		if !fn(k, s.entries[k]) {
			return nil
		}
	}
	return nil
}

func (s *memStore) Keys(_ context.Context, _, prefix string) ([]string, error) {
	var out []string
	for k, e := range s.entries {
		if e.State != nil && strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// apply applies a staged write, as state.Store.Apply does.
func (s *memStore) apply(w event.Write) {
	s.t.Helper()
	e, ok := s.entries[w.Key]
	if !ok {
		s.t.Fatalf("write of %s, never read", w.Key)
	}
	if w.Entry != nil && w.Entry != e {
		s.t.Fatalf("write of %s with another entry", w.Key)
	}
	e.State, e.Seq, e.Time, e.Owned, e.Roomy = w.State, w.Seq, w.Time, s.owned, false
	if w.Delete {
		e.State, e.Owned = nil, false
	}
	s.dirty[w.Key] = true
}

// stored is a committed KV value.
type stored struct {
	json []byte
	seq  uint64
	time time.Time
}

// snapshot returns the committed form of the keys with state (all, or those of only).
func (s *memStore) snapshot(only map[string]bool) map[string]stored {
	s.t.Helper()
	out := map[string]stored{}
	for k, e := range s.entries {
		if only != nil && !only[k] {
			continue
		}
		if e.State == nil {
			out[k] = stored{seq: e.Seq} // a deletion
			continue
		}
		b, err := e.State.AppendJSON(nil)
		if err != nil {
			s.t.Fatal(err)
		}
		out[k] = stored{json: b, seq: e.Seq, time: e.Time}
	}
	return out
}

// load returns a store holding kv as a restarted pipeline reads it (a deleted key reads as
// absent, without its sequence).
func load(t testing.TB, shape *event.Shape, owned bool, kv map[string]stored) *memStore {
	s := newMemStore(t, shape, owned)
	for k, v := range kv {
		if v.json == nil {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(v.json, &m); err != nil {
			t.Fatal(err)
		}
		s.entries[k] = &event.Entry{State: event.NewRecord(shape, m), Seq: v.seq, Time: v.time, Owned: owned}
	}
	return s
}

// emitted is a derived event as published.
type emitted struct {
	id, subject, key string
	data             map[string]any
	by               uint64
}

// runner drives an operator as pipeline/process.go does: the watermark moves (and Advance
// runs on a tick) before the event's Process; the tick's effects are applied at once, the
// event's when it is kept, and rolled back otherwise.
type runner struct {
	t     testing.TB
	op    operators.Operator
	store *memStore
	x     operators.Exec
	ev    event.Event
	tick  event.Event
	out   []emitted
	dead  []oracle.DeadLetter
}

func newRunner(t testing.TB, op operators.Operator, store *memStore, watermark time.Time) *runner {
	r := &runner{t: t, op: op, store: store}
	r.x = operators.Exec{Ctx: context.Background(), Store: store, Watermark: watermark}
	if err := op.(operators.Starter).Start(&r.x); err != nil {
		t.Fatalf("start: %v", err)
	}
	return r
}

// step runs e; dropped simulates an operator after the window that fails on it, so that its
// effects are dropped (the oracle sees it not reaching the window).
func (r *runner) step(e oracle.Event, dropped bool) {
	r.t.Helper()
	if e.Time.After(r.x.Watermark) {
		from := r.x.Watermark
		r.x.Watermark = e.Time
		r.tick.Reset()
		r.tick.Seq, r.tick.Time, r.tick.Mode, r.tick.Subject = e.Seq, e.Time, mode(e), "ev"
		if err := r.op.(operators.Clock).Advance(&r.x, &r.tick, from, e.Time); err != nil {
			r.t.Fatalf("advance to %s: %v", e.Time, err)
		}
		r.applyEffects(&r.tick)
	}
	ev := &r.ev
	ev.Reset()
	ev.Seq, ev.Subject, ev.Time, ev.Key, ev.Type, ev.Fields, ev.Mode = e.Seq, "ev", e.Time, e.Key, e.Type, e.Fields, mode(e)
	keep, err := r.op.Process(&r.x, ev)
	if err != nil || !keep || dropped {
		ev.Rollback()
	}
	switch {
	case dropped:
	case err != nil:
		r.dead = append(r.dead, oracle.DeadLetter{Seq: e.Seq, Reason: err.Error()})
	case !keep:
		r.t.Fatalf("event %d dropped without an error", e.Seq)
	default:
		r.applyEffects(ev)
	}
}

func mode(e oracle.Event) event.Mode {
	if e.Hydrated {
		return event.Hydrated
	}
	return event.Live
}

func (r *runner) applyEffects(ev *event.Event) {
	r.t.Helper()
	for _, w := range ev.Writes {
		r.store.apply(w)
	}
	for _, o := range ev.Outputs {
		var m map[string]any
		if err := json.Unmarshal(o.Data, &m); err != nil {
			r.t.Fatalf("derived event %s: %v", o.ID, err)
		}
		r.out = append(r.out, emitted{id: o.ID, subject: o.Subject, key: o.Key, data: m, by: ev.Seq})
	}
}

// state returns the windows with state, without the internal fields.
func (r *runner) state() map[string]map[string]any {
	out := map[string]map[string]any{}
	for k, e := range r.store.entries {
		if e.State != nil {
			out[k] = public(e.State.Map())
		}
	}
	return out
}

// public drops the internal fields of a window's value.
func public(m map[string]any) map[string]any {
	maps.DeleteFunc(m, func(k string, _ any) bool { return strings.HasPrefix(k, "_") })
	return m
}

// build builds a window operator from YAML.
func build(t testing.TB, src string) *window.Op {
	t.Helper()
	var raw any
	if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
		t.Fatal(err)
	}
	op, err := window.Spec().Build(operators.BuildContext{Pipeline: "p"}, raw)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return op.(*window.Op)
}

// diffValues reports the differences between two window values, numbers within a tolerance
// (sums add in another order when sessions merge).
func diffValues(got, want map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			out = append(out, fmt.Sprintf("%s missing (want %v)", k, want[k]))
			continue
		}
		gf, gok := g.(float64)
		wf, wok := want[k].(float64)
		if gok && wok && math.Abs(gf-wf) <= 1e-9*max(1, math.Abs(wf)) {
			continue
		}
		if fmt.Sprint(g) != fmt.Sprint(want[k]) {
			out = append(out, fmt.Sprintf("%s = %v, want %v", k, g, want[k]))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s = %v, not wanted", k, got[k]))
		}
	}
	return out
}

// compareState fails the test where got differs from the oracle's state.
func compareState(t testing.TB, got, want map[string]map[string]any) {
	t.Helper()
	n := 0
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[k]; !ok {
			t.Errorf("window %s missing, want %v", k, want[k])
			n++
		} else if d := diffValues(got[k], want[k]); len(d) > 0 {
			t.Errorf("window %s: %s", k, strings.Join(d, "; "))
			n++
		}
		if n > 10 {
			t.Fatal("too many differences")
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("window %s = %v, not in the oracle's state", k, v)
		}
	}
}

// deadKind is the kind of a dead letter's reason: late, or the aggregate that refused it.
func deadKind(reason string) string {
	if strings.HasPrefix(reason, "late") {
		return "late"
	}
	if strings.HasPrefix(reason, "aggregate ") {
		name, _, _ := strings.Cut(strings.TrimPrefix(reason, "aggregate "), ":")
		return "aggregate " + name
	}
	return "other: " + reason
}

// compareDead fails the test where got differs from the oracle's dead letters (by kind).
func compareDead(t testing.TB, got, want []oracle.DeadLetter) {
	t.Helper()
	g := map[uint64]string{}
	for _, d := range got {
		g[d.Seq] = deadKind(d.Reason)
	}
	w := map[uint64]string{}
	for _, d := range want {
		w[d.Seq] = deadKind(d.Reason)
	}
	for _, s := range slices.Sorted(maps.Keys(w)) {
		if g[s] != w[s] {
			t.Errorf("event %d: dead letter %q, want %q", s, g[s], w[s])
		}
	}
	for s, k := range g {
		if _, ok := w[s]; !ok {
			t.Errorf("event %d: dead letter %q, not in the oracle's", s, k)
		}
	}
}

// wantEmitted returns the derived events the oracle's closes make with `data` left out (the
// window itself: start, end and the aggregates), for the projection proj.
func wantEmitted(res oracle.WindowResult, proj string) []emitted {
	var out []emitted
	for _, c := range res.Closed {
		if !c.Emit {
			continue
		}
		data := maps.Clone(c.Value)
		delete(data, "closed")
		out = append(out, emitted{id: "window:" + proj + ":" + c.KVKey, subject: "out." + c.Key, key: c.Key, data: data, by: c.By})
	}
	return out
}

// compareEmitted fails the test where got differs from want, in order.
func compareEmitted(t testing.TB, got, want []emitted) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Fatalf("derived event %d missing: %+v (got %d of %d)", i, want[i], len(got), len(want))
		case i >= len(want):
			t.Fatalf("derived event %d not wanted: %+v", i, got[i])
		}
		g, w := got[i], want[i]
		if g.id != w.id || g.subject != w.subject || g.key != w.key || g.by != w.by {
			t.Fatalf("derived event %d: %s %s key %s by %d, want %s %s key %s by %d", i, g.id, g.subject, g.key, g.by, w.id, w.subject, w.key, w.by)
		}
		if d := diffValues(g.data, w.data); len(d) > 0 {
			t.Fatalf("derived event %d (%s): %s", i, g.id, strings.Join(d, "; "))
		}
	}
}
