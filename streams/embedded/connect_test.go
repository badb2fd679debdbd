package embedded

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
)

// TestConnect: with Reuse, a client reaches the server a running processor of its store
// serves on the listen address, and starts its own when the server there serves another
// store (with a warning); with NoCreate it creates no store directory.
func TestConnect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	running, err := Start(ctx, config.Embedded{StoreDir: dir, Listen: "127.0.0.1:-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(running.Shutdown)
	other := natstest.ServerWith(t, &server.Options{ServerName: "another-project"})
	tests := []struct {
		name     string
		embedded config.Embedded
		o        ConnectOptions
		wantURL  string // "embedded": a server of its own
		warns    bool
		wantErr  error
	}{
		{name: "reuse the running processor's server",
			embedded: config.Embedded{StoreDir: dir, Listen: running.Addr().String()},
			o:        ConnectOptions{Reuse: true, NoListen: true},
			wantURL:  "nats://" + running.Addr().String()},
		{name: "another store's server on the address",
			embedded: config.Embedded{StoreDir: t.TempDir(), Listen: other.Addr().String()},
			o:        ConnectOptions{Reuse: true, NoListen: true},
			wantURL:  "embedded", warns: true},
		{name: "nothing on the address",
			embedded: config.Embedded{StoreDir: t.TempDir(), Listen: freeAddr(t)},
			o:        ConnectOptions{Reuse: true, NoListen: true},
			wantURL:  "embedded"},
		{name: "no store directory",
			embedded: config.Embedded{StoreDir: filepath.Join(t.TempDir(), "none"), Listen: "none"},
			o:        ConnectOptions{Reuse: true, NoListen: true, NoCreate: true},
			wantErr:  ErrNoStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warned := &onMessage{msg: "the NATS server on the embedded listen address serves another store directory (another project's processor?): reading this configuration's store directly",
				seen: make(chan struct{})}
			tt.o.Logger = slog.New(warned)
			c, err := Connect(ctx, config.NATS{Embedded: tt.embedded}, tt.o)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.URL != tt.wantURL {
				t.Errorf("URL %q, want %q", c.URL, tt.wantURL)
			}
			if (c.Server != nil) != (tt.wantURL == "embedded") {
				t.Errorf("a server of its own: %v, want %v", c.Server != nil, tt.wantURL == "embedded")
			}
			select {
			case <-warned.seen:
				if !tt.warns {
					t.Error("warned of another store's server")
				}
			default:
				if tt.warns {
					t.Error("no warning of another store's server")
				}
			}
		})
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
