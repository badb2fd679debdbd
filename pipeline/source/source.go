package source

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

	"github.com/jetfold/jetfold/config"
)

// Source hands a consumer's messages to the processing loop, with their metadata read once
// (see [MetaOf]). The consume callback appends them to a shared buffer; the loop takes the
// whole buffer at once when it has used up what it took before, so a message costs an append
// under a lock instead of a channel send and receive. The buffer holds at most the batch
// size: when it is full, the callback waits.
//
// On a stream with limits retention the consumer is nats.go's ordered consumer
// ([jetstream.Stream.OrderedConsumer]): ephemeral, unacknowledged, recreated by the library
// after the last message it handed over when delivery breaks (a gap in delivery sequences, a
// missed heartbeat, the consumer deleted, a reconnect). Until this was measured, jetfold kept
// such a consumer ordered itself (subscription serials, its own resets), to save the
// library's lock and second parse of the metadata per message. `processor bench --rounds 1`
// (1,000,000 events, 10,000 keys), 20 alternating pairs of runs on a loaded 2-core machine,
// medians, own against nats.go's: CPU per event 6,647 ns ± 8% against 6,816 ns ± 10%
// (benchstat p=0.82), pipeline/raw ratio 0.482 ± 13% against 0.496 ± 14% (p=0.58). Neither
// difference is significant, so the library's consumer it is. MetaOf still reads the
// metadata in place: the ordered consumer's messages carry acknowledgement subjects.
//
// Callbacks append in the order they arrive, even when several wait for room: the ordered
// consumer moves its cursor past a message before its callback runs, so after a reset the
// callback of its next subscription can arrive while the previous one still waits with the
// message before. Each push takes a ticket and appends in ticket order.
type Source struct {
	options
	cons   jetstream.Consumer
	errs   chan error
	status chan nats.Status // reconnects, for a durable consumer

	mu      sync.Mutex
	room    sync.Cond // broadcast when buf has room again or the turn moves on
	buf     []Msg
	max     int
	ticket  uint64 // the next ticket a push takes
	turn    uint64 // the ticket that appends next
	waiting int    // pushes waiting for their turn or for room
	closed  bool
	ready   chan struct{} // a token when buf goes from empty to not empty
	cc      jetstream.ConsumeContext

	local []Msg // taken from buf, read by the loop only
	at    int
	// pending is what the consumer had left to deliver when it was opened.
	pending uint64
}

// Msg is a message with its metadata (or the error of reading it).
type Msg struct {
	Msg  jetstream.Msg
	Meta Meta
	Err  error
}

// options configures a source.
type options struct {
	// drop, set for an ordered consumer (limits retention), deletes a consumer by name: the
	// source deletes its consumer when it stops or is discarded.
	drop func(ctx context.Context, name string) error
	// conn is watched for reconnects by a durable consumer, whose run ends at a lost
	// connection (messages in transit are lost, and only redelivered after the ack wait).
	// The ordered consumer recreates itself after one.
	conn *nats.Conn
	cfg  config.Batch
	log  *slog.Logger
}

// errReconnected ends the run of a durable consumer after a lost connection.
var errReconnected = errors.New("the connection was lost: the pipeline restarts from its checkpoint")

func newSource(cons jetstream.Consumer, o options) *Source {
	s := &Source{
		options: o, cons: cons,
		errs:  make(chan error, 1),
		max:   o.cfg.Size,
		ready: make(chan struct{}, 1),
	}
	if cons != nil {
		if info := cons.CachedInfo(); info != nil {
			s.pending = info.NumPending
		}
	}
	s.room.L = &s.mu
	return s
}

// ordered tells whether the consumer is nats.go's ordered consumer (limits retention).
func (s *Source) ordered() bool { return s.drop != nil }

// pullBytes bounds the bytes of one pull request, so that a callback waiting for room (the
// batch is full) does not let the client's subscription overflow its 64 MB of pending
// messages, which nats.go would drop as a slow consumer. It must be more than the largest
// message (see Start).
const pullBytes = 16 << 20

// orderedHeartbeat is how often the server tells the ordered consumer it is alive: delivery
// that stops silently is noticed after two of them (nats.go's default for an ordered
// consumer, set here so that it does not follow the pull expiry).
const orderedHeartbeat = 5 * time.Second

// Start starts consuming. Messages are then at hand through [Source.Next], and [Source.Ready]
// has a token when the buffer goes from empty to not empty.
func (s *Source) Start() error {
	// A durable consumer's reconnects are watched from before the first pull: one in between
	// could lose messages in transit with nothing to show it.
	if s.conn != nil && !s.ordered() {
		s.status = s.conn.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
		go s.watch(s.status)
	}
	limit := pullBytes
	if s.conn != nil {
		limit = max(limit, 2*int(s.conn.MaxPayload()))
	}
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessagesWithBytesLimit(min(max(2*s.cfg.Size, 1000), 10_000), limit),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// nats.go's ordered consumer calls this holding its lock: no call back into it.
			s.log.Debug("consume", "err", err)
			if s.terminal(err) {
				s.fail(err)
			}
		}),
	}
	if s.ordered() {
		opts = append(opts, jetstream.PullHeartbeat(orderedHeartbeat))
	}
	cc, err := s.cons.Consume(s.push, opts...)
	if err != nil {
		if s.status != nil {
			s.conn.RemoveStatusListener(s.status)
		}
		return fmt.Errorf("consume: %w", err)
	}
	s.mu.Lock()
	s.cc = cc
	s.mu.Unlock()
	return nil
}

// watch follows a durable consumer's connection until stop removes the listener: the run
// ends at a lost connection.
func (s *Source) watch(ch chan nats.Status) {
	for range ch {
		s.fail(errReconnected)
	}
}

// fail ends the run with err (the first one counts).
func (s *Source) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// terminal tells whether a consume error ends the run (it restarts from the checkpoint). The
// ordered consumer recreates itself after anything else.
func (s *Source) terminal(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return true
	}
	return !s.ordered() && (errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound))
}

// push is the consume callback.
func (s *Source) push(m jetstream.Msg) {
	md, err := MetaOf(m)
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
	s.buf = append(s.buf, Msg{Msg: m, Meta: md, Err: err})
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

// Discard releases a source that was not started, or failed to start: an ordered consumer is
// deleted.
func (s *Source) Discard() {
	if s.ordered() {
		s.deleteConsumer()
	}
}

// deleteConsumer removes the ordered consumer's current server-side consumer; one left behind
// (the connection is down, or the library was recreating it as the source stopped) goes
// after its inactivity threshold.
func (s *Source) deleteConsumer() {
	info := s.cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.drop(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Debug("delete a source consumer", "err", err)
	}
}

// Next returns the next message at hand, false when there is none: then wait on [Source.Ready].
func (s *Source) Next() (Msg, bool) {
	if !s.refill() {
		return Msg{}, false
	}
	m := s.local[s.at]
	s.at++
	return m, true
}

// AtHand returns up to n of the next messages at hand without taking them.
func (s *Source) AtHand(n int) []Msg {
	if !s.refill() {
		return nil
	}
	return s.local[s.at:min(s.at+n, len(s.local))]
}

// refill takes the shared buffer when what was taken before is used up; false when there is
// nothing at hand.
func (s *Source) refill() bool {
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

// Empty tells whether no message is at hand.
func (s *Source) Empty() bool {
	if s.at < len(s.local) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf) == 0
}

// Stop stops consuming and deletes an ordered consumer (synchronously, before the process
// may exit).
func (s *Source) Stop() {
	s.mu.Lock()
	s.closed = true
	s.room.Broadcast()
	cc := s.cc
	s.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	if s.status != nil {
		s.conn.RemoveStatusListener(s.status)
	}
	if s.ordered() {
		s.deleteConsumer() // before the process may exit
	}
}

// metaPipeline is the consumer metadata key naming the pipeline a durable consumer reads for.
const metaPipeline = "jetfold.pipeline"

// sourceInactiveThreshold is how long the server keeps the ephemeral consumer of a
// limits-retention source when no pull request waits on it and none came (nor a message went
// out) for that long: the consumer of a process that could not delete it (SIGKILL, a crash, a
// connection lost at the end) goes after that, plus up to 1 s. A live source is not idle that
// long: at the head it always has a pull request waiting (nats.go renews it as it expires),
// and while it reads it pulls again each time it has taken half of what it asked for. Only a
// source whose callback waits for room that long, every message it pulled delivered (a commit
// of that length), can lose its consumer, which nats.go then recreates after the last message
// handed over, as after any deletion. A threshold longer than needed only keeps what killed
// processes left, in memory, on the server.
const sourceInactiveThreshold = 30 * time.Second

// ErrWorkQueue is returned by [Open] for a source stream with work-queue retention, which
// deletes what is acknowledged, while a pipeline replays its source.
var ErrWorkQueue = errors.New("source stream has work-queue retention")

// Options configures [Open].
type Options struct {
	// Pipeline names the pipeline (in consumer names and descriptions).
	Pipeline string
	// Subjects filter the stream (all when empty).
	Subjects []string
	// After is the checkpoint: the source starts at the sequence after it, unless Initial.
	After uint64
	// Initial marks a pipeline that never committed: the source starts at Start.
	Initial bool
	// Start is where a pipeline that never committed starts (config.StartPos).
	Start config.StartPos
	// Batch bounds what the source holds at hand (Size) and, for a durable consumer, the
	// unacknowledged messages.
	Batch config.Batch
	// Conn is watched for reconnects.
	Conn *nats.Conn
	// Logger receives the source's log lines.
	Logger *slog.Logger
	// ReadOnly opens nats.go's ordered consumer whatever the stream's retention (it
	// acknowledges nothing), and deletes no consumer an earlier run left: for a replay of
	// the source (pipeline.Replay), which must change nothing. Work-queue retention is
	// still refused.
	ReadOnly bool
}

// Open opens the source of a pipeline on stream from its checkpoint; [Source.Start] starts
// it, and [Source.Discard] releases one that is not started.
//
// On a stream with limits retention (the event-sourcing case) it is nats.go's ordered
// consumer: no acknowledgements, its state in memory, recreated after the last message
// handed over when delivery breaks (see [Source]). The
// checkpoint is the only position that counts, so acknowledgements would only cost the server
// work for every message.
//
// On interest retention, where acknowledgements are what let the server remove messages, it
// is a durable AckAll consumer, acknowledged after each commit. A new one is created at the
// checkpoint before the previous run's is deleted: the stream never loses interest in what is
// not committed. Work-queue retention is refused ([ErrWorkQueue]): it deletes what is
// acknowledged, and a pipeline replays.
func Open(ctx context.Context, stream jetstream.Stream, o Options) (*Source, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := "jetfold_" + o.Pipeline
	if o.ReadOnly {
		prefix = "jetfold_replay_" + o.Pipeline
	}
	policy, seq, t := jetstream.DeliverAllPolicy, uint64(0), (*time.Time)(nil)
	switch {
	case !o.Initial:
		policy, seq = jetstream.DeliverByStartSequencePolicy, o.After+1
	case o.Start.Kind == config.StartSeq:
		policy, seq = jetstream.DeliverByStartSequencePolicy, max(o.Start.Seq, 1)
	case o.Start.Kind == config.StartTime:
		start := o.Start.Time
		policy, t = jetstream.DeliverByStartTimePolicy, &start
	}
	name := stream.CachedInfo().Config.Name
	opts := options{conn: o.Conn, cfg: o.Batch, log: log}
	retention := stream.CachedInfo().Config.Retention
	if retention == jetstream.WorkQueuePolicy {
		return nil, fmt.Errorf("%w: %s deletes what is acknowledged; a pipeline replays its source: use limits or interest retention", ErrWorkQueue, name)
	}
	if retention == jetstream.LimitsPolicy || o.ReadOnly {
		// A durable of an earlier version (named after the pipeline) is no longer used.
		if !o.ReadOnly {
			if err := stream.DeleteConsumer(ctx, prefix); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil, fmt.Errorf("delete consumer %s: %w", prefix, err)
			}
		}
		// Ephemeral and unacknowledged, kept ordered by nats.go (see Source).
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: o.Subjects,
			DeliverPolicy:  policy, OptStartSeq: seq, OptStartTime: t,
			InactiveThreshold: sourceInactiveThreshold,
			NamePrefix:        prefix + "_" + nuid.Next(),
		})
		if err != nil {
			return nil, fmt.Errorf("create consumer on %s: %w", name, err)
		}
		opts.drop = stream.DeleteConsumer
		return newSource(cons, opts), nil
	}
	cc := jetstream.ConsumerConfig{
		Durable:       prefix + "_" + nuid.Next(),
		Description:   "jetfold pipeline " + o.Pipeline,
		Metadata:      map[string]string{metaPipeline: o.Pipeline},
		DeliverPolicy: policy, OptStartSeq: seq, OptStartTime: t,
		AckPolicy: jetstream.AckAllPolicy,
		AckWait:   2 * time.Minute,
		// Unacknowledged messages are a batch in hand plus the one committing.
		MaxAckPending: 2*max(o.Batch.CatchUp.Size, o.Batch.Size) + 1000,
		MaxDeliver:    -1,
	}
	setFilter(&cc, o.Subjects)
	cons, err := stream.CreateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cc.Durable, err)
	}
	// Then the earlier runs' durables, now that the new one holds the interest. One left
	// behind (the connection dropped) only keeps messages longer: the next start deletes it.
	old := []string{prefix}
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Metadata[metaPipeline] == o.Pipeline && info.Name != cc.Durable {
			old = append(old, info.Name)
		}
	}
	if err := list.Err(); err != nil {
		log.Warn("could not list the earlier consumers; the next start deletes them", "stream", name, "err", err)
		return newSource(cons, opts), nil
	}
	for _, n := range old {
		if err := stream.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			log.Warn("could not delete an earlier consumer; the next start does", "consumer", n, "err", err)
		}
	}
	return newSource(cons, opts), nil
}

// setFilter sets the subjects c reads (all when none).
func setFilter(c *jetstream.ConsumerConfig, subjects []string) {
	switch len(subjects) {
	case 0:
	case 1:
		c.FilterSubject = subjects[0]
	default:
		c.FilterSubjects = subjects
	}
}

// Ready has a token when messages are at hand after none were.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Errs delivers the error that ends the run: a consumer that cannot be recreated, a lost
// connection of a durable consumer.
func (s *Source) Errs() <-chan error { return s.errs }

// Acks tells whether the source must be acknowledged after each commit (a durable consumer
// of an interest-retention stream; AckAll on the last message of a batch).
func (s *Source) Acks() bool { return !s.ordered() }

// Pending is the number of messages the consumer had left to deliver when it was opened.
func (s *Source) Pending() uint64 { return s.pending }
