package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// LeaseBucket is the KV bucket that holds one lease per pipeline.
const LeaseBucket = "jetfold_leases"

// ErrHeld is returned by [Leases.AcquireWithin] when another process held the lease for the
// whole wait.
var ErrHeld = errors.New("another process holds the lease")

// ErrLeaseLost is the cause of a lease context's cancellation when the lease was lost.
var ErrLeaseLost = errors.New("lease lost")

// ErrYielded is the cause of a lease context's cancellation when another process asked for
// the lease ([Leases.Yield]): the holder finishes what it has in hand, releases the lease and
// stands by.
var ErrYielded = errors.New("lease asked for")

// Leases grants per-pipeline leases: of all processes running a pipeline, the one holding its
// lease processes it, the others wait. A lease is a KV entry with a per-message TTL that its
// holder renews every TTL/4; when the holder dies, the entry expires and a waiting process,
// which watches it, takes it over at once (it also takes a released one at once). A holder whose last successful renewal was sent more than TTL/2 ago gives the
// lease up on its own, before anyone else can take it (self-fencing); the expected-revision writes of the commit protocol
// still protect the state if a holder is paused past that (fencing).
type Leases struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue // the lease bucket (Members lists it)
	stream jetstream.Stream
	ttl    time.Duration
	holder string
	dead   func(string) bool
	log    *slog.Logger
	quiet  bool // AcquireWithin does not log that it stands by (see Quiet)
}

// Quiet returns leases that do not log while they wait for a lease another process holds:
// for callers that report it their own way (a rebuild's lock, its hand-over).
func (l *Leases) Quiet() *Leases {
	q := *l
	q.quiet = true
	return &q
}

// Holder returns the process that holds the lease of name ("" when free, or held by this
// process).
func (l *Leases) Holder(ctx context.Context, name string) (string, error) {
	_, holder, err := l.current(ctx, "$KV."+LeaseBucket+"."+name)
	return holder, err
}

// LeaseOptions configures [OpenLeases].
type LeaseOptions struct {
	// TTL is how long a lease outlives its holder's last renewal (default 5s, at least 1s).
	TTL time.Duration
	// Holder names this process; it must differ between processes running at once.
	Holder string
	// Dead, when set, tells whether the process named holder is known to be gone (a
	// process of this host that no longer runs): its lease is then taken at once instead of
	// after its TTL, so that a process restarted after a crash does not wait.
	Dead func(holder string) bool
	// Logger receives lease events; nil discards them.
	Logger *slog.Logger
}

// OpenLeases opens (creating when missing) the lease bucket.
func OpenLeases(ctx context.Context, js jetstream.JetStream, o LeaseOptions) (*Leases, error) {
	if o.TTL == 0 {
		o.TTL = 5 * time.Second
	}
	if o.TTL < time.Second {
		return nil, fmt.Errorf("lease ttl %s: want at least 1s", o.TTL)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// Processes that start at once race to create the bucket: the losers' lookup of its
	// stream may find it missing for a moment, or go unanswered (see streams.Retry).
	var (
		kv jetstream.KeyValue
		s  jetstream.Stream
	)
	err := streams.Retry(ctx, streams.RetryOptions{Logger: o.Logger, What: "lease bucket",
		Also: func(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) }},
		func(ctx context.Context) error {
			var err error
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: LeaseBucket, History: 1, Storage: jetstream.FileStorage, LimitMarkerTTL: time.Second, Replicas: streams.Replicas(js),
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, LeaseBucket)
			}
			if err != nil {
				return err
			}
			s, err = js.Stream(ctx, "KV_"+LeaseBucket)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	return &Leases{js: js, kv: kv, stream: s, ttl: o.TTL, holder: o.Holder, dead: o.Dead, log: o.Logger}, nil
}

// TTL returns how long a lease outlives its holder's last renewal.
func (l *Leases) TTL() time.Duration { return l.ttl }

type leaseValue struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
	// Yield names the process that asked the holder for the lease (see Leases.Yield).
	Yield string `json:"yield,omitempty"`
	// Nonce is drawn at each acquisition: a holder that finds its name on the entry tells
	// its own write (a renewal whose reply was lost) from another instance's of that name.
	Nonce string `json:"nonce,omitempty"`
}

// Acquire waits until this process holds the lease of name, or ctx ends. The returned
// context is cancelled, with cause [ErrLeaseLost], when the lease is lost; release gives the
// lease up (call it when done, to let a standby take over at once).
func (l *Leases) Acquire(ctx context.Context, name string) (held context.Context, release func(), err error) {
	return l.AcquireWithin(ctx, name, 0)
}

// AcquireWithin is [Leases.Acquire] that stands by at most within (0: for ever): then it
// returns [ErrHeld], naming the holder.
func (l *Leases) AcquireWithin(ctx context.Context, name string, within time.Duration) (held context.Context, release func(), err error) {
	subject := "$KV." + LeaseBucket + "." + name
	waiting := false
	var deadline <-chan time.Time
	if within > 0 {
		t := time.NewTimer(within)
		defer t.Stop()
		deadline = t.C
	}
	// A standby wakes when the entry changes (released, expired: the bucket's markers, taken
	// by another), and looks again every TTL/4 besides, for a watch that misses or fails.
	var (
		watch   jetstream.KeyWatcher
		changed <-chan jetstream.KeyValueEntry
	)
	defer func() {
		if watch != nil {
			_ = watch.Stop()
		}
	}()
	for {
		rev, holder, err := l.current(ctx, subject)
		if err == nil && holder == "" {
			sent := time.Now()
			nonce := strconv.FormatUint(rand.Uint64(), 36)
			rev, err = l.write(ctx, subject, rev, nonce)
			if err == nil {
				l.log.Info("lease acquired", "pipeline", name, "holder", l.holder)
				return l.keep(ctx, name, subject, rev, sent, nonce)
			}
		}
		switch {
		case err != nil && !isConflict(err):
			l.log.Warn("lease: NATS error, retrying", "pipeline", name, "err", err)
		case !waiting && holder != "" && !l.quiet:
			l.log.Warn("standing by: another process holds the lease of this pipeline; this one takes over when it stops", "pipeline", name, "holder", holder)
			waiting = true
		}
		if watch == nil && holder != "" {
			if w, err := l.kv.Watch(ctx, name, jetstream.UpdatesOnly()); err == nil {
				watch, changed = w, w.Updates()
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-deadline:
			return nil, nil, fmt.Errorf("%w: %s holds %s (stood by %s)", ErrHeld, holder, name, within)
		case _, ok := <-changed:
			if !ok {
				changed = nil // the watch ended: poll
			}
		case <-time.After(l.ttl / 4):
		}
	}
}

// current returns the revision of the lease entry and its holder ("" when free).
func (l *Leases) current(ctx context.Context, subject string) (uint64, string, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	if m.Header.Get("Nats-Marker-Reason") != "" || m.Header.Get("KV-Operation") != "" {
		return m.Sequence, "", nil // expired or released
	}
	var v leaseValue
	if json.Unmarshal(m.Data, &v) != nil || v.Holder == "" {
		return m.Sequence, "", nil
	}
	if v.Holder == l.holder {
		return m.Sequence, "", nil // ours, from before a restart of this same process
	}
	if l.dead != nil && l.dead(v.Holder) {
		l.log.Info("taking over the lease of a process that is gone", "holder", v.Holder)
		return m.Sequence, "", nil
	}
	return m.Sequence, v.Holder, nil
}

// write sets the lease to this holder if its revision is still rev.
func (l *Leases) write(ctx context.Context, subject string, rev uint64, nonce string) (uint64, error) {
	b, _ := json.Marshal(leaseValue{Holder: l.holder, Since: time.Now().UTC(), Nonce: nonce})
	ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(l.ttl))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// keep renews the lease from its acquisition (sent at `since`) until release. The lease
// counts as held until TTL/2 after the send of its last successful renewal (the server's TTL
// runs from when it stored it, later): past that, the holder gives it up by itself, well
// before anyone else can take it. Renewal goes on after parent ends (a SIGTERM drain still
// commits under the lease) until release is called.
func (l *Leases) keep(parent context.Context, name, subject string, rev uint64, since time.Time, nonce string) (context.Context, func(), error) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(l.ttl / 8)
		defer tick.Stop()
		renewed := since
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if time.Since(renewed) >= l.ttl/4 {
				sent := time.Now()
				wctx, wcancel := context.WithTimeout(context.Background(), l.ttl/8)
				next, err := l.write(wctx, subject, rev, nonce)
				wcancel()
				switch {
				case err == nil:
					rev, renewed = next, sent
				case isConflict(err):
					rctx, rcancel := context.WithTimeout(context.Background(), l.ttl/8)
					e, ok := l.entry(rctx, subject)
					rcancel()
					switch {
					case ok && e.v.Holder == l.holder && e.v.Nonce == nonce && e.v.Yield != "":
						l.log.Info("lease asked for by another process: handing the pipeline over", "pipeline", name, "to", e.v.Yield)
						rev = e.seq // so that release deletes the entry
						cancel(ErrYielded)
						return
					case ok && e.v.Holder == l.holder && e.v.Nonce == nonce:
						// A renewal of ours whose reply was lost (a timeout) was stored after
						// all: go on from its revision. The lease still counts from the last
						// renewal known to have succeeded.
						rev = e.seq
					default:
						l.log.Error("lease taken by another process; stopping here", "pipeline", name)
						cancel(ErrLeaseLost)
						return
					}
				default:
					l.log.Warn("lease renewal failed", "pipeline", name, "err", err)
				}
			}
			if time.Since(renewed) > l.ttl/2 {
				l.log.Error("lease not renewed in time; stopping here", "pipeline", name)
				cancel(ErrLeaseLost)
				return
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		cancel(context.Canceled)
		ctx, c := context.WithTimeout(context.Background(), max(2*time.Second, l.ttl))
		defer c()
		// Delete only if still ours: a delete marker with the expected revision.
		m := &nats.Msg{Subject: subject, Header: nats.Header{"KV-Operation": []string{"DEL"}}}
		_, _ = l.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	return ctx, release, nil
}

// Yield asks the holder of the lease of name to hand it over: it finishes the work in hand,
// releases the lease and stands by (its lease context ends with [ErrYielded]), so that the
// caller's next [Leases.AcquireWithin] takes it. It does nothing when the lease is free or
// held by this process.
func (l *Leases) Yield(ctx context.Context, name string) error {
	subject := "$KV." + LeaseBucket + "." + name
	e, ok := l.entry(ctx, subject)
	if !ok || e.v.Holder == l.holder {
		return nil // free (or unreadable: the caller's acquisition finds out), or ours
	}
	e.v.Yield = l.holder
	b, _ := json.Marshal(e.v)
	_, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}},
		jetstream.WithExpectLastSequencePerSubject(e.seq), jetstream.WithMsgTTL(l.ttl))
	if err != nil && !isConflict(err) { // a conflict: renewed meanwhile, or released; the caller asks again
		return fmt.Errorf("yield %s: %w", name, err)
	}
	return nil
}

// leaseEntry is a lease entry as stored, with its revision.
type leaseEntry struct {
	v   leaseValue
	seq uint64
}

// entry reads the lease entry at subject; false when it cannot be read or is no lease (free,
// expired or released).
func (l *Leases) entry(ctx context.Context, subject string) (leaseEntry, bool) {
	m, err := l.stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return leaseEntry{}, false
	}
	var v leaseValue
	if m.Header.Get("KV-Operation") != "" || json.Unmarshal(m.Data, &v) != nil || v.Holder == "" {
		return leaseEntry{}, false
	}
	return leaseEntry{v: v, seq: m.Sequence}, true
}

func isConflict(err error) bool {
	return IsWrongLastSequence(err) || errors.Is(err, jetstream.ErrKeyExists)
}

// LocalHolder names this process for leases: host name, PID namespace and process id, so
// that processes of different containers on one host (same host name, same PID 1) differ.
func LocalHolder(host string) string {
	return host + "-" + pidNamespace() + "-" + strconv.Itoa(os.Getpid())
}

// DeadLocal tells whether holder, as made by [LocalHolder], names a process of this host and
// PID namespace that no longer runs. Holders of other hosts or namespaces, or in another
// form, are never known to be dead.
func DeadLocal(host string) func(holder string) bool {
	prefix := host + "-" + pidNamespace() + "-"
	return func(holder string) bool {
		pid, ok := strings.CutPrefix(holder, prefix)
		if !ok {
			return false
		}
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 || n == os.Getpid() {
			return false
		}
		return errors.Is(syscall.Kill(n, 0), syscall.ESRCH) || zombie(n)
	}
}

// zombie tells whether process pid has exited but not been reaped yet (state Z).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat") // "pid (comm) S ..."
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// pidNamespace returns the inode of this process's PID namespace ("0" where unknown).
func pidNamespace() string {
	link, err := os.Readlink("/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return "0"
	}
	return strings.Trim(strings.TrimPrefix(link, "pid:"), "[]")
}
