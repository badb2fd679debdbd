package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/memory"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
	"github.com/jetfold/jetfold/streams/embedded"
)

// Options configures [Run].
type Options struct {
	// Events is the number of events of the workload (default 1,000,000).
	Events int
	// Keys is the number of distinct keys (default 10,000).
	Keys int
	// EmitEvery makes one event in EmitEvery emit a derived event (default 100: 1%).
	EmitEvery int
	// Batch is the pipeline's batch section; zero fields take the configuration's defaults.
	Batch config.Batch
	// CacheKeys bounds the state cache (default: Keys, so every key stays cached).
	CacheKeys int
	// Dir is where the embedded server stores its data (default: a temporary directory,
	// removed at the end).
	Dir string
	// URL, when set, runs against that NATS server instead of an embedded one, so that peak
	// RSS and allocations are jetfold's alone. The bench's streams, buckets and checkpoint
	// (BENCH, BENCH_OUT, KV bench, the bench pipeline's checkpoint and lease) are deleted
	// first: point it at a server of its own.
	URL string
	// Latency runs the latency mode instead: events at Rate per second for Duration through
	// a following pipeline, measuring publish to visible commit.
	Latency  bool
	Rate     int           // default 10,000
	Duration time.Duration // default 30s
	// Rounds is how many times the raw consume and the pipeline are measured, one after the
	// other, on the same published workload (default 3): the result is the round of the
	// median ratio, the machine's noise being what it is.
	Rounds int
	// Workload is one of [Workloads] (default fold).
	Workload string
	// EventRate is the workload's events per second of event time (its `ts` field; default
	// 10,000): how many events a window of the windows workload holds.
	EventRate int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// CPUProfile, when set, receives a CPU profile of the first round's pipeline phase only
	// (of the workload's own pipeline, for a workload other than fold).
	CPUProfile io.Writer
	// Cold runs the cold mode instead of the rounds of the standard fold: a workload of twice
	// Events, whose second half is folded by the runner that folded the first (warm) and by
	// a new one (cold), in each round (see [Cold]).
	Cold bool
	// MemoryLimit sets the process's Go soft memory limit as `processor run` does (see
	// memory.SetLimit), from the bench pipelines' cache bounds.
	MemoryLimit bool
	// Phase, when set, is called with "pipeline-start" and "pipeline-end" around the
	// pipeline phase (to take allocation profiles of just that phase, for example).
	Phase func(name string)
	// Replicas, when set, runs the replicas mode instead: the standard fold in separate
	// processes, `<Binary> run -c <generated file>` against the bench's embedded server
	// (listening on a loopback port), for every pair of a partition count of Partitions
	// (default 1) and a process count of Replicas, each pair once per round, alternating. A
	// partition count above 1 uses the partitioned_by_subject layout (a stream whose subject
	// transform puts the partition first). See [ReplicaCase] for what is measured.
	Replicas []int
	// Partitions are the partition counts of the replicas mode (default: 1 only).
	Partitions []int
	// Binary is the processor binary the replicas mode starts (default: this executable).
	Binary string
	// LeaseTTL is the children's processor.lease_ttl in the replicas mode (default 2s): a
	// joining process is handed a partition every LeaseTTL/4.
	LeaseTTL time.Duration
}

// Result is what a run measured.
type Result struct {
	Events       int `json:"events"`
	Keys         int `json:"keys"`
	PayloadBytes int `json:"payload_bytes"`
	// PublishRate is the rate the workload was published at (async publish).
	PublishRate float64 `json:"publish_events_per_s"`
	// RawRate is a plain durable pull consumer (AckNone, its state in memory like the
	// pipeline's ordered consumer, Consume with 10,000-message pulls, no decoding) reading
	// the whole stream.
	RawRate float64 `json:"raw_events_per_s"`
	// PipelineRate is the fold pipeline from start until its checkpoint reached the head.
	PipelineRate float64 `json:"pipeline_events_per_s"`
	// Ratio is PipelineRate / RawRate.
	Ratio float64 `json:"ratio"`
	// PeakRSS is the process's peak resident set during the pipeline phase (the embedded
	// server included); 0 where the kernel cannot reset the peak.
	PeakRSS uint64 `json:"peak_rss_bytes"`
	// AllocBytesPerEvent and AllocsPerEvent are heap allocations during the pipeline phase,
	// divided by the events (the embedded server's own allocations included).
	AllocBytesPerEvent float64 `json:"alloc_bytes_per_event"`
	AllocsPerEvent     float64 `json:"allocs_per_event"`
	// CPUPerEvent is the process's CPU time (user + system, the embedded server included)
	// during the pipeline phase, per event: steadier than rates on a noisy machine.
	CPUPerEvent time.Duration `json:"cpu_per_event_ns"`
	// RawCPUPerEvent is the same for the raw consume, to compare with CPUPerEvent.
	RawCPUPerEvent time.Duration `json:"raw_cpu_per_event_ns"`
	// Emitted is the number of derived events the pipeline published.
	Emitted int `json:"emitted"`
	// Commits and KeysWritten count the pipeline's commits and the projection keys they
	// wrote: with Events, they tell how much of the work is KV writes.
	Commits     int `json:"commits"`
	KeysWritten int `json:"keys_written"`
	// Projected is the number of keys in the projection at the end.
	Projected int `json:"projected_keys"`
	// KVWriteRate is the rate of the pipeline's projection writes alone (as many
	// compare-and-set writes as KeysWritten, to keys drawn alike, published as a commit
	// publishes them), measured after the pipeline in the same round; KVBound is the event
	// rate those writes alone allow: Events / (KeysWritten / KVWriteRate).
	KVWriteRate float64 `json:"kv_writes_per_s,omitempty"`
	KVBound     float64 `json:"kv_bound_events_per_s,omitempty"`
	// Workload is the workload run (see [Workloads]).
	Workload string `json:"workload"`
	// WorkloadRate is the rate of the workload's own pipeline (not for fold), from the start
	// until its checkpoint reached the head, run after the standard fold in each round;
	// WorkloadToFold divides it by PipelineRate, and WorkloadCPUPerEvent is its CPU per event.
	WorkloadRate        float64       `json:"workload_events_per_s,omitempty"`
	WorkloadToFold      float64       `json:"workload_to_fold,omitempty"`
	WorkloadCPUPerEvent time.Duration `json:"workload_cpu_per_event_ns,omitempty"`
	// WorkloadCommits and WorkloadKeysWritten are Commits and KeysWritten of the workload's
	// own pipeline.
	WorkloadCommits     int `json:"workload_commits,omitempty"`
	WorkloadKeysWritten int `json:"workload_keys_written,omitempty"`
	// Rounds lists every round's rates and CPU, in order.
	Rounds []Round `json:"rounds,omitempty"`
	// Latency is set in latency mode.
	Latency *Latency `json:"latency,omitempty"`
	// Cold is set in cold mode.
	Cold *Cold `json:"cold,omitempty"`
	// Replicas lists the cases of the replicas mode, by partitions then replicas.
	Replicas []ReplicaCase `json:"replicas,omitempty"`
}

// Round is one round's measurement: the raw consume, then the pipeline.
type Round struct {
	RawRate        float64       `json:"raw_events_per_s"`
	PipelineRate   float64       `json:"pipeline_events_per_s"`
	Ratio          float64       `json:"ratio"`
	WorkloadRate   float64       `json:"workload_events_per_s,omitempty"`
	WorkloadToFold float64       `json:"workload_to_fold,omitempty"`
	CPUPerEvent    time.Duration `json:"cpu_per_event_ns"`
	RawCPUPerEvent time.Duration `json:"raw_cpu_per_event_ns"`
}

// Latency is the latency mode's result: from publish to the commit that makes the event's
// effect visible in KV.
type Latency struct {
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration_ns"`
	Events   int           `json:"events"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
}

func (o *Options) defaults() {
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.Keys <= 0 {
		o.Keys = 10_000
	}
	if o.EmitEvery <= 0 {
		o.EmitEvery = 100
	}
	if o.CacheKeys <= 0 {
		o.CacheKeys = max(o.Keys, 1000)
	}
	if o.Rate <= 0 {
		o.Rate = 10_000
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Workload == "" {
		o.Workload = WorkloadFold
	}
	if o.EventRate <= 0 {
		o.EventRate = 10_000
	}
}

// PipelineYAML returns the configuration of the standard fold (4 fields, a handler per type,
// one emit) with the given stop, batch and cache settings. Zero batch fields are left out, so
// that they take the configuration's defaults.
func PipelineYAML(stop string, b config.Batch, cacheKeys int) string {
	return ConfigYAML(foldPipeline(stop, b, cacheKeys))
}

// foldPipeline is the pipeline of the standard fold, bench.
func foldPipeline(stop string, b config.Batch, cacheKeys int) Pipeline {
	return Pipeline{Name: "bench", Stop: stop, Batch: b, CacheKeys: cacheKeys,
		Operators: FoldYAML("bench") + fmt.Sprintf(emitYAML, "benchout.")}
}

// Pipeline is a pipeline over the workload's stream (keyed by event.key), for [ConfigYAML].
type Pipeline struct {
	Name      string
	Stop      string       // source.stop: end or follow
	Time      string       // the event time expression ("": none)
	Batch     config.Batch // zero fields are left out
	CacheKeys int
	Operators string // the items of its operators, indented as [FoldYAML]'s
	// stream is source.stream ("": BENCH); partitions, above 1, are the pipeline's
	// partitions, each reading its own subjects (the replicas mode's layout by subject).
	stream     string
	partitions int
}

// yaml returns p as an item of a configuration's pipelines.
func (p Pipeline) yaml() string {
	var timeLine, bySubject, partsLine string
	if p.Time != "" {
		timeLine = "    time: " + p.Time + "\n"
	}
	if p.partitions > 1 {
		bySubject = ", partitioned_by_subject: true"
		partsLine = fmt.Sprintf("    partitions: %d\n", p.partitions)
	}
	return fmt.Sprintf(pipelineYAML, p.Name, cmp.Or(p.stream, "BENCH"), p.Stop, bySubject,
		partsLine+timeLine, batchSection(p.Batch), p.CacheKeys, p.Operators)
}

// ConfigYAML returns a configuration of the workload's stream, BENCH, and of its derived
// events, BENCH_OUT, with the pipelines ps.
func ConfigYAML(ps ...Pipeline) string {
	var b strings.Builder
	b.WriteString(configYAML)
	for _, p := range ps {
		b.WriteString(p.yaml())
	}
	return b.String()
}

// FoldYAML returns the fold of the standard fold (4 fields, a handler per type) writing
// projection, as an item of a pipeline's operators (without the standard fold's emit).
func FoldYAML(projection string) string { return fmt.Sprintf(foldYAML, projection, "event.ref") }

// batchSection returns the inside of a pipeline's batch section: b's non-zero fields.
func batchSection(b config.Batch) string {
	var parts []string
	if b.Size > 0 {
		parts = append(parts, "size: "+strconv.Itoa(b.Size))
	}
	if b.MaxWait > 0 {
		parts = append(parts, "max_wait: "+b.MaxWait.String())
	}
	var cu []string
	if b.CatchUp.Size > 0 {
		cu = append(cu, "size: "+strconv.Itoa(b.CatchUp.Size))
	}
	if b.CatchUp.MaxWait > 0 {
		cu = append(cu, "max_wait: "+b.CatchUp.MaxWait.String())
	}
	if len(cu) > 0 {
		parts = append(parts, "catch_up: {"+strings.Join(cu, ", ")+"}")
	}
	return strings.Join(parts, ", ")
}

// configYAML is the start of [ConfigYAML]'s configuration, up to its pipelines.
const configYAML = `
nats: {url: ""}
http: {listen: none}
streams:
  - {name: BENCH, subjects: ["bench.>"]}
  - {name: BENCH_OUT, subjects: ["benchout.>"]}
pipelines:
`

// pipelineYAML is a pipeline (see [Pipeline.yaml]): format it with the name, the stream, the
// stop, the rest of the source, the lines after the key, the batch section, the cache bound
// and the operators.
const pipelineYAML = `  - name: %s
    source: {stream: %s, start: all, stop: %s%s}
    key: event.key
%s    batch: {%s}
    cache: {max_keys: %d}
    operators:
%s`

// foldYAML is the fold of the standard fold: format it with the projection and what t3's
// handler sets last to.
const foldYAML = `      - fold:
          projection: %s
          initial: {count: 0, total: 0.0, qty: 0, last: ""}
          on:
            t1: {count: state.count + 1, total: state.total + event.amount}
            t2: {count: state.count + 1, qty: state.qty + event.qty}
            t3: {count: state.count + 1, last: %s}
            t4: {count: state.count + 1, total: state.total - event.amount, qty: 'max(state.qty - 1, 0)'}
`

// emitYAML is the emit of the standard fold, a derived event of each flagged event: format it
// with the subject's prefix.
const emitYAML = `      - emit:
          when: event.flag
          subject: '"%s" + key'
          data: {key: key, count: state.count}
`

// Payload returns the i-th event of the workload: about 200 bytes of JSON.
func Payload(i, keys, emitEvery, rate int, rng *rand.Rand) []byte {
	var b bytes.Buffer
	b.Grow(224)
	b.WriteString(`{"type":"t`)
	b.WriteString(strconv.Itoa(1 + i%4))
	b.WriteString(`","key":"k`)
	b.WriteString(strconv.Itoa(rng.IntN(keys)))
	b.WriteString(`","amount":`)
	b.WriteString(strconv.FormatFloat(float64(rng.IntN(100000))/100, 'f', 2, 64))
	b.WriteString(`,"qty":`)
	b.WriteString(strconv.Itoa(1 + rng.IntN(9)))
	b.WriteString(`,"flag":`)
	b.WriteString(strconv.FormatBool(i%emitEvery == emitEvery-1))
	b.WriteString(`,"ref":"r-`)
	b.WriteString(strconv.Itoa(i))
	b.WriteString(`","ts":"`)
	b.WriteString(eventTime(i, rate))
	b.WriteString(`","note":"`)
	for b.Len() < 198 {
		b.WriteByte('x')
	}
	b.WriteString(`"}`)
	return b.Bytes()
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "jetfold-bench")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if len(o.Replicas) > 0 {
		return runReplicas(ctx, o, dir)
	}
	if len(o.Partitions) > 0 {
		return Result{}, errors.New("bench: partitions are for the replicas mode (Options.Replicas)")
	}
	stop := "end"
	if o.Latency {
		stop = "follow"
	}
	if !slices.Contains(Workloads, o.Workload) {
		return Result{}, fmt.Errorf("bench: unknown workload %q (want one of %v)", o.Workload, Workloads)
	}
	if (o.Latency || o.Cold) && o.Workload != WorkloadFold {
		return Result{}, fmt.Errorf("bench: the latency and cold modes run the fold workload only")
	}
	if o.Latency && o.Cold {
		return Result{}, fmt.Errorf("bench: choose the latency mode or the cold mode")
	}
	cfgPath := filepath.Join(dir, "bench.yaml")
	specs := []Pipeline{foldPipeline(stop, o.Batch, o.CacheKeys)}
	if w, ok := workloadPipeline(o, stop); ok {
		specs = append(specs, w)
	}
	if err := os.WriteFile(cfgPath, []byte(ConfigYAML(specs...)), 0o600); err != nil {
		return Result{}, err
	}
	cfg, err := config.Load(cfgPath, config.LoadOptions{Environ: []string{}})
	if err != nil {
		return Result{}, fmt.Errorf("bench config: %w", err)
	}
	cfg.NATS.Embedded.StoreDir = filepath.Join(dir, "nats")
	cfg.NATS.URL = o.URL
	ps, err := pipeline.Build(cfg, builtin.Registry())
	if err != nil {
		return Result{}, fmt.Errorf("bench pipeline: %w", err)
	}
	if o.MemoryLimit {
		keys := 0
		for _, p := range ps {
			keys += p.CacheKeys()
		}
		memory.SetLimit(memory.Options{CacheKeys: keys, Logger: o.Logger})
	}
	conn, err := embedded.Connect(ctx, cfg.NATS, embedded.ConnectOptions{
		ConnectOptions: streams.ConnectOptions{Name: "jetfold-bench"}, NoListen: true,
	})
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	if o.URL != "" {
		if err := clean(ctx, conn.JS); err != nil {
			return Result{}, err
		}
	}
	if err := streams.EnsureStreams(ctx, conn.JS, cfg.Streams, nil); err != nil {
		return Result{}, err
	}
	if o.Latency {
		return runLatency(ctx, conn.JS, ps, o)
	}
	res := Result{Events: o.Events, Keys: o.Keys, Workload: o.Workload}
	if o.Workload == WorkloadLookup {
		if err := writeUsers(ctx, conn.JS, o.Keys); err != nil {
			return res, err
		}
	}
	o.Logger.Info("publishing the workload", "events", o.Events, "keys", o.Keys)
	if o.Cold {
		return runColdRounds(ctx, conn, cfg.Streams, ps, o, res)
	}
	if res.PublishRate, res.PayloadBytes, err = publish(ctx, conn.JS, o, ""); err != nil {
		return res, err
	}
	rounds := make([]Result, 0, o.Rounds)
	for r := range o.Rounds {
		if r > 0 {
			if err := resetPipeline(ctx, conn.JS, cfg.Streams, ps); err != nil {
				return res, err
			}
		}
		rr := res
		// The profile is of the workload's own pipeline when there is one.
		if err := runRound(ctx, conn, ps[:1], o, r == 0 && len(ps) == 1, &rr); err != nil {
			return res, err
		}
		if len(ps) > 1 {
			if err := runWorkload(ctx, conn, ps[1], o, r == 0, &rr); err != nil {
				return res, err
			}
		}
		if r > 0 && (rr.Emitted != rounds[0].Emitted || rr.Projected != rounds[0].Projected) {
			return res, fmt.Errorf("round %d emitted %d events and left %d keys, round 1 %d and %d",
				r+1, rr.Emitted, rr.Projected, rounds[0].Emitted, rounds[0].Projected)
		}
		o.Logger.Info("round", "round", r+1, "raw", int(rr.RawRate), "pipeline", int(rr.PipelineRate), "ratio", rr.Ratio)
		rounds = append(rounds, rr)
	}
	// The round of the median ratio stands for the run; the others are listed with it.
	byRatio := slices.Clone(rounds)
	slices.SortStableFunc(byRatio, func(a, b Result) int { return cmp.Compare(a.Ratio, b.Ratio) })
	res = byRatio[len(byRatio)/2]
	for _, rr := range rounds {
		res.Rounds = append(res.Rounds, Round{RawRate: rr.RawRate, PipelineRate: rr.PipelineRate, Ratio: rr.Ratio,
			WorkloadRate: rr.WorkloadRate, WorkloadToFold: rr.WorkloadToFold,
			CPUPerEvent: rr.CPUPerEvent, RawCPUPerEvent: rr.RawCPUPerEvent})
	}
	return res, nil
}

// runRound measures the raw consume, then the pipeline, into res. profile says whether the
// round is the one to profile.
func runRound(ctx context.Context, conn *streams.Conn, ps []*pipeline.Pipeline, o Options, profile bool, res *Result) error {
	o.Logger.Info("raw consume")
	rawCPU := cpuTime()
	var err error
	if res.RawRate, err = rawConsume(ctx, conn.JS, "BENCH", o.Events); err != nil {
		return err
	}
	res.RawCPUPerEvent = (cpuTime() - rawCPU) / time.Duration(o.Events)
	o.Logger.Info("pipeline")
	resetPeakRSS()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	metrics := pipeline.NewMetrics(nil)
	if profile && o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return err
		}
	}
	if profile && o.Phase != nil {
		o.Phase("pipeline-start")
	}
	cpu0 := cpuTime()
	began := time.Now()
	err = pipeline.RunAll(ctx, ps, pipeline.Options{JS: conn.JS, Metrics: metrics, OnCommit: func(c pipeline.CommitInfo) {
		res.Commits++ // commits of one pipeline run one at a time
		res.KeysWritten += c.Keys
	}})
	elapsed := time.Since(began)
	res.CPUPerEvent = (cpuTime() - cpu0) / time.Duration(o.Events)
	if profile && o.Phase != nil {
		o.Phase("pipeline-end")
	}
	if profile && o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	runtime.ReadMemStats(&after)
	res.PipelineRate = float64(o.Events) / elapsed.Seconds()
	res.Ratio = res.PipelineRate / res.RawRate
	res.PeakRSS = peakRSS()
	res.AllocBytesPerEvent = float64(after.TotalAlloc-before.TotalAlloc) / float64(o.Events)
	res.AllocsPerEvent = float64(after.Mallocs-before.Mallocs) / float64(o.Events)
	s, err := conn.JS.Stream(ctx, "BENCH_OUT")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	res.Emitted = int(s.CachedInfo().State.Msgs)
	kv, err := conn.JS.Stream(ctx, streams.KVStream("bench"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	res.Projected = int(kv.CachedInfo().State.NumSubjects)
	if res.KeysWritten > 0 {
		o.Logger.Info("kv writes alone")
		if res.KVWriteRate, err = kvWrites(ctx, conn.NC, res.KeysWritten, res.KeysWritten/max(res.Commits, 1), o.Keys); err != nil {
			return err
		}
		res.KVBound = float64(o.Events) * res.KVWriteRate / float64(res.KeysWritten)
	}
	return nil
}

// resetPipeline removes what a pipeline round left (its projection, derived events and
// checkpoint), so that the next round starts from the beginning of the stream again.
func resetPipeline(ctx context.Context, js jetstream.JetStream, cfg []config.Stream, ps []*pipeline.Pipeline) error {
	for _, p := range ps {
		for _, proj := range p.Projections {
			if err := js.DeleteStream(ctx, streams.KVStream(proj)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("reset projection %s: %w", proj, err)
			}
		}
	}
	// Deleted, not purged: the stream would drop the derived events of the next round as
	// duplicates of this one's (they have the same message ids).
	if err := js.DeleteStream(ctx, "BENCH_OUT"); err != nil {
		return fmt.Errorf("reset derived events: %w", err)
	}
	if err := streams.EnsureStreams(ctx, js, cfg, nil); err != nil {
		return fmt.Errorf("reset derived events: %w", err)
	}
	return purgeCheckpoint(ctx, js)
}

func purgeCheckpoint(ctx context.Context, js jetstream.JetStream) error {
	if kv, err := js.KeyValue(ctx, streams.CheckpointBucket); err == nil {
		for _, p := range []string{"bench", "bench_w"} {
			if err := kv.Purge(ctx, p); err != nil {
				return fmt.Errorf("clean checkpoint: %w", err)
			}
		}
	}
	return nil
}

// publish publishes the workload asynchronously, on bench.ev or, when keyedOn is set, on
// <keyedOn>.<the event's key>, and returns the rate and the mean payload size.
func publish(ctx context.Context, js jetstream.JetStream, o Options, keyedOn string) (float64, int, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	began := time.Now()
	total := 0
	w := streams.NewWindow(js, 8192)
	for i := range o.Events {
		p := Payload(i, o.Keys, o.EmitEvery, o.EventRate, rng)
		total += len(p)
		subject := "bench.ev"
		if keyedOn != "" {
			_, rest, _ := bytes.Cut(p, []byte(`"key":"`))
			key, _, _ := bytes.Cut(rest, []byte(`"`))
			subject = keyedOn + "." + string(key)
		}
		if err := w.Publish(ctx, &nats.Msg{Subject: subject, Data: p}); err != nil {
			return 0, 0, err
		}
	}
	if err := w.Flush(ctx); err != nil {
		return 0, 0, err
	}
	return float64(o.Events) / time.Since(began).Seconds(), total / o.Events, nil
}

// rawConsume reads the whole of stream (events messages) with the fastest plain consumer and returns its rate.
func rawConsume(ctx context.Context, js jetstream.JetStream, stream string, events int) (float64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true})
	if err != nil {
		return 0, err
	}
	defer func() { _ = s.DeleteConsumer(context.WithoutCancel(ctx), "raw") }()
	done := make(chan struct{})
	n := 0
	began := time.Now()
	cc, err := c.Consume(func(m jetstream.Msg) {
		if n++; n == events {
			close(done)
		}
	}, jetstream.PullMaxMessages(10_000))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(10 * time.Minute):
		return 0, errors.New("raw consume did not finish in 10 minutes")
	}
	return float64(events) / time.Since(began).Seconds(), nil
}

// resetPeakRSS resets the kernel's peak-RSS mark of this process (Linux), so that peakRSS
// reports the peak of what follows.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM of this process in bytes (Linux), 0 elsewhere.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpuTime returns the CPU time this process has used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clean deletes what an earlier bench left on an external server.
func clean(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{"BENCH", "BENCH_OUT", streams.KVStream("bench"), streams.KVStream("bench_w"),
		streams.KVStream("bench_win"), streams.KVStream("bench_w_timers"), streams.KVStream("bench_users")} {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("clean %s: %w", name, err)
		}
	}
	return purgeCheckpoint(ctx, js)
}
