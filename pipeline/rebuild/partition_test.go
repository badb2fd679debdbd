package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/pipeline/state"
)

// parts is the number of partitions of the partitioned tests.
const parts = 4

// buildParts builds the tally pipeline with `partitions: parts`, factor and once-subject
// prefix first.
func (f *fixture) buildParts(name string, factor int, first string) *pipeline.Pipeline {
	f.t.Helper()
	yaml := fmt.Sprintf(tallyYAML, f.url, strconv.Itoa(factor), first)
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
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); f.publish(ctx, 3000, 20, "a") }()

	var phases []string
	res, err := rebuild.Run(ctx, rebuild.Options{
		JS: f.js, Pipeline: f.buildParts("v2", 2, "out.first2"), Leases: f.leases("rebuilder"), OutputStreams: []string{"OUT"},
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
	if res.Version != 2 || res.Buckets["tally"] != "tally_v2" || len(res.Partitions) != parts {
		t.Fatalf("result %+v: want version 2 in tally_v2, %d partitions", res, parts)
	}
	if got := strings.Join(phases, ","); !strings.HasPrefix(got, "replay,handover,") || !strings.HasSuffix(got, ",switch,done") {
		t.Errorf("phases %s", got)
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
	diff(t, "version 2", f.bucket("tally_v2"), oracle(evs, last, 2))
	v, err := state.Read(ctx, f.js, "tally", "a3")
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
