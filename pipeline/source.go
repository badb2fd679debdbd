package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
)

// source hands a consumer's messages to the processing loop. The consume callback appends
// them to a shared buffer; the loop takes the whole buffer at once when it has used up what it
// took before, so a message costs an append under a lock instead of a channel send and
// receive. The buffer holds at most the batch size: when it is full, the callback waits.
type source struct {
	cons jetstream.Consumer
	// durable is set for a durable consumer, whose deletion ends the run; an ordered one
	// is recreated by the client library instead.
	durable bool
	cfg     config.Batch
	log     *slog.Logger
	cc      jetstream.ConsumeContext
	errs    chan error
	quit    chan struct{}

	mu    sync.Mutex
	buf   []jetstream.Msg // filled by the callback
	max   int
	ready chan struct{} // a token when buf goes from empty to not empty
	space chan struct{} // a token when the loop empties a full buf

	local []jetstream.Msg // taken from buf, read by the loop only
	at    int
}

func newSource(cons jetstream.Consumer, durable bool, cfg config.Batch, log *slog.Logger) *source {
	return &source{
		cons: cons, durable: durable, cfg: cfg, log: log,
		errs:  make(chan error, 1),
		quit:  make(chan struct{}),
		max:   cfg.Size,
		ready: make(chan struct{}, 1),
		space: make(chan struct{}, 1),
	}
}

func (s *source) start() error {
	cc, err := s.cons.Consume(s.push,
		jetstream.PullMaxMessages(min(max(2*s.cfg.Size, 1000), 10_000)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Debug("consume", "err", err)
			if s.durable && isTerminalConsumeErr(err) {
				select {
				case s.errs <- err:
				default:
				}
			}
		}),
	)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	s.cc = cc
	return nil
}

// push is the consume callback.
func (s *source) push(m jetstream.Msg) {
	s.mu.Lock()
	for len(s.buf) >= s.max {
		s.mu.Unlock()
		select {
		case <-s.space:
		case <-s.quit:
			return
		}
		s.mu.Lock()
	}
	s.buf = append(s.buf, m)
	first := len(s.buf) == 1
	s.mu.Unlock()
	if first {
		select {
		case s.ready <- struct{}{}:
		default: // a token is waiting already
		}
	}
}

// next returns the next message at hand, false when there is none: then wait on s.ready.
func (s *source) next() (jetstream.Msg, bool) {
	if !s.refill() {
		return nil, false
	}
	m := s.local[s.at]
	s.at++
	return m, true
}

// atHand returns up to n of the next messages at hand without taking them.
func (s *source) atHand(n int) []jetstream.Msg {
	if !s.refill() {
		return nil
	}
	return s.local[s.at:min(s.at+n, len(s.local))]
}

// refill takes the shared buffer when what was taken before is used up; false when there is
// nothing at hand.
func (s *source) refill() bool {
	if s.at < len(s.local) {
		return true
	}
	s.mu.Lock()
	if len(s.buf) == 0 {
		s.mu.Unlock()
		return false
	}
	wasFull := len(s.buf) >= s.max
	clear(s.local)
	s.local, s.buf, s.at = s.buf, s.local[:0], 0
	s.mu.Unlock()
	if wasFull {
		select {
		case s.space <- struct{}{}:
		default:
		}
	}
	return true
}

// empty tells whether no message is at hand.
func (s *source) empty() bool {
	if s.at < len(s.local) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf) == 0
}

func isTerminalConsumeErr(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound)
}

func (s *source) stop() {
	close(s.quit)
	s.cc.Stop()
}

// metaPipeline is the consumer metadata key naming the pipeline a durable consumer reads for.
const metaPipeline = "jetfold.pipeline"

// openConsumer opens the source from the checkpoint.
//
// On a stream with limits retention (the event-sourcing case) it is an ordered consumer: no
// acknowledgements, its state in memory, recreated at the next sequence by the client library
// after a gap or a reconnect. The checkpoint is the only position that counts, so
// acknowledgements would only cost the server work for every message.
//
// On interest retention, where acknowledgements are what let the server remove messages, it
// is a durable AckAll consumer, acknowledged after each commit. A new one is created at the
// checkpoint before the previous run's is deleted: the stream never loses interest in what is
// not committed. Work-queue retention is refused: it deletes what is acknowledged, and a
// pipeline replays.
func (r *Runner) openConsumer(ctx context.Context, stream jetstream.Stream, cp checkpoint.Checkpoint) (jetstream.Consumer, error) {
	pc := r.p.Config
	prefix := "jetfold_" + r.p.Name
	policy, seq, t := jetstream.DeliverAllPolicy, uint64(0), (*time.Time)(nil)
	switch {
	case !cp.Initial:
		policy, seq = jetstream.DeliverByStartSequencePolicy, cp.Seq+1
	case r.p.Start.Kind == "seq":
		policy, seq = jetstream.DeliverByStartSequencePolicy, max(r.p.Start.Seq, 1)
	case r.p.Start.Kind == "time":
		start := r.p.Start.Time
		policy, t = jetstream.DeliverByStartTimePolicy, &start
	}
	switch stream.CachedInfo().Config.Retention {
	case jetstream.WorkQueuePolicy:
		return nil, fmt.Errorf("%w: source stream %s has work-queue retention, which deletes what is acknowledged; a pipeline replays its source: use limits or interest retention",
			ErrStopped, pc.Source.Stream)
	case jetstream.LimitsPolicy:
		r.acks = false
		// A durable of an earlier version (named after the pipeline) is no longer used.
		if err := stream.DeleteConsumer(ctx, prefix); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", prefix, err)
		}
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: pc.Source.Subjects,
			DeliverPolicy:  policy, OptStartSeq: seq, OptStartTime: t,
			NamePrefix: prefix + "_" + nuid.Next(),
		})
		if err != nil {
			return nil, fmt.Errorf("create consumer on %s: %w", pc.Source.Stream, err)
		}
		return cons, nil
	}
	r.acks = true
	cc := jetstream.ConsumerConfig{
		Durable:       prefix + "_" + nuid.Next(),
		Description:   "jetfold pipeline " + r.p.Name,
		Metadata:      map[string]string{metaPipeline: r.p.Name},
		DeliverPolicy: policy, OptStartSeq: seq, OptStartTime: t,
		AckPolicy: jetstream.AckAllPolicy,
		AckWait:   2 * time.Minute,
		// Unacknowledged messages are a batch in hand plus the one committing.
		MaxAckPending: 2*max(pc.Batch.CatchUp.Size, pc.Batch.Size) + 1000,
		MaxDeliver:    -1,
	}
	switch len(pc.Source.Subjects) {
	case 0:
	case 1:
		cc.FilterSubject = pc.Source.Subjects[0]
	default:
		cc.FilterSubjects = pc.Source.Subjects
	}
	cons, err := stream.CreateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cc.Durable, err)
	}
	// Then the earlier runs' durables, now that the new one holds the interest.
	old := []string{prefix}
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Metadata[metaPipeline] == r.p.Name && info.Name != cc.Durable {
			old = append(old, info.Name)
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", pc.Source.Stream, err)
	}
	for _, name := range old {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", name, err)
		}
	}
	return cons, nil
}
