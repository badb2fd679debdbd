package crashtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
)

// replicaPartitions is the carts pipeline's partitions in TestReplicasJoinAndLeave.
const replicaPartitions = 4

// replicaLeaseTTL is the processors' lease TTL in TestReplicasJoinAndLeave: short, so that
// partitions move within seconds, yet twice the minimum, so that a loaded machine does not
// make a holder give its leases up.
const replicaLeaseTTL = 2 * time.Second

// replicaConfig writes a configuration for a processor named instance on the server at url,
// with the carts pipeline in replicaPartitions partitions; stop is follow or end.
func (e *crashEnv) replicaConfig(url, stop, instance string) string {
	e.t.Helper()
	carts := shoptest.WithPartitions(e.t, fmt.Sprintf(shoptest.Pipeline, "all", stop, 300, 500), replicaPartitions)
	stateful := shoptest.WithPartitions(e.t, fmt.Sprintf(shoptest.Stateful, "all", stop, 300, 2000), replicaPartitions)
	// No http.listen: the processes share the default address as replicas on one host do, and
	// all but the first take a free port.
	y := fmt.Sprintf("nats: {url: %q}\n", url) +
		fmt.Sprintf("processor: {instance: %s, lease_ttl: %s}\n", instance, replicaLeaseTTL) +
		shoptest.Streams + "pipelines:" + carts + stateful
	path := filepath.Join(e.dir, instance+"-"+stop+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// TestReplicasJoinAndLeave changes the processes running partitioned pipelines while events
// arrive (carts, and stateful with its windows, dedupe and timers, in 4 partitions each, each
// partition with its own watermark): one process holds the 4 partitions of carts; two more join and get partitions handed
// over; one leaves (SIGTERM) and its partitions move to the others; one is killed (SIGKILL)
// and the last takes every partition. Each change happens while a quarter of the events is
// being published. The result equals the oracle: no event lost or applied twice while
// partitions moved.
func TestReplicasJoinAndLeave(t *testing.T) {
	events, _ := sizes(testing.Short())
	s := seed(t)
	e := newCrashEnv(t, events, s)
	e.cartsKeys = partitionKeys("carts", replicaPartitions)
	e.statefulKeys = partitionKeys("stateful", replicaPartitions)
	url := e.srv.ClientURL()
	procs := map[string]*child{}
	t.Cleanup(func() {
		for _, c := range procs {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	start := func(name string) {
		procs[name] = e.startLogged(e.replicaConfig(url, "follow", name), name+".log")
	}
	alive := func() { e.alive(procs) }
	var leases *checkpoint.Leases
	natstest.Eventually(t, childStall, "the lease bucket", func() bool {
		alive()
		var err error
		leases, err = checkpoint.OpenLeases(context.Background(), e.js, checkpoint.LeaseOptions{Holder: "test-observer"})
		return err == nil
	})
	// holders returns the partitions of carts each process holds (a partition whose lease
	// cannot be read, or is free, is under "").
	holders := func() map[string][]int {
		out := map[string][]int{}
		for i, k := range e.cartsKeys {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			h, err := leases.Holder(ctx, k)
			cancel()
			if err != nil {
				h = ""
			}
			out[h] = append(out[h], i)
		}
		return out
	}
	// spread waits until every partition is held, by the processes in want only, none of them
	// holding more than its fair share, and returns who holds what.
	spread := func(what string, want ...string) map[string][]int {
		t.Helper()
		fair := (replicaPartitions + len(want) - 1) / len(want)
		var h map[string][]int
		natstest.Eventually(t, childStall, what, func() bool {
			alive()
			h = holders()
			held := 0
			for _, n := range want {
				if len(h[n]) > fair {
					return false
				}
				held += len(h[n])
			}
			return held == replicaPartitions
		})
		t.Logf("%s: %v", what, h)
		return h
	}
	caughtUp := func(what string, upTo int) {
		t.Helper()
		natstest.Progress(t, what, childStall, childLimit, e.checkpointSeq, func() bool {
			alive()
			return e.checkpointSeq() >= uint64(upTo)
		})
	}
	// during publishes events [from, to) while change runs: in 40 chunks, one per 50 ms
	// until change returns (load, not a synchronisation), so that partitions move while
	// events arrive; what is left after change returns goes at once.
	during := func(from, to int, change func()) {
		t.Helper()
		var changed atomic.Bool
		published := make(chan int, 1)
		go func() {
			chunk, during := max((to-from)/40, 1), 0
			for i := from; i < to; i += chunk {
				e.publish(i, min(i+chunk, to))
				if !changed.Load() {
					during = min(i+chunk, to) - from
					time.Sleep(50 * time.Millisecond)
				}
			}
			published <- during
		}()
		change()
		changed.Store(true)
		t.Logf("%d of %d events published while the processes changed", <-published, to-from)
	}
	q := events / 4

	start("proc-a")
	spread("proc-a alone", "proc-a")
	e.publish(0, q)
	caughtUp("proc-a alone", q)

	var h map[string][]int
	during(q, 2*q, func() {
		start("proc-b")
		start("proc-c")
		h = spread("proc-b and proc-c joined", "proc-a", "proc-b", "proc-c")
	})
	caughtUp("three processes", 2*q)
	e.sameAnswers(t, []string{"proc-a", "proc-b", "proc-c"})

	// The process leaving holds partitions: the most, the first by name among equals.
	names := func() []string {
		var out []string
		for n := range procs {
			out = append(out, n)
		}
		sort.Slice(out, func(i, j int) bool {
			if len(h[out[i]]) != len(h[out[j]]) {
				return len(h[out[i]]) > len(h[out[j]])
			}
			return out[i] < out[j]
		})
		return out
	}
	leaver := names()[0]
	during(2*q, 3*q, func() {
		e.stopProcess(leaver, procs[leaver])
		delete(procs, leaver)
		rest := names()
		h = spread(leaver+" left", rest...)
	})
	caughtUp("two processes", 3*q)

	victim := names()[0]
	survivor := names()[1]
	during(3*q, events, func() {
		_ = procs[victim].cmd.Process.Signal(syscall.SIGKILL)
		<-procs[victim].done
		delete(procs, victim)
		h = spread(victim+" killed", survivor)
	})
	caughtUp("one process", events)

	moved, freePort := 0, 0
	for _, line := range strings.Split(e.fullLog("proc-a.log")+e.fullLog("proc-b.log")+e.fullLog("proc-c.log"), "\n") {
		if strings.Contains(line, "handing a partition over") {
			moved++
		}
		if strings.Contains(line, "listening on a free port instead") {
			freePort++
		}
	}
	if freePort < 2 {
		t.Errorf("%d of the 3 processes on one host took a free port for HTTP, want at least 2 (the default address is one)", freePort)
	}
	if moved == 0 {
		t.Error("no process handed a partition over: the joins moved nothing")
	}
	t.Logf("partitions handed over to even out the processes: %d", moved)

	e.stopProcess(survivor, procs[survivor])
	delete(procs, survivor)
	e.waitExit(e.startLogged(e.replicaConfig(url, "end", "proc-final"), "child.log"), "the final run")
	e.verify("two joins, a leave and a kill of processes sharing partitions", 4)
}

// sameAnswers reads a few carts keys through the HTTP read API of each of the processes names
// (the address each logs), all of them, holders of the keys' partitions or not: each answers
// every key, with the same state (nothing is being published meanwhile).
func (e *crashEnv) sameAnswers(t *testing.T, names []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childStall)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, "carts")
	if err != nil {
		t.Fatal(err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		if len(keys) < 8 {
			keys = append(keys, k)
		}
	}
	_ = lister.Stop()
	if len(keys) == 0 {
		t.Fatal("no carts key to read")
	}
	addr := regexp.MustCompile(`msg="http listening" addr=(\S+)`)
	for _, k := range keys {
		var first string
		for _, n := range names {
			m := addr.FindStringSubmatch(e.fullLog(n + ".log"))
			if m == nil {
				t.Fatalf("%s logs no HTTP address", n)
			}
			resp, err := http.Get("http://" + m[1] + "/v1/projections/carts/" + url.PathEscape(k))
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s answers %d for carts/%s: %s", n, resp.StatusCode, k, body)
			}
			if first == "" {
				first = string(body)
			} else if string(body) != first {
				t.Errorf("carts/%s: %s answers %s, %s %s", k, n, body, names[0], first)
			}
		}
	}
	t.Logf("%d carts keys read through the HTTP API of each of %v: the same answers", len(keys), names)
}
