package pipeline_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// statefulYAML is the stateful pipeline of shoptest (window with lateness, dedupe, timeout)
// alone, on the shop streams, in n partitions; bySubject puts it on a stream that stores each
// event under its user's partition (`shop.<user>` -> `<p>.shop.<user>`), read partition by
// partition.
func statefulYAML(t *testing.T, url string, n int, bySubject bool) string {
	t.Helper()
	y := fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n", url) + shoptest.Streams +
		"pipelines:" + fmt.Sprintf(shoptest.Stateful, "all", "end", 200, 100000)
	if bySubject {
		for old, repl := range map[string]string{
			`{name: SHOP, subjects: ["shop.>"]}`: fmt.Sprintf(`{name: SHOP, subjects: ["shop.*"], subject_transform: {src: "shop.*", dest: "{{partition(%d,1)}}.shop.{{wildcard(1)}}"}}`, n),
			"source: {stream: SHOP, ":            "source: {stream: SHOP, partitioned_by_subject: true, ",
		} {
			if !strings.Contains(y, old) {
				t.Fatalf("no %q in the stateful pipeline's file", old)
			}
			y = strings.Replace(y, old, repl, 1)
		}
	}
	return shoptest.WithPartitions(t, y, n)
}

// statefulWorkload is the workload of the partitioned stateful tests: the shop workload with
// clock probes (events dated 8 s ahead: keyless, filtered heartbeats with a user, and with a
// time that does not parse) every 400 events.
func statefulWorkload(seed uint64) [][]byte {
	return shoptest.WithClockProbes(shoptest.Workload(seed, 6000, 300), 400, 8*time.Second)
}

// statefulDiff counts how two oracle results differ: late events, closed windows, fired and
// pending timers that one has and the other has not.
func statefulDiff(a, b shoptest.StatefulWant) (late, closed, fired, pending int) {
	sym := func(x, y map[string]bool) int {
		n := 0
		for k := range x {
			if !y[k] {
				n++
			}
		}
		for k := range y {
			if !x[k] {
				n++
			}
		}
		return n
	}
	set := func(w shoptest.StatefulWant) (l, c, f, p map[string]bool) {
		l, c, f, p = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, d := range w.Windows.Dead {
			l[fmt.Sprint(d.Seq)] = true
		}
		for _, x := range w.Windows.Closed {
			c[fmt.Sprint(x.KVKey, x.Value["n"], x.Value["total"])] = true
		}
		for _, x := range w.Timers.Fired {
			f[x.Key+"@"+oracle.Timestamp(x.Deadline)] = true
		}
		for _, x := range w.Timers.Pending {
			p[x.Key+"@"+oracle.Timestamp(x.Deadline)] = true
		}
		return l, c, f, p
	}
	al, ac, af, ap := set(a)
	bl, bc, bf, bp := set(b)
	return sym(al, bl), sym(ac, bc), sym(af, bf), sym(ap, bp)
}

// TestPartitionedStatefulOracle checks the stateful pipeline (a window with lateness, a dedupe
// and a timeout) in 4 partitions against shoptest.StatefulOracleN, which runs the models on
// each partition's events with the partition's own watermark: the windows, their close events,
// the timers (fired and pending) and the dead letters. The workload is one where that
// watermark matters: the 4-partition oracle must differ from the unpartitioned one (fewer late
// events, other timers), else the comparison would not tell a watermark per partition from one
// for the stream.
//
// "one partition" checks the oracle's reading of the workload's probes on the unpartitioned
// pipeline. "alone" runs each partition's runner on a server of its own (the whole workload
// published to each), in both layouts, and compares each server with its partition's oracle:
// which partition reads, dead-letters and moves its watermark with each event. "together" runs
// the 4 partitions as a processor does (pipeline.RunAll, one server; they once shared their
// operators, and raced), "in turn" one after the other on one server, as after a failover
// (a partition's windows and timers once indexed every partition's, and its watermark closed
// and fired them).
func TestPartitionedStatefulOracle(t *testing.T) {
	const n = 4
	payloads := statefulWorkload(17)
	want := shoptest.StatefulOracleN(payloads, n)
	one := shoptest.StatefulOracle(payloads)
	late, closed, fired, pending := statefulDiff(one, want)
	t.Logf("%d events; oracle, 1 partition: %d late of %d dead letters, %d windows closed, %d timers fired, %d pending",
		len(payloads), len(one.Windows.Dead), one.Dead, len(one.Windows.Closed), len(one.Timers.Fired), len(one.Timers.Pending))
	t.Logf("oracle, %d partitions: %d late of %d dead letters, %d windows closed, %d timers fired, %d pending; watermarks %v",
		n, len(want.Windows.Dead), want.Dead, len(want.Windows.Closed), len(want.Timers.Fired), len(want.Timers.Pending), want.Watermarks)
	t.Logf("they differ in %d late events, %d closed windows, %d fired and %d pending timers", late, closed, fired, pending)
	if len(want.Windows.Dead) >= len(one.Windows.Dead) || late < 20 || fired == 0 || pending == 0 {
		t.Fatalf("the workload does not tell a watermark per partition from one: %d late with %d partitions, %d with one; differences: %d late, %d fired, %d pending",
			len(want.Windows.Dead), n, len(one.Windows.Dead), late, fired, pending)
	}

	t.Run("one partition", func(t *testing.T) {
		e := newEnv(t)
		ps := e.pipelines("p.yaml", statefulYAML(t, e.srv.ClientURL(), 1, false))
		e.publish(payloads)
		if err := e.run(ps, pipeline.Options{}); err != nil {
			t.Fatal(err)
		}
		for _, m := range shoptest.StatefulMismatches(t, e.js, streams.DLQStream, one) {
			t.Error(m)
		}
	})

	for _, tt := range []struct {
		name      string
		bySubject bool
	}{
		{"whole stream", false},
		{"by subject", true},
	} {
		// publish publishes the workload on e and returns each partition's oracle. By subject,
		// an event without a user belongs to the partition the server stored it under.
		publish := func(e *env) []shoptest.StatefulWant {
			keyless := func(seq uint64) int { return int(seq % n) }
			if tt.bySubject {
				e.publishUnder("shop", payloads)
				p := storedPartition(t, e, "none") // publishByUser's token for no user
				keyless = func(uint64) int { return p }
			} else {
				e.publish(payloads)
			}
			return shoptest.StatefulOracleParts(payloads, n, keyless)
		}
		t.Run("alone/"+tt.name, func(t *testing.T) {
			for i := range n {
				e := newEnv(t)
				ps := e.pipelines("p.yaml", statefulYAML(t, e.srv.ClientURL(), n, tt.bySubject))
				parts := publish(e)
				runPartition(t, e, ps[0], pipeline.Partition{Index: i, Count: n})
				for _, m := range shoptest.StatefulMismatches(t, e.js, streams.DLQStream, parts[i]) {
					t.Errorf("partition %d: %s", i, m)
				}
			}
		})
		t.Run("in turn/"+tt.name, func(t *testing.T) {
			e := newEnv(t)
			ps := e.pipelines("p.yaml", statefulYAML(t, e.srv.ClientURL(), n, tt.bySubject))
			parts := publish(e)
			for i := range n {
				runPartition(t, e, ps[0], pipeline.Partition{Index: i, Count: n})
			}
			for _, m := range shoptest.StatefulMismatches(t, e.js, streams.DLQStream, shoptest.MergeStateful(parts)) {
				t.Error(m)
			}
		})
		t.Run("together/"+tt.name, func(t *testing.T) {
			e := newEnv(t)
			ps := e.pipelines("p.yaml", statefulYAML(t, e.srv.ClientURL(), n, tt.bySubject))
			if got := len(pipeline.Partitions(ps[0])); got != n {
				t.Fatalf("%d partitions, want %d", got, n)
			}
			parts := publish(e)
			if err := e.run(ps, pipeline.Options{}); err != nil {
				t.Fatal(err)
			}
			for _, m := range shoptest.StatefulMismatches(t, e.js, streams.DLQStream, shoptest.MergeStateful(parts)) {
				t.Error(m)
			}
		})
	}
}

// storedPartition returns the partition SHOP stores the events published on shop.<token>
// under (its subject transform's `<p>.shop.<token>`), as the server computed it.
func storedPartition(t *testing.T, e *env, token string) int {
	t.Helper()
	msgs := natstest.ReadAll(t, e.js, "SHOP", "*.shop."+token)
	if len(msgs) == 0 {
		t.Fatalf("no event stored under *.shop.%s", token)
	}
	first, _, _ := strings.Cut(msgs[0].Subject(), ".")
	p, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("stored under %s: %v", msgs[0].Subject(), err)
	}
	return p
}

// runPartition runs partition part of p alone until it stops at the end of its stream.
func runPartition(t *testing.T, e *env, p *pipeline.Pipeline, part pipeline.Partition) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pipetest.Limit)
	defer cancel()
	if err := pipeline.NewRunner(p, pipeline.Options{JS: e.js, Partition: part}).Run(ctx); err != nil {
		t.Fatalf("partition %d: %v", part.Index, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("partition %d still running after %s", part.Index, pipetest.Limit)
	}
}
