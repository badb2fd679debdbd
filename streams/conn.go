package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
)

// ErrNoURL is returned by [Connect] when the configuration names no NATS URL and no
// in-process server is given ([ConnectOptions.Server]; package streams/embedded starts one).
var ErrNoURL = errors.New("no NATS URL and no in-process server")

// ErrCredentials is returned by [Connect], wrapped, when the configuration's credentials
// cannot be used as they are: two authentication methods at once (which one would win is not
// what anyone reading the file can tell), a password without a user, a client certificate
// without its key or a key without its certificate. The message names the fields, never their
// values.
var ErrCredentials = errors.New("unusable NATS credentials")

// ErrURL is returned by [Connect], wrapped, when the configuration's URL does not parse. The
// message shows the URL without its user info.
var ErrURL = errors.New("invalid NATS URL")

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
// reconnects for ever with backoff: a lost server, or one that refuses the credentials after
// the first connection, is waited for, never a crash. It returns [ErrNoURL] when cfg.URL is
// empty and o.Server nil: starting the embedded server is the business of package
// streams/embedded, whose Connect calls this one.
//
// It authenticates with the one method cfg sets: a credentials file (CredsFile: a user JWT and
// its NKey seed), an NKey seed file (NKeyFile), a user name and password (User, Password), a
// token (Token), or the user info of the URL; and it adds a client certificate (TLS.CertFile
// and TLS.KeyFile) and the certificate authorities to trust (TLS.CAFile) when they are set.
// It returns [ErrCredentials] when cfg sets more than one method or half of a pair, and
// [ErrURL] for a URL that does not parse. A connection that fails (an authorization violation,
// a certificate that is not trusted) says which credentials it presented, by kind and file
// name. No error and no log line of a [Conn] holds a password, a token, a seed, a JWT or the
// user info of a URL.
func Connect(ctx context.Context, cfg config.NATS, o ConnectOptions) (*Conn, error) {
	c := &Conn{URL: redact(cfg.URL), Server: o.Server}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkAuth(cfg); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect: %w", err)
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
	default:
		if err := checkURL(cfg.URL); err != nil {
			c.Close()
			return nil, fmt.Errorf("connect: %w", err)
		}
	}
	if o.Timeout > 0 {
		opts = append(opts, nats.Timeout(o.Timeout))
	}
	nc, err := nats.Connect(addr, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s (%s): %w", c.URL, presented(cfg), err)
	}
	// A lost connection loses the acks of what was in flight: time them out rather
	// than wait for ever, so that a commit fails and the pipeline restarts.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384), jetstream.WithPublishAsyncTimeout(asyncTimeout))
	if err != nil {
		nc.Close()
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.NC, c.JS = nc, WithReplicas(js, cfg.KVReplicas)
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
		// A reconnection refused for its credentials (rotated on the server before the creds
		// file here, which is read again at each attempt) is retried as a lost server is,
		// instead of closing the connection for good at the second refusal. The first
		// connection still fails at once: wrong credentials are reported, not waited on.
		nats.IgnoreAuthErrorAbort(),
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
			if refused(err) {
				log.Warn("nats refused the credentials: retrying", "credentials", presented(cfg), "err", err)
				return
			}
			log.Warn("nats async error", "err", err)
		}),
	}
	switch { // checkAuth saw to it that at most one is set
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("connect: nkey seed file %s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, opt)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if o.Server != nil {
		// In-process, the connection never leaves this process and the embedded server
		// speaks no TLS: a TLS client would fail to connect.
		return opts, nil
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	return opts, nil
}

// refused tells whether err is the server's refusal of the credentials.
func refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// checkAuth returns [ErrCredentials], wrapped, when cfg sets more than one authentication
// method, a password without a user, or one half of a client certificate.
func checkAuth(cfg config.NATS) error {
	var set []string
	for _, m := range []struct {
		field string
		on    bool
	}{
		{"creds_file", cfg.CredsFile != ""},
		{"nkey_file", cfg.NKeyFile != ""},
		{"user", cfg.User != ""},
		{"token", cfg.Token != ""},
		{"the user info of url", urlUserInfo(cfg.URL)},
	} {
		if m.on {
			set = append(set, m.field)
		}
	}
	switch {
	case len(set) > 1:
		return fmt.Errorf("%w: %s and %s are set together: set one of creds_file, nkey_file, user (with password), token, or the user info of url",
			ErrCredentials, strings.Join(set[:len(set)-1], ", "), set[len(set)-1])
	case cfg.Password != "" && cfg.User == "":
		return fmt.Errorf("%w: password is set without user", ErrCredentials)
	case cfg.TLS.CertFile != "" && cfg.TLS.KeyFile == "":
		return fmt.Errorf("%w: tls.cert_file is set without tls.key_file", ErrCredentials)
	case cfg.TLS.KeyFile != "" && cfg.TLS.CertFile == "":
		return fmt.Errorf("%w: tls.key_file is set without tls.cert_file", ErrCredentials)
	}
	return nil
}

// presented says, for an error, which credentials a connection presented: their kind and
// files, never a secret. For example: as user "alice" with a password, trusting the CAs of
// ca.pem; with the client certificate client.pem; without credentials.
func presented(cfg config.NATS) string {
	var parts []string
	switch {
	case cfg.CredsFile != "":
		parts = append(parts, "with the credentials file "+cfg.CredsFile)
	case cfg.NKeyFile != "":
		parts = append(parts, "with the nkey seed file "+cfg.NKeyFile)
	case cfg.User != "" && cfg.Password != "":
		parts = append(parts, "as user "+strconv.Quote(cfg.User)+" with a password")
	case cfg.User != "":
		parts = append(parts, "as user "+strconv.Quote(cfg.User)+" without a password")
	case cfg.Token != "":
		parts = append(parts, "with a token")
	case urlUserInfo(cfg.URL):
		parts = append(parts, "with the user info of the URL")
	case cfg.TLS.CertFile == "":
		parts = append(parts, "without credentials")
	}
	if cfg.TLS.CertFile != "" {
		parts = append(parts, "with the client certificate "+cfg.TLS.CertFile)
	}
	if cfg.TLS.CAFile != "" {
		parts = append(parts, "trusting the CAs of "+cfg.TLS.CAFile)
	}
	return strings.Join(parts, ", ")
}

// checkURL returns [ErrURL], wrapped, unless each URL of u, a comma-separated list as
// nats.Connect takes, parses as nats.Connect parses it. nats.Connect's own error would be
// url.Parse's, which quotes the URL whole, password included.
func checkURL(u string) error {
	for _, part := range strings.Split(u, ",") {
		part = strings.TrimSpace(part)
		s := part
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		_, err := url.Parse(s)
		if err == nil {
			continue
		}
		var ue *url.Error
		if !strings.Contains(part, "@") && errors.As(err, &ue) {
			return fmt.Errorf("%w %s: %v", ErrURL, part, ue.Err)
		}
		// The reason may quote part of the user info.
		return fmt.Errorf("%w %s", ErrURL, redact(part))
	}
	return nil
}

// urlUserInfo tells whether a URL of u, a comma-separated list, holds user info.
func urlUserInfo(u string) bool {
	return redact(u) != u
}

// redact hides the user info (a password, a token) of each URL of u, a comma-separated list
// as nats.Connect takes, for logs and errors: everything between the scheme (or the start) and
// the last "@" becomes "***". It needs no parsing, so a URL that does not parse (a password
// with a "/" or a "%" that is not escaped) is redacted too.
func redact(u string) string {
	if !strings.Contains(u, "@") {
		return u
	}
	parts := strings.Split(u, ",")
	for i, p := range parts {
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		start := 0
		if j := strings.Index(p, "://"); j >= 0 && j < at {
			start = j + len("://")
		}
		start += len(p[start:]) - len(strings.TrimLeft(p[start:], " "))
		parts[i] = p[:start] + "***" + p[at:]
	}
	return strings.Join(parts, ",")
}
