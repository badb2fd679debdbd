package streams

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
)

var (
	// ErrEmbeddedStart is returned when the embedded nats-server does not become ready.
	ErrEmbeddedStart = errors.New("embedded nats-server did not start")
	// ErrStoreInUse is returned when another process runs an embedded server on the same
	// store directory (nats-server itself does not lock it, and two would corrupt it).
	ErrStoreInUse = errors.New("store directory in use by another process")
	// ErrNoStore is returned with [ConnectOptions.NoCreate] when the embedded store directory
	// does not exist: nothing ever ran there.
	ErrNoStore = errors.New("no embedded store: not started yet")
)

// ConnectOptions tunes [Connect].
type ConnectOptions struct {
	// Name is the client name shown by NATS monitoring.
	Name string
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// Reuse, for the embedded case, first tries to reach a server already listening on the
	// embedded listen address (a running processor) before starting one on the store dir.
	Reuse bool
	// NoListen starts the embedded server without a client port (in-process connection only).
	NoListen bool
	// NoCreate, for the embedded case, returns [ErrNoStore] instead of creating a store
	// directory that does not exist (commands that only read).
	NoCreate bool
	// WaitForStore, for the embedded case, waits while another process holds the store
	// directory (a processor started twice on one configuration stands by until the first
	// exits) instead of failing with [ErrStoreInUse].
	WaitForStore bool
	// OnDisconnect and OnReconnect are called from NATS' callback goroutine.
	OnDisconnect, OnReconnect func()
}

// Conn is a NATS connection with its JetStream context and, when embedded, the server.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Server is the embedded server, nil when connected to an external one.
	Server *server.Server
	// URL is where the connection points ("embedded" for an in-process connection).
	URL string

	embedded *Embedded
}

// Close drains the connection and shuts the embedded server down.
func (c *Conn) Close() {
	if c.NC != nil {
		_ = c.NC.Drain()
		c.NC.Close()
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
	}
}

// Connect connects to cfg.URL, or starts the embedded server when it is empty. The
// connection reconnects for ever with backoff: a lost server is waited for, never a crash.
func Connect(ctx context.Context, cfg config.NATS, o ConnectOptions) (*Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := clientOptions(cfg, o, log)
	if err != nil {
		return nil, err
	}
	c := &Conn{URL: cfg.URL}
	if cfg.URL == "" {
		if o.Reuse && cfg.Embedded.Listen != "none" {
			addr := "nats://" + listenAddr(cfg.Embedded)
			if nc, err := nats.Connect(addr, append(opts, nats.Timeout(time.Second))...); err == nil {
				// Only a processor of this configuration's store will do: another project's
				// processor may listen on the same address.
				if name := nc.ConnectedServerName(); name == EmbeddedName(cfg.Embedded) {
					return finish(c, nc, addr)
				}
				nc.Close()
				log.Warn("the NATS server on the embedded listen address serves another store directory (another project's processor?): reading this configuration's store directly",
					"listen", listenAddr(cfg.Embedded), "store_dir", storeDir(cfg.Embedded))
			}
		}
		if o.NoCreate {
			if _, err := os.Stat(storeDir(cfg.Embedded)); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w (no store directory %s)", ErrNoStore, storeDir(cfg.Embedded))
			}
		}
		emb, err := StartEmbedded(ctx, cfg.Embedded, EmbeddedOptions{NoListen: o.NoListen, Wait: o.WaitForStore, Logger: log})
		if err != nil {
			return nil, err
		}
		s := emb.Server
		c.Server, c.embedded = s, emb
		c.URL = "embedded"
		opts = append(opts, nats.InProcessServer(s))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s: %w", redact(c.URL), err)
	}
	return finish(c, nc, c.URL)
}

func finish(c *Conn, nc *nats.Conn, addr string) (*Conn, error) {
	// A lost connection loses the acks of what was in flight: time them out rather
	// than wait for ever, so that a commit fails and the pipeline restarts.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384), jetstream.WithPublishAsyncTimeout(asyncTimeout))
	if err != nil {
		nc.Close()
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.NC, c.JS, c.URL = nc, js, addr
	return c, nil
}

func clientOptions(cfg config.NATS, o ConnectOptions, log *slog.Logger) ([]nats.Option, error) {
	name := o.Name
	if name == "" {
		name = "jetfold"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // a Close or Drain of ours
			}
			log.Warn("nats disconnected", "err", err)
			if o.OnDisconnect != nil {
				o.OnDisconnect()
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", redact(nc.ConnectedUrl()))
			if o.OnReconnect != nil {
				o.OnReconnect()
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats async error", "err", err)
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, opt)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	return opts, nil
}

// EmbeddedOptions tunes [StartEmbedded].
type EmbeddedOptions struct {
	// NoListen starts the server without a client port.
	NoListen bool
	// Wait waits, until ctx ends, while another process holds the store directory.
	Wait bool
	// Logger receives the wait for the store directory; nil discards it.
	Logger *slog.Logger
}

// Embedded is a running embedded nats-server and the lock on its store directory.
type Embedded struct {
	*server.Server
	lock *os.File
}

// Shutdown stops the server, waits for it and releases the store directory.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	_ = e.lock.Close()
}

// StartEmbedded starts a nats-server with JetStream on e.StoreDir and waits until it is ready.
// It returns [ErrStoreInUse] when another process holds the store directory (unless o.Wait).
func StartEmbedded(ctx context.Context, e config.Embedded, o EmbeddedOptions) (*Embedded, error) {
	opts := &server.Options{
		ServerName: EmbeddedName(e),
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
		return nil, fmt.Errorf("%w (store %s, listen %s)", ErrEmbeddedStart, opts.StoreDir, e.Listen)
	}
	started = true
	return &Embedded{Server: s, lock: lock}, nil
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

// storeDir is the embedded store directory of e (default ./data/nats).
func storeDir(e config.Embedded) string {
	if e.StoreDir == "" {
		return "./data/nats"
	}
	return e.StoreDir
}

// EmbeddedName is the server name of the embedded server of e: "jetfold-" and a digest of the
// store directory's absolute path, so that a client that reaches a server on the listen
// address can tell whether it serves this store.
func EmbeddedName(e config.Embedded) string {
	dir, err := filepath.Abs(storeDir(e))
	if err != nil {
		dir = storeDir(e)
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	return "jetfold-" + hex.EncodeToString(sum[:6])
}

func listenAddr(e config.Embedded) string {
	if e.Listen == "" {
		return "127.0.0.1:4222"
	}
	return e.Listen
}

// redact hides the user info (password, token) of a URL for logging.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	p.User = url.User("***")
	return p.String()
}
