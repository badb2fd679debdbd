// Package control holds what operators ask of a pipeline, for every process that runs it: today
// whether it is paused. The request is a KV entry per pipeline in [Bucket], so that every
// replica sees it, the one holding the pipeline's lease and those standing by (which then stay
// paused when they take over); a runner watches its entry (see pipeline.Runner).
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// Bucket is the KV bucket of the requests, one key per pipeline.
const Bucket = "jetfold_control"

// State is what is asked of a pipeline.
type State struct {
	// Paused asks the pipeline to commit what it has in hand and read nothing more until it
	// is resumed.
	Paused bool `json:"paused"`
	// By names who asked (a user, a process); Since is when.
	By    string    `json:"by,omitempty"`
	Since time.Time `json:"since,omitzero"`
}

// Set records s as the state asked of pipeline.
func Set(ctx context.Context, js jetstream.JetStream, pipeline string, s State) error {
	kv, err := streams.EnsureBucket(ctx, js, Bucket)
	if err != nil {
		return err
	}
	if s.Since.IsZero() {
		s.Since = time.Now().UTC()
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("control %s: %w", pipeline, err)
	}
	if _, err := kv.Put(ctx, pipeline, b); err != nil {
		return fmt.Errorf("control %s: %w", pipeline, err)
	}
	return nil
}

// Get returns the state asked of pipeline (the zero State when nothing was).
func Get(ctx context.Context, js jetstream.JetStream, pipeline string) (State, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("control %s: %w", pipeline, err)
	}
	e, err := kv.Get(ctx, pipeline)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("control %s: %w", pipeline, err)
	}
	return decode(e.Value()), nil
}

// Watch calls fn with the state asked of pipeline, first as it is now, then at every change,
// from a goroutine of its own, until stop is called.
func Watch(ctx context.Context, js jetstream.JetStream, pipeline string, fn func(State)) (stop func(), err error) {
	kv, err := streams.EnsureBucket(ctx, js, Bucket)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(context.WithoutCancel(ctx), pipeline)
	if err != nil {
		return nil, fmt.Errorf("control %s: watch: %w", pipeline, err)
	}
	go func() {
		seen := false
		for e := range w.Updates() {
			switch {
			case e == nil: // the current value is delivered, or there is none
				if !seen {
					fn(State{})
				}
			case e.Operation() == jetstream.KeyValuePut:
				fn(decode(e.Value()))
			default:
				fn(State{}) // deleted: nothing asked
			}
			seen = seen || e != nil
		}
	}()
	return func() { _ = w.Stop() }, nil
}

// decode reads a state; a value that is not one asks nothing.
func decode(b []byte) State {
	var s State
	_ = json.Unmarshal(b, &s)
	return s
}
