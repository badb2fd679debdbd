package timeout_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/decode"
)

// memStore is an operators.Store in memory that behaves as the pipeline's: a cache of the keys
// read and of the effects applied since the last commit, over what KV holds (committed, as
// JSON, as a restart reads it back). A key deleted in KV has no sequence, as in the real store.
type memStore struct {
	t         testing.TB
	shapes    map[string]*event.Shape
	committed map[string]stored
	cache     map[string]*event.Entry
	dirty     map[string]time.Duration // key -> the TTL of its last write
	gets      int
}

// stored is a committed value.
type stored struct {
	data []byte
	seq  uint64
	ttl  time.Duration
}

func newMemStore(t testing.TB, shapes map[string]*event.Shape) *memStore {
	s := &memStore{t: t, shapes: shapes, committed: map[string]stored{}}
	s.restart()
	return s
}

func pk(proj, key string) string { return proj + "\x00" + key }

// Get implements operators.Store.
func (s *memStore) Get(_ context.Context, proj, key string) (*event.Entry, error) {
	s.gets++
	if e, ok := s.cache[pk(proj, key)]; ok {
		return e, nil
	}
	e := &event.Entry{}
	if v, ok := s.committed[pk(proj, key)]; ok {
		m, err := decode.State(v.data)
		if err != nil {
			s.t.Fatalf("stored %s/%s: %v", proj, key, err)
		}
		e.State, e.Seq = event.NewRecord(s.shapes[proj], m), v.seq
	}
	e.Handle = e
	s.cache[pk(proj, key)] = e
	return e, nil
}

// Lookup implements operators.Store.
func (s *memStore) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

// Keys implements operators.Store.
func (s *memStore) Keys(_ context.Context, proj, prefix string) ([]string, error) {
	var out []string
	for k := range s.committed {
		if p, key, _ := strings.Cut(k, "\x00"); p == proj && strings.HasPrefix(key, prefix) {
			if e, ok := s.cache[k]; !ok || e.State != nil {
				out = append(out, key)
			}
		}
	}
	for k, e := range s.cache {
		if p, key, _ := strings.Cut(k, "\x00"); p == proj && strings.HasPrefix(key, prefix) && e.State != nil {
			if _, ok := s.committed[k]; !ok {
				out = append(out, key)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Scan implements operators.Store.
func (s *memStore) Scan(ctx context.Context, proj, prefix string, fn func(string, *event.Entry) bool) error {
	keys, _ := s.Keys(ctx, proj, prefix)
	for _, k := range keys {
		e, _ := s.Get(ctx, proj, k)
		if !fn(k, e) {
			return nil
		}
	}
	return nil
}

// apply applies a staged write, as the pipeline's store does: the key must have been read.
func (s *memStore) apply(w event.Write) {
	e, ok := s.cache[pk(w.Projection, w.Key)]
	if !ok || (w.Entry != nil && w.Entry != e) {
		s.t.Fatalf("write of %s/%s: not read through Get first", w.Projection, w.Key)
	}
	e.State, e.Seq, e.Time = w.State, w.Seq, w.Time
	if w.Delete {
		e.State = nil
	}
	s.dirty[pk(w.Projection, w.Key)] = w.TTL
}

// commit writes to KV the keys changed since the last commit for which land is true (a crash
// in the middle of a commit lands some of them), and forgets which changed.
func (s *memStore) commit(land func(key string) bool) {
	for _, k := range slices.Sorted(maps.Keys(s.dirty)) {
		if !land(k) {
			continue
		}
		e := s.cache[k]
		if e.State == nil {
			delete(s.committed, k)
			continue
		}
		data, err := e.State.AppendJSON(nil)
		if err != nil {
			s.t.Fatalf("encode %q: %v", k, err)
		}
		s.committed[k] = stored{data: data, seq: e.Seq, ttl: s.dirty[k]}
	}
	clear(s.dirty)
}

// restart forgets what is not committed, as a new process does.
func (s *memStore) restart() {
	s.cache, s.dirty = map[string]*event.Entry{}, map[string]time.Duration{}
}

// values returns the committed values of proj whose keys start with prefix, decoded, by key
// without the prefix.
func (s *memStore) values(proj, prefix string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for k, v := range s.committed {
		if p, key, _ := strings.Cut(k, "\x00"); p == proj && strings.HasPrefix(key, prefix) {
			m, err := decode.State(v.data)
			if err != nil {
				s.t.Fatal(err)
			}
			out[key[len(prefix):]] = m
		}
	}
	return out
}
