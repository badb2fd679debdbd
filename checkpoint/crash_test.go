package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/streams"
)

// The crash tests run the real processor binary as a child process and break it, or NATS
// under it, at random moments, then compare every projection key, the derived events and the
// dead letters with an oracle computed from the published events. A failure prints its seed;
// JETFOLD_CRASH_SEED=<seed> replays the same kill times and workload.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// processor builds cmd/processor once per test binary.
func processor(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jetfold-crash-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "processor")
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", binPath, "github.com/jetfold/jetfold/cmd/processor").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("JETFOLD_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("JETFOLD_CRASH_SEED: %v", err)
		}
		s = n
	}
	t.Logf("seed %d (replay with JETFOLD_CRASH_SEED=%d)", s, s)
	return s
}

type crashEnv struct {
	t       *testing.T
	dir     string
	bin     string
	port    int
	store   string
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	payload [][]byte
}

func newCrashEnv(t *testing.T, events int, s uint64) *crashEnv {
	e := &crashEnv{t: t, dir: t.TempDir(), bin: processor(t), port: freePort(t)}
	if d := os.Getenv("JETFOLD_CRASH_DIR"); d != "" { // keep the store to look into a failure
		e.dir = d
	}
	e.store = filepath.Join(e.dir, "nats")
	e.srv = natstest.ServerAt(t, e.store, e.port)
	nc, err := nats.Connect(e.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	e.payload = shoptest.Workload(s, events, 1000)
	return e
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// config writes a configuration for the child; stop is follow or end.
// The processes have the default instance name (host-pid): a restarted one takes over the
// lease of its killed predecessor at once, because that process is gone.
func (e *crashEnv) config(url, stop string) string {
	return e.configAs(url, stop, "")
}

// configAs is config for a process named instance ("": the default name).
func (e *crashEnv) configAs(url, stop, instance string) string {
	name, proc := "default", "processor: {lease_ttl: 1s}\n"
	if instance != "" {
		name, proc = instance, fmt.Sprintf("processor: {instance: %s, lease_ttl: 1s}\n", instance)
	}
	y := fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n", url) + proc +
		shoptest.Streams + "pipelines:" + fmt.Sprintf(shoptest.Pipeline, "all", stop, 300, 500)
	path := filepath.Join(e.dir, name+"-"+stop+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

type child struct {
	cmd  *exec.Cmd
	done chan error
}

func (e *crashEnv) start(cfg string, env ...string) *child {
	e.t.Helper()
	return e.startLogged(cfg, "child.log", env...)
}

// startLogged starts the processor with its output appended to the file logName.
func (e *crashEnv) startLogged(cfg, logName string, env ...string) *child {
	e.t.Helper()
	log, err := os.OpenFile(filepath.Join(e.dir, logName), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "run", "-c", cfg, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); log.Close() }()
	return c
}

func (e *crashEnv) childLog() string { return e.logOf("child.log") }

func (e *crashEnv) logOf(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, name))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// publish publishes payloads[from:to] with ids, retrying while NATS is away.
func (e *crashEnv) publish(from, to int) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := from; i < to; {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var futs []jetstream.PubAckFuture
		var err error
		for j := i; j < to && err == nil; j++ {
			var f jetstream.PubAckFuture
			f, err = e.js.PublishAsync(shoptest.Subject, e.payload[j], jetstream.WithMsgID("ev-"+strconv.Itoa(j)))
			futs = append(futs, f)
		}
		for _, f := range futs {
			if err != nil {
				break
			}
			select {
			case <-f.Ok():
			case err = <-f.Err():
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("publish %d..%d: %v", from, to, err)
		}
		natstest.Eventually(e.t, 30*time.Second, "NATS back", e.nc.IsConnected)
	}
}

// checkpointSeq reads the pipeline's checkpoint (0 when there is none yet).
func (e *crashEnv) checkpointSeq() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, streams.CheckpointBucket)
	if err != nil {
		return 0
	}
	cp, err := checkpoint.NewStore(kv).Load(ctx, "carts")
	if err != nil {
		return 0
	}
	return cp.Seq
}

// finish runs the child with stop: end to the end of the stream and compares with the oracle.
func (e *crashEnv) finish(url string, what string, count int) {
	e.t.Helper()
	c := e.start(e.config(url, "end"))
	select {
	case err := <-c.done:
		if err != nil {
			e.t.Fatalf("final run: %v\n%s", err, e.childLog())
		}
	case <-time.After(120 * time.Second):
		_ = c.cmd.Process.Kill()
		e.t.Fatalf("final run did not finish\n%s", e.childLog())
	}
	e.verify(what, count)
}

// verify compares every key, derived event and dead letter with the oracle. The oracle folds
// the source stream as stored: retried publishes may store the events in another order than
// they were first sent, but each exactly once (message ids).
func (e *crashEnv) verify(what string, count int) {
	e.t.Helper()
	var stored [][]byte
	for _, m := range natstest.ReadAll(e.t, e.js, "SHOP", "") {
		stored = append(stored, m.Data())
	}
	if len(stored) != len(e.payload) {
		e.t.Fatalf("the source stream holds %d events, %d were published", len(stored), len(e.payload))
	}
	bad := shoptest.Mismatches(e.t, e.js, streams.DLQStream, shoptest.Oracle(stored))
	for i, m := range bad {
		if i == 20 {
			e.t.Errorf("... and %d more", len(bad)-20)
			break
		}
		e.t.Error(m)
	}
	e.t.Logf("%s survived: %d, events: %d, mismatches: %d", what, count, len(e.payload), len(bad))
}

func sizes(short bool) (events, breaks int) {
	if short {
		return 10_000, 6
	}
	return 50_000, 20
}

// TestCrashKill SIGKILLs the processor at random moments while events arrive.
func TestCrashKill(t *testing.T) {
	events, kills := sizes(testing.Short())
	s := seed(t)
	e := newCrashEnv(t, events, s)
	rng := rand.New(rand.NewPCG(s, 2))
	follow := e.config(e.srv.ClientURL(), "follow")

	// Publish at a pace that spreads the events over the kills.
	const chunk = 250
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(time.Duration(int64(kills) * int64(400*time.Millisecond) / int64(events/chunk)))
		defer tick.Stop()
		for i := 0; i < events; i += chunk {
			e.publish(i, min(i+chunk, events))
			<-tick.C
		}
	}()
	// Besides the kills from outside, the child kills itself now and then inside the commit
	// protocol (failpoints), where an outside kill rarely lands.
	failpoints := []string{"JETFOLD_FAILPOINTS=after-outputs,mid-keys,after-keys,after-checkpoint", "JETFOLD_FAILPOINT_P=0.02"}
	killed, selfKilled := 0, 0
	for published := false; killed < kills || !published; {
		c := e.start(follow, failpoints...)
		select {
		case err := <-c.done:
			if !killedBySignal(err) {
				t.Fatalf("the processor exited by itself: %v\n%s", err, e.childLog())
			}
			selfKilled++
		case <-time.After(time.Duration(50+rng.IntN(550)) * time.Millisecond):
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
		}
		killed++
		select {
		case <-pubDone:
			published = true
		default:
		}
	}
	t.Logf("checkpoint before the final run: %d; %d of the %d kills at failpoints", e.checkpointSeq(), selfKilled, killed)
	if b, _ := os.ReadFile(filepath.Join(e.dir, "child.log")); !strings.Contains(string(b), "taking over the lease of a process that is gone") {
		t.Error("no restart took the lease of its killed predecessor at once")
	}
	e.finish(e.srv.ClientURL(), "kills", killed)
}

// TestCrashNATSRestart restarts the NATS server under a running processor.
func TestCrashNATSRestart(t *testing.T) {
	events, restarts := sizes(testing.Short())
	restarts = max(restarts/4, 2)
	s := seed(t)
	e := newCrashEnv(t, events, s)
	rng := rand.New(rand.NewPCG(s, 3))
	e.followWithFaults(e.srv.ClientURL(), "NATS restarts", restarts, func() {
		// a moment for the processor to be mid-batch, then restart the server
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = natstest.ServerAt(t, e.store, e.port)
	})
}

// TestCrashConnectionCut cuts the processor's connection with a TCP proxy.
func TestCrashConnectionCut(t *testing.T) {
	events, cuts := sizes(testing.Short())
	cuts = max(cuts/2, 3)
	s := seed(t)
	e := newCrashEnv(t, events, s)
	rng := rand.New(rand.NewPCG(s, 4))
	proxy := natstest.NewProxy(t, e.srv.Addr().String())
	e.followWithFaults(proxy.URL(), "connection cuts", cuts, func() {
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		proxy.Cut()
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		proxy.Restore()
	})
}

func killedBySignal(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// followWithFaults runs one following processor on url while the workload is published with
// faults (see publishWithFaults), waits until it has caught up, stops it with SIGTERM and
// checks the result.
func (e *crashEnv) followWithFaults(url, what string, faults int, fault func()) {
	e.t.Helper()
	c := e.start(e.config(url, "follow"))
	done := e.publishWithFaults(faults, fault)
	e.waitCaughtUp(c)
	e.stopGracefully(c)
	e.finish(url, what, done)
}

// publishWithFaults publishes the workload in 20 chunks and calls fault (a random pause,
// then the fault: the sleeps set when faults land, they synchronise nothing) after evenly
// spaced chunks, faults times at most. It returns how many faults it injected.
func (e *crashEnv) publishWithFaults(faults int, fault func()) int {
	const chunks = 20
	step := len(e.payload) / chunks
	done := 0
	for i := range chunks {
		e.publish(i*step, min((i+1)*step, len(e.payload)))
		if i%(chunks/faults) == chunks/faults-1 && done < faults {
			fault()
			done++
		}
	}
	return done
}

func (e *crashEnv) waitCaughtUp(c *child) {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), "SHOP")
	if err != nil {
		e.t.Fatal(err)
	}
	head := s.CachedInfo().State.LastSeq
	natstest.Eventually(e.t, 120*time.Second, "the processor to reach the stream head", func() bool {
		select {
		case err := <-c.done:
			e.t.Fatalf("the processor exited: %v\n%s", err, e.childLog())
		default:
		}
		return e.checkpointSeq() >= head
	})
}

func (e *crashEnv) stopGracefully(c *child) {
	e.t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			e.t.Fatalf("SIGTERM: exit %v\n%s", err, e.childLog())
		}
	case <-time.After(30 * time.Second):
		e.t.Fatalf("SIGTERM: the processor did not exit\n%s", e.childLog())
	}
}

// TestCrashTwoProcessors starts two processors on the same configuration: exactly one
// processes, the other stands by and takes over when the first is killed.
func TestCrashTwoProcessors(t *testing.T) {
	events, _ := sizes(testing.Short())
	s := seed(t)
	e := newCrashEnv(t, events, s)
	url := e.srv.ClientURL()
	a := e.startLogged(e.configAs(url, "follow", "proc-a"), "a.log")
	waitLog(t, e, "a.log", "lease acquired")
	b := e.startLogged(e.configAs(url, "follow", "proc-b"), "b.log")
	waitLog(t, e, "b.log", "standing by: another process holds the lease")

	half := events / 2
	e.publish(0, half)
	natstest.Eventually(t, 60*time.Second, "proc-a to process the first half", func() bool {
		return e.checkpointSeq() >= uint64(half)
	})
	if strings.Contains(e.logOf("b.log"), "lease acquired") {
		t.Fatalf("both processors hold the lease:\n%s", e.logOf("b.log"))
	}
	// Kill the holder in the middle of the second half.
	done := make(chan struct{})
	go func() { defer close(done); e.publish(half, events) }()
	time.Sleep(time.Duration(rand.New(rand.NewPCG(s, 5)).IntN(100)) * time.Millisecond) // a random moment, not a synchronisation
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	waitLog(t, e, "b.log", "lease acquired")
	<-done
	e.waitCaughtUp(b)
	e.stopGracefully(b)
	e.finish(url, "takeovers", 1)
}

func waitLog(t *testing.T, e *crashEnv, name, line string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, name+" to say "+line, func() bool {
		return strings.Contains(e.logOf(name), line)
	})
}

// TestCrashKillEmbedded SIGKILLs a processor that runs its own embedded nats-server (the
// default, no nats.url): every kill takes NATS down with it.
func TestCrashKillEmbedded(t *testing.T) {
	events, kills := sizes(testing.Short())
	kills = max(kills/2, 4)
	s := seed(t)
	e := &crashEnv{t: t, dir: t.TempDir(), bin: processor(t), port: freePort(t)}
	e.store = filepath.Join(e.dir, "nats")
	e.payload = shoptest.Workload(s, events, 1000)
	rng := rand.New(rand.NewPCG(s, 6))
	cfg := func(stop string) string {
		y := fmt.Sprintf("nats: {url: \"\", embedded: {store_dir: %q, listen: \"127.0.0.1:%d\"}}\nhttp: {listen: none}\n", e.store, e.port) +
			shoptest.Streams + "pipelines:" + fmt.Sprintf(shoptest.Pipeline, "all", stop, 300, 500)
		path := filepath.Join(e.dir, "embedded-"+stop+".yaml")
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	follow := cfg("follow")
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", e.port), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	pubDone := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(pubDone)
		<-started
		const chunk = 500
		for i := 0; i < events; i += chunk {
			e.publish(i, min(i+chunk, events))
		}
	}()
	killed := 0
	for published := false; killed < kills || !published; {
		c := e.start(follow)
		if killed == 0 {
			natstest.Eventually(t, 30*time.Second, "the embedded server", nc.IsConnected)
			natstest.Eventually(t, 30*time.Second, "the SHOP stream", func() bool {
				_, err := e.js.Stream(context.Background(), "SHOP")
				return err == nil
			})
			close(started)
		}
		select {
		case err := <-c.done:
			t.Fatalf("the processor exited by itself: %v\n%s", err, e.childLog())
		case <-time.After(time.Duration(300+rng.IntN(700)) * time.Millisecond):
		}
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
		killed++
		select {
		case <-pubDone:
			published = true
		default:
		}
	}
	// Final run to the end, then read the store with a server of the test's own.
	c := e.start(cfg("end"))
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("final run: %v\n%s", err, e.childLog())
		}
	case <-time.After(120 * time.Second):
		_ = c.cmd.Process.Kill()
		t.Fatalf("final run did not finish\n%s", e.childLog())
	}
	nc.Close()
	e.srv = natstest.ServerAt(t, e.store, -1)
	e.nc, e.js = natstest.Connect(t, e.srv)
	e.verify("kills of processor and embedded NATS", killed)
}
