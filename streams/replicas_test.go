package streams_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReplicas: through WithReplicas, the buckets and the dead-letter stream jetfold creates
// ask for that many replicas (a single server refuses 3: the request carried them); without
// it, one.
func TestReplicas(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ctx := context.Background()
	if streams.Replicas(js) != 1 || streams.Replicas(streams.WithReplicas(js, 1)) != 1 {
		t.Fatal("replicas without WithReplicas: want 1")
	}
	r3 := streams.WithReplicas(js, 3)
	if streams.Replicas(r3) != 3 {
		t.Fatalf("Replicas = %d, want 3", streams.Replicas(r3))
	}
	if _, err := streams.EnsureBucket(ctx, r3, "three"); err == nil || !strings.Contains(err.Error(), "replicas > 1 not supported") {
		t.Fatalf("a bucket of 3 replicas on one server: %v, want it refused for its replicas", err)
	}
	if _, err := streams.EnsureCaptured(ctx, r3, "dlq.x", "DLQ3", []string{"dlq.>"}, 0); err == nil || !strings.Contains(err.Error(), "replicas > 1 not supported") {
		t.Fatalf("a stream of 3 replicas on one server: %v, want it refused for its replicas", err)
	}
	kv, err := streams.EnsureBucket(ctx, js, "one")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.(interface{ StreamInfo() *jetstream.StreamInfo }).StreamInfo().Config.Replicas != 1 {
		t.Fatalf("status %v, %v", st, err)
	}
}
