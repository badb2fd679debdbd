package backup

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
)

// Format is the version of the archive format that [Write] writes and [Restore] reads.
const Format = 1

// ManifestName is the name of the manifest in the archive, its last file.
const ManifestName = "manifest.json"

// Names of the metadata files, in the order a restore writes them.
const (
	controlFile     = "meta/control.jsonl"
	pointersFile    = "meta/pointers.jsonl"
	checkpointsFile = "meta/checkpoints.jsonl"
)

var (
	// ErrTruncated is returned by [Restore] for an archive that ends early.
	ErrTruncated = errors.New("archive truncated")
	// ErrCorrupt is returned by [Restore] for an archive that is not a valid gzip-compressed
	// tar file of this format, or whose manifest does not match its files.
	ErrCorrupt = errors.New("archive corrupt")
	// ErrChecksum is returned by [Restore] for a file whose SHA-256 differs from the manifest's.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrFormat is returned by [Restore] for an archive of a format version it cannot read.
	ErrFormat = errors.New("unsupported archive format")
	// ErrNotEmpty is returned by [Restore] when the target holds keys, a checkpoint, a
	// pointer or a control entry that the archive would write.
	ErrNotEmpty = errors.New("target not empty")
	// ErrSource is returned by [Restore] when a pipeline's source stream is missing, ends
	// before the sequences the archive needs, or starts after the pipeline's checkpoint.
	ErrSource = errors.New("source stream not ready")
	// ErrChanged is returned by [Write] when a bucket it had to read was deleted meanwhile
	// (a rebuild dropped it after a switch), or a projection kept switching versions.
	ErrChanged = errors.New("changed while it was backed up")
	// ErrPartitions is returned by [Write] for a pipeline whose checkpoints were written with
	// another number of partitions than its configuration says, and by [Restore] when the
	// configuration given runs a pipeline of the archive in another number of partitions than
	// the archive's checkpoints were written with: a runner refuses to start such a pipeline
	// (its keys would move between partitions, and events be applied twice).
	ErrPartitions = errors.New("partition count differs")
)

// Manifest describes an archive: the last file of it, manifest.json.
type Manifest struct {
	// Format is the archive's format version ([Format]).
	Format int `json:"format"`
	// Jetfold is the version of the jetfold that wrote it, when known.
	Jetfold string `json:"jetfold,omitempty"`
	// Created is when the backup began.
	Created time.Time `json:"created"`
	// Pipelines are the pipelines backed up, in the order given.
	Pipelines []Pipeline `json:"pipelines"`
	// Buckets are the buckets that have data files, in the order of their files.
	Buckets []Bucket `json:"buckets"`
	// Files are the data files, in the archive's order (the manifest comes after them).
	Files []File `json:"files"`
}

// Pipeline is what an archive holds of a pipeline.
type Pipeline struct {
	Name string `json:"name"`
	// Stream is its source stream.
	Stream string `json:"stream"`
	// Checkpoint is its checkpoint as read (nil: it never committed, or it runs in
	// partitions).
	Checkpoint *checkpoint.Checkpoint `json:"checkpoint"`
	// Partitions are, for a pipeline that runs as `partitions: N` (N > 1), its N partitions in
	// index order, each with its own checkpoint; none for a pipeline of one partition. (An
	// archive written before backups kept partitions has none: it holds no checkpoint of a
	// partitioned pipeline.)
	Partitions []Partition `json:"partitions,omitempty"`
	// Projections are the projections it writes.
	Projections []Projection `json:"projections"`
	// MaxKeySeq is the highest Jetfold-Seq of its keys: the source stream must reach it.
	MaxKeySeq uint64 `json:"max_key_seq"`
	// KeysAhead counts its keys whose Jetfold-Seq is past the checkpoint (see the package
	// documentation: they were written after it, which the restored pipeline handles). For a
	// partitioned pipeline, past the highest of its partitions' checkpoints: a key is ahead of
	// its own partition's at least (which partition a key belongs to cannot always be told
	// from the projection's key: a dedupe's keys are event ids).
	KeysAhead int `json:"keys_ahead"`
	// Control is set when its control entry is kept (and Paused when it asks it to pause).
	Control bool `json:"control,omitempty"`
	Paused  bool `json:"paused,omitempty"`
	// RebuildSkipped is the version a rebuild in progress was writing, which is not kept.
	RebuildSkipped int `json:"rebuild_skipped,omitempty"`
}

// Partition is what an archive holds of a partition of a pipeline: its checkpoint, kept under
// checkpoint.PartitionKey(pipeline, Index).
type Partition struct {
	// Index is the partition's index, 0 to N-1.
	Index int `json:"index"`
	// Checkpoint is its checkpoint as read (nil: it never committed). Its Partitions is N, or
	// 0 when written before checkpoints recorded the count.
	Checkpoint *checkpoint.Checkpoint `json:"checkpoint"`
}

// PartitionCount is the number of partitions p runs as: len(p.Partitions), or 1.
func (p Pipeline) PartitionCount() int { return max(len(p.Partitions), 1) }

// keyedCheckpoint is a checkpoint of a pipeline with its key in the checkpoint bucket and, for
// a partition's, its index (-1: the pipeline's own).
type keyedCheckpoint struct {
	key   string
	index int
	cp    *checkpoint.Checkpoint
}

// checkpoints returns the checkpoints p holds: its own, or each of its partitions' that
// committed, in index order.
func (p Pipeline) checkpoints() []keyedCheckpoint {
	var out []keyedCheckpoint
	if p.Checkpoint != nil {
		out = append(out, keyedCheckpoint{key: p.Name, index: -1, cp: p.Checkpoint})
	}
	for _, pt := range p.Partitions {
		if pt.Checkpoint != nil {
			out = append(out, keyedCheckpoint{key: checkpoint.PartitionKey(p.Name, pt.Index), index: pt.Index, cp: pt.Checkpoint})
		}
	}
	return out
}

// partitionIndex returns the index of the partition of pipeline whose checkpoint key is key
// (checkpoint.PartitionKey), and whether key is one.
func partitionIndex(pipeline, key string) (int, bool) {
	rest, ok := strings.CutPrefix(key, pipeline+".p")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || checkpoint.PartitionKey(pipeline, i) != key {
		return 0, false
	}
	return i, true
}

// Projection is what an archive holds of a projection: its current version.
type Projection struct {
	Name string `json:"name"`
	// Bucket is the bucket of its current version, Version that version's number.
	Bucket  string `json:"bucket"`
	Version int    `json:"version"`
	// Pointer is set when its version pointer is kept (a rebuilt projection).
	Pointer bool `json:"pointer,omitempty"`
	// Keys is the number of keys kept.
	Keys int `json:"keys"`
}

// Bucket is a KV bucket of the archive, with the settings to create it again.
type Bucket struct {
	Name string `json:"name"`
	// Projection is the projection whose current version it holds ("" for jetfold's own
	// buckets).
	Projection string `json:"projection,omitempty"`
	// Keys is the number of entries kept.
	Keys int `json:"keys"`
	// Config is its stream's configuration when it was backed up.
	Config *jetstream.StreamConfig `json:"config,omitempty"`
	// Files are its data files, in order.
	Files []string `json:"files"`
}

// File is a data file of the archive.
type File struct {
	Name string `json:"name"`
	// Size is its size in bytes, Entries its number of lines.
	Size    int64 `json:"size"`
	Entries int   `json:"entries"`
	// SHA256 is the hex SHA-256 of its contents.
	SHA256 string `json:"sha256"`
}

// Entry is a KV entry as the archive keeps it: one line of a data file.
type Entry struct {
	// Key is the KV key as stored (streams.EncodeKey of the entity key).
	Key string `json:"key"`
	// Value is the value: as text when it is valid UTF-8, else base64 with Base64 set.
	Value  string `json:"value"`
	Base64 bool   `json:"base64,omitempty"`
	// Headers are the value's headers, without those NATS adds or acts on (Nats-*), except
	// Nats-TTL.
	Headers nats.Header `json:"headers,omitempty"`
	// Revision is its revision (stream sequence) in the bucket backed up; Stored when the
	// server stored it.
	Revision uint64    `json:"revision"`
	Stored   time.Time `json:"stored"`
}

// entryOf returns the entry of a KV message of key.
func entryOf(key string, m *jetstream.RawStreamMsg) Entry {
	e := Entry{Key: key, Revision: m.Sequence, Stored: m.Time.UTC()}
	if utf8.Valid(m.Data) {
		e.Value = string(m.Data)
	} else {
		e.Value, e.Base64 = base64.StdEncoding.EncodeToString(m.Data), true
	}
	for k, v := range m.Header {
		if strings.HasPrefix(k, "Nats-") && k != jetstream.MsgTTLHeader {
			continue
		}
		if e.Headers == nil {
			e.Headers = nats.Header{}
		}
		e.Headers[k] = v
	}
	return e
}

// data returns the value's bytes.
func (e Entry) data() ([]byte, error) {
	if !e.Base64 {
		return []byte(e.Value), nil
	}
	return base64.StdEncoding.DecodeString(e.Value)
}

// ttl returns the entry's TTL and whether it has one (a TTL of "never" is none).
func (e Entry) ttl() (time.Duration, bool) {
	v := e.Headers.Get(jetstream.MsgTTLHeader)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(n) * time.Second, n > 0
	}
	d, err := time.ParseDuration(v)
	return d, err == nil && d > 0
}

// remainingTTL returns the header value of what was left of e's TTL at the instant at, at
// least a second.
func (e Entry) remainingTTL(at time.Time) (string, bool) {
	ttl, ok := e.ttl()
	if !ok {
		return "", false
	}
	// A value stored after the backup began has all of its TTL left.
	left := min(ttl-at.Sub(e.Stored), ttl)
	left = max(left.Truncate(time.Second), time.Second)
	return strconv.FormatInt(int64(left/time.Second), 10), true
}

// check tells whether m is well formed: a supported format, files with names, buckets whose
// files are listed, in the order of the archive.
func (m *Manifest) check() error {
	if m.Format != Format {
		return fmt.Errorf("%w: format %d (this jetfold reads format %d)", ErrFormat, m.Format, Format)
	}
	index := map[string]int{}
	for i, f := range m.Files {
		if f.Name == "" || f.Name == ManifestName {
			return fmt.Errorf("%w: manifest lists a file named %q", ErrCorrupt, f.Name)
		}
		if _, dup := index[f.Name]; dup {
			return fmt.Errorf("%w: manifest lists %s twice", ErrCorrupt, f.Name)
		}
		index[f.Name] = i
	}
	owned := map[string]bool{}
	for _, b := range m.Buckets {
		if b.Name == "" {
			return fmt.Errorf("%w: manifest lists a bucket without a name", ErrCorrupt)
		}
		n := 0
		for _, name := range b.Files {
			i, ok := index[name]
			if !ok || owned[name] {
				return fmt.Errorf("%w: bucket %s: file %s is not in the manifest's files, or another bucket's", ErrCorrupt, b.Name, name)
			}
			owned[name] = true
			n += m.Files[i].Entries
		}
		if b.Projection != "" && n != b.Keys {
			return fmt.Errorf("%w: bucket %s: %d keys, its files hold %d", ErrCorrupt, b.Name, b.Keys, n)
		}
	}
	for _, f := range m.Files {
		if !owned[f.Name] {
			return fmt.Errorf("%w: file %s belongs to no bucket", ErrCorrupt, f.Name)
		}
	}
	for _, p := range m.Pipelines {
		if p.Name == "" || strings.Contains(p.Name, ".") {
			return fmt.Errorf("%w: manifest lists a pipeline named %q", ErrCorrupt, p.Name)
		}
		if err := p.checkPartitions(); err != nil {
			return err
		}
	}
	return nil
}

// checkPartitions tells whether p's partitions are well formed: none, or at least two, indexed
// 0 to N-1 in order, each checkpoint written with N partitions (or before checkpoints recorded
// the count), and no checkpoint of the pipeline's own beside them.
func (p Pipeline) checkPartitions() error {
	n := len(p.Partitions)
	switch {
	case n == 0:
		return nil
	case n == 1:
		return fmt.Errorf("%w: pipeline %s has one partition listed (a pipeline of one partition lists none)", ErrCorrupt, p.Name)
	case p.Checkpoint != nil:
		return fmt.Errorf("%w: pipeline %s has both a checkpoint of its own and %d partitions", ErrCorrupt, p.Name, n)
	}
	for i, pt := range p.Partitions {
		if pt.Index != i {
			return fmt.Errorf("%w: pipeline %s: partition %d listed at position %d", ErrCorrupt, p.Name, pt.Index, i)
		}
		if cp := pt.Checkpoint; cp != nil && cp.Partitions != 0 && cp.Partitions != n {
			return fmt.Errorf("%w: pipeline %s: the checkpoint of partition %d records %d partitions, the manifest lists %d", ErrCorrupt, p.Name, i, cp.Partitions, n)
		}
	}
	return nil
}

// bucketOf returns the bucket a data file belongs to.
func (m *Manifest) bucketOf(file string) (Bucket, bool) {
	for _, b := range m.Buckets {
		for _, f := range b.Files {
			if f == file {
				return b, true
			}
		}
	}
	return Bucket{}, false
}
