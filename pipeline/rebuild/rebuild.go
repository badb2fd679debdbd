// Package rebuild refolds a pipeline's projections from its source stream into new versions
// of their buckets while the pipeline goes on serving and updating the current ones, then
// switches the pipeline and its readers to the new versions at one checkpoint.
//
// # How
//
//  1. A lock: the lease `<pipeline>.rebuild` (a second rebuild is refused, [ErrRunning]).
//  2. A checkpoint of its own, `<pipeline>.rebuild` in the checkpoint bucket, which names the
//     buckets it writes (`<projection>_v<N>`) and where it started: an interrupted rebuild
//     resumes from it, if the pipeline's definition and --from are the same; otherwise it
//     starts over, dropping what it wrote.
//  3. Rounds: it runs the pipeline (pipeline.Runner, with the checkpoint above) over the source
//     up to the live pipeline's checkpoint as read at the round's start, never past it. Every
//     event is hydrated: `once` emits do not fire, nor do timers with `handler: once` (the
//     default; the timer ends in the rebuilt state without emitting), `on` and `all` emits do, with the
//     ids the live run gave them, so that JetStream (within its duplicate window) or a consumer
//     (by `ce-id`) drops the copies.
//  4. When a round starts close to the live checkpoint, the switch: it asks the live pipeline's
//     holder for its lease (checkpoint.Leases.Yield), which commits what it has in hand and
//     stands by; takes the lease; catches up to the live checkpoint exactly; and writes, in one
//     atomic batch (checkpoint.Store.Switch), the pipeline's checkpoint naming the new buckets
//     and the pointers readers follow, and deletes its own checkpoint. No event is applied
//     twice or missed: the new versions hold every event up to the checkpoint, and the
//     pipeline goes on after it. Then it gives the lease back: the pipeline resumes on the
//     new versions.
//  5. With DropOld, the buckets of older versions are deleted.
//
// # Partitions
//
// A partitioned pipeline (config partitions N > 1) has a checkpoint and a lease per partition
// (checkpoint.PartitionKey): the rebuild has a checkpoint per partition too,
// `<pipeline>.p<i>.rebuild`, beside `<pipeline>.rebuild`, which then only describes the
// rebuild (version, buckets, definitions, start). Each round replays the N partitions, as many
// at once as there are cores, each a pipeline.Runner of its partition (Options.Partition),
// with operators of its own (pipeline.Pipeline.Instance), under its own checkpoint, up to its partition's
// live checkpoint: each has its own watermark, as the live partition has.
// The switch asks for the N leases at once (their holders may be several processes), keeps
// those it took while it asks again for the others, catches each partition up to its own
// live checkpoint exactly (past it, over its own orphans only: see pipeline.Owners), and
// writes one atomic batch (checkpoint.Store.SwitchParts) of the N partitions' checkpoints,
// each expecting the revision it was read at, the pointers, and the deletion of the N + 1
// rebuild checkpoints. A partition runner reads its buckets from its checkpoint when it
// starts, as a pipeline's runner does: once the leases are given back, each partition goes
// on on the new versions, in whichever process takes it. A switch must fit in one atomic
// batch (checkpoint.MaxSwitch): a pipeline whose switch would not is refused ([ErrTooLarge]).
// A file whose partitions differ from those the pipeline's checkpoints were written with is
// refused too ([ErrPartitioned]).
//
// After a switch the pipeline must run the definition the rebuild used: a process running
// another refuses to run it (pipeline.ErrStopped), until it runs the rebuild's file.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/failpoint"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/streams"
)

// ErrRunning is returned by [Run] while another rebuild of the pipeline runs.
var ErrRunning = errors.New("a rebuild of this pipeline is running")

// ErrNoHandover is returned by [Run] when the live pipeline's holder does not hand its lease
// over in time.
var ErrNoHandover = errors.New("the live pipeline did not hand over")

// ErrPartitioned is returned by [Run] for a pipeline whose file has another number of
// partitions than its checkpoints were written with (see checkpoint.Checkpoint.Partitions):
// its live checkpoints are positions of other partitions than those the rebuild would
// switch. Such a pipeline does not run either (pipeline.ErrStopped).
var ErrPartitioned = errors.New("the pipeline ran with another number of partitions than the file gives")

// ErrTooLarge is returned by [Run] for a pipeline whose switch would not fit in one atomic
// batch (checkpoint.MaxSwitch messages: two per partition, one per projection, one more for a
// partitioned pipeline): with at most 256 partitions, a pipeline of over 487 projections.
var ErrTooLarge = errors.New("the switch does not fit in one atomic batch")

// Options configures [Run].
type Options struct {
	// JS is the JetStream context to work with.
	JS jetstream.JetStream
	// Pipeline is the pipeline to rebuild, with the definition to rebuild it with. Build it
	// for the rebuild: its operators must not be those of a runner of this process.
	Pipeline *pipeline.Pipeline
	// From is where the replay starts: "all", "seq:N" or "time:T" (RFC3339); "" is the
	// pipeline's source.start.
	From string
	// Leases grants the rebuild's lock and, for the switch, the pipeline's lease. Its holder
	// name must be this rebuild's own (not that of a process running the pipeline).
	Leases *checkpoint.Leases
	// Instance names the process in what it writes (Jetfold-Writer).
	Instance string
	// Logger receives the rebuild's log lines; nil discards them.
	Logger *slog.Logger
	// OutputStreams are the streams derived events may go to (see pipeline.Options).
	OutputStreams []string
	// OnProgress, when set, is called after each commit of the replay, and at each phase.
	OnProgress func(Progress)
	// DropOld deletes the buckets of older versions after the switch.
	DropOld bool
	// Handover bounds the wait for the live pipeline's lease (default 1 minute).
	Handover time.Duration
	// CloseEnough is the gap to the live checkpoint, in stream sequences, under which a round
	// goes on to the switch (default 1,000).
	CloseEnough uint64
}

// Progress is how far a rebuild is.
type Progress struct {
	Pipeline string
	// Version is the version being written.
	Version int
	// Phase is "replay", "handover", "switch" or "done".
	Phase string
	// Done and Total are stream positions: how many of the sequences to replay are behind
	// the rebuild, of how many (the live checkpoint moves on while it runs).
	Done, Total uint64
	// Elapsed is the time since this run of the rebuild started; Rate the positions per
	// second replayed in it.
	Elapsed time.Duration
	Rate    float64
}

// Left estimates the time left at the current rate (0: unknown).
func (p Progress) Left() time.Duration {
	if p.Rate <= 0 || p.Done >= p.Total {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
}

// Result is what a rebuild did.
type Result struct {
	// Version is the version switched to; Buckets the bucket of each projection.
	Version int
	Buckets map[string]string
	// Seq is the checkpoint the pipeline switched at; for a partitioned pipeline, the highest
	// of its partitions', and Partitions the checkpoint of each.
	Seq        uint64
	Partitions []uint64
	// Resumed is set when an interrupted rebuild was resumed.
	Resumed bool
	// Dropped are the buckets deleted (DropOld).
	Dropped []string
}

// rebuild is one run of [Run].
type rebuild struct {
	o      Options
	p      *pipeline.Pipeline
	name   string
	cps    *checkpoint.Store
	stream jetstream.Stream
	// parts are the checkpoints the rebuild replaces: the pipeline's, or one per partition.
	parts   []*part
	head    string // the key of the rebuild's description (see prepare)
	base    uint64 // the sequence before the first one replayed
	began   time.Time
	doneAt  uint64 // Done when this run began
	version int

	mu   sync.Mutex // progress: partitions replay at once
	last Progress
}

// part is one checkpoint of the live pipeline and the rebuild's checkpoint beside it: the
// pipeline's own, or one per partition of a partitioned pipeline.
type part struct {
	pt pipeline.Partition
	// q is the pipeline the partition replays, with operators of its own.
	q    *pipeline.Pipeline
	key  string // the live checkpoint's key (and lease)
	rkey string // the rebuild's checkpoint key
	// done and total are the replay's position and goal, as progress reports them.
	done, total uint64
}

// Run rebuilds the projections of o.Pipeline into new versions and switches to them (see the
// package documentation). An interrupted rebuild (ctx ends) keeps its checkpoint: running it
// again resumes.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Handover == 0 {
		o.Handover = time.Minute
	}
	if o.CloseEnough == 0 {
		o.CloseEnough = 1000
	}
	if o.Leases == nil || o.JS == nil || o.Pipeline == nil {
		return Result{}, errors.New("rebuild: Options.JS, Pipeline and Leases are required")
	}
	o.Leases = o.Leases.Quiet() // the rebuild says what it waits for
	p := o.Pipeline
	rb := &rebuild{o: o, p: p, name: p.Name, began: time.Now(), head: checkpoint.RebuildKey(p.Name)}
	for _, pt := range pipeline.Partitions(p) {
		key := p.Name
		if pt.Count > 1 {
			key = checkpoint.PartitionKey(p.Name, pt.Index)
		}
		rb.parts = append(rb.parts, &part{pt: pt, key: key, rkey: checkpoint.RebuildKey(key)})
	}
	if n := rb.switchSize(); n > checkpoint.MaxSwitch {
		return Result{}, fmt.Errorf("rebuild %s: %w: its switch writes %d messages (%d partitions, %d projections), over the %d of one atomic batch",
			p.Name, ErrTooLarge, n, len(rb.parts), len(p.Projections), checkpoint.MaxSwitch)
	}
	start := p.Start
	if o.From != "" {
		var err error
		if start, err = (config.Source{Start: o.From}).StartPosition(); err != nil {
			return Result{}, fmt.Errorf("rebuild %s: --from: %w", p.Name, err)
		}
	}
	if start.Kind == config.StartNew {
		return Result{}, fmt.Errorf("rebuild %s: the pipeline starts at `new`, so there is no history to replay: say where with --from (all, seq:N, time:T)", p.Name)
	}
	if o.From == "" {
		o.From = p.Config.Source.Start
		if o.From == "" {
			o.From = config.StartAll
		}
	}

	held, release, err := o.Leases.AcquireWithin(ctx, checkpoint.RebuildKey(p.Name), time.Millisecond)
	if errors.Is(err, checkpoint.ErrHeld) {
		return Result{}, fmt.Errorf("rebuild %s: %w (%v)", p.Name, ErrRunning, err)
	}
	if err != nil {
		return Result{}, fmt.Errorf("rebuild %s: %w", p.Name, err)
	}
	defer release()
	ctx = held

	kv, err := streams.EnsureBucket(ctx, o.JS, streams.CheckpointBucket)
	if err != nil {
		return Result{}, err
	}
	rb.cps = checkpoint.NewStore(kv)
	if rb.stream, err = o.JS.Stream(ctx, p.Config.Source.Stream); err != nil {
		return Result{}, fmt.Errorf("rebuild %s: source stream %s: %w", p.Name, p.Config.Source.Stream, err)
	}
	if err := rb.checkLayout(ctx); err != nil {
		return Result{}, err
	}
	cp, resumed, err := rb.prepare(ctx, start, o.From)
	if err != nil {
		return Result{}, err
	}
	rb.version = cp.Rebuild.Version
	rb.base = rb.baseOf(ctx, start)
	for _, pa := range rb.parts {
		own, err := rb.cps.Load(ctx, pa.rkey)
		if err != nil {
			return Result{}, fmt.Errorf("rebuild %s: %w", p.Name, err)
		}
		if !own.Initial {
			pa.done = sub(own.Seq, rb.base)
			rb.doneAt += pa.done
		}
	}

	// Each partition replays with operators of its own: windows and timers keep indexes of
	// their partition's state while they run.
	for i, pa := range rb.parts {
		built := p
		if i > 0 {
			if built, err = p.Instance(); err != nil {
				return Result{}, fmt.Errorf("rebuild %s: partition %d: %w", p.Name, pa.pt.Index, err)
			}
		}
		pa.q = built.ForRebuild(start)
	}
	// Rounds up to the live checkpoints as they move, until one starts close to them.
	for {
		lives, err := rb.lives(ctx)
		if err != nil {
			return Result{}, err
		}
		ats, err := rb.replayAll(ctx, seqs(lives))
		if err != nil {
			return Result{}, err
		}
		if err := rb.markHead(ctx, ats); err != nil {
			return Result{}, err
		}
		near := true
		for i, live := range lives {
			near = near && live.Seq <= ats[i]+o.CloseEnough
		}
		if near {
			break
		}
	}

	// The switch, under the pipeline's leases.
	rb.report("handover", nil)
	for _, pa := range rb.parts {
		if holder, err := o.Leases.Holder(ctx, pa.key); err == nil && holder != "" {
			o.Logger.Info("asking the process that runs the pipeline to hand it over for the switch", "pipeline", p.Name, "lease", pa.key, "holder", holder)
		}
	}
	unlock, err := rb.handover(ctx)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	var done []checkpoint.Checkpoint
	for try := 0; ; try++ {
		lives, err := rb.lives(ctx)
		if err != nil {
			return Result{}, err
		}
		ats := make([]uint64, len(lives))
		for i, live := range lives {
			if ats[i], err = rb.orphans(ctx, rb.parts[i], live); err != nil {
				return Result{}, err
			}
		}
		if _, err := rb.replayAll(ctx, ats); err != nil {
			return Result{}, err
		}
		rb.report("switch", nil)
		failpoint.Hit("before-switch")
		done, err = rb.switchTo(ctx, lives, ats)
		if errors.Is(err, checkpoint.ErrFenced) && try < 5 {
			o.Logger.Warn("the pipeline committed during the switch: catching up again", "pipeline", p.Name)
			continue
		}
		if err != nil {
			return Result{}, err
		}
		break
	}
	failpoint.Hit("after-switch")
	unlock()
	res := Result{Version: rb.version, Buckets: done[0].Buckets, Resumed: resumed}
	for _, cp := range done {
		res.Seq = max(res.Seq, cp.Seq)
		if len(done) > 1 {
			res.Partitions = append(res.Partitions, cp.Seq)
		}
	}
	o.Logger.Info("switched to the rebuilt version", "pipeline", p.Name, "version", rb.version, "checkpoint", res.Seq, "partitions", res.Partitions, "buckets", res.Buckets)
	if o.DropOld {
		if res.Dropped, err = DropOld(ctx, o.JS, p); err != nil {
			return res, err
		}
	}
	rb.report("done", nil)
	return res, nil
}

// partitions is the pipeline's number of partitions as checkpoints record it: 0 for one.
func (rb *rebuild) partitions() int {
	if len(rb.parts) > 1 {
		return len(rb.parts)
	}
	return 0
}

// checkLayout refuses ([ErrPartitioned]) a pipeline whose live checkpoints say it ran in
// another number of partitions than the file gives (checkpoint.RanIn, checkpoint.Agrees).
func (rb *rebuild) checkLayout(ctx context.Context) error {
	var found [2]*checkpoint.Checkpoint // the pipeline's own, partition 0's
	for i, key := range []string{rb.name, checkpoint.PartitionKey(rb.name, 0)} {
		cp, err := rb.cps.Load(ctx, key)
		if errors.Is(err, checkpoint.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		found[i] = &cp
	}
	if ran := checkpoint.RanIn(found[0], found[1]); !checkpoint.Agrees(ran, len(rb.parts)) {
		return fmt.Errorf("rebuild %s: %w (its checkpoints say it ran in %s; the file has partitions: %d)",
			rb.name, ErrPartitioned, pipeline.PartitionsText(ran), max(1, len(rb.parts)))
	}
	return nil
}

// switchSize is the number of messages of the switch's atomic batch: a checkpoint per part,
// the deletion of the rebuild's checkpoints, a pointer per projection.
func (rb *rebuild) switchSize() int {
	n := 2*len(rb.parts) + len(rb.p.Projections)
	if len(rb.parts) > 1 {
		n++ // the description
	}
	return n
}

// prepare returns the rebuild's description (its checkpoint, for a pipeline of one
// partition; for a partitioned one, a checkpoint under the same key beside one per partition,
// `<pipeline>.p<i>.rebuild`, which keep the positions): that of an interrupted rebuild with
// the same definition and start, or a new one (dropping what another left). Every part has
// its checkpoint after it.
func (rb *rebuild) prepare(ctx context.Context, start config.StartPos, from string) (checkpoint.Checkpoint, bool, error) {
	p, log := rb.p, rb.o.Logger
	live, err := rb.cps.Load(ctx, rb.parts[0].key)
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return checkpoint.Checkpoint{}, false, err
	}
	old, err := rb.cps.Load(ctx, rb.head)
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return checkpoint.Checkpoint{}, false, err
	}
	found := err == nil
	// The partitions' checkpoints (none for a pipeline of one partition: its is the head).
	var owns []checkpoint.Checkpoint
	var ownKeys []string
	for _, pa := range rb.parts {
		if pa.rkey == rb.head {
			continue
		}
		own, err := rb.cps.Load(ctx, pa.rkey)
		if errors.Is(err, checkpoint.ErrNotFound) {
			continue
		}
		if err != nil {
			return checkpoint.Checkpoint{}, false, err
		}
		owns, ownKeys = append(owns, own), append(ownKeys, pa.rkey)
	}
	same := found && old.Rebuild != nil && old.Rebuild.From == from && old.Stream == p.Config.Source.Stream &&
		maps.Equal(old.Definitions, p.Definitions())
	for _, own := range owns {
		same = same && own.Rebuild != nil && own.Rebuild.Version == old.Rebuild.Version && maps.Equal(own.Buckets, old.Buckets)
	}
	switch {
	case same:
		log.Info("resuming the rebuild", "pipeline", p.Name, "version", old.Rebuild.Version, "checkpoint", old.Seq)
		if err := rb.partsFrom(ctx, old, ownKeys); err != nil {
			return checkpoint.Checkpoint{}, false, err
		}
		return old, true, nil
	case found || len(owns) > 0:
		log.Warn("an interrupted rebuild of another definition or start: starting over", "pipeline", p.Name,
			"was", old.Rebuild, "changes", pipeline.DefinitionChanges(old.Definitions, p.Definitions()))
		for _, cp := range append(owns, old) {
			for proj, bucket := range cp.Buckets {
				if bucket != live.Bucket(proj) {
					if err := deleteBucket(ctx, rb.o.JS, bucket); err != nil {
						return checkpoint.Checkpoint{}, false, err
					}
				}
			}
		}
		for _, key := range ownKeys {
			if err := rb.cps.Delete(ctx, key); err != nil {
				return checkpoint.Checkpoint{}, false, err
			}
		}
		if found {
			if err := rb.cps.Delete(ctx, rb.head); err != nil {
				return checkpoint.Checkpoint{}, false, err
			}
		}
	}

	version := 1
	for _, proj := range p.Projections {
		cur, err := checkpoint.Current(ctx, rb.o.JS, proj)
		if err != nil {
			return checkpoint.Checkpoint{}, false, err
		}
		version = max(version, cur.Version, checkpoint.VersionOf(proj, live.Bucket(proj)))
	}
	version++
	cp := checkpoint.Checkpoint{
		Stream: p.Config.Source.Stream, Initial: true, Definitions: p.Definitions(), Buckets: map[string]string{}, Partitions: rb.partitions(),
		Rebuild: &checkpoint.Rebuild{Version: version, From: from, Started: time.Now().UTC(), By: rb.o.Instance},
	}
	for _, proj := range p.Projections {
		bucket := checkpoint.BucketName(proj, version)
		// A bucket of that name is what a rebuild left before it wrote its checkpoint.
		if err := deleteBucket(ctx, rb.o.JS, bucket); err != nil {
			return checkpoint.Checkpoint{}, false, err
		}
		if err := createLike(ctx, rb.o.JS, bucket, live.Bucket(proj)); err != nil {
			return checkpoint.Checkpoint{}, false, err
		}
		cp.Buckets[proj] = bucket
	}
	cp, err = rb.cps.Commit(ctx, rb.head, cp)
	if err != nil {
		return checkpoint.Checkpoint{}, false, err
	}
	if err := rb.partsFrom(ctx, cp, nil); err != nil { // what other rebuilds left is deleted above
		return checkpoint.Checkpoint{}, false, err
	}
	log.Info("rebuild started", "pipeline", p.Name, "version", version, "from", from, "buckets", cp.Buckets, "partitions", len(rb.parts))
	return cp, false, nil
}

// markHead writes, for a partitioned pipeline, the least of the partitions' positions ats as
// the position of the rebuild's description, which `processor status` shows.
func (rb *rebuild) markHead(ctx context.Context, ats []uint64) error {
	if len(rb.parts) == 1 {
		return nil // the description is the rebuild's checkpoint
	}
	head, err := rb.cps.Load(ctx, rb.head)
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", rb.name, err)
	}
	head.Seq = slices.Min(ats)
	head.Initial = head.Seq == 0
	if _, err := rb.cps.Commit(ctx, rb.head, head); err != nil {
		return fmt.Errorf("rebuild %s: %w", rb.name, err)
	}
	return nil
}

// partsFrom writes the checkpoint of every partition that has none yet (whose key is not in
// have, the keys prepare found): at the start, with the buckets of the description head.
func (rb *rebuild) partsFrom(ctx context.Context, head checkpoint.Checkpoint, have []string) error {
	for _, pa := range rb.parts {
		if pa.rkey == rb.head || slices.Contains(have, pa.rkey) {
			continue
		}
		own := checkpoint.Checkpoint{Stream: head.Stream, Initial: true, Definitions: head.Definitions, Buckets: head.Buckets,
			Partitions: rb.partitions(), Rebuild: head.Rebuild}
		if _, err := rb.cps.Commit(ctx, pa.rkey, own); err != nil {
			return err
		}
	}
	return nil
}

// lives loads the pipeline's checkpoints, one per part (zero when it never ran).
func (rb *rebuild) lives(ctx context.Context) ([]checkpoint.Checkpoint, error) {
	out := make([]checkpoint.Checkpoint, len(rb.parts))
	for i, pa := range rb.parts {
		cp, err := rb.cps.Load(ctx, pa.key)
		if errors.Is(err, checkpoint.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if cp.Initial {
			cp.Seq = 0 // it has read nothing yet
		}
		out[i] = cp
	}
	return out, nil
}

// seqs returns the positions of cps.
func seqs(cps []checkpoint.Checkpoint) []uint64 {
	out := make([]uint64, len(cps))
	for i, cp := range cps {
		out[i] = cp.Seq
	}
	return out
}

// replayAll replays every part up to its position in upto, as many at once as there are
// cores (more would only share them, and the connection, whose lease renewals must go
// through), and returns where each rebuild checkpoint is after it. The first error stops the
// others. A pipeline of one partition is the case of one part.
func (rb *rebuild) replayAll(ctx context.Context, upto []uint64) ([]uint64, error) {
	each, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ats := make([]uint64, len(rb.parts))
	errs := make([]error, len(rb.parts))
	var wg sync.WaitGroup
	slots := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for i, pa := range rb.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			ats[i], errs[i] = rb.replay(each, pa, upto[i])
			if errs[i] != nil {
				cancel(errs[i]) // the first cause stays
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ats, errors.Join(errs...) // interrupted: each part says where
	}
	return ats, context.Cause(each) // nil, or the first part's error
}

// replay runs partition pa of the pipeline, hydrated, from its rebuild checkpoint up to
// upto, and returns the rebuild checkpoint after it.
func (rb *rebuild) replay(ctx context.Context, pa *part, upto uint64) (uint64, error) {
	name := rb.name
	if pa.pt.Count > 1 {
		name = fmt.Sprintf("%s (partition %d)", rb.name, pa.pt.Index)
	}
	cp, err := rb.cps.Load(ctx, pa.rkey)
	if err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", name, err)
	}
	if cp.Initial {
		cp.Seq = 0
	}
	rb.progress(pa, cp.Seq, upto)
	if upto == 0 || cp.Seq >= upto {
		return cp.Seq, nil
	}
	var at uint64 = cp.Seq
	log := rb.o.Logger.With("rebuild", rb.version)
	r := pipeline.NewRunner(pa.q, pipeline.Options{
		JS: rb.o.JS, Logger: log, Instance: rb.o.Instance,
		OutputStreams: rb.o.OutputStreams, CheckpointKey: pa.rkey, Partition: pa.pt,
		StopAt: upto, HydrateUntil: math.MaxUint64,
		OnCommit: func(c pipeline.CommitInfo) {
			at = c.Seq
			rb.progress(pa, c.Seq, upto)
		},
	})
	if err := r.Run(ctx); err != nil {
		return at, fmt.Errorf("rebuild %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, checkpoint.ErrLeaseLost) {
			err = fmt.Errorf("%w: its lock was lost (the process was stalled or cut off from NATS for over half the lease TTL)", cause)
		}
		return at, fmt.Errorf("rebuild %s interrupted at %d (run it again to resume): %w", name, at, err)
	}
	cp, err = rb.cps.Load(ctx, pa.rkey)
	if err != nil {
		return at, fmt.Errorf("rebuild %s: %w", name, err)
	}
	rb.progress(pa, max(cp.Seq, upto), upto)
	return max(cp.Seq, upto), nil // past upto are only other subjects' messages
}

// handover takes the pipeline's leases, one per part, asking their holders for them (several
// processes may hold the partitions of a partitioned pipeline); unlock gives them back (once).
// Leases taken are kept while the others are asked for: a holder that handed its lease over
// cannot take it back.
func (rb *rebuild) handover(ctx context.Context) (unlock func(), err error) {
	deadline := time.Now().Add(rb.o.Handover)
	releases := make([]func(), len(rb.parts))
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			for _, release := range releases {
				if release != nil {
					release()
				}
			}
		})
	}
	for {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			held []string
		)
		for i, pa := range rb.parts {
			if releases[i] != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := rb.o.Leases.Yield(ctx, pa.key)
				if err == nil {
					var release func()
					if _, release, err = rb.o.Leases.AcquireWithin(ctx, pa.key, time.Second); err == nil {
						releases[i] = release
						return
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if errors.Is(err, checkpoint.ErrHeld) {
					held = append(held, err.Error())
				} else {
					errs = append(errs, fmt.Errorf("rebuild %s: %w", rb.name, err))
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			unlock()
			return nil, err
		}
		if len(held) == 0 {
			return unlock, nil
		}
		if time.Now().After(deadline) {
			unlock()
			slices.Sort(held)
			return nil, fmt.Errorf("rebuild %s: %w within %s: %s (a process of a jetfold without rebuilds holds it?)",
				rb.name, ErrNoHandover, rb.o.Handover, strings.Join(held, "; "))
		}
	}
}

// orphans returns where part pa's switch goes: its live checkpoint, or past it when the
// partition's last run died inside a commit after it published the derived events of later
// events (its lease expired rather than being handed over). Those events keep the derived
// events they have, their old definition's, and the rebuild folds them hydrated: the new
// definition takes over after them. The messages of a partitioned pipeline's streams are
// every partition's: only those of pa's own events count (see pipeline.Owners).
func (rb *rebuild) orphans(ctx context.Context, pa *part, live checkpoint.Checkpoint) (uint64, error) {
	if live.Seq == 0 {
		return 0, nil
	}
	o := commit.Options{
		Pipeline: rb.name, Stream: rb.p.Config.Source.Stream, JS: rb.o.JS, DLQStream: streams.DLQStream,
		OutputStreams: rb.o.OutputStreams, Logger: rb.o.Logger,
	}
	var at uint64
	if pa.pt.Count <= 1 {
		var err error
		if at, err = commit.Orphans(ctx, o, live); err != nil {
			return 0, fmt.Errorf("rebuild %s: %w", rb.name, err)
		}
	} else {
		seqs, err := commit.OrphanSeqs(ctx, o, live)
		if err != nil {
			return 0, fmt.Errorf("rebuild %s: partition %d: %w", rb.name, pa.pt.Index, err)
		}
		owners := rb.p.Owners()
		for _, seq := range seqs { // the highest first
			m, err := rb.stream.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // gone from the stream: it is no event to replay either
			}
			if err != nil {
				return 0, fmt.Errorf("rebuild %s: partition %d: source message %d: %w", rb.name, pa.pt.Index, seq, err)
			}
			if owners.Of(m) == pa.pt.Index {
				at = seq
				break
			}
		}
	}
	if at <= live.Seq {
		return live.Seq, nil
	}
	rb.o.Logger.Warn("the pipeline's last run died inside a commit, after it published the derived events of events up to a later sequence: the switch goes after them (they keep those derived events)",
		"pipeline", rb.name, "checkpoint", pa.key, "at", live.Seq, "switch", at)
	return at, nil
}

// switchTo writes the switch from the live checkpoints to the rebuilt versions, each part at
// its source sequence in ats (its live checkpoint, or past it: see orphans), in one atomic
// batch that also deletes the rebuild's checkpoints.
func (rb *rebuild) switchTo(ctx context.Context, lives []checkpoint.Checkpoint, ats []uint64) ([]checkpoint.Checkpoint, error) {
	parts := make([]checkpoint.SwitchPart, len(rb.parts))
	done := []string{rb.head}
	for i, pa := range rb.parts {
		live, at := lives[i], ats[i]
		own, err := rb.cps.Load(ctx, pa.rkey)
		if err != nil {
			return nil, fmt.Errorf("rebuild %s: %w", rb.name, err)
		}
		if !own.Initial && own.Seq > at && live.Seq > 0 {
			return nil, fmt.Errorf("rebuild %s: %s at %d, past the switch's position %d", rb.name, pa.rkey, own.Seq, at)
		}
		next := checkpoint.Checkpoint{
			Seq: at, Stream: rb.p.Config.Source.Stream, Initial: live.Seq == 0,
			Watermark: own.Watermark, Definitions: own.Definitions, Buckets: own.Buckets, Partitions: rb.partitions(),
			Switched: &checkpoint.Switched{Version: rb.version, By: rb.o.Instance, Replaced: live.Definitions},
		}
		if live.Seq == 0 {
			next.Seq = own.Seq // the pipeline never ran: it goes on after what the rebuild read
			next.Initial = own.Initial
		}
		// Read back (after a crash) from the live run's positions: earlier is only slower.
		next.Outputs = maps.Clone(live.Outputs)
		for s, seq := range own.Outputs {
			if _, ok := next.Outputs[s]; !ok {
				if next.Outputs == nil {
					next.Outputs = map[string]uint64{}
				}
				next.Outputs[s] = seq
			}
		}
		parts[i] = checkpoint.SwitchPart{Key: pa.key, Live: live, Next: next}
		if pa.rkey != rb.head {
			done = append(done, pa.rkey)
		}
	}
	return rb.cps.SwitchParts(ctx, rb.o.JS, rb.name, parts, done)
}

// baseOf returns the sequence before the first one the rebuild replays.
func (rb *rebuild) baseOf(ctx context.Context, start config.StartPos) uint64 {
	if start.Kind == config.StartSeq && start.Seq > 0 {
		return start.Seq - 1
	}
	info, err := rb.stream.Info(ctx)
	if err != nil || info.State.FirstSeq == 0 {
		return 0
	}
	if start.Kind == config.StartTime {
		if after, err := countSince(ctx, rb.stream, start.Time); err == nil {
			return sub(info.State.LastSeq, after)
		}
	}
	return info.State.FirstSeq - 1
}

// countSince counts the messages stored at or after t.
func countSince(ctx context.Context, s jetstream.Stream, t time.Time) (uint64, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t})
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending, nil
}

// progress records part pa's replay at position at of upto, and reports it.
func (rb *rebuild) progress(pa *part, at, upto uint64) {
	rb.mu.Lock()
	pa.done, pa.total = sub(at, rb.base), sub(upto, rb.base)
	rb.mu.Unlock()
	rb.report("replay", pa)
}

// report calls OnProgress, with the positions summed over the parts (pa nil: as last
// reported). The parts replay at once: it is called from their goroutines.
func (rb *rebuild) report(phase string, pa *part) {
	if rb.o.OnProgress == nil {
		return
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	pr := rb.last
	pr.Pipeline, pr.Version, pr.Phase = rb.name, rb.version, phase
	if pa != nil {
		pr.Done, pr.Total = 0, 0
		for _, p := range rb.parts {
			pr.Done += p.done
			pr.Total += p.total
		}
	}
	pr.Elapsed = time.Since(rb.began)
	if s := pr.Elapsed.Seconds(); s > 0 && pr.Done > rb.doneAt {
		pr.Rate = float64(pr.Done-rb.doneAt) / s
	}
	rb.last = pr
	rb.o.OnProgress(pr)
}

// DropOld deletes the buckets of the versions older than the current one of each projection p
// writes, and returns their names.
func DropOld(ctx context.Context, js jetstream.JetStream, p *pipeline.Pipeline) ([]string, error) {
	var dropped []string
	for _, proj := range p.Projections {
		cur, err := checkpoint.Current(ctx, js, proj)
		if err != nil {
			return dropped, err
		}
		for v := 1; v < cur.Version; v++ {
			bucket := checkpoint.BucketName(proj, v)
			_, err := js.KeyValue(ctx, bucket)
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				continue
			}
			if err != nil {
				return dropped, fmt.Errorf("drop %s: %w", bucket, err)
			}
			if err := deleteBucket(ctx, js, bucket); err != nil {
				return dropped, err
			}
			dropped = append(dropped, bucket)
		}
	}
	slices.Sort(dropped)
	return dropped, nil
}

// deleteBucket deletes a bucket, if it exists.
func deleteBucket(ctx context.Context, js jetstream.JetStream, bucket string) error {
	err := js.DeleteKeyValue(ctx, bucket)
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete bucket %s: %w", bucket, err)
	}
	return nil
}

// createLike creates bucket with the settings of the bucket like (replicas, storage, limits,
// TTLs), or the defaults when like does not exist.
func createLike(ctx context.Context, js jetstream.JetStream, bucket, like string) error {
	s, err := js.Stream(ctx, streams.KVStream(like))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = streams.EnsureBucket(ctx, js, bucket)
		return err
	}
	if err != nil {
		return fmt.Errorf("bucket %s: %w", like, err)
	}
	c := s.CachedInfo().Config
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: strings.TrimSpace(c.Description + " (rebuilt)"), MaxValueSize: c.MaxMsgSize,
		History: uint8(max(1, min(c.MaxMsgsPerSubject, 64))), TTL: c.MaxAge, MaxBytes: c.MaxBytes, Storage: c.Storage,
		Replicas: c.Replicas, Placement: c.Placement, Compression: c.Compression != jetstream.NoCompression,
		LimitMarkerTTL: c.SubjectDeleteMarkerTTL,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	if c.AllowMsgTTL {
		s2, err := js.Stream(ctx, streams.KVStream(bucket))
		if err != nil {
			return fmt.Errorf("bucket %s: %w", bucket, err)
		}
		cfg := s2.CachedInfo().Config
		cfg.AllowMsgTTL = true
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bucket %s: %w", bucket, err)
		}
	}
	return nil
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
