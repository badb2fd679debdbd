package streams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

func TestRejected(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"expected stream", &jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, true},
		{"wrapped", fmt.Errorf("publish: %w", &jetstream.APIError{Code: 400, ErrorCode: 10166}), true},
		{"stream at its limits", &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, true},
		{"storage failure", &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "store closed"}, false},
		{"insufficient resources", &jetstream.APIError{Code: 503, ErrorCode: 10023}, false},
		{"stream offline", &jetstream.APIError{Code: 500, ErrorCode: 10118}, false},
		{"over the payload limit", nats.ErrMaxPayload, true},
		{"bad subject", nats.ErrBadSubject, true},
		{"bad header name", nats.ErrBadHeaderMsg, true},
		{"timeout", context.DeadlineExceeded, false},
		{"no responders", nats.ErrNoResponders, false},
		{"connection closed", nats.ErrConnectionClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := streams.Rejected(tt.err); got != tt.want {
				t.Errorf("Rejected(%v) = %t, want %t", tt.err, got, tt.want)
			}
		})
	}
}

// TestWindowOnFail: a message the server refuses, one the client refuses and one no stream
// captures reach OnFail with their indexes; those it takes over are no error of the window,
// and the indexes of the messages acknowledged after them stay those of their publishes.
func TestWindowOnFail(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.Server(t))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"}, MaxMsgs: 3, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	w := streams.NewWindow(js, 2)
	acked := map[int]bool{}
	failed := map[int]error{}
	w.OnAck = func(i int, _ *jetstream.PubAck) { acked[i] = true }
	w.OnFail = func(i int, m *nats.Msg, err error) bool {
		failed[i] = err
		return streams.Rejected(err) || streams.Uncaptured(ctx, js, m.Subject, err)
	}
	msgs := []*nats.Msg{
		{Subject: "w.a", Data: []byte("1")},
		{Subject: "w.a", Data: make([]byte, nc.MaxPayload()+1)}, // the client refuses it
		{Subject: "nowhere", Data: []byte("2")},                 // no stream captures it
		{Subject: "w.a", Data: []byte("3")},
		{Subject: "w.a", Data: []byte("4")},
		{Subject: "w.a", Data: []byte("5")}, // the stream is full
	}
	for _, m := range msgs {
		if err := w.Publish(ctx, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for i, want := range []bool{true, false, false, true, true, false} {
		if acked[i] != want || (failed[i] == nil) != want {
			t.Errorf("message %d: acknowledged %t, failed with %v", i, acked[i], failed[i])
		}
	}
	if !errors.Is(failed[1], nats.ErrMaxPayload) {
		t.Errorf("message 1 failed with %v, want %v", failed[1], nats.ErrMaxPayload)
	}
}
