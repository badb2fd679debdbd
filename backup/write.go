package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// Options configures [Write].
type Options struct {
	// Pipelines are the pipelines to back up (see pipeline.Build): their checkpoints and the
	// projections they write.
	Pipelines []*pipeline.Pipeline
	// Jetfold is the version of jetfold, recorded in the manifest ("" leaves it out).
	Jetfold string
	// Workers is how many reads are in flight at once (default 8): batches of keys on a
	// stream of one replica, single keys on others (see readKeys).
	Workers int

	// afterCheckpoints, when set, is called once every checkpoint is read and before any key
	// is (tests: to let the pipelines go on meanwhile).
	afterCheckpoints func()
	// noBatch reads every key alone from its stream's leader, as on a replicated stream
	// (tests).
	noBatch bool
}

// keyBatch is how many keys are read before their entries are written.
const keyBatch = 4096

// switchTries is how many times Write reads a pipeline's checkpoint and pointers again when a
// rebuild's switch came between them.
const switchTries = 5

// Write backs up the state of o.Pipelines, read through js, into an archive written to w (see
// the package documentation for what it holds, and why it is consistent while the pipelines
// run), and returns the archive's manifest. It returns [ErrChanged] when a bucket it must read
// was deleted meanwhile, and the errors of NATS and of w, with what failed; w then holds a
// partial archive, which Restore refuses.
func Write(ctx context.Context, js jetstream.JetStream, o Options, w io.Writer) (Manifest, error) {
	if len(o.Pipelines) == 0 {
		return Manifest{}, errors.New("backup: no pipeline to back up")
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	m := Manifest{Format: Format, Jetfold: o.Jetfold, Created: time.Now().UTC()}

	// 1. Every checkpoint (each partition's of a partitioned pipeline), with the pointers and
	//    the control entries, before any key.
	cps, cpsConfig, err := openBucket(ctx, js, streams.CheckpointBucket)
	if err != nil {
		return Manifest{}, err
	}
	ctl, ctlConfig, err := openBucket(ctx, js, control.Bucket)
	if err != nil {
		return Manifest{}, err
	}
	l := newLeader(js)
	var checkpoints, pointers, controls []Entry
	for _, p := range o.Pipelines {
		mp, cpEntries, ptrs, err := readCheckpoint(ctx, l, cps != nil, p)
		if err != nil {
			return Manifest{}, err
		}
		checkpoints = append(checkpoints, cpEntries...)
		pointers = append(pointers, ptrs...)
		if ctl != nil {
			e, err := getEntry(ctx, l, control.Bucket, p.Name)
			if err != nil {
				return Manifest{}, fmt.Errorf("backup %s: control entry: %w", p.Name, err)
			}
			if e != nil {
				var s control.State
				_ = json.Unmarshal([]byte(e.Value), &s)
				mp.Control, mp.Paused = true, s.Paused
				controls = append(controls, *e)
			}
		}
		m.Pipelines = append(m.Pipelines, mp)
	}
	if o.afterCheckpoints != nil {
		o.afterCheckpoints()
	}

	// 2. The keys of each projection's current bucket.
	a := newArchiveWriter(w, m.Created)
	for i := range m.Pipelines {
		mp := &m.Pipelines[i]
		// A key is ahead when past the checkpoint, or the highest of the partitions'.
		cps := mp.checkpoints()
		var at uint64
		for _, kc := range cps {
			at = max(at, kc.cp.Seq)
		}
		for j := range mp.Projections {
			proj := &mp.Projections[j]
			b, err := backupBucket(ctx, js, a, proj.Bucket, o, func(e Entry) {
				seq := state.ReadMeta(e.Headers).Seq
				mp.MaxKeySeq = max(mp.MaxKeySeq, seq)
				if len(cps) > 0 && seq > at {
					mp.KeysAhead++
				}
			})
			if err != nil {
				return Manifest{}, fmt.Errorf("backup %s: projection %s: %w", mp.Name, proj.Name, err)
			}
			if b == nil {
				continue // never written: no bucket
			}
			b.Projection = proj.Name
			proj.Keys = b.Keys
			m.Buckets = append(m.Buckets, *b)
		}
	}

	// 3. jetfold's own entries, in the order a restore writes them: control entries, pointers,
	//    checkpoints.
	if len(controls) > 0 {
		b, err := metaBucket(a, control.Bucket, ctlConfig, []string{controlFile}, controls)
		if err != nil {
			return Manifest{}, err
		}
		m.Buckets = append(m.Buckets, b)
	}
	if len(pointers)+len(checkpoints) > 0 {
		b, err := metaBucket(a, streams.CheckpointBucket, cpsConfig, []string{pointersFile, checkpointsFile}, pointers, checkpoints)
		if err != nil {
			return Manifest{}, err
		}
		m.Buckets = append(m.Buckets, b)
	}
	if err := a.close(&m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// readCheckpoint reads the checkpoint of p (each of its partitions' when it runs as
// `partitions: N`) and the pointers of its projections (cps: the checkpoint bucket exists),
// and decides the bucket of each projection: the one every checkpoint names, which its pointer
// must name too. It returns what the manifest says of p (without keys), the checkpoints'
// entries and the pointers' entries. It returns [ErrPartitions] when p's checkpoints were
// written with another number of partitions than p's configuration says.
func readCheckpoint(ctx context.Context, l leader, cps bool, p *pipeline.Pipeline) (Pipeline, []Entry, []Entry, error) {
	var differ string
	for range switchTries {
		mp := Pipeline{Name: p.Name, Stream: p.Config.Source.Stream}
		var cpEntries, ptrs []Entry
		if cps {
			var err error
			if cpEntries, err = readCheckpoints(ctx, l, p, &mp); err != nil {
				return mp, nil, nil, err
			}
		} else if n := p.Config.Partitions; n > 1 {
			for i := range n {
				mp.Partitions = append(mp.Partitions, Partition{Index: i}) // none committed
			}
		}
		for _, kc := range mp.checkpoints() {
			if kc.cp.Stream != "" {
				mp.Stream = kc.cp.Stream
				break
			}
		}
		differ = ""
		for _, proj := range p.Projections {
			pr := Projection{Name: proj, Bucket: proj, Version: 1}
			if cps {
				e, err := getEntry(ctx, l, streams.CheckpointBucket, checkpoint.PointerKey(proj))
				if err != nil {
					return mp, nil, nil, fmt.Errorf("backup %s: pointer of %s: %w", p.Name, proj, err)
				}
				if e != nil {
					var ptr checkpoint.Pointer
					if err := json.Unmarshal([]byte(e.Value), &ptr); err != nil || ptr.Bucket == "" {
						return mp, nil, nil, fmt.Errorf("backup %s: bad pointer of %s: %q", p.Name, proj, e.Value)
					}
					pr.Bucket, pr.Version, pr.Pointer = ptr.Bucket, ptr.Version, true
					ptrs = append(ptrs, *e)
				}
			}
			for _, kc := range mp.checkpoints() {
				if b := kc.cp.Bucket(proj); b != pr.Bucket {
					differ = fmt.Sprintf("projection %s: the checkpoint %s names bucket %s, the pointer %s", proj, kc.key, b, pr.Bucket)
					break
				}
			}
			if differ != "" {
				break
			}
			mp.Projections = append(mp.Projections, pr)
		}
		if differ != "" {
			continue // a switch came between the reads
		}
		if cps {
			e, err := getEntry(ctx, l, streams.CheckpointBucket, checkpoint.RebuildKey(p.Name))
			if err != nil {
				return mp, nil, nil, fmt.Errorf("backup %s: rebuild checkpoint: %w", p.Name, err)
			}
			if e != nil {
				var rb checkpoint.Checkpoint
				_ = json.Unmarshal([]byte(e.Value), &rb)
				if rb.Rebuild != nil {
					mp.RebuildSkipped = rb.Rebuild.Version
				}
			}
		}
		return mp, cpEntries, ptrs, nil
	}
	return Pipeline{}, nil, nil, fmt.Errorf("backup %s: %w: %s, after %d reads", p.Name, ErrChanged, differ, switchTries)
}

// readCheckpoints reads into mp the checkpoint of p, or, when p runs as `partitions: N`, the
// checkpoint of each of its partitions (checkpoint.PartitionKey), and returns their entries.
// Like a runner (see pipeline's checkPartitions), it refuses with [ErrPartitions] checkpoints
// written with another number of partitions: a partition's that records another count, the
// pipeline's own beside its partitions', or a partition's (0's) where p runs as one.
func readCheckpoints(ctx context.Context, l leader, p *pipeline.Pipeline, mp *Pipeline) ([]Entry, error) {
	n := p.Config.Partitions
	if n <= 1 {
		cp, e, err := loadCheckpoint(ctx, l, p.Name)
		if err != nil || e != nil {
			mp.Checkpoint = cp
			return entries(e), err
		}
		other, _, err := loadCheckpoint(ctx, l, checkpoint.PartitionKey(p.Name, 0))
		if err != nil {
			return nil, err
		}
		if other != nil {
			ran := "several partitions"
			if other.Partitions > 1 {
				ran = strconv.Itoa(other.Partitions) + " partitions"
			}
			return nil, fmt.Errorf("backup %s: %w: it ran in %s (the checkpoint %s exists), its configuration has one: back it up with the configuration it ran with", p.Name, ErrPartitions, ran, checkpoint.PartitionKey(p.Name, 0))
		}
		return nil, nil
	}
	var out []Entry
	for i := range n {
		key := checkpoint.PartitionKey(p.Name, i)
		cp, e, err := loadCheckpoint(ctx, l, key)
		if err != nil {
			return nil, err
		}
		if cp != nil && cp.Partitions != 0 && cp.Partitions != n {
			return nil, fmt.Errorf("backup %s: %w: it ran in %d partitions (the checkpoint %s says so), its configuration has %d: back it up with the configuration it ran with", p.Name, ErrPartitions, cp.Partitions, key, n)
		}
		mp.Partitions = append(mp.Partitions, Partition{Index: i, Checkpoint: cp})
		out = append(out, entries(e)...)
	}
	own, _, err := loadCheckpoint(ctx, l, p.Name)
	if err != nil {
		return nil, err
	}
	if own != nil {
		return nil, fmt.Errorf("backup %s: %w: it ran as one partition (the checkpoint %s exists), its configuration has %d: back it up with the configuration it ran with", p.Name, ErrPartitions, p.Name, n)
	}
	return out, nil
}

// loadCheckpoint reads the checkpoint under key from the leader: nil when there is none.
func loadCheckpoint(ctx context.Context, l leader, key string) (*checkpoint.Checkpoint, *Entry, error) {
	e, err := getEntry(ctx, l, streams.CheckpointBucket, key)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: checkpoint %s: %w", key, err)
	}
	if e == nil {
		return nil, nil, nil
	}
	var cp checkpoint.Checkpoint
	if err := json.Unmarshal([]byte(e.Value), &cp); err != nil {
		return nil, nil, fmt.Errorf("backup: checkpoint %s: %w", key, err)
	}
	cp.Revision = e.Revision
	return &cp, e, nil
}

// entries returns e as a list (none when nil).
func entries(e *Entry) []Entry {
	if e == nil {
		return nil
	}
	return []Entry{*e}
}

// openBucket returns the stream of bucket and its configuration, or nil when it does not exist.
func openBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.Stream, *jetstream.StreamConfig, error) {
	st, err := js.Stream(ctx, streams.KVStream(bucket))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	cfg := st.CachedInfo().Config
	return st, &cfg, nil
}

// getEntry reads the last value of key in bucket from its stream's leader; nil when it has
// none or was deleted.
func getEntry(ctx context.Context, l leader, bucket, key string) (*Entry, error) {
	m, err := l.lastMsg(ctx, streams.KVStream(bucket), streams.KVSubject(bucket, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	if state.ReadMeta(m.Header).Deleted {
		return nil, nil
	}
	e := entryOf(key, m)
	return &e, nil
}

// backupBucket writes every key of bucket to a as data files, calling seen with each entry,
// and returns the bucket's manifest entry (nil when the bucket does not exist). The keys are
// listed ([listKeys]), then read ([readKeys]): each value is the key's latest when read.
func backupBucket(ctx context.Context, js jetstream.JetStream, a *archiveWriter, bucket string, o Options, seen func(Entry)) (*Bucket, error) {
	st, cfg, err := openBucket(ctx, js, bucket)
	if err != nil || st == nil {
		return nil, err
	}
	b := &Bucket{Name: bucket, Config: cfg}
	l := newLeader(js)
	direct := cfg.Replicas <= 1 && len(st.CachedInfo().Alternates) <= 1 && !o.noBatch
	keys, err := listKeys(ctx, l, bucket)
	if err != nil {
		return nil, changed(ctx, js, bucket, err)
	}
	fs := newFileSet(a, "buckets/"+bucket+"/", "")
	for from := 0; from < len(keys); from += keyBatch {
		entries, err := readKeys(ctx, js, l, bucket, keys[from:min(from+keyBatch, len(keys))], o.Workers, direct)
		if err != nil {
			return nil, changed(ctx, js, bucket, err)
		}
		for _, e := range entries {
			if e == nil {
				continue // deleted: as absent (see the package documentation)
			}
			seen(*e)
			if err := fs.add(*e); err != nil {
				return nil, fmt.Errorf("bucket %s: %w", bucket, err)
			}
		}
	}
	if err := fs.flush(); err != nil {
		return nil, err
	}
	b.Keys, b.Files = fs.total, fs.names
	return b, nil
}

// changed returns err, or [ErrChanged] when bucket no longer exists.
func changed(ctx context.Context, js jetstream.JetStream, bucket string, err error) error {
	if _, serr := js.Stream(ctx, streams.KVStream(bucket)); errors.Is(serr, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bucket %s %w: deleted while it was read (a rebuild dropped it?): back up again", bucket, ErrChanged)
	}
	return err
}

// listKeys returns, sorted, the keys of bucket that have a message (a value or a delete
// marker), as its stream's leader lists them (see leader.subjects). Every key that holds a
// value from the call to the end is listed. (KeyValue.ListKeys, a consumer that ends at a
// count fixed when it starts, can miss keys whose values are replaced while it runs.)
func listKeys(ctx context.Context, l leader, bucket string) ([]string, error) {
	return listKeysWithin(ctx, l, bucket, ">")
}

// listKeysWithin is [listKeys] of the keys that match filter (a KV key filter: "x.*").
func listKeysWithin(ctx context.Context, l leader, bucket, filter string) ([]string, error) {
	subjects, err := l.subjects(ctx, streams.KVStream(bucket), streams.KVSubject(bucket, filter))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	prefix := streams.KVSubject(bucket, "")
	for i, s := range subjects {
		subjects[i] = strings.TrimPrefix(s, prefix)
	}
	return subjects, nil
}

// readKeys reads the last values of keys of bucket, workers at a time; an entry is nil where
// the key has no value (deleted since it was listed). With direct (the bucket's stream has one
// replica and no mirror answers for it: whoever answers a direct get is its leader), it reads
// them in batches of getBatch keys, each one request that the server answers with the last
// message of each (a batch direct get, several times faster); else one at a time from the
// leader (see leader.go).
func readKeys(ctx context.Context, js jetstream.JetStream, l leader, bucket string, keys []string, workers int, direct bool) ([]*Entry, error) {
	out := make([]*Entry, len(keys))
	size := 1
	if direct {
		size = getBatch
	}
	units := (len(keys) + size - 1) / size
	errs := make([]error, units)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, units) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= units || ctx.Err() != nil {
					return
				}
				from, to := i*size, min((i+1)*size, len(keys))
				if direct {
					errs[i] = readBatch(ctx, js, l, bucket, keys[from:to], out[from:to])
				} else {
					out[from], errs[i] = getEntry(ctx, l, bucket, keys[from])
				}
				if errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, ctx.Err()
}

// getBatch is how many keys one batch direct get asks for.
const getBatch = 256

// readBatch reads the last values of keys into out (nil: no value) with one batch direct get.
// A key the answer lacks (it is bounded in bytes), and every key when the server does not take
// batch gets (before nats-server 2.11), is read alone.
func readBatch(ctx context.Context, js jetstream.JetStream, l leader, bucket string, keys []string, out []*Entry) error {
	subjects := make([]string, len(keys))
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		subjects[i] = streams.KVSubject(bucket, k)
		index[subjects[i]] = i
	}
	got := make([]bool, len(keys))
	if msgs, err := jetstreamext.GetLastMsgsFor(ctx, js, streams.KVStream(bucket), subjects); err == nil {
		for m, err := range msgs {
			if err != nil {
				break // none of them has a message, or no batch gets: one at a time below
			}
			if i, ok := index[m.Subject]; ok {
				got[i] = true
				if !state.ReadMeta(m.Header).Deleted {
					e := entryOf(keys[i], m)
					out[i] = &e
				}
			}
		}
	}
	for i, k := range keys {
		if got[i] {
			continue
		}
		e, err := getEntry(ctx, l, bucket, k)
		if err != nil {
			return err
		}
		out[i] = e
	}
	return nil
}

// metaBucket writes entries of one of jetfold's buckets as the data files names (one per
// list of entries; an empty list makes no file) and returns its manifest entry.
func metaBucket(a *archiveWriter, bucket string, cfg *jetstream.StreamConfig, names []string, lists ...[]Entry) (Bucket, error) {
	b := Bucket{Name: bucket, Config: cfg}
	for i, entries := range lists {
		fs := newFileSet(a, "", names[i])
		for _, e := range entries {
			if err := fs.add(e); err != nil {
				return b, fmt.Errorf("bucket %s: %w", bucket, err)
			}
		}
		if err := fs.flush(); err != nil {
			return b, err
		}
		b.Keys += fs.total
		b.Files = append(b.Files, fs.names...)
	}
	return b, nil
}
