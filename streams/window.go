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
type Window struct {
	js   jetstream.JetStream
	size int
	// OnAck, when set, is called for every acknowledged message, with its index among the
	// messages published through the window (from 0) and its acknowledgement.
	OnAck func(i int, a *jetstream.PubAck)

	futs []jetstream.PubAckFuture
	base int // index of futs[0]
}

// NewWindow returns a window of size publishes (DefaultWindow when size <= 0).
func NewWindow(js jetstream.JetStream, size int) *Window {
	if size <= 0 {
		size = DefaultWindow
	}
	return &Window{js: js, size: size}
}

// Publish publishes m, first waiting for the window when it is full. An error of the wait or
// of the publish is returned once the messages in flight are acknowledged or failed.
func (w *Window) Publish(ctx context.Context, m *nats.Msg) error {
	if len(w.futs) == w.size {
		if err := w.Flush(ctx); err != nil {
			return err
		}
	}
	f, err := w.js.PublishMsgAsync(m)
	if err != nil {
		if ferr := w.Flush(ctx); ferr != nil {
			return ferr
		}
		return fmt.Errorf("publish to %s: %w", m.Subject, err)
	}
	w.futs = append(w.futs, f)
	return nil
}

// Flush waits for every message in flight and returns the first failure.
func (w *Window) Flush(ctx context.Context) error {
	var first error
	for j, f := range w.futs {
		select {
		case a := <-f.Ok():
			if w.OnAck != nil {
				w.OnAck(w.base+j, a)
			}
		case err := <-f.Err():
			if first == nil {
				first = fmt.Errorf("publish to %s: %w", f.Msg().Subject, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.base += len(w.futs)
	clear(w.futs)
	w.futs = w.futs[:0]
	return first
}
