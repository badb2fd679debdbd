package streams

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultWindow is the default number of publishes a [Window] keeps in flight.
const DefaultWindow = 4096

// Window publishes asynchronously with at most a window of messages awaiting their
// acknowledgement: when the window is full, it waits for all of them before publishing more.
// That keeps the server busy without holding every message (a future keeps its message until
// it is acknowledged). A Window is used by one goroutine.
//
// The JetStream context's async limit (jetstream.WithPublishAsyncMaxPending) must be at least
// the window's size, and the context must not be shared with other publishers that could fill
// it: see [NewPublisher].
type Window struct {
	js   jetstream.JetStream
	size int
	// OnAck, when set, is called for every acknowledged message, with its index among the
	// messages published through the window (from 0) and its acknowledgement.
	OnAck func(i int, a *jetstream.PubAck)
	// OnFail, when set, is called for every message that failed, with its index, the message
	// and the error. When it returns true the failure is the caller's to
	// handle (a message JetStream refused, see [Rejected]) and is not an error of the window.
	OnFail func(i int, m *nats.Msg, err error) bool

	futs []inFlight
	next int // index of the next message published
}

// inFlight is a message awaiting its acknowledgement, with its index.
type inFlight struct {
	f jetstream.PubAckFuture
	i int
}

// NewWindow returns a window of size publishes (DefaultWindow when size <= 0).
func NewWindow(js jetstream.JetStream, size int) *Window {
	if size <= 0 {
		size = DefaultWindow
	}
	return &Window{js: js, size: size}
}

// NewPublisher returns a JetStream context on nc of its own for asynchronous publishes
// through windows of up to [DefaultWindow] messages: the async limit of a context is shared by
// everything that publishes through it, so two windows in flight on one context could stall
// each other (jetstream.ErrTooManyStalledMsgs). Call CleanupPublisher when done with it.
func NewPublisher(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*DefaultWindow), jetstream.WithPublishAsyncTimeout(asyncTimeout))
}

// Publish publishes m, first waiting for the window when it is full. An error of the wait or
// of the publish is returned once the messages in flight are acknowledged or failed. A message
// the client refuses to send (over the payload limit, a bad subject) goes to OnFail like one
// the server refused.
func (w *Window) Publish(ctx context.Context, m *nats.Msg) error {
	if len(w.futs) == w.size {
		if err := w.Flush(ctx); err != nil {
			return err
		}
	}
	i := w.next
	w.next++
	f, err := w.js.PublishMsgAsync(m)
	if err != nil {
		if w.OnFail != nil && w.OnFail(i, m, err) {
			return nil
		}
		if ferr := w.Flush(ctx); ferr != nil {
			return ferr
		}
		return fmt.Errorf("publish to %s: %w", m.Subject, err)
	}
	w.futs = append(w.futs, inFlight{f, i})
	return nil
}

// Flush waits for every message in flight and returns the first failure that OnFail did not
// take over.
func (w *Window) Flush(ctx context.Context) error {
	var first error
	for _, p := range w.futs {
		select {
		case a := <-p.f.Ok():
			if w.OnAck != nil {
				w.OnAck(p.i, a)
			}
		case err := <-p.f.Err():
			if w.OnFail != nil && w.OnFail(p.i, p.f.Msg(), err) {
				continue
			}
			if first == nil {
				first = fmt.Errorf("publish to %s: %w", p.f.Msg().Subject, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	clear(w.futs)
	w.futs = w.futs[:0]
	return first
}
