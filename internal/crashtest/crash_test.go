package crashtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
)

// The crash tests run the real processor binary as a child process and break it, or NATS
// under it, at random moments, then compare every projection key, the derived events and the
// dead letters with an oracle computed from the published events. A failure prints its seed;
// JETFOLD_CRASH_SEED=<seed> replays the same kill times and workload. JETFOLD_LONG_TESTS=1
// runs the long form, on 50,000 events instead of 10,000 (see sizes).
//
// A wait for a child's work fails when its checkpoint stops advancing for childStall, not
// after a fixed time, so that a loaded machine only makes the tests longer.
const (
	childStall = 60 * time.Second
	childLimit = 10 * time.Minute
)

// binary is the processor the tests run as children, with its failpoints.
var binary = natstest.Binary{Tags: []string{"failpoints"}}

func TestMain(m *testing.M) {
	code := m.Run()
	binary.Remove()
	os.Exit(code)
}

// partitionKeys returns the checkpoint keys (and lease names) of pipeline name in n
// partitions: its partitions' for n > 1, else its own name.
func partitionKeys(name string, n int) []string {
	if n <= 1 {
		return []string{name}
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = checkpoint.PartitionKey(name, i)
	}
	return keys
}

// processor builds cmd/processor once per test binary.
func processor(t *testing.T) string { return binary.Path(t) }

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
	// cartsKeys are the checkpoint keys of the carts pipeline: its name, or its partitions'
	// (see the cluster tests); nil means its name.
	cartsKeys []string
	// statefulKeys are those of the stateful pipeline, likewise; with more than one, verify
	// expects each partition's windows and timers with its own watermark.
	statefulKeys []string
	// bySubject publishes each event on shop.<its user> to a stream partitioned by subject,
	// which the carts partitions read one each (see TestClusterFailoverBySubject).
	bySubject bool
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
	e.js = natstest.JetStream(t, nc)
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
		shoptest.Streams + "pipelines:" + fmt.Sprintf(shoptest.Pipeline, "all", stop, 300, 500) +
		fmt.Sprintf(shoptest.Stateful, "all", stop, 300, 2000)
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

// startLogged starts `processor run` on cfg with its output appended to the file logName.
func (e *crashEnv) startLogged(cfg, logName string, env ...string) *child {
	e.t.Helper()
	return e.startArgs(logName, env, "run", "-c", cfg, "--log-level", "info")
}

// startArgs starts the processor with args, env added to its environment and its output
// (stdout and stderr) appended to the file logName.
func (e *crashEnv) startArgs(logName string, env []string, args ...string) *child {
	e.t.Helper()
	log, err := os.OpenFile(filepath.Join(e.dir, logName), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(e.bin, args...)
	dieWithTest(cmd)
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

// publish publishes payloads[from:to] with ids through a bounded window, retrying while NATS
// is away: the ids make the stream keep each event once. It fails the test when no event is
// acknowledged for childStall.
func (e *crashEnv) publish(from, to int) {
	e.t.Helper()
	acked := time.Now()
	for {
		w := streams.NewWindow(e.js, natstest.PublishWindow)
		w.OnAck = func(int, *jetstream.PubAck) { acked = time.Now() }
		ctx, cancel := context.WithTimeout(context.Background(), childStall)
		err := func() error {
			for j := from; j < to; j++ {
				m := nats.NewMsg(e.subject(e.payload[j]))
				m.Data = e.payload[j]
				m.Header.Set(jetstream.MsgIDHeader, "ev-"+strconv.Itoa(j))
				if err := w.Publish(ctx, m); err != nil {
					return err
				}
			}
			return w.Flush(ctx)
		}()
		cancel()
		if err == nil {
			return
		}
		if time.Since(acked) > childStall {
			e.t.Fatalf("publish %d..%d: nothing acknowledged for %s: %v", from, to, childStall, err)
		}
		natstest.Eventually(e.t, childStall, "NATS back", e.nc.IsConnected)
	}
}

// checkpointSeq reads the checkpoints of the pipelines (carts and stateful) and returns the
// lower (0 when one has none yet): where both have reached.
func (e *crashEnv) checkpointSeq() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, streams.CheckpointBucket)
	if err != nil {
		return 0
	}
	low := uint64(math.MaxUint64)
	orName := func(keys []string, name string) []string {
		if len(keys) == 0 {
			return []string{name}
		}
		return keys
	}
	for _, p := range slices.Concat(orName(e.statefulKeys, "stateful"), orName(e.cartsKeys, "carts")) {
		cp, err := checkpoint.NewStore(kv).Load(ctx, p)
		if err != nil {
			return 0
		}
		seq := cp.Seq
		if i := slices.Index(e.cartsKeys, p); e.bySubject && i >= 0 {
			// A partition reads its own subjects only: once none is left after its
			// checkpoint, it has read up to the head.
			if seq, err = e.partitionCovers(ctx, i, cp.Seq); err != nil {
				return 0
			}
		}
		low = min(low, seq)
	}
	return low
}

// subject is the subject an event is published on: shoptest.Subject, or with bySubject
// shop.<its user_id> (shop.none without one).
func (e *crashEnv) subject(payload []byte) string {
	if !e.bySubject {
		return shoptest.Subject
	}
	var ev struct {
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(payload, &ev) == nil && ev.UserID != "" {
		return "shop." + ev.UserID
	}
	return "shop.none"
}

// partitionCovers returns the stream position that partition i of carts, read by subject,
// has read everything of its own up to: the stream's head when no message of its subjects
// follows its checkpoint seq, else seq.
func (e *crashEnv) partitionCovers(ctx context.Context, i int, seq uint64) (uint64, error) {
	s, err := e.js.Stream(ctx, "SHOP")
	if err != nil {
		return 0, err
	}
	n, err := status.CountAfter(ctx, s, []string{strconv.Itoa(i) + ".>"}, seq)
	if err != nil || n > 0 {
		return seq, err
	}
	return max(seq, s.CachedInfo().State.LastSeq), nil
}

// finish runs the child with stop: end to the end of the stream and compares with the oracle.
func (e *crashEnv) finish(url string, what string, count int) {
	e.t.Helper()
	e.waitExit(e.start(e.config(url, "end")), "the final run")
	e.verify(what, count)
}

// waitExit waits for a child with stop: end to exit at the end of the stream, and fails the
// test when it fails, or when its checkpoint does not advance for childStall (then it is
// killed).
func (e *crashEnv) waitExit(c *child, what string) {
	e.t.Helper()
	var err error
	exited := false
	defer func() {
		if !exited { // the wait failed the test
			_ = c.cmd.Process.Kill()
			<-c.done
			e.t.Logf("%s, killed; its log:\n%s", what, e.childLog())
		}
	}()
	natstest.Progress(e.t, what+" to end", childStall, childLimit, e.checkpointSeq, func() bool {
		select {
		case err = <-c.done:
			exited = true
		default:
		}
		return exited
	})
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", what, err, e.childLog())
	}
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
	sw := shoptest.StatefulOracleN(stored, len(e.statefulKeys))
	bad = append(bad, shoptest.StatefulMismatches(e.t, e.js, streams.DLQStream, sw)...)
	e.t.Logf("stateful pipeline: %d windows kept, %d closed, %d late events, %d timers fired, %d pending",
		len(sw.Windows.State), len(sw.Windows.Closed), len(sw.Windows.Dead), len(sw.Timers.Fired), len(sw.Timers.Pending))
	if len(sw.Windows.Closed) == 0 || len(sw.Windows.Dead) == 0 || len(sw.Timers.Fired) == 0 {
		e.t.Error("the workload closes no window, has no late event or fires no timer: the stateful checks check little")
	}
	for i, m := range bad {
		if i == 20 {
			e.t.Errorf("... and %d more", len(bad)-20)
			break
		}
		e.t.Error(m)
	}
	e.t.Logf("%s survived: %d, events: %d, mismatches: %d", what, count, len(e.payload), len(bad))
}

// sizes returns how many events a crash test publishes and how many faults it injects at most
// (each test derives its own count of faults from it): 10,000 events and 20 by default;
// 50,000 and 20 with JETFOLD_LONG_TESTS=1 (the long form: longer runs between the faults);
// 10,000 and 6 with -short.
func sizes(short bool) (events, breaks int) {
	switch {
	case natstest.Long():
		return 50_000, 20
	case short:
		return 10_000, 6
	}
	return 10_000, 20
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
	lastKill := time.Now()
	t.Logf("checkpoint before the final run: %d; %d of the %d kills at failpoints", e.checkpointSeq(), selfKilled, killed)
	if b, _ := os.ReadFile(filepath.Join(e.dir, "child.log")); !strings.Contains(string(b), "taking over the lease of a process that is gone") {
		t.Error("no restart took the lease of its killed predecessor at once")
	}
	left, threshold := e.sourceConsumers()
	e.finish(e.srv.ClientURL(), "kills", killed)
	e.waitSourceConsumersGone(left, threshold, lastKill)
}

// Ephemeral source consumers that killed processes leave behind go after their inactivity
// threshold (pipeline/source), plus up to 1 s of the server's jitter: the test allows
// leftoverSlack more for a loaded machine, and holds the threshold to at most
// maxLeftoverThreshold, so that what kills leave goes within a bounded time.
const (
	leftoverSlack        = 15 * time.Second
	maxLeftoverThreshold = time.Minute
)

// sourceConsumers returns the names of the ephemeral consumers of the pipeline on SHOP and
// the longest inactivity threshold among them.
func (e *crashEnv) sourceConsumers() ([]string, time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childStall)
	defer cancel()
	s, err := e.js.Stream(ctx, "SHOP")
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	var threshold time.Duration
	list := s.ListConsumers(ctx)
	for info := range list.Info() {
		if strings.HasPrefix(info.Name, "jetfold_carts_") && info.Config.Durable == "" {
			names = append(names, info.Name)
			threshold = max(threshold, info.Config.InactiveThreshold)
		}
	}
	if err := list.Err(); err != nil {
		e.t.Fatalf("list the consumers of SHOP: %v", err)
	}
	return names, threshold
}

// waitSourceConsumersGone checks that the kills left source consumers behind (those the
// processes could not delete), with a threshold of at most maxLeftoverThreshold, and waits
// until every one is gone, failing the test at threshold + leftoverSlack after lastKill.
func (e *crashEnv) waitSourceConsumersGone(left []string, threshold time.Duration, lastKill time.Time) {
	e.t.Helper()
	if len(left) == 0 {
		e.t.Fatal("the kills left no source consumer behind: nothing shows that they go")
	}
	if threshold <= 0 || threshold > maxLeftoverThreshold {
		e.t.Fatalf("the source consumers have an inactivity threshold of %s, want at most %s", threshold, maxLeftoverThreshold)
	}
	deadline := lastKill.Add(threshold + leftoverSlack)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		now, _ := e.sourceConsumers()
		if len(now) == 0 {
			e.t.Logf("%d source consumers left by the kills (inactivity threshold %s): all gone %s after the last kill",
				len(left), threshold, time.Since(lastKill).Round(100*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d of the %d source consumers left by the kills still there %s after the last kill (threshold %s): %v",
				len(now), len(left), time.Since(lastKill).Round(100*time.Millisecond), threshold, now)
		}
		<-tick.C
	}
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
	natstest.Progress(e.t, "the processor to reach the stream head", childStall, childLimit, e.checkpointSeq, func() bool {
		select {
		case err := <-c.done:
			e.t.Fatalf("the processor exited: %v\n%s", err, e.childLog())
		default:
		}
		return e.checkpointSeq() >= head
	})
}

// stopGracefully stops the child (logging to child.log), see stopProcess.
func (e *crashEnv) stopGracefully(c *child) {
	e.t.Helper()
	e.stopProcess("", c)
}

// stopProcess sends SIGTERM to process name (logging to <name>.log; "": the child, to
// child.log) and fails the test unless it exits cleanly within childStall.
func (e *crashEnv) stopProcess(name string, c *child) {
	e.t.Helper()
	what, log := "", "child.log"
	if name != "" {
		what, log = name+": ", name+".log"
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			e.t.Fatalf("%sSIGTERM: exit %v\n%s", what, err, e.logOf(log))
		}
	case <-time.After(childStall):
		e.t.Fatalf("%sSIGTERM: the processor did not exit\n%s", what, e.logOf(log))
	}
}

// alive fails the test when one of procs (each named as its log, <name>.log) has exited.
func (e *crashEnv) alive(procs map[string]*child) {
	e.t.Helper()
	for n, c := range procs {
		select {
		case err := <-c.done:
			e.t.Fatalf("%s exited: %v\n%s", n, err, e.logOf(n+".log"))
		default:
		}
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
	natstest.Progress(t, "proc-a to process the first half", childStall, childLimit, e.checkpointSeq, func() bool {
		return e.checkpointSeq() >= uint64(half)
	})
	// b may take over only from an a that gave the lease up: a machine starved for longer
	// than half the lease's TTL makes a stop by itself (self-fencing), and b then goes on.
	if strings.Contains(e.logOf("b.log"), "lease acquired") && !strings.Contains(e.logOf("a.log"), "stopping here") {
		t.Fatalf("both processors hold the lease:\n%s\n%s", e.logOf("a.log"), e.logOf("b.log"))
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
			shoptest.Streams + "pipelines:" + fmt.Sprintf(shoptest.Pipeline, "all", stop, 300, 500) +
			fmt.Sprintf(shoptest.Stateful, "all", stop, 300, 2000)
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
	e.js = natstest.JetStream(t, nc)
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
	e.waitExit(e.start(cfg("end")), "the final run")
	nc.Close()
	e.srv = natstest.ServerAt(t, e.store, -1)
	e.nc, e.js = natstest.Connect(t, e.srv)
	e.verify("kills of processor and embedded NATS", killed)
}
