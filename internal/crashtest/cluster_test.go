package crashtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/streams"
)

// clusterStreams is shoptest.Streams with three replicas each.
const clusterStreams = `
streams:
  - {name: SHOP, subjects: ["shop.>"], replicas: 3}
  - {name: SHOP_DERIVED, subjects: ["derived.>"], duplicate_window: 10m, replicas: 3}
`

// clusterLeaseTTL is the processors' lease TTL in the cluster test: the default's, so that the
// failover time measured is the one users get.
const clusterLeaseTTL = 5 * time.Second

// clusterConfig writes a configuration for a processor named instance on a cluster at url, with
// every stream and bucket at three replicas, and the carts pipeline in partitions.
func (e *crashEnv) clusterConfig(url, stop, instance string, partitions int) string {
	e.t.Helper()
	carts := fmt.Sprintf(shoptest.Pipeline, "all", stop, 300, 500)
	carts = shoptest.WithPartitions(e.t, carts, partitions)
	decl := clusterStreams
	if e.bySubject {
		// SHOP stores each event under its user's partition, which carts reads alone.
		decl = strings.Replace(decl, `{name: SHOP, subjects: ["shop.>"], replicas: 3}`, fmt.Sprintf(
			`{name: SHOP, subjects: ["shop.*"], replicas: 3, subject_transform: {src: "shop.*", dest: "{{partition(%d,1)}}.shop.{{wildcard(1)}}"}}`, partitions), 1)
		carts = strings.Replace(carts, "source: {stream: SHOP, ", "source: {stream: SHOP, partitioned_by_subject: true, ", 1)
	}
	y := fmt.Sprintf("nats: {url: %q, kv_replicas: 3}\nhttp: {listen: none}\n", url) +
		fmt.Sprintf("processor: {instance: %s, lease_ttl: %s}\n", instance, clusterLeaseTTL) +
		decl + "pipelines:" + carts + fmt.Sprintf(shoptest.Stateful, "all", stop, 300, 2000)
	path := filepath.Join(e.dir, instance+"-"+stop+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// TestClusterFailover runs three processors on one configuration against a 3-node JetStream
// cluster (streams and buckets at three replicas): one holds each pipeline's lease, the others
// stand by. Mid-run it SIGKILLs the holder of the carts pipeline and stops the node that leads
// the checkpoint bucket, measures the time until another processor advances the carts
// checkpoint, restarts the node, and compares the result with the oracle.
func TestClusterFailover(t *testing.T) { clusterFailover(t, 1, false) }

// TestClusterFailoverPartitioned is TestClusterFailover with the carts pipeline in 4
// partitions, which the three processors share (at most 2 each): it kills the holder of
// partition 0 and measures until every lease it held has advanced in another processor.
func TestClusterFailoverPartitioned(t *testing.T) { clusterFailover(t, 4, false) }

// TestClusterFailoverBySubject is TestClusterFailoverPartitioned on a stream that stores each
// event under its user's partition (a subject transform), each partition of carts reading its
// own subjects only (source.partitioned_by_subject).
func TestClusterFailoverBySubject(t *testing.T) { clusterFailover(t, 4, true) }

func clusterFailover(t *testing.T, partitions int, bySubject bool) {
	events := 6_000
	switch {
	case natstest.Long():
		events = 30_000
	case testing.Short():
		events = 3_000
	}
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 7))
	cl := natstest.NewCluster(t, natstest.ClusterOptions{})
	nc, js := cl.Connect(t)
	e := &crashEnv{t: t, dir: t.TempDir(), bin: processor(t), nc: nc, js: js,
		payload: shoptest.Workload(s, events, 1000), bySubject: bySubject}
	if d := os.Getenv("JETFOLD_CRASH_DIR"); d != "" { // keep the logs, one folder per test
		e.dir = filepath.Join(d, t.Name())
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	carts := partitionKeys("carts", partitions)
	if partitions > 1 {
		e.cartsKeys = carts
	}
	leaseNames := append([]string{"stateful"}, carts...)
	url := cl.URLs()

	names := []string{"proc-a", "proc-b", "proc-c"}
	procs := make(map[string]*child, len(names))
	for _, n := range names {
		procs[n] = e.startLogged(e.clusterConfig(url, "follow", n, partitions), n+".log")
	}
	t.Cleanup(func() {
		for _, c := range procs {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	natstest.Eventually(t, childStall, "the SHOP stream", func() bool {
		_, err := js.Stream(context.Background(), "SHOP")
		return err == nil
	})
	leases := e.observeLeases()
	holder := func(name string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h, err := leases.Holder(ctx, name)
		if err != nil {
			return ""
		}
		return h
	}
	// heldBy reads the holder of name until a read answers: one can time out while the
	// cluster elects a leader.
	heldBy := func(name string) string {
		var h string
		natstest.Eventually(t, childStall, "the holder of "+name, func() bool { h = holder(name); return h != "" })
		return h
	}
	// Every lease held; the partitions spread over the processes (pipeline.Share: at most
	// ceil(4/3) = 2 each, once every process has announced itself).
	natstest.Eventually(t, childStall, "every lease to be held, the partitions spread", func() bool {
		per := map[string]int{}
		for _, l := range leaseNames {
			h := holder(l)
			if h == "" {
				return false
			}
			if l != "stateful" {
				per[h]++
			}
		}
		for _, k := range per {
			if partitions > 1 && k > (partitions+len(names)-1)/len(names) {
				return false
			}
		}
		return true
	})

	half := events / 2
	e.publish(0, half)
	natstest.Progress(t, "the first half", childStall, childLimit, e.checkpointSeq, func() bool {
		return e.checkpointSeq() >= uint64(half)
	})
	victim := heldBy(carts[0])
	if _, ok := procs[victim]; !ok {
		t.Fatalf("the %s lease is held by %q, not by one of %v", carts[0], victim, names)
	}
	held := map[string][]string{} // process: the leases it holds
	for _, l := range leaseNames {
		h := heldBy(l)
		held[h] = append(held[h], l)
		// A partition may have moved while the processes started (Share); a whole pipeline not.
		if n := e.startedIn(names, l); n != 1 && !strings.Contains(l, ".p") {
			t.Fatalf("%d processes started %s before any fault, want 1 (the others stand by)", n, l)
		}
	}
	t.Logf("leases before the faults: %v", held)
	// Every process but one that holds every lease (or, partitioned, every process that holds
	// none) stands by (a process may take a few seconds to start: a request its start makes while another process creates a stream
	// may go unanswered, and is retried).
	natstest.Eventually(t, childStall, "the other processes to stand by", func() bool {
		for _, n := range names {
			idle := len(held[n]) < len(leaseNames)
			if partitions > 1 {
				idle = len(held[n]) == 0 // one at its fair share does not look for more
			}
			if idle && !strings.Contains(e.fullLog(n+".log"), "standing by") {
				return false
			}
		}
		return true
	})
	e.alive(procs)

	// The faults: a chunk of the second half, then a SIGKILL of the holder of carts (of its
	// partition 0) at a random moment and a stop of the node that leads the checkpoint bucket,
	// while the rest of the second half goes on being published: there is always work after
	// the kill, in every partition.
	chunk := max(half/10, 1)
	e.publish(half, half+chunk)
	time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond) // a random moment, not a synchronisation
	_ = procs[victim].cmd.Process.Signal(syscall.SIGKILL)
	<-procs[victim].done
	killed := time.Now()
	delete(procs, victim)
	atKill := map[string]uint64{}
	for _, l := range held[victim] {
		atKill[l] = e.pipelineSeq(l)
	}
	down := e.leaderOf(cl, streams.KVStream(streams.CheckpointBucket))
	cl.Stop(down)
	stopped := time.Since(killed)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := half + chunk; i < events; i += chunk {
			e.publish(i, min(i+chunk, events))
		}
	}()

	// The failover time: until every checkpoint the victim held has advanced.
	takeover := map[string]time.Duration{}
	natstest.Eventually(t, childStall, "other processors to advance the checkpoints the killed one held", func() bool {
		for l, at := range atKill {
			if _, ok := takeover[l]; !ok && e.pipelineSeq(l) > at {
				takeover[l] = time.Since(killed)
			}
		}
		return len(takeover) == len(atKill)
	})
	var worst time.Duration
	for l, d := range takeover {
		worst = max(worst, d)
		next := heldBy(l)
		t.Logf("failover: %s at checkpoint %d when %s was killed, advanced by %s %s after the kill",
			l, atKill[l], victim, next, d.Round(time.Millisecond))
		if next == victim || next == "" {
			t.Errorf("the %s lease is held by %q after the takeover; %s was killed", l, next, victim)
		}
	}
	t.Logf("failover: node n%d stopped %s after the kill; every lease of %s taken over and advanced within %s (lease TTL %s, target under %s)",
		down, stopped.Round(time.Millisecond), victim, worst.Round(time.Millisecond), clusterLeaseTTL, clusterLeaseTTL+2*time.Second)
	// The ceiling is the design's: the TTL runs out, a standby wakes (or looks, every TTL/4), then it
	// starts from its checkpoint; 2 s more than that is the target, a loaded machine
	// and a leader election on top get as much again.
	if limit := clusterLeaseTTL + clusterLeaseTTL/4 + 4*time.Second; worst > limit {
		t.Errorf("failover took %s, want under %s", worst.Round(time.Millisecond), limit)
	}

	cl.Restart(down)
	<-pubDone
	head := e.streamHead("SHOP")
	natstest.Progress(t, "the standbys to reach the stream head", childStall, childLimit, e.checkpointSeq, func() bool {
		e.alive(procs)
		return e.checkpointSeq() >= head
	})
	e.checkReplicas(3)
	for n, c := range procs {
		e.stopProcess(n, c)
		delete(procs, n)
	}
	final := e.startLogged(e.clusterConfig(url, "end", "proc-final", partitions), "child.log")
	e.waitExit(final, "the final run")
	// Read what every replica agrees on: the KV reads of the oracle's comparison are direct
	// gets, which any replica may answer.
	cl.WaitSynced()
	e.verify("a kill of a lease holder and a stopped NATS node", 1)
}

// observeLeases opens the lease bucket (created by the processors, at three replicas) to read
// who holds which lease.
func (e *crashEnv) observeLeases() *checkpoint.Leases {
	e.t.Helper()
	var l *checkpoint.Leases
	natstest.Eventually(e.t, childStall, "the lease bucket", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := e.js.KeyValue(ctx, checkpoint.LeaseBucket); err != nil {
			return false
		}
		var err error
		l, err = checkpoint.OpenLeases(ctx, streams.WithReplicas(e.js, 3), checkpoint.LeaseOptions{Holder: "test-observer"})
		return err == nil
	})
	return l
}

// startedIn counts the processes among names whose log says they started what lease names:
// a pipeline, or a partition of one (checkpoint.PartitionKey).
func (e *crashEnv) startedIn(names []string, lease string) int {
	want := "pipeline=" + lease + " "
	if p, i, ok := strings.Cut(lease, ".p"); ok {
		want = "pipeline=" + p + " partition=" + i + " "
	}
	n := 0
	for _, name := range names {
		for _, line := range strings.Split(e.fullLog(name+".log"), "\n") {
			if strings.Contains(line, `msg="pipeline started"`) && strings.Contains(line, want) {
				n++
				break
			}
		}
	}
	return n
}

// fullLog returns the whole log file name (logOf returns its end).
func (e *crashEnv) fullLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, name))
	return string(b)
}

// pipelineSeq returns the checkpoint of key, a pipeline or a partition (0 when it cannot be
// read).
func (e *crashEnv) pipelineSeq(key string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, streams.CheckpointBucket)
	if err != nil {
		return 0
	}
	cp, err := checkpoint.NewStore(kv).Load(ctx, key)
	if err != nil {
		return 0
	}
	return cp.Seq
}

// leaderOf returns the index of the cluster node that leads stream.
func (e *crashEnv) leaderOf(cl *natstest.Cluster, stream string) int {
	e.t.Helper()
	if ci := e.streamInfo(stream).Cluster; ci != nil {
		for i := range cl.Size() {
			if srv := cl.Server(i); srv != nil && srv.Name() == ci.Leader {
				return i
			}
		}
	}
	e.t.Fatalf("no node of the cluster leads %s", stream)
	return -1
}

// streamHead returns the last sequence of stream.
func (e *crashEnv) streamHead(stream string) uint64 {
	e.t.Helper()
	return e.streamInfo(stream).State.LastSeq
}

// streamInfo returns the information of stream, as the server gives it now.
func (e *crashEnv) streamInfo(stream string) *jetstream.StreamInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childStall)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		e.t.Fatalf("stream %s: %v", stream, err)
	}
	return s.CachedInfo()
}

// checkReplicas fails the test unless every stream (KV buckets included) has n replicas: one
// with fewer is lost with its node.
func (e *crashEnv) checkReplicas(n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childStall)
	defer cancel()
	list := e.js.ListStreams(ctx)
	seen := 0
	for info := range list.Info() {
		seen++
		if info.Config.Replicas != n {
			e.t.Errorf("stream %s has %d replicas, want %d", info.Config.Name, info.Config.Replicas, n)
		}
	}
	if err := list.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		e.t.Fatalf("list streams: %v", err)
	}
	if seen == 0 {
		e.t.Fatal("no stream listed")
	}
}
