package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/streams"
)

// parts is the number of partitions of the partitioned tests.
const parts = 4

// buildParts builds the tally pipeline with `partitions: parts`, factor and once-subject
// prefix first, and the file edited by replacements (old, new pairs, as strings.NewReplacer
// takes them): the partitions' instances of the pipeline are built from the file.
func (f *fixture) buildParts(name string, factor int, first string, replacements ...string) *pipeline.Pipeline {
	f.t.Helper()
	yaml := strings.NewReplacer(replacements...).Replace(fmt.Sprintf(tallyYAML, f.url, strconv.Itoa(factor), first))
	const keyLine = "    key: event.k\n"
	if !strings.Contains(yaml, keyLine) {
		f.t.Fatal("no key line to partition")
	}
	yaml = strings.Replace(yaml, keyLine, fmt.Sprintf("%s    partitions: %d\n", keyLine, parts), 1)
	p := pipetest.Build(f.t, f.js, filepath.Join(f.dir, name+".yaml"), yaml, nil)[0]
	if p.Config.Partitions != parts {
		f.t.Fatalf("partitions %d", p.Config.Partitions)
	}
	return p
}

// oracleParts folds, with factor f, the events of each key up to the checkpoint of the
// key's partition.
func oracleParts(evs []ev, at []uint64, f int) map[string][2]int {
	out := map[string][2]int{}
	for _, e := range evs {
		if e.seq > at[pipeline.PartitionOf(e.k, len(at))] {
			continue
		}
		s := out[e.k]
		out[e.k] = [2]int{s[0] + 1, s[1] + f*e.v}
	}
	return out
}

// process runs every partition of p as one process would: holder's leases, shared evenly
// with the other processes.
func (f *fixture) process(ctx context.Context, p *pipeline.Pipeline, holder string, onCommit func(pipeline.CommitInfo)) chan error {
	l := f.leases(holder)
	done := make(chan error, 1)
	go func() {
		done <- pipeline.RunAll(ctx, []*pipeline.Pipeline{p}, pipeline.Options{
			JS: f.js, Leases: l, Share: pipeline.NewShare(l, nil), Instance: holder, OutputStreams: []string{"OUT"}, OnCommit: onCommit,
		})
	}()
	return done
}

// checkpoints reads the live checkpoint of each partition of tally (0 when none).
func (f *fixture) checkpoints(ctx context.Context) []uint64 {
	f.t.Helper()
	kv, err := f.js.KeyValue(ctx, "jetfold_checkpoints")
	if err != nil {
		f.t.Fatal(err)
	}
	cps := checkpoint.NewStore(kv)
	out := make([]uint64, parts)
	for i := range out {
		cp, err := cps.Load(ctx, checkpoint.PartitionKey("tally", i))
		if errors.Is(err, checkpoint.ErrNotFound) {
			continue
		}
		if err != nil {
			f.t.Fatal(err)
		}
		out[i] = cp.Seq
	}
	return out
}

// seqOf reads the position of the checkpoint kept under key (0 when none).
func (f *fixture) seqOf(ctx context.Context, key string) uint64 {
	f.t.Helper()
	kv, err := f.js.KeyValue(ctx, "jetfold_checkpoints")
	if err != nil {
		f.t.Fatal(err)
	}
	cp, err := checkpoint.NewStore(kv).Load(ctx, key)
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		f.t.Fatal(err)
	}
	return cp.Seq
}

// holders returns the processes that hold the partitions' leases.
func (f *fixture) holders(ctx context.Context) map[string]int {
	l := f.leases("observer")
	out := map[string]int{}
	for i := range parts {
		h, err := l.Holder(ctx, checkpoint.PartitionKey("tally", i))
		if err != nil {
			f.t.Fatal(err)
		}
		out[h]++
	}
	return out
}

// TestPartitionedChangedHandler is TestChangedHandler for a pipeline of 4 partitions that two
// processes share while the rebuild runs: the switch takes the 4 leases from both, and moves
// the 4 partitions' checkpoints and the pointer at once. Then the old version holds each key
// folded by the old handler up to its partition's checkpoint, the new one the new handler's
// fold of every event once the new definition runs on, `once` emits fired only for events
// the live pipeline saw first, and every `on` emit is in OUT exactly once.
func TestPartitionedChangedHandler(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v1a, v1b := f.buildParts("v1a", 1, "out.first"), f.buildParts("v1b", 1, "out.first")
	f.publish(ctx, 2000, 20, "a")
	liveA := f.process(ctx, v1a, "live-a", nil)
	liveB := f.process(ctx, v1b, "live-b", nil)
	natstest.Eventually(t, time.Minute, "both processes run two partitions each", func() bool {
		h := f.holders(ctx)
		return h["live-a"] == 2 && h["live-b"] == 2
	})
	// The live partitions have committed most of the first events: the rebuild's first round
	// has work in every partition, so its description has moved by the hand-over (on a loaded
	// machine, a partition not yet committed left it at 0).
	natstest.Eventually(t, time.Minute, "the live partitions past 1,500", func() bool {
		if _, err := f.js.KeyValue(ctx, "jetfold_checkpoints"); err != nil {
			return false // not created yet
		}
		return slices.Min(f.checkpoints(ctx)) >= 1500
	})
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); f.publish(ctx, 3000, 20, "a") }()

	var phases []string
	// The position of the rebuild's description at the hand-over, and the least of the
	// partitions' rebuild checkpoints.
	var headAt, least uint64
	res, err := rebuild.Run(ctx, rebuild.Options{
		JS: f.js, Pipeline: f.buildParts("v2", 2, "out.first2"), Leases: f.leases("rebuilder"),
		OutputStreams: []string{"OUT"}, CloseEnough: 100,
		OnProgress: func(p rebuild.Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
				if p.Phase == "handover" {
					headAt, least = f.seqOf(ctx, checkpoint.RebuildKey("tally")), math.MaxUint64
					for i := range parts {
						least = min(least, f.seqOf(ctx, checkpoint.RebuildKey(checkpoint.PartitionKey("tally", i))))
					}
				}
			}
		},
	})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if res.Version != 2 || res.Buckets["tally"] != "tally_v2" || len(res.Partitions) != parts {
		t.Fatalf("result %+v: want version 2 in tally_v2, %d partitions", res, parts)
	}
	if got := strings.Join(phases, ","); !strings.HasPrefix(got, "replay,handover,") || !strings.HasSuffix(got, ",switch,done") {
		t.Errorf("phases %s", got)
	}
	if headAt == 0 || headAt != least {
		t.Errorf("the rebuild's description at %d at the hand-over: want the least partition's position, %d", headAt, least)
	}
	// Both processes run the old file: they refuse the rebuilt version.
	for _, live := range []chan error{liveA, liveB} {
		select {
		case err := <-live:
			if !errors.Is(err, pipeline.ErrStopped) || !strings.Contains(err.Error(), "rebuilt as version 2") {
				t.Errorf("an old process: %v, want it to refuse the new version", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("an old process still runs after the switch")
		}
	}
	<-pubDone
	evs := f.events()
	if got := f.checkpoints(ctx); fmt.Sprint(got) != fmt.Sprint(res.Partitions) {
		t.Errorf("checkpoints %v after the switch, want the switch's %v", got, res.Partitions)
	}
	// Frozen at the switch: the old version is the old handler's fold up to each
	// partition's checkpoint.
	diff(t, "version 1", f.bucket("tally"), oracleParts(evs, res.Partitions, 1))
	ptr, err := checkpoint.Current(ctx, f.js, "tally")
	if err != nil || ptr.Bucket != "tally_v2" || ptr.Version != 2 || ptr.Seq != res.Seq {
		t.Fatalf("pointer %+v, %v", ptr, err)
	}
	kv, err := f.js.KeyValue(ctx, "jetfold_checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"tally.rebuild", "tally.p0.rebuild", "tally.p3.rebuild"} {
		if _, err := kv.Get(ctx, key); err == nil {
			t.Errorf("%s is left after the switch", key)
		}
	}

	// The new definition runs on, in two processes, with keys that appear only now.
	f.publish(ctx, 200, 10, "b")
	evs = f.events()
	last := evs[len(evs)-1].seq
	runCtx, stop := context.WithCancel(ctx)
	doneA := f.process(runCtx, f.buildParts("v2a", 2, "out.first2"), "live-a2", nil)
	doneB := f.process(runCtx, f.buildParts("v2b", 2, "out.first2"), "live-b2", nil)
	natstest.Eventually(t, 2*time.Minute, "every partition of the new definition reaches the end", func() bool {
		for _, seq := range f.checkpoints(ctx) {
			if seq < last {
				return false
			}
		}
		return true
	})
	stop()
	for _, done := range []chan error{doneA, doneB} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	f.checkChangedHandler(t, evs, last)
}

// TestPartitionedSameDefinitionGoesOn: a rebuild with the definition the live partitions run
// hands over and back: the live process, never stopped, goes on in version 2 after the
// switch in every partition, and version 2 ends equal to the oracle of every event.
func TestPartitionedSameDefinitionGoesOn(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v1 := f.buildParts("v1", 1, "out.first")
	f.publish(ctx, 1000, 20, "a")
	runCtx, stop := context.WithCancel(ctx)
	live := f.process(runCtx, v1, "live", nil)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); f.publish(ctx, 2000, 20, "a") }()
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.buildParts("v1r", 1, "out.first"), Leases: f.leases("rebuilder"),
		OutputStreams: []string{"OUT"}, CloseEnough: 100})
	if err != nil {
		t.Fatal(err)
	}
	<-pubDone
	f.publish(ctx, 100, 20, "a")
	evs := f.events()
	last := evs[len(evs)-1].seq
	natstest.Eventually(t, 2*time.Minute, "the live partitions go on after the switch", func() bool {
		for _, seq := range f.checkpoints(ctx) {
			if seq < last {
				return false
			}
		}
		return true
	})
	select {
	case err := <-live:
		t.Fatalf("the live process stopped: %v", err)
	default:
	}
	stop()
	if err := <-live; err != nil {
		t.Fatal(err)
	}
	diff(t, "version 1", f.bucket("tally"), oracleParts(evs, res.Partitions, 1))
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, last, 1))
	if out := f.outputs(); out["out.ev"] != len(evs) || out["out.first"] != 20 {
		t.Errorf("outputs %v: want %d out.ev and 20 out.first", out, len(evs))
	}
}

// TestPartitionedSameStateAsRun is TestSameStateAsRun for the stateful shop pipeline in 4
// partitions: each partition's replay moves its own watermark as the partition's run did, so
// the windows, the dedupe and the timers are rebuilt byte for byte as the run wrote them.
func TestPartitionedSameStateAsRun(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	yaml := fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n%s\npipelines:%s", f.url, shoptest.Streams,
		shoptest.WithPartitions(t, fmt.Sprintf(shoptest.Stateful, "all", "end", 200, 1000), parts))
	build := func(name string) *pipeline.Pipeline {
		return pipetest.Build(t, f.js, filepath.Join(f.dir, name+".yaml"), yaml, nil)[0]
	}
	build("streams") // creates the streams
	natstest.Publish(t, f.js, shoptest.Subject, shoptest.Workload(7, 3000, 40))
	if err := pipeline.RunAll(ctx, []*pipeline.Pipeline{build("run")}, pipeline.Options{JS: f.js, OutputStreams: []string{"SHOP_DERIVED"}}); err != nil {
		t.Fatal(err)
	}
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: build("rebuild"),
		Leases: f.leases("r"), OutputStreams: []string{"SHOP_DERIVED"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Buckets) != 3 || len(res.Partitions) != parts {
		t.Fatalf("result %+v, want the window's, the dedupe's and the timers' buckets, %d partitions", res, parts)
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

// TestPartitionedResume: a partitioned rebuild interrupted in the middle keeps a checkpoint per
// partition; run again, it resumes from them and ends equal to the oracle.
func TestPartitionedResume(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v1 := f.buildParts("v1", 1, "out.first", "stop: follow", "stop: end")
	f.publish(ctx, 3000, 30, "a")
	if err := pipeline.RunAll(ctx, []*pipeline.Pipeline{v1}, pipeline.Options{JS: f.js, OutputStreams: []string{"OUT"}}); err != nil {
		t.Fatal(err)
	}
	p := f.buildParts("v2", 2, "out.first2", "batch: {size: 50,", "batch: {size: 10,")
	ictx, interrupt := context.WithCancel(ctx)
	var at uint64
	_, err := rebuild.Run(ictx, rebuild.Options{JS: f.js, Pipeline: p, Leases: f.leases("rebuilder"), OutputStreams: []string{"OUT"},
		OnProgress: func(p rebuild.Progress) {
			if p.Phase == "replay" && p.Done >= 2000 && at == 0 {
				at = p.Done
				interrupt()
			}
		}})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v, want context.Canceled", err)
	}
	kv, err := f.js.KeyValue(ctx, "jetfold_checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	for i := range parts {
		if _, err := kv.Get(ctx, checkpoint.RebuildKey(checkpoint.PartitionKey("tally", i))); err != nil {
			t.Errorf("partition %d's rebuild checkpoint after the interruption: %v", i, err)
		}
	}
	if e, err := kv.Get(ctx, checkpoint.RebuildKey("tally")); err != nil || !strings.Contains(string(e.Value()), `"rebuild":{"version":2`) {
		t.Errorf("the rebuild's description after the interruption: %v", err)
	}
	if ptr, _ := checkpoint.Current(ctx, f.js, "tally"); ptr.Version != 1 {
		t.Fatalf("switched by an interrupted rebuild: %+v", ptr)
	}
	var first uint64
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.buildParts("v2r", 2, "out.first2"), Leases: f.leases("rebuilder"), OutputStreams: []string{"OUT"},
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
	last := evs[len(evs)-1].seq
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, last, 2))
	if got := f.checkpoints(ctx); fmt.Sprint(got) != fmt.Sprint([]uint64{last, last, last, last}) {
		t.Errorf("checkpoints %v, want each partition at %d", got, last)
	}
	if out := f.outputs(); out["out.first2"] != 0 {
		t.Errorf("a rebuild fired %d `once` emits", out["out.first2"])
	}
}

// TestPartitionedBySubject: a pipeline whose partitions each read their own subjects
// (source.partitioned_by_subject), each partition's checkpoint the sequence of its own last
// event, is rebuilt with a changed handler while it runs: the switch catches each partition
// up to its own checkpoint, and the old version is the old handler's fold up to each
// partition's, the new one the new handler's fold of every event.
func TestPartitionedBySubject(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := func(name string, factor int, first string, stop string) *pipeline.Pipeline {
		yaml := strings.Replace(fmt.Sprintf(tallyYAML, f.url, strconv.Itoa(factor), first), "stop: follow", "stop: "+stop, 1)
		yaml = strings.Replace(yaml, `{name: EV, subjects: ["ev.>"]}`,
			fmt.Sprintf(`{name: EV, subjects: ["ev.*"], subject_transform: {src: "ev.*", dest: "{{partition(%d,1)}}.ev.{{wildcard(1)}}"}}`, parts), 1)
		yaml = strings.Replace(yaml, "source: {stream: EV, ", "source: {stream: EV, partitioned_by_subject: true, ", 1)
		yaml = strings.Replace(yaml, "    key: event.k\n", fmt.Sprintf("    key: event.k\n    partitions: %d\n", parts), 1)
		return pipetest.Build(t, f.js, filepath.Join(f.dir, name+".yaml"), yaml, nil)[0]
	}
	v1 := build("v1", 1, "out.first", "follow")
	f.publish(ctx, 1000, 20, "a")
	live := f.process(ctx, v1, "live", nil)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); f.publish(ctx, 2000, 20, "a") }()
	res, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: build("v2", 2, "out.first2", "follow"), Leases: f.leases("rebuilder"),
		OutputStreams: []string{"OUT"}, CloseEnough: 100})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-live:
		if !errors.Is(err, pipeline.ErrStopped) {
			t.Errorf("the old process: %v, want it to refuse the new version", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the old process still runs after the switch")
	}
	<-pubDone
	evs := f.events()
	// Each partition's checkpoint is the sequence of one of its own events.
	for i, at := range res.Partitions {
		found := false
		for _, e := range evs {
			found = found || e.seq == at && pipeline.PartitionOf(e.k, parts) == i
		}
		if !found {
			t.Errorf("partition %d switched at %d, not an event of its own", i, at)
		}
	}
	diff(t, "version 1", f.bucket("tally"), oracleParts(evs, res.Partitions, 1))
	last := evs[len(evs)-1].seq
	v2 := build("v2end", 2, "out.first2", "end")
	if err := pipeline.RunAll(ctx, []*pipeline.Pipeline{v2}, pipeline.Options{JS: f.js, OutputStreams: []string{"OUT"}}); err != nil {
		t.Fatal(err)
	}
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, last, 2))
	out := f.outputs()
	if out["out.ev"] != len(evs) || out["out.first"] != 20 || out["out.first2"] != 0 {
		t.Errorf("outputs %v: want %d out.ev, 20 out.first, no out.first2", out, len(evs))
	}
}

// TestSwitchParts: the switch of several checkpoints is one batch: when one of them moved since
// it was loaded (not the last of the batch), nothing is written; loaded again, every
// checkpoint, the pointer and the deletions are written, and a switch over the batch limit
// is refused.
func TestSwitchParts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	kv, err := streams.EnsureBucket(ctx, f.js, streams.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	cps := checkpoint.NewStore(kv)
	keys := []string{"x.p0", "x.p1", "x.p2"}
	for i, key := range append(keys, "x.rebuild") {
		if _, err := cps.Commit(ctx, key, checkpoint.Checkpoint{Seq: uint64(10 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// load returns the switch of every key, from its checkpoint as loaded now to 100 later in x_v2.
	load := func() []checkpoint.SwitchPart {
		parts := make([]checkpoint.SwitchPart, len(keys))
		for i, key := range keys {
			live, err := cps.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			parts[i] = checkpoint.SwitchPart{Key: key, Live: live, Next: checkpoint.Checkpoint{Seq: live.Seq + 100, Buckets: map[string]string{"x": "x_v2"}}}
		}
		return parts
	}
	switchAll := func() ([]checkpoint.Checkpoint, error) {
		parts := load()
		if _, err := kv.Put(ctx, "x.p1", []byte(`{"seq": 11}`)); err != nil { // moves under the switch
			t.Fatal(err)
		}
		return cps.SwitchParts(ctx, f.js, "x", parts, []string{"x.rebuild"})
	}
	if _, err := switchAll(); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("a switch over a moved checkpoint: %v, want ErrFenced", err)
	}
	for i, key := range keys {
		if cp, err := cps.Load(ctx, key); err != nil || cp.Seq != uint64(10+i) {
			t.Errorf("%s after a fenced switch: %+v, %v", key, cp, err)
		}
	}
	if ptr, err := checkpoint.Current(ctx, f.js, "x"); err != nil || ptr.Version != 1 {
		t.Errorf("pointer after a fenced switch: %+v, %v", ptr, err)
	}
	done, err := cps.SwitchParts(ctx, f.js, "x", load(), []string{"x.rebuild"})
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		cp, err := cps.Load(ctx, key)
		if err != nil || cp.Seq != uint64(110+i) || cp.Bucket("x") != "x_v2" || cp.Revision != done[i].Revision {
			t.Errorf("%s after the switch: %+v, %v; want %d in x_v2 at revision %d", key, cp, err, 110+i, done[i].Revision)
		}
	}
	if ptr, err := checkpoint.Current(ctx, f.js, "x"); err != nil || ptr.Bucket != "x_v2" || ptr.Seq != 112 {
		t.Errorf("pointer after the switch: %+v, %v", ptr, err)
	}
	if _, err := cps.Load(ctx, "x.rebuild"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("x.rebuild after the switch: %v, want it deleted", err)
	}
	many := make([]checkpoint.SwitchPart, checkpoint.MaxSwitch/2)
	dels := make([]string, checkpoint.MaxSwitch/2+1)
	for i := range many {
		many[i] = checkpoint.SwitchPart{Key: fmt.Sprintf("y.p%d", i)}
		dels[i] = fmt.Sprintf("y.p%d.rebuild", i)
	}
	dels[len(dels)-1] = "y.rebuild"
	if _, err := cps.SwitchParts(ctx, f.js, "y", many, dels); err == nil || !strings.Contains(err.Error(), "over the 1000 of one atomic batch") {
		t.Errorf("a switch of %d messages: %v, want it refused", len(many)+len(dels), err)
	}
}

// TestRefusesChangedPartitions: a pipeline whose file has another number of partitions than
// it ran with is not rebuilt (its live checkpoints are positions of other partitions), in
// either direction, and the refusal writes nothing.
func TestRefusesChangedPartitions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.runV1(100, 5)
	_, err := rebuild.Run(ctx, rebuild.Options{JS: f.js, Pipeline: f.buildParts("v2", 2, "out.first2"), Leases: f.leases("r")})
	if !errors.Is(err, rebuild.ErrPartitioned) {
		t.Fatalf("a rebuild in %d partitions of a pipeline that ran in one: %v, want ErrPartitioned", parts, err)
	}
	if _, err := f.js.KeyValue(ctx, "tally_v2"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("the refused rebuild made tally_v2: %v", err)
	}

	g := newFixture(t)
	v1 := g.buildParts("v1", 1, "out.first", "stop: follow", "stop: end")
	g.publish(ctx, 100, 5, "a")
	if err := pipeline.RunAll(ctx, []*pipeline.Pipeline{v1}, pipeline.Options{JS: g.js}); err != nil {
		t.Fatal(err)
	}
	_, err = rebuild.Run(ctx, rebuild.Options{JS: g.js, Pipeline: g.build("v2", 2, "out.first2"), Leases: g.leases("r")})
	if !errors.Is(err, rebuild.ErrPartitioned) {
		t.Fatalf("a rebuild in one partition of a pipeline that ran in %d: %v, want ErrPartitioned", parts, err)
	}
}
