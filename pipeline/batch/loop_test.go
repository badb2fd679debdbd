package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline/source"
)

// fakeFeed hands the loop messages the test pushes.
type fakeFeed struct {
	mu    sync.Mutex
	msgs  []source.Msg
	ready chan struct{}
	errs  chan error
}

func newFakeFeed() *fakeFeed {
	return &fakeFeed{ready: make(chan struct{}, 1), errs: make(chan error, 1)}
}

// push adds messages of stream sequences from..to, each saying that last-seq remain after it
// (the stream's end is last; 0: none remains after any, as while following).
func (f *fakeFeed) push(from, to, last uint64) {
	f.mu.Lock()
	for seq := from; seq <= to; seq++ {
		m := source.Msg{Meta: source.Meta{Seq: seq}}
		if last > seq {
			m.Meta.Pending = last - seq
		}
		f.msgs = append(f.msgs, m)
	}
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

func (f *fakeFeed) Next() (source.Msg, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) == 0 {
		return source.Msg{}, false
	}
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	return m, true
}

func (f *fakeFeed) AtHand(int) []source.Msg { return nil }
func (f *fakeFeed) Ready() <-chan struct{}  { return f.ready }
func (f *fakeFeed) Errs() <-chan error      { return f.errs }
func (f *fakeFeed) Empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs) == 0
}

// fakeBatch is a batch of fakeStage.
type fakeBatch struct {
	Batch
	lastSeq uint64
}

func (b *fakeBatch) Reset() { *b = fakeBatch{} }

// fakeStage processes by counting, and commits each batch when the test lets it (gate).
type fakeStage struct {
	mu        sync.Mutex
	first     map[*fakeBatch]uint64 // the first sequence of the batch in hand
	commits   []string              // "first-last" per commit, in order
	processed []uint64              // sequences, in order
	gate      chan struct{}         // a commit ends when it receives from gate
	atEnd     bool                  // stop: end
	inflight  int
	most      int // most commits in flight at once
	quiets    int // calls of Quiet
	ticks     int // Quiet stages effects on its first this many calls
}

func newFakeStage(atEnd bool) *fakeStage {
	return &fakeStage{first: map[*fakeBatch]uint64{}, gate: make(chan struct{}, 100), atEnd: atEnd}
}

func (s *fakeStage) Process(b *fakeBatch, m source.Msg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.N == 0 {
		s.first[b] = m.Meta.Seq
	}
	b.N++
	b.lastSeq, b.Pending = m.Meta.Seq, m.Meta.Pending
	s.processed = append(s.processed, m.Meta.Seq)
	return nil
}

func (s *fakeStage) Over() bool               { return false }
func (s *fakeStage) BeginBurst(Feed, int) int { return 0 }
func (s *fakeStage) EndBurst(int)             {}
func (s *fakeStage) allow(n int) {
	for range n {
		s.gate <- struct{}{}
	}
}
func (s *fakeStage) seen() int       { s.mu.Lock(); defer s.mu.Unlock(); return len(s.processed) }
func (s *fakeStage) committedN() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.commits) }
func (s *fakeStage) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.commits...)
}

func (s *fakeStage) Commit(_ context.Context, b *fakeBatch) *Job[*fakeBatch] {
	s.mu.Lock()
	s.inflight++
	s.most = max(s.most, s.inflight)
	first := s.first[b]
	s.mu.Unlock()
	j := &Job[*fakeBatch]{Batch: b, Done: make(chan struct{})}
	go func() {
		<-s.gate
		s.mu.Lock()
		s.commits = append(s.commits, fmt.Sprintf("%d-%d", first, b.lastSeq))
		s.inflight--
		s.mu.Unlock()
		close(j.Done)
	}()
	return j
}

func (s *fakeStage) Quiet(b *fakeBatch) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiets++
	if s.quiets > s.ticks {
		return false, nil
	}
	if b.N == 0 {
		s.first[b] = 0
	}
	b.lastSeq = 99
	return true, nil
}

func (s *fakeStage) Committed(j *Job[*fakeBatch]) (bool, error) {
	return s.atEnd && j.Batch.Pending == 0, j.Err
}

// waitFor polls cond with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, what, cond)
}

func batchConfig() config.Batch {
	return config.Batch{Size: 4, MaxWait: time.Hour, CatchUp: config.CatchUp{Size: 40, MaxWait: time.Hour}}
}

// TestBatcherFollowing: while following (little pending), a batch is cut at its size; the next
// batch is processed while the previous one commits, never two commits at once (a full batch
// waits: backpressure); a partial batch is cut when the feed runs dry; ctx's end commits what
// is in hand.
func TestBatcherFollowing(t *testing.T) {
	f, s := newFakeFeed(), newFakeStage(false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New[fakeBatch](batchConfig(), 0, f, s).Run(ctx) }()

	f.push(1, 10, 0) // pending 0: following
	// 1-4 commits; 5-8 are processed meanwhile, then the full batch waits for the commit.
	waitFor(t, "the second batch processed during the first commit", func() bool { return s.seen() == 8 })
	if s.committedN() != 0 || s.seen() != 8 {
		t.Fatalf("seen %d, committed %d: a full batch must wait for the commit in flight", s.seen(), s.committedN())
	}
	s.allow(1)
	waitFor(t, "the third batch processed", func() bool { return s.seen() == 10 })
	s.allow(2) // the second, then the third (cut when the feed ran dry)
	waitFor(t, "three commits", func() bool { return s.committedN() == 3 })
	f.push(11, 12, 0)
	waitFor(t, "11 and 12 processed", func() bool { return s.seen() == 12 })
	cancel()
	s.allow(1)
	if err := <-done; err != nil {
		t.Fatalf("run = %v, want nil after ctx's end", err)
	}
	want := []string{"1-4", "5-8", "9-10", "11-12"}
	if fmt.Sprint(s.list()) != fmt.Sprint(want) {
		t.Errorf("commits %v, want %v", s.list(), want)
	}
	if s.most != 1 {
		t.Errorf("%d commits in flight at once, want 1", s.most)
	}
}

// TestBatcherCatchingUp: a backlog (pending at least a follow batch) is taken in catch-up
// batches; reaching the tail, the batch switches to the follow bounds and commits with the
// tail when the feed runs dry at the head, in one commit; with stop: end, run returns once the
// end is committed.
func TestBatcherCatchingUp(t *testing.T) {
	f, s := newFakeFeed(), newFakeStage(true)
	s.allow(10)
	f.push(1, 30, 30)
	err := New[fakeBatch](batchConfig(), 0, f, s).Run(context.Background())
	if !errors.Is(err, ErrCaughtUp) {
		t.Fatalf("run = %v, want ErrCaughtUp", err)
	}
	if want := []string{"1-30"}; fmt.Sprint(s.list()) != fmt.Sprint(want) {
		t.Errorf("commits %v, want %v: one catch-up batch to the tail", s.list(), want)
	}
}

// TestBatcherCatchUpBound: a backlog larger than a catch-up batch is cut at the catch-up size.
func TestBatcherCatchUpBound(t *testing.T) {
	f, s := newFakeFeed(), newFakeStage(true)
	s.allow(10)
	f.push(1, 100, 100)
	if err := New[fakeBatch](batchConfig(), 0, f, s).Run(context.Background()); !errors.Is(err, ErrCaughtUp) {
		t.Fatalf("run = %v, want ErrCaughtUp", err)
	}
	if want := []string{"1-40", "41-80", "81-100"}; fmt.Sprint(s.list()) != fmt.Sprint(want) {
		t.Errorf("commits %v, want %v", s.list(), want)
	}
}

// TestBatcherFeedError: an error of the feed ends the run after the commit in flight.
func TestBatcherFeedError(t *testing.T) {
	f, s := newFakeFeed(), newFakeStage(false)
	s.allow(10)
	boom := errors.New("consumer gone")
	f.push(1, 2, 0)
	done := make(chan error, 1)
	go func() { done <- New[fakeBatch](batchConfig(), 0, f, s).Run(context.Background()) }()
	waitFor(t, "the events committed", func() bool { return s.committedN() == 1 })
	f.errs <- boom
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("run = %v, want %v", err, boom)
	}
}

// TestBatcherQuiet: with an idle time, an idle feed makes the loop call Quiet, after that time
// and then again; a tick that staged effects is committed alone, without events.
func TestBatcherQuiet(t *testing.T) {
	f, s := newFakeFeed(), newFakeStage(false)
	s.ticks = 1
	s.allow(10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	l := New[fakeBatch](batchConfig(), 50*time.Millisecond, f, s)
	go func() { done <- l.Run(ctx) }()
	f.push(1, 2, 0)
	waitFor(t, "a commit of the tick alone", func() bool {
		for _, c := range s.list() {
			if c == "0-99" {
				return true
			}
		}
		return false
	})
	waitFor(t, "Quiet called again", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.quiets >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.list(); len(got) != 2 || got[0] != "1-2" {
		t.Errorf("commits %v, want the events' then the tick's", got)
	}
}
