package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jetfold/jetfold/internal/authtest"
	"github.com/jetfold/jetfold/internal/natstest"
)

// secretsPipeline is the configuration of the secrets tests, after the nats section: a fold
// of orders per user, following its stream, with the HTTP listener on a free port.
const secretsPipeline = `http: {listen: "127.0.0.1:0"}
streams:
  - {name: SHOP, subjects: ["shop.>"]}
pipelines:
  - name: totals
    source: {stream: SHOP, start: all, stop: follow}
    key: event.user_id
    batch: {max_wait: 20ms}
    operators:
      - fold:
          projection: totals
          initial: {count: 0, amount: 0}
          on:
            order: {count: state.count + 1, amount: state.amount + event.amount}
`

// secretsEvents are the events published, whose fold is secretsTotal.
const secretsEvents = `{"type": "order", "user_id": "alice", "amount": 1}
{"type": "order", "user_id": "alice", "amount": 2}
`

// secretsTotal is alice's state once secretsEvents are folded.
const secretsTotal = `{"amount":3,"count":2}`

// secretsCase is a processor configured with credentials, against a server that requires
// them. In nats and env, $URL is the URL of a proxy in front of the server (its host and port:
// $HOSTPORT) and the other $NAMEs are the case's files and secrets.
type secretsCase struct {
	name string
	// setup makes the credentials in dir, records every secret in secrets, and returns the
	// server's options and the $NAMEs.
	setup func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string)
	nats  string   // the nats section's fields, one a line, indented by two spaces
	env   []string // JETFOLD_ variables, NAME=value
	// wantErr, when set, is a part of the error that every command prints: the credentials
	// do not get the processor in, and it exits 1.
	wantErr string
}

// TestSecretsNeverShown: credentials never appear in what the processor shows. For each way
// of authenticating (a password from the environment or in the URL, a token over TLS with a
// client certificate, a credentials file), `processor publish`, `run` (logging at debug
// level, through a NATS disconnection and reconnection, and stopped by SIGINT), `status`,
// `get` and `validate` run as child processes against a server that requires them; and so do
// run and status with wrong credentials, which fail with an error that says which credentials
// were presented. Everything they print, and every answer of the HTTP listener while run runs
// (/v1/pipelines, /v1/projections/..., /metrics, /healthz, /readyz, also while NATS is
// disconnected), is searched for each secret: the password, the token, the creds file's JWT
// and seed, the TLS private key, and the wrong ones.
func TestSecretsNeverShown(t *testing.T) {
	userPassword := func(t *testing.T, _ string, secrets authtest.Secrets) (*server.Options, map[string]string) {
		pw := secrets.Add("password", randomSecret())
		return authtest.UserPassword("alice", pw), map[string]string{
			"PASSWORD": pw, "WRONG": secrets.Add("wrong password", pw[:len(pw)-1]+"x"),
		}
	}
	tokenTLS := func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string) {
		tok := secrets.Add("token", randomSecret())
		pki := authtest.NewPKI(t, secrets, "", dir)
		opts := pki.Options()
		opts.Authorization = tok
		return opts, map[string]string{
			"TOKEN": tok, "WRONG": secrets.Add("wrong token", tok[:len(tok)-1]+"x"),
			"CA": pki.CAFile, "CERT": pki.CertFile, "KEY": pki.KeyFile,
		}
	}
	creds := func(t *testing.T, dir string, secrets authtest.Secrets) (*server.Options, map[string]string) {
		op, other := authtest.NewOperator(t), authtest.NewOperator(t)
		return op.Options(t), map[string]string{
			"CREDS":       op.User(t, secrets, "", dir, "user.creds"),
			"OTHER_CREDS": other.User(t, secrets, "other ", dir, "other.creds"),
			"PASSWORD":    secrets.Add("password", randomSecret()),
			"TOKEN":       secrets.Add("token", randomSecret()),
		}
	}
	tests := []secretsCase{
		{name: "password from the environment", setup: userPassword,
			nats: "  url: $URL\n  user: alice\n", env: []string{"JETFOLD_NATS_PASSWORD=$PASSWORD"}},
		{name: "password in the URL", setup: userPassword,
			nats: "  url: nats://alice:$PASSWORD@$HOSTPORT\n"},
		{name: "token in the file over TLS with a client certificate", setup: tokenTLS,
			nats: "  url: $URL\n  token: $TOKEN\n  tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}\n"},
		{name: "creds file", setup: creds,
			nats: "  url: $URL\n", env: []string{"JETFOLD_NATS_CREDS_FILE=$CREDS"}},
		{name: "wrong password", setup: userPassword,
			nats: "  url: $URL\n  user: alice\n", env: []string{"JETFOLD_NATS_PASSWORD=$WRONG"},
			wantErr: `(as user "alice" with a password): nats: Authorization Violation`},
		{name: "wrong password in the URL", setup: userPassword,
			nats:    "  url: nats://alice:$WRONG@$HOSTPORT\n",
			wantErr: `connect nats://***@$HOSTPORT (with the user info of the URL): nats: Authorization Violation`},
		{name: "wrong token", setup: tokenTLS,
			nats:    "  url: $URL\n  tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}\n",
			env:     []string{"JETFOLD_NATS_TOKEN=$WRONG"},
			wantErr: `(with a token, with the client certificate $CERT, trusting the CAs of $CA): nats: Authorization Violation`},
		{name: "creds of another operator", setup: creds,
			nats: "  url: $URL\n", env: []string{"JETFOLD_NATS_CREDS_FILE=$OTHER_CREDS"},
			wantErr: `(with the credentials file $OTHER_CREDS): nats: Authorization Violation`},
		{name: "password, token and creds file at once", setup: creds,
			nats:    "  url: $URL\n  user: alice\n  creds_file: $CREDS\n",
			env:     []string{"JETFOLD_NATS_PASSWORD=$PASSWORD", "JETFOLD_NATS_TOKEN=$TOKEN"},
			wantErr: "nats.token is set with nats.creds_file: one authentication method at a time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			secrets := authtest.Secrets{}
			opts, vars := tt.setup(t, dir, secrets)
			s := authtest.Server(t, opts)
			proxy := natstest.NewProxy(t, s.Addr().String())
			vars["URL"] = proxy.URL()
			vars["HOSTPORT"] = strings.TrimPrefix(proxy.URL(), "nats://")
			expand := func(s string) string { return os.Expand(s, func(k string) string { return vars[k] }) }
			p := &processor{t: t, dir: dir, secrets: secrets,
				config: authtest.WriteFile(t, dir, "p.yaml", "nats:\n"+expand(tt.nats)+secretsPipeline)}
			for _, e := range tt.env {
				p.env = append(p.env, expand(e))
			}
			authtest.WriteFile(t, dir, "events.jsonl", secretsEvents)
			if tt.wantErr != "" {
				want := expand(tt.wantErr)
				p.fails(want, "run", "--log-level", "debug")
				p.fails(want, "status")
				return
			}
			p.succeeds("validate")
			p.succeeds("publish", "--subject", "shop.orders", "-q", "events.jsonl")
			p.runAndAsk(proxy)
			p.succeeds("status")
			if out := p.succeeds("get", "totals", "alice"); strings.TrimSpace(out) != secretsTotal {
				t.Errorf("get: %q, want %s", out, secretsTotal)
			}
		})
	}
}

// TestValidateHidesSecrets: a configuration whose password or token is wrong in shape (not a
// string, a misspelt variable, YAML that does not parse around it) is reported by `processor
// validate` without the value.
func TestValidateHidesSecrets(t *testing.T) {
	secret := randomSecret()
	tests := []struct {
		name string
		nats string
		env  []string
	}{
		{name: "a list", nats: "  password: [SECRET, x]\n"},
		{name: "a map", nats: "  token: {SECRET: x}\n"},
		{name: "unclosed quote", nats: "  password: \"SECRET\n"},
		{name: "unclosed flow list", nats: "  token: [SECRET\n"},
		{name: "a colon after it", nats: "  password: SECRET: x\n"},
		{name: "a tab after it", nats: "  password: SECRET\n\tuser: x\n"},
		{name: "the key twice", nats: "  token: SECRET\n  token: SECRET\n"},
		{name: "a misspelt key", nats: "  pasword: SECRET\n"},
		{name: "a misspelt variable", env: []string{"JETFOLD_NATS_PASWORD=SECRET"}},
		{name: "a variable past the field", env: []string{"JETFOLD_NATS_TOKEN_X=SECRET"}},
		// Valid to package config today: connecting refuses it (streams.ErrCredentials).
		{name: "a password without user", env: []string{"JETFOLD_NATS_PASSWORD=SECRET"}},
		{name: "an unknown anchor", nats: "  password: *SECRET\n"},
		{name: "a tag that does not fit", nats: "  password: !!int SECRET\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := "nats:\n  url: nats://127.0.0.1:1\n" + strings.ReplaceAll(tt.nats, "SECRET", secret) + secretsPipeline
			p := &processor{t: t, dir: dir, secrets: authtest.Secrets{"secret": secret},
				config: authtest.WriteFile(t, dir, "p.yaml", cfg)}
			for _, e := range tt.env {
				p.env = append(p.env, strings.ReplaceAll(e, "SECRET", secret))
			}
			out, code := p.invoke("validate")
			t.Logf("exit %d:\n%s", code, out)
		})
	}
}

// processor runs the processor as a child process (the test binary under the name processor,
// which [TestMain] sets up) on one configuration, and fails the test when anything it prints
// holds one of the secrets.
type processor struct {
	t       *testing.T
	dir     string // the working directory
	config  string
	env     []string // JETFOLD_ variables, beside the test's environment without its own
	secrets authtest.Secrets
}

// command returns the command line args of the processor, with the configuration.
func (p *processor) command(ctx context.Context, args ...string) *exec.Cmd {
	p.t.Helper()
	bin, err := exec.LookPath("processor")
	if err != nil {
		p.t.Fatalf("the processor command that TestMain sets up: %v", err)
	}
	cmd := exec.CommandContext(ctx, bin, append(args[:1:1], append([]string{"-c", p.config}, args[1:]...)...)...)
	cmd.Dir = p.dir
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "JETFOLD_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, p.env...)
	return cmd
}

// invoke runs the processor with args to its end, and returns what it printed (stdout, then
// stderr) and its exit code, after checking that it shows no secret.
func (p *processor) invoke(args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := p.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		p.t.Fatalf("processor %s: %v", strings.Join(args, " "), err)
	}
	out := stdout.String() + stderr.String()
	p.noSecret("processor "+args[0], out)
	return out, code
}

// succeeds runs the processor with args, which must exit 0, and returns its stdout and stderr.
func (p *processor) succeeds(args ...string) string {
	p.t.Helper()
	out, code := p.invoke(args...)
	if code != 0 {
		p.t.Fatalf("processor %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// fails runs the processor with args, which must exit 1 with an error that says want.
func (p *processor) fails(want string, args ...string) {
	p.t.Helper()
	out, code := p.invoke(args...)
	if code != 1 || !strings.Contains(out, want) {
		p.t.Errorf("processor %s: exit %d, want 1 and an error that says %q:\n%s", strings.Join(args, " "), code, want, out)
	}
}

// noSecret fails the test when text, shown by what, holds a secret.
func (p *processor) noSecret(what, text string) {
	p.t.Helper()
	if s := p.secrets.Find(text); s != "" {
		p.t.Errorf("%s shows the %s:\n%s", what, s, text)
	}
}

// httpListening is the log line of the HTTP listener's address.
var httpListening = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// runAndAsk runs `processor run` at debug level until the events are folded, asks each HTTP
// endpoint, cuts NATS (the proxy) and asks again, restores it, waits for the reconnection and
// stops the processor with SIGINT; everything it printed and answered must hold no secret.
func (p *processor) runAndAsk(proxy *natstest.Proxy) {
	t := p.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.command(ctx, "run", "--log-level", "debug")
	var stdout, stderr natstest.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill() // the test failed before SIGINT
			<-exited
		}
		p.noSecret("processor run's stdout", stdout.String())
		p.noSecret("processor run's stderr", stderr.String())
	}()
	running := func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("processor run exited: %v\n%s%s", err, stdout.String(), stderr.String())
		default:
		}
		return true
	}

	var addr string
	natstest.Eventually(t, 30*time.Second, "the HTTP listener's address in the log", func() bool {
		m := httpListening.FindStringSubmatch(stderr.String())
		if m != nil {
			addr = m[1]
		}
		return running() && m != nil
	})
	base := "http://" + addr
	natstest.Eventually(t, 30*time.Second, "alice's total over HTTP", func() bool {
		body, code := p.get(base + "/v1/projections/totals/alice")
		return running() && code == http.StatusOK && strings.Contains(body, secretsTotal)
	})
	ask := func(when string) {
		for _, path := range []string{"/v1/pipelines", "/v1/projections/totals", "/v1/projections/totals/alice",
			"/v1/projections/totals/alice?at=1", "/v1/projections/nope/x", "/metrics", "/healthz", "/readyz"} {
			body, code := p.get(base + path)
			t.Logf("%s: GET %s: %d, %d bytes", when, path, code, len(body))
		}
	}
	ask("connected")

	proxy.Cut()
	natstest.Eventually(t, 30*time.Second, "the disconnection in the log", func() bool {
		return running() && strings.Contains(stderr.String(), `msg="nats disconnected"`)
	})
	natstest.Eventually(t, 30*time.Second, "/readyz to answer 503", func() bool {
		_, code := p.get(base + "/readyz")
		return running() && code == http.StatusServiceUnavailable
	})
	ask("disconnected")
	proxy.Restore()
	natstest.Eventually(t, 30*time.Second, "the reconnection in the log", func() bool {
		return running() && strings.Contains(stderr.String(), `msg="nats reconnected"`)
	})
	ask("reconnected")

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("processor run: %v\n%s%s", err, stdout.String(), stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("processor run did not stop on SIGINT\n%s%s", stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "pipeline totals: checkpoint 2 of 2") {
		t.Errorf("run's summary without its checkpoint:\n%s", stdout.String())
	}
}

// get returns the body and status code of a GET of url, after checking that the body holds no
// secret (status 0: no answer).
func (p *processor) get(url string) (string, int) {
	p.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error(), 0
	}
	p.noSecret(fmt.Sprintf("GET %s (%d)", url, resp.StatusCode), string(b))
	return string(b), resp.StatusCode
}

// randomSecret returns 24 random letters and digits: a password or a token that no other text
// of a test holds by chance.
func randomSecret() string {
	return "s3cr3t" + rand.Text()[:18]
}
