package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/backup"
	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// shopYAML is the shop workload's two pipelines (the carts fold and the stateful pipeline:
// window, dedupe, timeout) on the server at url, stopping as stop says, in small batches so
// that a run lasts a while.
func shopYAML(url, stop string) string {
	return fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n", url) + shoptest.Streams + "pipelines:" +
		fmt.Sprintf(shoptest.Pipeline, "all", stop, 20, 10000) + fmt.Sprintf(shoptest.Stateful, "all", stop, 20, 10000)
}

// node is a server with its JetStream context.
type node struct {
	srv *server.Server
	js  jetstream.JetStream
	dir string
}

func newNode(t *testing.T) *node {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	return &node{srv: s, js: js, dir: t.TempDir()}
}

// build builds yaml's pipelines on n (and creates their streams).
func (n *node) build(t *testing.T, name, yaml string) []*pipeline.Pipeline {
	t.Helper()
	return pipetest.Build(t, n.js, filepath.Join(n.dir, name+".yaml"), yaml, nil)
}

// value is a projection value as compared: the state and the headers of the protocol.
type value struct {
	State      string
	Seq, Clock string
}

// sameProjections checks that every projection of ps holds on b (restored, then run) the keys
// and values it holds on a (the run that never stopped), and returns how many keys it compared.
func sameProjections(t *testing.T, a, b *node, ps []*pipeline.Pipeline) int {
	t.Helper()
	compared := 0
	for _, p := range ps {
		for _, proj := range p.Projections {
			want, got := a.bucket(t, proj), b.bucket(t, proj)
			if len(want) == 0 {
				t.Errorf("projection %s: no key on A", proj)
			}
			for _, k := range slices.Sorted(maps.Keys(want)) {
				g, w := got[k], want[k]
				if p.Config.Time == "" {
					// Event time is the time the event was stored: B stored them later.
					g.Clock, w.Clock = "", ""
				}
				if g != w {
					t.Errorf("%s/%s after restore = %+v, the run that never stopped: %+v", proj, k, got[k], want[k])
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("%s/%s = %+v after restore, absent from the run that never stopped", proj, k, got[k])
				}
			}
			compared += len(want)
		}
	}
	return compared
}

// bucket reads every live key of bucket (none when it does not exist).
func (n *node) bucket(t *testing.T, name string) map[string]value {
	t.Helper()
	ctx := context.Background()
	out := map[string]value{}
	st, err := n.js.Stream(ctx, streams.KVStream(name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return out
	}
	if err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
	kv, err := n.js.KeyValue(ctx, name)
	if err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatalf("list %s: %v", name, err)
	}
	for k := range keys.Keys() {
		m, err := st.GetLastMsgForSubject(ctx, streams.KVSubject(name, k))
		if err != nil {
			t.Fatalf("get %s/%s: %v", name, k, err)
		}
		if state.ReadMeta(m.Header).Deleted {
			continue
		}
		out[k] = value{State: string(m.Data), Seq: m.Header.Get(state.HeaderSeq), Clock: m.Header.Get(state.HeaderTime)}
	}
	return out
}

// streamNames lists the streams of n.
func (n *node) streamNames(t *testing.T) []string {
	t.Helper()
	var out []string
	l := n.js.StreamNames(context.Background())
	for name := range l.Name() {
		out = append(out, name)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// publish publishes payloads to subject through a window; errors go to t.Errorf (it may run
// on a goroutine of its own).
func publish(t *testing.T, js jetstream.JetStream, subject string, payloads [][]byte) {
	w := streams.NewWindow(js, natstest.PublishWindow)
	for i, p := range payloads {
		if err := w.Publish(context.Background(), &nats.Msg{Subject: subject, Data: p}); err != nil {
			t.Errorf("publish %d: %v", i, err)
			return
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Errorf("publish: %v", err)
	}
}

// positions keeps the last checkpoint of each pipeline of a run.
type positions struct {
	mu  sync.Mutex
	seq map[string]uint64
}

func (p *positions) commit(c pipeline.CommitInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seq == nil {
		p.seq = map[string]uint64{}
	}
	p.seq[c.Pipeline] = max(p.seq[c.Pipeline], c.Seq)
}

// least returns the lowest checkpoint of pipelines.
func (p *positions) least(pipelines ...string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	least := uint64(0)
	for i, name := range pipelines {
		if i == 0 || p.seq[name] < least {
			least = p.seq[name]
		}
	}
	return least
}

// TestLiveBackupRestore backs up the shop pipelines while they run under load (events still
// being published), half way through their stream, and with keys certainly ahead of the
// checkpoints read (the backup lets the pipelines commit between the checkpoints' reads and
// the keys'). On a fresh server, with the source stream holding the same events at the same
// sequences, the archive is restored and the pipelines run to the end: every key of every
// projection is what the run that never stopped wrote (state, Jetfold-Seq and Jetfold-Time),
// and the carts are the oracle's over the whole stream.
func TestLiveBackupRestore(t *testing.T) {
	payloads := shoptest.Workload(7, 6000, 40)
	n := uint64(len(payloads))
	half := len(payloads) / 2

	// The run that never stops, on A.
	a := newNode(t)
	psA := a.build(t, "a", shopYAML(a.srv.ClientURL(), "follow"))
	names := []string{psA[0].Name, psA[1].Name}
	publish(t, a.js, shoptest.Subject, payloads[:half])
	var pos positions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		runDone <- pipeline.RunAll(ctx, psA, pipeline.Options{JS: a.js, OutputStreams: []string{"SHOP_DERIVED"}, OnCommit: pos.commit})
	}()
	natstest.Eventually(t, 2*time.Minute, "both pipelines a quarter through", func() bool { return pos.least(names...) >= n/4 })
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); publish(t, a.js, shoptest.Subject, payloads[half:]) }()

	var archive bytes.Buffer
	o := backup.WithAfterCheckpoints(backup.Options{Pipelines: psA, Jetfold: "test"}, func() {
		// The checkpoints are read: let both pipelines commit 100 events more before the keys
		// are, so that keys are ahead of them.
		at := map[string]uint64{}
		for _, name := range names {
			at[name] = pos.least(name)
		}
		natstest.Eventually(t, 2*time.Minute, "the pipelines past the checkpoints read", func() bool {
			for _, name := range names {
				if pos.least(name) < min(at[name]+100, n) {
					return false
				}
			}
			return true
		})
	})
	m, err := backup.Write(context.Background(), a.js, o, &archive)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	for _, p := range m.Pipelines {
		if p.Checkpoint == nil || p.Checkpoint.Seq >= n || p.KeysAhead == 0 || p.MaxKeySeq <= p.Checkpoint.Seq {
			t.Fatalf("pipeline %s backed up at %+v, %d keys ahead up to %d: want a checkpoint mid-stream and keys ahead of it", p.Name, p.Checkpoint, p.KeysAhead, p.MaxKeySeq)
		}
		t.Logf("pipeline %s: checkpoint %d, %d keys ahead (up to %d), projections %+v", p.Name, p.Checkpoint.Seq, p.KeysAhead, p.MaxKeySeq, p.Projections)
	}
	t.Logf("archive: %d bytes, %d files", archive.Len(), len(m.Files))

	<-pubDone
	natstest.Progress(t, "the run to the end of the stream", time.Minute, 5*time.Minute,
		func() uint64 { return pos.least(names...) }, func() bool { return pos.least(names...) >= n })
	cancel()
	if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("run on A: %v", err)
	}

	// B: a fresh server, the same events at the same sequences, the archive, the rest.
	b := newNode(t)
	psB := b.build(t, "b", shopYAML(b.srv.ClientURL(), "end"))
	publish(t, b.js, shoptest.Subject, payloads)
	res := restoreAll(t, b.js, archive.Bytes(), m, psB)
	for _, w := range res.Warnings {
		t.Logf("warning: %s", w)
	}
	// Right after the restore, the dedupe's entries have what was left of their TTL.
	ttlChecked := false
	for _, p := range m.Pipelines {
		for _, pr := range p.Projections {
			if pr.Name != "stateful_dedupe" || pr.Keys == 0 {
				continue
			}
			got := b.bucket(t, pr.Bucket)
			if len(got) != pr.Keys {
				t.Errorf("%s: %d keys restored, the archive holds %d", pr.Bucket, len(got), pr.Keys)
			}
			st, err := b.js.Stream(context.Background(), streams.KVStream(pr.Bucket))
			if err != nil {
				t.Fatal(err)
			}
			for k := range got {
				msg, err := st.GetLastMsgForSubject(context.Background(), streams.KVSubject(pr.Bucket, k))
				if err != nil {
					t.Fatal(err)
				}
				ttl, err := strconv.Atoi(msg.Header.Get(jetstream.MsgTTLHeader))
				if err != nil || ttl <= 0 || ttl > int((2*2*time.Minute+time.Hour)/time.Second) {
					t.Errorf("%s/%s restored with Nats-TTL %q", pr.Bucket, k, msg.Header.Get(jetstream.MsgTTLHeader))
				}
				ttlChecked = true
				break
			}
		}
	}
	if !ttlChecked {
		t.Error("no dedupe entry in the archive to check its TTL")
	}

	if err := pipetest.Run(context.Background(), t, b.js, psB, pipeline.Options{OutputStreams: []string{"SHOP_DERIVED"}}); err != nil {
		t.Fatalf("run on B: %v", err)
	}
	compared := sameProjections(t, a, b, psA)
	oracle := shoptest.Oracle(payloads)
	carts := b.bucket(t, "carts")
	for user, w := range oracle.Carts {
		var got shoptest.Cart
		if err := json.Unmarshal([]byte(carts[user].State), &got); err != nil {
			t.Errorf("carts/%s: %v", user, err)
			continue
		}
		if got.Items != w.Items || got.Orders != w.Orders || got.LastOrder != w.LastOrder || fmt.Sprintf("%.2f", got.Revenue) != fmt.Sprintf("%.2f", w.Revenue) {
			t.Errorf("carts/%s = %+v, oracle %+v", user, got, w)
		}
	}
	if len(carts) != len(oracle.Carts) {
		t.Errorf("carts holds %d keys, the oracle %d", len(carts), len(oracle.Carts))
	}
	t.Logf("%d keys compared", compared)
}

// tallyYAML sums `v` per key `k` of the events of stream EV.
const tallyYAML = `
nats: {url: %q}
http: {listen: none}
streams:
  - {name: EV, subjects: ["ev.>"]}
pipelines:
  - name: tally
    source: {stream: EV, start: all, stop: end}
    key: event.k
    batch: {size: 50, max_wait: 10ms}
    operators:
      - fold:
          projection: tally
          initial: {n: 0, sum: 0}
          on:
            "*": {n: state.n + 1, sum: state.sum + event.v}
`

// events returns the payloads of count events over keys keys, from the from-th.
func events(from, count, keys int) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		j := from + i
		out[i] = fmt.Appendf(nil, `{"type":"add","k":"k%d","v":%d}`, j%keys, j%7+1)
	}
	return out
}

// tallyOracle folds payloads as tally does.
func tallyOracle(payloads [][]byte) map[string]string {
	type sum struct{ N, Sum int }
	sums := map[string]sum{}
	for _, p := range payloads {
		var ev struct {
			K string
			V int
		}
		_ = json.Unmarshal(p, &ev)
		s := sums[ev.K]
		sums[ev.K] = sum{s.N + 1, s.Sum + ev.V}
	}
	out := map[string]string{}
	for k, s := range sums {
		out[k] = fmt.Sprintf(`{"n":%d,"sum":%d}`, s.N, s.Sum)
	}
	return out
}

// states returns the states of a bucket.
func states(vs map[string]value) map[string]string {
	out := map[string]string{}
	for k, v := range vs {
		out[k] = v.State
	}
	return out
}

// tallyNode is a node whose tally pipeline ran to the end of count events.
func tallyNode(t *testing.T, count int) (*node, []*pipeline.Pipeline, [][]byte) {
	n := newNode(t)
	ps := n.build(t, "tally", fmt.Sprintf(tallyYAML, n.srv.ClientURL()))
	payloads := events(0, count, 20)
	publish(t, n.js, "ev.x", payloads)
	if err := pipetest.Run(context.Background(), t, n.js, ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	return n, ps, payloads
}

// backupOf backs ps up from n.
func backupOf(t *testing.T, n *node, ps []*pipeline.Pipeline) ([]byte, backup.Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := backup.Write(context.Background(), n.js, backup.Options{Pipelines: ps}, &buf)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return buf.Bytes(), m
}

// TestRefusedArchive: an archive damaged in any way is refused before anything is written:
// the target server still has no stream at all.
func TestRefusedArchive(t *testing.T) {
	src, ps, _ := tallyNode(t, 500)
	good, m := backupOf(t, src, ps)
	if len(m.Files) < 2 {
		t.Fatalf("archive files %+v: want the tally bucket's and the checkpoint's", m.Files)
	}
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x55
		return b
	}
	tests := []struct {
		name    string
		archive []byte
		wantErr []error // any of them
		text    string  // in the error, when set
	}{
		{name: "empty", archive: nil, wantErr: []error{backup.ErrTruncated}},
		{name: "not gzip", archive: []byte("this is not an archive"), wantErr: []error{backup.ErrCorrupt}},
		{name: "truncated half way", archive: good[:len(good)/2], wantErr: []error{backup.ErrTruncated}, text: "archive truncated"},
		{name: "truncated trailer", archive: good[:len(good)-3], wantErr: []error{backup.ErrTruncated}, text: "archive truncated"},
		{name: "flipped byte early", archive: flip(len(good) / 4), wantErr: []error{backup.ErrCorrupt, backup.ErrTruncated}},
		{name: "flipped byte late", archive: flip(len(good) * 3 / 4), wantErr: []error{backup.ErrCorrupt, backup.ErrTruncated}},
		{name: "flipped gzip checksum", archive: flip(len(good) - 6), wantErr: []error{backup.ErrCorrupt}},
		{name: "data file changed", archive: rewrite(t, good, func(name string, b []byte) []byte {
			if name == m.Files[0].Name {
				i := bytes.Index(b, []byte(`\"n\":`)) + len(`\"n\":`)
				b[i]++ // a count of another value: still valid JSON
			}
			return b
		}), wantErr: []error{backup.ErrChecksum}, text: "checksum mismatch for " + m.Files[0].Name},
		{name: "data file dropped", archive: rewrite(t, good, func(name string, b []byte) []byte {
			if name == m.Files[0].Name {
				return nil
			}
			return b
		}), wantErr: []error{backup.ErrCorrupt}},
		{name: "no manifest", archive: rewrite(t, good, func(name string, b []byte) []byte {
			if name == backup.ManifestName {
				return nil
			}
			return b
		}), wantErr: []error{backup.ErrCorrupt}, text: "no manifest.json"},
		{name: "future format", archive: rewrite(t, good, func(name string, b []byte) []byte {
			if name == backup.ManifestName {
				return bytes.Replace(b, []byte(`"format": 1`), []byte(`"format": 99`), 1)
			}
			return b
		}), wantErr: []error{backup.ErrFormat}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := newNode(t)
			_, err := backup.Restore(context.Background(), dst.js, bytes.NewReader(tt.archive), backup.RestoreOptions{})
			if !slices.ContainsFunc(tt.wantErr, func(want error) bool { return errors.Is(err, want) }) {
				t.Fatalf("restore: %v, want %v", err, tt.wantErr)
			}
			if tt.text != "" && !bytes.Contains([]byte(err.Error()), []byte(tt.text)) {
				t.Errorf("restore: %q, want it to say %q", err, tt.text)
			}
			t.Logf("refused: %v", err)
			if got := dst.streamNames(t); len(got) > 0 {
				t.Errorf("streams after a refused restore: %v, want none", got)
			}
		})
	}
	// The same archive, read from a stream that cannot seek (spooled), restores.
	dst := newNode(t)
	dst.build(t, "tally", fmt.Sprintf(tallyYAML, dst.srv.ClientURL()))
	publish(t, dst.js, "ev.x", events(0, 500, 20))
	if _, err := backup.Restore(context.Background(), dst.js, onlyReader{bytes.NewReader(good)}, backup.RestoreOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatalf("restore from a reader: %v", err)
	}
	if got, want := states(dst.bucket(t, "tally")), states(src.bucket(t, "tally")); !maps.Equal(got, want) {
		t.Errorf("restored tally = %v, want %v", got, want)
	}
}

// TestReadsFromTheLeader: the archive is the same whether the keys are read in batches (a
// stream of one replica) or one at a time from the leader (as on a replicated stream).
func TestReadsFromTheLeader(t *testing.T) {
	src, ps, _ := tallyNode(t, 3000)
	if _, err := streams.EnsureBucket(context.Background(), src.js, "tally"); err != nil {
		t.Fatal(err)
	}
	// More keys than one batch holds, and one deleted.
	w := streams.NewWindow(src.js, natstest.PublishWindow)
	for i := range 700 {
		m := &nats.Msg{Subject: streams.KVSubject("tally", "x"+strconv.Itoa(i)), Data: []byte(`{"n":1,"sum":1}`), Header: nats.Header{state.HeaderSeq: {"1"}}}
		if err := w.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	kv, err := src.js.KeyValue(context.Background(), "tally")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(context.Background(), "x7"); err != nil {
		t.Fatal(err)
	}
	var batched, single bytes.Buffer
	mb, err := backup.Write(context.Background(), src.js, backup.Options{Pipelines: ps}, &batched)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := backup.Write(context.Background(), src.js, backup.WithoutBatchGets(backup.Options{Pipelines: ps}), &single)
	if err != nil {
		t.Fatal(err)
	}
	if got := mb.Pipelines[0].Projections[0].Keys; got != 20+699 {
		t.Errorf("%d keys backed up, want %d", got, 20+699)
	}
	if !slices.Equal(mb.Files, ms.Files) {
		t.Errorf("the files differ:\nbatched %+v\nsingle  %+v", mb.Files, ms.Files)
	}
}

// onlyReader hides every method of its reader but Read.
type onlyReader struct{ r *bytes.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestRefusedTarget: a restore into a system that holds part of the archive's state, or whose
// source stream is missing or behind, is refused with every problem named, and writes nothing.
func TestRefusedTarget(t *testing.T) {
	src, ps, payloads := tallyNode(t, 500)
	archive, _ := backupOf(t, src, ps)
	restore := func(n *node) error {
		_, err := backup.Restore(context.Background(), n.js, bytes.NewReader(archive), backup.RestoreOptions{})
		return err
	}

	t.Run("into the system backed up", func(t *testing.T) {
		err := restore(src)
		if !errors.Is(err, backup.ErrNotEmpty) {
			t.Fatalf("restore: %v, want %v", err, backup.ErrNotEmpty)
		}
		for _, want := range []string{"bucket tally (projection tally) holds keys", "the checkpoint of pipeline tally exists"} {
			if !bytes.Contains([]byte(err.Error()), []byte(want)) {
				t.Errorf("restore: %q, want it to say %q", err, want)
			}
		}
	})

	t.Run("a checkpoint exists", func(t *testing.T) {
		dst := newNode(t)
		dst.build(t, "tally", fmt.Sprintf(tallyYAML, dst.srv.ClientURL()))
		publish(t, dst.js, "ev.x", payloads)
		kv, err := streams.EnsureBucket(context.Background(), dst.js, streams.CheckpointBucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkpoint.NewStore(kv).Commit(context.Background(), "tally", checkpoint.Checkpoint{Seq: 3, Stream: "EV"}); err != nil {
			t.Fatal(err)
		}
		err = restore(dst)
		if !errors.Is(err, backup.ErrNotEmpty) || !bytes.Contains([]byte(err.Error()), []byte("checkpoint of pipeline tally exists")) {
			t.Fatalf("restore: %v, want %v naming the checkpoint", err, backup.ErrNotEmpty)
		}
		if got := dst.bucket(t, "tally"); len(got) > 0 {
			t.Errorf("tally holds %d keys after a refused restore", len(got))
		}
		if _, err := dst.js.KeyValue(context.Background(), "tally"); !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("bucket tally after a refused restore: %v, want it not created", err)
		}
	})

	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, n *node) // nil: no source stream
		want  string
	}{
		{name: "no source stream", want: "source stream not ready: stream EV of pipeline tally does not exist"},
		{name: "source stream behind", setup: func(t *testing.T, n *node) {
			publish(t, n.js, "ev.x", payloads[:100])
		}, want: "ends at sequence 100, the archive needs 500"},
		{name: "events after the checkpoint gone", setup: func(t *testing.T, n *node) {
			publish(t, n.js, "ev.x", slices.Concat(payloads, events(len(payloads), 10, 20)))
			st, err := n.js.Stream(context.Background(), "EV")
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Purge(context.Background(), jetstream.WithPurgeSequence(505)); err != nil {
				t.Fatal(err)
			}
		}, want: "starts at sequence 505, the pipeline resumes at 501"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := newNode(t)
			if tt.setup != nil {
				dst.build(t, "tally", fmt.Sprintf(tallyYAML, dst.srv.ClientURL()))
				tt.setup(t, dst)
			}
			err := restore(dst)
			if !errors.Is(err, backup.ErrSource) || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("restore: %v, want %v saying %q", err, backup.ErrSource, tt.want)
			}
			for _, name := range dst.streamNames(t) {
				if name != "EV" {
					t.Errorf("stream %s after a refused restore", name)
				}
			}
		})
	}

	t.Run("an empty bucket is no obstacle", func(t *testing.T) {
		dst := newNode(t)
		dst.build(t, "tally", fmt.Sprintf(tallyYAML, dst.srv.ClientURL()))
		publish(t, dst.js, "ev.x", payloads)
		if _, err := streams.EnsureBucket(context.Background(), dst.js, "tally"); err != nil {
			t.Fatal(err)
		}
		if err := restore(dst); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if got, want := states(dst.bucket(t, "tally")), tallyOracle(payloads); !maps.Equal(got, want) {
			t.Errorf("restored tally = %v, want %v", got, want)
		}
	})
}

// TestRebuiltProjection: a projection rebuilt into version 2 is backed up from tally_v2 (not
// from tally, which still holds version 1) with its pointer, and restored with both: readers
// and the pipeline go on with version 2.
func TestRebuiltProjection(t *testing.T) {
	src, ps, payloads := tallyNode(t, 400)
	leases, err := checkpoint.OpenLeases(context.Background(), src.js, checkpoint.LeaseOptions{TTL: time.Second, Holder: "rebuilder"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rebuild.Run(context.Background(), rebuild.Options{JS: src.js, Pipeline: src.build(t, "tally2", fmt.Sprintf(tallyYAML, src.srv.ClientURL()))[0], Leases: leases})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if res.Buckets["tally"] != "tally_v2" {
		t.Fatalf("rebuild: %+v, want tally in tally_v2", res)
	}
	if len(src.bucket(t, "tally")) == 0 {
		t.Fatal("version 1 was dropped: the test needs it to tell the versions apart")
	}
	archive, m := backupOf(t, src, ps)
	pr := m.Pipelines[0].Projections[0]
	if pr.Bucket != "tally_v2" || pr.Version != 2 || !pr.Pointer || pr.Keys != 20 {
		t.Fatalf("projection backed up as %+v, want tally_v2, version 2, its pointer, 20 keys", pr)
	}
	for _, b := range m.Buckets {
		if b.Name == "tally" {
			t.Errorf("version 1's bucket is in the archive")
		}
	}

	dst := newNode(t)
	psB := dst.build(t, "tally", fmt.Sprintf(tallyYAML, dst.srv.ClientURL()))
	publish(t, dst.js, "ev.x", payloads)
	if _, err := backup.Restore(context.Background(), dst.js, bytes.NewReader(archive), backup.RestoreOptions{Pipelines: psB}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	ptr, err := checkpoint.Current(context.Background(), dst.js, "tally")
	if err != nil || ptr.Bucket != "tally_v2" || ptr.Version != 2 {
		t.Fatalf("pointer after restore: %+v, %v; want tally_v2", ptr, err)
	}
	if _, err := dst.js.KeyValue(context.Background(), "tally"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("bucket tally after restore: %v, want none", err)
	}
	if v, err := state.Read(context.Background(), dst.js, "tally", "k3"); err != nil || string(v.Value) != tallyOracle(payloads)["k3"] {
		t.Errorf("tally/k3 read through the pointer: %s, %v; want %s", v.Value, err, tallyOracle(payloads)["k3"])
	}

	// The pipeline goes on with version 2.
	more := events(len(payloads), 300, 20)
	publish(t, dst.js, "ev.x", more)
	if err := pipetest.Run(context.Background(), t, dst.js, psB, pipeline.Options{}); err != nil {
		t.Fatalf("run after restore: %v", err)
	}
	all := append(slices.Clone(payloads), more...)
	if got, want := states(dst.bucket(t, "tally_v2")), tallyOracle(all); !maps.Equal(got, want) {
		t.Errorf("tally_v2 after the run = %v, want %v", got, want)
	}
	if _, err := dst.js.KeyValue(context.Background(), "tally"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("bucket tally after the run: %v, want none (the pipeline writes version 2)", err)
	}
}

// rewrite returns archive with each file's contents replaced by fn's (nil: left out),
// compressed again: an archive whose gzip and tar layers are sound.
func rewrite(t *testing.T, archive []byte, fn func(name string, b []byte) []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if b = fn(h.Name, b); b == nil {
			continue
		}
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// restoreAll restores archive, whose manifest is m, for ps, and checks that every key of the
// archive's projections was restored.
func restoreAll(t *testing.T, js jetstream.JetStream, archive []byte, m backup.Manifest, ps []*pipeline.Pipeline) backup.Result {
	t.Helper()
	res, err := backup.Restore(context.Background(), js, bytes.NewReader(archive), backup.RestoreOptions{Pipelines: ps})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	keys := 0
	for _, bk := range m.Buckets {
		if bk.Projection != "" {
			keys += bk.Keys
		}
	}
	if res.Keys != keys || keys == 0 {
		t.Errorf("restored %d keys, the archive holds %d", res.Keys, keys)
	}
	return res
}
