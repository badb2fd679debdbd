package pipeline_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/pipeline/status"
)

// TestPause: a paused pipeline commits what it has in hand, reads nothing more and reports
// paused; resumed, it reads on from where it stopped.
func TestPause(t *testing.T) {
	e := newEnv(t)
	ps := e.buildCount(countOpts{start: "all", stop: "follow"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	board := status.NewBoard()
	var at atomic.Uint64
	done := make(chan error, 1)
	go func() {
		done <- pipeline.NewRunner(ps[0], pipeline.Options{JS: e.js, Board: board, OnCommit: func(c pipeline.CommitInfo) { at.Store(c.Seq) }}).Run(ctx)
	}()
	state := func(want string) func() bool {
		return func() bool { h, _ := board.Get("counter"); return h.State == want }
	}
	for i := range 100 {
		e.pub("ev.a", `{"type":"t","k":"a","i":`+strconv.Itoa(i)+`}`)
	}
	natstest.Eventually(t, time.Minute, "the first 100 events", func() bool { return at.Load() == 100 })

	if err := control.Set(ctx, e.js, "counter", control.State{Paused: true, By: "test"}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, "paused", state(status.Paused))
	for i := range 50 {
		e.pub("ev.a", `{"type":"t","k":"a","i":`+strconv.Itoa(i)+`}`)
	}
	// An absence can only be watched for a while: a second of events not read.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if at.Load() != 100 {
			t.Fatalf("a paused pipeline committed up to %d", at.Load())
		}
	}
	if s, err := control.Get(ctx, e.js, "counter"); err != nil || !s.Paused || s.By != "test" {
		t.Fatalf("control state %+v, %v", s, err)
	}

	if err := control.Set(ctx, e.js, "counter", control.State{}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, "resumed and caught up", func() bool { return at.Load() == 150 })
	if h, _ := board.Get("counter"); h.State != status.Running {
		t.Errorf("health %s after resume", h.State)
	}
	if got := e.counts()["a"]; got != 150 {
		t.Errorf("count %v, want 150", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
