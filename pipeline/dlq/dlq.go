package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/pipeline/commit"
	"github.com/jetfold/jetfold/streams"
)

// Letter is one dead letter as it is stored: its place in the dead-letter stream, what the
// pipeline recorded about it, and the original payload and headers.
type Letter struct {
	// Stream is the stream that holds the dead letter, and Seq its sequence there.
	Stream string
	Seq    uint64
	// Time is when the dead letter was stored.
	Time time.Time
	// Reason is why the event was dead-lettered (Jetfold-Error).
	Reason string
	// SourceSeq is the source event's sequence in the pipeline's source stream
	// (Jetfold-Source-Seq; 0 when missing).
	SourceSeq uint64
	// SourceSubject is the source event's subject (Jetfold-Source-Subject). It is empty for
	// a derived event JetStream refused, which has EmitSubject instead.
	SourceSubject string
	// EmitSubject is the subject of a derived event JetStream refused
	// (Jetfold-Emit-Subject); Data and the application headers are then the derived
	// event's.
	EmitSubject string
	// Truncated tells that the payload was cut to fit the payload limit (Jetfold-Truncated);
	// OriginalSize is then the original payload's size in bytes.
	Truncated    bool
	OriginalSize int
	// HeadersDropped, when positive, is the size in bytes of the source headers that were
	// left out because they were too large (Jetfold-Headers-Dropped).
	HeadersDropped int
	// Header holds every header of the dead letter as stored, and Data its payload.
	Header nats.Header
	Data   []byte
}

// Subject returns the subject the event was published to, where [Redrive] publishes it
// again: EmitSubject for a refused derived event, else SourceSubject.
func (l Letter) Subject() string {
	if l.EmitSubject != "" {
		return l.EmitSubject
	}
	return l.SourceSubject
}

// Derived tells whether the dead letter holds a derived event JetStream refused rather than
// a source event.
func (l Letter) Derived() bool { return l.EmitSubject != "" }

// AppHeader returns the original event's application headers: every header of the dead
// letter but those jetfold added or renamed (Jetfold-*, which include the source's Nats-*
// headers kept as Jetfold-Nats-*) and the dead letter's own Nats-* headers. The renamed
// Nats-* headers carry publish-time conditions (expected stream or sequence, message id,
// TTL, ...) that would fail, or drop the event, a second time. A derived event keeps its
// Jetfold-Source-Seq, which the pipeline publishes on every derived event.
func (l Letter) AppHeader() nats.Header {
	h := nats.Header{}
	for k, vs := range l.Header {
		if hasPrefixFold(k, commit.HeaderPrefix) || hasPrefixFold(k, "Nats-") {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	if l.Derived() {
		if v := l.Header.Get(commit.HeaderSourceSeq); v != "" {
			h.Set(commit.HeaderSourceSeq, v)
		}
	}
	return h
}

// redrivable returns why l cannot be redriven as the original event, or nil.
func (l Letter) redrivable() error {
	switch {
	case l.Truncated:
		return ErrTruncated
	case l.HeadersDropped > 0:
		return ErrHeadersDropped
	case l.Subject() == "":
		return ErrNoSubject
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// newLetter reads a dead letter's headers.
func newLetter(stream string, seq uint64, t time.Time, h nats.Header, data []byte) Letter {
	if h == nil {
		h = nats.Header{}
	}
	l := Letter{
		Stream: stream, Seq: seq, Time: t, Header: h, Data: data,
		Reason:        h.Get(commit.HeaderError),
		SourceSubject: h.Get(commit.HeaderSourceSubject),
		EmitSubject:   h.Get(commit.HeaderEmitSubject),
	}
	l.SourceSeq, _ = strconv.ParseUint(h.Get(commit.HeaderSourceSeq), 10, 64)
	if v := h.Values(commit.HeaderTruncated); len(v) > 0 {
		l.Truncated = true
		l.OriginalSize, _ = strconv.Atoi(v[0])
	}
	l.HeadersDropped, _ = strconv.Atoi(h.Get(commit.HeaderDropped))
	return l
}

// List returns the dead letters of the pipeline that pass f, in the order of the stream
// that holds them. A pipeline whose dead-letter subject no stream captures has none: List
// returns an empty slice and no error. Other errors come from JetStream, wrapped with the
// pipeline's name.
func List(ctx context.Context, js jetstream.JetStream, pipeline string, f Filter) ([]Letter, error) {
	var out []Letter
	err := read(ctx, js, pipeline, f, func(l Letter) bool {
		out = append(out, l)
		return f.Limit <= 0 || len(out) < f.Limit
	})
	if err != nil {
		return out, fmt.Errorf("dead letters of %s: %w", pipeline, err)
	}
	return out, nil
}

// Get returns the pipeline's dead letter at sequence seq of the stream that holds its dead
// letters. It returns an error wrapping [ErrNotFound] when there is none, including when
// that sequence holds another pipeline's dead letter.
func Get(ctx context.Context, js jetstream.JetStream, pipeline string, seq uint64) (Letter, error) {
	subject := streams.DLQSubject(pipeline)
	s, err := letterStream(ctx, js, pipeline)
	if err != nil {
		return Letter{}, fmt.Errorf("dead letter %d of %s: %w", seq, pipeline, err)
	}
	if s == nil {
		return Letter{}, fmt.Errorf("%w: pipeline %s has none (no stream captures %s)", ErrNotFound, pipeline, subject)
	}
	name := s.CachedInfo().Config.Name
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Letter{}, fmt.Errorf("%w: pipeline %s, sequence %d of stream %s", ErrNotFound, pipeline, seq, name)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("dead letter %d of %s: %w", seq, pipeline, err)
	}
	if m.Subject != subject {
		owner := "a message on " + m.Subject
		if other, ok := strings.CutPrefix(m.Subject, streams.DLQSubject("")); ok {
			owner = "a dead letter of pipeline " + other
		}
		return Letter{}, fmt.Errorf("%w: pipeline %s, sequence %d of stream %s (it is %s)", ErrNotFound, pipeline, seq, name, owner)
	}
	return newLetter(name, m.Sequence, m.Time, m.Header, m.Data), nil
}

// letterStream returns the stream that captures the pipeline's dead-letter subject, or nil
// when none does.
func letterStream(ctx context.Context, js jetstream.JetStream, pipeline string) (jetstream.Stream, error) {
	subject := streams.DLQSubject(pipeline)
	name, err := js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream of %s: %w", subject, err)
	}
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // deleted since
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

const (
	// fetchBatch is how many dead letters one pull asks for.
	fetchBatch = 256
	// fetchWait bounds a pull that finds fewer messages than it asked for; reading stops at
	// the message the server reports nothing pending after, so it is rarely waited for.
	fetchWait = time.Second
)

// read calls fn with each dead letter of the pipeline that passes f (its reason and
// sequences), in stream order, until fn returns false. It reads up to the stream's last
// sequence when it starts, so dead letters stored meanwhile (a redriven event that fails
// again) are not read.
func read(ctx context.Context, js jetstream.JetStream, pipeline string, f Filter, fn func(Letter) bool) error {
	s, err := letterStream(ctx, js, pipeline)
	if err != nil || s == nil {
		return err
	}
	info := s.CachedInfo()
	first, last := f.Seqs.bounds()
	first = max(first, info.State.FirstSeq)
	last = min(last, info.State.LastSeq)
	if info.State.Msgs == 0 || first > last {
		return nil
	}
	name := info.Config.Name
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.DLQSubject(pipeline)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    first,
	})
	if err != nil {
		return fmt.Errorf("read stream %s: %w", name, err)
	}
	defer dropConsumer(ctx, s, c)
	ci, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", name, err)
	}
	if ci.NumPending == 0 {
		return nil
	}
	for {
		b, err := c.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return fmt.Errorf("read stream %s: %w", name, err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read stream %s: %w", name, err)
			}
			seq := md.Sequence.Stream
			if seq > last {
				return nil
			}
			l := newLetter(name, seq, md.Timestamp, m.Headers(), m.Data())
			if f.match(l) && !fn(l) {
				return nil
			}
			if md.NumPending == 0 || seq == last {
				return nil
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read stream %s: %w", name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if n == 0 {
			return nil // nothing more: deleted while we read
		}
	}
}

// dropConsumer deletes the ordered consumer's server-side consumer, so that it does not
// linger for its inactive threshold. It is best effort: the server removes it anyway.
func dropConsumer(ctx context.Context, s jetstream.Stream, c jetstream.Consumer) {
	info := c.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = s.DeleteConsumer(ctx, info.Name)
}

// RedriveID returns the Nats-Msg-Id that [Redrive] gives the event of the pipeline's dead
// letter at sequence seq: redrive:<pipeline>:<seq>.
func RedriveID(pipeline string, seq uint64) string {
	return "redrive:" + pipeline + ":" + strconv.FormatUint(seq, 10)
}
