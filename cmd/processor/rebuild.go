package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/streams"
)

const rebuildLong = `rebuild refolds the projections of PIPELINE from its source stream into new versions of
their buckets (<projection>_v<N>), with the pipeline's definition as the file gives it now,
while the live pipeline goes on serving and updating the current ones. Once it has caught up
with the live pipeline's checkpoint, it asks the process running the pipeline to hand it over,
and switches the pipeline and its readers (get, the HTTP API) to the new versions in one
atomic write. Then the live pipeline goes on from there, on the new versions.

Replayed events are hydrated: emits with handler: once and timers do not fire again; emits
with handler: on and all do, with the ids the live run gave them (consumers dedupe by ce-id).

A partitioned pipeline is replayed partition by partition, side by side, each with its own
watermark; the switch takes every partition's lease, from whichever processes hold them, and
moves the partitions' checkpoints together (the checkpoint printed is the highest of them).

A second rebuild of the same pipeline is refused while one runs. An interrupted rebuild
(Ctrl-C, a crash) keeps what it wrote: the same command resumes it, as long as the
definition and --from are the same; otherwise it starts over.

After the switch, processes running another definition of the pipeline refuse to run it:
deploy the file the rebuild used, then restart them.

--from says where the replay starts: all, seq:N or time:RFC3339 (default: the pipeline's
source.start). --drop-old deletes the buckets of the older versions after the switch;
--drop-only deletes them without rebuilding.

Exit status: 0 when switched (or dropped), 1 for an error or an interruption, 2 for an
unknown pipeline, or when nothing ran yet.`

const rebuildExample = `  processor rebuild -c pipelines.yaml carts
  processor rebuild -c pipelines.yaml carts --from time:2026-03-01T00:00:00Z --drop-old
  processor rebuild -c pipelines.yaml carts --drop-only`

// rebuildFlags are the flags of the rebuild command.
type rebuildFlags struct {
	from              string
	dropOld, dropOnly bool
}

// args renders the flags that decide what a rebuild resumes, as the user typed them.
func (f rebuildFlags) args() string {
	out := ""
	if f.from != "" {
		out += " --from " + f.from
	}
	if f.dropOld {
		out += " --drop-old"
	}
	return out
}

func rebuildCmd(g *globals) *cobra.Command {
	var f rebuildFlags
	cmd := &cobra.Command{
		Use:     "rebuild PIPELINE [--from all|seq:N|time:T] [--drop-old | --drop-only]",
		Short:   "Refold a pipeline's projections into new versions beside the live ones, then switch to them",
		Long:    rebuildLong,
		Example: rebuildExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.rebuild(cmd.Context(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "where the replay starts: all, seq:N or time:RFC3339 (default: the pipeline's source.start)")
	fl.BoolVar(&f.dropOld, "drop-old", false, "after the switch, delete the buckets of the older versions")
	fl.BoolVar(&f.dropOnly, "drop-only", false, "do not rebuild: delete the buckets of the versions older than the current one")
	return cmd
}

// rebuild is the rebuild command.
func (g *globals) rebuild(ctx context.Context, name string, f rebuildFlags) error {
	if f.dropOnly && (f.dropOld || f.from != "") {
		return &exitError{code: 2, err: errors.New("error: --drop-only takes neither --drop-old nor --from")}
	}
	if f.from != "" {
		if _, err := (config.Source{Start: f.from}).StartPosition(); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("error: --from: %w", err)}
		}
	}
	// Check the name before connecting: with an embedded server, connecting starts it.
	cfg, ps, err := g.load()
	if err != nil {
		return err
	}
	p, err := g.pipelineNamed(ps, name) // built by this command: no runner of this process uses its operators
	if err != nil {
		return err
	}
	setMemoryLimit(g.logger(), []*pipeline.Pipeline{p})

	// As get: nothing is created before the first run (then there is nothing to rebuild).
	_, _, conn, err := g.openExisting(ctx, g.stderr)
	if conn == nil {
		if err == nil {
			return &exitError{code: 2} // openExisting said so
		}
		return err
	}
	defer conn.Close()
	show := newProgressShow(g.stderr)
	log := g.loggerTo(show) // on a terminal, log lines go around the progress line
	show.log = log

	if f.dropOnly {
		dropped, err := rebuild.DropOld(ctx, conn.JS, p)
		if len(dropped) > 0 {
			fmt.Fprintf(g.stdout, "pipeline %s: dropped %s\n", name, strings.Join(dropped, ", "))
		} else if err == nil {
			fmt.Fprintf(g.stdout, "pipeline %s: no older version to drop\n", name)
		}
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", name, err)
		}
		return nil
	}

	if err := streams.EnsureStreams(ctx, conn.JS, cfg.Streams, log); err != nil {
		return err
	}
	res, err := rebuilder{cfg: cfg, js: conn.JS, log: log, holder: checkpoint.LocalHolder(hostname()) + "-rebuild"}.
		run(ctx, p, rebuild.Options{From: f.from, DropOld: f.dropOld, OnProgress: show.update})
	show.end()
	switch {
	case err != nil && res.Version == 0 && ctx.Err() != nil:
		fmt.Fprintf(g.stderr, "rebuild of %s interrupted: what it wrote is kept; run the same command to resume:\n  processor rebuild -c %s %s%s\n",
			name, g.config, name, f.args())
		return &exitError{code: 1}
	case errors.Is(err, rebuild.ErrRunning):
		return &exitError{code: 1, err: fmt.Errorf("error: %w", err)}
	case err != nil && res.Version == 0:
		return err
	}
	// Switched (an error now is one of DropOld's, after the switch).
	how := "a new rebuild"
	if res.Resumed {
		how = "resumed an interrupted rebuild"
	}
	fmt.Fprintf(g.stdout, "pipeline %s: switched to version %d at checkpoint %d (%s)\n", name, res.Version, res.Seq, how)
	if len(res.Partitions) > 0 {
		at := make([]string, len(res.Partitions))
		for i, seq := range res.Partitions {
			at[i] = fmt.Sprintf("%d: %d", i, seq)
		}
		fmt.Fprintf(g.stdout, "  partitions' checkpoints: %s\n", strings.Join(at, ", "))
	}
	for _, proj := range p.Projections {
		fmt.Fprintf(g.stdout, "  projection %s: bucket %s\n", proj, res.Buckets[proj])
	}
	switch {
	case f.dropOld && len(res.Dropped) > 0:
		fmt.Fprintln(g.stdout, "  dropped:", strings.Join(res.Dropped, ", "))
	case f.dropOld && err == nil:
		fmt.Fprintln(g.stdout, "  dropped: none (no older version left)")
	case !f.dropOld:
		fmt.Fprintf(g.stdout, "  older versions kept: processor rebuild -c %s %s --drop-only deletes them\n", g.config, name)
	}
	if err != nil {
		return fmt.Errorf("switched, but dropping the older versions did not finish (processor rebuild -c %s %s --drop-only goes on): %w", g.config, name, err)
	}
	return nil
}

// rebuilder runs rebuilds of the pipelines of cfg on js, for the rebuild command and for the
// HTTP route of a running processor.
type rebuilder struct {
	cfg *config.Config
	js  jetstream.JetStream
	log *slog.Logger
	// holder names the rebuild in leases: it must differ from the holder of any process
	// running the pipelines (the rebuild asks that one for the pipeline's lease).
	holder string
}

// run rebuilds p, which must be built for the rebuild (not run by this process), with o's
// From, DropOld and OnProgress; the rest of the options come from r.
func (r rebuilder) run(ctx context.Context, p *pipeline.Pipeline, o rebuild.Options) (rebuild.Result, error) {
	leases, err := checkpoint.OpenLeases(ctx, r.js, checkpoint.LeaseOptions{
		TTL: r.cfg.Processor.LeaseTTL, Holder: r.holder, Logger: r.log, Dead: deadRebuilder(hostname()),
	})
	if err != nil {
		return rebuild.Result{}, fmt.Errorf("rebuild %s: %w", p.Name, err)
	}
	var outputs []string
	for _, s := range r.cfg.Streams {
		outputs = append(outputs, s.Name)
	}
	o.JS, o.Pipeline, o.Leases, o.Instance, o.Logger, o.OutputStreams = r.js, p, leases, r.holder, r.log, outputs
	return rebuild.Run(ctx, o)
}

// running returns the process that runs a rebuild of pipeline ("" when none, or this one).
func (r rebuilder) running(ctx context.Context, pipeline string) (string, error) {
	leases, err := checkpoint.OpenLeases(ctx, r.js, checkpoint.LeaseOptions{
		TTL: r.cfg.Processor.LeaseTTL, Holder: r.holder, Dead: deadRebuilder(hostname()),
	})
	if err != nil {
		return "", err
	}
	return leases.Holder(ctx, checkpoint.RebuildKey(pipeline))
}

// runName rebuilds the pipeline called name, built afresh from r.cfg.
func (r rebuilder) runName(ctx context.Context, name string, o rebuild.Options) (rebuild.Result, error) {
	ps, err := pipeline.Build(r.cfg, builtin.Registry())
	if err != nil {
		return rebuild.Result{}, fmt.Errorf("rebuild %s: %w", name, err)
	}
	p := findPipeline(ps, name)
	if p == nil {
		return rebuild.Result{}, fmt.Errorf("rebuild: no pipeline %q", name)
	}
	return r.run(ctx, p, o)
}

// deadRebuilder is checkpoint.DeadLocal for holders made by LocalHolder, with or without the
// "-rebuild" suffix: a rebuild of this host that was killed leaves its lock to the next at
// once, instead of after the lease TTL.
func deadRebuilder(host string) func(string) bool {
	dead := checkpoint.DeadLocal(host)
	return func(holder string) bool { return dead(strings.TrimSuffix(holder, "-rebuild")) }
}

// progressShow shows a rebuild's progress on w: on a terminal, one line redrawn in place (a
// bar, done/total, the rate, the time left, the phase); elsewhere, a log line at most every
// 2 s and at each change of phase.
type progressShow struct {
	w   io.Writer
	tty bool
	log *slog.Logger

	mu     sync.Mutex
	phase  string
	logged time.Time
	line   string // the line drawn, "" when none
}

// progressEvery bounds how often the log says how far a rebuild is.
const progressEvery = 2 * time.Second

// newProgressShow returns a progressShow on w; set its log before the first update.
func newProgressShow(w io.Writer) *progressShow {
	return &progressShow{w: w, tty: isTerminal(w)}
}

// isTerminal tells whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// update is the rebuild's OnProgress.
func (s *progressShow) update(p rebuild.Progress) {
	if !s.due(p) {
		return
	}
	s.log.Info("rebuild progress", "pipeline", p.Pipeline, "version", p.Version, "phase", p.Phase,
		"done", p.Done, "total", p.Total, "per_s", int(p.Rate), "left", timeLeft(p, "unknown"))
}

// due draws the line on a terminal, or tells whether to log p (the log writes through s.Write,
// so it is called without s.mu).
func (s *progressShow) due(p rebuild.Progress) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := p.Phase != s.phase
	s.phase = p.Phase
	if s.tty {
		s.draw(progressLine(p))
		return false
	}
	if !changed && time.Since(s.logged) < progressEvery {
		return false
	}
	s.logged = time.Now()
	return true
}

// draw replaces the line drawn with line (called with s.mu held).
func (s *progressShow) draw(line string) {
	pad := ""
	if n := len(s.line) - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprint(s.w, "\r"+line+pad)
	s.line = line
}

// end ends the line drawn, if any.
func (s *progressShow) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		fmt.Fprintln(s.w)
		s.line = ""
	}
}

// Write writes a log line to w: on a terminal, it clears the progress line first and draws
// it again after.
func (s *progressShow) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line == "" {
		return s.w.Write(b)
	}
	line := s.line
	fmt.Fprint(s.w, "\r"+strings.Repeat(" ", len(line))+"\r")
	n, err := s.w.Write(b)
	fmt.Fprint(s.w, line)
	return n, err
}

// barWidth is the width of the progress bar, in characters.
const barWidth = 30

// progressLine renders p as the line shown on a terminal:
// `[#########.....................]  1200/4000  812/s  left 3s  replay`.
func progressLine(p rebuild.Progress) string {
	frac := 0.0
	switch {
	case p.Phase == "done":
		frac = 1
	case p.Total > 0:
		frac = min(float64(p.Done)/float64(p.Total), 1)
	}
	n := int(frac * barWidth)
	return fmt.Sprintf("[%s%s]  %d/%d  %d/s  left %s  %s", strings.Repeat("#", n), strings.Repeat(".", barWidth-n),
		p.Done, p.Total, int(p.Rate), timeLeft(p, "-"), p.Phase)
}

// timeLeft is p's time left to the second, or unknown when p cannot tell.
func timeLeft(p rebuild.Progress, unknown string) string {
	if l := p.Left(); l > 0 {
		return l.Round(time.Second).String()
	}
	return unknown
}
