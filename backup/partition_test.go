package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/backup"
	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// partitionedShopYAML is [shopYAML] with both pipelines in n partitions, starting at start;
// bySubject stores each event of SHOP under its user's partition (`shop.<user>` ->
// `<p>.shop.<user>`) and has each partition read its own subjects only.
func partitionedShopYAML(t *testing.T, url, start, stop string, n int, bySubject bool) string {
	t.Helper()
	y := shopYAML(url, stop)
	replace := func(old, repl string, count int) {
		if got := strings.Count(y, old); got != count {
			t.Fatalf("%d of %q in the shop pipelines' file, want %d", got, old, count)
		}
		y = strings.ReplaceAll(y, old, repl)
	}
	replace("start: all,", "start: "+start+",", 2)
	replace("    key: event.user_id\n", fmt.Sprintf("    key: event.user_id\n    partitions: %d\n", n), 2)
	if bySubject {
		replace(`{name: SHOP, subjects: ["shop.>"]}`, fmt.Sprintf(`{name: SHOP, subjects: ["shop.*"], subject_transform: {src: "shop.*", dest: "{{partition(%d,1)}}.shop.{{wildcard(1)}}"}}`, n), 1)
		replace("source: {stream: SHOP, ", "source: {stream: SHOP, partitioned_by_subject: true, ", 2)
	}
	return y
}

// userOf is the subject token of a shop payload by subject: its user, or "nouser" for one
// without (or that does not decode).
func userOf(p []byte) string {
	var ev struct {
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(p, &ev) != nil || ev.UserID == "" {
		return "nouser"
	}
	return ev.UserID
}

// publishOn publishes payloads[i] to subjects[i] through a window.
func publishOn(t *testing.T, js jetstream.JetStream, subjects []string, payloads [][]byte) {
	w := streams.NewWindow(js, natstest.PublishWindow)
	for i, p := range payloads {
		if err := w.Publish(context.Background(), &nats.Msg{Subject: subjects[i], Data: p}); err != nil {
			t.Errorf("publish %d: %v", i, err)
			return
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Errorf("publish: %v", err)
	}
}

// partitionCheckpoints returns the checkpoint sequences of the n partitions of pipeline on nd
// (0 for one that has none).
func (n *node) partitionCheckpoints(t *testing.T, name string, parts int) []uint64 {
	t.Helper()
	kv, err := n.js.KeyValue(context.Background(), streams.CheckpointBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return make([]uint64, parts)
	}
	if err != nil {
		t.Fatal(err)
	}
	cps := checkpoint.NewStore(kv)
	out := make([]uint64, parts)
	for i := range parts {
		cp, err := cps.Load(context.Background(), checkpoint.PartitionKey(name, i))
		if errors.Is(err, checkpoint.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[i] = cp.Seq
	}
	return out
}

// copyStream copies the messages stream holds now on from to a stream of the same
// configuration on to, at the same sequences (from's has none deleted): a backup of the
// stream taken at this point, restored.
func copyStream(t *testing.T, from, to jetstream.JetStream, stream string) int {
	t.Helper()
	ctx := context.Background()
	st, err := from.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := to.Stream(ctx, stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := to.CreateStream(ctx, st.CachedInfo().Config); err != nil {
			t.Fatalf("create %s: %v", stream, err)
		}
	}
	msgs := natstest.ReadAll(t, from, stream, "")
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Stream != uint64(i+1) {
			t.Fatalf("%s: message %d at sequence %+v (%v): want no gap", stream, i+1, meta, err)
		}
		ack, err := to.PublishMsg(ctx, &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()})
		if err != nil || ack.Sequence != uint64(i+1) {
			t.Fatalf("copy %s message %d: %+v, %v", stream, i+1, ack, err)
		}
	}
	return len(msgs)
}

// TestLivePartitionedBackupRestore is TestLiveBackupRestore with both shop pipelines in 3
// partitions, in both layouts: every partition reads the whole stream, or each its own subjects
// (its checkpoint then the sequence of its own last event). The pipelines run, events still
// being published, while the backup is taken; every partition's checkpoint is mid-stream, and
// every partition commits 100 sequences more between the checkpoints' reads and the keys'. The
// derived and dead-letter streams are copied after the backup (as a stream backup taken after
// it). On a fresh server with the same events at the same sequences, the archive is restored:
// each partition's checkpoint is back, and the pipelines, which there start at `new`, resume
// from them to the end. The carts, first-order
// events and dead letters are the oracle's (shoptest.Mismatches), the windows, timers and
// stateful dead letters the partition-aware oracle's (shoptest.StatefulMismatches), and every
// key is what the run that never stopped wrote.
func TestLivePartitionedBackupRestore(t *testing.T) {
	for _, tt := range []struct {
		name      string
		bySubject bool
	}{
		{"whole stream", false},
		{"by subject", true},
	} {
		t.Run(tt.name, func(t *testing.T) { livePartitioned(t, 3, tt.bySubject) })
	}
}

func livePartitioned(t *testing.T, parts int, bySubject bool) {
	payloads := shoptest.Workload(7, 6000, 40)
	n := len(payloads)
	half := n / 2
	subjects := make([]string, n)
	owner := make([]int, n) // the partition that reads the event (by subject: its subject's)
	for i, p := range payloads {
		subjects[i] = shoptest.Subject
		if bySubject {
			subjects[i] = "shop." + userOf(p)
			owner[i] = pipeline.PartitionOf(userOf(p), parts)
		}
	}
	// targets returns, per partition, the checkpoint it has once it processed the first k
	// events: k, or by subject the sequence of its own last event among them.
	targets := func(k int) []uint64 {
		if !bySubject {
			return slices.Repeat([]uint64{uint64(k)}, parts)
		}
		out := make([]uint64, parts)
		for i := range k {
			out[owner[i]] = uint64(i + 1)
		}
		return out
	}
	end := targets(n)

	// The run that never stops, on A.
	a := newNode(t)
	psA := a.build(t, "a", partitionedShopYAML(t, a.srv.ClientURL(), "all", "follow", parts, bySubject))
	names := []string{psA[0].Name, psA[1].Name}
	// reached tells whether every partition of every pipeline on A is at want (per partition)
	// or further.
	reached := func(want func(name string, i int) uint64) bool {
		for _, name := range names {
			for i, seq := range a.partitionCheckpoints(t, name, parts) {
				if seq < want(name, i) {
					return false
				}
			}
		}
		return true
	}
	progress := func() uint64 {
		var sum uint64
		for _, name := range names {
			for _, seq := range a.partitionCheckpoints(t, name, parts) {
				sum += seq
			}
		}
		return sum
	}
	publishOn(t, a.js, subjects[:half], payloads[:half])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		runDone <- pipeline.RunAll(ctx, psA, pipeline.Options{JS: a.js, OutputStreams: []string{"SHOP_DERIVED"}})
	}()
	quarter := targets(n / 4)
	natstest.Eventually(t, 2*time.Minute, "every partition a quarter through", func() bool {
		return reached(func(_ string, i int) uint64 { return quarter[i] })
	})
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); publishOn(t, a.js, subjects[half:], payloads[half:]) }()

	var archive bytes.Buffer
	o := backup.WithAfterCheckpoints(backup.Options{Pipelines: psA, Jetfold: "test"}, func() {
		// The checkpoints are read: let every partition commit 100 sequences more before the
		// keys are, so that keys are ahead of them.
		at := map[string][]uint64{}
		for _, name := range names {
			at[name] = a.partitionCheckpoints(t, name, parts)
		}
		natstest.Eventually(t, 2*time.Minute, "every partition past the checkpoints read", func() bool {
			return reached(func(name string, i int) uint64 { return min(at[name][i]+100, end[i]) })
		})
	})
	m, err := backup.Write(context.Background(), a.js, o, &archive)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	backedUp := map[string][]uint64{}
	for _, p := range m.Pipelines {
		if p.Checkpoint != nil || len(p.Partitions) != parts || p.PartitionCount() != parts {
			t.Fatalf("pipeline %s backed up with checkpoint %+v and partitions %+v: want %d partitions and no checkpoint of its own", p.Name, p.Checkpoint, p.Partitions, parts)
		}
		var highest uint64
		for i, pt := range p.Partitions {
			cp := pt.Checkpoint
			if pt.Index != i || cp == nil || cp.Partitions != parts || cp.Seq == 0 || cp.Seq >= end[i] {
				t.Fatalf("pipeline %s: partition %d backed up as %+v: want partition %d's checkpoint of %d partitions, mid-stream (before %d)", p.Name, i, pt, i, parts, end[i])
			}
			highest = max(highest, cp.Seq)
			backedUp[p.Name] = append(backedUp[p.Name], cp.Seq)
		}
		if p.KeysAhead == 0 || p.MaxKeySeq <= highest {
			t.Fatalf("pipeline %s: %d keys ahead up to %d, the highest checkpoint %d: want keys ahead of it", p.Name, p.KeysAhead, p.MaxKeySeq, highest)
		}
		t.Logf("pipeline %s: checkpoints %v, %d keys ahead of the highest (up to %d)", p.Name, backedUp[p.Name], p.KeysAhead, p.MaxKeySeq)
	}
	t.Logf("archive: %d bytes, %d files", archive.Len(), len(m.Files))

	// B: a fresh server; the derived and dead-letter streams as they are right after the
	// backup (a stream backup taken after it), the source's events at their sequences. Its
	// pipelines start at new: only the restored checkpoints make them read the events after
	// them (folding the stream anew would hide a checkpoint not restored).
	b := newNode(t)
	psB := b.build(t, "b", partitionedShopYAML(t, b.srv.ClientURL(), "new", "end", parts, bySubject))
	for _, stream := range []string{"SHOP_DERIVED", streams.DLQStream} {
		t.Logf("stream %s: %d messages copied after the backup", stream, copyStream(t, a.js, b.js, stream))
	}

	<-pubDone
	natstest.Progress(t, "the run to the end of the stream", time.Minute, 5*time.Minute, progress,
		func() bool { return reached(func(_ string, i int) uint64 { return end[i] }) })
	cancel()
	if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("run on A: %v", err)
	}

	publishOn(t, b.js, subjects, payloads)
	res := restoreAll(t, b.js, archive.Bytes(), m, psB)
	for _, w := range res.Warnings {
		t.Errorf("warning: %s", w)
	}
	for _, name := range names {
		if got := b.partitionCheckpoints(t, name, parts); !slices.Equal(got, backedUp[name]) {
			t.Errorf("pipeline %s: partition checkpoints %v after restore, the archive's %v", name, got, backedUp[name])
		}
	}

	if err := pipetest.Run(context.Background(), t, b.js, psB, pipeline.Options{OutputStreams: []string{"SHOP_DERIVED"}}); err != nil {
		t.Fatalf("run on B: %v", err)
	}
	for _, name := range names {
		if got := b.partitionCheckpoints(t, name, parts); !slices.Equal(got, end) {
			t.Errorf("pipeline %s: partition checkpoints %v after the run on B, want %v", name, got, end)
		}
	}
	for _, bad := range shoptest.Mismatches(t, b.js, streams.DLQStream, shoptest.Oracle(payloads)) {
		t.Error(bad)
	}
	keyless := func(seq uint64) int {
		if bySubject {
			return owner[seq-1]
		}
		return int(seq % uint64(parts))
	}
	for _, bad := range shoptest.StatefulMismatches(t, b.js, streams.DLQStream, shoptest.StatefulOracleLayout(payloads, parts, keyless)) {
		t.Error(bad)
	}
	t.Logf("%d keys compared with the run that never stopped", sameProjections(t, a, b, psA))
}

// partTallyYAML is tallyYAML in partitions (the first %d, in the stream's transform too: EV
// stores `ev.<k>` under `<p>.ev.<k>`; the second, the pipeline's), each partition reading its
// own subjects: their checkpoints differ (each the sequence of its own last event).
const partTallyYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.*"], subject_transform: {src: "ev.*", dest: "{{partition(%d,1)}}.ev.{{wildcard(1)}}"}}
pipelines:
  - name: tally
    source: {stream: EV, start: all, stop: end, partitioned_by_subject: true}
    key: event.k
    partitions: %d
    batch: {size: 50, max_wait: 10ms}
    operators:
      - fold:
          projection: tally
          initial: {n: 0, sum: 0}
          on:
            "*": {n: state.n + 1, sum: state.sum + event.v}
`

// tallySubjects returns the subject of each of events' payloads (from the from-th): ev.<its key>.
func tallySubjects(from, count, keys int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = fmt.Sprintf("ev.k%d", (from+i)%keys)
	}
	return out
}

// commitCheckpoint writes a checkpoint under key on n.
func commitCheckpoint(t *testing.T, n *node, key string, cp checkpoint.Checkpoint) {
	t.Helper()
	kv, err := streams.EnsureBucket(context.Background(), n.js, streams.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.NewStore(kv).Commit(context.Background(), key, cp); err != nil {
		t.Fatal(err)
	}
}

// checkpointKeys lists the keys of n's checkpoint bucket that hold a value.
func (n *node) checkpointKeys(t *testing.T) []string {
	t.Helper()
	var out []string
	for k := range n.bucket(t, streams.CheckpointBucket) {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestPartitionedRefusals: what Write and Restore refuse of a partitioned pipeline, each
// before writing anything. The archive is of tally in 3 partitions by subject, run to the end
// of 500 events over 20 keys: its partitions' checkpoints differ (the sequence of each's last
// event). Restore refuses a target that holds a checkpoint of any partition of the pipeline
// (or its own), a source stream that ends before the highest checkpoint or starts after the
// lowest + 1 (and restores one that starts right there, the partitions then resume from their
// own checkpoints), a configuration that runs the pipeline in another number of partitions,
// and a manifest whose partitions do not match its checkpoints. Write refuses checkpoints
// written with another number of partitions than the configuration's.
func TestPartitionedRefusals(t *testing.T) {
	const parts, count, keys = 3, 500, 20
	src := newNode(t)
	ps := src.build(t, "tally", fmt.Sprintf(partTallyYAML, src.srv.ClientURL(), parts, parts))
	payloads := events(0, count, keys)
	publishOn(t, src.js, tallySubjects(0, count, keys), payloads)
	if err := pipetest.Run(context.Background(), t, src.js, ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	archive, m := backupOf(t, src, ps)
	mp := m.Pipelines[0]
	if mp.Checkpoint != nil || len(mp.Partitions) != parts {
		t.Fatalf("backed up %+v: want %d partitions and no checkpoint of its own", mp, parts)
	}
	lowest, highest, lowestPart := uint64(0), uint64(0), 0
	var seqs []uint64
	for i, pt := range mp.Partitions {
		if pt.Index != i || pt.Checkpoint == nil || pt.Checkpoint.Partitions != parts {
			t.Fatalf("partition %d backed up as %+v", i, pt)
		}
		seq := pt.Checkpoint.Seq
		seqs = append(seqs, seq)
		if i == 0 || seq < lowest {
			lowest, lowestPart = seq, i
		}
		highest = max(highest, seq)
	}
	if lowest >= highest || highest != count {
		t.Fatalf("partition checkpoints %v: the test needs them to differ, the highest at %d", seqs, count)
	}
	t.Logf("partition checkpoints %v", seqs)

	other := func(n int) func(url string) string {
		return func(url string) string { return fmt.Sprintf(partTallyYAML, url, n, n) }
	}
	// target returns a fresh node with the pipelines and streams of yaml (nil: the archive's)
	// and the first n events at their sequences.
	target := func(t *testing.T, yaml func(url string) string, n int) (*node, []*pipeline.Pipeline) {
		dst := newNode(t)
		if yaml == nil {
			yaml = other(parts)
		}
		ps := dst.build(t, "tally", yaml(dst.srv.ClientURL()))
		publishOn(t, dst.js, tallySubjects(0, n, keys), events(0, n, keys))
		return dst, ps
	}
	// untouched fails t when dst holds a tally bucket, or checkpoints other than want.
	untouched := func(t *testing.T, dst *node, want ...string) {
		t.Helper()
		if _, err := dst.js.KeyValue(context.Background(), "tally"); !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("bucket tally after a refused restore: %v, want none", err)
		}
		if got := dst.checkpointKeys(t); !slices.Equal(got, want) {
			t.Errorf("checkpoints after a refused restore: %v, want %v", got, want)
		}
	}

	for _, tt := range []struct {
		name    string
		yaml    func(url string) string // the target's configuration ("": the archive's)
		events  int                     // published on the target
		setup   func(t *testing.T, dst *node)
		archive func(t *testing.T) []byte // nil: the archive
		wantErr error
		want    []string // in the error
		kept    []string // checkpoints the setup wrote
	}{
		{
			name: "a partition's checkpoint exists", events: count,
			setup: func(t *testing.T, dst *node) {
				commitCheckpoint(t, dst, "tally.p1", checkpoint.Checkpoint{Seq: 3, Stream: "EV", Partitions: parts})
			},
			wantErr: backup.ErrNotEmpty, want: []string{"the checkpoint of partition 1 of pipeline tally exists"}, kept: []string{"tally.p1"},
		},
		{
			name: "a checkpoint of a partition the archive has not", events: count,
			setup: func(t *testing.T, dst *node) {
				commitCheckpoint(t, dst, "tally.p7", checkpoint.Checkpoint{Seq: 3, Stream: "EV", Partitions: 8})
			},
			wantErr: backup.ErrNotEmpty, want: []string{"the checkpoint of partition 7 of pipeline tally exists"}, kept: []string{"tally.p7"},
		},
		{
			name: "the pipeline's own checkpoint exists", events: count,
			setup: func(t *testing.T, dst *node) {
				commitCheckpoint(t, dst, "tally", checkpoint.Checkpoint{Seq: 3, Stream: "EV"})
			},
			wantErr: backup.ErrNotEmpty, want: []string{"the checkpoint of pipeline tally exists"}, kept: []string{"tally"},
		},
		{
			name: "source behind the highest checkpoint", events: int(highest) - 1,
			wantErr: backup.ErrSource, want: []string{fmt.Sprintf("ends at sequence %d, the archive needs %d", highest-1, highest)},
		},
		{
			name: "events after the lowest checkpoint gone", events: count + 10,
			setup: func(t *testing.T, dst *node) {
				st, err := dst.js.Stream(context.Background(), "EV")
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Purge(context.Background(), jetstream.WithPurgeSequence(lowest+2)); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: backup.ErrSource, want: []string{fmt.Sprintf("starts at sequence %d, its partition %d resumes at %d", lowest+2, lowestPart, lowest+1)},
		},
		{
			name: "configuration in 2 partitions", yaml: other(2), events: count,
			wantErr: backup.ErrPartitions, want: []string{"pipeline tally: the archive's checkpoints are of 3 partitions, the configuration runs it in 2 partitions: restored, it would refuse to start", "partitions: 3"},
		},
		{
			name: "configuration of one partition", yaml: func(url string) string { return fmt.Sprintf(tallyYAML, url) }, events: count,
			wantErr: backup.ErrPartitions, want: []string{"the archive's checkpoints are of 3 partitions, the configuration runs it in one partition"},
		},
		{
			name: "manifest without a partition's checkpoint", events: count,
			archive: func(t *testing.T) []byte {
				return rewriteManifest(t, archive, func(m *backup.Manifest) { m.Pipelines[0].Partitions[1].Checkpoint = nil })
			},
			wantErr: backup.ErrCorrupt, want: []string{`meta/checkpoints.jsonl holds key "tally.p1", of no pipeline, partition or projection of the manifest`},
		},
		{
			name: "manifest with one partition", events: count,
			archive: func(t *testing.T) []byte {
				return rewriteManifest(t, archive, func(m *backup.Manifest) { m.Pipelines[0].Partitions = m.Pipelines[0].Partitions[:1] })
			},
			wantErr: backup.ErrCorrupt, want: []string{"pipeline tally has one partition listed"},
		},
		{
			name: "manifest with partitions out of order", events: count,
			archive: func(t *testing.T) []byte {
				return rewriteManifest(t, archive, func(m *backup.Manifest) {
					p := m.Pipelines[0].Partitions
					p[0], p[1] = p[1], p[0]
				})
			},
			wantErr: backup.ErrCorrupt, want: []string{"partition 1 listed at position 0"},
		},
		{
			name: "manifest whose checkpoint records another count", events: count,
			archive: func(t *testing.T) []byte {
				return rewriteManifest(t, archive, func(m *backup.Manifest) { m.Pipelines[0].Partitions[2].Checkpoint.Partitions = 4 })
			},
			wantErr: backup.ErrCorrupt, want: []string{"the checkpoint of partition 2 records 4 partitions, the manifest lists 3"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst, psB := target(t, tt.yaml, tt.events)
			if tt.setup != nil {
				tt.setup(t, dst)
			}
			a := archive
			if tt.archive != nil {
				a = tt.archive(t)
			}
			_, err := backup.Restore(context.Background(), dst.js, bytes.NewReader(a), backup.RestoreOptions{Pipelines: psB})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("restore: %v, want %v", err, tt.wantErr)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("restore: %q, want it to say %q", err, want)
				}
			}
			t.Logf("refused: %v", err)
			untouched(t, dst, tt.kept...)
		})
	}

	t.Run("events before the lowest checkpoint gone", func(t *testing.T) {
		// The stream starts right after the lowest checkpoint: every partition resumes after
		// its own, and folds the events after it to the oracle's sums.
		dst, psB := target(t, nil, count)
		st, err := dst.js.Stream(context.Background(), "EV")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Purge(context.Background(), jetstream.WithPurgeSequence(lowest+1)); err != nil {
			t.Fatal(err)
		}
		res, err := backup.Restore(context.Background(), dst.js, bytes.NewReader(archive), backup.RestoreOptions{Pipelines: psB})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if len(res.Warnings) > 0 {
			t.Errorf("warnings: %q", res.Warnings)
		}
		if got := dst.partitionCheckpoints(t, "tally", parts); !slices.Equal(got, seqs) {
			t.Errorf("partition checkpoints after restore %v, want %v", got, seqs)
		}
		if got := dst.checkpointKeys(t); !slices.Equal(got, []string{"tally.p0", "tally.p1", "tally.p2"}) {
			t.Errorf("checkpoints after restore: %v, want the 3 partitions' only", got)
		}
		more := events(count, 300, keys)
		publishOn(t, dst.js, tallySubjects(count, 300, keys), more)
		if err := pipetest.Run(context.Background(), t, dst.js, psB, pipeline.Options{}); err != nil {
			t.Fatalf("run after restore: %v", err)
		}
		if got, want := states(dst.bucket(t, "tally")), tallyOracle(slices.Concat(payloads, more)); !maps.Equal(got, want) {
			t.Errorf("tally after the run = %v, want %v", got, want)
		}
	})

	t.Run("configuration in another count, archive without checkpoints", func(t *testing.T) {
		// A pipeline that never committed: nothing to refuse to start from; a warning.
		stripped := rewriteManifest(t, archive, func(m *backup.Manifest) {
			for i := range m.Pipelines[0].Partitions {
				m.Pipelines[0].Partitions[i].Checkpoint = nil
			}
		})
		stripped = rewrite(t, stripped, func(name string, b []byte) []byte {
			if name == "meta/checkpoints.jsonl" {
				return nil
			}
			return b
		})
		stripped = rewriteManifest(t, stripped, func(m *backup.Manifest) {
			for i, b := range m.Buckets {
				if b.Name == streams.CheckpointBucket {
					m.Buckets = slices.Delete(m.Buckets, i, i+1)
					break
				}
			}
			m.Files = slices.DeleteFunc(m.Files, func(f backup.File) bool { return f.Name == "meta/checkpoints.jsonl" })
		})
		dst, psB := target(t, other(2), count)
		res, err := backup.Restore(context.Background(), dst.js, bytes.NewReader(stripped), backup.RestoreOptions{Pipelines: psB})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		want := "pipeline tally: the archive holds it in 3 partitions, the configuration runs it in 2 partitions; the archive has no checkpoint of it"
		if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("warnings %q, want one saying %q", res.Warnings, want)
		}
	})

	t.Run("never committed", func(t *testing.T) {
		// Its partitions listed, without checkpoints: restored, it starts where source.start
		// says.
		fresh, freshPs := target(t, nil, 0)
		a, m := backupOf(t, fresh, freshPs)
		p := m.Pipelines[0]
		if p.Checkpoint != nil || len(p.Partitions) != parts || p.Partitions[2].Index != 2 || p.Partitions[2].Checkpoint != nil {
			t.Fatalf("backed up %+v: want %d partitions without checkpoints", p, parts)
		}
		dst, psB := target(t, nil, count)
		res, err := backup.Restore(context.Background(), dst.js, bytes.NewReader(a), backup.RestoreOptions{Pipelines: psB})
		if err != nil || len(res.Warnings) > 0 {
			t.Fatalf("restore: %v, warnings %q", err, res.Warnings)
		}
		if got := dst.checkpointKeys(t); len(got) > 0 {
			t.Errorf("checkpoints after restore: %v, want none", got)
		}
	})

	t.Run("backup with another count", func(t *testing.T) {
		with := func(p *pipeline.Pipeline, n int) []*pipeline.Pipeline {
			c := *p
			c.Config.Partitions = n
			return []*pipeline.Pipeline{&c}
		}
		one, onePs, _ := tallyNode(t, 100)
		for _, tt := range []struct {
			name string
			n    *node
			ps   []*pipeline.Pipeline
			want string
		}{
			{"2 partitions over 3's checkpoints", src, with(ps[0], 2), "backup tally: partition count differs: it ran in 3 partitions (the checkpoint tally.p0 says so), its configuration has 2"},
			{"one partition over 3's checkpoints", src, with(ps[0], 1), "backup tally: partition count differs: it ran in 3 partitions (the checkpoint tally.p0 exists), its configuration has one"},
			{"3 partitions over one's checkpoint", one, with(onePs[0], 3), "backup tally: partition count differs: it ran as one partition (the checkpoint tally exists), its configuration has 3"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				_, err := backup.Write(context.Background(), tt.n.js, backup.Options{Pipelines: tt.ps}, &buf)
				if !errors.Is(err, backup.ErrPartitions) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("backup: %v, want %v saying %q", err, backup.ErrPartitions, tt.want)
				}
			})
		}
	})
}

// rewriteManifest returns archive with its manifest changed by fn (its data files as they are).
func rewriteManifest(t *testing.T, archive []byte, fn func(*backup.Manifest)) []byte {
	t.Helper()
	return rewrite(t, archive, func(name string, b []byte) []byte {
		if name != backup.ManifestName {
			return b
		}
		var m backup.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		fn(&m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
}
