package bench

import (
	"cmp"
	"context"
	"fmt"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
)

// Workloads of [Options.Workload]. Every workload measures the raw consume and the standard
// fold; the others also run a second pipeline over the same events, from the start, and
// report its rate next to the fold's.
const (
	// WorkloadFold is the standard fold alone.
	WorkloadFold = "fold"
	// WorkloadWindows adds to the standard fold a tumbling window of one minute of event time
	// (a count and a sum per key) and a timeout per key (started by t1, cancelled by t4,
	// after 30 s). Events are [Options.EventRate] per second of event time: at the default
	// 10,000, 1,000,000 events span 100 s, about 3 windows per key of 10,000, some 40 events
	// each; at 1,000, 16.7 minutes, 17 windows per key of 6 events.
	WorkloadWindows = "windows"
	// WorkloadStateful is the window and the timeout of WorkloadWindows alone, without the
	// fold: a pipeline of stateful operators next to one that folds.
	WorkloadStateful = "stateful"
	// WorkloadLookup adds to the standard fold a lookup of each event's key in a projection
	// of another pipeline (Keys users, written before the run), whose value one handler
	// folds.
	WorkloadLookup = "lookup"
)

// Workloads lists the workloads.
var Workloads = []string{WorkloadFold, WorkloadWindows, WorkloadStateful, WorkloadLookup}

// workload is what a workload but the fold adds to the standard fold in its pipeline, bench_w
// (the fold under that name, its emit on benchout.w.).
type workload struct {
	time   string // the pipeline's event time ("": none)
	before string // operators before the fold
	last   string // what the fold's t3 handler sets last to ("": event.ref)
	after  string // operators after the emit
	noFold bool   // the pipeline is the operators before and after alone
}

// windowAndTimeout are the stateful operators of WorkloadWindows and WorkloadStateful.
const windowAndTimeout = `      - window:
          projection: bench_win
          tumbling: 1m
          aggregate: {n: count(), total: sum(event.amount)}
      - timeout:
          name: quiet
          start: [t1]
          cancel: [t4]
          after: 30s
          emit: {subject: '"benchout.t." + key', data: {key: key, deadline: timer.deadline}}
`

var workloads = map[string]workload{
	WorkloadWindows:  {time: "event.ts", after: windowAndTimeout},
	WorkloadStateful: {time: "event.ts", after: windowAndTimeout, noFold: true},
	WorkloadLookup: {before: `      - lookup: {projection: bench_users, key: key, as: user}
`, last: "user.name"},
}

// workloadPipeline returns the second pipeline of o's workload, false for the fold workload.
func workloadPipeline(o Options, stop string) (Pipeline, bool) {
	w, ok := workloads[o.Workload]
	if !ok {
		return Pipeline{}, false
	}
	fold := fmt.Sprintf(foldYAML, "bench_w", cmp.Or(w.last, "event.ref")) + fmt.Sprintf(emitYAML, "benchout.w.")
	if w.noFold {
		fold = ""
	}
	return Pipeline{Name: "bench_w", Stop: stop, Time: w.time, Batch: o.Batch, CacheKeys: workloadCache(o),
		Operators: w.before + fold + w.after}, true
}

// workloadCache is the state cache bound of the workload pipeline: the windows workload holds
// a key's fold state, its open windows, the closed ones until their commit and its timer,
// about 8 entries per key (with 4, twice the commits and a third more keys written: 0.48
// of the fold's rate instead of 0.63, one run each).
func workloadCache(o Options) int {
	if o.Workload == WorkloadWindows || o.Workload == WorkloadStateful {
		return 8 * o.CacheKeys
	}
	return o.CacheKeys
}

// eventTime returns the event time of the i-th event of a stream of rate events per second
// of event time, from the start of 2026, written with a fixed width (so every payload keeps
// its size; the times are in whole microseconds).
func eventTime(i, rate int) string {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second / time.Duration(rate)).Format("2006-01-02T15:04:05.000000Z")
}

// writeUsers writes the lookup workload's table: a value per key, as another pipeline's
// projection would hold it.
func writeUsers(ctx context.Context, js jetstream.JetStream, keys int) error {
	if _, err := streams.EnsureBucket(ctx, js, "bench_users"); err != nil {
		return err
	}
	w := streams.NewWindow(js, 8192)
	for k := range keys {
		data := []byte(`{"name":"user-` + strconv.Itoa(k) + `","tier":` + strconv.Itoa(k%3) + `}`)
		if err := w.Publish(ctx, &nats.Msg{Subject: streams.KVSubject("bench_users", "k"+strconv.Itoa(k)), Data: data}); err != nil {
			return fmt.Errorf("write users: %w", err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		return fmt.Errorf("write users: %w", err)
	}
	return nil
}

// runWorkload runs the workload pipeline (ps[1]) from the start into res; profile says
// whether to profile it (o.CPUProfile).
func runWorkload(ctx context.Context, conn *streams.Conn, p *pipeline.Pipeline, o Options, profile bool, res *Result) error {
	o.Logger.Info("workload pipeline", "workload", o.Workload)
	if profile && o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	began := time.Now()
	err := pipeline.RunAll(ctx, []*pipeline.Pipeline{p}, pipeline.Options{JS: conn.JS, Metrics: pipeline.NewMetrics(nil), OnCommit: func(c pipeline.CommitInfo) {
		res.WorkloadCommits++
		res.WorkloadKeysWritten += c.Keys
	}})
	if err != nil {
		return fmt.Errorf("workload %s: %w", o.Workload, err)
	}
	res.WorkloadRate = float64(o.Events) / time.Since(began).Seconds()
	res.WorkloadCPUPerEvent = (cpuTime() - cpu0) / time.Duration(o.Events)
	res.WorkloadToFold = res.WorkloadRate / res.PipelineRate
	return nil
}
