package commit

import (
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter headers.
const (
	// HeaderError is the reason an event was dead-lettered.
	HeaderError = "Jetfold-Error"
	// HeaderSourceSeq is the source stream sequence of the event (decimal).
	HeaderSourceSeq = "Jetfold-Source-Seq"
	// HeaderSourceSubject is the subject the event was published to.
	HeaderSourceSubject = "Jetfold-Source-Subject"
	// HeaderEmitSubject is, on the dead letter of a derived event that JetStream refused,
	// the subject it was emitted to.
	HeaderEmitSubject = "Jetfold-Emit-Subject"
	// HeaderTruncated is set when the payload was cut to fit the NATS payload limit: its value
	// is the original payload's size in bytes.
	HeaderTruncated = "Jetfold-Truncated"
	// HeaderDropped is set when the source's headers were left out because they were too
	// large: its value is their encoded size in bytes.
	HeaderDropped = "Jetfold-Headers-Dropped"
	// HeaderPrefix is prepended to the name of a source header that NATS or JetStream acts on
	// (any name that starts with "Nats-"), so that a dead letter keeps it without being
	// subject to it: Nats-Expected-Stream is kept as Jetfold-Nats-Expected-Stream.
	HeaderPrefix = "Jetfold-"
)

const (
	// maxReason bounds the reason header.
	maxReason = 1000
	// maxAppHeaders bounds the source headers a dead letter keeps (JetStream refuses headers
	// over 64 KiB, error 10097).
	maxAppHeaders = 32 * 1024
	// HeaderSlack is room left under the payload limit for what the client adds.
	HeaderSlack = 256
)

// MsgID returns the deterministic Nats-Msg-Id of the n-th derived event of source sequence seq.
func MsgID(pipeline string, seq uint64, n int) string {
	return pipeline + ":" + strconv.FormatUint(seq, 10) + ":" + strconv.Itoa(n)
}

// Unmade builds the dead letter of a derived event that an operator acting on time could not
// make (o.Err set): its reason, o.Data as payload, and the id of the derived event with
// ":dlq" appended, so that it is published once across crashes as the event would have been.
func Unmade(pipeline string, ev *event.Event, n int, o event.Output, limit int) *nats.Msg {
	id := outputID(pipeline, ev, n, o)
	return newDeadLetter(deadLetterOf{
		pipeline: pipeline, seq: ev.Seq, subject: ev.Subject, data: o.Data,
		reason: o.Err.Error(), emitted: o.Subject, id: id + ":dlq", limit: limit,
	})
}

// Derived builds the message of the n-th derived event of ev: CloudEvents binary mode, with
// the deterministic id [MsgID] (or "<pipeline>:" + o.ID when the operator gave one) as
// Nats-Msg-Id and ce-id.
func Derived(pipeline string, ev *event.Event, n int, o event.Output) *nats.Msg {
	id := outputID(pipeline, ev, n, o)
	h := make(nats.Header, 10) // the headers set below
	h.Set(jetstream.MsgIDHeader, id)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-type", o.Type)
	h.Set("ce-source", "jetfold/"+pipeline)
	key := o.Key
	if key == "" {
		key = ev.Key
	}
	if key != "" { // a tick (operators.Clock) has no key of its own
		h.Set("ce-subject", key)
	}
	h.Set("ce-time", ev.Time.UTC().Format(time.RFC3339Nano))
	h.Set("content-type", "application/json")
	h.Set(HeaderSourceSeq, strconv.FormatUint(ev.Seq, 10))
	return &nats.Msg{Subject: o.Subject, Data: o.Data, Header: h}
}

// outputID is the id of the n-th derived event of ev: [MsgID], or "<pipeline>:" + o.ID when
// the operator gave one (fired by time: an id of the operator's own).
func outputID(pipeline string, ev *event.Event, n int, o event.Output) string {
	if o.ID != "" {
		return pipeline + ":" + o.ID
	}
	return MsgID(pipeline, ev.Seq, n)
}

// DeadLetter builds the dead letter of source message m (stream sequence seq): its payload
// and headers plus the reason, with the deterministic id "<pipeline>:<seq>:dlq" so that a
// re-sent one is dropped, within limit (the server's payload limit). See [newDeadLetter].
func DeadLetter(pipeline string, m jetstream.Msg, seq uint64, cause error, limit int) *nats.Msg {
	return newDeadLetter(deadLetterOf{
		pipeline: pipeline, seq: seq, subject: m.Subject(), data: m.Data(), header: m.Headers(),
		reason: cause.Error(), id: pipeline + ":" + strconv.FormatUint(seq, 10) + ":dlq",
		limit: limit,
	})
}

// deadLetterOf is what a dead letter is made of.
type deadLetterOf struct {
	pipeline string
	seq      uint64
	// subject, data and header are the source message's (or the refused derived event's).
	subject string
	data    []byte
	header  nats.Header
	reason  string
	// emitted is the subject of a refused derived event; empty for a source event.
	emitted string
	// id is the dead letter's Nats-Msg-Id.
	id string
	// limit is the server's payload limit (headers and data).
	limit int
}

// newDeadLetter builds a dead letter on the pipeline's dead-letter subject. It keeps the
// source's application headers, and renames those JetStream would act on at publish time
// (every Nats-* header: expectations, TTL, rollup, batch, schedule, counter, trace) with
// [HeaderPrefix], as nats-server itself strips Nats-Expected-* and Nats-Batch-* when it
// copies messages into another stream. The dead letter fits the payload limit: source headers
// over maxAppHeaders are left out ([HeaderDropped]), and the payload is cut to what remains
// ([HeaderTruncated]).
func newDeadLetter(d deadLetterOf) *nats.Msg {
	h := nats.Header{}
	for k, v := range d.header {
		if isControl(k) {
			k = HeaderPrefix + k
		}
		h[k] = v
	}
	if size := headerSize(h); size > maxAppHeaders {
		h = nats.Header{HeaderDropped: {strconv.Itoa(size)}}
	}
	reason := d.reason
	if reason == "" {
		reason = "unknown error"
	}
	if len(reason) > maxReason { // a header, not a log
		reason = strings.ToValidUTF8(reason[:maxReason], "") + "..."
	}
	h.Set(HeaderError, oneLine(reason))
	h.Set(HeaderSourceSeq, strconv.FormatUint(d.seq, 10))
	if d.emitted != "" {
		h.Set(HeaderEmitSubject, d.emitted)
	} else {
		h.Set(HeaderSourceSubject, d.subject)
	}
	h.Set(jetstream.MsgIDHeader, d.id)
	data := d.data
	subject := streams.DLQSubject(d.pipeline)
	if room := d.limit - headerSize(h) - len(subject) - HeaderSlack; len(data) > room {
		h.Set(HeaderTruncated, strconv.Itoa(len(data)))
		data = data[:max(room-len(HeaderTruncated)-16, 0)]
	}
	return &nats.Msg{Subject: subject, Data: data, Header: h}
}

// bareDeadLetter is the fallback for a dead letter that JetStream refused: the reasons and the
// source's coordinates, without the payload or the source's headers.
func bareDeadLetter(dl *nats.Msg, refused error) *nats.Msg {
	h := nats.Header{}
	for _, k := range []string{HeaderSourceSeq, HeaderSourceSubject, HeaderEmitSubject, jetstream.MsgIDHeader} {
		if v := dl.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	reason := dl.Header.Get(HeaderError) + "; its dead letter was refused (" + refused.Error() + "): payload and headers left out"
	if len(reason) > 2*maxReason {
		reason = strings.ToValidUTF8(reason[:2*maxReason], "") + "..."
	}
	h.Set(HeaderError, oneLine(reason))
	h.Set(HeaderTruncated, strconv.Itoa(len(dl.Data)))
	return &nats.Msg{Subject: dl.Subject, Header: h}
}

// isControl tells whether NATS or JetStream may act on a header of this name: they all start
// with "Nats-" (the server compares names case-sensitively; jetfold renames any case).
func isControl(name string) bool {
	return len(name) >= 5 && strings.EqualFold(name[:5], "Nats-")
}

// headerSize is the size of h as the client encodes it ("NATS/1.0\r\n", "k: v\r\n" per
// value, "\r\n").
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// oneLine replaces line breaks, which a header value cannot hold.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
