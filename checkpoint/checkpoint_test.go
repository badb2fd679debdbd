package checkpoint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// TestStoreFencing: a checkpoint is compare-and-set on the revision each Store last saw, so
// of two writers the one that did not see the other's write is refused with ErrFenced.
func TestStoreFencing(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	kv, err := streams.EnsureBucket(ctx, js, streams.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	a, b := checkpoint.NewStore(kv), checkpoint.NewStore(kv)
	if _, err := a.Load(ctx, "p"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Load of a new pipeline: %v, want ErrNotFound", err)
	}
	if _, err := b.Load(ctx, "p"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatal(err)
	}
	cp, err := a.Commit(ctx, "p", checkpoint.Checkpoint{Seq: 10, Outputs: map[string]uint64{"OUT": 3}})
	if err != nil || cp.Revision == 0 {
		t.Fatalf("first commit: %+v, %v", cp, err)
	}
	if _, err := b.Commit(ctx, "p", checkpoint.Checkpoint{Seq: 5}); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("a commit over a checkpoint this store never saw: %v, want ErrFenced", err)
	}
	if _, err := a.Commit(ctx, "p", checkpoint.Checkpoint{Seq: 20}); err != nil {
		t.Fatalf("the writer that saw every write goes on: %v", err)
	}
	got, err := b.Load(ctx, "p")
	if err != nil || got.Seq != 20 || got.Committed.IsZero() {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	if _, err := b.Commit(ctx, "p", checkpoint.Checkpoint{Seq: 30}); err != nil {
		t.Fatalf("after a Load the other store may write: %v", err)
	}
	if _, err := a.Commit(ctx, "p", checkpoint.Checkpoint{Seq: 25}); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("now the first one is stale: %v, want ErrFenced", err)
	}
}

// TestLeases: one holder at a time; a standby gets the lease when the holder releases it or
// when its renewals stop; a holder whose lease is taken learns it through its context.
func TestLeases(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(holder string) *checkpoint.Leases {
		l, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{TTL: time.Second, Holder: holder})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := open("a"), open("b")
	heldA, releaseA, err := a.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	// b stands by while a holds the lease and renews it (for more than two TTLs).
	standby, stop := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer stop()
	if _, _, err := b.Acquire(standby, "p"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b acquired a held lease: %v", err)
	}
	if heldA.Err() != nil {
		t.Fatalf("a lost its lease while renewing it: %v", context.Cause(heldA))
	}
	releaseA()
	heldB, releaseB, err := b.Acquire(ctx, "p")
	if err != nil {
		t.Fatalf("b after a released: %v", err)
	}
	defer releaseB()
	// The same holder name takes its own lease back at once (a restarted process).
	b2 := open("b")
	quick, stop2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop2()
	_, releaseB2, err := b2.Acquire(quick, "p")
	if err != nil {
		t.Fatalf("the same holder after a restart: %v", err)
	}
	defer releaseB2()
	// heldB's next renewal finds another revision: the lease is lost.
	natstest.Eventually(t, 5*time.Second, "b to learn its lease was taken", func() bool { return heldB.Err() != nil })
	if !errors.Is(context.Cause(heldB), checkpoint.ErrLeaseLost) {
		t.Fatalf("cause %v, want ErrLeaseLost", context.Cause(heldB))
	}
}
