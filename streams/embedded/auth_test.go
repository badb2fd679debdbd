package embedded

import (
	"context"
	"testing"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/authtest"
)

// TestConnectWithRemoteSettings: the TLS files and credentials of a configuration are for a
// server at a URL; with the embedded server (no URL), which speaks no TLS and requires no
// credentials, a connection still works, in-process and to a running processor's server on
// the listen address.
func TestConnectWithRemoteSettings(t *testing.T) {
	ctx := context.Background()
	pki := authtest.NewPKI(t, authtest.Secrets{}, "", t.TempDir())
	remote := config.NATS{Token: "a-token", TLS: config.TLS{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile}}
	dir := t.TempDir()
	running, err := Start(ctx, config.Embedded{StoreDir: dir, Listen: "127.0.0.1:-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(running.Shutdown)
	tests := []struct {
		name     string
		embedded config.Embedded
		wantURL  string
	}{
		{name: "in-process", embedded: config.Embedded{StoreDir: t.TempDir(), Listen: "none"}, wantURL: "embedded"},
		{name: "a running processor's server", embedded: config.Embedded{StoreDir: dir, Listen: running.Addr().String()},
			wantURL: "nats://" + running.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := remote
			cfg.Embedded = tt.embedded
			c, err := Connect(ctx, cfg, ConnectOptions{Reuse: true, NoListen: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.URL != tt.wantURL {
				t.Errorf("URL %q, want %q", c.URL, tt.wantURL)
			}
			if _, err := c.JS.AccountInfo(ctx); err != nil {
				t.Fatalf("JetStream: %v", err)
			}
		})
	}
}
