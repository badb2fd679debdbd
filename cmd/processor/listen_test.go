package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/config"
)

// TestServeHTTPAddressInUse checks what an HTTP address in use does: the default gives way to
// a free port (a second processor on this host), a set one fails the start with a hint.
func TestServeHTTPAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	tests := []struct {
		name      string
		defaulted bool
		fails     string
	}{
		{"the default", true, ""},
		{"a set address", false, "is in use"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stop, err := serveHTTP(config.HTTP{Listen: addr, ListenDefaulted: tc.defaulted}, api.Options{}, slog.New(slog.DiscardHandler))
			if tc.fails != "" {
				if err == nil || !strings.Contains(err.Error(), tc.fails) {
					stop()
					t.Fatalf("serveHTTP on %s in use: %v, want an error saying %q", addr, err, tc.fails)
				}
				return
			}
			if err != nil {
				t.Fatalf("serveHTTP on the default %s in use: %v, want a free port", addr, err)
			}
			stop()
		})
	}
}

// TestHTTPListenDefaulted checks that only an absent http.listen is the default one.
func TestHTTPListenDefaulted(t *testing.T) {
	tests := []struct {
		yaml      string
		defaulted bool
	}{
		{"", true},
		{"http: {listen: 127.0.0.1:8080}\n", false},
		{"http: {listen: none}\n", false},
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), "p.yaml")
		y := tc.yaml + "streams:\n  - {name: S, subjects: [s.>]}\npipelines:\n  - {name: p, source: {stream: S}, key: event.id, operators: [{filter: 'true'}]}\n"
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, config.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.HTTP.ListenDefaulted != tc.defaulted {
			t.Errorf("%q: defaulted %t, want %t", tc.yaml, cfg.HTTP.ListenDefaulted, tc.defaulted)
		}
	}
}
