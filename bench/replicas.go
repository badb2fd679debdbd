package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/streams"
	"github.com/jetfold/jetfold/streams/embedded"
)

// Layouts of a replicas case's stream (see [ReplicaCase]).
const (
	// LayoutWholeStream is one partition reading a stream without a subject transform.
	LayoutWholeStream = "whole stream"
	// LayoutBySubject is N partitions, each reading only its subjects of a stream whose
	// subject transform puts the partition first (source.partitioned_by_subject).
	LayoutBySubject = "by subject"
)

// defaultLeaseTTL is the children's processor.lease_ttl in the replicas mode: short, so that
// the partitions settle fast (a joining process is handed one partition per TTL/4).
const defaultLeaseTTL = 2 * time.Second

// Replicas mode deadlines: for the partitions to settle, for the fold, and for the children
// to exit once it is done.
const (
	settleTimeout = 2 * time.Minute
	foldTimeout   = 10 * time.Minute
	exitTimeout   = 30 * time.Second
)

// ReplicaCase is the replicas mode's measurement of Partitions partitions run by Replicas
// processes (`processor run`), over every round.
type ReplicaCase struct {
	Partitions int `json:"partitions"`
	Replicas   int `json:"replicas"`
	// Layout is LayoutWholeStream (one partition) or LayoutBySubject.
	Layout string `json:"layout"`
	// Rate, RawRate, Ratio, CPUPerEvent and Settle are the medians of the rounds'.
	Rate        float64       `json:"events_per_s"`
	RawRate     float64       `json:"raw_events_per_s"`
	Ratio       float64       `json:"ratio"`
	CPUPerEvent time.Duration `json:"cpu_per_event_ns"`
	Settle      time.Duration `json:"settle_ns"`
	// Rounds lists every round of the case, in order.
	Rounds []ReplicaRound `json:"rounds"`
}

// ReplicaRound is one round of a [ReplicaCase]: the raw consume of the case's stream by the
// bench process, then the fold by the child processes, from the resume of the paused pipeline
// (every partition's lease held, each process at its fair share) until every partition's
// checkpoint reached the last event of its partition.
type ReplicaRound struct {
	// Rate is events per second of the fold; RawRate the raw consume's; Ratio Rate / RawRate.
	Rate    float64 `json:"events_per_s"`
	RawRate float64 `json:"raw_events_per_s"`
	Ratio   float64 `json:"ratio"`
	// CPUPerEvent is the CPU time (user + system) of the children and of the bench process
	// (which holds the NATS server) during the fold, per event; ChildCPUPerEvent that of the
	// children alone; RawCPUPerEvent the bench process's during the raw consume.
	CPUPerEvent      time.Duration `json:"cpu_per_event_ns"`
	ChildCPUPerEvent time.Duration `json:"child_cpu_per_event_ns"`
	RawCPUPerEvent   time.Duration `json:"raw_cpu_per_event_ns"`
	// LifeCPUPerEvent is the children's CPU time over their whole lives (start-up, the
	// hand-over of partitions, the fold, shutdown; their rusage at exit), per event.
	LifeCPUPerEvent time.Duration `json:"life_cpu_per_event_ns"`
	// Settle is the time from starting the children until the partitions settled.
	Settle time.Duration `json:"settle_ns"`
	// Held is the number of partitions each child held when they settled.
	Held []int `json:"held"`
	// Folded is the sum of the projection's counts (every event counts one), Projected its
	// keys, Emitted the derived events.
	Folded    int `json:"folded"`
	Projected int `json:"projected_keys"`
	Emitted   int `json:"emitted"`
}

// replicaEnv is what the cases of a replicas run share.
type replicaEnv struct {
	o        Options
	dir      string
	bin      string
	url      string // the embedded server's client URL, for the children
	conn     *streams.Conn
	leases   *checkpoint.Leases // an observer's: reads the holders and members
	declared []config.Stream    // the declared streams, BENCH_OUT's included
	targets  map[int][]uint64   // per partition count, each partition's last sequence
}

// runReplicas is [Run] in the replicas mode (Options.Replicas).
func runReplicas(ctx context.Context, o Options, dir string) (Result, error) {
	res := Result{Events: o.Events, Keys: o.Keys, Workload: WorkloadFold}
	if o.Latency || o.Cold || o.Workload != WorkloadFold || o.URL != "" {
		return res, errors.New("bench: the replicas mode runs the fold workload on its embedded server only (no latency, cold, other workload or NATS URL)")
	}
	if o.CPUProfile != nil || o.Phase != nil {
		return res, errors.New("bench: the profiles are of a pipeline in this process: in the replicas mode the pipeline runs in others (profile them with perf record -a)")
	}
	ns := slices.Clone(o.Partitions)
	if len(ns) == 0 {
		ns = []int{1}
	}
	slices.Sort(ns)
	ns = slices.Compact(ns)
	rs := slices.Clone(o.Replicas)
	slices.Sort(rs)
	rs = slices.Compact(rs)
	if ns[0] < 1 || rs[0] < 1 {
		return res, fmt.Errorf("bench: partitions %v and replicas %v: want 1 or more", ns, rs)
	}
	if most := ns[len(ns)-1]; most > config.MaxPartitions {
		return res, fmt.Errorf("bench: partitions %v: a pipeline has at most %d", ns, config.MaxPartitions)
	}
	bin := o.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return res, fmt.Errorf("bench: the processor binary for the replicas: %w", err)
		}
		bin = exe
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = defaultLeaseTTL
	}
	cfgPath := filepath.Join(dir, "streams.yaml")
	if err := os.WriteFile(cfgPath, []byte(streamsYAML("", o.LeaseTTL, ns)), 0o600); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	cfg, err := config.Load(cfgPath, config.LoadOptions{Environ: []string{}})
	if err != nil {
		return res, fmt.Errorf("bench config: %w", err)
	}
	cfg.NATS.Embedded.StoreDir = filepath.Join(dir, "nats")
	cfg.NATS.Embedded.Listen = "127.0.0.1:-1" // a free loopback port, for the children
	conn, err := embedded.Connect(ctx, cfg.NATS, embedded.ConnectOptions{
		ConnectOptions: streams.ConnectOptions{Name: "jetfold-bench"},
	})
	if err != nil {
		return res, fmt.Errorf("bench: nats: %w", err)
	}
	defer conn.Close()
	srv, ok := conn.Server.(*embedded.Server)
	if !ok {
		return res, errors.New("bench: no embedded server")
	}
	if err := streams.EnsureStreams(ctx, conn.JS, cfg.Streams, nil); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	if _, err := streams.EnsureBucket(ctx, conn.JS, streams.CheckpointBucket); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	// An observer's leases: it reads the holders and the members, and never holds a lease.
	leases, err := checkpoint.OpenLeases(ctx, conn.JS, checkpoint.LeaseOptions{TTL: o.LeaseTTL, Holder: "jetfold-bench-observer"})
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	env := &replicaEnv{o: o, dir: dir, bin: bin, url: srv.ClientURL(), conn: conn, leases: leases, declared: cfg.Streams, targets: map[int][]uint64{}}
	for _, n := range ns {
		o.Logger.Info("publishing the workload", "stream", replicaStream(n), "events", o.Events, "keys", o.Keys)
		var rate float64
		// The same events as the other modes', each on <subject>.<its key>.
		if rate, res.PayloadBytes, err = publish(ctx, conn.JS, o, replicaSubject(n)); err != nil {
			return res, fmt.Errorf("publish: %w", err)
		}
		res.PublishRate = max(res.PublishRate, rate)
		if env.targets[n], err = partitionHeads(ctx, conn.JS, n); err != nil {
			return res, err
		}
	}
	var cases []*ReplicaCase
	for _, n := range ns {
		for _, r := range rs {
			layout := LayoutWholeStream
			if n > 1 {
				layout = LayoutBySubject
			}
			cases = append(cases, &ReplicaCase{Partitions: n, Replicas: r, Layout: layout})
		}
	}
	run := 0
	for round := range o.Rounds {
		order := slices.Clone(cases)
		if round%2 == 1 { // alternate: no case always runs first or last
			slices.Reverse(order)
		}
		for _, c := range order {
			run++
			rr, err := env.runCase(ctx, c, run)
			if err != nil {
				return res, fmt.Errorf("bench: %d x %d, round %d: %w", c.Partitions, c.Replicas, round+1, err)
			}
			o.Logger.Info("replicas round", "round", round+1, "partitions", c.Partitions, "replicas", c.Replicas,
				"events_per_s", int(rr.Rate), "raw", int(rr.RawRate), "ratio", rr.Ratio,
				"cpu_us_per_event", float64(rr.CPUPerEvent)/1e3, "settle", rr.Settle.Round(time.Millisecond), "held", rr.Held)
			c.Rounds = append(c.Rounds, rr)
		}
	}
	for _, c := range cases {
		c.Rate = median(c.Rounds, func(r ReplicaRound) float64 { return r.Rate })
		c.RawRate = median(c.Rounds, func(r ReplicaRound) float64 { return r.RawRate })
		c.Ratio = median(c.Rounds, func(r ReplicaRound) float64 { return r.Ratio })
		c.CPUPerEvent = median(c.Rounds, func(r ReplicaRound) time.Duration { return r.CPUPerEvent })
		c.Settle = median(c.Rounds, func(r ReplicaRound) time.Duration { return r.Settle })
		res.Replicas = append(res.Replicas, *c)
	}
	return res, nil
}

// median returns the median of f over rounds (the mean of the middle two for an even count).
func median[T int64 | float64 | time.Duration](rounds []ReplicaRound, f func(ReplicaRound) T) T {
	if len(rounds) == 0 {
		return 0
	}
	xs := make([]T, len(rounds))
	for i, r := range rounds {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// replicaStream is the stream of the workload for n partitions: BENCH_P<n>.
func replicaStream(n int) string { return "BENCH_P" + strconv.Itoa(n) }

// replicaSubject is the subject prefix the workload of n partitions is published on.
func replicaSubject(n int) string { return "benchp" + strconv.Itoa(n) }

// streamsYAML returns the start of the replicas mode's configurations, up to its pipelines:
// the NATS URL (for the children), no HTTP listener, the lease TTL, the workload's stream of
// each partition count in ns (each event on <subject>.<key>; for n > 1 the stream's subject
// transform puts its partition first) and BENCH_OUT.
func streamsYAML(url string, ttl time.Duration, ns []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "nats: {url: %q}\nhttp: {listen: none}\nprocessor: {lease_ttl: %s}\nstreams:\n", url, ttl)
	for _, n := range ns {
		subj := replicaSubject(n)
		fmt.Fprintf(&b, "  - {name: %s, subjects: [\"%s.*\"]", replicaStream(n), subj)
		if n > 1 {
			fmt.Fprintf(&b, ", subject_transform: {src: \"%s.*\", dest: \"{{partition(%d,1)}}.%s.{{wildcard(1)}}\"}", subj, n, subj)
		}
		b.WriteString("}\n")
	}
	b.WriteString("  - {name: BENCH_OUT, subjects: [\"benchout.>\"]}\npipelines:\n")
	return b.String()
}

// replicaYAML returns the children's configuration of pipeline name: the standard fold (with
// its emit) over the stream of n partitions, in n partitions reading their subjects only when
// n > 1, against the server at url.
func replicaYAML(url string, o Options, n int, name string) string {
	return streamsYAML(url, o.LeaseTTL, []int{n}) + Pipeline{Name: name, Stop: "end", Batch: o.Batch, CacheKeys: o.CacheKeys,
		Operators: FoldYAML(name) + fmt.Sprintf(emitYAML, "benchout."), stream: replicaStream(n), partitions: n}.yaml()
}

// partitionHeads returns the last sequence of each partition of the stream of n partitions
// (0 for a partition without events): where each partition's checkpoint ends.
func partitionHeads(ctx context.Context, js jetstream.JetStream, n int) ([]uint64, error) {
	s, err := js.Stream(ctx, replicaStream(n))
	if err != nil {
		return nil, fmt.Errorf("partition heads: %w", err)
	}
	if n == 1 {
		return []uint64{s.CachedInfo().State.LastSeq}, nil
	}
	heads := make([]uint64, n)
	for i := range heads {
		m, err := s.GetLastMsgForSubject(ctx, strconv.Itoa(i)+".>")
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("partition heads: partition %d: %w", i, err)
		}
		heads[i] = m.Sequence
	}
	return heads, nil
}

// partitionKeys returns the checkpoint keys (and lease names) of pipeline name's n partitions.
func partitionKeys(name string, n int) []string {
	if n == 1 {
		return []string{name}
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = checkpoint.PartitionKey(name, i)
	}
	return keys
}

// runCase runs one round of case c as the run-th run: the raw consume of its stream, then a
// new pipeline (bench_r<run>) in c.Replicas child processes.
func (e *replicaEnv) runCase(ctx context.Context, c *ReplicaCase, run int) (ReplicaRound, error) {
	var rr ReplicaRound
	o, js, n := e.o, e.conn.JS, c.Partitions
	rawCPU := cpuTime()
	var err error
	if rr.RawRate, err = rawConsume(ctx, js, replicaStream(n), o.Events); err != nil {
		return rr, fmt.Errorf("raw consume: %w", err)
	}
	rr.RawCPUPerEvent = (cpuTime() - rawCPU) / time.Duration(o.Events)

	name := "bench_r" + strconv.Itoa(run)
	// Paused before any child starts: the children take their partitions and hand them over
	// without reading an event, and the fold is measured from the resume.
	if err := control.Set(ctx, js, name, control.State{Paused: true, By: "processor bench"}); err != nil {
		return rr, err
	}
	// A new BENCH_OUT (as declared), for this run's count of derived events.
	if err := js.DeleteStream(ctx, "BENCH_OUT"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return rr, fmt.Errorf("reset derived events: %w", err)
	}
	if err := streams.EnsureStreams(ctx, js, e.declared, nil); err != nil {
		return rr, fmt.Errorf("reset derived events: %w", err)
	}
	cfgPath := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(replicaYAML(e.url, o, n, name)), 0o600); err != nil {
		return rr, fmt.Errorf("bench: %w", err)
	}
	started := time.Now()
	kids, err := startChildren(ctx, e.bin, cfgPath, name, c.Replicas, e.dir, o)
	if err != nil {
		return rr, err
	}
	defer kids.kill() // on every way out: an error, a cancel, a panic
	o.Logger.Info("processes started: waiting for the partitions to settle", "processes", c.Replicas, "partitions", n, "config", cfgPath)
	if rr.Held, err = e.settle(ctx, kids, name, n); err != nil {
		return rr, err
	}
	rr.Settle = time.Since(started)

	kidsCPU0, err := kids.cpu()
	if err != nil {
		return rr, err
	}
	cpu0 := cpuTime()
	began := time.Now()
	if err := control.Set(ctx, js, name, control.State{Paused: false, By: "processor bench"}); err != nil {
		return rr, err
	}
	if err := e.awaitCheckpoints(ctx, kids, name, n); err != nil {
		return rr, err
	}
	elapsed := time.Since(began)
	selfCPU := cpuTime() - cpu0
	kidsCPU1, err := kids.cpu()
	if err != nil {
		return rr, err
	}
	rr.Rate = float64(o.Events) / elapsed.Seconds()
	rr.Ratio = rr.Rate / rr.RawRate
	rr.ChildCPUPerEvent = (kidsCPU1 - kidsCPU0) / time.Duration(o.Events)
	rr.CPUPerEvent = (kidsCPU1 - kidsCPU0 + selfCPU) / time.Duration(o.Events)

	// With stop: end the children exit by themselves once every partition is at its end.
	life, err := kids.wait(ctx)
	if err != nil {
		return rr, err
	}
	rr.LifeCPUPerEvent = life / time.Duration(o.Events)
	if rr.Folded, rr.Projected, err = foldedCounts(ctx, js, name); err != nil {
		return rr, err
	}
	s, err := js.Stream(ctx, "BENCH_OUT")
	if err != nil {
		return rr, fmt.Errorf("derived events: %w", err)
	}
	rr.Emitted = int(s.CachedInfo().State.Msgs)
	if rr.Folded != o.Events || rr.Emitted != o.Events/o.EmitEvery {
		return rr, fmt.Errorf("the projection counts %d events and %d derived events were published, want %d and %d (logs in %s)",
			rr.Folded, rr.Emitted, o.Events, o.Events/o.EmitEvery, e.dir)
	}
	if err := js.DeleteKeyValue(ctx, name); err != nil {
		return rr, fmt.Errorf("drop projection %s: %w", name, err)
	}
	return rr, nil
}

// settle waits until every partition's lease of pipeline name is held by a child, each child
// within its fair share ceil(n / children) and, for n > 1, every child announced among the
// members; it returns the partitions each child holds.
func (e *replicaEnv) settle(ctx context.Context, kids *children, name string, n int) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	keys := partitionKeys(name, n)
	fair := (n + len(kids.cmds) - 1) / len(kids.cmds)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		held := make([]int, len(kids.cmds))
		ok := true
		for _, k := range keys {
			h, err := e.leases.Holder(ctx, k)
			if err != nil {
				return nil, fmt.Errorf("settle: lease %s: %w", k, err)
			}
			i := slices.Index(kids.instances, h)
			if i < 0 {
				ok = false
				continue
			}
			held[i]++
		}
		if slices.Max(held) > fair {
			ok = false
		}
		if ok && n > 1 {
			members, err := e.leases.Members(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("settle: %w", err)
			}
			slices.Sort(members)
			want := slices.Sorted(slices.Values(kids.instances))
			ok = slices.Equal(members, want)
		}
		if ok {
			return held, nil
		}
		last = fmt.Sprint(held)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the partitions did not settle (held %s, fair share %d): %w; logs in %s", last, fair, ctx.Err(), e.dir)
		case err := <-kids.exited:
			kids.waited++
			if err == nil {
				err = errors.New("exit status 0")
			}
			return nil, fmt.Errorf("a child exited while the partitions settled: %w", err)
		case <-tick.C:
		}
	}
}

// awaitCheckpoints waits until the checkpoint of every partition of pipeline name reached the
// last event of its partition.
func (e *replicaEnv) awaitCheckpoints(ctx context.Context, kids *children, name string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, foldTimeout)
	defer cancel()
	kv, err := e.conn.JS.KeyValue(ctx, streams.CheckpointBucket)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	keys := partitionKeys(name, n)
	pattern := name
	if n > 1 {
		pattern = name + ".*"
	}
	w, err := kv.Watch(ctx, pattern)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	defer func() { _ = w.Stop() }()
	targets := e.targets[n]
	seqs := make([]uint64, n)
	done := func() bool {
		for i, t := range targets {
			if seqs[i] < t {
				return false
			}
		}
		return true
	}
	for !done() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("checkpoints %v of %v: %w; logs in %s", seqs, targets, ctx.Err(), e.dir)
		case err := <-kids.exited:
			kids.waited++ // one that exited cleanly is not waited for again
			if err != nil {
				return fmt.Errorf("a child failed during the fold: %w", err)
			}
		case en, ok := <-w.Updates():
			if !ok {
				return errors.New("checkpoints: the watch ended")
			}
			if en == nil || en.Operation() != jetstream.KeyValuePut {
				continue
			}
			i := slices.Index(keys, en.Key())
			if i < 0 {
				continue
			}
			var cp checkpoint.Checkpoint
			if err := json.Unmarshal(en.Value(), &cp); err != nil {
				return fmt.Errorf("checkpoint %s: %w", en.Key(), err)
			}
			seqs[i] = max(seqs[i], cp.Seq)
		}
	}
	return nil
}

// foldedCounts reads projection name and returns the sum of its states' counts and its keys.
func foldedCounts(ctx context.Context, js jetstream.JetStream, name string) (sum, keys int, err error) {
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return 0, 0, fmt.Errorf("projection %s: %w", name, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, 0, fmt.Errorf("projection %s: %w", name, err)
	}
	defer func() { _ = w.Stop() }()
	for en := range w.Updates() {
		if en == nil {
			return sum, keys, nil // every current value delivered
		}
		var st struct {
			Count int `json:"count"`
		}
		if err := json.Unmarshal(en.Value(), &st); err != nil {
			return 0, 0, fmt.Errorf("projection %s key %s: %w", name, en.Key(), err)
		}
		sum += st.Count
		keys++
	}
	return 0, 0, fmt.Errorf("projection %s: the watch ended", name)
}

// children are the `processor run` processes of one case.
type children struct {
	cmds      []*exec.Cmd
	instances []string        // their processor.instance, in the order of cmds
	exited    chan error      // one value per child that exits (nil for exit status 0)
	waited    int             // values received from exited
	waits     []chan struct{} // each closed when its child was waited for
}

// startChildren starts r processes `bin run -c cfgPath`, instances <name>-r<i>, logging to
// files in dir. Each is in a process group of its own and dies with this process (Linux); its
// group is killed when ctx ends. Call kill when done.
func startChildren(ctx context.Context, bin, cfgPath, name string, r int, dir string, o Options) (*children, error) {
	k := &children{exited: make(chan error, r)}
	started := false
	defer func() {
		if !started { // an error or a panic: none of those started may outlive this call
			k.kill()
		}
	}()
	// The children read only the generated file: no JETFOLD_ variable of this environment
	// may point them elsewhere.
	var environ []string
	for _, v := range os.Environ() {
		if !strings.HasPrefix(v, "JETFOLD_") {
			environ = append(environ, v)
		}
	}
	for i := range r {
		inst := fmt.Sprintf("%s-r%d", name, i)
		logPath := filepath.Join(dir, inst+".log")
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("child log: %w", err)
		}
		cmd := exec.CommandContext(ctx, bin, "run", "-c", cfgPath)
		cmd.Env = append(slices.Clone(environ), "JETFOLD_PROCESSOR_INSTANCE="+inst)
		cmd.Stdout, cmd.Stderr = f, f
		cmd.Dir = dir
		childAttr(cmd)
		cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
		cmd.WaitDelay = 5 * time.Second
		err = cmd.Start()
		_ = f.Close() // the child holds its own descriptor
		if err != nil {
			return nil, fmt.Errorf("start %s run: %w", bin, err)
		}
		o.Logger.Debug("child started", "instance", inst, "pid", cmd.Process.Pid, "log", logPath)
		waited := make(chan struct{})
		k.cmds, k.instances, k.waits = append(k.cmds, cmd), append(k.instances, inst), append(k.waits, waited)
		go func() {
			err := cmd.Wait()
			close(waited)
			if err != nil {
				err = fmt.Errorf("%s (pid %d): %w; its log: %s", inst, cmd.Process.Pid, err, tail(logPath))
			}
			k.exited <- err
		}()
	}
	started = true
	return k, nil
}

// cpu returns the CPU time (user + system) the children used so far, from /proc (Linux).
func (k *children) cpu() (time.Duration, error) {
	var total time.Duration
	for _, c := range k.cmds {
		d, err := procCPU(c.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("cpu of child %d: %w", c.Process.Pid, err)
		}
		total += d
	}
	return total, nil
}

// wait waits for every child to exit by itself (exitTimeout at most, then SIGTERM, and after
// exitTimeout more the group is killed) and returns their CPU time over their lives; an exit status other than 0
// is an error.
func (k *children) wait(ctx context.Context) (time.Duration, error) {
	deadline := time.NewTimer(exitTimeout)
	defer deadline.Stop()
	var errs []error
	for late := 0; k.waited < len(k.cmds); {
		select {
		case err := <-k.exited:
			k.waited++
			errs = append(errs, err)
		case <-deadline.C:
			late++
			for i, c := range k.cmds {
				select {
				case <-k.waits[i]:
				default:
					if late == 1 {
						_ = c.Process.Signal(syscall.SIGTERM)
					} else {
						_ = killGroup(c.Process.Pid)
					}
				}
			}
			if late == 1 {
				errs = append(errs, fmt.Errorf("children still running %s after the fold: stopped", exitTimeout))
			}
			deadline.Reset(exitTimeout)
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for the processes to exit: %w", ctx.Err())
		}
	}
	var life time.Duration
	for _, c := range k.cmds {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			life += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return life, errors.Join(errs...)
}

// kill kills the process group of every child still running and waits for it.
func (k *children) kill() {
	for i, c := range k.cmds {
		select {
		case <-k.waits[i]:
		default:
			_ = killGroup(c.Process.Pid)
			<-k.waits[i]
		}
	}
}

// killGroup sends SIGKILL to the process group of pid (the child's own, see childAttr).
func killGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// procCPU returns the CPU time (user + system, every thread) of process pid from
// /proc/<pid>/stat, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	// After "pid (comm) ": state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// tail returns the last lines of the file at path, for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "\n" + strings.Join(lines[max(len(lines)-15, 0):], "\n")
}
