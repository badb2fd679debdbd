package checkpoint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
)

// TestWrongLastSequenceReplicated races expected-last-subject-sequence writes on a stream with
// three replicas: exactly one wins, and every refusal is recognised as a conflict. A replicated
// stream answers a write that races another in flight on its subject with error 10164 instead
// of 10071.
func TestWrongLastSequenceReplicated(t *testing.T) {
	c := natstest.NewCluster(t, natstest.ClusterOptions{})
	_, js := c.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	codes := map[jetstream.ErrorCode]int{}
	for round := range 20 {
		subject := "r3.k" + string(rune('a'+round))
		const writers = 20
		futures := make([]jetstream.PubAckFuture, writers)
		for i := range futures {
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: []byte{byte(i)}, Header: nats.Header{}},
				jetstream.WithExpectLastSequencePerSubject(0))
			if err != nil {
				t.Fatal(err)
			}
			futures[i] = f
		}
		won := 0
		for i, f := range futures {
			select {
			case <-f.Ok():
				won++
			case err := <-f.Err():
				var api *jetstream.APIError
				if errors.As(err, &api) {
					codes[api.ErrorCode]++
				}
				if !checkpoint.IsWrongLastSequence(err) {
					t.Fatalf("round %d, write %d: %v is not recognised as a wrong last sequence", round, i, err)
				}
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d writes won, want 1", round, won)
		}
	}
	t.Logf("refusals by error code: %v", codes)
}
