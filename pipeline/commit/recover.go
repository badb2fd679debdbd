package commit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/nats-io/nats.go/jetstream"
)

// clockSlack widens the time-based read-back of output streams, for clocks that differ
// between this process and the NATS server.
const clockSlack = 10 * time.Second

// Recover reads back, from every stream the pipeline may have published to since its
// checkpoint, the ids of the messages an earlier run published, so that processing the events
// after the checkpoint again does not publish them twice. Streams named in the checkpoint are read
// from the sequence it recorded; the dead-letter stream and the declared output streams that
// it does not name, from the checkpoint's time.
func (c *Committer) Recover(ctx context.Context) error {
	c.published = map[string]struct{}{}
	c.publishedMax = 0
	return c.readBack(ctx, func(id string, seq uint64) {
		c.published[id] = struct{}{}
		if seq > c.publishedMax {
			c.publishedMax = seq
		}
	})
}

// readBack calls fn with the id and source sequence of every message of the pipeline
// published after the checkpoint (see [Committer.Recover]).
func (c *Committer) readBack(ctx context.Context, fn func(id string, seq uint64)) error {
	cp := c.checkpoint
	candidates := map[string]bool{}
	for s := range cp.Outputs {
		candidates[s] = true
	}
	for _, s := range append([]string{c.o.DLQStream}, c.o.OutputStreams...) {
		if s != "" && s != c.o.Stream {
			candidates[s] = true
		}
	}
	prefix := c.o.Pipeline + ":"
	for name := range candidates {
		s, err := c.o.JS.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read back %s: %w", name, err)
		}
		cfg := jetstream.OrderedConsumerConfig{HeadersOnly: true}
		if seq, ok := cp.Outputs[name]; ok {
			if s.CachedInfo().State.LastSeq <= seq {
				continue
			}
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
		} else {
			if s.CachedInfo().State.Msgs == 0 {
				continue
			}
			t := cp.Committed.Add(-clockSlack)
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
		}
		n, err := readIDs(ctx, s, cfg, prefix, fn)
		if err != nil {
			return fmt.Errorf("read back %s: %w", name, err)
		}
		if n > 0 {
			c.o.Logger.Info("read back messages published after the checkpoint", "stream", name, "ids", n)
		}
	}
	return nil
}

// readIDs calls fn with every message id that starts with prefix, and the source sequence
// that produced the message (see [sourceSeq]), from cfg's start to the
// stream's end, and returns how many it found.
func readIDs(ctx context.Context, s jetstream.Stream, cfg jetstream.OrderedConsumerConfig, prefix string, fn func(id string, seq uint64)) (int, error) {
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, err
	}
	found := 0
	for {
		b, err := c.Fetch(1000, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return found, err
		}
		n := 0
		for m := range b.Messages() {
			n++
			if id := m.Headers().Get(jetstream.MsgIDHeader); strings.HasPrefix(id, prefix) {
				fn(id, sourceSeq(id, prefix, m.Headers()))
				found++
			}
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				return found, nil
			}
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return found, err
		}
		if n == 0 {
			return found, nil // nothing after the start position
		}
	}
}

// sourceSeq returns the source sequence of a message: the one in its id "<pipeline>:<seq>:<n>",
// or, for an id of an operator's own (a derived event fired by time), its Jetfold-Source-Seq.
func sourceSeq(id, prefix string, h map[string][]string) uint64 {
	if seq := idSeq(id, prefix); seq > 0 {
		return seq
	}
	if v := h[HeaderSourceSeq]; len(v) > 0 {
		seq, _ := strconv.ParseUint(v[0], 10, 64)
		return seq
	}
	return 0
}

// idSeq returns the source sequence of a message id "<pipeline>:<seq>:<n>".
func idSeq(id, prefix string) uint64 {
	rest := strings.TrimPrefix(id, prefix)
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	n, _ := strconv.ParseUint(rest, 10, 64)
	return n
}

// Orphans reads back, as [Committer.Recover] does, what a run of the pipeline published
// after checkpoint cp without committing it (it died inside a commit), and returns the
// highest source sequence among those messages (0: none). A rebuild switches after it: the
// events whose derived events are out are the old run's, not the new definition's to emit.
func Orphans(ctx context.Context, o Options, cp checkpoint.Checkpoint) (uint64, error) {
	c := New(o, cp)
	if err := c.Recover(ctx); err != nil {
		return 0, err
	}
	if c.publishedMax <= cp.Seq {
		return 0, nil
	}
	return c.publishedMax, nil
}

// OrphanSeqs is [Orphans] for one partition of a partitioned pipeline (o.Pipeline the
// pipeline's name, cp the partition's checkpoint), whose streams hold the messages of every
// partition: it returns each source sequence after cp.Seq among the messages read back, in
// decreasing order, and the caller tells its partition's from the others'.
func OrphanSeqs(ctx context.Context, o Options, cp checkpoint.Checkpoint) ([]uint64, error) {
	seen := map[uint64]bool{}
	var seqs []uint64
	err := New(o, cp).readBack(ctx, func(_ string, seq uint64) {
		if seq > cp.Seq && !seen[seq] {
			seen[seq] = true
			seqs = append(seqs, seq)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(seqs)
	slices.Reverse(seqs)
	return seqs, nil
}
