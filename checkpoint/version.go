package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/jetfold/jetfold/streams"
)

// A projection has versions: the first is the bucket named after it, a rebuild writes the
// next one into `<projection>_v<N>` (see [BucketName]) and, once caught up, switches to it.
// Which version is current is kept twice, written together by one atomic batch ([Switch]):
// in the checkpoint of the pipeline that writes the projection (Checkpoint.Buckets, which the
// pipeline itself follows) and in a pointer per projection, `version.<projection>` in the
// checkpoint bucket, which readers follow ([Current]). No pointer means version 1.

// Pointer says which bucket holds the current version of a projection.
type Pointer struct {
	// Bucket is the KV bucket of the current version.
	Bucket string `json:"bucket"`
	// Version is its number (1: the bucket named after the projection).
	Version int `json:"version"`
	// Pipeline is the pipeline that writes the projection; Seq the source sequence at which
	// it switched to this version, at Switched.
	Pipeline string    `json:"pipeline,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	Switched time.Time `json:"switched,omitzero"`
}

// PointerKey is the key of projection's pointer in the checkpoint bucket. Pipeline names hold
// no dot, so it never names a checkpoint.
func PointerKey(projection string) string { return "version." + projection }

// RebuildKey is the key of the checkpoint of a rebuild of pipeline.
func RebuildKey(pipeline string) string { return pipeline + ".rebuild" }

// BucketName is the bucket of version v of projection: the projection's own name for version
// 1, `<projection>_v<v>` after.
func BucketName(projection string, v int) string {
	if v <= 1 {
		return projection
	}
	return projection + "_v" + strconv.Itoa(v)
}

// VersionOf returns the version that bucket holds of projection (0 when it holds none).
func VersionOf(projection, bucket string) int {
	if bucket == projection {
		return 1
	}
	n, err := strconv.Atoi(strings.TrimPrefix(bucket, projection+"_v"))
	if err != nil || n < 2 || !strings.HasPrefix(bucket, projection+"_v") {
		return 0
	}
	return n
}

// IsVersionName tells whether name has the form of a rebuilt version's bucket
// (`<something>_v<N>`, N ≥ 2), which a projection's own name must not have.
func IsVersionName(name string) bool {
	i := strings.LastIndex(name, "_v")
	if i <= 0 {
		return false
	}
	n, err := strconv.Atoi(name[i+2:])
	return err == nil && n >= 2 && name[i+2] != '0' && name[i+2] != '+'
}

// Bucket returns the bucket of projection at cp: the one cp names, or the projection's own.
func (cp Checkpoint) Bucket(projection string) string {
	if b := cp.Buckets[projection]; b != "" {
		return b
	}
	return projection
}

// Current returns the pointer of projection: which bucket readers read. A projection never
// rebuilt has none, and reads as version 1.
func Current(ctx context.Context, js jetstream.JetStream, projection string) (Pointer, error) {
	s, err := js.Stream(ctx, streams.KVStream(streams.CheckpointBucket))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Pointer{Bucket: projection, Version: 1}, nil
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("version of %s: %w", projection, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, streams.KVSubject(streams.CheckpointBucket, PointerKey(projection)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Pointer{Bucket: projection, Version: 1}, nil
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("version of %s: %w", projection, err)
	}
	var p Pointer
	if len(m.Data) == 0 || m.Header.Get("KV-Operation") != "" {
		return Pointer{Bucket: projection, Version: 1}, nil
	}
	if err := json.Unmarshal(m.Data, &p); err != nil || p.Bucket == "" {
		return Pointer{}, fmt.Errorf("version of %s: bad pointer %q", projection, m.Data)
	}
	return p, nil
}

// CurrentBucket returns the bucket readers of projection read (see [Current]).
func CurrentBucket(ctx context.Context, js jetstream.JetStream, projection string) (string, error) {
	p, err := Current(ctx, js, projection)
	return p.Bucket, err
}

// SwitchOptions configures [Store.Switch].
type SwitchOptions struct {
	// Pipeline is the pipeline whose checkpoint is replaced; Live is that checkpoint as last
	// loaded (its Revision is expected: a commit since fails the switch with [ErrFenced]).
	Pipeline string
	Live     Checkpoint
	// Next is the checkpoint that replaces it: it names the buckets of the new versions.
	Next Checkpoint
	// Done, when set, is a key deleted in the same batch (the rebuild's own checkpoint).
	Done string
}

// SwitchPart is one checkpoint a switch replaces: a partitioned pipeline has one per
// partition (see [PartitionKey]).
type SwitchPart struct {
	// Key is the checkpoint's key; Live the checkpoint as last loaded (its Revision is
	// expected), Next the one that replaces it.
	Key  string
	Live Checkpoint
	Next Checkpoint
}

// MaxSwitch is the most messages one switch writes: nats-server takes at most 1000 messages
// in an atomic batch (error 10199 above that). A switch writes one per checkpoint, one per
// key it deletes and one per pointer it moves.
const MaxSwitch = 1000

// Switch replaces the checkpoint of a pipeline and moves the pointers of the projections whose
// bucket Next changes, in one atomic batch of the checkpoint bucket: a reader, and the
// pipeline itself, find either the old versions with the old checkpoint or the new ones with
// the new. It fails with [ErrFenced], changing nothing, when the checkpoint is no longer at
// Live.Revision.
func (s *Store) Switch(ctx context.Context, js jetstream.JetStream, o SwitchOptions) (Checkpoint, error) {
	var done []string
	if o.Done != "" {
		done = []string{o.Done}
	}
	next, err := s.SwitchParts(ctx, js, o.Pipeline, []SwitchPart{{Key: o.Pipeline, Live: o.Live, Next: o.Next}}, done)
	if err != nil {
		return Checkpoint{}, err
	}
	return next[0], nil
}

// SwitchParts is [Store.Switch] for the checkpoints of several partitions of pipeline at
// once: one atomic batch writes every part's Next (each expecting its Live.Revision), moves
// the pointer of every projection whose bucket changes (Pointer.Seq is the highest of the
// parts' Next.Seq), and deletes the keys done. It fails with [ErrFenced], changing nothing,
// when any part's checkpoint moved since it was loaded, and refuses a switch of more than
// [MaxSwitch] messages. It returns the parts' new checkpoints, in order.
func (s *Store) SwitchParts(ctx context.Context, js jetstream.JetStream, pipeline string, parts []SwitchPart, done []string) ([]Checkpoint, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("switch %s: no checkpoint to write", pipeline)
	}
	now := time.Now().UTC()
	var seq uint64
	for _, p := range parts {
		seq = max(seq, p.Next.Seq)
	}
	var msgs []*nats.Msg
	moved := map[string]bool{}
	for _, p := range parts {
		for proj, bucket := range p.Next.Buckets {
			if p.Live.Bucket(proj) == bucket || moved[proj] {
				continue
			}
			moved[proj] = true
			b, _ := json.Marshal(Pointer{Bucket: bucket, Version: VersionOf(proj, bucket), Pipeline: pipeline, Seq: seq, Switched: now})
			msgs = append(msgs, &nats.Msg{Subject: streams.KVSubject(streams.CheckpointBucket, PointerKey(proj)), Data: b, Header: nats.Header{}})
		}
	}
	for _, key := range done {
		msgs = append(msgs, &nats.Msg{Subject: streams.KVSubject(streams.CheckpointBucket, key), Header: nats.Header{"KV-Operation": []string{"DEL"}}})
	}
	if n := len(msgs) + len(parts); n > MaxSwitch {
		return nil, fmt.Errorf("switch %s: %d messages (%d checkpoints, %d deletions, %d pointers), over the %d of one atomic batch",
			pipeline, n, len(parts), len(done), len(moved), MaxSwitch)
	}
	if err := allowAtomic(ctx, js); err != nil {
		return nil, err
	}
	next := make([]Checkpoint, len(parts))
	for i, p := range parts {
		next[i] = p.Next
		next[i].Committed = now
		b, err := json.Marshal(next[i])
		if err != nil {
			return nil, fmt.Errorf("switch %s: %w", p.Key, err)
		}
		msgs = append(msgs, &nats.Msg{Subject: streams.KVSubject(streams.CheckpointBucket, p.Key), Data: b, Header: nats.Header{
			jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(p.Live.Revision, 10)},
		}})
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, js, msgs)
	if IsWrongLastSequence(err) {
		return nil, fmt.Errorf("switch %s: a checkpoint moved since it was loaded: %w", pipeline, ErrFenced)
	}
	if err != nil {
		return nil, fmt.Errorf("switch %s: %w", pipeline, err)
	}
	// The batch is stored at consecutive sequences, the checkpoints last.
	for i, p := range parts {
		next[i].Revision = ack.Sequence - uint64(len(parts)-1-i)
		s.setRev(p.Key, next[i].Revision)
	}
	return next, nil
}

// allowAtomic lets the checkpoint bucket's stream take atomic batches (once per bucket).
func allowAtomic(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, streams.KVStream(streams.CheckpointBucket))
	if err != nil {
		return fmt.Errorf("checkpoint bucket: %w", err)
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("checkpoint bucket: allow atomic batches: %w", err)
	}
	return nil
}

// Delete deletes the checkpoint kept under key (a rebuild's, when it starts over), expecting
// the revision last loaded or committed.
func (s *Store) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	rev := s.revs[key]
	s.mu.Unlock()
	err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || IsWrongLastSequence(err) {
		return fmt.Errorf("delete checkpoint %s: %w", key, ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("delete checkpoint %s: %w", key, err)
	}
	s.setRev(key, 0)
	return nil
}
