package streams_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// TestEnsureStreamsWaitsForCluster starts EnsureStreams against a cluster that has lost its
// quorum (two of three nodes stopped): it retries instead of failing, and creates the stream
// with its three replicas once the nodes are back.
func TestEnsureStreamsWaitsForCluster(t *testing.T) {
	c := natstest.NewCluster(t, natstest.ClusterOptions{})
	_, js := c.Connect(t)
	c.Stop(1)
	c.Stop(2)
	var logs natstest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- streams.EnsureStreams(ctx, js, []config.Stream{{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}}, log)
	}()
	natstest.Eventually(t, time.Minute, "a retry", func() bool {
		select {
		case err := <-done:
			t.Fatalf("EnsureStreams returned %v without a quorum", err)
		default:
		}
		return strings.Contains(logs.String(), "NATS is not ready: retrying")
	})
	c.Restart(1)
	c.Restart(2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("EnsureStreams: %v\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Fatalf("EnsureStreams did not return once the cluster was back\n%s", logs.String())
	}
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("R3 has %d replicas, want 3", r)
	}
}

// TestEnsureStreamsGivesUp checks that a lasting refusal is not retried: a stream with more
// replicas than the server has.
func TestEnsureStreamsGivesUp(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := streams.EnsureStreams(ctx, js, []config.Stream{{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}}, nil)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("EnsureStreams = %v (ctx %v), want an error at once", err, ctx.Err())
	}
}
