package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/jetfold/jetfold/pipeline"
)

// replayFlags are the flags of `get --at` and `history`.
type replayFlags struct {
	at       string
	subjects []string
	from     uint64
}

func (f *replayFlags) add(fs *pflag.FlagSet, at string) {
	fs.StringVar(&f.at, "at", "", at)
	fs.StringArrayVar(&f.subjects, "subject", nil, "read only this subject filter of the source (repeatable): you promise it holds every event of the key; refused for pipelines with a window, timeout, dedupe or a lookup of their own projections")
	fs.Uint64Var(&f.from, "from", 0, "first source sequence to read instead of the pipeline's source.start (needed for start: new)")
}

// replay replays the history of proj/key (see pipeline.Replay) up to f.at, calling onChange
// for each change. A configuration that never ran (nothing to replay) is exit code 2.
func (g *globals) replay(ctx context.Context, proj, key string, f replayFlags, onChange func(pipeline.Change) bool) (pipeline.ReplayResult, error) {
	var at pipeline.At
	if f.at != "" {
		var err error
		if at, err = pipeline.ParseAt(f.at); err != nil {
			return pipeline.ReplayResult{}, fmt.Errorf("--at: %w", err)
		}
	}
	p, conn, err := g.openProjection(ctx, proj, key)
	if err != nil {
		return pipeline.ReplayResult{}, err
	}
	defer conn.Close()
	res, err := pipeline.Replay(ctx, conn.JS, p, pipeline.ReplayOptions{
		Projection: proj, Key: key, At: at, Subjects: f.subjects, From: f.from, OnChange: onChange,
	})
	if err != nil {
		return res, err
	}
	if res.Deleted > 0 {
		fmt.Fprintf(g.stderr, "warning: stream %s has %d messages deleted from its middle: the replay cannot read them, the pipeline may have\n", p.Config.Source.Stream, res.Deleted)
	}
	return res, nil
}

// getAt is `get --at`: the state of proj/key just after a position of the source.
func (g *globals) getAt(ctx context.Context, proj, key string, f replayFlags, meta bool) error {
	res, err := g.replay(ctx, proj, key, f, nil)
	if err != nil {
		return err
	}
	if res.State == nil {
		return &exitError{code: 2, err: fmt.Errorf("%s/%s: no state at %s (sequence %d)", proj, key, f.at, res.UpTo)}
	}
	if meta {
		fmt.Fprintf(g.stdout, "# seq %d, at %d, %d events replayed\n", res.Seq, res.UpTo, res.Read)
	}
	fmt.Fprintln(g.stdout, string(res.State))
	return nil
}

// historyLine is a line of `history --json`.
type historyLine struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Subject string    `json:"subject"`
	// State is the key's value after the event; null when the event deleted it.
	State json.RawMessage `json:"state"`
	// By is "event", or "watermark" when the event changed the key by moving the watermark
	// (a window closed, a timer fired).
	By string `json:"by"`
}

func historyCmd(g *globals) *cobra.Command {
	var (
		f      replayFlags
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history PROJECTION KEY",
		Short: "List every source event that changed a key, with the key's state after it",
		Long: `history replays the pipeline's source up to --at (default: the end of the stream) through the
pipeline's own operators, in memory, and lists every event that changed the key's value:
its sequence, event time, type and the state after it. Nothing is written or published.
It reads every event of the source unless --subject narrows it (see get --at).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			proj, key := args[0], args[1]
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (no limit) or more", limit)
			}
			enc := json.NewEncoder(g.stdout)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			n, more := 0, false
			res, err := g.replay(cmd.Context(), proj, key, f, func(c pipeline.Change) bool {
				if limit > 0 && n == limit {
					more = true
					return false
				}
				n++
				by, typ, st := "event", c.Type, string(c.State)
				if c.ByWatermark {
					by, typ = "watermark", "(watermark)"
				}
				if asJSON {
					_ = enc.Encode(historyLine{Seq: c.Seq, Time: c.Time, Type: c.Type, Subject: c.Subject, State: c.State, By: by})
					return true
				}
				if n == 1 {
					fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tSTATE")
				}
				if c.State == nil {
					st = "(deleted)"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", c.Seq, c.Time.Format(time.RFC3339Nano), typ, st)
				return true
			})
			if ferr := tw.Flush(); err == nil {
				err = ferr
			}
			if err != nil {
				return err
			}
			if n == 0 {
				return &exitError{code: 2, err: fmt.Errorf("%s/%s: no changes up to sequence %d", proj, key, res.UpTo)}
			}
			if more {
				fmt.Fprintf(g.stderr, "more changes: showing the first %d (--limit)\n", limit)
			} else {
				fmt.Fprintf(g.stderr, "%d changes in %d events replayed, up to sequence %d\n", n, res.Read, res.UpTo)
			}
			return nil
		},
	}
	f.add(cmd.Flags(), "replay up to this source sequence, or the last one stored at or before this RFC3339 time (default: the end)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per change")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most N changes, the first ones")
	return cmd
}
