package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/streams"
)

var (
	// ErrStopped is returned by [Runner.Run] when an event failed under `on_error: stop`.
	ErrStopped = errors.New("pipeline stopped on error")
	// errCaughtUp ends a `stop: end` pipeline once it has committed the end of its stream.
	errCaughtUp = errors.New("caught up")
)

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
	// OnCommit, when set, is called after every commit from the runner's goroutine.
	OnCommit func(CommitInfo)
	// MaxFencedRetries is how many consecutive fenced commits end the run with
	// checkpoint.ErrFenced (default 3).
	MaxFencedRetries int
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
	m   *Metrics

	// set up by start, reset by every restart
	cache      *cache
	kvStreams  map[string]jetstream.Stream
	cps        *checkpoint.Store
	checkpoint checkpoint.Checkpoint
	exec       operators.Exec
	lastSeq    uint64 // highest source sequence taken into a batch
	total      int
	done       bool // stop: end reached
}

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
	return &Runner{p: p, o: o, log: o.Logger.With("pipeline", p.Name), m: o.Metrics}
}

// Run processes events until ctx ends (then it commits what is in flight and returns nil),
// until the end of the stream with `stop: end` (nil), or until an error it cannot retry:
// [ErrStopped] under `on_error: stop`, checkpoint.ErrFenced when another instance keeps
// winning the commits. Lost connections and failed commits restart the pipeline in-process
// from its last checkpoint, with backoff: the commit protocol makes that as safe as a crash.
func (r *Runner) Run(ctx context.Context) error {
	wait := 200 * time.Millisecond
	fenced := 0
	for {
		err := r.runOnce(ctx)
		switch {
		case errors.Is(err, errCaughtUp):
			r.log.Info("caught up with the end of the stream", "checkpoint", r.checkpoint.Seq)
			return nil
		case err == nil || ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrStopped):
			return err
		case errors.Is(err, checkpoint.ErrFenced):
			r.m.Fenced.WithLabelValues(r.p.Name).Inc()
			if fenced++; fenced >= r.o.MaxFencedRetries {
				r.log.Error("another instance is writing this pipeline; stopping", "err", err)
				return err
			}
		default:
			fenced = 0
		}
		r.m.Restarts.WithLabelValues(r.p.Name).Inc()
		r.log.Warn("pipeline restarts from its checkpoint", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// runOnce sets the pipeline up from its checkpoint and processes batches until an error.
func (r *Runner) runOnce(ctx context.Context) error {
	cons, err := r.start(ctx)
	if err != nil {
		return err
	}
	if r.done {
		return errCaughtUp
	}
	src := newSource(cons, r.p.Config.Batch, r.log)
	if err := src.start(); err != nil {
		return err
	}
	defer src.stop()
	b := &batch{}
	for {
		if err := src.next(ctx, b); err != nil {
			return err
		}
		if len(b.msgs) == 0 {
			continue
		}
		// From here on the batch is finished even if ctx ends: commit what is in flight.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		err := r.processAndCommit(wctx, b)
		cancel()
		if err != nil {
			return err
		}
		if r.done {
			return errCaughtUp
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// start loads the checkpoint, opens buckets and (re)creates the durable consumer positioned
// right after the checkpoint.
func (r *Runner) start(ctx context.Context) (jetstream.Consumer, error) {
	js := r.o.JS
	pc := r.p.Config
	r.cache = newCache(pc.Cache.MaxKeys)
	r.kvStreams = map[string]jetstream.Stream{}
	r.exec = operators.Exec{Store: r, Pipeline: r.p.Name}
	r.done = false

	stream, err := js.Stream(ctx, pc.Source.Stream)
	if err != nil {
		return nil, fmt.Errorf("source stream %s: %w", pc.Source.Stream, err)
	}
	for _, proj := range r.p.Projections {
		if _, err := streams.EnsureBucket(ctx, js, proj); err != nil {
			return nil, err
		}
		s, err := js.Stream(ctx, streams.KVStream(proj))
		if err != nil {
			return nil, fmt.Errorf("projection %s: %w", proj, err)
		}
		r.kvStreams[proj] = s
		r.cache.complete[proj] = s.CachedInfo().State.Msgs == 0
	}
	cpkv, err := streams.EnsureBucket(ctx, js, streams.CheckpointBucket)
	if err != nil {
		return nil, err
	}
	if _, err := streams.EnsureCaptured(ctx, js, streams.DLQSubject(r.p.Name), streams.DLQStream, []string{"_jetfold.dlq.>"}, 0); err != nil {
		return nil, err
	}
	r.cps = checkpoint.NewStore(cpkv)
	cp, err := r.cps.Load(ctx, r.p.Name)
	found := err == nil
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return nil, err
	}
	if !found && r.p.Start.Kind == "new" {
		// Pin "new" to a sequence now, so that a restart before the first commit does not
		// skip what arrived in between.
		cp = checkpoint.Checkpoint{Seq: stream.CachedInfo().State.LastSeq, Stream: pc.Source.Stream}
		if cp, err = r.cps.Commit(ctx, r.p.Name, cp); err != nil {
			return nil, err
		}
		found = true
	}
	r.checkpoint = cp
	r.lastSeq = cp.Seq
	r.m.Checkpoint.WithLabelValues(r.p.Name).Set(float64(cp.Seq))

	cc := r.consumerConfig(found, cp.Seq)
	if err := stream.DeleteConsumer(ctx, cc.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("reset consumer %s: %w", cc.Durable, err)
	}
	cons, err := stream.CreateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cc.Durable, err)
	}
	info := cons.CachedInfo()
	r.m.Pending.WithLabelValues(r.p.Name).Set(float64(info.NumPending))
	if pc.Source.Stop == "end" && info.NumPending == 0 {
		r.done = true
	}
	r.log.Info("pipeline started", "stream", pc.Source.Stream, "checkpoint", cp.Seq, "resumed", found, "pending", info.NumPending)
	return cons, nil
}

func (r *Runner) consumerConfig(resume bool, seq uint64) jetstream.ConsumerConfig {
	pc := r.p.Config
	cc := jetstream.ConsumerConfig{
		Durable:       "jetfold_" + r.p.Name,
		Description:   "jetfold pipeline " + r.p.Name,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       2 * time.Minute,
		MaxAckPending: max(100_000, 4*pc.Batch.Size),
		MaxDeliver:    -1,
	}
	switch len(pc.Source.Subjects) {
	case 0:
	case 1:
		cc.FilterSubject = pc.Source.Subjects[0]
	default:
		cc.FilterSubjects = pc.Source.Subjects
	}
	switch {
	case resume:
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = seq + 1
	case r.p.Start.Kind == "seq":
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = max(r.p.Start.Seq, 1)
	case r.p.Start.Kind == "time":
		t := r.p.Start.Time
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &t
	default:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	return cc
}

// Checkpoint returns the last committed checkpoint.
func (r *Runner) Checkpoint() checkpoint.Checkpoint { return r.checkpoint }

// Pipeline returns the compiled pipeline.
func (r *Runner) Pipeline() *Pipeline { return r.p }
