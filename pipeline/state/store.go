package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a projection value. The value itself is the state as a plain JSON object; what
// jetfold needs to stay exactly-once travels in these headers.
const (
	// HeaderSeq is the last source sequence applied to the key.
	HeaderSeq = "Jetfold-Seq"
	// HeaderTime is the newest event time applied to the key (RFC3339Nano).
	HeaderTime = "Jetfold-Time"
	// HeaderWriter names the process that wrote the value.
	HeaderWriter = "Jetfold-Writer"
)

// kvOperation is the header of KV delete and purge markers.
const kvOperation = "KV-Operation"

// ErrUnavailable wraps the failures to read state from NATS: they restart the pipeline from
// its checkpoint rather than dead-letter the event that needed the state.
var ErrUnavailable = errors.New("state unavailable")

// Options configures [New].
type Options struct {
	// MaxKeys bounds the cache (see [Store]).
	MaxKeys int
	// Shapes are the record shapes of the projections' states.
	Shapes map[string]*event.Shape
	// InPlace lets folds change a key's state in place (see event.Entry.Owned).
	InPlace bool
	// TableKeys bounds each replica of a projection the pipeline reads (see
	// [Store.Lookup]); 0 means MaxKeys.
	TableKeys int
	// Memory makes the store hold the pipeline's projections in memory only, from empty (a
	// replay of the source, see pipeline.Replay): Get never reads a bucket, every key starts
	// without state, and a key changed stays cached as long as nothing seals it. The
	// projections of other pipelines are still read from their buckets (Lookup).
	Memory bool
}

// Store is the state of one pipeline's projections: a bounded LRU cache of per-key states
// over their KV buckets. A miss reads the key's last value from its bucket (a direct get),
// unless the store knows the bucket holds no such key. Keys a batch changed stay in the cache
// until their commit ends (see [Store.Seal] and [Store.Committed]). A Store is used by the
// pipeline's processing goroutine only.
type Store struct {
	o       Options
	cache   *cache
	js      jetstream.JetStream
	buckets map[string]jetstream.Stream // the projections the pipeline writes
	names   map[string]string           // their buckets' names, where not the projection's
	tables  map[string]*table           // replicas of those it only reads (see Lookup)
	reads   int                         // reads on demand (by Get)

	miss  []*entry    // scratch of ReadAhead
	tmiss []tableMiss // scratch of ReadAhead
	seen  map[[2]string]struct{}
}

// New returns an empty store; [Store.Open] opens its projections.
func New(o Options) *Store {
	return &Store{o: o, cache: newCache(o.MaxKeys), buckets: map[string]jetstream.Stream{}, tables: map[string]*table{}}
}

// Open opens (creating when missing) bucket as the bucket of projection proj (its own name,
// or a version's: see checkpoint.BucketName). The store learns whether the bucket is empty:
// then it knows every key that exists is one it wrote, and a miss of another key needs no
// read.
func (s *Store) Open(ctx context.Context, js jetstream.JetStream, proj, bucket string, ttl bool) error {
	s.js = js
	if _, err := streams.EnsureBucket(ctx, js, bucket); err != nil {
		return err
	}
	if bucket != proj {
		if s.names == nil {
			s.names = map[string]string{}
		}
		s.names[proj] = bucket
	}
	st, err := js.Stream(ctx, streams.KVStream(bucket))
	if err != nil {
		return fmt.Errorf("projection %s: %w", proj, err)
	}
	if cfg := st.CachedInfo().Config; ttl && !cfg.AllowMsgTTL {
		// Writes with a TTL carry Nats-TTL, which the bucket's stream must allow.
		cfg.AllowMsgTTL = true
		if st, err = js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("projection %s: allow per-key TTLs: %w", proj, err)
		}
	}
	s.buckets[proj] = st
	if st.CachedInfo().State.Msgs == 0 {
		s.Track(proj)
	}
	return nil
}

// bucket returns the name of the bucket of proj.
func (s *Store) bucket(proj string) string {
	if b, ok := s.names[proj]; ok {
		return b
	}
	return proj
}

// Connect gives the store the JetStream context it reads with (Open does too).
func (s *Store) Connect(js jetstream.JetStream) { s.js = js }

// Track tells the store that the bucket of proj is empty: the keys that exist are those it
// writes (tests and benchmarks use it without a bucket).
func (s *Store) Track(proj string) { s.cache.track(proj) }

// ValueLimit returns the largest state the projections' buckets accept from a server whose
// payload limit is maxPayload: 1 KiB less for the headers, and no more than a bucket's own
// max_value_size allows (a state over it is a dead letter, not a write refused at every
// commit).
func (s *Store) ValueLimit(maxPayload int) int {
	sizes := make([]int32, 0, len(s.buckets))
	for _, st := range s.buckets {
		sizes = append(sizes, st.CachedInfo().Config.MaxMsgSize)
	}
	return ValueLimit(maxPayload, sizes...)
}

// ValueLimit returns the largest state that buckets whose max_value_size are maxValueSize
// (0 or less: none) accept from a server whose payload limit is maxPayload (see
// [Store.ValueLimit]).
func ValueLimit(maxPayload int, maxValueSize ...int32) int {
	limit := maxPayload - 1024
	for _, m := range maxValueSize {
		if m := int(m); m > 0 {
			limit = min(limit, m-min(1024, m/2))
		}
	}
	return limit
}

// Get implements [operators.Store] over the cache.
func (s *Store) Get(ctx context.Context, proj, key string) (*event.Entry, error) {
	if e, ok := s.cache.get(proj, key); ok {
		return &e.Entry, nil
	}
	e := newEntry(proj, s.bucket(proj), key)
	if !s.o.Memory && !s.cache.absent(proj, key) {
		s.reads++
		if err := s.load(ctx, e); err != nil {
			return nil, err
		}
	}
	s.cache.put(e)
	return &e.Entry, nil
}

// Scan implements [operators.Store]. It lists the keys of the bucket (every subject of the
// projection's stream: a cost that grows with the bucket), overlays the cached entries, and
// reads each matching key through the cache.
func (s *Store) Scan(ctx context.Context, proj, prefix string, fn func(key string, e *event.Entry) bool) error {
	keys, err := s.keys(ctx, proj, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		e, err := s.Get(ctx, proj, k)
		if err != nil {
			return err
		}
		if e != nil && e.State != nil && !fn(k, e) {
			return nil
		}
	}
	return nil
}

// Peek returns the cached entry of proj/key, without reading it or marking it used; false
// when the cache does not hold it. With Options.Memory, a key changed since the store was
// made is always cached.
func (s *Store) Peek(proj, key string) (*event.Entry, bool) {
	if e, ok := s.cache.byProj[proj][key]; ok {
		return &e.Entry, true
	}
	return nil, false
}

// Dirty returns the number of keys changed since the last Seal.
func (s *Store) Dirty() int { return len(s.cache.dirty) }

// Reads returns how many keys Get has read from KV so far.
func (s *Store) Reads() int { return s.reads }

// Apply moves a write an operator staged into the cache: the key's entry takes the new state
// and is dirty until the batch is sealed. The key must have been read through Get for this
// event (its entry is then cached, and w.Entry is what Get returned, or nil); a write of a
// key never read is [ErrUnread], an operator's bug, which fails the batch.
func (s *Store) Apply(w event.Write) error {
	var e *entry
	if w.Entry != nil {
		e, _ = w.Entry.Handle.(*entry) // the entry Get handed out: no second lookup
	}
	if e == nil {
		var ok bool
		if e, ok = s.cache.get(w.Projection, w.Key); !ok {
			return fmt.Errorf("write %s/%s: %w", w.Projection, w.Key, ErrUnread)
		}
	}
	// The fold made the state a copy of the entry's own, or changed the entry's own.
	e.State, e.Seq, e.Time, e.Owned, e.Roomy = w.State, w.Seq, w.Time, s.o.InPlace, w.Roomy
	e.ttl = w.TTL
	if w.Delete {
		e.State, e.Owned, e.Roomy = nil, false, false
	}
	s.cache.markDirty(e)
	return nil
}

// ErrUnread is returned by [Store.Apply] for a write of a key that was not read first: the
// store cannot know the revision its commit must expect.
var ErrUnread = errors.New("write of a key not read through Store.Get first")

// Write is a key's state as sealed for a commit. The entry may change while the commit runs
// (the next batch is processed meanwhile); the commit writes these values.
type Write struct {
	e *entry
	// State is the key's new state; nil deletes the key.
	State *event.Record
	Seq   uint64
	Time  time.Time
	// TTL, when set, makes the server remove the key that long after the write.
	TTL time.Duration
}

// Projection returns the projection w writes.
func (w Write) Projection() string { return w.e.proj }

// Key returns the key w writes.
func (w Write) Key() string { return w.e.key }

// Msg returns the KV message of w: the state as JSON with its headers, and the revision the
// key was read or last written at as the expected last subject sequence, so that a value
// written by anyone else since makes the write fail (fencing). writer names the commit.
func (w Write) Msg(writer string) (*nats.Msg, error) {
	h := nats.Header{}
	var data []byte
	if w.State == nil {
		h[kvOperation] = []string{"DEL"} // as jetstream.KeyValue.Delete writes it
	} else {
		var err error
		if data, err = w.State.AppendJSON(nil); err != nil {
			return nil, fmt.Errorf("encode %s/%s: %w", w.e.proj, w.e.key, err)
		}
	}
	if w.TTL > 0 {
		h[jetstream.MsgTTLHeader] = []string{strconv.FormatInt(int64(max(w.TTL.Round(time.Second), time.Second)/time.Second), 10)}
	}
	h[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(w.e.rev, 10)}
	h[HeaderSeq] = []string{strconv.FormatUint(w.Seq, 10)}
	if !w.Time.IsZero() {
		h[HeaderTime] = []string{w.Time.UTC().Format(time.RFC3339Nano)}
	}
	h[HeaderWriter] = []string{writer}
	return &nats.Msg{Subject: w.e.subj, Data: data, Header: h}, nil
}

// Written records the revision the key was written at, for the next write's fencing. It runs
// on the committing goroutine, while the processing goroutine does not touch the revision.
func (w Write) Written(rev uint64) { w.e.rev = rev }

// Seal appends the keys changed since the last seal to ws, as writes for a commit, so that
// the next batch can be processed (and change the same keys) while they are committed. Their
// entries stay in the cache until [Store.Committed].
func (s *Store) Seal(ws []Write) []Write {
	s.cache.seal(func(e *entry) bool {
		// A key deleted that its bucket never held, with no commit in flight that writes it
		// (whose goroutine sets rev), needs no write: a timer started and ended, a session
		// merged, within one batch.
		if e.State == nil && e.committing == 0 && e.rev == 0 {
			return false
		}
		ws = append(ws, Write{e: e, State: e.State, Seq: e.Seq, Time: e.Time, TTL: e.ttl})
		return true
	})
	return ws
}

// Committed is called, on the processing goroutine, when the commit of ws has ended: their
// entries become evictable again, unless the next batch changed them meanwhile.
func (s *Store) Committed(ws []Write) { s.cache.committed(ws) }

// Shrink evicts the least recently used evictable keys until the cache is within its bound. It
// runs between events, never while an event holds entries.
func (s *Store) Shrink() { s.cache.shrink() }

// Over tells whether the cache is over its bound with nothing left to evict: only a commit
// can make room.
func (s *Store) Over() bool { return s.cache.over() }

// Len returns the number of keys cached.
func (s *Store) Len() int { return s.cache.len() }

// MaxKeys returns the cache's bound.
func (s *Store) MaxKeys() int { return s.cache.max }

// Key is a key of a projection.
type Key struct{ Projection, Key string }

// readAheadWorkers is how many reads ahead are in flight at once.
const readAheadWorkers = 32

// ReadAhead reads, many at once, the committed state of those of keys that Get or Lookup
// would read from their buckets: the keys of the store's own projections that the cache lacks
// and whose bucket may hold them, at most room of them, into the cache; and the keys of other
// pipelines' projections that their replicas lack (see [Store.Lookup]), into the replicas. A
// failed read is left to Get or Lookup, which retry it. It returns the number of keys read.
func (s *Store) ReadAhead(ctx context.Context, keys []Key, room int) int {
	s.miss = s.miss[:0]
	s.tmiss = s.tmiss[:0]
	if s.seen == nil {
		s.seen = map[[2]string]struct{}{}
	}
	clear(s.seen)
	for _, k := range keys {
		pk := [2]string{k.Projection, k.Key}
		if _, dup := s.seen[pk]; dup {
			continue
		}
		s.seen[pk] = struct{}{}
		if !s.owns(k.Projection) {
			t, err := s.table(ctx, k.Projection)
			if err != nil || t.stream == nil {
				continue // left to Lookup
			}
			// As for the cache, no more than a quarter of the replica: a key read takes the
			// place of another, and must stay until its event is processed.
			if _, ok, complete := t.get(k.Key); !ok && !complete && t.ahead < max(t.limit/4, 1) {
				t.ahead++
				s.tmiss = append(s.tmiss, tableMiss{t, k.Key})
			}
			continue
		}
		if len(s.miss) >= room || s.cache.has(k.Projection, k.Key) || s.cache.absent(k.Projection, k.Key) {
			continue
		}
		s.miss = append(s.miss, newEntry(k.Projection, s.bucket(k.Projection), k.Key))
	}
	reads := len(s.miss) + len(s.tmiss)
	if reads == 0 {
		return 0
	}
	loaded := make([]bool, reads)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(reads, readAheadWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				switch {
				case i >= reads:
					return
				case i < len(s.miss):
					loaded[i] = s.load(ctx, s.miss[i]) == nil
				default:
					m := s.tmiss[i-len(s.miss)]
					_, err := m.t.fetch(ctx, m.key)
					loaded[i] = err == nil
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	for i, e := range s.miss {
		if loaded[i] && !s.cache.has(e.proj, e.key) {
			s.cache.put(e)
			n++
		}
	}
	for i, m := range s.tmiss {
		m.t.ahead = 0
		if loaded[len(s.miss)+i] {
			n++
		}
	}
	clear(s.miss)
	clear(s.tmiss)
	s.cache.shrink() // between events: no entry is in use
	return n
}

// tableMiss is a key a replica lacks, for ReadAhead.
type tableMiss struct {
	t   *table
	key string
}

// readRetryFor is about how long a KV read is retried while the connection is down.
const readRetryFor = 5 * time.Second

// disconnected tells whether err is the client's connection being down (reconnecting).
func disconnected(err error) bool {
	return errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// load reads e's committed value.
func (s *Store) load(ctx context.Context, e *entry) error {
	st, ok := s.buckets[e.proj]
	if !ok {
		return fmt.Errorf("%w: projection %s not opened", ErrUnavailable, e.proj)
	}
	msg, err := st.GetLastMsgForSubject(ctx, e.subj)
	for wait := 10 * time.Millisecond; disconnected(err) && wait < readRetryFor; wait *= 2 {
		// A read is safe to repeat: wait for the client to reconnect rather than restart
		// the pipeline and lose the batch in hand.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: read %s/%s: %v", ErrUnavailable, e.proj, e.key, err)
		case <-time.After(wait):
		}
		msg, err = st.GetLastMsgForSubject(ctx, e.subj)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: read %s/%s: %v", ErrUnavailable, e.proj, e.key, err)
	}
	e.rev = msg.Sequence
	meta := ReadMeta(msg.Header)
	if meta.Deleted {
		return nil
	}
	m, err := decode.State(msg.Data)
	if err != nil {
		// Not NATS failing but a value someone else wrote: reading it again cannot help, so
		// the event that needs it is a dead letter rather than a restart (ErrUnavailable).
		return fmt.Errorf("value of %s/%s is not a JSON object: %w", e.proj, e.key, err)
	}
	e.State, e.Seq, e.Time, e.Owned, e.Roomy = event.NewRecord(s.o.Shapes[e.proj], m), meta.Seq, meta.Time, s.o.InPlace, false
	return nil
}

// Meta is what the headers of a projection value say.
type Meta struct {
	// Deleted is set for a KV delete or purge marker.
	Deleted bool
	// Seq is Jetfold-Seq (0 for a value jetfold did not write).
	Seq uint64
	// Time is Jetfold-Time (zero when absent).
	Time time.Time
}

// ReadMeta reads the metadata of a projection value from its headers.
func ReadMeta(h nats.Header) Meta {
	var m Meta
	if op := h.Get(kvOperation); op == "DEL" || op == "PURGE" {
		m.Deleted = true
	}
	if v := h.Get(HeaderSeq); v != "" {
		m.Seq, _ = strconv.ParseUint(v, 10, 64)
	}
	if v := h.Get(HeaderTime); v != "" {
		m.Time, _ = time.Parse(time.RFC3339Nano, v)
	}
	return m
}

// Keys implements [operators.Store]: the keys that Scan would visit, without reading them.
func (s *Store) Keys(ctx context.Context, proj, prefix string) ([]string, error) {
	keys, err := s.keys(ctx, proj, prefix)
	if err != nil {
		return nil, err
	}
	out := keys[:0]
	for _, k := range keys {
		if e, ok := s.cache.get(proj, k); ok && e.State == nil {
			continue // deleted by an event not yet committed, or known absent
		}
		out = append(out, k)
	}
	return out, nil
}

// keys lists, sorted, the keys of proj that start with prefix: those of the bucket (its
// stream's subjects; deleted keys have none, being purged or removed by the server's
// markers, or read as deleted by Get) and those of the cache.
func (s *Store) keys(ctx context.Context, proj, prefix string) ([]string, error) {
	keys := map[string]struct{}{}
	if st, ok := s.buckets[proj]; ok {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(streams.KVSubject(s.bucket(proj), ">")))
		if err != nil {
			return nil, fmt.Errorf("%w: list %s: %v", ErrUnavailable, proj, err)
		}
		prefixLen := len(streams.KVSubject(s.bucket(proj), ""))
		for subj := range info.State.Subjects {
			k, err := streams.DecodeKey(subj[prefixLen:])
			if err == nil && strings.HasPrefix(k, prefix) {
				keys[k] = struct{}{}
			}
		}
	}
	for k := range s.cache.byProj[proj] {
		if strings.HasPrefix(k, prefix) {
			keys[k] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(keys)), nil
}
