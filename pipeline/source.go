package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
)

// source hands a consumer's messages to the processing loop. The consume callback appends
// them to a shared buffer; the loop takes the whole buffer at once when it has used up what it
// took before, so a message costs an append under a lock instead of a channel send and
// receive. The buffer holds at most the batch size: when it is full, the callback waits.
//
// Callbacks append in the order they arrive, even when several wait: the ordered consumer
// moves its cursor past a message before its callback runs, so after a reconnect the callback
// of its next subscription can arrive while the previous one still waits with the message
// before. Each push takes a ticket and appends in ticket order.
type source struct {
	cons jetstream.Consumer
	sourceOptions
	cc     jetstream.ConsumeContext
	errs   chan error
	status chan nats.Status // reconnects, for a durable consumer

	mu      sync.Mutex
	room    sync.Cond // broadcast when buf has room again or the turn moves on
	buf     []jetstream.Msg
	max     int
	ticket  uint64 // the next ticket a push takes
	turn    uint64 // the ticket that appends next
	waiting int    // pushes waiting for their turn or for room
	closed  bool
	ready   chan struct{} // a token when buf goes from empty to not empty

	local []jetstream.Msg // taken from buf, read by the loop only
	at    int
}

// sourceOptions configures a source.
type sourceOptions struct {
	// durable is set for a durable consumer: its deletion ends the run, and so does a lost
	// connection (messages in transit are lost, and only redelivered after the ack wait).
	// An ordered consumer recreates itself after either.
	durable bool
	conn    *nats.Conn // watched for reconnects when durable
	cfg     config.Batch
	log     *slog.Logger
}

// errReconnected ends the run of a durable consumer after a lost connection.
var errReconnected = errors.New("the connection was lost: the pipeline restarts from its checkpoint")

func newSource(cons jetstream.Consumer, o sourceOptions) *source {
	s := &source{
		cons: cons, sourceOptions: o,
		errs:  make(chan error, 1),
		max:   o.cfg.Size,
		ready: make(chan struct{}, 1),
	}
	s.room.L = &s.mu
	return s
}

func (s *source) start() error {
	cc, err := s.cons.Consume(s.push,
		jetstream.PullMaxMessages(min(max(2*s.cfg.Size, 1000), 10_000)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Debug("consume", "err", err)
			if s.terminal(err) {
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
	if s.durable && s.conn != nil {
		s.status = s.conn.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
		go func(ch chan nats.Status) {
			for range ch { // until stop removes the listener
				select {
				case s.errs <- errReconnected:
				default:
				}
			}
		}(s.status)
	}
	return nil
}

// terminal tells whether a consume error ends the run (it restarts from the checkpoint). An
// ordered consumer recreates itself after anything else.
func (s *source) terminal(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return true
	}
	return s.durable && (errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound))
}

// push is the consume callback.
func (s *source) push(m jetstream.Msg) {
	s.mu.Lock()
	t := s.ticket
	s.ticket++
	for !s.closed && (t != s.turn || len(s.buf) >= s.max) {
		s.waiting++
		s.room.Wait()
		s.waiting--
	}
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.buf = append(s.buf, m)
	s.turn++
	first := len(s.buf) == 1
	if s.waiting > 0 {
		s.room.Broadcast() // the next ticket may be waiting
	}
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
	defer s.mu.Unlock()
	if len(s.buf) == 0 {
		return false
	}
	clear(s.local)
	s.local, s.buf, s.at = s.buf, s.local[:0], 0
	if s.waiting > 0 {
		s.room.Broadcast()
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

func (s *source) stop() {
	s.mu.Lock()
	s.closed = true
	s.room.Broadcast()
	s.mu.Unlock()
	s.cc.Stop()
	if s.status != nil {
		s.conn.RemoveStatusListener(s.status)
	}
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
	// Then the earlier runs' durables, now that the new one holds the interest. One left
	// behind (the connection dropped) only keeps messages longer: the next start deletes it.
	old := []string{prefix}
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Metadata[metaPipeline] == r.p.Name && info.Name != cc.Durable {
			old = append(old, info.Name)
		}
	}
	if err := list.Err(); err != nil {
		r.log.Warn("could not list the earlier consumers; the next start deletes them", "stream", pc.Source.Stream, "err", err)
		return cons, nil
	}
	for _, name := range old {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			r.log.Warn("could not delete an earlier consumer; the next start does", "consumer", name, "err", err)
		}
	}
	return cons, nil
}
