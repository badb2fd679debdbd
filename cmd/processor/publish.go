package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/streams"
)

func publishCmd(g *globals) *cobra.Command {
	var o streams.PublishOptions
	var quiet, noIDs bool
	cmd := &cobra.Command{
		Use:   "publish FILE.jsonl",
		Short: "Bulk-publish a JSONL file (async, with progress)",
		Long: `Publish every line of FILE.jsonl. With --subject, each line is published as it is on that
subject (malformed lines included, which is how to test dead letters). Without it, each line
is an envelope {"subject": "...", "data": {...}, "headers": {...}}.

The whole file is checked before anything is sent: a line that is not an envelope, or a
subject no stream captures, refuses the file (--skip-bad leaves bad lines out instead).
Each message gets the id FILE:LINE (Nats-Msg-Id), so that publishing the same file again
within the streams' duplicate window (2 minutes unless the stream says otherwise) adds
nothing: the summary counts what was stored and what JetStream dropped as a duplicate.
--msg-id-prefix changes the prefix, --no-msg-id sends no ids.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log := g.logger()
			cfg, _, conn, err := g.open(cmd.Context(), log)
			if err != nil {
				return err
			}
			defer conn.Close()
			if err := streams.EnsureStreams(cmd.Context(), conn.JS, cfg.Streams, log); err != nil {
				return err
			}
			switch {
			case noIDs:
				o.MsgIDPrefix = ""
			case o.MsgIDPrefix == "":
				o.MsgIDPrefix = filepath.Base(args[0]) + ":"
			}
			res, err := publishFile(cmd, conn, args[0], o, quiet, g)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "published %d messages from %s: %d stored, %d duplicates", res.Sent, args[0], res.Stored, res.Duplicates)
			if res.Skipped > 0 {
				fmt.Fprintf(g.stdout, ", %d bad lines skipped", res.Skipped)
			}
			fmt.Fprintln(g.stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Subject, "subject", "", "publish each line as is on this subject")
	f.StringVar(&o.MsgIDPrefix, "msg-id-prefix", "", "set Nats-Msg-Id to PREFIX+line number (default: FILE: )")
	f.BoolVar(&noIDs, "no-msg-id", false, "send no Nats-Msg-Id (a second publish of the file stores everything again)")
	f.BoolVar(&o.SkipBad, "skip-bad", false, "leave out the lines that are not envelopes instead of refusing the file")
	f.IntVar(&o.Window, "window", 4096, "publishes in flight")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// publishFile checks path, then publishes it with a progress bar on stderr.
func publishFile(cmd *cobra.Command, conn *streams.Conn, path string, o streams.PublishOptions, quiet bool, g *globals) (streams.Result, error) {
	var res streams.Result
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("publish: %w", err)
	}
	defer f.Close()
	check, err := streams.CheckJSONL(f, o)
	if err == nil {
		err = check.Err(o)
	}
	if err == nil {
		err = streams.CheckCaptured(cmd.Context(), conn.JS, check.Subjects)
	}
	if err != nil {
		return res, fmt.Errorf("publish %s: %w", path, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return res, fmt.Errorf("publish %s: %w", path, err)
	}
	var bar *progressbar.ProgressBar
	if !quiet {
		bar = progressbar.NewOptions(check.Lines,
			progressbar.OptionSetWriter(g.stderr),
			progressbar.OptionSetDescription("publish "+filepath.Base(path)),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(g.stderr) }),
		)
		o.Progress = func(done int) { _ = bar.Set(done) }
	}
	res, err = streams.PublishJSONL(cmd.Context(), conn.JS, f, o)
	if err != nil {
		if bar != nil && !bar.IsFinished() {
			fmt.Fprintln(g.stderr) // the error on a line of its own, not after the bar
		}
		return res, fmt.Errorf("publish %s: %w (%d messages sent before the error, %d stored)", path, err, res.Sent, res.Stored)
	}
	return res, nil
}
