package streams_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/streams"
)

// TestWindow: every message is acknowledged once, in order, across windows; a message no
// stream takes fails the window it is in, after the others of that window are acknowledged.
func TestWindow(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w.>"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bad     int // index of the message sent where no stream listens; -1: none
		wantAck int // acknowledged messages
	}{
		{"all taken", -1, 10},
		{"one refused in the third window", 7, 8}, // windows of 3: 0-2, 3-5, then 6 and 8 acked
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := streams.NewWindow(js, 3)
			var acked []int
			w.OnAck = func(i int, _ *jetstream.PubAck) { acked = append(acked, i) }
			var err error
			for i := 0; i < 10 && err == nil; i++ {
				subject := "w.x"
				if i == tt.bad {
					subject = "nowhere"
				}
				err = w.Publish(ctx, &nats.Msg{Subject: subject, Data: []byte("x")})
			}
			if err == nil {
				err = w.Flush(ctx)
			}
			if (tt.bad >= 0) != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Errorf("err = %v, want no responders", err)
			}
			if len(acked) != tt.wantAck {
				t.Errorf("acknowledged %v, want %d", acked, tt.wantAck)
			}
			for j, i := range acked {
				if j > 0 && i <= acked[j-1] {
					t.Errorf("acknowledged out of order: %v", acked)
				}
			}
		})
	}
}
