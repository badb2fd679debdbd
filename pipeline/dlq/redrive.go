package dlq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// RedriveOptions changes what [Redrive] does. The zero value republishes and deletes.
type RedriveOptions struct {
	// DryRun reports what would be published and deleted, and changes nothing.
	DryRun bool
	// Keep leaves the dead letters in their stream after their events are republished.
	Keep bool
	// Progress, when set, is called with each dead letter's result as soon as it is known,
	// in stream order, from the goroutine that called Redrive.
	Progress func(Result)
}

// Action is what [Redrive] did with one dead letter.
type Action string

// The actions of [Result].
const (
	// Redriven: the event was published and the target stream stored it.
	Redriven Action = "redriven"
	// Duplicate: the target stream already had the event's message id (an earlier redrive
	// of the same dead letter, within its duplicate window) and stored nothing new.
	Duplicate Action = "duplicate"
	// WouldRedrive: with DryRun, the event would be published.
	WouldRedrive Action = "would redrive"
	// Skipped: the dead letter does not hold the original event (Result.Err says why:
	// [ErrTruncated], [ErrHeadersDropped] or [ErrNoSubject]); it is left in place.
	Skipped Action = "skipped"
	// Failed: the event was refused (Result.Err): no stream captures its subject, or the
	// stream that does refused it. The dead letter is left in place.
	Failed Action = "failed"
)

// Result is what [Redrive] did with one dead letter.
type Result struct {
	// Letter is the dead letter.
	Letter Letter
	// Action is what was done; Err says why for Skipped and Failed, and holds a failed
	// delete for Redriven and Duplicate.
	Action Action
	Err    error
	// Subject, Header and MsgID are what the event was (or would be) published with.
	Subject string
	Header  nats.Header
	MsgID   string
	// Stream is the stream that stored the event, and StreamSeq its sequence there (for a
	// Duplicate, the sequence of the earlier copy). With DryRun, Stream is the stream that
	// captures Subject ("" when none does) and StreamSeq is 0.
	Stream    string
	StreamSeq uint64
	// Deleted tells that the dead letter was deleted (with DryRun: would be).
	Deleted bool
}

// Report counts what [Redrive] did.
type Report struct {
	// Selected is how many dead letters passed the filter.
	Selected int
	// Redriven is how many events were published and stored (with DryRun: would be),
	// Duplicates included.
	Redriven int
	// Duplicates is how many of Redriven the target stream already had.
	Duplicates int
	// Skipped counts the dead letters that do not hold the original event, by reason
	// ([ErrTruncated], [ErrHeadersDropped], [ErrNoSubject]).
	Skipped map[error]int
	// Failed is how many events were refused.
	Failed int
	// Deleted is how many dead letters were deleted (with DryRun: would be), and
	// DeleteFailed how many republished ones could not be.
	Deleted      int
	DeleteFailed int
	// DryRun tells that nothing was changed.
	DryRun bool
}

// SkippedTotal returns how many dead letters were skipped, for any reason.
func (r Report) SkippedTotal() int {
	n := 0
	for _, c := range r.Skipped {
		n += c
	}
	return n
}

func (r *Report) add(res Result) {
	switch res.Action {
	case Redriven, WouldRedrive:
		r.Redriven++
	case Duplicate:
		r.Redriven++
		r.Duplicates++
	case Skipped:
		if r.Skipped == nil {
			r.Skipped = map[error]int{}
		}
		r.Skipped[res.Err]++
	case Failed:
		r.Failed++
	}
	if res.Deleted {
		r.Deleted++
	} else if res.Err != nil && (res.Action == Redriven || res.Action == Duplicate) {
		r.DeleteFailed++
	}
}

// Redrive publishes the events of the pipeline's dead letters that pass f back to their
// original subjects ([Letter.Subject]), one at a time in stream order, with their payload
// and application headers ([Letter.AppHeader]) and the message id [RedriveID]. Once the
// target stream has acknowledged an event, its dead letter is deleted (unless o.Keep), so
// a dead letter is never deleted before its event is stored. A dead letter whose payload
// or headers were cut ([Letter.Truncated], [Letter.HeadersDropped]) is skipped and kept.
// Dead letters are read as they are redriven, up to the last one stored when Redrive
// starts: a redriven event that is dead-lettered again is not redriven again.
//
// An event the target stream refuses (no stream captures its subject, a stream limit, ...)
// is a Failed result and the others go on; a failed delete is counted in
// Report.DeleteFailed. Either makes Redrive return an error after the last dead letter. A
// connection error or the end of ctx stops it at once. In every case the Report counts
// what was done before the error.
func Redrive(ctx context.Context, js jetstream.JetStream, pipeline string, f Filter, o RedriveOptions) (Report, error) {
	r := &redriver{js: js, pipeline: pipeline, o: o, rep: Report{DryRun: o.DryRun}, captured: map[string]string{}}
	err := read(ctx, js, pipeline, f, func(l Letter) bool {
		r.rep.Selected++
		res, err := r.one(ctx, l)
		if err != nil {
			r.fatal = err
			return false
		}
		r.rep.add(res)
		if o.Progress != nil {
			o.Progress(res)
		}
		return f.Limit <= 0 || r.rep.Selected < f.Limit
	})
	switch {
	case r.fatal != nil:
		return r.rep, fmt.Errorf("redrive %s: %w", pipeline, r.fatal)
	case err != nil:
		return r.rep, fmt.Errorf("redrive %s: %w", pipeline, err)
	case r.rep.Failed+r.rep.DeleteFailed > 0:
		return r.rep, fmt.Errorf("redrive %s: %d of %d dead letters not redriven or not deleted; the first: %w",
			pipeline, r.rep.Failed+r.rep.DeleteFailed, r.rep.Selected, r.firstErr)
	}
	return r.rep, nil
}

// redriver is one [Redrive].
type redriver struct {
	js       jetstream.JetStream
	pipeline string
	o        RedriveOptions
	rep      Report
	// dlq is the stream dead letters are deleted from, once looked up.
	dlq jetstream.Stream
	// captured caches, in a dry run, the stream that captures each subject.
	captured map[string]string
	// firstErr is the first failed publish or delete; fatal is an error that stopped it.
	firstErr, fatal error
}

// one redrives l. It returns an error only for what must stop the redrive (the connection,
// the end of ctx); the other failures are in the Result.
func (r *redriver) one(ctx context.Context, l Letter) (Result, error) {
	res := Result{Letter: l, Subject: l.Subject(), MsgID: RedriveID(r.pipeline, l.Seq)}
	if why := l.redrivable(); why != nil {
		res.Action, res.Err = Skipped, why
		return res, nil
	}
	msg := &nats.Msg{Subject: res.Subject, Header: l.AppHeader(), Data: l.Data}
	msg.Header.Set(jetstream.MsgIDHeader, res.MsgID)
	res.Header = msg.Header
	if r.o.DryRun {
		res.Action, res.Deleted = WouldRedrive, !r.o.Keep
		name, ok := r.captured[res.Subject]
		if !ok {
			var err error
			if name, err = r.js.StreamNameBySubject(ctx, res.Subject); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return res, fmt.Errorf("stream of %s: %w", res.Subject, err)
			}
			r.captured[res.Subject] = name
		}
		res.Stream = name
		return res, nil
	}
	ack, err := r.js.PublishMsg(ctx, msg)
	if err != nil {
		if !refused(ctx, r.js, res.Subject, err) {
			return res, fmt.Errorf("dead letter %d to %s: %w", l.Seq, res.Subject, err)
		}
		res.Action, res.Err = Failed, fmt.Errorf("publish to %s: %w", res.Subject, err)
		r.firstErr = firstOf(r.firstErr, fmt.Errorf("dead letter %d: %w", l.Seq, res.Err))
		return res, nil
	}
	res.Action, res.Stream, res.StreamSeq = Redriven, ack.Stream, ack.Sequence
	if ack.Duplicate {
		res.Action = Duplicate
	}
	if r.o.Keep {
		return res, nil
	}
	if r.dlq == nil {
		if r.dlq, err = r.js.Stream(ctx, l.Stream); err != nil {
			r.dlq = nil
			res.Err = fmt.Errorf("delete from %s: %w", l.Stream, err)
		}
	}
	if r.dlq != nil {
		switch err := r.dlq.DeleteMsg(ctx, l.Seq); {
		case err == nil, errors.Is(err, jetstream.ErrMsgNotFound): // gone already: a concurrent redrive
			res.Deleted = true
		default:
			res.Err = fmt.Errorf("delete from %s: %w", l.Stream, err)
		}
	}
	if res.Err != nil {
		r.firstErr = firstOf(r.firstErr, fmt.Errorf("dead letter %d: %w", l.Seq, res.Err))
	}
	return res, nil
}

// firstOf returns first, or err when first is nil.
func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// refused tells whether a publish failed because of the message or its subject (an API
// error from the stream, or no stream capturing the subject), rather than the connection.
func refused(ctx context.Context, js jetstream.JetStream, subject string, err error) bool {
	var jerr jetstream.JetStreamError
	if errors.As(err, &jerr) && jerr.APIError() != nil {
		return true
	}
	return ctx.Err() == nil && streams.Uncaptured(ctx, js, subject, err)
}
