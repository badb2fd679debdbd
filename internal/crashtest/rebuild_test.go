package crashtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/streams"
)

// The rebuild crash tests run `processor rebuild` (package pipeline/rebuild) as a child
// process beside a live `processor run`, and kill it at random moments and at its failpoints
// while events keep coming. Then the old version of the projection must be the old handler's
// fold up to the switch, the new version the new handler's fold over every event, and the
// derived events each in OUT once, as an oracle computed from the published events says.

// tallyConfig is the configuration of the tally pipeline: it counts (n) and sums (sum) the
// values v of the events of each key, emits n on out.ev.<key> for each event (`on`) and,
// once per key, the key on <first>.<key> (`once`). Its arguments: the NATS URL, the stop
// mode, the handler's factor (the change a rebuild recomputes) and first. OUT keeps ids for
// 10 minutes, longer than the test runs: the copies of derived events that a rebuild
// re-publishes are dropped by their ids within that window only. The lease TTL is short,
// so that the live run takes its lease back soon from a rebuild killed with it, but not 1 s:
// a lease holder gives up a lease it could not renew within TTL/2, with each renewal allowed
// TTL/8, and a restarted rebuild first reads back every message of OUT since its checkpoint
// (tens of thousands here), which on a busy machine with the -race NATS server of the test
// binary holds renewals up longer than that.
const tallyConfig = `nats: {url: %q}
http: {listen: none}
processor: {lease_ttl: 2s}
streams:
  - {name: EV, subjects: ["ev.>"]}
  - {name: OUT, subjects: ["out.>"], duplicate_window: 10m}
pipelines:
  - name: tally
    source: {stream: EV, start: all, stop: %s}
    key: event.k
    batch: {size: 100, max_wait: 10ms}
    operators:
      - fold:
          projection: tally
          initial: {n: 0, sum: 0}
          on:
            "*": {n: state.n + 1, sum: "state.sum + %d * event.v"}
      - emit:
          subject: '"out.ev." + key'
          data: {n: state.n}
      - emit:
          when: state.n == 1
          subject: '"%s." + key'
          data: {k: key}
          handler: once
`

// The keys of the workload: oldKeys keys k0..k<oldKeys-1> from the first events on, newKeys
// keys n0..n<newKeys-1> that appear only after the switch.
const (
	oldKeys = 50
	newKeys = 10
)

// rebuildFailpoints are all the failpoints a rebuild passes: those of its commits (it runs
// the pipeline's runner under a checkpoint of its own) and those of its switch.
const rebuildFailpoints = "after-outputs,mid-keys,after-keys,after-checkpoint,before-switch,after-switch"

// rebuildLimit bounds each wait of the rebuild tests for a child, well within the 10 minutes
// of go test's default -timeout: a wait that fails stops the children, a timeout would not.
const rebuildLimit = 4 * time.Minute

// tallyEvent is an event the test published: its stream sequence, key and value.
type tallyEvent struct {
	seq uint64
	k   string
	v   int
}

// tallyState is what the tally projection holds for a key.
type tallyState struct {
	N   int `json:"n"`
	Sum int `json:"sum"`
}

// rebuildEnv is a crashEnv with the events published to EV, in the order of their sequences.
type rebuildEnv struct {
	*crashEnv
	mu   sync.Mutex
	evs  []tallyEvent
	sent int               // message ids given so far
	cps  *checkpoint.Store // of the checkpoint bucket, once it exists
	// parts is the number of partitions of the tally pipeline (0: not partitioned).
	parts int
}

// newRebuildEnv starts a NATS server for the test (in JETFOLD_CRASH_DIR/<test name> when
// that is set) and connects to it.
func newRebuildEnv(t *testing.T) *rebuildEnv {
	e := &crashEnv{t: t, dir: t.TempDir(), bin: processor(t), port: freePort(t)}
	if d := os.Getenv("JETFOLD_CRASH_DIR"); d != "" { // keep the store to look into a failure
		e.dir = filepath.Join(d, t.Name())
		if err := os.RemoveAll(e.dir); err != nil { // what an earlier run left
			t.Fatal(err)
		}
		if err := os.MkdirAll(e.dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e.store = filepath.Join(e.dir, "nats")
	e.srv = natstest.ServerAt(t, e.store, e.port)
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc, e.js = nc, natstest.JetStream(t, nc)
	return &rebuildEnv{crashEnv: e}
}

// config writes the tally configuration (see tallyConfig) to name.yaml and returns its path.
func (r *rebuildEnv) config(name, stop string, factor int, first string) string {
	r.t.Helper()
	path := filepath.Join(r.dir, name+".yaml")
	y := fmt.Sprintf(tallyConfig, r.srv.ClientURL(), stop, factor, first)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// ensureStreams creates the streams cfg declares, as the processor does at start.
func (r *rebuildEnv) ensureStreams(cfg string) {
	r.t.Helper()
	c, err := config.Load(cfg, config.LoadOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := streams.EnsureStreams(context.Background(), r.js, c.Streams, nil); err != nil {
		r.t.Fatal(err)
	}
}

// publish publishes n events, the i-th on key(i) with a value from rng, each with a message
// id of its own, and records them with the sequences JetStream gave them. It returns an error
// (it may run beside the test's goroutine) when one is not stored once.
func (r *rebuildEnv) publish(n int, key func(i int) string, rng *rand.Rand) error {
	r.mu.Lock()
	base := r.sent
	r.sent += n
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), childStall)
	defer cancel()
	batch := make([]tallyEvent, n)
	var dup error
	w := streams.NewWindow(r.js, natstest.PublishWindow)
	w.OnAck = func(i int, a *jetstream.PubAck) {
		batch[i].seq = a.Sequence
		if a.Duplicate {
			dup = fmt.Errorf("event ev-%d stored as a duplicate of sequence %d", base+i, a.Sequence)
		}
	}
	for i := range n {
		k := key(i)
		batch[i] = tallyEvent{k: k, v: 1 + rng.IntN(9)}
		m := nats.NewMsg("ev." + k)
		m.Data = fmt.Appendf(nil, `{"type":"add","k":%q,"v":%d}`, k, batch[i].v)
		m.Header.Set(jetstream.MsgIDHeader, "ev-"+strconv.Itoa(base+i))
		if err := w.Publish(ctx, m); err != nil {
			return err
		}
	}
	if err := w.Flush(ctx); err != nil {
		return err
	}
	if dup != nil {
		return dup
	}
	r.mu.Lock()
	r.evs = append(r.evs, batch...)
	r.mu.Unlock()
	return nil
}

// events returns the events published, in the order of their sequences.
func (r *rebuildEnv) events() []tallyEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := slices.Clone(r.evs)
	slices.SortFunc(evs, func(a, b tallyEvent) int { return cmp.Compare(a.seq, b.seq) })
	return evs
}

// lastSeq returns the sequence of the last event published (0: none).
func (r *rebuildEnv) lastSeq() uint64 {
	evs := r.events()
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].seq
}

// load loads the checkpoint kept under key. The test polls checkpoints often: it looks the
// bucket up once, not at each read, so as not to load the NATS server the processes share.
func (r *rebuildEnv) load(key string) (checkpoint.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.mu.Lock()
	cps := r.cps
	r.mu.Unlock()
	if cps == nil {
		kv, err := r.js.KeyValue(ctx, streams.CheckpointBucket)
		if err != nil {
			return checkpoint.Checkpoint{}, err
		}
		cps = checkpoint.NewStore(kv)
		r.mu.Lock()
		r.cps = cps
		r.mu.Unlock()
	}
	return cps.Load(ctx, key)
}

// seqOf returns the sequence of the checkpoint kept under key (0 when there is none).
func (r *rebuildEnv) seqOf(key string) uint64 {
	cp, err := r.load(key)
	if err != nil {
		return 0
	}
	return cp.Seq
}

// rebuildProgress measures the work of a rebuild, for natstest.Progress: its checkpoint's
// sequence (partitioned: the sum of its partitions').
func (r *rebuildEnv) rebuildProgress() uint64 {
	var n uint64
	for _, key := range partitionKeys("tally", r.parts) {
		n += r.seqOf(checkpoint.RebuildKey(key))
	}
	return n
}

// liveProgress measures the work of the live pipeline: its checkpoint's sequence
// (partitioned: the sum of its partitions').
func (r *rebuildEnv) liveProgress() uint64 {
	var n uint64
	for _, seq := range r.partSeqs() {
		n += seq
	}
	return n
}

// liveAt is where the live pipeline is: its checkpoint, or the least of its partitions'.
func (r *rebuildEnv) liveAt() uint64 { return slices.Min(r.partSeqs()) }

// rebuildKeys are the keys of a rebuild's checkpoints: its own, and its partitions'.
func (r *rebuildEnv) rebuildKeys() []string {
	keys := []string{checkpoint.RebuildKey("tally")}
	if r.parts > 1 {
		for _, key := range partitionKeys("tally", r.parts) {
			keys = append(keys, checkpoint.RebuildKey(key))
		}
	}
	return keys
}

// partSeqs returns the checkpoint of tally, or of each of its partitions (0 where there is
// none).
func (r *rebuildEnv) partSeqs() []uint64 {
	keys := partitionKeys("tally", r.parts)
	out := make([]uint64, len(keys))
	for i, key := range keys {
		out[i] = r.seqOf(key)
	}
	return out
}

// atPartitions returns the position of each key: seqs[its partition], seqs having one
// position per partition.
func atPartitions(seqs []uint64) func(key string) uint64 {
	return func(key string) uint64 { return seqs[pipeline.PartitionOf(key, len(seqs))] }
}

// configParts is config for the tally pipeline in r.parts partitions.
func (r *rebuildEnv) configParts(name, stop string, factor int, first string) string {
	r.t.Helper()
	path := r.config(name, stop, factor, first)
	y := strings.Replace(r.fileOf(name+".yaml"), "    key: event.k\n", fmt.Sprintf("    key: event.k\n    partitions: %d\n", r.parts), 1)
	if !strings.Contains(y, "partitions:") {
		r.t.Fatal("no key line to partition")
	}
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// pointer returns the pointer readers of the tally projection follow.
func (r *rebuildEnv) pointer() checkpoint.Pointer {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := checkpoint.Current(ctx, r.js, "tally")
	if err != nil {
		r.t.Fatalf("pointer of tally: %v", err)
	}
	return p
}

// fileOf returns the whole of the file name in the test's directory.
func (r *rebuildEnv) fileOf(name string) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, name))
	return string(b)
}

// attempt is one run of `processor rebuild` and what may kill it.
type attempt struct {
	// failpoints is JETFOLD_FAILPOINTS ("": none), p JETFOLD_FAILPOINT_P.
	failpoints string
	p          float64
	// The test SIGKILLs the process jitter after the rebuild's checkpoint has gone afterSeqs
	// past where it was when the attempt began (0: not then), or jitter after its log says it
	// entered phase onPhase ("": not then).
	afterSeqs uint64
	onPhase   string
	jitter    time.Duration
}

func (a attempt) String() string {
	s := "no failpoint"
	if a.failpoints != "" {
		s = fmt.Sprintf("failpoints %s at P=%g", a.failpoints, a.p)
	}
	switch {
	case a.afterSeqs > 0:
		s += fmt.Sprintf(", SIGKILL %s after %d more replayed", a.jitter, a.afterSeqs)
	case a.onPhase != "":
		s += fmt.Sprintf(", SIGKILL %s into phase %s", a.jitter, a.onPhase)
	}
	return s
}

// How an attempt ended: killed from outside (with the phase it was in), at a failpoint (for
// the commit's, with its name when it was the only one), exited 0, or exited 1 because it
// lost a lease.
const (
	endKilled  = "outside SIGKILL"
	endCommit  = "commit failpoint"
	endBefore  = "before-switch"
	endAfter   = "after-switch"
	endSuccess = "exit 0"
	endLost    = "exit 1, lease lost"
)

// maxLosses bounds how many times in a row an attempt may end by losing a lease (see
// leaseLoss) before the test gives up on it.
const maxLosses = 5

// leaseLoss returns how the rebuild logged losing a lease ("": it did not). A holder whose
// renewals NATS does not answer in time gives the lease up by itself, a fault of its own that
// a busy machine brings (the lease TTL is 2 s): the rebuild stops, as interrupted, and the
// next run resumes.
func leaseLoss(log string) string {
	for _, l := range []string{"lease not renewed in time", "lease taken by another process"} {
		if strings.Contains(log, l) {
			return l
		}
	}
	return ""
}

// commitFailpoints are the failpoints of the commit protocol.
var commitFailpoints = []string{"after-outputs", "mid-keys", "after-keys", "after-checkpoint"}

// phaseLine matches the phase of the rebuild's progress lines: the command logs every change
// of phase, so the last one in an attempt's log is the phase it was in when it ended.
var phaseLine = regexp.MustCompile(`rebuild progress.* phase=(\w+)`)

// phaseOf returns the last phase the log of an attempt names ("start" when none).
func (r *rebuildEnv) phaseOf(logName string) string {
	m := phaseLine.FindAllStringSubmatch(r.fileOf(logName), -1)
	if len(m) == 0 {
		return "start"
	}
	return m[len(m)-1][1]
}

// rebuild runs attempt n of `processor rebuild -c cfg tally` and returns how it ended (for
// an outside kill, with the phase it landed in) and the name of its log. It fails the test
// when the process exits with an error, when the rebuild's checkpoint does not advance for
// childStall or when it runs longer than rebuildLimit.
func (r *rebuildEnv) rebuild(n int, cfg string, a attempt) (end, logName string) {
	r.t.Helper()
	logName = fmt.Sprintf("rebuild-%02d.log", n)
	var env []string
	if a.failpoints != "" {
		env = []string{"JETFOLD_FAILPOINTS=" + a.failpoints, "JETFOLD_FAILPOINT_P=" + strconv.FormatFloat(a.p, 'g', -1, 64)}
	}
	base := r.rebuildProgress()
	c := watch(r.startArgs(logName, env, "rebuild", "-c", cfg, "tally", "--log-level", "info"))
	r.t.Cleanup(func() { _ = c.c.cmd.Process.Kill() }) // when a wait below fails the test
	var killed atomic.Bool
	go r.killWhen(c, logName, a, base, &killed)
	natstest.Progress(r.t, fmt.Sprintf("rebuild attempt %d (%s)", n, a), childStall, rebuildLimit, r.rebuildProgress, func() bool {
		return !c.running()
	})
	switched := r.pointer().Version >= 2
	switch {
	case c.err == nil:
		if !switched {
			r.t.Fatalf("rebuild attempt %d exited 0 without a switch:\n%s", n, r.logOf(logName))
		}
		return endSuccess, logName
	case !killedBySignal(c.err):
		var ee *exec.ExitError
		if lost := leaseLoss(r.fileOf(logName)); lost != "" && !switched && errors.As(c.err, &ee) && ee.ExitCode() == 1 {
			return endLost + ": " + lost, logName
		}
		r.t.Fatalf("rebuild attempt %d (%s): %v\n%s", n, a, c.err, r.logOf(logName))
	case killed.Load():
		if switched {
			return endKilled + " after the switch", logName
		}
		return endKilled + " in " + r.phaseOf(logName), logName
	case switched: // after the switch a rebuild commits nothing: the kill was at after-switch
		return endAfter, logName
	case a.failpoints == endBefore || r.phaseOf(logName) == "switch":
		return endBefore, logName // the only failpoint between the phase switch and the switch
	case slices.Contains(commitFailpoints, a.failpoints):
		return endCommit + " " + a.failpoints, logName
	}
	return endCommit, logName
}

// killWhen SIGKILLs the process of an attempt as a says, unless it exits first; killed
// records that the test killed it.
func (r *rebuildEnv) killWhen(c *proc, logName string, a attempt, base uint64, killed *atomic.Bool) {
	if a.afterSeqs == 0 && a.onPhase == "" {
		return
	}
	due := func() bool {
		return a.afterSeqs > 0 && r.rebuildProgress() >= base+a.afterSeqs || a.onPhase != "" && r.phaseOf(logName) == a.onPhase
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !due() {
		select {
		case <-c.exited:
			return
		case <-tick.C:
		}
	}
	select {
	case <-c.exited:
		return
	case <-time.After(a.jitter): // a random moment after the condition
	}
	if c.running() { // unless it has exited meanwhile (at a failpoint)
		killed.Store(true)
		_ = c.c.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// proc is a child process whose exit the test watches while it does other things.
type proc struct {
	c      *child
	exited chan struct{}
	err    error // valid once exited is closed
}

func watch(c *child) *proc {
	p := &proc{c: c, exited: make(chan struct{})}
	go func() { p.err = <-c.done; close(p.exited) }()
	return p
}

// running tells whether the process still runs.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// rebuildPlan returns the attempts of TestCrashRebuild, kills of them during the replay:
//
//  1. one at each failpoint of the commit protocol, for certain (at its first commit);
//  2. mixes kills at every failpoint at random and from outside after a random part of the
//     replay;
//  3. kills from outside after a random part of the replay, at a random moment of a batch;
//  4. one at before-switch, for certain: it replays what is left, hands over and dies;
//  5. 1 to 3 kills from outside at a random moment after the hand-over begins;
//  6. a run without kill from outside.
//
// From 5 on, the attempts either die at after-switch or succeed (viaAfter), so that the
// switch has the planned form whichever attempt gets to it. A run of 3 that gets to the
// switch dies before it. kills (at least 5) is about how many attempts there are before 4;
// per is about the sequences of the replay per kill.
func rebuildPlan(rng *rand.Rand, kills int, per uint64, viaAfter bool) []attempt {
	var plan []attempt
	for _, f := range commitFailpoints {
		plan = append(plan, attempt{failpoints: f, p: 1})
	}
	left := max(kills-len(commitFailpoints), 1)
	mixed := max(left/3, 1)
	for i := range left {
		a := attempt{failpoints: endBefore, p: 1, afterSeqs: 1 + rng.Uint64N(per), jitter: time.Duration(rng.IntN(100)) * time.Millisecond}
		if i < mixed {
			a.failpoints, a.p, a.afterSeqs = rebuildFailpoints, 0.03, per+rng.Uint64N(2*per)
		}
		plan = append(plan, a)
	}
	plan = append(plan, attempt{failpoints: endBefore, p: 1})
	last := attempt{}
	if viaAfter {
		last = attempt{failpoints: endAfter, p: 1}
	}
	for range 1 + rng.IntN(3) {
		near := last
		near.onPhase, near.jitter = "handover", time.Duration(rng.IntN(300))*time.Millisecond
		plan = append(plan, near)
	}
	return append(plan, last)
}

// TestCrashRebuild rebuilds a pipeline whose handler changed, while its live run (the old
// handler) follows a stream that keeps growing, and SIGKILLs `processor rebuild` again and
// again (see rebuildPlan): from outside during the replay and after the hand-over began, at
// each failpoint of its commits and on both sides of its switch, until a run exits 0 or the
// switch is done (a kill after it leaves it done). Then the live run must have stopped by
// itself (it refuses the rebuilt version), and a run of the rebuild's definition must go on
// from the switch. The old version must be the old handler's fold of the events up to the
// switch, the new one the new handler's fold of every event, each derived event must be in
// OUT once (the rebuild's copies of the live run's `on` emits dropped by their ids), and
// `once` emits must have fired once per key: by the live run for the keys it saw first, by
// the new definition for the keys that came after the switch, never by the rebuild.
func TestCrashRebuild(t *testing.T) { crashRebuild(t, 0) }

// TestCrashRebuildPartitioned is TestCrashRebuild for the tally pipeline in 4 partitions: the
// rebuild replays the 4 and its switch takes the 4 leases from the live run; each partition
// switches at its own checkpoint, the oracle of each key is that of its partition's.
func TestCrashRebuildPartitioned(t *testing.T) { crashRebuild(t, 4) }

// crashRebuild is TestCrashRebuild for the tally pipeline in parts partitions (0: not
// partitioned).
func crashRebuild(t *testing.T, parts int) {
	initial, kills := 12_000, 10
	switch {
	case natstest.Long():
		initial, kills = 50_000, 24
	case testing.Short():
		initial, kills = 8_000, 6
	}
	s := seed(t)
	began := time.Now()
	rng := rand.New(rand.NewPCG(s, 7))
	r := newRebuildEnv(t)
	r.parts = parts
	config := r.config
	if parts > 0 {
		config = r.configParts
	}
	v1 := config("v1", "follow", 1, "out.first")
	v2 := config("v2", "follow", 2, "out.first2")
	v2end := config("v2end", "end", 2, "out.first2")
	r.ensureStreams(v1)

	// The first events name every old key, then the live run starts.
	old := func(rng *rand.Rand) func(int) string {
		return func(i int) string {
			if i < oldKeys {
				return "k" + strconv.Itoa(i)
			}
			return "k" + strconv.Itoa(rng.IntN(oldKeys))
		}
	}
	if err := r.publish(initial, old(rng), rng); err != nil {
		t.Fatal(err)
	}
	live := watch(r.startLogged(v1, "live.log"))
	t.Cleanup(func() { _ = live.c.cmd.Process.Kill() })
	head := r.lastSeq()
	natstest.Progress(t, "the live run to read the first events", childStall, rebuildLimit, r.liveProgress, func() bool {
		if !live.running() {
			t.Fatalf("the live run exited: %v\n%s", live.err, r.logOf("live.log"))
		}
		return r.liveAt() >= head
	})

	// Load while it rebuilds: up to 300 events a second, on the old keys (with more, the
	// NATS server of a -race test binary on a busy machine makes the rebuild chase the live
	// run for minutes).
	stopLoad, loadDone := make(chan struct{}), make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(s, 8))
		tick := time.NewTicker(50 * time.Millisecond) // a pace, not a synchronisation
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				loadDone <- nil
				return
			case <-tick.C:
			}
			if err := r.publish(15, old(rng), rng); err != nil {
				loadDone <- err
				return
			}
		}
	}()
	stopped := false
	defer func() {
		if !stopped {
			close(stopLoad)
			<-loadDone
		}
	}()

	viaAfter := rng.IntN(2) == 0
	plan := rebuildPlan(rng, kills, uint64(initial/kills), viaAfter)
	t.Logf("%d attempts planned; the switch %s", len(plan), map[bool]string{true: "dies at after-switch", false: "succeeds"}[viaAfter])
	ends := map[string]int{}
	var final string
	n := 0 // attempts run
	for i, losses := 0, 0; i < len(plan); n++ {
		a, start := plan[i], time.Now()
		end, logName := r.rebuild(n, v2, a)
		ends[end]++
		t.Logf("attempt %d (%s): %s after %s; live checkpoint %d, rebuild's %d", n, a, end, time.Since(start).Round(time.Millisecond), r.liveProgress(), r.rebuildProgress())
		if r.pointer().Version >= 2 {
			final = logName
			n++
			break
		}
		if strings.HasPrefix(end, endLost) { // not what the attempt was for: again
			if losses++; losses == maxLosses {
				t.Fatalf("%d attempts in a row lost a lease: ends %v", losses, ends)
			}
		} else {
			i, losses = i+1, 0
		}
		if !live.running() {
			t.Fatalf("the live run exited before the switch: %v\n%s", live.err, r.logOf("live.log"))
		}
		if strings.Contains(r.fileOf(logName), "phase=handover") {
			// It died with the pipeline's lease, or asking for it: the live run takes it back
			// when the lease expires, and goes on (then the next hand-over is one from it).
			at, since := r.liveProgress(), time.Now()
			natstest.Eventually(t, childStall, "the live run to go on after attempt "+strconv.Itoa(n), func() bool { return r.liveProgress() > at })
			t.Logf("the live run went on %s after attempt %d", time.Since(since).Round(time.Millisecond), n)
		}
	}
	p := r.pointer()
	if p.Version != 2 || p.Bucket != "tally_v2" || p.Pipeline != "tally" || p.Seq == 0 {
		t.Fatalf("after %d attempts: pointer %+v, want version 2 in tally_v2", n, p)
	}
	t.Logf("switched at %d after %s; ends of the attempts: %v", p.Seq, time.Since(began).Round(time.Millisecond), ends)
	for _, f := range commitFailpoints {
		if ends[endCommit+" "+f] != 1 {
			t.Errorf("the attempt with failpoint %s at P=1 did not die there: ends %v", f, ends)
		}
	}
	if ends[endBefore] == 0 {
		t.Errorf("no attempt died at before-switch: ends %v", ends)
	}
	if viaAfter && ends[endAfter] != 1 || !viaAfter && ends[endSuccess] != 1 {
		t.Errorf("the switch was to die at after-switch (%t): ends %v", viaAfter, ends)
	}
	if ends[endKilled+" in replay"] == 0 {
		t.Errorf("no attempt was killed from outside during the replay: ends %v", ends)
	}
	// Once an attempt has written the rebuild's checkpoint, the next one resumes from it.
	resumed := 0
	for i := 1; i < n; i++ {
		prev, cur := r.fileOf(fmt.Sprintf("rebuild-%02d.log", i-1)), r.fileOf(fmt.Sprintf("rebuild-%02d.log", i))
		switch {
		case strings.Contains(cur, "resuming the rebuild"):
			resumed++
		case strings.Contains(prev, "rebuild started") || strings.Contains(prev, "resuming the rebuild"):
			t.Errorf("attempt %d did not resume the rebuild attempt %d had checkpointed:\n%s", i, i-1, r.logOf(fmt.Sprintf("rebuild-%02d.log", i)))
		}
	}
	if resumed == 0 {
		t.Error("no attempt resumed the rebuild of one it followed")
	}
	if ends[endSuccess] == 1 {
		want := fmt.Sprintf("pipeline tally: switched to version 2 at checkpoint %d (resumed an interrupted rebuild)", p.Seq)
		if !strings.Contains(r.fileOf(final), want) {
			t.Errorf("the run that switched does not say %q:\n%s", want, r.logOf(final))
		}
	}
	for _, key := range r.rebuildKeys() {
		if _, err := r.load(key); !errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("the rebuild's checkpoint %s after the switch: %v, want it deleted with the switch", key, err)
		}
	}

	// The live run refuses the rebuilt version: it stops by itself, with exit code 1.
	select {
	case <-live.exited:
	case <-time.After(childStall):
		t.Fatalf("the live run still runs %s after the switch:\n%s", childStall, r.logOf("live.log"))
	}
	var ee *exec.ExitError
	if !errors.As(live.err, &ee) || ee.ExitCode() != 1 || !strings.Contains(r.fileOf("live.log"), "rebuilt as version 2") {
		t.Errorf("the live run after the switch: %v, want exit code 1 saying the pipeline was rebuilt as version 2:\n%s", live.err, r.logOf("live.log"))
	}

	// Stop the load, publish keys never seen before, and run the rebuild's definition to the
	// end of the stream.
	close(stopLoad)
	stopped = true
	if err := <-loadDone; err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := r.publish(20*newKeys, func(i int) string { return "n" + strconv.Itoa(i%newKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	at := func(string) uint64 { return p.Seq }
	if parts > 0 { // each partition at its checkpoint: the live run stopped, v2end has not run
		switched := r.partSeqs()
		t.Logf("the partitions switched at %v", switched)
		at = atPartitions(switched)
	}
	r.runToEnd(v2end, "v2end.log")
	r.verifyRebuildAt(at, at)
	t.Logf("%s: %d events, %d attempts (%v), switched at %d, in %s",
		t.Name(), len(r.events()), sum(ends), ends, p.Seq, time.Since(began).Round(time.Millisecond))
}

// sum adds the counts of m.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// runToEnd runs `processor run` on cfg (stop: end) until it exits at the end of the stream,
// and fails the test when it fails, or when the pipeline's checkpoint does not advance for
// childStall.
func (r *rebuildEnv) runToEnd(cfg, logName string) {
	r.t.Helper()
	c := r.startLogged(cfg, logName)
	r.t.Cleanup(func() { _ = c.cmd.Process.Kill() }) // when the wait fails the test
	var err error
	exited := false
	natstest.Progress(r.t, "the run of "+filepath.Base(cfg)+" to the end", childStall, rebuildLimit, r.liveProgress, func() bool {
		select {
		case err = <-c.done:
			exited = true
		default:
		}
		return exited
	})
	if err != nil {
		r.t.Fatalf("the run of %s: %v\n%s", filepath.Base(cfg), err, r.logOf(logName))
	}
}

// foldTally folds the events up to sequence upto as the tally pipeline does with factor.
func foldTally(evs []tallyEvent, upto uint64, factor int) map[string]tallyState {
	out := map[string]tallyState{}
	for _, e := range evs {
		if e.seq > upto {
			break
		}
		s := out[e.k]
		out[e.k] = tallyState{N: s.N + 1, Sum: s.Sum + factor*e.v}
	}
	return out
}

// foldTallyAt is foldTally with a position per key: the events of key up to upto(key).
func foldTallyAt(evs []tallyEvent, upto func(key string) uint64, factor int) map[string]tallyState {
	out := map[string]tallyState{}
	for _, e := range evs {
		if e.seq > upto(e.k) {
			continue
		}
		s := out[e.k]
		out[e.k] = tallyState{N: s.N + 1, Sum: s.Sum + factor*e.v}
	}
	return out
}

// bucket reads every key of the KV bucket name.
func (r *rebuildEnv) bucket(name string) map[string]tallyState {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := r.js.KeyValue(ctx, name)
	if err != nil {
		r.t.Fatalf("bucket %s: %v", name, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		r.t.Fatalf("bucket %s: %v", name, err)
	}
	out := map[string]tallyState{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			r.t.Fatalf("bucket %s, key %s: %v", name, k, err)
		}
		var s tallyState
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			r.t.Fatalf("bucket %s, key %s: %q: %v", name, k, e.Value(), err)
		}
		out[k] = s
	}
	return out
}

// tallyMismatches compares the keys of a bucket with an oracle's.
func tallyMismatches(what string, got, want map[string]tallyState) []string {
	var bad []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok || g != want[k] {
			bad = append(bad, fmt.Sprintf("%s: key %s = %+v (present: %t), want %+v", what, k, g, ok, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			bad = append(bad, fmt.Sprintf("%s: key %s = %+v, want none", what, k, got[k]))
		}
	}
	return bad
}

// outMismatches compares the derived events in OUT with the oracle: each ce-id once; for
// each event, one `on` emit on out.ev.<key> with the key's count after it; for each key, one
// `once` emit, on out.first.<key> (the live run, old handler) when its first event is at or
// before the switch at switchedAt, on out.first2.<key> (the new definition) after.
func (r *rebuildEnv) outMismatches(evs []tallyEvent, switchedAt func(key string) uint64) []string {
	r.t.Helper()
	type want struct {
		k string
		n int
	}
	bySeq := map[uint64]want{}
	firstSeq := map[string]uint64{}
	count := map[string]int{}
	for _, e := range evs {
		count[e.k]++
		bySeq[e.seq] = want{e.k, count[e.k]}
		if _, ok := firstSeq[e.k]; !ok {
			firstSeq[e.k] = e.seq
		}
	}
	var bad []string
	ids := map[string]bool{}
	emits := map[uint64]int{}
	first, first2 := map[string]int{}, map[string]int{}
	for _, m := range natstest.ReadAll(r.t, r.js, "OUT", "") {
		id := m.Headers().Get("ce-id")
		if ids[id] {
			bad = append(bad, fmt.Sprintf("OUT: ce-id %s twice (%s)", id, m.Subject()))
		}
		ids[id] = true
		i := strings.LastIndexByte(m.Subject(), '.')
		prefix, key := m.Subject()[:i], m.Subject()[i+1:]
		switch prefix {
		case "out.ev":
			seq, _ := strconv.ParseUint(m.Headers().Get(commit.HeaderSourceSeq), 10, 64)
			var d struct {
				N int `json:"n"`
			}
			err := json.Unmarshal(m.Data(), &d)
			if w, ok := bySeq[seq]; !ok || err != nil || w.k != key || w.n != d.N {
				bad = append(bad, fmt.Sprintf("OUT: %s %s of event %d, want n %d on out.ev.%s", m.Subject(), m.Data(), seq, w.n, w.k))
			}
			emits[seq]++
		case "out.first":
			first[key]++
		case "out.first2":
			first2[key]++
		default:
			bad = append(bad, fmt.Sprintf("OUT: unexpected subject %s", m.Subject()))
		}
	}
	for _, e := range evs {
		if emits[e.seq] != 1 {
			bad = append(bad, fmt.Sprintf("OUT: %d `on` emits of event %d (key %s), want 1", emits[e.seq], e.seq, e.k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(firstSeq)) {
		w1, w2 := 1, 0
		if firstSeq[k] > switchedAt(k) {
			w1, w2 = 0, 1
		}
		if first[k] != w1 || first2[k] != w2 {
			bad = append(bad, fmt.Sprintf("OUT: key %s (first event %d, switch at %d): %d out.first, %d out.first2, want %d and %d",
				k, firstSeq[k], switchedAt(k), first[k], first2[k], w1, w2))
		}
	}
	for k := range first {
		if _, ok := firstSeq[k]; !ok {
			bad = append(bad, fmt.Sprintf("OUT: out.first.%s, a key without events", k))
		}
	}
	for k := range first2 {
		if _, ok := firstSeq[k]; !ok {
			bad = append(bad, fmt.Sprintf("OUT: out.first2.%s, a key without events", k))
		}
	}
	return bad
}

// verifyRebuild compares the source stream, both versions of the projection, the pipeline's
// checkpoint and OUT with the oracle, for a switch at sequence switchedAt.
func (r *rebuildEnv) verifyRebuild(switchedAt uint64) { r.verifyRebuildFrozen(switchedAt, switchedAt) }

// verifyRebuildFrozen is verifyRebuild for a version 1 frozen at frozenAt, before the switch
// (the last live run died inside a commit at frozenAt, after publishing derived events of
// events up to switchedAt).
func (r *rebuildEnv) verifyRebuildFrozen(switchedAt, frozenAt uint64) {
	r.verifyRebuildAt(func(string) uint64 { return switchedAt }, func(string) uint64 { return frozenAt })
}

// verifyRebuildAt is verifyRebuildFrozen with the positions of each key: those of its
// partition, for a partitioned pipeline.
func (r *rebuildEnv) verifyRebuildAt(switchedAt, frozenAt func(key string) uint64) {
	t := r.t
	t.Helper()
	evs := r.events()
	last := evs[len(evs)-1].seq
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, "EV")
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	if st.Msgs != uint64(len(evs)) || st.FirstSeq != 1 || st.LastSeq != last || uint64(len(evs)) != last {
		t.Fatalf("EV holds %d messages, %d..%d; %d were published, the last at %d", st.Msgs, st.FirstSeq, st.LastSeq, len(evs), last)
	}
	for i, e := range evs { // sorted, as many as the sequences: each sequence once
		if e.seq != uint64(i+1) {
			t.Fatalf("event %d recorded at sequence %d", i+1, e.seq)
		}
	}
	bad := tallyMismatches("tally (version 1, frozen at the switch)", r.bucket("tally"), foldTallyAt(evs, frozenAt, 1))
	bad = append(bad, tallyMismatches("tally_v2", r.bucket("tally_v2"), foldTally(evs, last, 2))...)
	bad = append(bad, r.outMismatches(evs, switchedAt)...)
	for _, key := range partitionKeys("tally", r.parts) {
		if cp, err := r.load(key); err != nil || cp.Seq != last || cp.Bucket("tally") != "tally_v2" {
			bad = append(bad, fmt.Sprintf("the checkpoint %s: %+v, %v; want %d in tally_v2", key, cp, err, last))
		}
	}
	for i, m := range bad {
		if i == 20 {
			t.Errorf("... and %d more", len(bad)-20)
			break
		}
		t.Error(m)
	}
	t.Logf("rebuild: %d events, %d keys; mismatches: %d", len(evs), len(foldTally(evs, last, 1)), len(bad))
}

// TestCrashRebuildResume interrupts `processor rebuild` in its replay, with SIGINT then
// SIGTERM: each time it must exit 1 saying how to resume, keeping its checkpoint, and the
// next run must resume from that checkpoint, not start over; the last one switches. The
// versions and OUT are then compared with the oracle as in TestCrashRebuild.
func TestCrashRebuildResume(t *testing.T) {
	events := 20_000
	if testing.Short() {
		events = 12_000
	}
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 9))
	r := newRebuildEnv(t)
	v1 := r.config("v1end", "end", 1, "out.first")
	v2 := r.config("v2end", "end", 2, "out.first2")
	r.ensureStreams(v1)
	if err := r.publish(events, func(i int) string { return "k" + strconv.Itoa(i%oldKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	r.runToEnd(v1, "v1.log")

	var kept uint64 // the rebuild's checkpoint the last run left
	runs, losses := 0, 0
	// run runs the rebuild until done tells to stop, and returns its process and log; a run
	// that lost a lease before (see leaseLoss) is run again, up to maxLosses times in all.
	run := func(what string, done func() bool) (*proc, string) {
		t.Helper()
		for {
			logName := fmt.Sprintf("rebuild-%02d.log", runs)
			runs++
			_, err := r.load(checkpoint.RebuildKey("tally"))
			resume := err == nil // an earlier run left its checkpoint
			c := watch(r.startArgs(logName, nil, "rebuild", "-c", v2, "tally", "--log-level", "info"))
			t.Cleanup(func() { _ = c.c.cmd.Process.Kill() })
			natstest.Progress(t, what, childStall, rebuildLimit, r.rebuildProgress, func() bool { return !c.running() || done() })
			if resume && !strings.Contains(r.fileOf(logName), fmt.Sprintf(`msg="resuming the rebuild" pipeline=tally version=2 checkpoint=%d`, kept)) {
				t.Errorf("run %d did not resume from %d:\n%s", runs-1, kept, r.logOf(logName))
			}
			var ee *exec.ExitError
			if !c.running() && errors.As(c.err, &ee) && ee.ExitCode() == 1 && leaseLoss(r.fileOf(logName)) != "" {
				if losses++; losses == maxLosses {
					t.Fatalf("%d runs lost a lease:\n%s", losses, r.logOf(logName))
				}
				t.Logf("run %d: %s, again", runs-1, leaseLoss(r.fileOf(logName)))
				kept = r.rebuildProgress()
				continue
			}
			return c, logName
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		// Interrupt it once it has committed past what the previous run left.
		c, logName := run("the rebuild to replay", func() bool { return r.rebuildProgress() > kept })
		if !c.running() {
			t.Fatalf("the rebuild exited before it was interrupted (%v): publish more events\n%s", c.err, r.logOf(logName))
		}
		_ = c.c.cmd.Process.Signal(sig)
		select {
		case <-c.exited:
		case <-time.After(childStall):
			t.Fatalf("the rebuild still runs %s after %s:\n%s", childStall, sig, r.logOf(logName))
		}
		var ee *exec.ExitError
		if !errors.As(c.err, &ee) || ee.ExitCode() != 1 || !strings.Contains(r.fileOf(logName), "interrupted") ||
			!strings.Contains(r.fileOf(logName), "to resume") {
			t.Fatalf("the rebuild after %s: %v, want exit code 1 saying how to resume:\n%s", sig, c.err, r.logOf(logName))
		}
		cp, err := r.load(checkpoint.RebuildKey("tally"))
		if err != nil || cp.Seq <= kept || cp.Seq >= r.lastSeq() {
			t.Fatalf("the rebuild's checkpoint after %s: %+v, %v; want it kept, past %d and short of %d", sig, cp, err, kept, r.lastSeq())
		}
		kept = cp.Seq
		t.Logf("%s: exit code 1, the rebuild's checkpoint kept at %d of %d", sig, kept, r.lastSeq())
	}

	// The same command resumes and switches.
	c, logName := run("the rebuild to switch", func() bool { return false })
	want := fmt.Sprintf("pipeline tally: switched to version 2 at checkpoint %d (resumed an interrupted rebuild)", r.lastSeq())
	if c.err != nil || !strings.Contains(r.fileOf(logName), want) {
		t.Fatalf("the last run: %v, want it to say %q:\n%s", c.err, want, r.logOf(logName))
	}
	p := r.pointer()
	if p.Version != 2 || p.Bucket != "tally_v2" || p.Seq != r.lastSeq() {
		t.Fatalf("pointer %+v, want version 2 in tally_v2 at %d", p, r.lastSeq())
	}
	r.verifyRebuild(p.Seq)
}

// TestCrashRebuildAfterLiveCrash: the live run dies inside a commit, after it published the
// derived events of a batch and before its checkpoint S (failpoint after-outputs); a rebuild
// then takes the pipeline's lease from the dead process. Those events after S have derived
// events out, the old definition's, with the ids the new one would give them: the switch goes
// after them (S'), so that they keep those, and the new definition emits from S' on. OUT must
// hold, for keys first seen up to S', the old `once` emit, and for keys first seen after it
// (published after the rebuild), the new one; version 1 stays at S.
func TestCrashRebuildAfterLiveCrash(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed(t), 10))
	r := newRebuildEnv(t)
	v1 := r.config("v1end", "end", 1, "out.first")
	v2 := r.config("v2end", "end", 2, "out.first2")
	r.ensureStreams(v1)
	if err := r.publish(1000, func(i int) string { return "k" + strconv.Itoa(i%oldKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	r.runToEnd(v1, "v1.log")
	at := r.lastSeq()
	if err := r.publish(100, func(i int) string { return "n" + strconv.Itoa(i%newKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	crash := watch(r.startArgs("crash.log", []string{"JETFOLD_FAILPOINTS=after-outputs", "JETFOLD_FAILPOINT_P=1"}, "run", "-c", v1))
	t.Cleanup(func() { _ = crash.c.cmd.Process.Kill() })
	select {
	case <-crash.exited:
	case <-time.After(childStall):
		t.Fatalf("the live run did not die at after-outputs:\n%s", r.logOf("crash.log"))
	}
	if !killedBySignal(crash.err) || r.liveProgress() != at {
		t.Fatalf("the live run: %v, checkpoint %d; want it killed at after-outputs, its checkpoint at %d", crash.err, r.liveProgress(), at)
	}
	b := watch(r.startArgs("rebuild.log", nil, "rebuild", "-c", v2, "tally"))
	t.Cleanup(func() { _ = b.c.cmd.Process.Kill() })
	natstest.Progress(t, "the rebuild", childStall, rebuildLimit, r.rebuildProgress, func() bool { return !b.running() })
	p := r.pointer()
	if b.err != nil || p.Version != 2 || p.Seq <= at || !strings.Contains(r.logOf("rebuild.log"), "died inside a commit") {
		t.Fatalf("the rebuild: %v, pointer %+v; want a switch after %d, past the dead run's derived events\n%s", b.err, p, at, r.logOf("rebuild.log"))
	}
	// Keys the new definition sees first.
	if err := r.publish(100, func(i int) string { return "m" + strconv.Itoa(i%newKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	r.runToEnd(v2, "v2.log")
	r.verifyRebuildFrozen(p.Seq, at)
}

// TestCrashRebuildPartitionedAfterLiveCrash is TestCrashRebuildAfterLiveCrash for the tally
// pipeline in 4 partitions. Partition P (that of key n0) dies inside a commit (after-outputs),
// alone: the test holds the other partitions' leases while it runs. Those others then run on
// to the end of the stream (in the test's process), publishing the derived events of events
// past P's checkpoint too, which P's read-back finds in OUT beside its own orphans. The
// rebuild's switch must put P after its own orphans only (the events of its first batch), and
// every other partition at its live checkpoint: P's new keys, which appear only after that
// first batch, get their `once` emit from the new definition, not lost to a replay hydrated
// past them.
func TestCrashRebuildPartitionedAfterLiveCrash(t *testing.T) {
	const parts, batch = 4, 100
	rng := rand.New(rand.NewPCG(seed(t), 11))
	r := newRebuildEnv(t)
	r.parts = parts
	v1 := r.configParts("v1end", "end", 1, "out.first")
	v2 := r.configParts("v2end", "end", 2, "out.first2")
	// A batch of at most `batch` stream positions, also while catching up: P's first batch
	// ends before the new keys.
	y := strings.Replace(r.fileOf("v1end.yaml"), "max_wait: 10ms}", fmt.Sprintf("max_wait: 10ms, catch_up: {size: %d}}", batch), 1)
	if !strings.Contains(y, "catch_up") {
		t.Fatal("no batch line to bound")
	}
	if err := os.WriteFile(v1, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	r.ensureStreams(v1)
	p := pipeline.PartitionOf("n0", parts)
	if err := r.publish(1000, func(i int) string { return "k" + strconv.Itoa(i%oldKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	r.runToEnd(v1, "v1.log")
	at := r.lastSeq()
	// The crashed run's first batch: old keys of every partition; then new keys.
	if err := r.publish(batch, func(i int) string { return "k" + strconv.Itoa(i%oldKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	if err := r.publish(100, func(i int) string { return "n" + strconv.Itoa(i%newKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rebuildLimit)
	defer cancel()
	leases, err := checkpoint.OpenLeases(ctx, r.js, checkpoint.LeaseOptions{TTL: 2 * time.Second, Holder: "crashtest"})
	if err != nil {
		t.Fatal(err)
	}
	var releases []func()
	for i := range parts {
		if i == p {
			continue
		}
		_, release, err := leases.Acquire(ctx, checkpoint.PartitionKey("tally", i))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	crash := watch(r.startArgs("crash.log", []string{"JETFOLD_FAILPOINTS=after-outputs", "JETFOLD_FAILPOINT_P=1"}, "run", "-c", v1))
	t.Cleanup(func() { _ = crash.c.cmd.Process.Kill() })
	select {
	case <-crash.exited:
	case <-time.After(childStall):
		t.Fatalf("partition %d did not die at after-outputs:\n%s", p, r.logOf("crash.log"))
	}
	if seqs := r.partSeqs(); !killedBySignal(crash.err) || slices.ContainsFunc(seqs, func(s uint64) bool { return s != at }) {
		t.Fatalf("the live run: %v, checkpoints %v; want it killed at after-outputs, every checkpoint at %d", crash.err, seqs, at)
	}
	// The other partitions go on to the end, each with operators of its own.
	last := r.lastSeq()
	errs := make(chan error, parts-1)
	for i := range parts {
		if i == p {
			continue
		}
		q := pipetest.Build(t, r.js, filepath.Join(r.dir, fmt.Sprintf("v1end-p%d.yaml", i)), r.fileOf("v1end.yaml"), nil)[0]
		go func() {
			errs <- pipeline.NewRunner(q, pipeline.Options{JS: r.js, Partition: pipeline.Partition{Index: i, Count: parts}, OutputStreams: []string{"OUT"}}).Run(ctx)
		}()
	}
	for range parts - 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, release := range releases {
		release()
	}
	frozen := r.partSeqs()
	for i, seq := range frozen {
		if want := map[bool]uint64{true: at, false: last}[i == p]; seq != want {
			t.Fatalf("partition %d at %d before the rebuild, want %d", i, seq, want)
		}
	}

	b := watch(r.startArgs("rebuild.log", nil, "rebuild", "-c", v2, "tally"))
	t.Cleanup(func() { _ = b.c.cmd.Process.Kill() })
	natstest.Progress(t, "the rebuild", childStall, rebuildLimit, r.rebuildProgress, func() bool { return !b.running() })
	if ptr := r.pointer(); b.err != nil || ptr.Version != 2 || !strings.Contains(r.logOf("rebuild.log"), "died inside a commit") {
		t.Fatalf("the rebuild: %v, pointer %+v; want a switch, past partition %d's orphans\n%s", b.err, ptr, p, r.logOf("rebuild.log"))
	}
	switched := r.partSeqs()
	for i, seq := range switched {
		ok := seq == last
		if i == p {
			ok = seq > at && seq <= at+batch
		}
		if !ok {
			t.Errorf("partition %d switched at %d: want %d (partition %d: after %d, within the first batch)", i, seq, last, p, at)
		}
	}
	// Keys the new definition sees first.
	if err := r.publish(100, func(i int) string { return "m" + strconv.Itoa(i%newKeys) }, rng); err != nil {
		t.Fatal(err)
	}
	r.runToEnd(v2, "v2.log")
	r.verifyRebuildAt(atPartitions(switched), atPartitions(frozen))
	t.Logf("partition %d died inside its first batch after %d; the partitions switched at %v", p, at, switched)
}
