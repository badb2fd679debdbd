package state

import (
	"context"
	"errors"
	"testing"

	"github.com/jetfold/jetfold/operators/event"
)

// TestCacheBounds: the store holds at most MaxKeys keys, evicting the least recently used;
// keys a batch changed stay until their commit ends; a tracked (empty) bucket needs no read
// for a key it never wrote.
func TestCacheBounds(t *testing.T) {
	shape := event.NewShape("n")
	s := New(Options{MaxKeys: 2, Shapes: map[string]*event.Shape{"p": shape}, InPlace: true})
	s.Track("p")
	ctx := context.Background()
	get := func(key string) *event.Entry {
		t.Helper()
		e, err := s.Get(ctx, "p", key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return e
	}
	write := func(key string, seq uint64) {
		e := get(key)
		if err := s.Apply(event.Write{Projection: "p", Key: key, State: event.NewRecord(shape, map[string]any{"n": float64(seq)}), Seq: seq, Entry: e}); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 1)
	write("b", 2)
	write("c", 3)
	s.Shrink()
	if s.Len() != 3 || !s.Over() {
		t.Fatalf("len %d, over %t: changed keys are never evicted", s.Len(), s.Over())
	}
	ws := s.Seal(nil)
	if len(ws) != 3 {
		t.Fatalf("sealed %d writes, want 3", len(ws))
	}
	for i, w := range ws {
		if w.Projection() != "p" || w.Seq != uint64(i+1) {
			t.Errorf("write %d: %s/%s seq %d", i, w.Projection(), w.Key(), w.Seq)
		}
		m, err := w.Msg("test")
		if err != nil || m.Header.Get(HeaderSeq) == "" || m.Header.Get("Nats-Expected-Last-Subject-Sequence") != "0" {
			t.Errorf("write %d: message %v, %v", i, m, err)
		}
	}
	s.Shrink()
	if s.Len() != 3 {
		t.Fatalf("len %d: keys in a commit are never evicted", s.Len())
	}
	s.Committed(ws)
	if s.Len() != 2 || s.Over() {
		t.Fatalf("len %d after the commit, want the bound 2", s.Len())
	}
	if got := get("c").State.Map()["n"]; got != 3.0 {
		t.Errorf("c = %v, want the most recent key kept", got)
	}
	if s.Reads() != 0 {
		t.Errorf("%d reads from KV, want none: the bucket was empty", s.Reads())
	}
}

// TestApplyFindsEntry: a write carrying the entry Get handed out, or none (a key an earlier
// operator of the event read), reaches the key; a write of a key never read is ErrUnread.
func TestApplyFindsEntry(t *testing.T) {
	shape := event.NewShape("n")
	s := New(Options{MaxKeys: 10, Shapes: map[string]*event.Shape{"p": shape}})
	s.Track("p")
	ctx := context.Background()
	e, err := s.Get(ctx, "p", "a")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		key   string
		entry *event.Entry
		err   error
	}{
		{"with its entry", "a", e, nil},
		{"without, read before", "a", nil, nil},
		{"a foreign entry", "a", &event.Entry{}, nil},
		{"never read", "b", nil, ErrUnread},
	}
	for i, tt := range tests {
		err := s.Apply(event.Write{Projection: "p", Key: tt.key, State: event.NewRecord(shape, map[string]any{"n": float64(i)}), Seq: uint64(i + 1), Entry: tt.entry})
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.err)
			continue
		}
		if got, _ := s.Get(ctx, "p", tt.key); err == nil && got.Seq != uint64(i+1) {
			t.Errorf("%s: the key has seq %d, want %d", tt.name, got.Seq, i+1)
		}
	}
}

// TestTablePut: a replica keeps the latest revision of a key whichever arrives first (the
// watch or a direct get), and is no longer complete once it evicts a key.
func TestTablePut(t *testing.T) {
	tb := &table{proj: "u", vals: map[string]tableValue{}, limit: 2, complete: true}
	tb.put("a", map[string]any{"v": 2.0}, 2)
	tb.put("a", map[string]any{"v": 1.0}, 1) // an older read, arriving late
	if v, ok, _ := tb.get("a"); !ok || v["v"] != 2.0 {
		t.Errorf("a = %v, want revision 2's value", v)
	}
	tb.put("a", nil, 3) // deleted
	if v, ok, _ := tb.get("a"); !ok || v != nil {
		t.Errorf("a = %v, want deleted", v)
	}
	tb.put("b", map[string]any{}, 4)
	if _, _, complete := tb.get("x"); !complete {
		t.Error("incomplete before any eviction")
	}
	tb.put("c", map[string]any{}, 5)
	if _, _, complete := tb.get("x"); complete || len(tb.vals) != 2 {
		t.Errorf("after an eviction: complete %v, %d keys", complete, len(tb.vals))
	}
}

// TestSealSkipsNothingToWrite: a key its bucket never held, written and deleted within one
// batch, needs no write; deleted while the commit that creates it is in flight, or after it
// landed, it does.
func TestSealSkipsNothingToWrite(t *testing.T) {
	shape := event.NewShape("n")
	s := New(Options{MaxKeys: 10, Shapes: map[string]*event.Shape{"p": shape}})
	s.Track("p")
	ctx := context.Background()
	apply := func(key string, del bool) {
		t.Helper()
		e, err := s.Get(ctx, "p", key)
		if err != nil {
			t.Fatal(err)
		}
		w := event.Write{Projection: "p", Key: key, Seq: 1, Entry: e, Delete: del}
		if !del {
			w.State = event.NewRecord(shape, map[string]any{"n": 1.0})
		}
		if err := s.Apply(w); err != nil {
			t.Fatal(err)
		}
	}
	apply("a", false)
	apply("a", true)
	if ws := s.Seal(nil); len(ws) != 0 {
		t.Fatalf("sealed %d writes for a key created and deleted in one batch", len(ws))
	}
	apply("b", false)
	first := s.Seal(nil) // b's creation, in flight
	apply("b", true)
	if ws := s.Seal(nil); len(ws) != 1 || ws[0].State != nil {
		t.Fatalf("sealed %v, want b's deletion while its creation is in flight", ws)
	}
	first[0].Written(7)
	s.Committed(first)
	apply("c", false)
	ws := s.Seal(nil)
	ws[0].Written(8)
	s.Committed(ws)
	apply("c", true)
	if ws := s.Seal(nil); len(ws) != 1 || ws[0].State != nil {
		t.Fatalf("sealed %v, want c's deletion after its creation landed", ws)
	}
}
