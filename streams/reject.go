package streams

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// asyncTimeout bounds the wait for the acknowledgement of an asynchronous publish.
const asyncTimeout = 10 * time.Second

// Rejected tells whether err is JetStream refusing a published message for the message itself
// (its headers, its size, the stream's limits with discard new, an expectation that does not
// hold), so that sending the same message again would fail the same way. Connection errors,
// timeouts and a stream that is unavailable for a while are not rejections: another try can
// succeed.
//
// The client itself refuses a message over the payload limit, with an invalid subject, or with
// a header name it cannot send (a source message's, copied into a dead letter).
// JetStream answers a refusal of the message with code 400 (bad request), and a stream at its
// limits with error 10077 ("maximum messages exceeded", "maximum bytes exceeded", "maximum
// messages per subject exceeded"), which it also uses for storage failures that may pass.
func Rejected(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrBadHeaderMsg) {
		return true // refused by the client before sending
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch {
	case api.Code == 400:
		return true
	case api.ErrorCode == jetstream.ErrorCode(10077): // JSStreamStoreFailedF
		return strings.Contains(api.Description, "exceeded")
	}
	return false
}

// Uncaptured tells whether a publish to subject failed with err because no stream captures
// the subject (rather than because the stream that does was unreachable for a moment); it asks
// the server which stream captures subject when err says no stream answered.
func Uncaptured(ctx context.Context, js jetstream.JetStream, subject string, err error) bool {
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		return false
	}
	_, lerr := js.StreamNameBySubject(ctx, subject)
	return errors.Is(lerr, jetstream.ErrStreamNotFound)
}
