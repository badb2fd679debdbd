package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// bySubjectYAML is the shop pipeline in 4 partitions on a stream that stores each event under
// the partition of its user (`shop.<user>` -> `<p>.shop.<user>`), read partition by partition.
func bySubjectYAML(t *testing.T, url string) string {
	t.Helper()
	y := fmt.Sprintf(shopYAML, url, "all", "end", 400, 100000)
	y = strings.Replace(y, `{name: SHOP, subjects: ["shop.>"]}`,
		`{name: SHOP, subjects: ["shop.*"], subject_transform: {src: "shop.*", dest: "{{partition(4,1)}}.shop.{{wildcard(1)}}"}}`, 1)
	y = strings.Replace(y, "source: {stream: SHOP, ", "source: {stream: SHOP, partitioned_by_subject: true, ", 1)
	return shoptest.WithPartitions(t, y, 4)
}

// TestPartitionedBySubject runs the shop pipeline with 4 partitions, each reading only its own
// subjects of a stream partitioned by a subject transform: the result equals the oracle of
// the unpartitioned pipeline over two runs (the second resumes each partition from its
// checkpoint), each partition's checkpoint is the sequence of its own last event (it read no
// other: with the whole stream read, each would be at the end), every partition has no lag,
// and an event whose key is not its subject's partition is a dead letter.
func TestPartitionedBySubject(t *testing.T) {
	const n = 4
	e := newEnv(t)
	payloads := shoptest.Workload(4, 6000, 300)
	ps := e.pipelines("p.yaml", bySubjectYAML(t, e.srv.ClientURL()))
	leases, cps := e.runInTwo(ps, payloads, 3000, func(p [][]byte) { e.publishUnder("shop", p) })
	ctx := context.Background()
	behind, total := 0, 0
	for i := range n {
		own := natstest.ReadAll(t, e.js, "SHOP", fmt.Sprintf("%d.>", i))
		if len(own) == 0 {
			t.Fatalf("partition %d holds no event", i)
		}
		total += len(own)
		last, err := own[len(own)-1].Metadata()
		if err != nil {
			t.Fatal(err)
		}
		cp, err := cps.Load(ctx, checkpoint.PartitionKey("carts", i))
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
		if cp.Seq != last.Sequence.Stream {
			t.Errorf("partition %d checkpoint %d, want %d (its last event's)", i, cp.Seq, last.Sequence.Stream)
		}
		if cp.Seq < uint64(len(payloads)) {
			behind++
		}
	}
	if total != len(payloads) {
		t.Errorf("the partitions' subjects hold %d events, want all %d", total, len(payloads))
	}
	if behind != n-1 {
		t.Errorf("%d partitions have a checkpoint before the end of the stream, want %d (all but the last event's)", behind, n-1)
	}
	st, err := pipeline.ReadStatus(ctx, e.js, ps[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Lag != 0 || len(st.Partitions) != n {
		t.Fatalf("status: lag %d, %d partitions, want 0 and %d", st.Lag, len(st.Partitions), n)
	}
	for _, p := range st.Partitions {
		if p.Lag != 0 {
			t.Errorf("partition %d: lag %d, want 0", p.Partition, p.Lag)
		}
	}

	// An event whose key is not its subject's: the partition its subject names dead-letters it.
	user, other := "user-1", ""
	for i := 2; other == ""; i++ {
		if u := fmt.Sprintf("user-%d", i); pipeline.PartitionOf(u, n) != pipeline.PartitionOf(user, n) {
			other = u
		}
	}
	before := len(natstest.ReadAll(t, e.js, streams.DLQStream, streams.DLQSubject("carts")))
	e.publishUnder("shop", [][]byte{[]byte(`{"type":"add","user_id":"` + user + `"}`)})
	if _, err := e.js.Publish(ctx, "shop."+other, []byte(`{"type":"add","user_id":"`+user+`"}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.run(ps, pipeline.Options{Leases: leases}); err != nil {
		t.Fatal(err)
	}
	dl := natstest.ReadAll(t, e.js, streams.DLQStream, streams.DLQSubject("carts"))
	if len(dl) != before+1 {
		t.Fatalf("%d dead letters, want %d", len(dl), before+1)
	}
	if got := dl[len(dl)-1].Headers().Get("Jetfold-Error"); !strings.Contains(got, "another partition") {
		t.Errorf("dead letter reason %q, want the key in another partition", got)
	}
}

// TestPartitionedBySubjectRefusesUnpartitionedStream checks that a pipeline declared
// partitioned by subject stops at start on a stream that does not store its events under as
// many partitions (no transform, or another count): reading `<i>.>` would miss them all.
func TestPartitionedBySubjectRefusesUnpartitionedStream(t *testing.T) {
	tests := []struct {
		name, stream string
	}{
		{"no transform", `{name: SHOP, subjects: ["shop.*"]}`},
		{"other count", `{name: SHOP, subjects: ["shop.*"], subject_transform: {src: "shop.*", dest: "{{partition(3,1)}}.shop.{{wildcard(1)}}"}}`},
		{"subjects left out", `{name: SHOP, subjects: ["shop.*", "more.>"], subject_transform: {src: "shop.*", dest: "{{partition(4,1)}}.shop.{{wildcard(1)}}"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			// Declared partitioned in one file, the stream created from another.
			y := bySubjectYAML(t, e.srv.ClientURL())
			other := strings.Replace(y, `{name: SHOP, subjects: ["shop.*"], subject_transform: {src: "shop.*", dest: "{{partition(4,1)}}.shop.{{wildcard(1)}}"}}`, tt.stream, 1)
			other = strings.Replace(other, "source: {stream: SHOP, partitioned_by_subject: true, ", "source: {stream: SHOP, ", 1)
			e.pipelines("streams.yaml", other)
			ps := e.pipelines("p.yaml", y)
			err := e.run(ps, pipeline.Options{})
			if !errors.Is(err, pipeline.ErrStopped) || !strings.Contains(err.Error(), "partitioned_by_subject") {
				t.Fatalf("run: %v, want ErrStopped naming partitioned_by_subject", err)
			}
		})
	}
}
