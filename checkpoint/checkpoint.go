package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrFenced is returned when a write found a revision other than the one this instance
	// last read or wrote: another instance of the pipeline wrote in between.
	ErrFenced = errors.New("fenced: another instance wrote this pipeline's state")
	// ErrNotFound is returned by [Store.Load] for a pipeline that never committed.
	ErrNotFound = errors.New("no checkpoint")
)

// Checkpoint is the position up to which a pipeline's effects are committed.
type Checkpoint struct {
	// Seq is the last source stream sequence whose effects are fully committed.
	Seq uint64 `json:"seq"`
	// Stream is the source stream.
	Stream string `json:"stream"`
	// Committed is the wall time of the commit.
	Committed time.Time `json:"committed"`
	// Initial marks the checkpoint written when a pipeline first starts, before any event:
	// the pipeline starts where source.start says, not after Seq.
	Initial bool `json:"initial,omitempty"`
	// Outputs holds, per stream that received derived events or dead letters, the last
	// sequence acknowledged up to this commit. After a crash, the messages past these
	// sequences are the only ones a restart may publish again, so they are read back and
	// not published twice, even past the streams' duplicate windows.
	Outputs map[string]uint64 `json:"outputs,omitempty"`
	// Watermark is the pipeline's watermark at the checkpoint: the greatest event time read
	// up to it (see operators.Clock).
	Watermark time.Time `json:"watermark,omitzero"`
	// Definitions holds, per projection the pipeline writes, the definition of the operators
	// that write it (their configuration, as canonical JSON) when the checkpoint was written:
	// a start that finds another says what changed.
	Definitions map[string]string `json:"definitions,omitempty"`
	// Buckets names, per projection whose current version is not its first, the bucket that
	// holds it (see [BucketName]); a projection it does not name is in the bucket of its own
	// name. Every commit keeps it; a rebuild's switch changes it ([Store.Switch]).
	Buckets map[string]string `json:"buckets,omitempty"`
	// Switched is set by a rebuild's switch, and kept by every commit after it: a process
	// that runs the definitions the rebuild replaced (an old file) must not run the pipeline.
	Switched *Switched `json:"switched,omitempty"`
	// Partitions is the pipeline's number of partitions (config partitions) when the
	// checkpoint was written, 0 for one: a partition's keys are those of its index among that
	// many, so a checkpoint is a position of its partition only under the same count.
	Partitions int `json:"partitions,omitempty"`
	// Rebuild describes the rebuild whose checkpoint this is (nil for a pipeline's own).
	Rebuild *Rebuild `json:"rebuild,omitempty"`
	// Revision is the KV revision the checkpoint was read at or written as (not stored).
	Revision uint64 `json:"-"`
}

// Switched describes the switch to rebuilt versions (see Checkpoint.Switched).
type Switched struct {
	// Version is the version switched to; By the process that switched.
	Version int    `json:"version"`
	By      string `json:"by,omitempty"`
	// Replaced are the definitions of the pipeline's projections before the switch.
	Replaced map[string]string `json:"replaced,omitempty"`
}

// Rebuild describes a rebuild in progress (see Checkpoint.Rebuild).
type Rebuild struct {
	// Version is the version it writes; From where it started reading ("all", "seq:N",
	// "time:T"); Started when, and By which process.
	Version int       `json:"version"`
	From    string    `json:"from"`
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"`
	// Total is the number of source events to replay, as counted when it started.
	Total uint64 `json:"total,omitempty"`
}

// Store keeps one checkpoint per pipeline in a KV bucket, written with compare-and-set on the
// revision this instance last saw, so that of two instances only one can advance it.
type Store struct {
	kv   jetstream.KeyValue
	mu   sync.Mutex
	revs map[string]uint64
}

// NewStore returns a Store over kv.
func NewStore(kv jetstream.KeyValue) *Store {
	return &Store{kv: kv, revs: map[string]uint64{}}
}

// Load reads the checkpoint of pipeline and remembers its revision for the next [Store.Commit].
// It returns [ErrNotFound] when the pipeline never committed.
func (s *Store) Load(ctx context.Context, pipeline string) (Checkpoint, error) {
	e, err := s.kv.Get(ctx, pipeline)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.setRev(pipeline, 0)
		return Checkpoint{}, ErrNotFound
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("load checkpoint %s: %w", pipeline, err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return Checkpoint{}, fmt.Errorf("load checkpoint %s: %w", pipeline, err)
	}
	cp.Revision = e.Revision()
	s.setRev(pipeline, cp.Revision)
	return cp, nil
}

// Commit writes cp as the checkpoint of pipeline, expecting the revision last loaded or
// committed by this Store. It returns [ErrFenced] when another writer changed it in between.
func (s *Store) Commit(ctx context.Context, pipeline string, cp Checkpoint) (Checkpoint, error) {
	if cp.Committed.IsZero() {
		cp.Committed = time.Now().UTC()
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return cp, fmt.Errorf("commit checkpoint %s: %w", pipeline, err)
	}
	s.mu.Lock()
	rev := s.revs[pipeline]
	s.mu.Unlock()
	var next uint64
	if rev == 0 {
		next, err = s.kv.Create(ctx, pipeline, b)
	} else {
		next, err = s.kv.Update(ctx, pipeline, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || IsWrongLastSequence(err) {
		return cp, fmt.Errorf("commit checkpoint %s at revision %d: %w", pipeline, rev, ErrFenced)
	}
	if err != nil {
		return cp, fmt.Errorf("commit checkpoint %s: %w", pipeline, err)
	}
	cp.Revision = next
	s.setRev(pipeline, next)
	return cp, nil
}

func (s *Store) setRev(pipeline string, rev uint64) {
	s.mu.Lock()
	s.revs[pipeline] = rev
	s.mu.Unlock()
}

// JSWrongLastSequence is the JetStream error code for a failed expected-sequence check.
const JSWrongLastSequence = 10071

// IsWrongLastSequence tells whether err is JetStream's answer to a failed
// expected-last-sequence check (a write raced by another writer). A replicated stream (R>1)
// answers a write that races another one in flight on its subject with
// jetstream.JSErrCodeStreamWrongLastSequenceConstant (10164) instead: the same conflict.
func IsWrongLastSequence(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == JSWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
