package commit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/failpoint"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// Options configures a [Committer].
type Options struct {
	// Pipeline names the pipeline (message ids, the dead-letter subject).
	Pipeline string
	// Stream is the source stream, recorded in the checkpoint.
	Stream string
	// JS reads back what an earlier run published; Pub publishes the commits, a JetStream
	// context of the committer's own (see streams.NewPublisher).
	JS, Pub jetstream.JetStream
	// Checkpoints stores the checkpoint, under Key (default: Pipeline; a rebuild's own, see
	// checkpoint.RebuildKey).
	Checkpoints *checkpoint.Store
	Key         string
	// Instance names the process in the values it writes (Jetfold-Writer).
	Instance string
	// MaxPayload is the server's payload limit, which dead letters fit.
	MaxPayload int
	// DLQStream is the stream of the pipeline's dead letters; OutputStreams those its derived
	// events may go to. Both are read back after a crash (see [Committer.Recover]).
	DLQStream     string
	OutputStreams []string
	// Logger receives the committer's log lines.
	Logger *slog.Logger
	// Definitions are the pipeline's projection definitions, written with every checkpoint
	// (see checkpoint.Checkpoint.Definitions).
	Definitions map[string]string
	// Partitions is the pipeline's number of partitions, written with every checkpoint (0
	// or 1: not partitioned; see checkpoint.Checkpoint.Partitions).
	Partitions int
}

// Committer commits a pipeline's batches with the protocol of this package, from the
// checkpoint it was made with. Commit runs on one goroutine at a time.
type Committer struct {
	o          Options
	checkpoint checkpoint.Checkpoint
	// published holds the ids of the messages published after the checkpoint by an earlier
	// run that did not commit; publishedMax is the highest source sequence among them.
	published    map[string]struct{}
	publishedMax uint64
}

// New returns a committer that commits after checkpoint cp.
func New(o Options, cp checkpoint.Checkpoint) *Committer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Key == "" {
		o.Key = o.Pipeline
	}
	return &Committer{o: o, checkpoint: cp}
}

// Checkpoint returns the last checkpoint committed (or the one the committer was made with).
func (c *Committer) Checkpoint() checkpoint.Checkpoint { return c.checkpoint }

// Batch is what a commit makes durable.
type Batch struct {
	// Outputs are the derived events and dead letters, in source order.
	Outputs []*nats.Msg
	// Writes are the projection keys to write.
	Writes []state.Write
	// LastSeq is the source sequence of the batch's last message: the new checkpoint.
	LastSeq uint64
	// Ack, when set, is the message whose acknowledgement (AckAll) covers the batch.
	Ack jetstream.Msg
	// Watermark is the pipeline's watermark after the batch, kept with the checkpoint (zero:
	// unchanged).
	Watermark time.Time
}

// Result says what a commit published.
type Result struct {
	// Outputs is the number of derived events and dead letters published; Refused, of the
	// derived events JetStream refused, which were dead-lettered in their place.
	Outputs, Refused int
}

// Commit makes the effects of b durable, in the order documented in package checkpoint:
// derived events and dead letters, then the projection keys, then the checkpoint, then the
// acknowledgement. Any error leaves a state that a restart from the last checkpoint repairs.
// It runs on its own goroutine while the next batch is processed; it touches only b, the
// revisions of b's entries, the checkpoint and the read-back ids.
func (c *Committer) Commit(ctx context.Context, b Batch) (Result, error) {
	if b.LastSeq == 0 {
		return Result{}, nil // only redeliveries
	}

	// 1. Derived events and dead letters. Their ids are deterministic: if a crash makes us
	//    publish them again, JetStream drops the copies within the duplicate window, and
	//    a fold that finds its key already past the event skips it altogether.
	//    Those an earlier run published after the checkpoint were read back at start and
	//    are not sent again, so that even a restart past the duplicate window adds nothing.
	outputs := b.Outputs
	if len(c.published) > 0 {
		outputs = c.unpublished(outputs)
	}
	outSeqs := maps.Clone(c.checkpoint.Outputs)
	refused, err := c.publishOutputs(ctx, outputs, func(a *jetstream.PubAck) {
		if outSeqs == nil {
			outSeqs = map[string]uint64{}
		}
		outSeqs[a.Stream] = max(outSeqs[a.Stream], a.Sequence)
	})
	if err != nil {
		return Result{}, err
	}
	failpoint.Hit("after-outputs")

	// 2. Projection keys, each with the revision it was read at: a value written by anyone
	//    else since then fails the write (fencing).
	writer := c.o.Instance + "@" + strconv.FormatInt(time.Now().UnixNano(), 10)
	w := streams.NewWindow(c.o.Pub, streams.DefaultWindow)
	w.OnAck = func(i int, a *jetstream.PubAck) { b.Writes[i].Written(a.Sequence) }
	err = publishAll(ctx, w, len(b.Writes), func(i int) (*nats.Msg, error) {
		if i == len(b.Writes)/2 && i > 0 {
			failpoint.Hit("mid-keys", func() { _ = c.o.Pub.Conn().Flush() }) // half the keys sent
		}
		return b.Writes[i].Msg(writer)
	})
	if err != nil {
		if checkpoint.IsWrongLastSequence(err) {
			return Result{}, fmt.Errorf("write projection keys: %w (%v)", checkpoint.ErrFenced, err)
		}
		return Result{}, fmt.Errorf("write projection keys: %w", err)
	}
	failpoint.Hit("after-keys")

	// 3. The checkpoint, compare-and-set on its revision.
	wm := c.checkpoint.Watermark
	if b.Watermark.After(wm) {
		wm = b.Watermark
	}
	// The versions it writes, and the mark of the last switch, stay.
	cp, err := c.o.Checkpoints.Commit(ctx, c.o.Key, checkpoint.Checkpoint{
		Seq: b.LastSeq, Stream: c.o.Stream, Outputs: outSeqs, Watermark: wm, Definitions: c.o.Definitions, Partitions: c.o.Partitions,
		Buckets: c.checkpoint.Buckets, Rebuild: c.checkpoint.Rebuild, Switched: c.checkpoint.Switched,
	})
	if err != nil {
		return Result{}, err
	}
	c.checkpoint = cp
	failpoint.Hit("after-checkpoint")
	if c.published != nil && b.LastSeq >= c.publishedMax {
		c.published = nil // every read-back id is behind the checkpoint now
	}

	// 4. Acknowledge (AckAll: the last message acknowledges the batch). A lost ack only
	//    means a redelivery, which is skipped by sequence.
	if b.Ack != nil {
		_ = b.Ack.Ack()
	}
	return Result{Outputs: len(outputs), Refused: refused}, nil
}

// publishOutputs publishes the derived events and dead letters of a batch and calls onAck
// for each one stored. A derived event that JetStream refuses for the message itself (see
// [streams.Rejected]), or whose subject no stream captures, is dead-lettered in its place with
// the refusal as its reason and the same message id, so that the read-back after a crash
// finds one or the other, never both; a dead letter it refuses is sent again without payload
// and source headers ([bareDeadLetter]). Any other failure is returned: another try may
// succeed. It returns how many derived events were dead-lettered.
func (c *Committer) publishOutputs(ctx context.Context, outputs []*nats.Msg, onAck func(*jetstream.PubAck)) (int, error) {
	dlq := streams.DLQSubject(c.o.Pipeline)
	refused := 0
	for round := 0; len(outputs) > 0; round++ {
		var again []*nats.Msg
		w := streams.NewWindow(c.o.Pub, streams.DefaultWindow)
		w.OnAck = func(_ int, a *jetstream.PubAck) { onAck(a) }
		w.OnFail = func(_ int, m *nats.Msg, err error) bool {
			switch {
			case round > 1: // a bare dead letter refused: nothing more to leave out
				return false
			case m.Subject == dlq && streams.Rejected(err):
				again = append(again, bareDeadLetter(m, err))
			case m.Subject != dlq && (streams.Rejected(err) || streams.Uncaptured(ctx, c.o.Pub, m.Subject, err)):
				again = append(again, c.refusedOutput(m, err))
				refused++
			default:
				return false
			}
			c.o.Logger.Warn("message refused by JetStream: dead-lettered", "subject", m.Subject, "err", err)
			return true
		}
		err := publishAll(ctx, w, len(outputs), func(i int) (*nats.Msg, error) { return outputs[i], nil })
		if err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				return refused, fmt.Errorf("publish derived events: %w (no stream answered for a subject a stream captures: is it offline?)", err)
			}
			return refused, fmt.Errorf("publish derived events: %w", err)
		}
		outputs = again
	}
	return refused, nil
}

// refusedOutput is the dead letter of a derived event JetStream refused.
func (c *Committer) refusedOutput(m *nats.Msg, cause error) *nats.Msg {
	seq, _ := strconv.ParseUint(m.Header.Get(HeaderSourceSeq), 10, 64)
	return newDeadLetter(deadLetterOf{
		pipeline: c.o.Pipeline, seq: seq, subject: m.Subject, data: m.Data, header: m.Header,
		reason: "derived event refused: " + cause.Error(), emitted: m.Subject,
		id: m.Header.Get(jetstream.MsgIDHeader), limit: c.o.MaxPayload,
	})
}

// unpublished returns the outputs whose ids were not read back from an earlier run.
func (c *Committer) unpublished(outputs []*nats.Msg) []*nats.Msg {
	kept := make([]*nats.Msg, 0, len(outputs))
	for _, m := range outputs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if _, done := c.published[id]; done {
			delete(c.published, id)
			continue
		}
		kept = append(kept, m)
	}
	return kept
}

// publishAll publishes the n messages msg builds through w and waits for them all; it returns
// the first error, once the messages in flight are acknowledged or failed.
func publishAll(ctx context.Context, w *streams.Window, n int, msg func(i int) (*nats.Msg, error)) error {
	for i := range n {
		m, err := msg(i)
		if err == nil {
			err = w.Publish(ctx, m)
		}
		if err != nil {
			if ferr := w.Flush(ctx); ferr != nil {
				return ferr
			}
			return err
		}
	}
	return w.Flush(ctx)
}
