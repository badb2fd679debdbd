package backup

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// TestListKeysWhileWritten: every key of a bucket (one value per key) is listed while every
// key is written again and again, which replaces the values the listing is about to deliver.
func TestListKeysWhileWritten(t *testing.T) {
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)
	ctx := context.Background()
	if _, err := streams.EnsureBucket(ctx, js, "b"); err != nil {
		t.Fatal(err)
	}
	const keys = 2000
	write := func() error {
		w := streams.NewWindow(js, 512)
		for i := range keys {
			if err := w.Publish(ctx, &nats.Msg{Subject: streams.KVSubject("b", "k"+strconv.Itoa(i)), Data: []byte("{}")}); err != nil {
				return err
			}
		}
		return w.Flush(ctx)
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := write(); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for round := range 5 {
		listed, err := listKeys(ctx, newLeader(js), "b")
		if err != nil {
			t.Fatal(err)
		}
		if len(listed) != keys {
			t.Fatalf("round %d: %d keys listed, want %d", round, len(listed), keys)
		}
		kv, err := js.KeyValue(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		l, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range l.Keys() {
			n++
		}
		t.Logf("round %d: KeyValue.ListKeys listed %d of %d keys", round, n, keys)
	}
}
