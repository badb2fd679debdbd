package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/pipeline/decode"
)

// Headers of a projection value. The value itself is the state as a plain JSON object; what
// jetfold needs to stay exactly-once travels in these headers.
const (
	// HeaderSeq is the last source sequence applied to the key.
	HeaderSeq = "Jetfold-Seq"
	// HeaderTime is the newest event time applied to the key (RFC3339Nano).
	HeaderTime = "Jetfold-Time"
	// HeaderWriter names the process that wrote the value.
	HeaderWriter = "Jetfold-Writer"
)

// Get implements [operators.Store] over the state cache; a miss reads the key's last value
// from its bucket (direct get), unless the cache knows the bucket holds no such key.
func (r *Runner) Get(ctx context.Context, proj, key string) (*operators.Entry, error) {
	if e, ok := r.cache.get(proj, key); ok {
		return e.view(), nil
	}
	e := newEntry(proj, key)
	if !r.cache.absent(proj, key) {
		r.pf.reads++
		if err := r.load(ctx, e); err != nil {
			return nil, err
		}
	}
	r.cache.put(e)
	return e.view(), nil
}

// view returns the entry as operators see it (State nil when the key has none).
func (e *entry) view() *operators.Entry { return &e.Entry }

// readRetryFor is about how long a KV read is retried while the connection is down.
const readRetryFor = 5 * time.Second

// disconnected tells whether err is the client's connection being down (reconnecting).
func disconnected(err error) bool {
	return errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// load reads e's committed value.
func (r *Runner) load(ctx context.Context, e *entry) error {
	s, ok := r.kvStreams[e.proj]
	if !ok {
		return fmt.Errorf("%w: projection %s not opened", errInfra, e.proj)
	}
	msg, err := s.GetLastMsgForSubject(ctx, e.subject())
	for wait := 10 * time.Millisecond; disconnected(err) && wait < readRetryFor; wait *= 2 {
		// A read is safe to repeat: wait for the client to reconnect rather than restart
		// the pipeline and lose the batch in hand.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: read %s/%s: %v", errInfra, e.proj, e.key, err)
		case <-time.After(wait):
		}
		msg, err = s.GetLastMsgForSubject(ctx, e.subject())
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: read %s/%s: %v", errInfra, e.proj, e.key, err)
	}
	e.rev = msg.Sequence
	meta := readMeta(msg.Header)
	if meta.deleted {
		return nil
	}
	st, err := decode.State(msg.Data)
	if err != nil {
		return fmt.Errorf("%w: value of %s/%s is not a JSON object: %v", errInfra, e.proj, e.key, err)
	}
	e.State, e.Seq, e.Time, e.Owned, e.Roomy = operators.NewRecord(r.p.shapes[e.proj], st), meta.seq, meta.time, r.p.inPlace, false
	return nil
}

// valueMeta is what the headers of a projection value say.
type valueMeta struct {
	deleted bool      // a KV delete or purge marker
	seq     uint64    // Jetfold-Seq (0 for a value jetfold did not write)
	time    time.Time // Jetfold-Time (zero when absent)
}

func readMeta(h nats.Header) valueMeta {
	var m valueMeta
	if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		m.deleted = true
	}
	if v := h.Get(HeaderSeq); v != "" {
		m.seq, _ = strconv.ParseUint(v, 10, 64)
	}
	if v := h.Get(HeaderTime); v != "" {
		m.time, _ = time.Parse(time.RFC3339Nano, v)
	}
	return m
}
