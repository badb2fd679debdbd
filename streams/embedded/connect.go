package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/streams"
)

// ConnectOptions tunes [Connect]: the options of [streams.Connect] (its Server is set by
// Connect) and those of the embedded case.
type ConnectOptions struct {
	streams.ConnectOptions
	// Reuse first tries to reach a server already listening on the embedded listen address (a
	// running processor) before starting one on the store dir. Only a server named after this
	// store directory ([Name]) is used; another one is named in a warning and left alone.
	Reuse bool
	// NoListen starts the embedded server without a client port (in-process connection only).
	NoListen bool
	// NoCreate returns [ErrNoStore] instead of creating a store directory that does not exist
	// (commands that only read).
	NoCreate bool
	// WaitForStore waits while another process holds the store directory (a processor started
	// twice on one configuration stands by until the first exits) instead of failing with
	// [ErrStoreInUse].
	WaitForStore bool
}

// reuseTimeout bounds the attempt to reach a running processor's server with
// [ConnectOptions.Reuse].
const reuseTimeout = time.Second

// Connect connects as [streams.Connect] does when cfg.URL is set. When it is empty, it
// connects to the embedded server: with o.Reuse to the one a running processor of this store
// directory serves on the embedded listen address, otherwise (or when there is none) to one
// it starts on the store directory ([Start]), which the connection's Close shuts down. The
// embedded server speaks no TLS and requires no credentials: cfg's TLS files are not used with
// it, and the credentials, if any, are presented and accepted. It returns [ErrNoStore] (with
// o.NoCreate), [ErrStoreInUse] and [ErrStart], wrapped, as well as the errors of
// [streams.Connect].
func Connect(ctx context.Context, cfg config.NATS, o ConnectOptions) (*streams.Conn, error) {
	if cfg.URL != "" {
		return streams.Connect(ctx, cfg, o.ConnectOptions)
	}
	cfg.KVReplicas = 0 // one server: one replica
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Reuse && cfg.Embedded.Listen != "none" {
		if c := reuse(ctx, cfg, o.ConnectOptions, log); c != nil {
			return c, nil
		}
	}
	if o.NoCreate {
		if _, err := os.Stat(storeDir(cfg.Embedded)); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w (no store directory %s)", ErrNoStore, storeDir(cfg.Embedded))
		}
	}
	s, err := Start(ctx, cfg.Embedded, Options{NoListen: o.NoListen, Wait: o.WaitForStore, Logger: log})
	if err != nil {
		return nil, err
	}
	so := o.ConnectOptions
	so.Server = s
	return streams.Connect(ctx, cfg, so)
}

// reuse connects to the server on the embedded listen address when it serves cfg's store
// directory, and returns nil when there is none or it serves another one (with a warning).
func reuse(ctx context.Context, cfg config.NATS, o streams.ConnectOptions, log *slog.Logger) *streams.Conn {
	rc := cfg
	rc.URL = "nats://" + listenAddr(cfg.Embedded)
	rc.TLS = config.TLS{} // the embedded server speaks no TLS: its files are for a URL's server
	o.Server, o.Timeout = nil, reuseTimeout
	c, err := streams.Connect(ctx, rc, o)
	if err != nil {
		return nil
	}
	// Only a processor of this configuration's store will do: another project's processor
	// may listen on the same address.
	if c.NC.ConnectedServerName() == Name(cfg.Embedded) {
		return c
	}
	c.Close()
	log.Warn("the NATS server on the embedded listen address serves another store directory (another project's processor?): reading this configuration's store directly",
		"listen", listenAddr(cfg.Embedded), "store_dir", storeDir(cfg.Embedded))
	return nil
}
