package pipeline

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
)

type seqMsg struct {
	jetstream.Msg
	seq int
}

// TestSourceKeepsArrivalOrder: callbacks that wait on a full buffer append in the order they
// arrived, and none is left waiting (after a reconnect, the ordered consumer's next
// subscription can push while its previous one still waits with the message before).
func TestSourceKeepsArrivalOrder(t *testing.T) {
	s := newSource(nil, sourceOptions{cfg: config.Batch{Size: 2}, log: slog.New(slog.DiscardHandler)})
	s.push(seqMsg{seq: 1})
	s.push(seqMsg{seq: 2})
	for i := 3; i <= 6; i++ {
		go s.push(seqMsg{seq: i})
		natstest.Eventually(t, 10*time.Second, "the push to wait", func() bool { // push i waits before push i+1 starts
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.waiting == i-2
		})
	}
	var got []int
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 6 {
		if m, ok := s.next(); ok {
			got = append(got, m.(seqMsg).seq)
			continue
		}
		select {
		case <-s.ready:
		case <-time.After(time.Until(deadline)):
			t.Fatalf("stalled after %v", got)
		}
	}
	for i, seq := range got {
		if seq != i+1 {
			t.Fatalf("got %v, want 1 to 6 in order", got)
		}
	}
}
