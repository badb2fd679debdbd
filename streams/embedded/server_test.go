package embedded

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/streams"
)

// TestEmbeddedLocksItsStore: a second embedded server on the same store directory is refused
// (nats-server does not lock it itself), and the lock goes with the server.
func TestEmbeddedLocksItsStore(t *testing.T) {
	dir := t.TempDir()
	e := config.Embedded{StoreDir: dir, Listen: "none"}
	s, err := Start(context.Background(), e, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), e, Options{}); !errors.Is(err, ErrStoreInUse) {
		t.Fatalf("second server on the same store: %v, want ErrStoreInUse", err)
	}
	// One that waits for the store says so, and gets it when the first server is gone.
	standingBy := &onMessage{msg: "standing by: another process uses the embedded store directory", seen: make(chan struct{})}
	log := slog.New(standingBy)
	got := make(chan error, 1)
	go func() {
		s2, err := Start(context.Background(), e, Options{Wait: true, Logger: log})
		if err == nil {
			s2.Shutdown()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a waiting server started while the store was held: %v", err)
	case <-standingBy.seen: // it found the store held and waits, as it should
	case <-time.After(30 * time.Second):
		t.Fatal("the second server neither started nor said it waits for the store")
	}
	select {
	case err := <-got:
		t.Fatalf("a waiting server started while the store was held: %v", err)
	default:
	}
	s.Shutdown()
	if err := <-got; err != nil {
		t.Fatalf("the waiting server: %v", err)
	}
	c, err := Connect(context.Background(), config.NATS{Embedded: e}, ConnectOptions{NoListen: true})
	if err != nil {
		t.Fatalf("after shutdown the store is free again: %v", err)
	}
	c.Close()
}

// onMessage is a slog handler that closes seen at the first record whose message is msg.
type onMessage struct {
	msg  string
	seen chan struct{}
	once sync.Once
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }

func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}

func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }

// The embedded server is a server a streams connection runs in-process.
var _ streams.InProcessServer = (*Server)(nil)
