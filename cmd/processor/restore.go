package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/backup"
)

func restoreCmd(g *globals) *cobra.Command {
	var o backup.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore ARCHIVE",
		Short: "Restore an archive of processor backup into an empty system",
		Long: `restore writes an archive of processor backup (- reads stdin) into the NATS system of the
configuration, which must hold none of its state: no key in the projections' buckets, no
checkpoint (a pipeline's, or any of its partitions'), version pointer or control entry of its
pipelines. The whole archive is read and checked first (its manifest and every file's
SHA-256): a truncated or damaged archive is refused and nothing is written. So is a system
whose source streams are missing or end before the sequences the archive needs: restore the
streams first (nats stream restore, or a mirror), then this archive, then start the
processors (--no-stream-check skips that check). So is a configuration that runs a pipeline
in another number of partitions than the archive's checkpoints were written with: restored,
that pipeline would refuse to start.

It creates the buckets with the settings they had (--replicas N changes their replicas),
writes the projection keys with their headers, then the control entries, the version
pointers, and the checkpoints last (each partition's, for a pipeline that runs in
partitions). It prints what it restored and what it noticed: derived streams that end before
the sequences the checkpoints recorded, pipelines that differ from the configuration's.`,
		Args: backupUsageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, ps, err := g.load()
			if err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			name := "stdin"
			if args[0] != "-" {
				name = args[0]
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				defer f.Close()
				r = f
			}
			_, _, conn, err := g.open(cmd.Context(), g.logger())
			if err != nil {
				return err
			}
			defer conn.Close()
			o.Pipelines = ps
			res, err := backup.Restore(cmd.Context(), conn.JS, r, o)
			if err != nil {
				return err
			}
			m := res.Manifest
			from := ""
			if m.Jetfold != "" {
				from = ", " + m.Jetfold
			}
			fmt.Fprintf(g.stdout, "restored %s (backup of %s%s): %s, %s created\n", name, m.Created.UTC().Format(time.RFC3339), from, backupNounCount(res.Keys, "key"), backupNounCount(len(res.Created), "bucket"))
			printBackupManifest(g.stdout, m)
			for _, w := range res.Warnings {
				fmt.Fprintln(g.stdout, "warning:", w)
			}
			fmt.Fprintf(g.stdout, "next: processor run -c %s\n", g.config)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.NoStreamCheck, "no-stream-check", false, "restore even when a source stream is missing or ends before the archive's sequences")
	f.IntVar(&o.Replicas, "replicas", 0, "replicas of the buckets created (0: as they were)")
	cmd.SetFlagErrorFunc(backupUsageError)
	return cmd
}
