package streams_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/authtest"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// authCase is one configuration presented to a server that requires one authentication
// method. In yaml and env, $URL is the server's URL (its host and port: $HOSTPORT) and the
// other $NAMEs are the method's files and secrets.
type authCase struct {
	name    string
	yaml    string   // the nats section's fields, one a line, indented by two spaces
	env     []string // JETFOLD_ variables, NAME=value
	wantErr error    // errors.Is; nil with wantMsg "": the connection works
	wantMsg string   // a part of the error's message
	// loadMsg, when set, is a part of the error that loading the configuration must fail with
	// (package config refuses it before any connection).
	loadMsg string
}

// authMethod is a server that requires one authentication method, and the cases tried on it.
type authMethod struct {
	name string
	// setup makes the credentials in dir, records the secrets and returns the server's options
	// and the $NAMEs of the cases.
	setup func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string)
	cases []authCase
}

// TestConnectAuth: for each authentication method, a nats-server that requires it accepts the
// connection that [streams.Connect] makes from a configuration file loaded by config.Load, with
// the credentials in the file, in files it names or in JETFOLD_ variables, and JetStream then
// works through it (a stream, a publish, a KV bucket). Wrong or missing credentials fail with an
// error that says what was presented; no error and no log line holds a secret (a password, a
// token, a seed, a JWT, a private key), wrong ones included.
func TestConnectAuth(t *testing.T) {
	for _, m := range authMethods() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			secrets := authtest.Secrets{}
			opts, vars := m.setup(t, dir, secrets)
			s := authtest.Server(t, opts)
			vars["HOSTPORT"] = s.Addr().String()
			vars["URL"] = "nats://" + vars["HOSTPORT"]
			for _, tt := range m.cases {
				t.Run(tt.name, func(t *testing.T) {
					tryAuthCase(t, tt, dir, vars, secrets)
				})
			}
		})
	}
}

// tryAuthCase loads tt's configuration, connects with it and checks the outcome.
func tryAuthCase(t *testing.T, tt authCase, dir string, vars map[string]string, secrets authtest.Secrets) {
	expand := func(s string) string { return os.Expand(s, func(k string) string { return vars[k] }) }
	yaml := "nats:\n" + expand(tt.yaml) +
		"streams:\n  - {name: AUTH, subjects: [\"auth.>\"], storage: memory}\n"
	path := authtest.WriteFile(t, t.TempDir(), "jetfold.yaml", yaml)
	environ := []string{}
	for _, e := range tt.env {
		environ = append(environ, expand(e))
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: environ})
	if tt.loadMsg != "" {
		if err == nil || !strings.Contains(err.Error(), tt.loadMsg) {
			t.Fatalf("load: %v, want an error with %q", err, tt.loadMsg)
		}
		if what := secrets.Find(err.Error()); what != "" {
			t.Errorf("the error holds the %s: %v", what, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("load:\n%s\n%v", yaml, err)
	}
	var logs natstest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := streams.Connect(ctx, cfg.NATS, streams.ConnectOptions{Logger: log, Timeout: 10 * time.Second})
	defer func() {
		if what := secrets.Find(logs.String()); what != "" {
			t.Errorf("the logs hold the %s:\n%s", what, logs.String())
		}
	}()
	if tt.wantErr != nil || tt.wantMsg != "" {
		if err == nil {
			c.Close()
			t.Fatal("connected, want an error")
		}
		t.Logf("error: %v", err)
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("error %v, want %v", err, tt.wantErr)
		}
		if want := expand(tt.wantMsg); !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want it to say %q", err, want)
		}
		if what := secrets.Find(err.Error()); what != "" {
			t.Errorf("the error holds the %s: %v", what, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	if what := secrets.Find(c.URL); what != "" {
		t.Errorf("Conn.URL %q holds the %s", c.URL, what)
	}
	useJetStream(ctx, t, c.JS, cfg.Streams)
}

// useJetStream creates the streams, publishes to the first one and writes and reads a key of a
// KV bucket.
func useJetStream(ctx context.Context, t *testing.T, js jetstream.JetStream, decl []config.Stream) {
	t.Helper()
	if err := streams.EnsureStreams(ctx, js, decl, nil); err != nil {
		t.Fatalf("streams: %v", err)
	}
	ack, err := js.Publish(ctx, "auth.event", []byte(`{"n":1}`))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Stream != decl[0].Name {
		t.Errorf("published to %s, want %s", ack.Stream, decl[0].Name)
	}
	kv, err := streams.EnsureBucket(ctx, js, "auth")
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("kv put: %v", err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatalf("kv get: %v", err)
	}
	if string(e.Value()) != "v" {
		t.Errorf("kv value %q, want v", e.Value())
	}
}

// authMethods lists the methods and their cases.
func authMethods() []authMethod {
	return []authMethod{
		{
			name: "creds file",
			setup: func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string) {
				op := authtest.NewOperator(t)
				other := authtest.NewOperator(t) // its users are strangers to the server
				return op.Options(t), map[string]string{
					"CREDS":       op.User(t, secrets, "", dir, "user.creds"),
					"OTHER_CREDS": other.User(t, secrets, "other ", dir, "other.creds"),
					"NOT_CREDS":   authtest.WriteFile(t, dir, "not.creds", "not a credentials file\n"),
					"PASSWORD":    secrets.Add("password", randomSecret()),
				}
			},
			cases: []authCase{
				{name: "in the file", yaml: "  url: $URL\n  creds_file: $CREDS\n"},
				{name: "from the environment", yaml: "  url: $URL\n", env: []string{"JETFOLD_NATS_CREDS_FILE=$CREDS"}},
				{name: "of another operator", yaml: "  url: $URL\n  creds_file: $OTHER_CREDS\n",
					wantErr: nats.ErrAuthorization, wantMsg: "with the credentials file "},
				{name: "not a creds file", yaml: "  url: $URL\n  creds_file: $NOT_CREDS\n",
					wantMsg: "with the credentials file "},
				{name: "missing file", yaml: "  url: $URL\n  creds_file: /nonexistent/user.creds\n",
					wantErr: os.ErrNotExist, wantMsg: "/nonexistent/user.creds"},
				{name: "none", yaml: "  url: $URL\n", wantErr: nats.ErrAuthorization, wantMsg: "(without credentials)"},
				{name: "and a password", yaml: "  url: $URL\n  creds_file: $CREDS\n  user: alice\n",
					env: []string{"JETFOLD_NATS_PASSWORD=$PASSWORD"}, loadMsg: "nats.user is set with nats.creds_file"},
			},
		},
		{
			name: "nkey seed file",
			setup: func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string) {
				key := authtest.NewNKey(t, secrets)
				other := authtest.NewNKey(t, authtest.Secrets{})
				secrets.Add("other nkey seed", other.Seed)
				return key.Options(), map[string]string{
					"SEED":       key.WriteSeed(t, dir, "user.nk"),
					"OTHER_SEED": other.WriteSeed(t, dir, "other.nk"),
					"NOT_SEED":   authtest.WriteFile(t, dir, "not.nk", "SUnot-a-seed\n"),
				}
			},
			cases: []authCase{
				{name: "in the file", yaml: "  url: $URL\n  nkey_file: $SEED\n"},
				{name: "from the environment", yaml: "  url: $URL\n", env: []string{"JETFOLD_NATS_NKEY_FILE=$SEED"}},
				{name: "another key", yaml: "  url: $URL\n  nkey_file: $OTHER_SEED\n",
					wantErr: nats.ErrAuthorization, wantMsg: "with the nkey seed file "},
				{name: "not a seed", yaml: "  url: $URL\n  nkey_file: $NOT_SEED\n", wantMsg: "nkey seed file "},
				{name: "missing file", yaml: "  url: $URL\n  nkey_file: /nonexistent/user.nk\n",
					wantErr: os.ErrNotExist, wantMsg: "/nonexistent/user.nk"},
				{name: "none", yaml: "  url: $URL\n", wantErr: nats.ErrAuthorization, wantMsg: "(without credentials)"},
			},
		},
		{
			name: "user and password",
			setup: func(t *testing.T, _ string, secrets authtest.Secrets) (*server.Options, map[string]string) {
				pw := secrets.Add("password", randomSecret())
				wrong := secrets.Add("wrong password", pw[:len(pw)-1]+"x") // a typo is close to the password
				return authtest.UserPassword("alice", pw), map[string]string{
					"PASSWORD": pw, "WRONG": wrong,
					// Unescaped, a "%" that starts no escape makes the URL unparsable.
					"BAD_URL_PASSWORD": secrets.Add("password of a URL that does not parse", "%zz"+pw),
				}
			},
			cases: []authCase{
				{name: "in the file", yaml: "  url: $URL\n  user: alice\n  password: $PASSWORD\n"},
				{name: "password from the environment", yaml: "  url: $URL\n  user: alice\n", env: []string{"JETFOLD_NATS_PASSWORD=$PASSWORD"}},
				{name: "both from the environment", yaml: "  url: $URL\n",
					env: []string{"JETFOLD_NATS_USER=alice", "JETFOLD_NATS_PASSWORD=$PASSWORD"}},
				{name: "in the URL", yaml: "  url: nats://alice:$PASSWORD@$HOSTPORT\n"},
				{name: "wrong password", yaml: "  url: $URL\n  user: alice\n", env: []string{"JETFOLD_NATS_PASSWORD=$WRONG"},
					wantErr: nats.ErrAuthorization, wantMsg: `(as user "alice" with a password)`},
				{name: "wrong password in the URL", yaml: "  url: nats://alice:$WRONG@$HOSTPORT\n",
					wantErr: nats.ErrAuthorization, wantMsg: "nats://***@$HOSTPORT"},
				{name: "URL that does not parse", yaml: "  url: nats://alice:$BAD_URL_PASSWORD@$HOSTPORT\n",
					wantErr: streams.ErrURL, wantMsg: "invalid NATS URL nats://***@"},
				{name: "no password", yaml: "  url: $URL\n  user: alice\n",
					wantErr: nats.ErrAuthorization, wantMsg: `(as user "alice" without a password)`},
				{name: "none", yaml: "  url: $URL\n", wantErr: nats.ErrAuthorization, wantMsg: "(without credentials)"},
				{name: "password without user", yaml: "  url: $URL\n", env: []string{"JETFOLD_NATS_PASSWORD=$PASSWORD"},
					loadMsg: "nats.password is set without nats.user"},
				{name: "user in the URL and the file", yaml: "  url: nats://alice:$PASSWORD@$HOSTPORT\n  user: alice\n  password: $PASSWORD\n",
					wantErr: streams.ErrCredentials, wantMsg: "user and the user info of url are set together"},
			},
		},
		{
			name: "token",
			setup: func(t *testing.T, _ string, secrets authtest.Secrets) (*server.Options, map[string]string) {
				tok := secrets.Add("token", randomSecret())
				return authtest.Token(tok), map[string]string{
					"TOKEN": tok, "WRONG": secrets.Add("wrong token", tok[:len(tok)-1]+"x"),
				}
			},
			cases: []authCase{
				{name: "in the file", yaml: "  url: $URL\n  token: $TOKEN\n"},
				{name: "from the environment", yaml: "  url: $URL\n", env: []string{"JETFOLD_NATS_TOKEN=$TOKEN"}},
				{name: "in the URL", yaml: "  url: nats://$TOKEN@$HOSTPORT\n"},
				{name: "wrong token", yaml: "  url: $URL\n", env: []string{"JETFOLD_NATS_TOKEN=$WRONG"},
					wantErr: nats.ErrAuthorization, wantMsg: "(with a token)"},
				{name: "wrong token in the URL", yaml: "  url: nats://$WRONG@$HOSTPORT\n",
					wantErr: nats.ErrAuthorization, wantMsg: "nats://***@"},
				{name: "none", yaml: "  url: $URL\n", wantErr: nats.ErrAuthorization, wantMsg: "(without credentials)"},
			},
		},
		{
			name: "tls client certificate",
			setup: func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string) {
				pki := authtest.NewPKI(t, secrets, "", dir)
				other := authtest.NewPKI(t, secrets, "other ", filepath.Join(dir, mkdir(t, dir, "other")))
				return pki.Options(), map[string]string{
					"CA": pki.CAFile, "CERT": pki.CertFile, "KEY": pki.KeyFile,
					"OTHER_CA": other.CAFile, "OTHER_CERT": other.CertFile, "OTHER_KEY": other.KeyFile,
				}
			},
			cases: []authCase{
				{name: "in the file", yaml: "  url: $URL\n  tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}\n"},
				{name: "tls scheme", yaml: "  url: tls://$HOSTPORT\n  tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}\n"},
				{name: "from the environment", yaml: "  url: $URL\n",
					env: []string{"JETFOLD_NATS_TLS_CA_FILE=$CA", "JETFOLD_NATS_TLS_CERT_FILE=$CERT", "JETFOLD_NATS_TLS_KEY_FILE=$KEY"}},
				{name: "no client certificate", yaml: "  url: $URL\n  tls: {ca_file: $CA}\n", wantMsg: "certificate"},
				{name: "certificate of another CA", yaml: "  url: $URL\n  tls: {ca_file: $CA, cert_file: $OTHER_CERT, key_file: $OTHER_KEY}\n",
					wantMsg: "(with the client certificate $OTHER_CERT, trusting the CAs of $CA)"},
				{name: "server of an untrusted CA", yaml: "  url: $URL\n  tls: {ca_file: $OTHER_CA, cert_file: $CERT, key_file: $KEY}\n",
					wantMsg: "certificate signed by unknown authority"},
				{name: "no TLS", yaml: "  url: $URL\n", wantMsg: "(without credentials)"},
				{name: "certificate without its key", yaml: "  url: $URL\n  tls: {ca_file: $CA, cert_file: $CERT}\n",
					loadMsg: "nats.tls.cert_file is set without nats.tls.key_file"},
				{name: "key in place of the certificate", yaml: "  url: $URL\n  tls: {ca_file: $CA, cert_file: $KEY, key_file: $KEY}\n",
					wantMsg: "client certificate"},
			},
		},
	}
}

// mkdir makes the directory name in dir and returns name.
func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	return name
}

// randomSecret returns 24 random letters and digits: a password or a token that no other text
// of a test holds by chance.
func randomSecret() string {
	return "s3cr3t" + rand.Text()[:18]
}

// TestReconnectAfterRefusal: when the server stops accepting the credentials of a running
// connection (rotated on the server first), the connection keeps trying, logging each refusal
// without a secret, and is back once the server accepts them again.
func TestReconnectAfterRefusal(t *testing.T) {
	secrets := authtest.Secrets{}
	pw := secrets.Add("password", randomSecret())
	rotated := secrets.Add("rotated password", randomSecret())
	opts := authtest.UserPassword("alice", pw)
	s := authtest.Server(t, opts)
	var logs natstest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	disconnected, reconnected := make(chan struct{}, 1), make(chan struct{}, 1)
	c, err := streams.Connect(context.Background(), config.NATS{URL: s.ClientURL(), User: "alice", Password: pw}, streams.ConnectOptions{
		Logger:       log,
		OnDisconnect: func() { signal(disconnected) },
		OnReconnect:  func() { signal(reconnected) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	reload := func(password string) {
		t.Helper()
		o := opts.Clone()
		o.Users = []*server.User{{Username: "alice", Password: password}}
		if err := s.ReloadOptions(o); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	reload(rotated)
	waitFor(t, disconnected, "the disconnection")
	// nats.go gives up at the second refusal unless told otherwise: wait for three.
	natstest.Eventually(t, 30*time.Second, "three refusals", func() bool {
		if c.NC.IsClosed() {
			t.Fatalf("the connection closed after the refusals:\n%s", logs.String())
		}
		return strings.Count(logs.String(), `msg="nats refused the credentials: retrying" credentials="as user \"alice\" with a password"`) >= 3
	})
	reload(pw)
	waitFor(t, reconnected, "the reconnection")
	if _, err := c.JS.AccountInfo(context.Background()); err != nil {
		t.Fatalf("JetStream after the reconnection: %v", err)
	}
	if what := secrets.Find(logs.String()); what != "" {
		t.Errorf("the logs hold the %s:\n%s", what, logs.String())
	}
}

// signal sends on ch unless a signal is already pending.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitFor waits up to 30s for a signal on ch.
func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s after 30s", what)
	}
}
