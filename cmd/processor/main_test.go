package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts run `processor` as a command: testscript re-executes this test
// binary under that name, which then runs [Main] as the real binary would.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"processor": func() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/*.txtar. Each script gets its own nats-server with JetStream,
// whose client URL is in $NATS_URL; scripts point the processor at it with
// `env JETFOLD_NATS_URL=$NATS_URL`.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata",
		Setup: setupNATS,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfor":   cmdWaitFor,
			"streamlen": cmdStreamLen,
		},
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
	})
}

// setupNATS starts a nats-server with JetStream for one script, on a random loopback port and
// a store under the script's work dir, and exports its URL as NATS_URL.
func setupNATS(env *testscript.Env) error {
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(env.WorkDir, ".nats"), NoLog: true, NoSigs: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("nats-server not ready after 10s")
	}
	env.Defer(func() { s.Shutdown(); s.WaitForShutdown() })
	env.Setenv("NATS_URL", s.ClientURL())
	env.Setenv("NATS_ADDR", s.Addr().String()) // host:port, for a listener that must find its address taken
	return nil
}

// waitForTimeout bounds how long waitfor polls.
const waitForTimeout = 20 * time.Second

// cmdWaitFor implements `waitfor BUCKET KEY REGEXP`: it polls the KV bucket on $NATS_URL, with
// its own connection (not through the processor), until the value of KEY matches REGEXP, and
// fails the script after 20s. KEY must be a plain KV key (letters, digits, -, _, /, =).
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! waitfor")
	}
	if len(args) != 3 {
		ts.Fatalf("usage: waitfor BUCKET KEY REGEXP")
	}
	bucket, key := args[0], args[1]
	re, err := regexp.Compile(args[2])
	ts.Check(err)
	js, closeJS := scriptJS(ts)
	defer closeJS()

	ctx, cancel := context.WithTimeout(context.Background(), waitForTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	last := "no value"
	for {
		if kv, err := js.KeyValue(ctx, bucket); err == nil {
			if e, err := kv.Get(ctx, key); err == nil {
				if re.Match(e.Value()) {
					ts.Logf("%s/%s = %s", bucket, key, e.Value())
					return
				}
				last = string(e.Value())
			} else {
				last = err.Error()
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			ts.Fatalf("waitfor %s %s %q: not matched after %s (last: %s)", bucket, key, args[2], waitForTimeout, last)
		case <-tick.C:
		}
	}
}

// cmdStreamLen implements `streamlen STREAM N`: the stream on $NATS_URL must hold exactly N
// messages, read with the script's own connection.
func cmdStreamLen(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: streamlen STREAM N")
	}
	want, err := strconv.ParseUint(args[1], 10, 64)
	ts.Check(err)
	js, closeJS := scriptJS(ts)
	defer closeJS()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, args[0])
	ts.Check(err)
	got := s.CachedInfo().State.Msgs
	switch {
	case neg && got == want:
		ts.Fatalf("stream %s holds %d messages, want another number", args[0], got)
	case !neg && got != want:
		ts.Fatalf("stream %s holds %d messages, want %d", args[0], got, want)
	}
}

// scriptJS connects to the script's server ($NATS_URL); call the returned func when done.
func scriptJS(ts *testscript.TestScript) (jetstream.JetStream, func()) {
	nc, err := nats.Connect(ts.Getenv("NATS_URL"))
	ts.Check(err)
	js, err := jetstream.New(nc)
	ts.Check(err)
	return js, nc.Close
}
