package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/internal/memory"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
	"github.com/jetfold/jetfold/streams/embedded"
)

// setMemoryLimit sets the Go soft memory limit for the pipelines ps (see memory.SetLimit).
func setMemoryLimit(log *slog.Logger, ps []*pipeline.Pipeline) {
	keys := 0
	for _, p := range ps {
		keys += p.CacheKeys()
	}
	memory.SetLimit(memory.Options{CacheKeys: keys, Logger: log})
}

func runCmd(g *globals) *cobra.Command {
	var seed, seedSubject string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the pipelines (foreground; SIGINT/SIGTERM commits what is in flight and exits 0)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ps, err := g.load()
			if err != nil {
				return err
			}
			token, err := cfg.HTTP.Token()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := g.logger()
			setMemoryLimit(log, ps)
			for _, p := range ps {
				for _, w := range p.Warnings {
					log.Warn(w.Error())
				}
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			metrics := pipeline.NewMetrics(reg)
			var connected atomic.Bool
			setConnected := func(up bool) {
				connected.Store(up)
				metrics.NATSConnected.Set(map[bool]float64{false: 0, true: 1}[up])
			}
			conn, err := embedded.Connect(ctx, cfg.NATS, embedded.ConnectOptions{
				ConnectOptions: streams.ConnectOptions{
					Name: "jetfold " + hostname(), Logger: log,
					OnDisconnect: func() { setConnected(false) },
					OnReconnect:  func() { setConnected(true) },
				},
				WaitForStore: true,
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil // stopped while standing by for the store directory
				}
				return fmt.Errorf("nats: %w", err)
			}
			defer conn.Close()
			setConnected(true)
			log.Info("connected to NATS", "url", conn.URL, "embedded", conn.Server != nil)
			if err := streams.EnsureStreams(ctx, conn.JS, cfg.Streams, log); err != nil {
				return err
			}
			if seed != "" {
				if err := seedOnce(cmd, conn, cfg, ps, seed, seedSubject, g, log); err != nil {
					return err
				}
			}
			board := status.NewBoard()
			instance := cfg.Processor.Instance
			if instance == "" {
				instance = checkpoint.LocalHolder(hostname())
			}
			// Rebuilds asked for over HTTP run on the process's context, and end before it
			// exits (an interrupted rebuild resumes at the next request).
			rebuilds := &background{}
			rctx, stopRebuilds := context.WithCancel(ctx)
			defer rebuilds.closeWait()
			defer stopRebuilds()
			rb := rebuilder{cfg: cfg, js: conn.JS, log: log, holder: instance + "-rebuild"}
			if stop, err := serveHTTP(cfg.HTTP, api.Options{
				JS: conn.JS, Pipelines: ps, Gatherer: reg, Ready: connected.Load, Connected: connected.Load, Board: board,
				Token: token, BaseContext: func() context.Context { return rctx },
				Rebuild: func(ctx context.Context, req api.RebuildRequest, onProgress func(rebuild.Progress)) (rebuild.Result, error) {
					if !rebuilds.add() {
						return rebuild.Result{}, fmt.Errorf("rebuild %s: the processor is stopping", req.Pipeline)
					}
					defer rebuilds.done()
					log.Info("rebuild asked for over HTTP", "pipeline", req.Pipeline, "from", req.From, "drop_old", req.DropOld)
					return rb.runName(ctx, req.Pipeline, rebuild.Options{From: req.From, DropOld: req.DropOld, OnProgress: onProgress})
				},
				RebuildHolder: rb.running,
			}, log); err != nil {
				return err
			} else {
				defer stop()
			}
			leases, err := checkpoint.OpenLeases(ctx, conn.JS, checkpoint.LeaseOptions{
				TTL: cfg.Processor.LeaseTTL, Holder: instance, Logger: log,
				Dead: checkpoint.DeadLocal(hostname()),
			})
			if err != nil {
				return err
			}
			t := &tally{keys: map[string]int{}}
			var outputs []string
			for _, s := range cfg.Streams {
				outputs = append(outputs, s.Name)
			}
			runErr := pipeline.RunAll(ctx, ps, pipeline.Options{
				JS: conn.JS, Logger: log, Metrics: metrics, Instance: instance,
				OnCommit: progress(log, t), Leases: leases, OutputStreams: outputs, Board: board, MaxStandby: wait,
				Share: pipeline.NewShare(leases, log),
			})
			stopRebuilds()
			rebuilds.closeWait()
			summarize(g, conn, ps, reg, t)
			if runErr != nil {
				return &exitError{code: 1, err: runErr}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&seed, "seed", "", "publish this JSONL file first, when its stream is still empty (a demo's events)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "stand by at most this long while another process holds a pipeline (0: for ever), then exit 1")
	cmd.Flags().StringVar(&seedSubject, "seed-subject", "", "with --seed: publish each line as is on this subject (default: lines are envelopes)")
	return cmd
}

// seedOnce publishes the seed file unless the first pipeline's source stream holds messages.
func seedOnce(cmd *cobra.Command, conn *streams.Conn, cfg *config.Config, ps []*pipeline.Pipeline, path, subject string, g *globals, log *slog.Logger) error {
	if len(ps) == 0 {
		return nil
	}
	stream := ps[0].Config.Source.Stream
	s, err := conn.JS.Stream(cmd.Context(), stream)
	if err != nil {
		return fmt.Errorf("seed: stream %s: %w", stream, err)
	}
	if n := s.CachedInfo().State.Msgs; n > 0 {
		log.Info("seed skipped: the stream already holds messages", "stream", stream, "messages", n)
		return nil
	}
	res, err := publishFile(cmd, conn, path, streams.PublishOptions{Subject: subject, MsgIDPrefix: "seed:" + filepath.Base(path) + ":"}, false, g)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	log.Info("seeded", "file", path, "messages", res.Stored)
	return nil
}

// serveHTTP starts the HTTP listener unless it is disabled; stop shuts it down. An address
// set in http.listen that is in use is an error: without its listener a processor has no
// health probes (in Kubernetes, a pod that never becomes ready for no visible reason). The
// default address in use (replicas on one host) gives way to a free port, logged.
func serveHTTP(c config.HTTP, o api.Options, log *slog.Logger) (stop func(), err error) {
	if c.Listen == "" || c.Listen == "none" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", c.Listen)
	if errors.Is(err, syscall.EADDRINUSE) && c.ListenDefaulted {
		// Replicas on one host (a laptop, a test): the second takes a free port and says so.
		host, _, _ := net.SplitHostPort(c.Listen)
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err == nil {
			log.Warn("http: the default address is in use (another processor on this host?): listening on a free port instead; set http.listen to choose one",
				"default", c.Listen, "addr", ln.Addr().String())
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("http: %s is in use (another processor on this host?): set http.listen to a free address, or to none to run without metrics, probes and the read API", c.Listen)
	}
	if err != nil {
		return nil, fmt.Errorf("http: %w (set http.listen, or none)", err)
	}
	srv := &http.Server{Handler: api.New(o), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http", "err", err)
		}
	}()
	log.Info("http listening", "addr", ln.Addr().String())
	if o.Token != "" {
		log.Info("http: POST /v1/pipelines/{name}/rebuild, pause and resume served, behind the bearer token of http.token_file")
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// tally sums what the commits of each pipeline wrote during this run.
type tally struct {
	mu   sync.Mutex
	keys map[string]int
}

// progress logs at most one line a second per pipeline, and the last commit of a catch-up;
// it adds each commit's keys to t.
func progress(log *slog.Logger, t *tally) func(pipeline.CommitInfo) {
	var mu sync.Mutex
	type state struct {
		at    time.Time
		total int
	}
	started := time.Now()
	last := map[string]state{}
	return func(c pipeline.CommitInfo) {
		t.mu.Lock()
		t.keys[c.Pipeline] += c.Keys
		t.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		s, seen := last[c.Pipeline]
		if !seen {
			s.at = started
		}
		now := time.Now()
		if now.Sub(s.at) < time.Second && c.Pending > 0 {
			return
		}
		rate := float64(c.Total-s.total) / max(now.Sub(s.at).Seconds(), 1e-3)
		log.Info("progress", "pipeline", c.Pipeline, "checkpoint", c.Seq, "events", c.Total,
			"pending", c.Pending, "events_per_s", int(rate))
		last[c.Pipeline] = state{at: now, total: c.Total}
	}
}

// summarize prints each pipeline's status, what this run did (events by result, derived
// events, keys written), and where to look next.
func summarize(g *globals, conn *streams.Conn, ps []*pipeline.Pipeline, reg prometheus.Gatherer, t *tally) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts := runCounts(reg)
	for _, p := range ps {
		st, err := pipeline.ReadStatus(ctx, conn.JS, p)
		if err != nil {
			fmt.Fprintf(g.stdout, "pipeline %s: status unavailable: %v\n", p.Name, err)
			continue
		}
		fmt.Fprintf(g.stdout, "pipeline %s: checkpoint %d of %d (lag %d), keys %s, dead letters %d\n", p.Name, st.Checkpoint, st.Head, st.Lag, keys(st.Keys, st.Versions), st.DeadLetters)
		if st.State == status.Failing {
			fmt.Fprintf(g.stdout, "pipeline %s: failing: %s\n", p.Name, st.Error)
		}
		c := counts[p.Name]
		events := 0.0
		var parts []string
		for _, r := range []string{pipeline.ResultOK, pipeline.ResultFiltered, pipeline.ResultDeadLetter, pipeline.ResultSkipped, pipeline.ResultOutdated, pipeline.ResultDuplicate} {
			events += c[r]
			if c[r] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", int(c[r]), strings.ReplaceAll(r, "_", " ")))
			}
		}
		t.mu.Lock()
		written := t.keys[p.Name]
		t.mu.Unlock()
		detail := ""
		if len(parts) > 0 {
			detail = " (" + strings.Join(parts, ", ") + ")"
		}
		fmt.Fprintf(g.stdout, "  this run: %d events%s, %d derived events, %d keys written\n", int(events), detail, int(c["emitted"]), written)
		if dead := c[pipeline.ResultDeadLetter]; dead > 0 && dead*2 > events {
			fmt.Fprintf(g.stdout, "  WARNING: most events were dead-lettered (%d of %d): the log has the first of each reason\n", int(dead), int(events))
		}
		if st.DeadLetters > 0 {
			fmt.Fprintf(g.stdout, "  dead letters: processor dlq -c %s %s list\n", g.config, p.Name)
		}
		for _, proj := range p.Projections {
			fmt.Fprintf(g.stdout, "  read a key:   processor get -c %s %s KEY\n", g.config, proj)
		}
	}
}

// runCounts reads this process's jetfold_events_total (by pipeline and result) and
// jetfold_emitted_total (as result "emitted") from reg.
func runCounts(reg prometheus.Gatherer) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if name != "jetfold_events_total" && name != "jetfold_emitted_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var p, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "pipeline":
					p = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			if name == "jetfold_emitted_total" {
				result = "emitted"
			}
			if out[p] == nil {
				out[p] = map[string]float64{}
			}
			out[p][result] += m.GetCounter().GetValue()
		}
	}
	return out
}

// background counts the work a process runs beside its pipelines (rebuilds asked for over
// HTTP), so that it can wait for it before exiting.
type background struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool
}

// add counts one more piece of work; false once closeWait was called (do not start it).
func (b *background) add() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

// done ends one piece of work that add counted.
func (b *background) done() { b.wg.Done() }

// closeWait refuses more work and waits for what runs to end (tell it to first).
func (b *background) closeWait() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}
