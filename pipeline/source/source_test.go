package source

import (
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

// bufferSource returns a source without a consumer: the tests below push messages themselves.
func bufferSource(size int) *Source {
	return newSource(nil, options{cfg: config.Batch{Size: size}, log: slog.New(slog.DiscardHandler)})
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

// waitingPushes waits until n pushes wait for room or their turn.
func waitingPushes(t *testing.T, s *Source, n int) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, fmt.Sprintf("%d pushes to wait", n), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waiting == n
	})
}

// TestSourcePushesInTurn: pushes that wait for room append in the order they came, as after a
// reset of the ordered consumer, when the callback of its new subscription arrives while the
// old one still waits with the message before.
func TestSourcePushesInTurn(t *testing.T) {
	s := bufferSource(1)
	s.push(ackMsg{seq: 1, delivery: 1})
	for i, seq := range []uint64{2, 3, 4} {
		go s.push(ackMsg{seq: seq, delivery: 1}) // each from a subscription of its own
		waitingPushes(t, s, i+1)
	}
	var got []uint64
	natstest.Eventually(t, 10*time.Second, "every message taken", func() bool {
		got = append(got, taken(s)...)
		return len(got) == 4
	})
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("took %v, want [1 2 3 4]", got)
	}
}

// TestSourceStopReleasesWaitingPush: a push waiting for room returns at Stop, without
// appending.
func TestSourceStopReleasesWaitingPush(t *testing.T) {
	s := bufferSource(1)
	s.push(ackMsg{seq: 1, delivery: 1})
	done := make(chan struct{})
	go func() {
		s.push(ackMsg{seq: 2, delivery: 2}) // waits: the buffer is full
		close(done)
	}()
	waitingPushes(t, s, 1)
	s.Stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the push still waits after Stop")
	}
	if got := taken(s); fmt.Sprint(got) != "[1]" {
		t.Errorf("took %v, want [1]", got)
	}
}
