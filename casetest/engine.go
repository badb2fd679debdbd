package casetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
	"github.com/jetfold/jetfold/streams/embedded"
)

// Options tunes an [Engine].
type Options struct {
	// Registry holds the operators the pipelines use; nil means builtin.Registry().
	Registry *operators.Registry
	// Logger receives the log lines of the pipelines and of the NATS connection; nil
	// discards them.
	Logger *slog.Logger
	// Timeout bounds one case, from the start of its server to its results (default
	// [DefaultTimeout]).
	Timeout time.Duration
	// Parallel is how many cases [Engine.RunAll] runs at once (default GOMAXPROCS).
	Parallel int
}

// DefaultTimeout is the default of [Options.Timeout].
const DefaultTimeout = 2 * time.Minute

// maxRounds bounds how many times one case runs the pipelines: it runs them again while one
// of them has events left to read, derived events that another pipeline (or itself) reads.
const maxRounds = 10

// Engine runs the cases of one configuration.
type Engine struct {
	cfg         *config.Config // as the cases run it
	o           Options
	pipelines   []string // names, in order
	projections []string // that the pipelines write, in order
}

// New returns an engine for cfg, a configuration [config.Load] accepted. The cases run its
// pipelines from the beginning of their streams to their end (source.start: all, stop: end,
// no idle), its streams with one replica, and never its NATS and HTTP sections: each case
// has an embedded server of its own. New builds the pipelines once and returns what
// [pipeline.Build] reports.
func New(cfg *config.Config, o Options) (*Engine, error) {
	if o.Registry == nil {
		o.Registry = builtin.Registry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = runtime.GOMAXPROCS(0)
	}
	c := *cfg
	c.NATS = config.NATS{Embedded: config.Embedded{Listen: "none"}}
	c.HTTP.Listen = "none"
	c.Streams = slices.Clone(cfg.Streams)
	for i := range c.Streams {
		c.Streams[i].Replicas = 1
	}
	c.Pipelines = slices.Clone(cfg.Pipelines)
	for i := range c.Pipelines {
		src := &c.Pipelines[i].Source
		src.Start, src.Stop = "all", "end"
		c.Pipelines[i].Idle = 0
	}
	ps, err := pipeline.Build(&c, o.Registry)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: &c, o: o}
	for _, p := range ps {
		e.pipelines = append(e.pipelines, p.Name)
		for _, proj := range p.Projections {
			if !slices.Contains(e.projections, proj) {
				e.projections = append(e.projections, proj)
			}
		}
	}
	return e, nil
}

// stream returns the declared stream name.
func (e *Engine) stream(name string) (config.Stream, bool) {
	for _, s := range e.cfg.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return config.Stream{}, false
}

// streamNames returns the names of the declared streams.
func (e *Engine) streamNames() []string {
	var out []string
	for _, s := range e.cfg.Streams {
		out = append(out, s.Name)
	}
	return out
}

// Result is the outcome of one case.
type Result struct {
	// Case is the case that ran.
	Case *Case
	// Actual is what the pipelines made of its events (empty when Err is set).
	Actual Actual
	// Mismatches are the differences between Actual and the case's expectations.
	Mismatches []Mismatch
	// Err is why the case could not run to its end (a pipeline stopped on an error, the
	// timeout, NATS); Mismatches is then empty.
	Err error
	// Duration is how long the case took.
	Duration time.Duration
}

// Passed reports whether the case ran and its results match its expectations.
func (r Result) Passed() bool { return r.Err == nil && len(r.Mismatches) == 0 }

// RunAll runs cases, up to [Options.Parallel] at once, and calls report (when not nil) with
// each result in the order of cases, as soon as it and those before it are done. It returns
// the results in that order.
func (e *Engine) RunAll(ctx context.Context, cases []*Case, report func(Result)) []Result {
	results := make([]Result, len(cases))
	done := make([]chan struct{}, len(cases))
	for i := range done {
		done[i] = make(chan struct{})
	}
	go func() {
		slots := make(chan struct{}, e.o.Parallel)
		for i, c := range cases {
			slots <- struct{}{}
			go func() {
				defer close(done[i])
				results[i] = e.Run(ctx, c)
				<-slots
			}()
		}
	}()
	for i := range cases {
		<-done[i]
		if report != nil {
			report(results[i])
		}
	}
	return results
}

// Run runs one case: it starts an embedded nats-server with JetStream in a temporary
// directory (no listener), creates the declared streams, publishes the case's events in
// order, runs the pipelines to the end of their streams (again while derived events left
// one of them behind, at most 10 times), reads what they made (see [Actual]), compares it
// with the case's expectations, and removes the directory.
func (e *Engine) Run(ctx context.Context, c *Case) Result {
	began := time.Now()
	r := Result{Case: c}
	r.Actual, r.Err = e.run(ctx, c)
	if r.Err == nil {
		if c.Expect.Empty() {
			r.Mismatches = []Mismatch{{Pos: c.Pos, What: "the case expects nothing: give it an expect section (--update writes what the pipelines did)"}}
		} else {
			r.Mismatches = Check(c.Expect, r.Actual)
		}
	}
	r.Duration = time.Since(began)
	return r
}

func (e *Engine) run(ctx context.Context, c *Case) (Actual, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "jetfold-case-")
	if err != nil {
		return Actual{}, err
	}
	defer os.RemoveAll(dir)
	nc := config.NATS{Embedded: config.Embedded{StoreDir: dir, Listen: "none"}}
	conn, err := embedded.Connect(ctx, nc, embedded.ConnectOptions{
		ConnectOptions: streams.ConnectOptions{Name: "jetfold test", Logger: e.o.Logger},
		NoListen:       true,
	})
	if err != nil {
		return Actual{}, fmt.Errorf("nats: %w", err)
	}
	defer conn.Close()
	js := conn.JS
	if err := streams.EnsureStreams(ctx, js, e.cfg.Streams, e.o.Logger); err != nil {
		return Actual{}, err
	}
	ps, err := pipeline.Build(e.cfg, e.o.Registry) // operators keep state: a build per case
	if err != nil {
		return Actual{}, err
	}
	published := map[string]map[uint64]bool{}
	for _, ev := range c.Events {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: ev.Subject, Data: ev.Data, Header: ev.Header})
		if err != nil {
			return Actual{}, fmt.Errorf("%s: publish to %s: %w", ev.Pos, ev.Subject, err)
		}
		if ack.Stream != ev.Stream {
			return Actual{}, fmt.Errorf("%s: stream %s stored the event on %s, not stream %s", ev.Pos, ack.Stream, ev.Subject, ev.Stream)
		}
		if published[ack.Stream] == nil {
			published[ack.Stream] = map[uint64]bool{}
		}
		published[ack.Stream][ack.Sequence] = true
	}
	o := pipeline.Options{JS: js, Logger: e.o.Logger, Instance: "jetfold-test", OutputStreams: e.streamNames()}
	for round := 1; ; round++ {
		if err := pipeline.RunAll(ctx, ps, o); err != nil {
			return Actual{}, err
		}
		if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) { // RunAll returns nil when ctx ends
			return Actual{}, fmt.Errorf("the pipelines did not reach the end of their streams within the timeout of a case, %s: %w", e.o.Timeout, err)
		} else if err != nil {
			return Actual{}, err
		}
		behind, err := lagging(ctx, js, ps)
		if err != nil {
			return Actual{}, err
		}
		if len(behind) == 0 {
			break
		}
		if round == maxRounds {
			return Actual{}, fmt.Errorf("after %d runs, pipelines %s still have events to read (derived events that feed each other?)", round, strings.Join(behind, ", "))
		}
	}
	return collect(ctx, js, e.cfg, ps, published)
}

// lagging returns the names of the pipelines that have events left to read.
func lagging(ctx context.Context, js jetstream.JetStream, ps []*pipeline.Pipeline) ([]string, error) {
	var out []string
	for _, p := range ps {
		st, err := pipeline.ReadStatus(ctx, js, p)
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", p.Name, err)
		}
		if st.Lag > 0 {
			out = append(out, p.Name)
		}
	}
	return out, nil
}
