package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/pipeline/source"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

// Errors of [Replay] and [ParseAt].
var (
	// ErrInvalidAt is returned by [ParseAt] for a position that is neither a sequence nor
	// an RFC3339 time, and by [Replay] for a sequence past the end of the stream.
	ErrInvalidAt = errors.New("invalid position")
	// ErrUnknownProjection is returned by [Replay] for a projection the pipeline does not
	// write.
	ErrUnknownProjection = errors.New("unknown projection")
	// ErrNoHistory is returned by [Replay] when the source stream no longer holds the
	// events the pipeline read: a stream whose limits removed its first events, one with
	// interest retention (it removes what is acknowledged), a pipeline that starts at
	// `new` (the position it was pinned to is not kept) without ReplayOptions.From.
	ErrNoHistory = errors.New("the history cannot be replayed")
	// ErrSubjectsRefused is returned by [Replay] for ReplayOptions.Subjects on a pipeline
	// whose operators make a key's state depend on the events of other keys.
	ErrSubjectsRefused = errors.New("a subject filter cannot be used with this pipeline")
)

// At is a position in a pipeline's source stream: a stream sequence, or an instant, which
// stands for the last sequence whose message time (when the stream stored it, not the
// pipeline's event time) is at or before it. The zero At is the end of the stream.
type At struct {
	Seq  uint64
	Time time.Time
}

// IsZero tells whether a is the end of the stream.
func (a At) IsZero() bool { return a.Seq == 0 && a.Time.IsZero() }

func (a At) String() string {
	switch {
	case a.Seq > 0:
		return strconv.FormatUint(a.Seq, 10)
	case !a.Time.IsZero():
		return a.Time.Format(time.RFC3339Nano)
	}
	return "end"
}

// digits matches a stream sequence.
var digits = regexp.MustCompile(`^[0-9]+$`)

// ParseAt parses a position: a stream sequence (1 or more) or an RFC3339 time, fractions of
// a second allowed (2026-03-01T12:00:00Z, 2026-03-01T13:00:00.5+01:00).
func ParseAt(s string) (At, error) {
	if digits.MatchString(s) {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return At{}, fmt.Errorf("%w %q: a stream sequence starts at 1", ErrInvalidAt, s)
		}
		return At{Seq: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return At{}, fmt.Errorf("%w %q: want a stream sequence (42) or an RFC3339 time (2026-03-01T12:00:00Z)", ErrInvalidAt, s)
	}
	return At{Time: t}, nil
}

// ReplayOptions configures [Replay].
type ReplayOptions struct {
	// Projection and Key are the state to follow: a projection the pipeline writes, and a
	// key of it (as a KV key of that projection, unencoded: a window's `<key>.<start ms>`).
	Projection, Key string
	// At is the last position applied (zero: the end of the stream when Replay starts).
	At At
	// Subjects, when set, are the only subjects read (within the pipeline's own
	// source.subjects): the caller promises they hold every event that writes Key. Events
	// of other keys then go unread, so it is refused ([ErrSubjectsRefused]) for a pipeline
	// whose operators make a key's state depend on them: a window, a timeout or a dedupe (the
	// watermark, and ids, are the pipeline's, not the key's), a lookup of a projection the
	// pipeline writes.
	Subjects []string
	// From, when set, is the first sequence read instead of the pipeline's source.start
	// (which, at `new`, Replay cannot know).
	From uint64
	// OnChange, when set, is called for each event that changed the key's value, in order;
	// returning false ends the replay there (ReplayResult.Stopped).
	OnChange func(Change) bool
}

// Change is an event that changed the value of the key [Replay] follows.
type Change struct {
	// Seq is the event's source sequence; Subject its subject.
	Seq     uint64
	Subject string
	// Time is the event time (the pipeline's `time:` expression, or the message time).
	Time time.Time
	// Type is the event's type (the `type:` expression).
	Type string
	// State is the key's value after the event, as its projection would hold it; nil when
	// the event deleted the key (a window past its retention, a timer that fired).
	State json.RawMessage
	// ByWatermark is set when the key changed as the event moved the watermark (a window
	// closed, a timer fired) rather than by the event itself.
	ByWatermark bool
}

// ReplayResult is what [Replay] found.
type ReplayResult struct {
	// State is the key's value at the position, as its projection would hold it; nil when
	// the key had none.
	State json.RawMessage
	// Seq is the last source sequence applied to the key (its Jetfold-Seq header) and Time the
	// newest event time applied (Jetfold-Time); zero without state.
	Seq  uint64
	Time time.Time
	// UpTo is the position replayed to: the last sequence applied.
	UpTo uint64
	// Read is the number of source events read and processed.
	Read int
	// Changes is the number of events that changed the key.
	Changes int
	// Stopped is set when OnChange ended the replay before UpTo.
	Stopped bool
	// Deleted is the number of messages deleted from the middle of the source stream
	// (interior deletes): a replay cannot read them, the pipeline may have.
	Deleted int
}

// replayBatch bounds the messages a replay's source holds at hand.
const replayBatch = 10_000

// Replay computes the state of one key of one of p's projections as it was just after a
// position of the source, by running the events up to there through p's own decoding,
// expressions and operators, exactly as a run does (processMsg), into a throwaway state in
// memory: it writes no projection, publishes no derived event and no dead letter, and
// changes no checkpoint. It reads the source from the pipeline's source.start (or
// o.From), with a consumer of its own that it deletes; every event of the stream is
// processed (a `key` operator, a lookup, the watermark may need those of other keys)
// unless o.Subjects narrows them. Its cost is that of a run over the same events without
// the commits, and its memory the states of every key those events write.
//
// What a run sees that a replay cannot: a lookup of another pipeline's projection reads
// it as it is now, the wall clock of `idle` does not move the watermark, and messages
// deleted from the stream since are missing.
func Replay(ctx context.Context, js jetstream.JetStream, p *Pipeline, o ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	pc := p.Config
	if !slices.Contains(p.Projections, o.Projection) {
		return res, fmt.Errorf("%w %q: pipeline %s writes %s", ErrUnknownProjection, o.Projection, p.Name, strings.Join(p.Projections, ", "))
	}
	if o.Key == "" {
		return res, errors.New("the key is empty: a projection holds no state for an empty key")
	}
	if len(o.Subjects) > 0 {
		if why := p.crossKey(); why != "" {
			return res, fmt.Errorf("%w: %s, so a key's state depends on the events of other keys; replay without a subject filter", ErrSubjectsRefused, why)
		}
	}
	stream, err := js.Stream(ctx, pc.Source.Stream)
	if err != nil {
		return res, fmt.Errorf("source stream %s: %w", pc.Source.Stream, err)
	}
	info := stream.CachedInfo()
	if r := info.Config.Retention; r != jetstream.LimitsPolicy {
		return res, fmt.Errorf("%w: stream %s has %s retention, which removes the events its consumers acknowledged", ErrNoHistory, pc.Source.Stream, r)
	}
	st := info.State
	res.Deleted = st.NumDeleted
	switch {
	case o.At.Seq > st.LastSeq:
		return res, fmt.Errorf("%w %d: stream %s ends at sequence %d", ErrInvalidAt, o.At.Seq, pc.Source.Stream, st.LastSeq)
	case o.At.Seq > 0:
		res.UpTo = o.At.Seq
	case !o.At.Time.IsZero():
		if res.UpTo, err = lastBefore(ctx, stream, o.At.Time); err != nil {
			return res, err
		}
	default:
		res.UpTo = st.LastSeq
	}
	start := p.Start
	switch {
	case o.From > 0:
		start = config.StartPos{Kind: config.StartSeq, Seq: o.From}
	case start.Kind == config.StartNew:
		return res, fmt.Errorf("%w: pipeline %s starts at `new`, the end of the stream at its first start, which is not kept: give the first sequence it read (--from)", ErrNoHistory, p.Name)
	case start.Kind == config.StartAll:
		start = config.StartPos{Kind: config.StartSeq, Seq: 1}
	}
	if start.Kind == config.StartSeq {
		if start.Seq > res.UpTo {
			return res, nil // the pipeline reads nothing up to there
		}
		first := st.FirstSeq // of the messages the stream holds; after them when it holds none
		if st.Msgs == 0 {
			first = st.LastSeq + 1
		}
		if start.Seq < first && st.LastSeq > 0 {
			return res, fmt.Errorf("%w: stream %s begins at sequence %d, and the pipeline read from %d: the stream's limits (or a purge) removed the events before",
				ErrNoHistory, pc.Source.Stream, first, start.Seq)
		}
	}
	if res.UpTo == 0 {
		return res, nil // nothing at that point
	}

	// A partitioned pipeline replays as it runs: a runner per partition, each with its own
	// operators and watermark, reading past the others' events.
	var rs []*Runner
	defer func() {
		for _, r := range rs {
			r.store.Close()
		}
	}()
	runs, err := partRuns(p)
	if err != nil {
		return res, err
	}
	for _, u := range runs {
		r, err := newReplayer(ctx, js, u.p, u.part)
		if err != nil {
			return res, err
		}
		rs = append(rs, r)
	}
	subjects, within := pc.Source.Subjects, []string(nil)
	if len(o.Subjects) > 0 {
		subjects, within = o.Subjects, pc.Source.Subjects // the pipeline's own filter, checked here
	}
	src, err := source.Open(ctx, stream, source.Options{
		Pipeline: p.Name, Subjects: subjects, Initial: true, Start: start,
		Batch: config.Batch{Size: replayBatch}, Conn: js.Conn(), ReadOnly: true,
	})
	if err != nil {
		return res, err
	}
	if src.Pending() == 0 {
		src.Discard()
		return res, nil
	}
	if err := src.Start(); err != nil {
		src.Discard()
		return res, err
	}
	defer src.Stop()

	bs := make([]*unit, len(rs))
	for i := range bs {
		bs[i] = &unit{}
	}
	var last []byte // the key's value so far (nil: none)
	var buf []byte
	for {
		m, ok := src.Next()
		if !ok {
			select {
			case <-src.Ready():
			case err := <-src.Errs():
				return res, fmt.Errorf("read %s: %w", pc.Source.Stream, err)
			case <-ctx.Done():
				return res, ctx.Err()
			}
			continue
		}
		if m.Err != nil {
			return res, fmt.Errorf("message metadata: %w", m.Err)
		}
		seq := m.Meta.Seq
		if seq > res.UpTo {
			break
		}
		if within == nil || matchesAny(within, m.Msg.Subject()) {
			res.Read++
			for i, r := range rs {
				b := bs[i]
				counts := b.counts
				if err := r.processMsg(b, m); err != nil {
					return res, fmt.Errorf("seq %d: %w", seq, err)
				}
				if b.Stop != nil {
					return res, fmt.Errorf("the pipeline stops at this event, and never applies the events after it: %w", b.Stop)
				}
				clear(b.outputs) // derived events and dead letters are not published
				b.outputs = b.outputs[:0]
				if e, ok := r.store.Peek(o.Projection, o.Key); ok && e.Seq == seq {
					res.Seq, res.Time = e.Seq, e.Time
					var now []byte
					if e.State != nil {
						if buf, err = e.State.AppendJSON(buf[:0]); err != nil {
							return res, fmt.Errorf("seq %d: encode %s/%s: %w", seq, o.Projection, o.Key, err)
						}
						now = buf
					}
					if (now == nil) != (last == nil) || !bytes.Equal(now, last) {
						last = bytes.Clone(now)
						res.Changes++
						if o.OnChange != nil {
							failed := b.counts[resultDeadLetter] != counts[resultDeadLetter] || b.counts[resultSkipped] != counts[resultSkipped]
							c := Change{Seq: seq, Subject: m.Msg.Subject(), Time: r.ev.Time.UTC(), Type: strings.Clone(r.ev.Type),
								State: last, ByWatermark: failed || !wrote(&r.ev, o.Projection, o.Key)}
							if !o.OnChange(c) {
								res.Stopped = true
							}
						}
					}
				}
			}
		}
		if res.Stopped || seq >= res.UpTo || m.Meta.Pending == 0 {
			break
		}
	}
	res.State = last
	if last == nil {
		res.Seq, res.Time = 0, time.Time{}
	}
	return res, nil
}

// wrote tells whether ev staged a write of proj/key.
func wrote(ev *event.Event, proj, key string) bool {
	for i := range ev.Writes {
		if ev.Writes[i].Projection == proj && ev.Writes[i].Key == key {
			return true
		}
	}
	return false
}

// newReplayer returns a runner of p over a state in memory, started as a run from an empty
// checkpoint is.
func newReplayer(ctx context.Context, js jetstream.JetStream, p *Pipeline, part Partition) (*Runner, error) {
	r := NewRunner(p, Options{JS: js, Partition: part})
	r.store = state.New(state.Options{MaxKeys: p.Config.Cache.MaxKeys, Shapes: p.shapes, InPlace: p.inPlace, Memory: true})
	r.store.Connect(js) // lookups of other pipelines' projections
	r.exec = operators.Exec{Ctx: ctx, Store: r.store}
	if part.partitioned() {
		r.exec.Owns = part.ownsKey
	}
	r.dec = decode.New(p.Config.Decode, p.layout, nil)
	r.maxPayload = int(js.Conn().MaxPayload())
	// The projections' own limits, read where their buckets exist (nothing is created).
	var sizes []int32
	for _, proj := range p.Projections {
		bucket, err := checkpoint.CurrentBucket(ctx, js, proj)
		if err != nil {
			return nil, err
		}
		s, err := js.Stream(ctx, streams.KVStream(bucket))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("projection %s: %w", proj, err)
		}
		sizes = append(sizes, s.CachedInfo().Config.MaxMsgSize)
	}
	r.valueLimit = state.ValueLimit(r.maxPayload, sizes...)
	for _, st := range p.starters {
		if err := st.Start(&r.exec); err != nil {
			r.store.Close()
			return nil, fmt.Errorf("start operators: %w", err)
		}
	}
	return r, nil
}

// lastBefore returns the last sequence of stream whose message time is at or before t (0:
// none), as the server finds the first one after it: a consumer starting at t + 1 ns, made
// and deleted at once, reports where it starts. The server's search assumes message times
// that do not go back, as a stream's do unless the server's clock went back.
func lastBefore(ctx context.Context, stream jetstream.Stream, t time.Time) (uint64, error) {
	after := t.Add(time.Nanosecond)
	c, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &after,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return 0, fmt.Errorf("find the position at %s: %w", t.Format(time.RFC3339Nano), err)
	}
	info := c.CachedInfo()
	if err := stream.DeleteConsumer(context.WithoutCancel(ctx), info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, fmt.Errorf("delete consumer %s: %w", info.Name, err)
	}
	return info.Delivered.Stream, nil
}

// crossKey tells why the state of a key of p may depend on events that do not write it:
// the operator that makes it so ("": none does, as far as jetfold's own operators go).
func (p *Pipeline) crossKey() string {
	for j, op := range p.ops {
		name, _, _ := single(p.Config.Operators[j])
		if _, ok := op.(operators.Clock); ok {
			return fmt.Sprintf("operator %d (%s) acts on the watermark, which every event moves", j+1, name)
		}
		if _, ok := op.(operators.Claimer); ok {
			return fmt.Sprintf("operator %d (%s) decides on what the pipeline saw of every key", j+1, name)
		}
		if rd, ok := op.(operators.Reader); ok {
			for _, proj := range rd.Reads() {
				if slices.Contains(p.Projections, proj) {
					return fmt.Sprintf("operator %d (%s) reads projection %s, which the pipeline writes for other keys", j+1, name, proj)
				}
			}
		}
	}
	return ""
}

// matchesAny tells whether subject matches one of filters (none: every subject).
func matchesAny(filters []string, subject string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatches tells whether subject matches the NATS subject filter: `*` is one token,
// a last `>` one or more.
func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		if ft == ">" && !fmore {
			return true
		}
		st, srest, smore := strings.Cut(subject, ".")
		if ft != "*" && ft != st {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}
