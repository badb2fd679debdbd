package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestPartitionsChangeRefused runs the shop pipeline with one number of partitions, then with
// another: the second run stops at once (ErrStopped, saying why) instead of applying events
// again, and the projections are still the first run's. The same number runs on.
func TestPartitionsChangeRefused(t *testing.T) {
	tests := []struct {
		first, then int
		says        string
	}{
		{1, 4, "ran in one partition"},
		{4, 1, "ran in 4 partitions"},
		{4, 6, "ran in 4 partitions"},
		{6, 4, "ran in 6 partitions"},
		{4, 4, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d to %d", tc.first, tc.then), func(t *testing.T) {
			e := newEnv(t)
			payloads := shoptest.Workload(8, 1500, 100)
			build := func(name string, n int) []*pipeline.Pipeline {
				yaml := fmt.Sprintf(shopYAML, e.srv.ClientURL(), "all", "end", 300, 100000)
				if n > 1 {
					yaml = shoptest.WithPartitions(t, yaml, n)
				}
				return e.pipelines(name, yaml)
			}
			first := build("first.yaml", tc.first)
			e.publish(payloads)
			leases, err := checkpoint.OpenLeases(context.Background(), e.js, checkpoint.LeaseOptions{TTL: 2 * time.Second, Holder: "test"})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.run(first, pipeline.Options{Leases: leases}); err != nil {
				t.Fatal(err)
			}
			err = e.run(build("then.yaml", tc.then), pipeline.Options{Leases: leases})
			switch {
			case tc.says == "" && err != nil:
				t.Fatalf("the same partitions again: %v", err)
			case tc.says != "" && !errors.Is(err, pipeline.ErrStopped):
				t.Fatalf("partitions %d after %d: %v, want ErrStopped", tc.then, tc.first, err)
			case tc.says != "" && !strings.Contains(err.Error(), tc.says):
				t.Fatalf("the error says %q, want it to say %q", err, tc.says)
			}
			e.check(payloads) // nothing applied twice
		})
	}
}
