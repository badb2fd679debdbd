package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
)

// TestPartitionedEqualsUnpartitioned runs the shop pipeline with 4 partitions in one process,
// under leases: the projections, derived events and dead letters equal the oracle of the
// unpartitioned pipeline, each partition has its own checkpoint at the end of the stream, and
// the pipeline's own checkpoint is never written.
func TestPartitionedEqualsUnpartitioned(t *testing.T) {
	const n = 4
	e := newEnv(t)
	payloads := shoptest.Workload(3, 6000, 300)
	yaml := fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "end", 400, 100000)
	yaml = shoptest.WithPartitions(t, yaml, n)
	ps := e.pipelines("p.yaml", yaml)
	if got := len(pipeline.Partitions(ps[0])); got != n {
		t.Fatalf("%d partitions, want %d", got, n)
	}
	_, cps := e.runInTwo(ps, payloads, 3000, e.publish)
	ctx := context.Background()
	for i := range n {
		cp, err := cps.Load(ctx, checkpoint.PartitionKey("carts", i))
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
		if cp.Seq != uint64(len(payloads)) {
			t.Errorf("partition %d checkpoint %d, want %d", i, cp.Seq, len(payloads))
		}
	}
	if _, err := cps.Load(ctx, "carts"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the unpartitioned checkpoint of carts: %v, want none", err)
	}

	// processor status: a row per partition, with its checkpoint, lag, state and holder.
	st, err := pipeline.ReadStatus(ctx, e.js, ps[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != uint64(len(payloads)) || st.Lag != 0 || len(st.Partitions) != n {
		t.Fatalf("status: checkpoint %d lag %d partitions %d, want %d 0 %d", st.Checkpoint, st.Lag, len(st.Partitions), len(payloads), n)
	}
	for i, p := range st.Partitions {
		if p.Partition != i || p.Checkpoint != uint64(len(payloads)) || p.Lag != 0 || p.State != status.Stopped || p.Instance != "jetfold" {
			t.Errorf("partition %d status %+v, want checkpoint %d, lag 0, stopped, by jetfold", i, p, len(payloads))
		}
	}
}

// runInTwo runs the partitioned ps under leases in two runs: publish puts payloads[:first] on
// the stream before the first, the rest before the second, which resumes each partition from
// its checkpoint and must process each of the rest once over its partitions; then the
// projections, derived events and dead letters must equal the unpartitioned oracle's. It
// returns the leases and the checkpoint store.
func (e *env) runInTwo(ps []*pipeline.Pipeline, payloads [][]byte, first int, publish func([][]byte)) (*checkpoint.Leases, *checkpoint.Store) {
	t := e.t
	t.Helper()
	publish(payloads[:first])
	ctx := context.Background()
	leases, err := checkpoint.OpenLeases(ctx, e.js, checkpoint.LeaseOptions{TTL: 2 * time.Second, Holder: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.run(ps, pipeline.Options{Leases: leases}); err != nil {
		t.Fatal(err)
	}
	publish(payloads[first:])
	var events atomic.Int64 // OnCommit is called by the partitions at once
	if err := e.run(ps, pipeline.Options{Leases: leases, OnCommit: func(c pipeline.CommitInfo) {
		events.Add(int64(c.Events))
	}}); err != nil {
		t.Fatal(err)
	}
	if got := events.Load(); got != int64(len(payloads)-first) {
		t.Errorf("the second run processed %d events over its partitions, want %d (each once)", got, len(payloads)-first)
	}
	e.check(payloads)
	kv, err := e.js.KeyValue(ctx, streams.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	return leases, checkpoint.NewStore(kv)
}

// TestPartitionOfAgreesWithServer checks that PartitionOf puts a key in the partition that
// nats-server's partition() subject mapping gives the subject token holding that key.
func TestPartitionOfAgreesWithServer(t *testing.T) {
	const n = 7
	_, js := natstest.Connect(t, natstest.Server(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "P", Subjects: []string{"p.*"},
		SubjectTransform: &jetstream.SubjectTransformConfig{Source: "p.*", Destination: fmt.Sprintf("{{partition(%d,1)}}.p.{{wildcard(1)}}", n)},
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "p." + keys[i]}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for i, m := range natstest.ReadAll(t, js, "P", "") {
		part, rest, _ := strings.Cut(m.Subject(), ".")
		if rest != "p."+keys[i] {
			t.Fatalf("message %d on %s, want the key %s", i, m.Subject(), keys[i])
		}
		seen[part] = true
		if want := fmt.Sprint(pipeline.PartitionOf(keys[i], n)); part != want {
			t.Errorf("key %s: server partition %s, PartitionOf %s", keys[i], part, want)
		}
	}
	if len(seen) != n {
		t.Errorf("the keys fell into %d partitions, want all %d", len(seen), n)
	}
}
