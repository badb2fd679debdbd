package streams_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// TestConnect: a connection goes to the configured URL or through an in-process server, which
// it owns from then on (Close, or a failed Connect, shuts it down), and neither is an error.
func TestConnect(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		url       bool   // connect to the test server's URL
		inProcess bool   // connect through the test server in-process
		nkeyFile  string // a client option that fails
		wantURL   string // "" for the server's client URL
		wantErr   error  // errors.Is; nil: any error with nkeyFile
	}{
		{name: "url", url: true},
		{name: "in-process", inProcess: true, wantURL: "embedded"},
		{name: "in-process wins over the url", url: true, inProcess: true, wantURL: "embedded"},
		{name: "neither", wantErr: streams.ErrNoURL},
		{name: "failed in-process", inProcess: true, nkeyFile: filepath.Join(t.TempDir(), "missing.nk")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := natstest.Server(t)
			cfg := config.NATS{NKeyFile: tt.nkeyFile}
			if tt.url {
				cfg.URL = s.ClientURL()
			}
			var o streams.ConnectOptions
			if tt.inProcess {
				o.Server = s
			}
			c, err := streams.Connect(ctx, cfg, o)
			switch {
			case tt.wantErr != nil || tt.nkeyFile != "":
				if err == nil {
					c.Close()
					t.Fatal("connected, want an error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				if tt.inProcess && s.Running() {
					t.Fatal("a failed Connect left the in-process server running")
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			want := tt.wantURL
			if want == "" {
				want = s.ClientURL()
			}
			if c.URL != want {
				t.Errorf("URL %q, want %q", c.URL, want)
			}
			if (c.Server != nil) != tt.inProcess {
				t.Errorf("Server %v, want in-process %v", c.Server, tt.inProcess)
			}
			if _, err := c.JS.AccountInfo(ctx); err != nil {
				t.Fatalf("JetStream: %v", err)
			}
			c.Close()
			if running := s.Running(); running == tt.inProcess {
				t.Errorf("after Close the server is running: %v, want %v", running, !tt.inProcess)
			}
		})
	}
}
