package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/batch"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/pipeline/source"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrStopped is returned by [Runner.Run] when an event failed under `on_error: stop`.
	ErrStopped = errors.New("pipeline stopped on error")
	// errCaughtUp ends a `stop: end` pipeline once it has committed the end of its stream.
	errCaughtUp = batch.ErrCaughtUp
	// errStopAt ends the batch before the first event past Options.StopAt.
	errStopAt = errors.New("stop position reached")
)

// The backoff between restarts: firstBackoff, doubling up to maxBackoff. Variables for tests.
var (
	firstBackoff = 200 * time.Millisecond
	maxBackoff   = 10 * time.Second
	// yieldPause is the least a pipeline that handed its lease over waits before it stands
	// by for it again (else half the lease TTL).
	yieldPause = 2 * time.Second
)

// commitTimeout bounds the processing and commit of one batch.
const commitTimeout = 30 * time.Second

// Options configures a [Runner].
type Options struct {
	// JS is the JetStream context to work with.
	JS jetstream.JetStream
	// Logger receives the pipeline's log lines; nil discards them.
	Logger *slog.Logger
	// Metrics are shared by the pipelines of a process; nil creates unregistered ones.
	Metrics *Metrics
	// Instance identifies this process in the values it writes (Jetfold-Writer header).
	Instance string
	// OnCommit, when set, is called after every commit, from the goroutine that commits
	// (one at a time per pipeline; pipelines call it concurrently).
	OnCommit func(CommitInfo)
	// MaxFencedRetries is how many consecutive fenced commits end the run with
	// checkpoint.ErrFenced (default 3).
	MaxFencedRetries int
	// Leases, when set, makes the pipeline run only in the process that holds its lease;
	// other processes stand by and take over when the holder dies.
	Leases *checkpoint.Leases
	// OutputStreams are the streams derived events may go to (the declared streams); after a
	// crash they are read back so that nothing is published twice (see commit.Committer.Recover).
	OutputStreams []string
	// MaxStandby bounds how long Run stands by while another process holds the pipeline's
	// lease (0: for ever); then Run returns checkpoint.ErrHeld.
	MaxStandby time.Duration
	// Board, when set, receives the pipeline's health (running, failing, standby, stopped) for
	// the HTTP API and readiness.
	Board *status.Board
	// HydrateUntil marks the events up to this source sequence as hydrated (a replay on
	// purpose): they rebuild state but fire no `once` emit.
	HydrateUntil uint64
	// CheckpointKey is the key of the pipeline's checkpoint (default: its name); a rebuild
	// runs the pipeline under a checkpoint of its own (checkpoint.RebuildKey), which names the
	// buckets it writes.
	CheckpointKey string
	// StopAt, when set, ends the run (as caught up) once the events up to this source
	// sequence are committed: no later event is taken.
	StopAt uint64
	// Partition is the partition of the pipeline to run (zero: the whole pipeline); it names
	// the checkpoint and the lease (checkpoint.PartitionKey). See [Partition].
	Partition Partition
	// Share, when set with Leases, spreads the partitions of partitioned pipelines evenly
	// over the processes that run them (see [Share]); one Share serves one [RunAll].
	Share *Share
}

// CommitInfo describes one commit, for progress reports.
type CommitInfo struct {
	Pipeline string
	// Seq is the new checkpoint.
	Seq uint64
	// Events is the number of source events in the batch; Total since the runner started.
	Events, Total int
	// Pending is the number of source events not yet delivered after this batch.
	Pending uint64
	// Keys is the number of projection keys written.
	Keys int
	// Outputs is the number of derived events and dead letters published.
	Outputs int
	// Duration is the commit's duration.
	Duration time.Duration
}

// Runner runs one pipeline until its context ends, or its stream's end with `stop: end`.
type Runner struct {
	p   *Pipeline
	o   Options
	log *slog.Logger
	mx  series // its metrics (Options.Metrics)

	// set up by start, reset by every restart
	store      *state.Store
	cps        *checkpoint.Store
	committer  *commit.Committer
	exec       operators.Exec
	lastSeq    uint64 // highest source sequence taken into a batch
	total      int
	done       bool // stop: end reached
	dlqStream  string
	valueLimit int // largest projection value NATS and every projection bucket accept
	maxPayload int // the server's payload limit (headers and data)
	// pub is the JetStream context the commits publish through: one per runner, so that the
	// windows of several pipelines never fill one async limit together.
	pub    jetstream.JetStream
	health status.Health
	// reasons are the kinds of dead-letter reasons logged so far (see logFirst).
	reasons map[string]struct{}
	// watermark is the greatest event time read (see operators.Clock), or the wall clock's
	// time while the pipeline is idle (pipeline `idle`).
	watermark    time.Time
	tick         event.Event // reused for every advance of the watermark
	ev           event.Event // reused for every event
	progressed   bool        // runOnce committed at least one batch
	dec          *decode.Decoder
	acks         bool   // the consumer is acknowledged (AckAll) after each commit
	lastDelivery uint64 // delivery sequence of the last message of a durable consumer
	pf           prefetcher
	defsChecked  bool // the checkpoint's definitions were compared with the pipeline's
	bySubject    bool // the source reads this partition's subjects only (see Partition)
}

// rebuilding tells whether the runner runs a rebuild of its pipeline (under a checkpoint of
// its own, see Options.CheckpointKey) rather than the pipeline itself.
func (r *Runner) rebuilding() bool { return r.o.CheckpointKey != r.ownKey() }

// NewRunner returns a runner for p.
func NewRunner(p *Pipeline, o Options) *Runner {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.MaxFencedRetries == 0 {
		o.MaxFencedRetries = 3
	}
	if o.Instance == "" {
		o.Instance = "jetfold"
	}
	log := o.Logger.With("pipeline", p.Name)
	if o.Partition.partitioned() {
		log = log.With("partition", o.Partition.Index)
	}
	r := &Runner{p: p, o: o, log: log, mx: o.Metrics.series(p.Name, o.Partition)}
	if r.o.CheckpointKey == "" {
		r.o.CheckpointKey = r.ownKey()
	}
	return r
}

// Run processes events until ctx ends (then it commits what is in flight and returns nil),
// until the end of the stream with `stop: end` (nil), or until an error it cannot retry:
// [ErrStopped] under `on_error: stop`, checkpoint.ErrFenced when another instance keeps
// winning the commits, [ErrFailing] for a `stop: end` pipeline that cannot make progress.
// Lost connections and failed commits restart the pipeline in-process from its last
// checkpoint, with backoff: the commit protocol makes that as safe as a crash. A pipeline whose
// restarts keep failing is reported failing (see [Health]) and, with `stop: follow`, goes on
// trying.
func (r *Runner) Run(ctx context.Context) (err error) {
	pub, err := streams.NewPublisher(r.o.JS.Conn())
	if err != nil {
		return err
	}
	r.pub = pub
	defer pub.CleanupPublisher()
	defer func() {
		if !errors.Is(err, ErrFailing) { // a failing `stop: end` pipeline stays failing
			r.setHealth(status.Stopped, nil)
		}
	}()
	if r.o.Leases == nil {
		r.setHealth(status.Running, nil)
		return r.runGated(ctx)
	}
	var share *shareGroup
	if r.o.Share != nil && r.o.Partition.partitioned() {
		share = r.o.Share.group(ctx, r.p.Name, r.o.Partition.Count)
	}
	for {
		r.setHealth(status.Standby, nil)
		held, release, err := r.acquire(ctx, share)
		if errors.Is(err, checkpoint.ErrHeld) {
			return err
		}
		if err != nil {
			return nil // ctx ended while standing by
		}
		r.setHealth(status.Running, nil)
		err = r.runGated(held)
		release()
		r.mx.forget() // another process runs it from now on, and exports its progress
		if ctx.Err() == nil && errors.Is(context.Cause(held), errShed) {
			continue // handed over to another process: stand by
		}
		if ctx.Err() == nil && errors.Is(context.Cause(held), checkpoint.ErrYielded) {
			// Handed over (to a rebuild's switch): let the asker take the lease (it wakes
			// when the lease is released), then stand by and go on.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(max(yieldPause, r.o.Leases.TTL()/2)):
			}
			continue
		}
		if ctx.Err() == nil && errors.Is(context.Cause(held), checkpoint.ErrLeaseLost) {
			r.mx.fenced.Inc()
			continue // stand by again
		}
		return err
	}
}

// run is Run without the lease.
func (r *Runner) run(ctx context.Context) error {
	wait := firstBackoff
	fenced, failed := 0, 0
	for {
		r.progressed = false
		err := r.runOnce(ctx)
		if r.store != nil {
			r.store.Close() // its watches (lookups); the next start makes a new store
		}
		if r.progressed { // the trouble is not lasting: start counting and backing off anew
			fenced, failed, wait = 0, 0, firstBackoff
		}
		switch {
		case errors.Is(err, errCaughtUp):
			r.log.Info("caught up with the end of the stream", "checkpoint", r.committer.Checkpoint().Seq)
			return nil
		case err == nil || ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrStopped):
			return err
		case errors.Is(err, checkpoint.ErrFenced):
			r.mx.fenced.Inc()
			if fenced++; fenced >= r.o.MaxFencedRetries {
				r.log.Error("another instance is writing this pipeline; stopping", "err", err)
				return err
			}
		default:
			fenced = 0
		}
		if r.o.JS.Conn().IsConnected() {
			failed++
		}
		if failed >= failAfter {
			r.setHealth(status.Failing, err)
			if r.p.Config.Source.Stop == "end" {
				return fmt.Errorf("%w: %d restarts without progress: %w", ErrFailing, failed, err)
			}
		}
		r.mx.restarts.Inc()
		r.log.Warn("pipeline restarts from its checkpoint", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, maxBackoff)
	}
}

// start loads the checkpoint, opens buckets and (re)creates the durable consumer positioned
// right after the checkpoint.
func (r *Runner) start(ctx context.Context) (*source.Source, error) {
	js := r.o.JS
	pc := r.p.Config
	r.store = state.New(state.Options{MaxKeys: pc.Cache.MaxKeys, Shapes: r.p.shapes, InPlace: r.p.inPlace})
	r.store.Connect(js)
	r.lastDelivery = 0
	r.exec = operators.Exec{Store: r.store}
	if r.o.Partition.partitioned() {
		r.exec.Owns = r.o.Partition.ownsKey
	}
	r.dec = decode.New(pc.Decode, r.p.layout, nil)
	r.pf = prefetcher{dec: decode.New(pc.Decode, r.p.peekLayout, r.p.peekFields)}
	r.done = false

	stream, err := js.Stream(ctx, pc.Source.Stream)
	if err != nil {
		return nil, fmt.Errorf("source stream %s: %w", pc.Source.Stream, err)
	}
	cpkv, err := streams.EnsureBucket(ctx, js, streams.CheckpointBucket)
	if err != nil {
		return nil, err
	}
	if r.dlqStream, err = streams.EnsureCaptured(ctx, js, streams.DLQSubject(r.p.Name), streams.DLQStream, []string{"_jetfold.dlq.>"}, 0); err != nil {
		return nil, err
	}
	r.maxPayload = int(js.Conn().MaxPayload())
	r.cps = checkpoint.NewStore(cpkv)
	cp, err := r.cps.Load(ctx, r.o.CheckpointKey)
	if !r.rebuilding() && (err == nil || errors.Is(err, checkpoint.ErrNotFound)) {
		if err := r.checkPartitions(ctx, cp, err == nil); err != nil {
			return nil, err
		}
	}
	if errors.Is(err, checkpoint.ErrNotFound) {
		// Write a checkpoint before reading anything: its time bounds the read-back of
		// outputs after a crash, and "new" is pinned to a sequence now, so that a restart
		// before the first commit does not skip what arrived in between.
		cp = checkpoint.Checkpoint{Stream: pc.Source.Stream, Initial: true, Definitions: r.p.defs, Partitions: r.partitions()}
		if r.p.Start.Kind == config.StartNew {
			cp.Seq, cp.Initial = stream.CachedInfo().State.LastSeq, false
		}
		cp, err = r.cps.Commit(ctx, r.o.CheckpointKey, cp)
	}
	if err != nil {
		return nil, err
	}
	if sw := cp.Switched; sw != nil && len(changedDefinitions(cp.Definitions, r.p.defs)) > 0 &&
		len(sw.Replaced) > 0 && len(changedDefinitions(sw.Replaced, r.p.defs)) == 0 {
		// This process runs the definition the rebuild replaced: an old file.
		return nil, fmt.Errorf("%w: %s was rebuilt as version %d with another definition of its projections than this file's, and switched to it: run it with the file the rebuild used",
			ErrStopped, r.p.Name, cp.Switched.Version)
	}
	// The buckets of the versions the checkpoint names, which the pipeline writes.
	for _, proj := range r.p.Projections {
		if err := r.store.Open(ctx, js, proj, cp.Bucket(proj), r.p.ttl[proj]); err != nil {
			return nil, err
		}
	}
	r.valueLimit = r.store.ValueLimit(r.maxPayload)
	if cp.Stream != "" && cp.Stream != pc.Source.Stream && !cp.Initial {
		return nil, fmt.Errorf("%w: the checkpoint of %s is a position in stream %s, the pipeline now reads %s (rename the pipeline to start over)",
			ErrStopped, r.p.Name, cp.Stream, pc.Source.Stream)
	}
	if !r.defsChecked && !r.rebuilding() {
		r.defsChecked = true // once per run, not at every restart
		for _, change := range changedDefinitions(cp.Definitions, r.p.defs) {
			r.log.Warn("the pipeline changed since its checkpoint: keys keep their state (a field added to initial reads as its initial value); to recompute them from the history: processor rebuild",
				"projection", change.projection, "change", change.what)
		}
	}
	r.lastSeq = cp.Seq
	r.watermark = cp.Watermark
	r.mx.setCheckpoint(cp.Seq)
	r.committer = commit.New(commit.Options{
		Pipeline: r.p.Name, Stream: pc.Source.Stream, JS: js, Pub: r.pub, Checkpoints: r.cps, Key: r.o.CheckpointKey,
		Instance: r.o.Instance, MaxPayload: r.maxPayload, DLQStream: r.dlqStream,
		OutputStreams: r.o.OutputStreams, Logger: r.log, Definitions: r.p.defs, Partitions: r.partitions(),
	}, cp)
	if err := r.committer.Recover(ctx); err != nil {
		return nil, err
	}

	subjects, err := r.sourceSubjects(stream)
	if err != nil {
		return nil, err
	}
	src, err := source.Open(ctx, stream, source.Options{
		Pipeline: r.consumerName(), Subjects: subjects, After: cp.Seq, Initial: cp.Initial,
		Start: r.p.Start, Batch: pc.Batch, Conn: js.Conn(), Logger: r.log,
	})
	if errors.Is(err, source.ErrWorkQueue) {
		return nil, fmt.Errorf("%w: %w", ErrStopped, err)
	}
	if err != nil {
		return nil, err
	}
	r.acks = src.Acks()
	pending := src.Pending()
	r.mx.setPending(uint64(pending))
	if pc.Source.Stop == "end" && pending == 0 || r.o.StopAt > 0 && cp.Seq >= r.o.StopAt {
		r.done = true
	}
	r.log.Info("pipeline started", "stream", pc.Source.Stream, "checkpoint", cp.Seq, "resumed", !cp.Initial, "pending", pending)
	return src, nil
}
