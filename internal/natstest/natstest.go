package natstest

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// LongTests is the environment variable that selects the long form of the heavy tests
// (JETFOLD_LONG_TESTS=1): more events, more faults. The default form of each still fails
// for the bug it targets; the long one looks harder, at several times the cost.
const LongTests = "JETFOLD_LONG_TESTS"

// Long tells whether JETFOLD_LONG_TESTS=1 asks for the long form of the heavy tests.
func Long() bool { return os.Getenv(LongTests) == "1" }

// PublishWindow is how many messages [Publish] keeps awaiting their acknowledgement.
const PublishWindow = 1024

// AsyncMaxPending is the async publish limit of the JetStream contexts of [JetStream] and
// [Connect], as in streams.Connect: a pipeline under test commits through windows of
// streams.DefaultWindow messages on the test's context, several pipelines at once, and a
// test may publish through a window of its own meanwhile. Past the limit nats.go waits
// 200 ms, then fails the publish (nats: stalled with too many outstanding async published
// messages), which a loaded machine reaches easily.
const AsyncMaxPending = 16384

// asyncTimeout fails an async publish whose acknowledgement does not come, as streams.Connect
// does (with more time for a loaded machine): a wait for it ends.
const asyncTimeout = 30 * time.Second

// Server starts a nats-server with JetStream on a random loopback port and a temporary store,
// shut down when the test ends.
func Server(t testing.TB) *server.Server {
	t.Helper()
	return ServerAt(t, t.TempDir(), -1)
}

// ServerAt starts a nats-server with JetStream on dir and port (-1: random).
func ServerAt(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	return ServerWith(t, &server.Options{Port: port, StoreDir: dir})
}

// ServerWith starts a nats-server with JetStream with opts completed for tests (loopback,
// quiet, a temporary store unless StoreDir is set, a random port unless Port is set).
func ServerWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.JetStream, opts.NoLog, opts.NoSigs = "127.0.0.1", true, true, true
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Connect connects to s and returns the connection and a JetStream context, closed when the
// test ends.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, JetStream(t, nc)
}

// JetStream returns a JetStream context on nc with room for [AsyncMaxPending] async publishes.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(AsyncMaxPending),
		jetstream.WithPublishAsyncTimeout(asyncTimeout))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// Publish publishes payloads to subject through a window of [PublishWindow] messages
// awaiting their acknowledgement (streams.Window), so that it stays within the async limit of
// js however many there are, and fails the test unless every one is acknowledged.
func Publish(t testing.TB, js jetstream.JetStream, subject string, payloads [][]byte) {
	t.Helper()
	ctx := context.Background() // each publish ends: acknowledged, refused or timed out
	w := streams.NewWindow(js, PublishWindow)
	for i, p := range payloads {
		if err := w.Publish(ctx, &nats.Msg{Subject: subject, Data: p}); err != nil {
			t.Fatalf("publish %d of %d: %v", i, len(payloads), err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("publish %d messages: %v", len(payloads), err)
	}
}

// Eventually polls cond every 10ms until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Progress waits until done holds, polling every 100ms. It fails the test when progress, a
// measure of the work done that grows while the work advances (a checkpoint), has not grown
// for stall, or when limit has passed in all: how long it waits depends on the work left, not
// on one figure for a loaded and an idle machine.
func Progress(t testing.TB, what string, stall, limit time.Duration, progress func() uint64, done func() bool) {
	t.Helper()
	began := time.Now()
	best, at := progress(), began
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		<-tick.C
		now := time.Now()
		if p := progress(); p > best {
			best, at = p, now
		}
		switch {
		case now.Sub(at) > stall:
			t.Fatalf("waiting for %s: no progress for %s (at %d, %s in)", what, stall, best, now.Sub(began).Round(time.Millisecond))
		case now.Sub(began) > limit:
			t.Fatalf("waiting for %s: not done after %s (at %d)", what, limit, best)
		}
	}
}

// ReadAll returns every message of stream (optionally filtered by subject), in order: as
// many as the consumer it reads with had pending when it was created, however long the
// server takes to deliver them (a cluster that just elected a leader may pause).
func ReadAll(t testing.TB, js jetstream.JetStream, stream, subject string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if subject != "" {
		cfg.FilterSubjects = []string{subject}
	}
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		t.Fatalf("consumer %s: %v", stream, err)
	}
	info := c.CachedInfo()
	if info == nil {
		t.Fatalf("consumer %s: no info", stream)
	}
	want := int(info.NumPending)
	out := make([]jetstream.Msg, 0, want)
	for len(out) < want && ctx.Err() == nil {
		batch, err := c.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("fetch %s: %v", stream, err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
	}
	if len(out) < want {
		t.Fatalf("reading %s: %d of %d messages: %v", stream, len(out), want, ctx.Err())
	}
	return out
}

// Buffer is a bytes.Buffer that several goroutines (a logger's, a child process's output, the
// test's) may use at once.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
