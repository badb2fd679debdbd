package streams

import (
	"context"
	"errors"
	"testing"

	"github.com/jetfold/jetfold/config"
)

// TestEmbeddedLocksItsStore: a second embedded server on the same store directory is refused
// (nats-server does not lock it itself), and the lock goes with the server.
func TestEmbeddedLocksItsStore(t *testing.T) {
	dir := t.TempDir()
	e := config.Embedded{StoreDir: dir, Listen: "none"}
	s, err := StartEmbedded(e, EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartEmbedded(e, EmbeddedOptions{}); !errors.Is(err, ErrStoreInUse) {
		t.Fatalf("second server on the same store: %v, want ErrStoreInUse", err)
	}
	s.Shutdown()
	c, err := Connect(context.Background(), config.NATS{Embedded: e}, ConnectOptions{NoListen: true})
	if err != nil {
		t.Fatalf("after shutdown the store is free again: %v", err)
	}
	c.Close()
}
