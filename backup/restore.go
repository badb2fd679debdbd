package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/streams"
)

// RestoreOptions configures [Restore].
type RestoreOptions struct {
	// Pipelines, when set, are the pipelines of the configuration the archive is restored
	// for: Restore warns about the pipelines and projections that differ from the archive's,
	// and refuses ([ErrPartitions]) a pipeline they run in another number of partitions than
	// the archive's checkpoints were written with.
	Pipelines []*pipeline.Pipeline
	// NoStreamCheck skips the check that each pipeline's source stream reaches the sequences
	// the archive needs.
	NoStreamCheck bool
	// Replicas, when above 0, is the number of replicas of the buckets Restore creates,
	// instead of the number they had.
	Replicas int
	// TempDir is where an archive that cannot be read twice (not an io.ReadSeeker) is kept
	// while it is verified ("": os.TempDir()).
	TempDir string
}

// Result is what [Restore] did.
type Result struct {
	// Manifest is the archive's.
	Manifest Manifest
	// Keys is the number of projection keys written; Created the buckets created.
	Keys    int
	Created []string
	// Warnings are what Restore found worth saying without refusing: derived streams behind
	// the checkpoints, pipelines of the configuration that differ from the archive's.
	Warnings []string
}

// Restore restores the archive r (written by [Write]) through js into a system that holds
// none of its state, and returns what it did. Before it writes anything it reads the whole
// archive and checks it: [ErrTruncated], [ErrCorrupt], [ErrChecksum] or [ErrFormat] when it
// cannot be trusted; then the target: [ErrNotEmpty] naming each bucket that holds keys and
// each checkpoint (a pipeline's or any of its partitions'), pointer or control entry that
// exists; then, unless o.NoStreamCheck, the source streams: [ErrSource] for one that is
// missing, ends before the archive's keys or highest checkpoint, or starts after its lowest
// checkpoint (the events a pipeline or partition resumes at are gone); then, given
// o.Pipelines, [ErrPartitions] for a pipeline they run in another number of partitions than
// the archive's. Then it creates the buckets, writes the projection keys with their headers,
// the control entries, the version pointers, and the checkpoints (each partition's) last. r
// is read twice: an io.ReadSeeker (which must not change meanwhile) from where it is, anything
// else through a temporary copy. A failure while writing is returned with what failed; the
// target then holds part of the archive, and must be emptied before another try.
func Restore(ctx context.Context, js jetstream.JetStream, r io.Reader, o RestoreOptions) (Result, error) {
	src, cleanup, err := twice(r, o.TempDir)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	m, err := verify(src.first)
	if err != nil {
		return Result{}, err
	}
	res := Result{Manifest: *m}
	if err := checkTarget(ctx, js, m); err != nil {
		return res, err
	}
	warnings, err := checkStreams(ctx, js, m, !o.NoStreamCheck)
	if err != nil {
		return res, err
	}
	cw, err := compare(m, o.Pipelines)
	if err != nil {
		return res, err
	}
	res.Warnings = append(warnings, cw...)

	for _, b := range m.Buckets {
		created, err := createBucket(ctx, js, b, o.Replicas)
		if err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
		if created {
			res.Created = append(res.Created, b.Name)
		}
	}
	second, err := src.second()
	if err != nil {
		return res, err
	}
	res.Keys, err = write(ctx, js, m, second)
	return res, err
}

// source reads an archive twice: once to verify it, once to restore it.
type source struct {
	first  io.Reader
	second func() (io.Reader, error)
}

// twice makes r readable twice: an io.ReadSeeker is read again from where it was; anything
// else is copied to a temporary file in dir while it is read the first time.
func twice(r io.Reader, dir string) (source, func(), error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		at, err := rs.Seek(0, io.SeekCurrent)
		if err == nil {
			return source{first: rs, second: func() (io.Reader, error) {
				if _, err := rs.Seek(at, io.SeekStart); err != nil {
					return nil, fmt.Errorf("restore: read the archive again: %w", err)
				}
				return rs, nil
			}}, func() {}, nil
		}
	}
	f, err := os.CreateTemp(dir, "jetfold-restore-*.tar.gz")
	if err != nil {
		return source{}, nil, fmt.Errorf("restore: keep the archive while it is verified: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	return source{first: io.TeeReader(r, f), second: func() (io.Reader, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("restore: read the archive again: %w", err)
		}
		return f, nil
	}}, cleanup, nil
}

// fileSum is what verify found of a data file.
type fileSum struct {
	name    string
	size    int64
	sha     string
	entries int
	bad     error    // the first entry that does not decode
	keys    []string // of a metadata file
}

// verify reads the whole archive and checks it against its manifest, which it returns. A
// fault of the compressed stream is reported before what it may have caused in the files.
func verify(r io.Reader) (*Manifest, error) {
	var sums []fileSum
	var m *Manifest
	var bad error // the first fault of the archive's contents
	err := readArchive(r, func(h *tar.Header, body io.Reader) error {
		switch {
		case bad != nil:
			return nil
		case m != nil:
			bad = fmt.Errorf("%w: %s after the manifest", ErrCorrupt, h.Name)
		case h.Name == ManifestName:
			m = &Manifest{}
			b, err := io.ReadAll(body)
			if err != nil {
				return fmt.Errorf("read archive: manifest: %w", classify(err))
			}
			if err := json.Unmarshal(b, m); err != nil {
				bad = fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
			}
		case h.Typeflag != tar.TypeReg:
			bad = fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, h.Name)
		default:
			s, err := digest(h.Name, body)
			if err != nil {
				return err
			}
			sums = append(sums, s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, bad
	}
	if m == nil {
		return nil, fmt.Errorf("%w: no %s", ErrCorrupt, ManifestName)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if len(sums) != len(m.Files) {
		return nil, fmt.Errorf("%w: %d data files, the manifest lists %d", ErrCorrupt, len(sums), len(m.Files))
	}
	for i, f := range m.Files {
		s := sums[i]
		switch {
		case s.name != f.Name:
			return nil, fmt.Errorf("%w: file %d is %s, the manifest lists %s", ErrCorrupt, i+1, s.name, f.Name)
		case s.size != f.Size || s.sha != f.SHA256:
			return nil, fmt.Errorf("%w for %s", ErrChecksum, f.Name)
		case s.bad != nil:
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, f.Name, s.bad)
		case s.entries != f.Entries:
			return nil, fmt.Errorf("%w: %s holds %d entries, the manifest says %d", ErrCorrupt, f.Name, s.entries, f.Entries)
		}
		if err := checkMetaKeys(m, s); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// digest reads a data file: its size, SHA-256 and entries.
func digest(name string, body io.Reader) (fileSum, error) {
	s := fileSum{name: name}
	h := sha256.New()
	cr := &countingHash{h: h}
	meta := name == controlFile || name == pointersFile || name == checkpointsFile
	err := eachLine(io.TeeReader(body, cr), func(n int, line []byte) error {
		s.entries++
		e, err := decodeEntry(line)
		if err != nil && s.bad == nil {
			s.bad = fmt.Errorf("line %d: %v", n, err)
		}
		if meta {
			s.keys = append(s.keys, e.Key)
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("read archive: %s: %w", name, classify(err))
	}
	s.size, s.sha = cr.n, hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// countingHash hashes and counts what is written to it.
type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// checkMetaKeys checks the keys of a metadata file: those of the pipelines and projections
// of the manifest, of the kind the file holds.
func checkMetaKeys(m *Manifest, s fileSum) error {
	pipelines, projections, cps := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, p := range m.Pipelines {
		pipelines[p.Name] = true
		for _, pr := range p.Projections {
			projections[pr.Name] = true
		}
		if len(p.Partitions) == 0 {
			cps[p.Name] = true
		}
		for _, kc := range p.checkpoints() {
			cps[kc.key] = true
		}
	}
	for _, k := range s.keys {
		ok := false
		switch s.name {
		case controlFile:
			ok = pipelines[k]
		case checkpointsFile:
			ok = cps[k]
		case pointersFile:
			proj, isPtr := strings.CutPrefix(k, "version.")
			ok = isPtr && projections[proj]
		}
		if !ok {
			return fmt.Errorf("%w: %s holds key %q, of no pipeline, partition or projection of the manifest", ErrCorrupt, s.name, k)
		}
	}
	return nil
}

// checkTarget refuses a target that holds any of the archive's state.
func checkTarget(ctx context.Context, js jetstream.JetStream, m *Manifest) error {
	var errs []error
	for _, p := range m.Pipelines {
		for _, pr := range p.Projections {
			k, err := someKey(ctx, js, pr.Bucket)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			if k != "" {
				errs = append(errs, fmt.Errorf("%w: bucket %s (projection %s) holds keys (%s, ...)", ErrNotEmpty, pr.Bucket, pr.Name, k))
			}
		}
	}
	cps, _, err := openBucket(ctx, js, streams.CheckpointBucket)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	ctl, _, err := openBucket(ctx, js, control.Bucket)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	l := newLeader(js)
	exists := func(st jetstream.Stream, bucket, key, what string) error {
		if st == nil {
			return nil
		}
		e, err := getEntry(ctx, l, bucket, key)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if e != nil {
			errs = append(errs, fmt.Errorf("%w: %s exists (%s/%s)", ErrNotEmpty, what, bucket, key))
		}
		return nil
	}
	for _, p := range m.Pipelines {
		if err := exists(cps, streams.CheckpointBucket, p.Name, "the checkpoint of pipeline "+p.Name); err != nil {
			return err
		}
		if cps != nil {
			// Any partition's checkpoint, whatever the archive's partitions: restored beside
			// it, the pipeline would run from both, or refuse to start.
			keys, err := listKeysWithin(ctx, l, streams.CheckpointBucket, p.Name+".*")
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			for _, k := range keys {
				i, ok := partitionIndex(p.Name, k)
				if !ok {
					continue
				}
				if err := exists(cps, streams.CheckpointBucket, k, fmt.Sprintf("the checkpoint of partition %d of pipeline %s", i, p.Name)); err != nil {
					return err
				}
			}
		}
		if err := exists(cps, streams.CheckpointBucket, checkpoint.RebuildKey(p.Name), "a rebuild's checkpoint of pipeline "+p.Name); err != nil {
			return err
		}
		for _, pr := range p.Projections {
			if err := exists(cps, streams.CheckpointBucket, checkpoint.PointerKey(pr.Name), "the version pointer of projection "+pr.Name); err != nil {
				return err
			}
		}
		if err := exists(ctl, control.Bucket, p.Name, "the control entry of pipeline "+p.Name); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore refused: the target must hold none of the archive's state:\n%w", errors.Join(errs...))
	}
	return nil
}

// someKey returns a key of bucket that holds a value ("" when the bucket does not exist or
// holds none).
func someKey(ctx context.Context, js jetstream.JetStream, bucket string) (string, error) {
	st, _, err := openBucket(ctx, js, bucket)
	if err != nil || st == nil || st.CachedInfo().State.Msgs == 0 {
		return "", err
	}
	l := newLeader(js)
	keys, err := listKeys(ctx, l, bucket)
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		e, err := getEntry(ctx, l, bucket, k)
		if err != nil || e != nil {
			return k, err
		}
	}
	return "", nil
}

// checkStreams checks each pipeline's source stream (refusing, when strict) and its derived
// streams (warnings).
func checkStreams(ctx context.Context, js jetstream.JetStream, m *Manifest, strict bool) ([]string, error) {
	var errs []error
	var warnings []string
	streamState := func(name string) (*jetstream.StreamState, error) {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("restore: stream %s: %w", name, err)
		}
		s := st.CachedInfo().State
		return &s, nil
	}
	lastSeq := func(name string) (uint64, bool, error) {
		s, err := streamState(name)
		if s == nil {
			return 0, false, err
		}
		return s.LastSeq, true, nil
	}
	for _, p := range m.Pipelines {
		// The last sequence it needs (its keys' and the highest checkpoint's) and the first it
		// reads (after the lowest checkpoint: a partition resumes after its own), by whom.
		need, next, resumer := p.MaxKeySeq, uint64(0), "the pipeline"
		cps := p.checkpoints()
		for _, kc := range cps {
			if kc.cp.Initial {
				continue
			}
			need = max(need, kc.cp.Seq)
			if next == 0 || kc.cp.Seq+1 < next {
				next = kc.cp.Seq + 1
				if kc.index >= 0 {
					resumer = fmt.Sprintf("its partition %d", kc.index)
				}
			}
		}
		if strict && need > 0 {
			s, err := streamState(p.Stream)
			if err != nil {
				return nil, err
			}
			switch {
			case s == nil:
				errs = append(errs, fmt.Errorf("%w: stream %s of pipeline %s does not exist: restore the streams first", ErrSource, p.Stream, p.Name))
			case s.LastSeq < need:
				errs = append(errs, fmt.Errorf("%w: stream %s of pipeline %s ends at sequence %d, the archive needs %d (its checkpoints and keys): restore a backup of the stream taken after this one", ErrSource, p.Stream, p.Name, s.LastSeq, need))
			case next > 0 && s.FirstSeq > next:
				errs = append(errs, fmt.Errorf("%w: stream %s of pipeline %s starts at sequence %d, %s resumes at %d: the events between are gone (acknowledged on interest retention, or removed by limits) and the restored projections would miss them", ErrSource, p.Stream, p.Name, s.FirstSeq, resumer, next))
			}
		}
		// Per derived stream, the highest sequence a checkpoint recorded.
		outputs := map[string]uint64{}
		for _, kc := range cps {
			for name, seq := range kc.cp.Outputs {
				outputs[name] = max(outputs[name], seq)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(outputs)) {
			seq := outputs[name]
			last, ok, err := lastSeq(name)
			if err != nil {
				return nil, err
			}
			if !ok || last < seq {
				warnings = append(warnings, fmt.Sprintf("stream %s ends at sequence %d, before the %d the checkpoints of %s recorded: it was not restored, or from an older backup; derived events the pipeline publishes again after its next crash are dropped only within the stream's duplicate window until it passes %d", name, last, seq, p.Name, seq))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("restore refused:\n%w", errors.Join(errs...))
	}
	return warnings, nil
}

// compare returns warnings for the pipelines of a configuration that differ from the archive's,
// and [ErrPartitions] for those it runs in another number of partitions than the archive's
// checkpoints were written with (a runner would refuse to start them).
func compare(m *Manifest, ps []*pipeline.Pipeline) ([]string, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	var out []string
	var errs []error
	inArchive := map[string]Pipeline{}
	for _, p := range m.Pipelines {
		inArchive[p.Name] = p
	}
	inConfig := map[string]bool{}
	for _, p := range ps {
		inConfig[p.Name] = true
		ap, ok := inArchive[p.Name]
		if !ok {
			out = append(out, fmt.Sprintf("pipeline %s is not in the archive: it starts where its source.start says", p.Name))
			continue
		}
		var have []string
		for _, pr := range ap.Projections {
			have = append(have, pr.Name)
		}
		if !slices.Equal(have, p.Projections) {
			out = append(out, fmt.Sprintf("pipeline %s: the archive holds projections %s, the configuration writes %s", p.Name, strings.Join(have, ", "), strings.Join(p.Projections, ", ")))
		}
		archived, configured := ap.PartitionCount(), max(p.Config.Partitions, 1)
		if archived == configured {
			continue
		}
		if len(ap.checkpoints()) > 0 {
			errs = append(errs, fmt.Errorf("%w: pipeline %s: the archive's checkpoints are of %s, the configuration runs it in %s: restored, it would refuse to start (its keys would move between partitions). Restore with the configuration it was backed up with (partitions: %d)",
				ErrPartitions, p.Name, partitionsText(archived), partitionsText(configured), archived))
			continue
		}
		out = append(out, fmt.Sprintf("pipeline %s: the archive holds it in %s, the configuration runs it in %s; the archive has no checkpoint of it (it never committed, or the archive predates backups of partitions), so it starts where its source.start says",
			p.Name, partitionsText(archived), partitionsText(configured)))
	}
	for _, p := range m.Pipelines {
		if !inConfig[p.Name] {
			out = append(out, fmt.Sprintf("pipeline %s is in the archive, not in the configuration: restored anyway", p.Name))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("restore refused: the configuration does not run the archive's pipelines as they were backed up:\n%w", errors.Join(errs...))
	}
	return out, nil
}

// partitionsText returns "one partition", "3 partitions".
func partitionsText(n int) string {
	if n <= 1 {
		return "one partition"
	}
	return strconv.Itoa(n) + " partitions"
}

// createBucket creates bucket b with the settings it had (replicas: that many when above 0),
// or, when it exists (empty), lets it take what its entries need; it tells whether it
// created it.
func createBucket(ctx context.Context, js jetstream.JetStream, b Bucket, replicas int) (bool, error) {
	st, err := js.Stream(ctx, streams.KVStream(b.Name))
	c := b.Config
	if err == nil {
		have := st.CachedInfo().Config
		if c == nil || (have.AllowMsgTTL || !c.AllowMsgTTL) && (have.AllowAtomicPublish || !c.AllowAtomicPublish) {
			return false, nil
		}
		have.AllowMsgTTL = have.AllowMsgTTL || c.AllowMsgTTL
		have.AllowAtomicPublish = have.AllowAtomicPublish || c.AllowAtomicPublish
		if _, err := js.UpdateStream(ctx, have); err != nil {
			return false, fmt.Errorf("bucket %s: %w", b.Name, err)
		}
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, fmt.Errorf("bucket %s: %w", b.Name, err)
	}
	if c == nil {
		_, err := streams.EnsureBucket(ctx, js, b.Name)
		return err == nil, err
	}
	kvc := jetstream.KeyValueConfig{
		Bucket: b.Name, Description: c.Description, MaxValueSize: c.MaxMsgSize,
		History: uint8(max(1, min(c.MaxMsgsPerSubject, 64))), TTL: c.MaxAge, MaxBytes: c.MaxBytes, Storage: c.Storage,
		Replicas: c.Replicas, Compression: c.Compression != jetstream.NoCompression, LimitMarkerTTL: c.SubjectDeleteMarkerTTL,
	}
	if replicas > 0 {
		kvc.Replicas = replicas
	}
	if _, err := js.CreateKeyValue(ctx, kvc); err != nil {
		return false, fmt.Errorf("create bucket %s: %w", b.Name, err)
	}
	if c.AllowMsgTTL || c.AllowAtomicPublish {
		st, err := js.Stream(ctx, streams.KVStream(b.Name))
		if err != nil {
			return true, fmt.Errorf("bucket %s: %w", b.Name, err)
		}
		cfg := st.CachedInfo().Config
		cfg.AllowMsgTTL = cfg.AllowMsgTTL || c.AllowMsgTTL
		cfg.AllowAtomicPublish = cfg.AllowAtomicPublish || c.AllowAtomicPublish
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return true, fmt.Errorf("bucket %s: %w", b.Name, err)
		}
	}
	return true, nil
}

// write writes the archive's entries, file after file: projection keys through a window of
// asynchronous publishes, jetfold's own entries one at a time, each only where the key has
// no value. It returns the number of projection keys written.
func write(ctx context.Context, js jetstream.JetStream, m *Manifest, r io.Reader) (int, error) {
	// A context of its own for the window, whose async limit nothing else shares.
	pub, err := streams.NewPublisher(js.Conn())
	if err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	defer pub.CleanupPublisher()
	keys := 0
	err = readArchive(r, func(h *tar.Header, body io.Reader) error {
		if h.Name == ManifestName {
			return nil
		}
		b, ok := m.bucketOf(h.Name)
		if !ok {
			return fmt.Errorf("restore: %w: %s changed since it was verified", ErrCorrupt, h.Name)
		}
		if b.Projection == "" {
			return eachEntry(h.Name, body, func(e Entry) error { return create(ctx, js, b.Name, e, m) })
		}
		w := streams.NewWindow(pub, streams.DefaultWindow)
		err := eachEntry(h.Name, body, func(e Entry) error {
			msg, err := e.msg(b.Name, m)
			if err != nil {
				return err
			}
			keys++
			return w.Publish(ctx, msg)
		})
		if ferr := w.Flush(ctx); err == nil {
			err = ferr
		}
		if err != nil {
			return fmt.Errorf("restore: bucket %s: %w", b.Name, err)
		}
		return nil
	})
	return keys, err
}

// eachEntry calls fn with every entry of a data file.
func eachEntry(name string, body io.Reader, fn func(Entry) error) error {
	return eachLine(body, func(n int, line []byte) error {
		e, err := decodeEntry(line)
		if err != nil {
			return fmt.Errorf("%w: %s line %d changed since it was verified: %v", ErrCorrupt, name, n, err)
		}
		return fn(e)
	})
}

// msg returns the KV message that writes e into bucket: its value and headers, and what was
// left of its TTL when the backup of m was taken.
func (e Entry) msg(bucket string, m *Manifest) (*nats.Msg, error) {
	data, err := e.data()
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, e.Key, err)
	}
	h := nats.Header{}
	for k, v := range e.Headers {
		if !strings.HasPrefix(k, "Nats-") {
			h[k] = v
		}
	}
	if ttl, ok := e.remainingTTL(m.Created); ok {
		h.Set(jetstream.MsgTTLHeader, ttl)
	}
	return &nats.Msg{Subject: streams.KVSubject(bucket, e.Key), Data: data, Header: h}, nil
}

// create writes e into bucket, expecting the key to have no value at all.
func create(ctx context.Context, js jetstream.JetStream, bucket string, e Entry, m *Manifest) error {
	msg, err := e.msg(bucket, m)
	if err != nil {
		return err
	}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		if checkpoint.IsWrongLastSequence(err) {
			return fmt.Errorf("restore: %w: %s/%s was written during the restore (is a processor running?)", ErrNotEmpty, bucket, e.Key)
		}
		return fmt.Errorf("restore: write %s/%s: %w", bucket, e.Key, err)
	}
	return nil
}
