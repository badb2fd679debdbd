package source

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/internal/natstest"
)

func TestParseAckSubject(t *testing.T) {
	tests := []struct {
		subject string
		want    Meta
		ok      bool
	}{
		{"$JS.ACK.S.C.1.42.7.1700000000000000000.3", Meta{42, 7, 3, time.Unix(0, 1700000000000000000)}, true},
		{"$JS.ACK.dom.hash.S.C.2.43.8.1700000000000000001.0", Meta{43, 8, 0, time.Unix(0, 1700000000000000001)}, true},
		{"$JS.ACK._.hash.S.C.2.44.9.1700000000000000002.5.rand", Meta{44, 9, 5, time.Unix(0, 1700000000000000002)}, true},
		{"$JS.ACK._.hash.S.C.2.44.9.1700000000000000002.5.rand.more", Meta{44, 9, 5, time.Unix(0, 1700000000000000002)}, true},
		{"$JS.ACK.S.C.1.42.7.1700000000000000000", Meta{}, false},     // 6 tokens
		{"$JS.ACK.d.h.S.C.1.42.7.1700000000000000000", Meta{}, false}, // 8 tokens
		{"$JS.ACK.S.C.1.x.7.1.3", Meta{}, false},                      // not a number
		{"$JS.ACK.S.C.1.42.7.1.", Meta{}, false},                      // empty number
		{"$JS.ACK.S.C.1.42.7.1.99999999999999999999", Meta{}, false},  // 20 digits
		{"_INBOX.abc", Meta{}, false},
		{"", Meta{}, false},
	}
	for _, tt := range tests {
		got, ok := parseAckSubject(tt.subject)
		if ok != tt.ok || got.Seq != tt.want.Seq || got.Delivery != tt.want.Delivery || got.Pending != tt.want.Pending || !got.Time.Equal(tt.want.Time) {
			t.Errorf("parseAckSubject(%q) = %+v, %v; want %+v, %v", tt.subject, got, ok, tt.want, tt.ok)
		}
	}
}

// TestMetaOfMatchesJetStream reads real messages and compares with jetstream's own parse.
func TestMetaOfMatchesJetStream(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "M", Subjects: []string{"m.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := js.Publish(ctx, "m.x", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(5, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		want, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseAckSubject(m.Reply())
		if !ok || got.Seq != want.Sequence.Stream || got.Delivery != want.Sequence.Consumer || got.Pending != want.NumPending || !got.Time.Equal(want.Timestamp) {
			t.Errorf("%s: got %+v, %v; want seq %d, delivery %d, pending %d, time %s", m.Reply(), got, ok, want.Sequence.Stream, want.Sequence.Consumer, want.NumPending, want.Timestamp)
		}
	}
	if n != 5 {
		t.Fatalf("read %d messages, want 5", n)
	}
}
