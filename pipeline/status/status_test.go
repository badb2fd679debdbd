package status_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
)

// TestPartitionLag checks the lag of each partition: the messages after its checkpoint on the
// subjects it reads (the source's filter, or its own subjects when partitioned by subject),
// never the others.
func TestPartitionLag(t *testing.T) {
	ctx := context.Background()
	nc, err := nats.Connect(natstest.Server(t).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js := natstest.JetStream(t, nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"0.>", "1.>"}}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: streams.CheckpointBucket})
	if err != nil {
		t.Fatal(err)
	}
	pub := func(subject string, n int) {
		for range n {
			if _, err := js.Publish(ctx, subject, []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 1-4 on 0.a, 5-10 on 1.a, 11-13 on 0.b, 14-15 on 1.b; both partitions at 10.
	pub("0.a", 4)
	pub("1.a", 6)
	cps := checkpoint.NewStore(kv)
	for i := range 2 {
		if _, err := cps.Commit(ctx, checkpoint.PartitionKey("p", i), checkpoint.Checkpoint{Seq: 10, Stream: "S"}); err != nil {
			t.Fatal(err)
		}
	}
	pub("0.b", 3)
	pub("1.b", 2)

	tests := []struct {
		name     string
		of       status.Of
		lags     [2]uint64
		pipeline uint64
	}{
		{"whole stream", status.Of{}, [2]uint64{5, 5}, 5},
		{"filtered source", status.Of{Subjects: []string{"*.b"}}, [2]uint64{5, 5}, 5},
		{"filter on 0 only", status.Of{Subjects: []string{"0.>"}}, [2]uint64{3, 3}, 3},
		{"partitioned by subject", status.Of{PartitionSubjects: func(i int) []string { return []string{fmt.Sprintf("%d.>", i)} }}, [2]uint64{3, 2}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			of := tc.of
			of.Pipeline, of.Stream, of.Partitions = "p", "S", 2
			st, err := status.Read(ctx, js, of)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Partitions) != 2 {
				t.Fatalf("%d partitions, want 2", len(st.Partitions))
			}
			for i, p := range st.Partitions {
				if p.Checkpoint != 10 || p.Lag != tc.lags[i] {
					t.Errorf("partition %d: checkpoint %d lag %d, want 10 and %d", i, p.Checkpoint, p.Lag, tc.lags[i])
				}
			}
			if st.Checkpoint != 10 || st.Lag != tc.pipeline {
				t.Errorf("pipeline: checkpoint %d lag %d, want 10 and %d", st.Checkpoint, st.Lag, tc.pipeline)
			}
		})
	}
}
