package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/streams"
	"github.com/jetfold/jetfold/streams/embedded"
)

func (g *globals) logger() *slog.Logger { return g.loggerTo(g.stderr) }

// loggerTo is the logger of --log-level and --log-json, writing to w.
func (g *globals) loggerTo(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if g.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// load reads, validates and compiles the configuration. Problems come back as one
// exitError with every `file:line:col: message` on its own line.
func (g *globals) load() (*config.Config, []*pipeline.Pipeline, error) {
	cfg, err := config.Load(g.config, config.LoadOptions{})
	if cfg == nil {
		return nil, nil, &exitError{code: 1, err: err}
	}
	ps, berr := pipeline.Build(cfg, builtin.Registry())
	if err := diag.Join(err, berr); err != nil {
		return nil, nil, &exitError{code: 1, err: err}
	}
	return cfg, ps, nil
}

// open loads the configuration and connects as a client command does (get, status, publish):
// for an embedded server, it first tries a processor already serving the store dir on the
// embedded listen address, then starts the server itself without a port.
func (g *globals) open(ctx context.Context, log *slog.Logger) (*config.Config, []*pipeline.Pipeline, *streams.Conn, error) {
	return g.connect(ctx, log, false)
}

// openExisting is open for commands that only read: with an embedded server whose store
// directory does not exist, it creates nothing, prints to w that the pipelines were not
// started yet, and returns a nil connection and a nil error.
func (g *globals) openExisting(ctx context.Context, w io.Writer) (*config.Config, []*pipeline.Pipeline, *streams.Conn, error) {
	cfg, ps, conn, err := g.connect(ctx, nil, true)
	if errors.Is(err, embedded.ErrNoStore) {
		fmt.Fprintln(w, "not started yet:", err)
		return cfg, ps, nil, nil
	}
	return cfg, ps, conn, err
}

func (g *globals) connect(ctx context.Context, log *slog.Logger, existing bool) (*config.Config, []*pipeline.Pipeline, *streams.Conn, error) {
	cfg, ps, err := g.load()
	if err != nil {
		return nil, nil, nil, err
	}
	if log == nil { // what the user must know: another project's server on the address
		log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	conn, err := embedded.Connect(ctx, cfg.NATS, embedded.ConnectOptions{
		ConnectOptions: streams.ConnectOptions{Name: "jetfold", Logger: log},
		Reuse:          true,
		NoListen:       true,
		NoCreate:       existing,
	})
	if errors.Is(err, embedded.ErrNoStore) {
		return nil, nil, nil, fmt.Errorf("%w: start the pipelines with processor run -c %s", err, g.config)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nats: %w", err)
	}
	return cfg, ps, conn, nil
}

// openProjection is openExisting for a command that reads key of proj: it checks first that
// a pipeline of the configuration writes proj (and returns that pipeline) and that key is not
// empty. A configuration that never ran (nothing to read) is exit code 2.
func (g *globals) openProjection(ctx context.Context, proj, key string) (*pipeline.Pipeline, *streams.Conn, error) {
	_, ps, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	i := slices.IndexFunc(ps, func(p *pipeline.Pipeline) bool { return slices.Contains(p.Projections, proj) })
	if i < 0 {
		return nil, nil, fmt.Errorf("unknown projection %q: %s has %s", proj, g.config, strings.Join(projections(ps), ", "))
	}
	if key == "" {
		return nil, nil, errors.New("the key is empty: a projection holds no state for an empty key")
	}
	_, _, conn, err := g.openExisting(ctx, g.stderr)
	if err != nil {
		return nil, nil, err
	}
	if conn == nil {
		return nil, nil, &exitError{code: 2} // nothing ran yet: openExisting said so
	}
	return ps[i], conn, nil
}

// projections returns the projections the pipelines write, in order.
func projections(ps []*pipeline.Pipeline) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Projections...)
	}
	return out
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "jetfold"
	}
	return strings.ReplaceAll(h, " ", "_")
}

// pipelineNamed returns the pipeline of ps called name, or an error (exit 2) naming those
// there are.
func (g *globals) pipelineNamed(ps []*pipeline.Pipeline, name string) (*pipeline.Pipeline, error) {
	p := findPipeline(ps, name)
	if p == nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("error: unknown pipeline %q: %s has %s", name, g.config, strings.Join(pipelineNames(ps), ", "))}
	}
	return p, nil
}

// findPipeline returns the pipeline of ps called name, or nil.
func findPipeline(ps []*pipeline.Pipeline, name string) *pipeline.Pipeline {
	if i := slices.IndexFunc(ps, func(p *pipeline.Pipeline) bool { return p.Name == name }); i >= 0 {
		return ps[i]
	}
	return nil
}

// pipelineNames returns the names of ps, in order.
func pipelineNames(ps []*pipeline.Pipeline) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return names
}
