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
	var quiet bool
	cmd := &cobra.Command{
		Use:   "publish FILE.jsonl",
		Short: "Bulk-publish a JSONL file (async, with progress)",
		Long: `Publish every line of FILE.jsonl. With --subject, each line is published as it is on that
subject (malformed lines included, which is how to test dead letters). Without it, each line
is an envelope {"subject": "...", "data": {...}, "headers": {...}}.`,
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
			n, err := publishFile(cmd, conn, args[0], o, quiet, g)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "published %d messages from %s\n", n, args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Subject, "subject", "", "publish each line as is on this subject")
	f.StringVar(&o.MsgIDPrefix, "msg-id-prefix", "", "set Nats-Msg-Id to PREFIX+line number (idempotent re-publish)")
	f.IntVar(&o.Window, "window", 4096, "publishes in flight")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// publishFile publishes path with a progress bar on stderr.
func publishFile(cmd *cobra.Command, conn *streams.Conn, path string, o streams.PublishOptions, quiet bool, g *globals) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	defer f.Close()
	total, err := streams.CountLines(f)
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", path, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return 0, fmt.Errorf("publish %s: %w", path, err)
	}
	if !quiet {
		bar := progressbar.NewOptions(total,
			progressbar.OptionSetWriter(g.stderr),
			progressbar.OptionSetDescription("publish "+filepath.Base(path)),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(g.stderr) }),
		)
		o.Progress = func(done int) { _ = bar.Set(done) }
	}
	n, err := streams.PublishJSONL(cmd.Context(), conn.JS, f, o)
	if err != nil {
		return n, fmt.Errorf("publish %s: %w (%d messages published before the error)", path, err, n)
	}
	return n, nil
}
