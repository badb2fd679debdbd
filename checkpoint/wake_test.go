package checkpoint_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
)

// TestStandbyWakes checks that a standby takes a lease as soon as it is free, instead of at its
// next look (every TTL/4): when the holder releases it, and when a dead holder's entry
// expires (the bucket's marker).
func TestStandbyWakes(t *testing.T) {
	const ttl = 4 * time.Second // looks every second
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(holder string, log *slog.Logger) *checkpoint.Leases {
		l, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{TTL: ttl, Holder: holder, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// b says when it stands by (it found the lease held and waits).
	var standing atomic.Int32
	a := open("a", nil)
	b := open("b", slog.New(&onMessage{msg: "standing by", n: &standing}))

	// standBy has b stand by for lease name and returns when it acquired it.
	standBy := func(name string) <-chan time.Time {
		acquired := make(chan time.Time, 1)
		go func() {
			_, release, err := b.Acquire(ctx, name)
			if err != nil {
				t.Error(err)
				close(acquired)
				return
			}
			acquired <- time.Now()
			release()
		}()
		return acquired
	}
	// settle waits until b stands by for the n-th time.
	settle := func(n int32) {
		natstest.Eventually(t, 10*time.Second, "b to stand by", func() bool { return standing.Load() >= n })
	}

	_, releaseA, err := a.Acquire(ctx, "released")
	if err != nil {
		t.Fatal(err)
	}
	got := standBy("released")
	settle(1)
	freed := time.Now()
	releaseA()
	took := (<-got).Sub(freed)
	t.Logf("released: taken %s after", took.Round(time.Millisecond))
	if took > ttl/8 {
		t.Errorf("the standby took a released lease %s after, want under %s (it looks every %s)", took.Round(time.Millisecond), ttl/8, ttl/4)
	}

	// A holder that died: its entry, never renewed, expires after the TTL.
	m := &nats.Msg{Subject: "$KV." + checkpoint.LeaseBucket + ".expired", Data: []byte(`{"holder":"ghost","since":"2026-01-01T00:00:00Z"}`)}
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	got = standBy("expired")
	settle(2)
	took = (<-got).Sub(written)
	t.Logf("expired: taken %s after the entry was written (TTL %s)", took.Round(time.Millisecond), ttl)
	if took < ttl {
		t.Errorf("taken %s after the entry was written, before its TTL %s", took, ttl)
	}
}

// onMessage is a slog handler that counts the records whose message starts with msg.
type onMessage struct {
	msg string
	n   *atomic.Int32
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.msg) {
		h.n.Add(1)
	}
	return nil
}
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }
