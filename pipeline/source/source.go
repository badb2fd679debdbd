package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfold/jetfold/config"
)

// Source hands a consumer's messages to the processing loop, with their metadata read once.
// The consume callback appends them to a shared buffer; the loop takes the whole buffer at
// once when it has used up what it took before, so a message costs an append under a lock
// instead of a channel send and receive. The buffer holds at most the batch size: when it is
// full, the callback waits.
//
// On a stream with limits retention the consumer is ephemeral and unacknowledged, and the
// source keeps it ordered itself, as nats.go's ordered consumer would (one lock and one parse
// of the metadata per message less, about 2% of `processor bench`): when delivery breaks
// (a gap in delivery sequences, a missed heartbeat, the consumer gone, a reconnect), it
// recreates the consumer at the stream sequence after the last message it took. Messages of
// the subscription it replaced are dropped (each subscription has a serial).
type Source struct {
	options
	errs   chan error
	status chan nats.Status // reconnects

	mu      sync.Mutex
	room    sync.Cond // broadcast when buf has room again or the serial changes
	buf     []Msg
	max     int
	waiting int // pushes waiting for room
	closed  bool
	ready   chan struct{} // a token when buf goes from empty to not empty
	cons    jetstream.Consumer
	cc      jetstream.ConsumeContext
	serial  int // the subscription whose messages are taken
	// ccSerial is the serial cc serves; a reset asked for while it was made may be done.
	ccSerial int
	dseq     uint64        // its last delivery sequence taken (ordered)
	after    uint64        // the stream sequence after the last message taken; 0: none yet (ordered)
	resets   chan struct{} // a token asks for the consumer to be recreated (ordered)
	stopped  chan struct{} // closed by stop
	ctx      context.Context
	cancel   context.CancelFunc // called by stop

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
	// reopen, set for an ordered source (limits retention), creates its consumer for the
	// subscription serial (one name per serial, so that a retry finds what a lost reply
	// created): at stream sequence next, or at the pipeline's start position when next is 0.
	// drop deletes one by name.
	reopen func(ctx context.Context, serial int, next uint64) (jetstream.Consumer, error)
	drop   func(ctx context.Context, name string) error
	// conn is watched for reconnects. A durable consumer's run ends at a lost connection
	// (messages in transit are lost, and only redelivered after the ack wait), and so does
	// its deletion; an ordered source recreates its consumer after either.
	conn *nats.Conn
	cfg  config.Batch
	log  *slog.Logger
}

// errReconnected ends the run of a durable consumer after a lost connection.
var errReconnected = errors.New("the connection was lost: the pipeline restarts from its checkpoint")

func newSource(cons jetstream.Consumer, o options) *Source {
	s := &Source{
		options: o, cons: cons,
		errs:    make(chan error, 1),
		max:     o.cfg.Size,
		ready:   make(chan struct{}, 1),
		resets:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	if cons != nil {
		s.pending = cons.CachedInfo().NumPending
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.room.L = &s.mu
	return s
}

// Start starts consuming. Messages are then at hand through [Source.Next], and [Source.Ready]
// has a token when the buffer goes from empty to not empty.
func (s *Source) Start() error {
	// Reconnects are watched from before the first pull: one in between could lose
	// messages in transit with nothing to show it.
	if s.conn != nil {
		if s.reopen != nil {
			s.status = s.conn.StatusChanged(nats.CONNECTED)
		} else {
			s.status = s.conn.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
		}
		go s.watch(s.status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cc, err := s.consume(s.cons, s.serial)
	if err != nil {
		if s.status != nil {
			s.conn.RemoveStatusListener(s.status)
		}
		return fmt.Errorf("consume: %w", err)
	}
	s.cc = cc
	if s.reopen != nil {
		go s.resetter()
	}
	return nil
}

// pullBytes bounds the bytes of one pull request, so that a callback waiting for room (the
// batch is full) does not let the client's subscription overflow its 64 MB of pending
// messages, which nats.go would drop as a slow consumer. It must be more than the largest
// message (see consume).
const pullBytes = 16 << 20

// orderedHeartbeat is how often the server tells an ordered source's consumer is alive:
// delivery that stops silently is noticed after two of them (as with nats.go's ordered
// consumer; a pull consumer's default is 15 s).
const orderedHeartbeat = 5 * time.Second

// consume starts a subscription of cons whose messages carry serial.
func (s *Source) consume(cons jetstream.Consumer, serial int) (jetstream.ConsumeContext, error) {
	limit := pullBytes
	if s.conn != nil {
		limit = max(limit, 2*int(s.conn.MaxPayload()))
	}
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessagesWithBytesLimit(min(max(2*s.cfg.Size, 1000), 10_000), limit),
	}
	if s.reopen != nil {
		opts = append(opts, jetstream.PullHeartbeat(orderedHeartbeat))
	}
	return cons.Consume(func(m jetstream.Msg) { s.push(serial, m) }, append(opts,
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Debug("consume", "err", err)
			switch {
			case s.terminal(err):
				s.fail(err)
			case s.reopen != nil && broken(err):
				s.mu.Lock()
				if serial == s.serial {
					s.resetLocked()
				}
				s.mu.Unlock()
			}
		}))...,
	)
}

// watch follows the connection's status until stop removes the listener: a durable source's
// run ends at a lost connection; an ordered one recreates its consumer once reconnected, as
// messages in transit may be lost with none after them to show the gap.
func (s *Source) watch(ch chan nats.Status) {
	for range ch {
		if s.reopen == nil {
			s.fail(errReconnected)
			continue
		}
		s.mu.Lock()
		s.resetLocked()
		s.mu.Unlock()
	}
}

// fail ends the run with err (the first one counts).
func (s *Source) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// terminal tells whether a consume error ends the run (it restarts from the checkpoint).
func (s *Source) terminal(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return true
	}
	return s.reopen == nil && (errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound))
}

// broken tells whether a consume error means that messages may be lost or stop coming: an
// ordered source then recreates its consumer.
func broken(err error) bool {
	return errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, nats.ErrNoResponders)
}

// push is the consume callback of subscription serial.
func (s *Source) push(serial int, m jetstream.Msg) {
	md, err := MetaOf(m)
	s.mu.Lock()
	for !s.closed && serial == s.serial && len(s.buf) >= s.max {
		s.waiting++
		s.room.Wait()
		s.waiting--
	}
	if s.closed || serial != s.serial {
		s.mu.Unlock()
		return // replaced: its successor starts after the last message taken
	}
	if s.reopen != nil && err == nil {
		if md.Delivery != s.dseq+1 {
			s.resetLocked() // lost in transit: read again from the last one taken
			s.mu.Unlock()
			return
		}
		s.dseq, s.after = md.Delivery, md.Seq+1
	}
	s.buf = append(s.buf, Msg{Msg: m, Meta: md, Err: err})
	first := len(s.buf) == 1
	s.mu.Unlock()
	if first {
		select {
		case s.ready <- struct{}{}:
		default: // a token is waiting already
		}
	}
}

// resetLocked drops the current subscription's messages from now on and asks for the
// consumer to be recreated. s.mu is held.
func (s *Source) resetLocked() {
	s.serial++
	s.dseq = 0
	s.room.Broadcast() // a push of the old serial waiting for room returns
	select {
	case s.resets <- struct{}{}:
	default: // one is asked for already
	}
}

// resetter recreates the consumer of an ordered source when asked, until stop. A failure is
// retried with backoff: the connection may be down.
func (s *Source) resetter() {
	for {
		select {
		case <-s.stopped:
			return
		case <-s.resets:
		}
		s.mu.Lock()
		old, oldCC, current := s.cons, s.cc, s.ccSerial == s.serial
		s.mu.Unlock()
		if current {
			continue // asked while the last one was made, which serves the serial already
		}
		oldCC.Stop()
		go s.deleteConsumer(old)
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			err := s.reopenOnce()
			if err == nil {
				break
			}
			if s.terminal(err) {
				s.fail(err)
				return
			}
			if s.ctx.Err() != nil {
				return // stopped
			}
			s.log.Warn("could not recreate the source consumer; retrying", "err", err, "in", wait)
			select {
			case <-s.stopped:
				return
			case <-time.After(wait):
			}
		}
	}
}

// reopenOnce creates the consumer again after the last message taken, and consumes it.
func (s *Source) reopenOnce() error {
	s.mu.Lock()
	serial, next := s.serial, s.after
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	cons, err := s.reopen(ctx, serial, next)
	if err != nil {
		return err
	}
	cc, err := s.consume(cons, serial)
	if err != nil {
		go s.deleteConsumer(cons)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || serial != s.serial {
		// stopped, or broken again meanwhile (the token asks for the next one)
		cc.Stop()
		go s.deleteConsumer(cons)
		return nil
	}
	s.cons, s.cc, s.ccSerial = cons, cc, serial
	return nil
}

// discard deletes the consumer of an ordered source that is not started, or failed to.
// Discard releases a source that was not started, or failed to start: its consumer is deleted.
func (s *Source) Discard() {
	if s.reopen != nil {
		s.deleteConsumer(s.cons)
	}
}

// deleteConsumer removes a consumer an ordered source no longer reads; one left behind (the
// connection is down) goes after its inactivity threshold.
func (s *Source) deleteConsumer(cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.drop(ctx, cons.CachedInfo().Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
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

// Stop stops consuming and deletes an ordered source's consumer (synchronously, before the
// process may exit).
func (s *Source) Stop() {
	s.mu.Lock()
	s.closed = true
	s.room.Broadcast()
	cons, cc := s.cons, s.cc
	s.mu.Unlock()
	close(s.stopped)
	s.cancel()
	cc.Stop()
	if s.status != nil {
		s.conn.RemoveStatusListener(s.status)
	}
	if s.reopen != nil {
		s.deleteConsumer(cons) // before the process may exit
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
// of that length), can lose its consumer, which it then recreates after the last message
// taken, as after any deletion. A threshold longer than needed only keeps what killed
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
}

// Open opens the source of a pipeline on stream from its checkpoint; [Source.Start] starts
// it, and [Source.Discard] releases one that is not started.
//
// On a stream with limits retention (the event-sourcing case) it is an ephemeral consumer: no
// acknowledgements, its state in memory, kept ordered by the source (see [Source]). The
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
	switch stream.CachedInfo().Config.Retention {
	case jetstream.WorkQueuePolicy:
		return nil, fmt.Errorf("%w: %s deletes what is acknowledged; a pipeline replays its source: use limits or interest retention", ErrWorkQueue, name)
	case jetstream.LimitsPolicy:
		// A durable of an earlier version (named after the pipeline) is no longer used.
		if err := stream.DeleteConsumer(ctx, prefix); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", prefix, err)
		}
		// Ephemeral and unacknowledged, ordered by the source (see Source), which creates it
		// again after the last message taken when delivery breaks.
		cname := prefix + "_" + nuid.Next()
		consumerAt := func(serial int, next uint64) jetstream.ConsumerConfig {
			c := jetstream.ConsumerConfig{
				Name:          cname + "_" + strconv.Itoa(serial),
				Description:   "jetfold pipeline " + o.Pipeline,
				DeliverPolicy: policy, OptStartSeq: seq, OptStartTime: t,
				AckPolicy:         jetstream.AckNonePolicy,
				MemoryStorage:     true,
				Replicas:          1,
				InactiveThreshold: sourceInactiveThreshold,
			}
			if next > 0 {
				c.DeliverPolicy, c.OptStartSeq, c.OptStartTime = jetstream.DeliverByStartSequencePolicy, next, nil
			}
			setFilter(&c, o.Subjects)
			return c
		}
		opts.reopen = func(ctx context.Context, serial int, next uint64) (jetstream.Consumer, error) {
			return stream.CreateConsumer(ctx, consumerAt(serial, next))
		}
		opts.drop = stream.DeleteConsumer
		cons, err := stream.CreateConsumer(ctx, consumerAt(0, 0))
		if err != nil {
			return nil, fmt.Errorf("create consumer on %s: %w", name, err)
		}
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
func (s *Source) Acks() bool { return s.reopen == nil }

// Pending is the number of messages the consumer had left to deliver when it was opened.
func (s *Source) Pending() uint64 { return s.pending }
