package embedded

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jetfold/jetfold/config"
)

// Options tunes [Start].
type Options struct {
	// NoListen starts the server without a client port.
	NoListen bool
	// Wait waits, until ctx ends, while another process holds the store directory.
	Wait bool
	// Logger receives the wait for the store directory; nil discards it.
	Logger *slog.Logger
}

// Server is a running embedded nats-server and the lock on its store directory. It is a
// [github.com/jetfold/jetfold/streams.InProcessServer].
type Server struct {
	*server.Server
	lock *os.File
}

// Shutdown stops the server, waits for it and releases the store directory.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	_ = s.lock.Close()
}

// Start starts a nats-server with JetStream on e.StoreDir and waits until it is ready. It
// returns [ErrStoreInUse] when another process holds the store directory (unless o.Wait;
// then the error of ctx when it ends first), and [ErrStart] when the server does not become
// ready.
func Start(ctx context.Context, e config.Embedded, o Options) (*Server, error) {
	opts := &server.Options{
		ServerName: Name(e),
		JetStream:  true,
		StoreDir:   storeDir(e),
		NoLog:      true,
		NoSigs:     true,
	}
	if err := os.MkdirAll(opts.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded store dir: %w", err)
	}
	lock, err := lockDir(opts.StoreDir)
	for waited := false; errors.Is(err, ErrStoreInUse) && o.Wait; waited = true {
		if !waited && o.Logger != nil {
			o.Logger.Info("standing by: another process uses the embedded store directory", "dir", opts.StoreDir)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("embedded store dir: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
		lock, err = lockDir(opts.StoreDir)
	}
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			_ = lock.Close()
		}
	}()
	if o.NoListen || e.Listen == "none" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(listenAddr(e))
		if err != nil {
			return nil, fmt.Errorf("embedded listen %q: %w", e.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded listen %q: %w", e.Listen, err)
		}
		if opts.Port > 0 { // fail fast and clearly when the port is taken
			ln, err := net.Listen("tcp", listenAddr(e))
			if err != nil {
				return nil, fmt.Errorf("embedded nats-server: %w (another server there? set nats.url to use it, or nats.embedded.listen)", err)
			}
			_ = ln.Close()
		}
	}
	switch e.SyncInterval {
	case "":
	case "always":
		opts.SyncAlways = true
	default:
		d, err := time.ParseDuration(e.SyncInterval)
		if err != nil {
			return nil, fmt.Errorf("embedded sync_interval: %w", err)
		}
		opts.SyncInterval = d
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("%w (store %s, listen %s)", ErrStart, opts.StoreDir, e.Listen)
	}
	started = true
	return &Server{Server: s, lock: lock}, nil
}

// lockDir takes an exclusive lock on dir/jetfold.lock for as long as the returned file is open
// (the kernel drops it when the process dies).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "jetfold.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s (is a processor running with nats.embedded.listen: none? reach it through a port, or stop it)", ErrStoreInUse, dir)
	}
	return f, nil
}

// Name is the server name of the embedded server of e: "jetfold-" and a digest of the store
// directory's absolute path, so that a client that reaches a server on the listen address
// can tell whether it serves this store.
func Name(e config.Embedded) string {
	dir, err := filepath.Abs(storeDir(e))
	if err != nil {
		dir = storeDir(e)
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	return "jetfold-" + hex.EncodeToString(sum[:6])
}

// storeDir is the embedded store directory of e (default ./data/nats).
func storeDir(e config.Embedded) string {
	if e.StoreDir == "" {
		return "./data/nats"
	}
	return e.StoreDir
}

// listenAddr is the embedded listen address of e (default 127.0.0.1:4222).
func listenAddr(e config.Embedded) string {
	if e.Listen == "" {
		return "127.0.0.1:4222"
	}
	return e.Listen
}
