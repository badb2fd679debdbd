package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
)

// TestCluster checks the cluster helper: a KV bucket with three replicas takes writes while
// one node is stopped, and the node that was stopped holds them once it is back.
func TestCluster(t *testing.T) {
	c := natstest.NewCluster(t, natstest.ClusterOptions{})
	if c.Size() != 3 || c.Leader() < 0 {
		t.Fatalf("size %d, meta leader %d: want 3 nodes and a leader", c.Size(), c.Leader())
	}
	_, js := c.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, "KV_b")
	if err != nil {
		t.Fatal(err)
	}
	if ci := info.CachedInfo().Cluster; ci == nil || len(ci.Replicas) != 2 {
		t.Fatalf("KV_b cluster info %+v: want a leader and 2 replicas", ci)
	}
	if _, err := kv.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}

	// Stop the node that leads the bucket's stream: another takes over, writes go on.
	stopped := -1
	for i := range c.Size() {
		if c.Server(i).Name() == info.CachedInfo().Cluster.Leader {
			stopped = i
		}
	}
	if stopped < 0 {
		t.Fatalf("no node is named %q", info.CachedInfo().Cluster.Leader)
	}
	c.Stop(stopped)
	if c.Server(stopped) != nil {
		t.Fatal("a stopped node is still returned")
	}
	natstest.Eventually(t, 30*time.Second, "a write while a node is down", func() bool {
		_, err := kv.Put(ctx, "k", []byte("2"))
		return err == nil
	})
	c.Restart(stopped)

	// The restarted node catches up: its own replica of the bucket's stream holds both writes.
	natstest.Eventually(t, 30*time.Second, "the restarted node to hold the writes", func() bool {
		return localLastSeq(t, c.Server(stopped), "KV_b") >= 2
	})
}

// localLastSeq returns the last sequence of the replica of stream that s holds (0 when it
// holds none).
func localLastSeq(t *testing.T, s *server.Server, stream string) uint64 {
	t.Helper()
	jsz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		t.Fatalf("jsz: %v", err)
	}
	for _, a := range jsz.AccountDetails {
		for _, sd := range a.Streams {
			if sd.Name == stream {
				return sd.State.LastSeq
			}
		}
	}
	return 0
}
