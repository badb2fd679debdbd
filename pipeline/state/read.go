package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/streams"
)

// ErrNoState is returned by [Read] for a key without state.
var ErrNoState = errors.New("no state for key")

// Value is a projection value as read back, with its metadata.
type Value struct {
	Projection string          `json:"projection"`
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"state"`
	Seq        uint64          `json:"seq"`
	Revision   uint64          `json:"revision"`
	Time       *time.Time      `json:"time,omitempty"`
}

// Read reads the committed state of key in the current version of projection (see
// checkpoint.Current). It returns [ErrNoState] when the key (or the projection) has none.
func Read(ctx context.Context, js jetstream.JetStream, projection, key string) (Value, error) {
	bucket, err := checkpoint.CurrentBucket(ctx, js, projection)
	if err != nil {
		return Value{}, err
	}
	s, err := js.Stream(ctx, streams.KVStream(bucket))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Value{}, fmt.Errorf("projection %s: %w", projection, ErrNoState)
	}
	if err != nil {
		return Value{}, fmt.Errorf("projection %s: %w", projection, err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, streams.KVSubject(bucket, streams.EncodeKey(key)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Value{}, fmt.Errorf("%s/%s: %w", projection, key, ErrNoState)
	}
	if err != nil {
		return Value{}, fmt.Errorf("read %s/%s: %w", projection, key, err)
	}
	meta := ReadMeta(msg.Header)
	if meta.Deleted {
		return Value{}, fmt.Errorf("%s/%s: %w", projection, key, ErrNoState)
	}
	st := Value{Projection: projection, Key: key, Value: msg.Data, Revision: msg.Sequence, Seq: meta.Seq}
	if !meta.Time.IsZero() {
		st.Time = &meta.Time
	}
	return st, nil
}
