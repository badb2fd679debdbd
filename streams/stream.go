package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
)

// DLQStream is the stream created for dead letters when no stream captures them.
const DLQStream = "JETFOLD_DLQ"

// DLQSubject returns the dead-letter subject of a pipeline.
func DLQSubject(pipeline string) string { return "_jetfold.dlq." + pipeline }

// EnsureStreams creates each declared stream that is missing. An existing stream is never
// changed: where it differs from the declaration, a warning names the differences.
// A nil log discards the messages.
//
// A NATS answer that passes by itself ([Transient]) is retried with backoff until ctx ends
// ([Retry]). In a cluster these come when several processes start at once (a stream another
// one is creating has no leader yet) or a node restarts; a process must not exit on them.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, decl []config.Stream, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range decl {
		err := Retry(ctx, RetryOptions{Logger: log, What: "stream " + d.Name}, func(ctx context.Context) error {
			return ensureStream(ctx, js, d, log)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// RetryOptions configures [Retry].
type RetryOptions struct {
	// Logger receives a warning per retry; nil discards them.
	Logger *slog.Logger
	// What names what is tried, in the warnings.
	What string
	// Also, when set, tells whether an error that is not [Transient] passes by itself too.
	Also func(error) bool
}

// The backoff of [Retry], and how long one attempt may wait for its answers (nats.go's default
// request timeout).
const (
	firstRetry     = 250 * time.Millisecond
	maxRetry       = 5 * time.Second
	attemptTimeout = 5 * time.Second
)

// Retry calls attempt until it succeeds, fails with an error that does not pass by itself
// (see [Transient] and RetryOptions.Also), or ctx ends; then it returns the attempt's error,
// wrapped with ctx's when ctx ended. Each attempt gets a context of at most 5 s, and the
// attempts are spaced with backoff (250 ms doubling to 5 s).
func Retry(ctx context.Context, o RetryOptions, attempt func(context.Context) error) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for wait := firstRetry; ; wait = min(2*wait, maxRetry) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !Transient(ctx, err) && (o.Also == nil || !o.Also(err)) {
			return err
		}
		log.Warn("NATS is not ready: retrying", "what", o.What, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (retrying: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// ensureStream creates the declared stream d when it is missing.
func ensureStream(ctx context.Context, js jetstream.JetStream, d config.Stream, log *slog.Logger) error {
	want := StreamConfig(d)
	s, err := js.Stream(ctx, d.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("create stream %s: %w", d.Name, err)
		}
		log.Info("stream created", "stream", d.Name, "subjects", d.Subjects)
	case err != nil:
		return fmt.Errorf("stream %s: %w", d.Name, err)
	default:
		if drift := Drift(s.CachedInfo().Config, want); len(drift) > 0 {
			log.Warn("stream differs from its declaration; left unchanged", "stream", d.Name, "differences", drift)
		}
	}
	return nil
}

// JetStream's error codes for a cluster that cannot do it now: "JetStream system temporarily
// unavailable" (no meta leader) and "no suitable peers for placement" (too few nodes up for the
// replicas asked for; a server that is not clustered answers another code).
const (
	jsClusterNotAvailable = 10008
	jsClusterNoPeers      = 10005
)

// Transient tells whether err, the error of a JetStream API request made on ctx, may pass by
// itself: the request timed out (ctx itself still live) or had no responder, JetStream was
// temporarily unavailable, or the cluster had too few nodes up to place the replicas.
func Transient(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var api *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &api) && (api.ErrorCode == jsClusterNotAvailable || api.ErrorCode == jsClusterNoPeers)
}

// StreamConfig turns a declaration into a JetStream stream configuration.
func StreamConfig(d config.Stream) jetstream.StreamConfig {
	c := jetstream.StreamConfig{
		Name:       d.Name,
		Subjects:   d.Subjects,
		Storage:    jetstream.FileStorage,
		Replicas:   max(d.Replicas, 1),
		Duplicates: d.DuplicateWindow,
		MaxAge:     d.MaxAge,
	}
	if d.Storage == "memory" {
		c.Storage = jetstream.MemoryStorage
	}
	if tr := d.SubjectTransform; tr.Dest != "" {
		c.SubjectTransform = &jetstream.SubjectTransformConfig{Source: tr.Src, Destination: tr.Dest}
	}
	return c
}

// Drift lists the declared settings in which have differs from want.
func Drift(have, want jetstream.StreamConfig) []string {
	var out []string
	if !slices.Equal(have.Subjects, want.Subjects) {
		out = append(out, fmt.Sprintf("subjects %v, declared %v", have.Subjects, want.Subjects))
	}
	if have.Storage != want.Storage {
		out = append(out, fmt.Sprintf("storage %s, declared %s", have.Storage, want.Storage))
	}
	if have.Replicas != want.Replicas {
		out = append(out, fmt.Sprintf("replicas %d, declared %d", have.Replicas, want.Replicas))
	}
	if want.Duplicates != 0 && have.Duplicates != want.Duplicates {
		out = append(out, fmt.Sprintf("duplicate_window %s, declared %s", have.Duplicates, want.Duplicates))
	}
	if want.MaxAge != 0 && have.MaxAge != want.MaxAge {
		out = append(out, fmt.Sprintf("max_age %s, declared %s", have.MaxAge, want.MaxAge))
	}
	if w := want.SubjectTransform; w != nil && (have.SubjectTransform == nil || *have.SubjectTransform != *w) {
		h := "none"
		if have.SubjectTransform != nil {
			h = have.SubjectTransform.Source + " -> " + have.SubjectTransform.Destination
		}
		out = append(out, fmt.Sprintf("subject_transform %s, declared %s -> %s", h, w.Source, w.Destination))
	}
	return out
}

// EnsureCaptured makes sure some stream captures subject; when none does, it creates a stream
// named name on captureSubjects. It returns the name of the stream that captures subject.
func EnsureCaptured(ctx context.Context, js jetstream.JetStream, subject, name string, captureSubjects []string, dupWindow time.Duration) (string, error) {
	got, err := js.StreamNameBySubject(ctx, subject)
	if err == nil {
		return got, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", fmt.Errorf("find stream for %s: %w", subject, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: captureSubjects, Storage: jetstream.FileStorage, Duplicates: dupWindow, Replicas: Replicas(js),
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return "", fmt.Errorf("create stream %s: %w", name, err)
	}
	return name, nil
}
