package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/streams"
)

// Lookup implements [operators.Store]. A projection the pipeline writes is read through Get:
// its latest state, the batch in hand's included. Another pipeline's projection is read from
// a replica this store keeps of it: a watch of its bucket delivers every key's value, then
// every change committed since, so a lookup costs no round trip. Until the watch has
// delivered the whole bucket, or when the bucket holds more keys than the replica's bound
// (Options.TableKeys), a key the replica lacks is read from the bucket (a direct get). The
// value is the committed one as this process last saw it: a commit of the other pipeline
// reaches the replica after the watch's delivery delay. The replica follows the projection's
// current version: when a rebuild switches it (checkpoint.Current), the next lookup starts a
// replica of the new bucket. The returned map must not be changed.
func (s *Store) Lookup(ctx context.Context, proj, key string) (map[string]any, error) {
	if s.owns(proj) {
		e, err := s.Get(ctx, proj, key)
		if err != nil {
			return nil, err
		}
		return e.State.Map(), nil
	}
	t, err := s.table(ctx, proj)
	if err != nil {
		return nil, err
	}
	if v, ok, complete := t.get(key); ok || complete {
		return v, nil
	}
	s.reads++
	return t.fetch(ctx, key)
}

// owns tells whether proj is one of the pipeline's own projections, read through Get (a
// bucket it opened, or a state shape, in memory).
func (s *Store) owns(proj string) bool {
	_, ok := s.buckets[proj]
	return ok || s.o.Shapes[proj] != nil
}

// table returns the replica of proj, another pipeline's projection, started when missing.
func (s *Store) table(ctx context.Context, proj string) (*table, error) {
	t := s.tables[proj]
	if t != nil && t.switched.Load() {
		t.stop() // a rebuild switched the projection to another bucket: replicate that one
		t = nil
	}
	if t == nil {
		t = &table{proj: proj, vals: map[string]tableValue{}, limit: s.o.TableKeys}
		if t.limit <= 0 {
			t.limit = max(s.o.MaxKeys, 1)
		}
		s.tables[proj] = t
	}
	if s.js == nil {
		return nil, fmt.Errorf("%w: lookup %s: not connected", ErrUnavailable, proj)
	}
	if err := t.watch(ctx, s.js); err != nil {
		return nil, err
	}
	return t, nil
}

// Close stops the watches of the store's replicas.
func (s *Store) Close() {
	for _, t := range s.tables {
		t.stop()
	}
}

// table is a replica of a projection another pipeline writes (see [Store.Lookup]). Its
// watch runs on a goroutine of its own, hence the lock.
type table struct {
	proj  string
	limit int
	ahead int // keys ReadAhead is reading into it; used by the processing goroutine only

	mu       sync.Mutex
	vals     map[string]tableValue
	complete bool // the watch delivered the whole bucket and nothing was evicted since
	want     int  // keys the bucket had when the watch started

	bucket   string               // the bucket of its current version
	versions jetstream.KeyWatcher // of the projection's pointer (checkpoint.Current)
	switched atomic.Bool          // the pointer moved to another bucket than bucket
	stream   jetstream.Stream     // the bucket's stream, for direct gets
	watcher  jetstream.KeyWatcher // nil until the bucket exists
	retry    time.Time            // when to look for a missing bucket again
}

// tableValue is one key of a replica: its value (nil: deleted) at a revision.
type tableValue struct {
	val map[string]any
	rev uint64
}

// get returns the replica's value of key, whether it has the key, and whether it is complete
// (a key it lacks is then absent from the bucket).
func (t *table) get(key string) (map[string]any, bool, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.vals[key]
	return v.val, ok, t.complete
}

// put records the value of key at rev, unless the replica has a later one.
func (t *table) put(key string, val map[string]any, rev uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.vals[key]; ok && old.rev >= rev {
		return
	}
	if _, ok := t.vals[key]; !ok && len(t.vals) >= t.limit {
		for k := range t.vals { // evict one key at random: the replica is no longer whole
			delete(t.vals, k)
			break
		}
		t.complete = false
	}
	t.vals[key] = tableValue{val: val, rev: rev}
}

// watch starts the replica's watch, once the bucket exists (looked for at most once a second).
func (t *table) watch(ctx context.Context, js jetstream.JetStream) error {
	if t.watcher != nil || time.Now().Before(t.retry) {
		return nil
	}
	t.retry = time.Now().Add(time.Second)
	// The current version of the projection, as a rebuild last switched it (a switch after
	// this start is followed at the pipeline's next start).
	bucket, err := checkpoint.CurrentBucket(ctx, js, t.proj)
	if err != nil {
		return fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, t.proj, err)
	}
	t.bucket = bucket
	if err := t.watchVersion(ctx, js); err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil // nothing written there yet: every key is absent
	}
	if err != nil {
		return fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, t.proj, err)
	}
	if t.stream, err = js.Stream(ctx, streams.KVStream(bucket)); err != nil {
		return fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, t.proj, err)
	}
	// The keys the bucket had as the watch starts: until that many are delivered, the
	// replica is not complete, even after the watch's "initial values done" mark (which,
	// while the bucket is written, can come before every key has).
	t.mu.Lock()
	t.want = int(t.stream.CachedInfo().State.NumSubjects)
	t.mu.Unlock()
	// The watch outlives ctx (a batch's): it ends with the store (Close). A bucket with more
	// keys than the replica holds is not delivered whole (only to be evicted at random): the
	// replica then holds the keys read, kept current by the changes made after the start.
	var opts []jetstream.WatchOpt
	if t.want > t.limit {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	w, err := kv.WatchAll(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return fmt.Errorf("%w: watch %s: %v", ErrUnavailable, t.proj, err)
	}
	t.watcher = w
	go t.follow(w)
	return nil
}

// follow applies the watch's updates until it stops.
func (t *table) follow(w jetstream.KeyWatcher) {
	for e := range w.Updates() {
		if e == nil { // the bucket's values up to now are all delivered
			t.mu.Lock()
			t.complete = len(t.vals) >= t.want && len(t.vals) < t.limit
			t.mu.Unlock()
			continue
		}
		key, err := streams.DecodeKey(e.Key())
		if err != nil {
			continue // not a key jetfold wrote
		}
		var val map[string]any
		if e.Operation() == jetstream.KeyValuePut {
			if val, err = decode.State(e.Value()); err != nil {
				continue // not a JSON object: not a state
			}
		}
		t.put(key, val, e.Revision())
	}
}

// fetch reads key from the bucket and records it.
func (t *table) fetch(ctx context.Context, key string) (map[string]any, error) {
	if t.stream == nil {
		return nil, nil // no bucket yet
	}
	msg, err := t.stream.GetLastMsgForSubject(ctx, streams.KVSubject(t.bucket, streams.EncodeKey(key)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Absent, as of after the watch started: a value written since comes through it.
		t.put(key, nil, 0)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: lookup %s/%s: %v", ErrUnavailable, t.proj, key, err)
	}
	var val map[string]any
	if !ReadMeta(msg.Header).Deleted {
		if val, err = decode.State(msg.Data); err != nil {
			return nil, fmt.Errorf("value of %s/%s is not a JSON object: %w", t.proj, key, err) // a dead letter, as in Store.load
		}
	}
	t.put(key, val, msg.Sequence)
	return val, nil
}

func (t *table) stop() {
	if t.watcher != nil {
		_ = t.watcher.Stop()
	}
	if t.versions != nil {
		_ = t.versions.Stop()
	}
}

// watchVersion watches the projection's pointer (once), and sets switched when it names
// another bucket than the replica's.
func (t *table) watchVersion(ctx context.Context, js jetstream.JetStream) error {
	if t.versions != nil {
		return nil
	}
	kv, err := streams.EnsureBucket(ctx, js, streams.CheckpointBucket)
	if err != nil {
		return fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, t.proj, err)
	}
	w, err := kv.Watch(context.WithoutCancel(ctx), checkpoint.PointerKey(t.proj))
	if err != nil {
		return fmt.Errorf("%w: watch the version of %s: %v", ErrUnavailable, t.proj, err)
	}
	t.versions = w
	bucket := t.bucket
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var p checkpoint.Pointer
			if json.Unmarshal(e.Value(), &p) == nil && p.Bucket != "" && p.Bucket != bucket {
				t.switched.Store(true)
			}
		}
	}()
	return nil
}
