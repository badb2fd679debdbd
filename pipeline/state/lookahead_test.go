package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// TestLookAhead: ReadAhead of keys of another pipeline's projection read ahead answer their lookups with
// no read; a bucket with more keys than the replica holds is not delivered whole, yet a change
// made after the start reaches the replica.
func TestLookAhead(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Server(t))
	kv, err := streams.EnsureBucket(ctx, js, "users")
	if err != nil {
		t.Fatal(err)
	}
	const users = 300
	for i := range users {
		if _, err := kv.Put(ctx, fmt.Sprintf("u%d", i), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Options{MaxKeys: 1000, TableKeys: 200})
	s.Connect(js)
	defer s.Close()
	var keys []Key
	for i := range 40 {
		keys = append(keys, Key{"users", fmt.Sprintf("u%d", i*7)})
	}
	keys = append(keys, Key{"users", "u0"}, Key{"users", "nobody"}) // a duplicate, an absent key
	if n := s.ReadAhead(ctx, keys, 0); n != 41 {
		t.Errorf("read ahead %d keys, want 41", n)
	}
	before := s.Reads()
	for _, k := range keys {
		v, err := s.Lookup(ctx, "users", k.Key)
		if err != nil {
			t.Fatal(err)
		}
		var want any
		if k.Key != "nobody" {
			var i int
			fmt.Sscanf(k.Key, "u%d", &i)
			want = float64(i)
		}
		if got := v["n"]; v == nil && want != nil || v != nil && got != want {
			t.Errorf("lookup %s = %v, want n=%v", k.Key, v, want)
		}
	}
	if r := s.Reads() - before; r != 0 {
		t.Errorf("%d reads after the read-ahead, want none", r)
	}

	// A change after the start reaches the replica through the watch (updates only: the
	// watch is ordered, so a bucket delivered whole would have come before it).
	if _, err := kv.Put(ctx, "u7", []byte(`{"n":"changed"}`)); err != nil {
		t.Fatal(err)
	}
	tb := s.tables["users"]
	natstest.Eventually(t, 30*time.Second, "the change in the replica", func() bool {
		v, ok, _ := tb.get("u7")
		return ok && v["n"] == "changed"
	})
	tb.mu.Lock()
	held := len(tb.vals)
	tb.mu.Unlock()
	if held > 42 { // 41 read ahead, 1 changed
		t.Errorf("the replica holds %d keys: the bucket of %d keys was delivered, not only what was read and changed", held, users)
	}
}
