package pipeline

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/batch"
	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/pipeline/source"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// unit is the unit of commit: the messages processed since the previous commit started (the
// [batch.Batch] the batch loop reads), their outputs, and (once sealed) the state writes to
// make. The messages themselves are not kept (their payloads would stay in memory until the
// commit), only the last one, whose acknowledgement covers the batch.
type unit struct {
	batch.Batch
	// outputs are derived events and dead letters, in source order (Batch.Outputs counts
	// them).
	outputs []*nats.Msg
	// writes are the projection keys to write, sealed when the commit starts.
	writes []state.Write
	// ackMsg is the message whose acknowledgement (AckAll) covers the batch.
	ackMsg  jetstream.Msg
	lastSeq uint64
	emitted int
	counts  [numResults]int // by result
	oldest  time.Time
	// watermark is the pipeline's watermark after the batch (zero: it did not move).
	watermark time.Time
}

// Reset empties b for the next batch (see [batch.Ptr]).
func (b *unit) Reset() {
	b.Batch = batch.Batch{}
	clear(b.outputs)
	b.outputs = b.outputs[:0]
	clear(b.writes)
	b.writes = b.writes[:0]
	b.ackMsg, b.lastSeq, b.emitted = nil, 0, 0
	b.counts = [numResults]int{}
	b.oldest, b.watermark = time.Time{}, time.Time{}
}

func (b *unit) events() int {
	n := 0
	for _, c := range b.counts {
		n += c
	}
	return n
}

// result is what became of a source event; its String is the `result` label of
// jetfold_events_total.
type result uint8

const (
	resultOK result = iota
	resultFiltered
	resultDeadLetter
	resultSkipped
	resultOutdated
	resultDuplicate
	numResults
)

func (r result) String() string {
	return [numResults]string{ResultOK, ResultFiltered, ResultDeadLetter, ResultSkipped, ResultOutdated, ResultDuplicate}[r]
}

// processMsg runs one message through the pipeline and adds its effects to b. An error is
// returned only for failures of NATS itself (errInfra), which restart the pipeline; a bad
// event follows on_error (dead letter, skip, or b.Stop for stop).
func (r *Runner) processMsg(b *unit, sm source.Msg) error {
	m, md := sm.Msg, sm.Meta
	if sm.Err != nil {
		return fmt.Errorf("message metadata: %w", sm.Err)
	}
	seq := md.Seq
	if r.o.StopAt > 0 && seq > r.o.StopAt {
		b.Stop = errStopAt // the batch ends before it, and the run with the batch
		return nil
	}
	if r.acks {
		// A durable consumer, new at every start: a delivery sequence that does not follow
		// the last one (from 1) means messages were lost in transit (a reconnect), which the
		// next AckAll would acknowledge unread.
		if md.Delivery != r.lastDelivery+1 {
			return fmt.Errorf("delivery %d after %d: messages lost in transit", md.Delivery, r.lastDelivery)
		}
		r.lastDelivery = md.Delivery
		if seq <= r.lastSeq {
			return nil // redelivered after the ack wait: already in this or an earlier batch
		}
	} else if seq <= r.lastSeq {
		// The ordered source delivers each sequence once, in order: anything else would be
		// skipped silently, so start again from the checkpoint.
		return fmt.Errorf("stream sequence %d delivered after %d", seq, r.lastSeq)
	}
	if b.oldest.IsZero() {
		b.oldest = md.Time
	}
	ev := &r.ev
	ev.Reset()
	kept, err := r.processOne(ev, b, m, seq, md.Time)
	if errors.Is(err, errForeign) {
		// Another partition's event: read past it, nothing of it is applied here.
	} else if err != nil {
		ev.Rollback() // its effects are dropped
		if errors.Is(err, errInfra) || errors.Is(err, errClock) {
			return err
		}
		switch r.p.Config.OnError {
		case "skip":
			b.counts[resultSkipped]++
			r.log.Warn("event skipped", "seq", seq, "err", err)
		case "stop":
			b.Stop = fmt.Errorf("%w: seq %d: %v", ErrStopped, seq, err)
			return nil // not taken into the batch: the checkpoint stays before it
		default:
			b.outputs = append(b.outputs, commit.DeadLetter(r.p.Name, m, seq, err, r.maxPayload))
			b.Outputs = len(b.outputs)
			b.counts[resultDeadLetter]++
			r.logFirst(err, seq, m.Subject())
		}
	} else if err := r.apply(ev, kept, b); err != nil {
		return err
	}
	r.store.Shrink()
	r.lastSeq = seq
	b.N++
	b.lastSeq, b.Pending = seq, md.Pending
	if r.acks {
		b.ackMsg = m
	}
	return nil
}

// markerReason is the header of the markers the server writes when it removes a subject's
// last message (stream SubjectDeleteMarkerTTL): they have no payload and are no events.
const markerReason = "Nats-Marker-Reason"

// maxKeyLen bounds a projection key as stored (NATS subjects travel in a control line of at
// most 4 KiB).
const maxKeyLen = 1024

// ErrTooLarge is returned for a derived event over the NATS payload limit; the event that
// emits it is dead-lettered.
var ErrTooLarge = errors.New("message over the NATS payload limit")

// ErrKeyTooLong is returned for a key whose stored form is over maxKeyLen bytes; the event is
// dead-lettered.
var ErrKeyTooLong = errors.New("key too long")

// ErrEmptyKey is returned for an event whose key is empty where a projection needs one; the
// event is dead-lettered.
var ErrEmptyKey = errors.New("empty key: a projection key must not be empty")

// errInfra marks errors of NATS itself (reading state), which restart the pipeline instead of
// dead-lettering the event.
var errInfra = state.ErrUnavailable

// processOne decodes one message and runs the operators on it. Its effects stay staged on ev.
// It returns false when an operator dropped the event: the operators after it did not run,
// and what those before it staged is applied (a fold before a filter stands). An error drops
// every effect of the event (it is a dead letter).
func (r *Runner) processOne(ev *event.Event, b *unit, m jetstream.Msg, seq uint64, ts time.Time) (bool, error) {
	ev.Seq, ev.Subject, ev.Time, ev.Data = seq, m.Subject(), ts, m.Data()
	if seq <= r.o.HydrateUntil {
		ev.Mode = event.Hydrated
	}
	ev.Header = m.Headers()
	if len(ev.Data) == 0 && len(ev.Header[markerReason]) > 0 {
		return false, nil // a subject-delete marker the server wrote, not an event: filtered
	}
	err := r.dec.Decode(ev, ev.Data, ev.Header)
	if err != nil {
		if !r.bySubject && !r.o.Partition.owns("", err, seq) {
			return false, errForeign
		}
		return false, err
	}
	x := &r.exec
	if ev.Type, err = x.EvalString(r.p.typeExpr, ev); err != nil {
		ev.TypeErr = fmt.Errorf("type: %w", err)
	}
	if ev.Key, err = x.EvalString(r.p.keyExpr, ev); err != nil {
		ev.KeyErr = fmt.Errorf("key: %w", err)
	}
	if part := r.o.Partition; r.bySubject {
		// The stream stored the event under this partition: it is this partition's.
		if ev.KeyErr == nil && !part.ownsKey(ev.Key) {
			return false, fmt.Errorf("%w: key %q is in partition %d, subject %s in %d", errWrongPartition, ev.Key, PartitionOf(ev.Key, part.Count), ev.Subject, part.Index)
		}
	} else if !part.owns(ev.Key, ev.KeyErr, seq) {
		return false, errForeign // before the watermark moves: it moves with this partition's events
	}
	if r.p.timeExpr != nil {
		if v, err := x.Eval(r.p.timeExpr, ev); err != nil {
			ev.TimeErr = fmt.Errorf("time: %w", err)
		} else if t, err := decode.Time(v); err != nil {
			ev.TimeErr = err
		} else {
			ev.Time = t
		}
	}
	if ev.TimeErr == nil && ev.Time.After(r.watermark) {
		// The watermark moves first: what came due closes or fires before the event is
		// applied (see operators.Clock).
		if err := r.advance(ev, b); err != nil {
			return false, err
		}
	}
	x.Watermark = r.watermark
	kept := true
	for _, op := range r.p.ops {
		keep, err := op.Process(x, ev)
		if err != nil {
			return false, err
		}
		if !keep {
			kept = false // the chain stops here; what the operators before staged stands
			break
		}
	}
	for _, o := range ev.Outputs {
		// The headers of derived: ids, the key, the type, fixed names and values.
		if n := len(o.Data) + 2*len(r.p.Name) + len(ev.Key) + len(o.Type) + 320; n > r.maxPayload-commit.HeaderSlack {
			return false, fmt.Errorf("derived event for %s: %d bytes with its headers, limit %d: %w", o.Subject, n, r.maxPayload-commit.HeaderSlack, ErrTooLarge)
		}
	}
	for i := range ev.Writes {
		w := &ev.Writes[i]
		if w.Key == "" {
			return false, fmt.Errorf("%s: %w", w.Projection, ErrEmptyKey)
		}
		if len(w.Key) > maxKeyLen/2 {
			if n := len(streams.EncodeKey(w.Key)); n > maxKeyLen {
				return false, fmt.Errorf("%w: %d bytes encoded, at most %d", ErrKeyTooLong, n, maxKeyLen)
			}
		}
		if w.Roomy {
			continue // the fold knows the size estimate did not change
		}
		roomy, err := state.CheckSize(w.State, r.valueLimit)
		if err != nil {
			r.mx.oversize.Inc()
			return false, fmt.Errorf("%s/%s: %w", w.Projection, w.Key, err)
		}
		w.Roomy = roomy
	}
	return kept, nil
}

// seal takes the batch's dirty keys out of the cache into b.writes, so that the next batch
// can be processed (and change the same keys) while b is committed.
func (r *Runner) seal(b *unit) { b.writes = r.store.Seal(b.writes) }

// advance moves the watermark to ev's time and lets the operators that act on event time
// (operators.Clock) stage what is due on a tick, applied at once, whatever becomes of ev. An
// error of theirs is errClock's, which restarts the pipeline from its checkpoint.
func (r *Runner) advance(ev *event.Event, b *unit) error {
	return r.advanceTo(b, ev.Time, ev.Seq, ev.Mode, ev.Subject)
}

// advanceTo moves the watermark to to, on a tick of sequence seq, mode and subject.
func (r *Runner) advanceTo(b *unit, to time.Time, seq uint64, mode event.Mode, subject string) error {
	from := r.watermark
	r.watermark = to
	b.watermark = to
	r.exec.Watermark = to
	if len(r.p.clocks) == 0 {
		return nil
	}
	t := &r.tick
	t.Reset()
	t.Seq, t.Time, t.Mode, t.Subject = seq, to, mode, subject
	for _, c := range r.p.clocks {
		if err := c.Advance(&r.exec, t, from, to); err != nil {
			t.Rollback()
			return fmt.Errorf("%w: advance the watermark to %s: %w", errClock, to.Format(time.RFC3339Nano), err)
		}
	}
	if len(t.Writes) == 0 && len(t.Outputs) == 0 {
		return nil // nothing came due (the common case: each Clock only compared)
	}
	if err := r.applyEffects(t, b); err != nil {
		return fmt.Errorf("%w: %w", errClock, err)
	}
	return nil
}

// errClock marks the failures of operators acting on event time, which restart the pipeline
// instead of dead-lettering the event that moved the watermark.
var errClock = errors.New("event-time operator failed")

// apply counts what became of an event that did not fail, and moves its staged effects into
// the cache and the batch: those of every operator it went through, also when one dropped it
// (kept false: a filter, a dedupe).
func (r *Runner) apply(ev *event.Event, kept bool, b *unit) error {
	switch {
	case ev.Duplicate: // dropped as a repeat (dedupe), or marked one and kept
		b.counts[resultDuplicate]++
	case !kept:
		b.counts[resultFiltered]++
	case ev.Outdated:
		b.counts[resultOutdated]++
	default:
		b.counts[resultOK]++
	}
	return r.applyEffects(ev, b)
}

// applyEffects moves the writes and derived events staged on ev into the cache and the batch.
func (r *Runner) applyEffects(ev *event.Event, b *unit) error {
	for _, w := range ev.Writes {
		if err := r.store.Apply(w); err != nil {
			return err
		}
	}
	for n, o := range ev.Outputs {
		if o.Err != nil { // an operator acting on time could not make it
			b.outputs = append(b.outputs, commit.Unmade(r.p.Name, ev, n, o, r.maxPayload))
			r.logFirst(o.Err, ev.Seq, o.Subject)
			continue
		}
		b.outputs = append(b.outputs, commit.Derived(r.p.Name, ev, n, o))
		b.emitted++
	}
	b.Outputs = len(b.outputs)
	return nil
}

// maxReasonKinds bounds the kinds of dead-letter reasons a runner remembers to log once each.
const maxReasonKinds = 64

// variable matches what differs between two reasons of one kind: quoted values and numbers.
var variable = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\d+`)

// logFirst logs the first dead letter of each kind of reason (its reason with quoted values
// and numbers left out), with its source sequence and subject, so that a pipeline that
// dead-letters every event says why once, not per event.
func (r *Runner) logFirst(cause error, seq uint64, subject string) {
	kind := variable.ReplaceAllString(cause.Error(), "_")
	if _, seen := r.reasons[kind]; seen || len(r.reasons) > maxReasonKinds {
		return
	}
	if r.reasons == nil {
		r.reasons = map[string]struct{}{}
	}
	r.reasons[kind] = struct{}{}
	if len(r.reasons) > maxReasonKinds {
		r.log.Warn("more kinds of dead letters than are logged: see processor dlq list", "logged", maxReasonKinds)
		return
	}
	r.log.Warn("dead letter (the first of this reason; later ones are not logged)", "reason", cause.Error(), "seq", seq, "subject", subject)
}
