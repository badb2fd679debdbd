// Package opstest is an in-memory operators.Store and a driver that runs an operator as the
// pipeline does, for operator tests.
package opstest

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

// Store is an operators.Store in memory that behaves as the pipeline's: a cache of the keys
// read and of the effects applied since the last commit, over what KV holds (committed, as
// JSON, as a restart reads it back). A key deleted in KV has no sequence, as in the real store.
type Store struct {
	t      testing.TB
	shapes map[string]*event.Shape
	// Committed is what KV holds, by [Key].
	Committed map[string]Stored
	// Cache holds the entries read and written since the last restart, by [Key].
	Cache map[string]*event.Entry
	dirty map[string]time.Duration // key -> the TTL of its last write
	// Gets counts the calls of Get.
	Gets int
}

// Stored is a committed value.
type Stored struct {
	Data []byte
	Seq  uint64
	TTL  time.Duration
}

// NewStore returns an empty store of the projections of shapes (by name).
func NewStore(t testing.TB, shapes map[string]*event.Shape) *Store {
	s := &Store{t: t, shapes: shapes, Committed: map[string]Stored{}}
	s.Restart()
	return s
}

// Key is the key of proj's key in [Store.Committed] and [Store.Cache].
func Key(proj, key string) string { return proj + "\x00" + key }

// Get implements operators.Store.
func (s *Store) Get(_ context.Context, proj, key string) (*event.Entry, error) {
	s.Gets++
	if e, ok := s.Cache[Key(proj, key)]; ok {
		return e, nil
	}
	e := &event.Entry{}
	if v, ok := s.Committed[Key(proj, key)]; ok {
		m, err := decode.State(v.Data)
		if err != nil {
			s.t.Fatalf("stored %s/%s: %v", proj, key, err)
		}
		e.State, e.Seq = event.NewRecord(s.shapes[proj], m), v.Seq
	}
	e.Handle = e
	s.Cache[Key(proj, key)] = e
	return e, nil
}

// Lookup implements operators.Store: nothing is found.
func (s *Store) Lookup(context.Context, string, string) (map[string]any, error) { return nil, nil }

// Keys implements operators.Store.
func (s *Store) Keys(_ context.Context, proj, prefix string) ([]string, error) {
	var out []string
	for k := range s.Committed {
		if p, key, _ := strings.Cut(k, "\x00"); p == proj && strings.HasPrefix(key, prefix) {
			if e, ok := s.Cache[k]; !ok || e.State != nil {
				out = append(out, key)
			}
		}
	}
	for k, e := range s.Cache {
		if p, key, _ := strings.Cut(k, "\x00"); p == proj && strings.HasPrefix(key, prefix) && e.State != nil {
			if _, ok := s.Committed[k]; !ok {
				out = append(out, key)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Scan implements operators.Store.
func (s *Store) Scan(ctx context.Context, proj, prefix string, fn func(string, *event.Entry) bool) error {
	keys, _ := s.Keys(ctx, proj, prefix)
	for _, k := range keys {
		e, _ := s.Get(ctx, proj, k)
		if !fn(k, e) {
			return nil
		}
	}
	return nil
}

// Apply applies a staged write, as the pipeline's store does: the key must have been read.
func (s *Store) Apply(w event.Write) {
	e, ok := s.Cache[Key(w.Projection, w.Key)]
	if !ok || (w.Entry != nil && w.Entry != e) {
		s.t.Fatalf("write of %s/%s: not read through Get first", w.Projection, w.Key)
	}
	e.State, e.Seq, e.Time = w.State, w.Seq, w.Time
	if w.Delete {
		e.State = nil
	}
	s.dirty[Key(w.Projection, w.Key)] = w.TTL
}

// Commit writes to KV the keys changed since the last commit for which land is true (a crash
// in the middle of a commit lands some of them), and forgets which changed.
func (s *Store) Commit(land func(key string) bool) {
	for _, k := range slices.Sorted(maps.Keys(s.dirty)) {
		if !land(k) {
			continue
		}
		e := s.Cache[k]
		if e.State == nil {
			delete(s.Committed, k)
			continue
		}
		data, err := e.State.AppendJSON(nil)
		if err != nil {
			s.t.Fatalf("encode %q: %v", k, err)
		}
		s.Committed[k] = Stored{Data: data, Seq: e.Seq, TTL: s.dirty[k]}
	}
	clear(s.dirty)
}

// Restart forgets what is not committed, as a new process does.
func (s *Store) Restart() {
	s.Cache, s.dirty = map[string]*event.Entry{}, map[string]time.Duration{}
}

// Values returns the committed values of proj whose keys start with prefix, decoded, by key
// without the prefix.
func (s *Store) Values(proj, prefix string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for k, v := range s.Committed {
		if p, key, _ := strings.Cut(k, "\x00"); p == proj && strings.HasPrefix(key, prefix) {
			m, err := decode.State(v.Data)
			if err != nil {
				s.t.Fatal(err)
			}
			out[key[len(prefix):]] = m
		}
	}
	return out
}
