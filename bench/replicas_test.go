package bench_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
)

// binary is the processor the replicas mode's children run.
var binary natstest.Binary

func TestMain(m *testing.M) {
	code := m.Run()
	binary.Remove()
	os.Exit(code)
}

// processor builds cmd/processor once per test binary, for the replicas mode's children.
func processor(t *testing.T) string { return binary.Path(t) }

// running returns the processes whose executable is bin (Linux).
func running(t *testing.T, bin string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestReplicasSmoke runs the replicas mode with 2 partitions (by subject) on 2 processes of
// the processor binary: every event folded once (the projection's counts add up to the
// events), the 1% emitted, one partition per process when the fold started, rates and CPU
// measured, and no child left running.
func TestReplicasSmoke(t *testing.T) {
	bin := processor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, bench.Options{Events: 20_000, Keys: 500, Rounds: 1,
		Replicas: []int{2}, Partitions: []int{2}, Binary: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Replicas) != 1 {
		t.Fatalf("cases %+v: want one", res.Replicas)
	}
	c := res.Replicas[0]
	if c.Partitions != 2 || c.Replicas != 2 || c.Layout != bench.LayoutBySubject || len(c.Rounds) != 1 {
		t.Fatalf("case %+v: want 2 x 2 by subject, one round", c)
	}
	r := c.Rounds[0]
	if r.Folded != 20_000 || r.Projected != 500 || r.Emitted != 200 {
		t.Errorf("round %+v: want 20000 events folded over 500 keys, 200 derived events", r)
	}
	if !slices.Equal(r.Held, []int{1, 1}) {
		t.Errorf("held %v when the fold started: want one partition per process", r.Held)
	}
	if r.Rate <= 0 || r.RawRate <= 0 || r.Ratio != r.Rate/r.RawRate || r.CPUPerEvent <= 0 || r.LifeCPUPerEvent <= 0 || r.Settle <= 0 {
		t.Errorf("round %+v: want rates, ratio, CPU and settle time measured", r)
	}
	if c.Rate != r.Rate || c.Ratio != r.Ratio {
		t.Errorf("case %+v: the medians of one round are its figures", c)
	}
	if pids := running(t, bin); len(pids) > 0 {
		t.Errorf("processes %v of %s still run after the bench", pids, bin)
	}
}

// onMessage is a slog handler that calls fn at every record with message msg.
type onMessage struct {
	slog.Handler
	msg string
	fn  func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }

func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.fn()
	}
	return nil
}

// TestReplicasCancel cancels the replicas mode once its children started (both running): Run
// returns the cancellation, and no child is left running.
func TestReplicasCancel(t *testing.T) {
	bin := processor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop, stopIt := context.WithCancel(ctx)
	defer stopIt()
	var atCancel []int
	log := slog.New(onMessage{Handler: slog.DiscardHandler, msg: "processes started: waiting for the partitions to settle", fn: func() {
		atCancel = running(t, bin)
		stopIt()
	}})
	_, err := bench.Run(stop, bench.Options{Events: 2_000, Keys: 100, Rounds: 1,
		Replicas: []int{2}, Partitions: []int{2}, Binary: bin, Dir: t.TempDir(), Logger: log})
	if err == nil {
		t.Fatal("Run returned no error after its context was cancelled")
	}
	if ctx.Err() != nil {
		t.Fatalf("the deadline passed: %v", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want the cancellation", err)
	}
	if len(atCancel) != 2 {
		t.Errorf("processes %v of %s when cancelled, want 2", atCancel, bin)
	}
	if pids := running(t, bin); len(pids) > 0 {
		t.Errorf("processes %v of %s still run after the cancelled bench (%v)", pids, bin, err)
	}
}

// TestReplicasChildFails runs the replicas mode with a "processor" that exits 1 at once: Run
// reports the child's failure instead of waiting for partitions that never settle.
func TestReplicasChildFails(t *testing.T) {
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = bench.Run(ctx, bench.Options{Events: 1_000, Keys: 100, Rounds: 1,
		Replicas: []int{2}, Partitions: []int{2}, Binary: bin, Dir: t.TempDir()})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "a child exited while the partitions settled") {
		t.Fatalf("Run: %v, want the child's exit reported before the deadline", err)
	}
}

// TestReplicasTooManyPartitions asks for more partitions than a pipeline may have: Run says
// so at once, before it publishes the workload or starts a child.
func TestReplicasTooManyPartitions(t *testing.T) {
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false command")
	}
	dir := t.TempDir()
	_, err = bench.Run(context.Background(), bench.Options{Events: 1_000, Keys: 100, Rounds: 1,
		Replicas: []int{1}, Partitions: []int{2, config.MaxPartitions + 1}, Binary: bin, Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "at most "+strconv.Itoa(config.MaxPartitions)) {
		t.Fatalf("Run: %v, want the partitions refused", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nats")); err == nil {
		t.Error("the bench started its server before refusing the partitions")
	}
}
