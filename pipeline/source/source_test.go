package source

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
)

// ackMsg is a message with an acknowledgement subject, as a consumer delivers it.
type ackMsg struct {
	jetstream.Msg
	seq, delivery uint64
}

func (m ackMsg) Reply() string {
	return fmt.Sprintf("$JS.ACK.S.C.1.%d.%d.1700000000000000000.0", m.seq, m.delivery)
}

// orderedSource returns a source that keeps its consumer ordered, without one: the tests
// below push messages themselves, and read the requests to recreate it from s.resets.
func orderedSource(size int) *Source {
	reopen := func(context.Context, int, uint64) (jetstream.Consumer, error) { return nil, nil }
	return newSource(nil, options{cfg: config.Batch{Size: size}, log: slog.New(slog.DiscardHandler), reopen: reopen})
}

// taken returns the stream sequences of the messages at hand.
func taken(s *Source) []uint64 {
	var seqs []uint64
	for {
		m, ok := s.Next()
		if !ok {
			return seqs
		}
		seqs = append(seqs, m.Meta.Seq)
	}
}

// TestSourceGapRecreatesConsumer: a gap in delivery sequences drops the message, asks for the
// consumer to be recreated after the last message taken, and drops what the old subscription
// still delivers; the new one's messages are taken from delivery 1.
func TestSourceGapRecreatesConsumer(t *testing.T) {
	s := orderedSource(100)
	s.push(0, ackMsg{seq: 10, delivery: 1})
	s.push(0, ackMsg{seq: 12, delivery: 2}) // a filtered stream skips sequences: fine
	s.push(0, ackMsg{seq: 13, delivery: 4}) // delivery 3 was lost
	select {
	case <-s.resets:
	default:
		t.Fatal("a gap in delivery sequences did not ask for the consumer to be recreated")
	}
	if s.serial != 1 || s.after != 13 {
		t.Fatalf("serial %d, next sequence %d: want 1 and 13", s.serial, s.after)
	}
	s.push(0, ackMsg{seq: 14, delivery: 5}) // the old subscription, still delivering
	s.push(1, ackMsg{seq: 13, delivery: 1}) // the new one, from the last message taken
	if got := taken(s); fmt.Sprint(got) != "[10 12 13]" {
		t.Errorf("took %v, want [10 12 13]", got)
	}
}

// TestSourceWaitingPushOfReplacedSubscription: a push waiting for room when its subscription
// is replaced returns without appending, and does not hold up the new subscription.
func TestSourceWaitingPushOfReplacedSubscription(t *testing.T) {
	s := orderedSource(1)
	s.push(0, ackMsg{seq: 1, delivery: 1})
	done := make(chan struct{})
	go func() {
		s.push(0, ackMsg{seq: 2, delivery: 2}) // waits: the buffer is full
		close(done)
	}()
	natstest.Eventually(t, 10*time.Second, "the push to wait", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waiting == 1
	})
	s.mu.Lock()
	s.resetLocked()
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the push of the replaced subscription still waits")
	}
	if got := taken(s); fmt.Sprint(got) != "[1]" {
		t.Fatalf("took %v, want [1]", got)
	}
	s.push(1, ackMsg{seq: 2, delivery: 1})
	if got := taken(s); fmt.Sprint(got) != "[2]" {
		t.Errorf("took %v from the new subscription, want [2]", got)
	}
}
