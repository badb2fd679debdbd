package streams

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetfold/jetfold/config"
)

// TestEmbeddedLocksItsStore: a second embedded server on the same store directory is refused
// (nats-server does not lock it itself), and the lock goes with the server.
func TestEmbeddedLocksItsStore(t *testing.T) {
	dir := t.TempDir()
	e := config.Embedded{StoreDir: dir, Listen: "none"}
	s, err := StartEmbedded(context.Background(), e, EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartEmbedded(context.Background(), e, EmbeddedOptions{}); !errors.Is(err, ErrStoreInUse) {
		t.Fatalf("second server on the same store: %v, want ErrStoreInUse", err)
	}
	// One that waits for the store gets it when the first server is gone.
	got := make(chan error, 1)
	go func() {
		s2, err := StartEmbedded(context.Background(), e, EmbeddedOptions{Wait: true})
		if err == nil {
			s2.Shutdown()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a waiting server started while the store was held: %v", err)
	case <-time.After(300 * time.Millisecond): // it is still waiting, as it should
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
