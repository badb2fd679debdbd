package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/streams"
)

// TestReadAheadMatchesGet: ReadAhead reads every key as Get does: the value, Jetfold-Seq and
// Jetfold-Time, the revision the next write expects, a delete or purge marker or no message
// as no state. A value that is not a JSON object is left to Get, which reports it.
func TestReadAheadMatchesGet(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Server(t))
	kv, err := streams.EnsureBucket(ctx, js, "p")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	put := func(key string, data string, seq uint64) {
		t.Helper()
		h := nats.Header{HeaderSeq: []string{fmt.Sprint(seq)}, HeaderTime: []string{at.Add(time.Duration(seq)).Format(time.RFC3339Nano)}}
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: streams.KVSubject("p", streams.EncodeKey(key)), Header: h, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	keys := []Key{}
	want := map[string]bool{} // key -> read ahead
	for i := range 200 {
		k := fmt.Sprintf("k%d", i)
		put(k, fmt.Sprintf(`{"n":%d}`, i), uint64(i+1))
		keys = append(keys, Key{"p", k})
		want[k] = true
	}
	put("k7", `{"n":"again"}`, 9000) // a newer revision
	put("plain", `{"n":1}`, 0)
	if _, err := kv.Put(ctx, "foreign", []byte(`{"by":"someone else"}`)); err != nil { // no headers
		t.Fatal(err)
	}
	put("deleted", `{"n":1}`, 1)
	if err := kv.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	put("purged", `{"n":1}`, 1)
	if err := kv.Purge(ctx, "purged"); err != nil {
		t.Fatal(err)
	}
	put("with space", `{"n":2}`, 3) // an encoded key
	put("a.b", `{"n":3}`, 4)
	put("bad", `[1]`, 5)
	for _, k := range []string{"plain", "foreign", "deleted", "purged", "with space", "a.b", "absent", "also absent"} {
		keys = append(keys, Key{"p", k})
		want[k] = true
	}
	keys = append(keys, Key{"p", "bad"}, Key{"p", "k1"}) // and a duplicate

	open := func() *Store {
		t.Helper()
		s := New(Options{MaxKeys: 10000, Shapes: map[string]*event.Shape{"p": event.NewShape("n")}})
		if err := s.Open(ctx, js, "p", "p", false); err != nil {
			t.Fatal(err)
		}
		return s
	}
	ref := open()
	s := open()
	if n := s.ReadAhead(ctx, keys, len(keys)); n != len(want) {
		t.Errorf("read ahead %d keys, want %d", n, len(want))
	}
	for k := range want {
		got, ok := s.cache.byProj["p"][k]
		if !ok {
			t.Errorf("%s: not read ahead", k)
			continue
		}
		if _, err := ref.Get(ctx, "p", k); err != nil {
			t.Fatalf("%s: get: %v", k, err)
		}
		exp := ref.cache.byProj["p"][k]
		if fmt.Sprint(got.State.Map()) != fmt.Sprint(exp.State.Map()) || got.Seq != exp.Seq ||
			!got.Time.Equal(exp.Time) || got.rev != exp.rev {
			t.Errorf("%s: read ahead %v seq %d time %v rev %d, Get %v seq %d time %v rev %d", k,
				got.State.Map(), got.Seq, got.Time, got.rev, exp.State.Map(), exp.Seq, exp.Time, exp.rev)
		}
	}
	if e := s.cache.byProj["p"]["k7"]; e.rev == 0 || e.State.Map()["n"] != "again" || e.Seq != 9000 {
		t.Errorf("k7: %v seq %d rev %d, want the newer revision", e.State.Map(), e.Seq, e.rev)
	}
	for _, k := range []string{"deleted", "purged", "absent"} {
		if e := s.cache.byProj["p"][k]; e.State != nil {
			t.Errorf("%s: state %v, want none", k, e.State.Map())
		}
	}
	if e := s.cache.byProj["p"]["deleted"]; e.rev == 0 {
		t.Error("deleted: revision 0, want its marker's")
	}
	if s.cache.has("p", "bad") {
		t.Error("bad: read ahead, want it left to Get")
	}
	if _, err := s.Get(ctx, "p", "bad"); err == nil {
		t.Error("bad: Get gave no error")
	}
}

// TestReadAheadAllAbsent: keys none of which has a message are read ahead as absent.
func TestReadAheadAllAbsent(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Server(t))
	kv, err := streams.EnsureBucket(ctx, js, "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	s := New(Options{MaxKeys: 100})
	if err := s.Open(ctx, js, "p", "p", false); err != nil {
		t.Fatal(err)
	}
	if n := s.ReadAhead(ctx, []Key{{"p", "x"}, {"p", "y"}}, 10); n != 2 {
		t.Fatalf("read ahead %d keys, want 2", n)
	}
	for _, k := range []string{"x", "y"} {
		if e := s.cache.byProj["p"][k]; e.State != nil || e.rev != 0 {
			t.Errorf("%s: %v rev %d, want absent", k, e.State.Map(), e.rev)
		}
	}
}
