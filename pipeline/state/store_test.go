package state

import (
	"context"
	"testing"

	"github.com/jetfold/jetfold/operators"
)

// TestCacheBounds: the store holds at most MaxKeys keys, evicting the least recently used;
// keys a batch changed stay until their commit ends; a tracked (empty) bucket needs no read
// for a key it never wrote.
func TestCacheBounds(t *testing.T) {
	shape := operators.NewShape("n")
	s := New(Options{MaxKeys: 2, Shapes: map[string]*operators.Shape{"p": shape}, InPlace: true})
	s.Track("p")
	ctx := context.Background()
	get := func(key string) *operators.Entry {
		t.Helper()
		e, err := s.Get(ctx, "p", key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return e
	}
	write := func(key string, seq uint64) {
		e := get(key)
		s.Apply(operators.Write{Projection: "p", Key: key, State: operators.NewRecord(shape, map[string]any{"n": float64(seq)}), Seq: seq, Entry: e})
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
