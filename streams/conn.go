package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
)

// ErrNoURL is returned by [Connect] when the configuration names no NATS URL and no
// in-process server is given ([ConnectOptions.Server]; package streams/embedded starts one).
var ErrNoURL = errors.New("no NATS URL and no in-process server")

// InProcessServer is a NATS server running in this process, which a [Conn] reaches without a
// network connection: the embedded server of package streams/embedded.
type InProcessServer interface {
	nats.InProcessConnProvider
	// Shutdown stops the server and waits until it is down.
	Shutdown()
}

// ConnectOptions tunes [Connect].
type ConnectOptions struct {
	// Name is the client name shown by NATS monitoring.
	Name string
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// Server, when set, is connected to in-process instead of the configuration's URL. The
	// connection owns it from then on: [Conn.Close], or a failed [Connect], shuts it down.
	Server InProcessServer
	// Timeout bounds the first connection attempt; 0 keeps nats.go's default (2 s).
	Timeout time.Duration
	// OnDisconnect and OnReconnect are called from NATS' callback goroutine.
	OnDisconnect, OnReconnect func()
}

// Conn is a NATS connection with its JetStream context and, when in-process, the server.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Server is the in-process server connected through ([ConnectOptions.Server]), nil when
	// connected to a URL.
	Server InProcessServer
	// URL is where the connection points ("embedded" for an in-process connection).
	URL string
}

// Close drains the connection and shuts the in-process server down.
func (c *Conn) Close() {
	if c.NC != nil {
		_ = c.NC.Drain()
		c.NC.Close()
	}
	if c.Server != nil {
		c.Server.Shutdown()
	}
}

// Connect connects to cfg.URL, or in-process to o.Server when it is set. The connection
// reconnects for ever with backoff: a lost server is waited for, never a crash. It returns
// [ErrNoURL] when cfg.URL is empty and o.Server nil: starting the embedded server is the
// business of package streams/embedded, whose Connect calls this one.
func Connect(ctx context.Context, cfg config.NATS, o ConnectOptions) (*Conn, error) {
	c := &Conn{URL: cfg.URL, Server: o.Server}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := clientOptions(cfg, o, log)
	if err != nil {
		c.Close()
		return nil, err
	}
	addr := cfg.URL
	switch {
	case o.Server != nil:
		c.URL, addr = "embedded", ""
		opts = append(opts, nats.InProcessServer(o.Server))
	case cfg.URL == "":
		return nil, fmt.Errorf("connect: %w", ErrNoURL)
	}
	if o.Timeout > 0 {
		opts = append(opts, nats.Timeout(o.Timeout))
	}
	nc, err := nats.Connect(addr, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s: %w", redact(c.URL), err)
	}
	// A lost connection loses the acks of what was in flight: time them out rather
	// than wait for ever, so that a commit fails and the pipeline restarts.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384), jetstream.WithPublishAsyncTimeout(asyncTimeout))
	if err != nil {
		nc.Close()
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.NC, c.JS = nc, js
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

// redact hides the user info (password, token) of a URL for logging.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	p.User = url.User("***")
	return p.String()
}
