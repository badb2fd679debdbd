package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/streams"
)

// commit makes the effects of b durable, in the order documented in package checkpoint:
// derived events and dead letters, then dirty projection keys, then the checkpoint, then the
// acknowledgement. Any error leaves a state that a restart from the last checkpoint repairs.
func (r *Runner) commit(ctx context.Context, b *batch) error {
	if b.lastSeq == 0 {
		return nil // only redeliveries
	}
	began := time.Now()
	js := r.o.JS
	futs := make([]jetstream.PubAckFuture, 0, max(len(b.outputs), len(r.cache.dirty)))

	// 1. Derived events and dead letters. Their ids are deterministic: if a crash makes us
	//    publish them again, JetStream drops the copies within the duplicate window, and
	//    a fold that finds its key already past the event skips it altogether.
	//    Those an earlier run published after the checkpoint were read back at start and
	//    are not sent again, so that even a restart past the duplicate window adds nothing.
	outputs := b.outputs
	if len(r.published) > 0 {
		outputs = r.unpublished(outputs)
	}
	for _, m := range outputs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futs = append(futs, f)
	}
	acks, err := await(ctx, futs)
	if err != nil {
		return fmt.Errorf("publish derived events: %w", err)
	}
	failpoint("after-outputs")
	outSeqs := maps.Clone(r.checkpoint.Outputs)
	for _, a := range acks {
		if outSeqs == nil {
			outSeqs = map[string]uint64{}
		}
		outSeqs[a.Stream] = max(outSeqs[a.Stream], a.Sequence)
	}

	// 2. Projection keys, each with the revision it was read at: a value written by anyone
	//    else since then fails the write (fencing).
	futs = futs[:0]
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, e := range r.cache.dirty {
		data, err := json.Marshal(e.State)
		if err != nil {
			return fmt.Errorf("encode %s/%s: %w", e.proj, e.key, err)
		}
		h := nats.Header{}
		h[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(e.rev, 10)}
		h[HeaderSeq] = []string{strconv.FormatUint(e.Seq, 10)}
		if !e.Time.IsZero() {
			h[HeaderTime] = []string{e.Time.UTC().Format(time.RFC3339Nano)}
		}
		h[HeaderWriter] = []string{r.o.Instance + "@" + now}
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: streams.KVSubject(e.proj, streams.EncodeKey(e.key)), Data: data, Header: h})
		if err != nil {
			return fmt.Errorf("write %s/%s: %w", e.proj, e.key, err)
		}
		futs = append(futs, f)
		if len(futs) == len(r.cache.dirty)/2 {
			failpoint("mid-keys", func() { _ = js.Conn().Flush() }) // half the keys sent
		}
	}
	acks, err = await(ctx, futs)
	for i, a := range acks {
		if a != nil {
			r.cache.dirty[i].rev = a.Sequence
		}
	}
	if err != nil {
		if checkpoint.IsWrongLastSequence(err) {
			return fmt.Errorf("write projection keys: %w (%v)", checkpoint.ErrFenced, err)
		}
		return fmt.Errorf("write projection keys: %w", err)
	}
	keys := len(r.cache.dirty)
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
	if b.upto > 0 {
		_ = b.msgs[b.upto-1].Ack()
	}
	r.cache.clean()

	d := time.Since(began)
	name := r.p.Name
	r.m.CommitDuration.WithLabelValues(name).Observe(d.Seconds())
	r.m.Checkpoint.WithLabelValues(name).Set(float64(b.lastSeq))
	r.m.Pending.WithLabelValues(name).Set(float64(b.pending))
	r.m.StateKeys.WithLabelValues(name).Set(float64(r.cache.len()))
	r.m.Emitted.WithLabelValues(name).Add(float64(b.emitted))
	for i, n := range b.counts {
		if n > 0 {
			r.m.Events.WithLabelValues(name, results[i]).Add(float64(n))
		}
	}
	if !b.oldest.IsZero() {
		r.m.Latency.WithLabelValues(name).Observe(time.Since(b.oldest).Seconds())
	}
	events := 0
	for _, n := range b.counts {
		events += n
	}
	r.total += events
	if r.o.OnCommit != nil {
		r.o.OnCommit(CommitInfo{Pipeline: name, Seq: b.lastSeq, Events: events, Total: r.total,
			Pending: b.pending, Keys: keys, Outputs: len(b.outputs), Duration: d})
	}
	return nil
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

// await waits for every future and returns the acks in order (nil where it failed) and the
// first error.
func await(ctx context.Context, futs []jetstream.PubAckFuture) ([]*jetstream.PubAck, error) {
	acks := make([]*jetstream.PubAck, len(futs))
	var first error
	for i, f := range futs {
		select {
		case a := <-f.Ok():
			acks[i] = a
		case err := <-f.Err():
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			if first == nil {
				first = ctx.Err()
			}
			return acks, first
		}
	}
	return acks, first
}
