package casetest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/dlq"
	"github.com/jetfold/jetfold/streams"
)

// Actual is what the pipelines made of a case's events.
type Actual struct {
	// Projections are the projections the pipelines write, in the order of the
	// configuration, each with every key it holds.
	Projections []Projection
	// Derived are the derived events, by pipeline in the order of the configuration, then
	// in the order of their streams.
	Derived []Derived
	// DeadLetters are the dead letters, by pipeline in the order of the configuration, then
	// in the order they were written.
	DeadLetters []DeadLetter
}

// Projection is the content of one projection.
type Projection struct {
	// Name is the projection's name.
	Name string
	// Keys are its keys and values, sorted by key.
	Keys []KeyValue
}

// KeyValue is one key of a projection and its value.
type KeyValue struct {
	// Key is the key as the pipelines compute it (decoded from its KV form).
	Key string
	// Value is the stored value, JSON.
	Value json.RawMessage
}

// Derived is one derived event.
type Derived struct {
	// Pipeline is the pipeline that emitted it (from ce-source).
	Pipeline string
	// Subject is its subject.
	Subject string
	// Type is its CloudEvents type (ce-type).
	Type string
	// Data is its payload (JSON for what emit writes).
	Data []byte
}

// DeadLetter is one dead letter.
type DeadLetter struct {
	// Pipeline is the pipeline that wrote it.
	Pipeline string
	// Subject is the subject of the source event, or of the derived event JetStream refused.
	Subject string
	// Reason is why (Jetfold-Error).
	Reason string
}

// collect reads what the pipelines ps of cfg made: their projections, the derived events
// in the declared streams (every message but the case's own events, published, and dead
// letters), and their dead letters.
func collect(ctx context.Context, js jetstream.JetStream, cfg *config.Config, ps []*pipeline.Pipeline, published map[string]map[uint64]bool) (Actual, error) {
	var a Actual
	seen := map[string]bool{}
	for _, p := range ps {
		for _, proj := range p.Projections {
			if seen[proj] {
				continue
			}
			seen[proj] = true
			kvs, err := readProjection(ctx, js, proj)
			if err != nil {
				return a, err
			}
			a.Projections = append(a.Projections, Projection{Name: proj, Keys: kvs})
		}
	}

	order := map[string]int{}
	for i, p := range ps {
		order[p.Name] = i
	}
	type placed struct {
		d           Derived
		stream, seq int
	}
	var derived []placed
	for si, s := range cfg.Streams {
		msgs, err := readStream(ctx, js, s.Name)
		if err != nil {
			return a, err
		}
		for _, m := range msgs {
			if published[s.Name][m.Sequence] || strings.HasPrefix(m.Subject, "_jetfold.") {
				continue
			}
			d := Derived{
				Pipeline: strings.TrimPrefix(m.Header.Get("ce-source"), "jetfold/"),
				Subject:  m.Subject, Type: m.Header.Get("ce-type"), Data: m.Data,
			}
			derived = append(derived, placed{d: d, stream: si, seq: int(m.Sequence)})
		}
	}
	slices.SortStableFunc(derived, func(x, y placed) int {
		px, okx := order[x.d.Pipeline]
		py, oky := order[y.d.Pipeline]
		if !okx {
			px = len(ps)
		}
		if !oky {
			py = len(ps)
		}
		return cmp.Or(cmp.Compare(px, py), cmp.Compare(x.stream, y.stream), cmp.Compare(x.seq, y.seq))
	})
	for _, d := range derived {
		a.Derived = append(a.Derived, d.d)
	}

	for _, p := range ps {
		letters, err := dlq.List(ctx, js, p.Name, dlq.Filter{})
		if err != nil {
			return a, err
		}
		for _, l := range letters {
			a.DeadLetters = append(a.DeadLetters, DeadLetter{Pipeline: p.Name, Subject: l.Subject(), Reason: l.Reason})
		}
	}
	return a, nil
}

// readProjection returns every key of the projection's bucket and its value, sorted by key.
func readProjection(ctx context.Context, js jetstream.JetStream, proj string) ([]KeyValue, error) {
	kv, err := js.KeyValue(ctx, proj)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", proj, err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection %s: keys: %w", proj, err)
	}
	var stored []string
	for k := range lister.Keys() {
		stored = append(stored, k)
	}
	var out []KeyValue
	for _, k := range stored {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("projection %s: key %s: %w", proj, k, err)
		}
		key, err := streams.DecodeKey(k)
		if err != nil {
			return nil, fmt.Errorf("projection %s: %w", proj, err)
		}
		out = append(out, KeyValue{Key: key, Value: json.RawMessage(e.Value())})
	}
	slices.SortFunc(out, func(x, y KeyValue) int { return strings.Compare(x.Key, y.Key) })
	return out, nil
}

// readStream returns every message of the stream, in order.
func readStream(ctx context.Context, js jetstream.JetStream, name string) ([]*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	st := s.CachedInfo().State
	var out []*jetstream.RawStreamMsg
	if st.Msgs == 0 {
		return nil, nil
	}
	for seq := st.FirstSeq; seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: message %d: %w", name, seq, err)
		}
		out = append(out, m)
	}
	return out, nil
}
