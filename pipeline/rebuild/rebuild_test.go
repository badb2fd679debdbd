package rebuild_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/pipeline/state"
)

// tallyYAML is a pipeline that sums `v` per key; %s is the handler's factor (the change a
// rebuild recomputes) and %s the subject prefix of its `once` emit.
const tallyYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: OUT, subjects: ["out.>"]}
pipelines:
  - name: tally
    source: {stream: EV, start: all, stop: follow}
    key: event.k
    batch: {size: 50, max_wait: 10ms}
    operators:
      - fold:
          projection: tally
          initial: {n: 0, sum: 0}
          on:
            "*": {n: state.n + 1, sum: "state.sum + %s * event.v"}
      - emit:
          subject: '"out.ev." + key'
          data: {n: state.n}
      - emit:
          when: state.n == 1
          subject: '"%s." + key'
          data: {k: key}
          handler: once
`

// ev is a published event: its sequence, key and value.
type ev struct {
	seq uint64
	k   string
	v   int
}

// oracle folds events up to seq `upto` with factor f, as the pipeline should: n and sum per
// key.
func oracle(evs []ev, upto uint64, f int) map[string][2]int {
	out := map[string][2]int{}
	for _, e := range evs {
		if e.seq > upto {
			break
		}
		s := out[e.k]
		out[e.k] = [2]int{s[0] + 1, s[1] + f*e.v}
	}
	return out
}

type fixture struct {
	t   *testing.T
	js  jetstream.JetStream
	url string
	dir string
	mu  sync.Mutex
	evs []ev
}

func newFixture(t *testing.T) *fixture {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	return &fixture{t: t, js: js, url: s.ClientURL(), dir: t.TempDir()}
}

// build builds the tally pipeline with factor f and once-subject prefix first.
func (f *fixture) build(name string, factor int, first string) *pipeline.Pipeline {
	ps := pipetest.Build(f.t, f.js, filepath.Join(f.dir, name+".yaml"), fmt.Sprintf(tallyYAML, f.url, strconv.Itoa(factor), first), nil)
	return ps[0]
}

// publish publishes n events over keys prefix0..prefix<keys-1>.
func (f *fixture) publish(ctx context.Context, n, keys int, prefix string) {
	for i := range n {
		k := prefix + strconv.Itoa(i%keys)
		v := i%7 + 1
		ack, err := f.js.Publish(ctx, "ev."+k, fmt.Appendf(nil, `{"type":"add","k":%q,"v":%d}`, k, v))
		if err != nil {
			f.t.Errorf("publish: %v", err)
			return
		}
		f.mu.Lock()
		f.evs = append(f.evs, ev{seq: ack.Sequence, k: k, v: v})
		f.mu.Unlock()
	}
}

// runV1 publishes n events over keys and runs the old definition over them to the end.
func (f *fixture) runV1(n, keys int) {
	f.t.Helper()
	v1 := f.build("v1", 1, "out.first")
	v1.Config.Source.Stop = "end"
	f.publish(context.Background(), n, keys, "a")
	if err := pipeline.NewRunner(v1, pipeline.Options{JS: f.js, OutputStreams: []string{"OUT"}}).Run(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) events() []ev {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ev(nil), f.evs...)
}

func (f *fixture) leases(holder string) *checkpoint.Leases {
	l, err := checkpoint.OpenLeases(context.Background(), f.js, checkpoint.LeaseOptions{TTL: 3 * time.Second, Holder: holder})
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// bucket reads every key of bucket as n and sum.
func (f *fixture) bucket(name string) map[string][2]int {
	f.t.Helper()
	kv, err := f.js.KeyValue(context.Background(), name)
	if err != nil {
		f.t.Fatalf("bucket %s: %v", name, err)
	}
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][2]int{}
	for k := range keys.Keys() {
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			f.t.Fatal(err)
		}
		var s struct{ N, Sum int }
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			f.t.Fatal(err)
		}
		out[k] = [2]int{s.N, s.Sum}
	}
	return out
}

func diff(t *testing.T, what string, got, want map[string][2]int) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if got[k] != w {
			bad++
			if bad <= 5 {
				t.Errorf("%s: %s = %v, want %v", what, k, got[k], w)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			bad++
			t.Errorf("%s: unexpected key %s", what, k)
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d mismatches of %d keys", what, bad, len(want))
	}
}

// subjects counts the messages of OUT per subject prefix, and fails on a ce-id seen twice.
func (f *fixture) outputs() map[string]int {
	f.t.Helper()
	msgs := natstest.ReadAll(f.t, f.js, "OUT", "out.>")
	ids := map[string]bool{}
	count := map[string]int{}
	for _, m := range msgs {
		id := m.Headers().Get("ce-id")
		if ids[id] {
			f.t.Errorf("ce-id %s published twice", id)
		}
		ids[id] = true
		count[m.Subject()[:strings.LastIndexByte(m.Subject(), '.')]]++
	}
	return count
}

// TestChangedHandler is the common reason to rebuild: a handler changed. While the live
// pipeline (old handler) follows a stream that keeps growing, a rebuild with the new handler
// fills version 2; the switch moves the pipeline and its readers to it at one checkpoint S.
// Then the old version equals the old handler's oracle at S, the new one the new handler's
// oracle over every event once the new definition runs on, the old process refuses to run the
// new version, `once` emits fired only for events the live pipeline saw first, and every `on`
// emit is in OUT exactly once.
func TestChangedHandler(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v1 := f.build("v1", 1, "out.first")
	f.publish(ctx, 2000, 20, "a")

	liveDone := make(chan error, 1)
	go func() {
		liveDone <- pipeline.NewRunner(v1, pipeline.Options{JS: f.js, Leases: f.leases("live-v1"), OutputStreams: []string{"OUT"}}).Run(ctx)
	}()
	natstest.Eventually(t, time.Minute, "the live pipeline reads the first events", func() bool {
		v, err := state.Read(ctx, f.js, "tally", "a0")
		return err == nil && len(v.Value) > 0
	})
	// Load while it rebuilds: events keep coming.
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); f.publish(ctx, 3000, 20, "a") }()

	var phases []string
	res, err := rebuild.Run(ctx, rebuild.Options{
		JS: f.js, Pipeline: f.build("v2", 2, "out.first2"), Leases: f.leases("rebuilder"), OutputStreams: []string{"OUT"},
		CloseEnough: 100,
		OnProgress: func(p rebuild.Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		},
	})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if res.Version != 2 || res.Buckets["tally"] != "tally_v2" {
		t.Fatalf("result %+v: want version 2 in tally_v2", res)
	}
	if got := strings.Join(phases, ","); !strings.HasPrefix(got, "replay,handover,") || !strings.HasSuffix(got, ",switch,done") {
		t.Errorf("phases %s", got)
	}
	// The old process runs the old file: it refuses the rebuilt version.
	select {
	case err := <-liveDone:
		if !errors.Is(err, pipeline.ErrStopped) || !strings.Contains(err.Error(), "rebuilt as version 2") {
			t.Errorf("the old process: %v, want it to refuse the new version", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the old process still runs after the switch")
	}
	<-pubDone
	evs := f.events()
	// Frozen at the switch: the old version is the old handler's fold up to S.
	diff(t, "version 1", f.bucket("tally"), oracle(evs, res.Seq, 1))
	p, err := checkpoint.Current(ctx, f.js, "tally")
	if err != nil || p.Bucket != "tally_v2" || p.Version != 2 || p.Seq != res.Seq {
		t.Fatalf("pointer %+v, %v", p, err)
	}

	// The new definition runs on, with keys that appear only now.
	f.publish(ctx, 200, 10, "b")
	evs = f.events()
	v2 := f.build("v2", 2, "out.first2")
	last := evs[len(evs)-1].seq
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- pipeline.NewRunner(v2, pipeline.Options{JS: f.js, Leases: f.leases("live-v2"), OutputStreams: []string{"OUT"},
			OnCommit: func(c pipeline.CommitInfo) {
				if c.Seq >= last {
					stop()
				}
			}}).Run(runCtx)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.checkChangedHandler(t, evs, last)
}

// checkChangedHandler checks what the changed-handler tests leave after the switch: version
// 2 equal to the oracle of evs up to last, read by get, one `on` emit per event, the old
// handler's `once` emits of the 20 keys the live pipeline saw first and the new handler's of
// the 10 keys after the switch (a rebuild fires none).
func (f *fixture) checkChangedHandler(t *testing.T, evs []ev, last uint64) {
	t.Helper()
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, last, 2))
	v, err := state.Read(context.Background(), f.js, "tally", "a3")
	if err != nil || !strings.Contains(string(v.Value), fmt.Sprintf(`"sum":%d`, oracle(evs, last, 2)["a3"][1])) {
		t.Errorf("get reads %s, %v: want version 2", v.Value, err)
	}
	out := f.outputs()
	if out["out.ev"] != len(evs) {
		t.Errorf("%d `on` emits in OUT, want one per event: %d", out["out.ev"], len(evs))
	}
	if out["out.first"] != 20 {
		t.Errorf("%d `once` emits of the old handler, want 20 (the keys the live pipeline saw first)", out["out.first"])
	}
	if out["out.first2"] != 10 {
		t.Errorf("%d `once` emits of the new handler, want 10 (the keys that came after the switch); a rebuild fires none", out["out.first2"])
	}
}

// TestRefusesSecondRebuild: while one rebuild holds the lock, another is refused.
func TestRefusesSecondRebuild(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.build("v1", 1, "out.first")
	_, release, err := f.leases("first").Acquire(ctx, checkpoint.RebuildKey("tally"))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: p, Leases: f.leases("second")})
	if !errors.Is(err, rebuild.ErrRunning) {
		t.Fatalf("second rebuild: %v, want ErrRunning", err)
	}
}

// TestResume: a rebuild interrupted in the middle keeps its checkpoint; run again (by the same
// holder: a loaded machine may leave the first one's lock to its TTL), it resumes from it
// (Result.Resumed) and ends equal to the oracle. Then DropOld deletes version 1.
func TestResume(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.runV1(3000, 30)
	// Interrupted once it has committed part of the history.
	p := f.build("v2", 2, "out.first2")
	p.Config.Batch.Size = 10
	ictx, interrupt := context.WithCancel(ctx)
	var at uint64
	_, err := rebuild.Run(ictx, rebuild.Options{JS: f.js, Pipeline: p, Leases: f.leases("rebuilder"), OutputStreams: []string{"OUT"},
		OnProgress: func(p rebuild.Progress) {
			if p.Phase == "replay" && p.Done >= 500 && at == 0 {
				at = p.Done
				interrupt()
			}
		}})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v, want context.Canceled", err)
	}
	if _, err := f.js.KeyValue(ctx, "tally_v2"); err != nil {
		t.Fatalf("the interrupted rebuild's bucket: %v", err)
	}
	if p, _ := checkpoint.Current(ctx, f.js, "tally"); p.Version != 1 {
		t.Fatalf("switched by an interrupted rebuild: %+v", p)
	}
	var first uint64
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.build("v2", 2, "out.first2"), Leases: f.leases("rebuilder"), OutputStreams: []string{"OUT"}, DropOld: true,
		OnProgress: func(p rebuild.Progress) {
			if first == 0 && p.Done > 0 {
				first = p.Done
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || first < at {
		t.Errorf("resumed %v at %d: want it resumed at %d or later", res.Resumed, first, at)
	}
	evs := f.events()
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, evs[len(evs)-1].seq, 2))
	if len(res.Dropped) != 1 || res.Dropped[0] != "tally" {
		t.Errorf("dropped %v, want [tally]", res.Dropped)
	}
	if _, err := f.js.KeyValue(ctx, "tally"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("version 1 after DropOld: %v", err)
	}
	if out := f.outputs(); out["out.first2"] != 0 {
		t.Errorf("a rebuild fired %d `once` emits", out["out.first2"])
	}
}

// TestStartOver: a rebuild with another definition than an interrupted one starts over:
// version 2 is written anew, not on top of what the other left.
func TestStartOver(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.runV1(1000, 10)
	p := f.build("v3", 3, "out.first")
	p.Config.Batch.Size = 10
	ictx, interrupt := context.WithCancel(ctx)
	_, err := rebuild.Run(ictx, rebuild.Options{JS: f.js, Pipeline: p, Leases: f.leases("rebuilder"),
		OnProgress: func(p rebuild.Progress) {
			if p.Done >= 300 {
				interrupt()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v", err)
	}
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.build("v2", 2, "out.first"), Leases: f.leases("rebuilder")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed || res.Version != 2 {
		t.Errorf("result %+v: want a new version 2", res)
	}
	evs := f.events()
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, evs[len(evs)-1].seq, 2))
}

const readerYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: Q, subjects: ["q.>"]}
pipelines:
  - name: reader
    source: {stream: Q, start: all, stop: follow}
    key: event.k
    batch: {size: 10, max_wait: 10ms}
    operators:
      - lookup: {projection: tally, key: key, as: t}
      - fold:
          projection: seen
          on:
            "*": {sum: t.sum}
`

// TestLookupFollowsSwitch: a pipeline that looks up a rebuilt projection reads the new
// version after the switch, without a restart.
func TestLookupFollowsSwitch(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f.runV1(500, 5)
	reader := pipetest.Build(t, f.js, filepath.Join(f.dir, "reader.yaml"), fmt.Sprintf(readerYAML, f.url), nil)[0]
	done := make(chan error, 1)
	go func() { done <- pipeline.NewRunner(reader, pipeline.Options{JS: f.js}).Run(ctx) }()
	evs := f.events()
	last := evs[len(evs)-1].seq
	seen := func(want int) func() bool {
		return func() bool {
			v, err := state.Read(ctx, f.js, "seen", "a1")
			return err == nil && strings.Contains(string(v.Value), fmt.Sprintf(`"sum":%d`, want))
		}
	}
	if _, err := f.js.Publish(ctx, "q.x", []byte(`{"type":"q","k":"a1"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, "the reader sees version 1", seen(oracle(evs, last, 1)["a1"][1]))
	if _, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.build("v2", 2, "out.first"), Leases: f.leases("r")}); err != nil {
		t.Fatal(err)
	}
	// The replica learns of the switch through a watch, a moment later: events that come
	// after it read version 2.
	v2 := seen(oracle(evs, last, 2)["a1"][1])
	natstest.Eventually(t, time.Minute, "the reader sees version 2", func() bool {
		if _, err := f.js.Publish(ctx, "q.x", []byte(`{"type":"q","k":"a1"}`)); err != nil {
			t.Fatal(err)
		}
		return v2()
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSameDefinitionGoesOn: a rebuild with the definition the live pipeline runs (the HTTP
// route's case) hands over and back: the live runner, never stopped, goes on in version 2
// after the switch, and version 2 ends equal to the oracle of every event.
func TestSameDefinitionGoesOn(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v1 := f.build("v1", 1, "out.first")
	f.publish(ctx, 1000, 20, "a")
	var at atomic.Uint64
	done := make(chan error, 1)
	go func() {
		done <- pipeline.NewRunner(v1, pipeline.Options{JS: f.js, Leases: f.leases("live"), OutputStreams: []string{"OUT"},
			OnCommit: func(c pipeline.CommitInfo) { at.Store(c.Seq) }}).Run(ctx)
	}()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); f.publish(ctx, 2000, 20, "a") }()
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.build("v1", 1, "out.first"), Leases: f.leases("rebuilder"),
		OutputStreams: []string{"OUT"}, CloseEnough: 100})
	if err != nil {
		t.Fatal(err)
	}
	<-pubDone
	f.publish(ctx, 100, 20, "a")
	evs := f.events()
	last := evs[len(evs)-1].seq
	natstest.Eventually(t, 2*time.Minute, "the live pipeline goes on after the switch", func() bool { return at.Load() >= last })
	select {
	case err := <-done:
		t.Fatalf("the live pipeline stopped: %v", err)
	default:
	}
	diff(t, "version 1", f.bucket("tally"), oracle(evs, res.Seq, 1))
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, last, 1))
	if out := f.outputs(); out["out.ev"] != len(evs) || out["out.first"] != 20 {
		t.Errorf("outputs %v: want %d out.ev and 20 out.first", out, len(evs))
	}
}

// TestOldFileRefusedLater: the refusal of the definition a rebuild replaced outlives the
// commits of the new one (an old replica restarted later), while a third definition (an edit
// after the rebuild) is only warned about.
func TestOldFileRefusedLater(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.runV1(300, 3)
	if _, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.build("v2", 2, "out.first"), Leases: f.leases("r")}); err != nil {
		t.Fatal(err)
	}
	run := func(name string, factor int) error {
		p := f.build(name, factor, "out.first")
		p.Config.Source.Stop = "end"
		return pipeline.NewRunner(p, pipeline.Options{JS: f.js}).Run(ctx)
	}
	f.publish(ctx, 10, 3, "a")
	if err := run("v2", 2); err != nil {
		t.Fatalf("the new definition: %v", err)
	}
	f.publish(ctx, 10, 3, "a")
	if err := run("v1", 1); !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("the replaced definition after the new one committed: %v, want it refused", err)
	}
	if err := run("v3", 3); err != nil {
		t.Fatalf("a later edit: %v, want it run (with a warning)", err)
	}
}

// TestSameStateAsRun: a rebuild with the definition a run used writes, byte for byte, the
// state the run wrote, for a pipeline with a window, a dedupe and a timeout (their
// projections included): a rebuild is the run, hydrated.
func TestSameStateAsRun(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	yaml := fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n%s\npipelines:%s", f.url, shoptest.Streams,
		fmt.Sprintf(shoptest.Stateful, "all", "end", 200, 1000))
	build := func() *pipeline.Pipeline {
		return pipetest.Build(t, f.js, filepath.Join(f.dir, "stateful.yaml"), yaml, nil)[0]
	}
	p := build()
	natstest.Publish(t, f.js, shoptest.Subject, shoptest.Workload(7, 3000, 40))
	if err := pipeline.NewRunner(p, pipeline.Options{JS: f.js, OutputStreams: []string{"SHOP_DERIVED"}}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: build(), Leases: f.leases("r"), OutputStreams: []string{"SHOP_DERIVED"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Buckets) != 3 {
		t.Fatalf("buckets %v, want the window's, the dedupe's and the timers'", res.Buckets)
	}
	for proj, bucket := range res.Buckets {
		run, rebuilt := f.values(proj), f.values(bucket)
		if len(run) == 0 {
			t.Errorf("%s: the run wrote nothing", proj)
		}
		for k, v := range run {
			if rebuilt[k] != v {
				t.Errorf("%s/%s: run %s, rebuild %s", proj, k, v, rebuilt[k])
			}
		}
		for k := range rebuilt {
			if _, ok := run[k]; !ok {
				t.Errorf("%s/%s: only in the rebuild", proj, k)
			}
		}
	}
}

// values reads every live key of bucket as its raw value.
func (f *fixture) values(bucket string) map[string]string {
	f.t.Helper()
	ctx := context.Background()
	kv, err := f.js.KeyValue(ctx, bucket)
	if err != nil {
		f.t.Fatalf("bucket %s: %v", bucket, err)
	}
	out := map[string]string{}
	keys, err := kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out
	}
	if err != nil {
		f.t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			f.t.Fatal(err)
		}
		out[k] = string(e.Value())
	}
	return out
}
