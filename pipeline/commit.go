package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/streams"
)

// seal takes the batch's dirty keys out of the cache into b.writes, so that the next batch
// can be processed (and change the same keys) while b is committed.
func (r *Runner) seal(b *batch) {
	b.writes = r.store.Seal(b.writes)
}

// commit makes the effects of b durable, in the order documented in package checkpoint:
// derived events and dead letters, then the projection keys, then the checkpoint, then the
// acknowledgement. Any error leaves a state that a restart from the last checkpoint repairs.
// It runs on its own goroutine while the next batch is processed; it touches only b, the
// revisions of b's entries, the checkpoint and the read-back ids.
func (r *Runner) commit(ctx context.Context, b *batch) error {
	if b.lastSeq == 0 {
		return nil // only redeliveries
	}
	began := time.Now()
	js := r.o.JS

	// 1. Derived events and dead letters. Their ids are deterministic: if a crash makes us
	//    publish them again, JetStream drops the copies within the duplicate window, and
	//    a fold that finds its key already past the event skips it altogether.
	//    Those an earlier run published after the checkpoint were read back at start and
	//    are not sent again, so that even a restart past the duplicate window adds nothing.
	outputs := b.outputs
	if len(r.published) > 0 {
		outputs = r.unpublished(outputs)
	}
	outSeqs := maps.Clone(r.checkpoint.Outputs)
	refused, err := r.publishOutputs(ctx, outputs, func(a *jetstream.PubAck) {
		if outSeqs == nil {
			outSeqs = map[string]uint64{}
		}
		outSeqs[a.Stream] = max(outSeqs[a.Stream], a.Sequence)
	})
	if err != nil {
		return err
	}
	failpoint("after-outputs")

	// 2. Projection keys, each with the revision it was read at: a value written by anyone
	//    else since then fails the write (fencing).
	writer := r.o.Instance + "@" + strconv.FormatInt(time.Now().UnixNano(), 10)
	w := streams.NewWindow(r.pub, streams.DefaultWindow)
	w.OnAck = func(i int, a *jetstream.PubAck) { b.writes[i].Written(a.Sequence) }
	err = publishAll(ctx, w, len(b.writes), func(i int) (*nats.Msg, error) {
		if i == len(b.writes)/2 && i > 0 {
			failpoint("mid-keys", func() { _ = js.Conn().Flush() }) // half the keys sent
		}
		return b.writes[i].Msg(writer)
	})
	if err != nil {
		if checkpoint.IsWrongLastSequence(err) {
			return fmt.Errorf("write projection keys: %w (%v)", checkpoint.ErrFenced, err)
		}
		return fmt.Errorf("write projection keys: %w", err)
	}
	failpoint("after-keys")

	// 3. The checkpoint, compare-and-set on its revision.
	cp, err := r.cps.Commit(ctx, r.p.Name, checkpoint.Checkpoint{Seq: b.lastSeq, Stream: r.p.Config.Source.Stream, Outputs: outSeqs})
	if err != nil {
		return err
	}
	r.checkpoint = cp
	failpoint("after-checkpoint")
	if r.published != nil && b.lastSeq >= r.publishedMax {
		r.published = nil // every read-back id is behind the checkpoint now
	}

	// 4. Acknowledge (AckAll: the last message acknowledges the batch). A lost ack only
	//    means a redelivery, which is skipped by sequence.
	if b.ackMsg != nil {
		_ = b.ackMsg.Ack()
	}
	r.report(b, time.Since(began), len(outputs), refused)
	return nil
}

// report updates the metrics and calls OnCommit after a commit.
func (r *Runner) report(b *batch, d time.Duration, outputs, refused int) {
	name := r.p.Name
	r.m.Refused.WithLabelValues(name).Add(float64(refused))
	r.m.CommitDuration.WithLabelValues(name).Observe(d.Seconds())
	r.m.Checkpoint.WithLabelValues(name).Set(float64(b.lastSeq))
	r.m.Pending.WithLabelValues(name).Set(float64(b.pending))
	r.m.Emitted.WithLabelValues(name).Add(float64(b.emitted))
	for i, n := range b.counts {
		if n > 0 {
			r.m.Events.WithLabelValues(name, result(i).String()).Add(float64(n))
		}
	}
	if !b.oldest.IsZero() {
		r.m.Latency.WithLabelValues(name).Observe(time.Since(b.oldest).Seconds())
	}
	r.total += b.events()
	if r.o.OnCommit != nil {
		r.o.OnCommit(CommitInfo{Pipeline: name, Seq: b.lastSeq, Events: b.events(), Total: r.total,
			Pending: b.pending, Keys: len(b.writes), Outputs: outputs, Duration: d})
	}
}

// publishOutputs publishes the derived events and dead letters of a batch and calls onAck
// for each one stored. A derived event that JetStream refuses for the message itself (see
// [streams.Rejected]), or whose subject no stream captures, is dead-lettered in its place with
// the refusal as its reason and the same message id, so that the read-back after a crash
// finds one or the other, never both; a dead letter it refuses is sent again without payload
// and source headers ([bareDeadLetter]). Any other failure is returned: another try may
// succeed. It returns how many derived events were dead-lettered.
func (r *Runner) publishOutputs(ctx context.Context, outputs []*nats.Msg, onAck func(*jetstream.PubAck)) (int, error) {
	dlq := streams.DLQSubject(r.p.Name)
	refused := 0
	for round := 0; len(outputs) > 0; round++ {
		var again []*nats.Msg
		w := streams.NewWindow(r.pub, streams.DefaultWindow)
		w.OnAck = func(_ int, a *jetstream.PubAck) { onAck(a) }
		w.OnFail = func(_ int, m *nats.Msg, err error) bool {
			switch {
			case round > 1: // a bare dead letter refused: nothing more to leave out
				return false
			case m.Subject == dlq && streams.Rejected(err):
				again = append(again, bareDeadLetter(m, err))
			case m.Subject != dlq && (streams.Rejected(err) || streams.Uncaptured(ctx, r.pub, m.Subject, err)):
				again = append(again, r.refusedOutput(m, err))
				refused++
			default:
				return false
			}
			r.log.Warn("message refused by JetStream: dead-lettered", "subject", m.Subject, "err", err)
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
func (r *Runner) refusedOutput(m *nats.Msg, cause error) *nats.Msg {
	seq, _ := strconv.ParseUint(m.Header.Get(HeaderSourceSeq), 10, 64)
	return newDeadLetter(deadLetterOf{
		pipeline: r.p.Name, seq: seq, subject: m.Subject, data: m.Data, header: m.Header,
		reason: "derived event refused: " + cause.Error(), emitted: m.Subject,
		id: m.Header.Get(jetstream.MsgIDHeader), limit: r.maxPayload,
	})
}

// unpublished returns the outputs whose ids were not read back from an earlier run.
func (r *Runner) unpublished(outputs []*nats.Msg) []*nats.Msg {
	kept := make([]*nats.Msg, 0, len(outputs))
	for _, m := range outputs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if _, done := r.published[id]; done {
			delete(r.published, id)
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
